#!/usr/bin/env bash
# Boots the knockgate gateway image under QEMU with a WAN and a LAN network.
# See docs/images.md.
#
#   vm/run-qemu.sh [options]
#
#   -i IMAGE     the disk (default: build/image/knockgate.qcow2)
#   -S           snapshot mode: changes go to a temporary overlay, IMAGE stays as built
#   -s SEEDFILE  first-boot seed (key=value: password, wan_address, wan_gateway, lan_address),
#                handed to the guest through fw_cfg (opt/knockgate/seed)
#   -w WAN       user (default: QEMU user networking, DHCP 10.0.2.15, outbound NAT)
#                tap:IFNAME (an existing or new tap device, e.g. in a network namespace)
#   -l LAN       listen:PORT (default listen:10550: a second VM joins with
#                -netdev socket,id=lan,connect=127.0.0.1:10550)
#                mcast:ADDR:PORT (any number of VMs on one multicast segment)
#                tap:IFNAME | none
#   -c CONSOLE   stdio (default; Ctrl-a x quits) | unix:PATH (a socket to attach to) | file:PATH
#   -m MEM       memory in MiB (default 1024)
#
# The NICs sit at PCI slots 3 (WAN) and 4 (LAN): the guest names them kg-wan and kg-lan on
# first boot. KVM is used when /dev/kvm is usable and the image boots under it (probed for a
# few seconds; KG_QEMU_ACCEL=kvm|tcg forces one), otherwise TCG (slower, works anywhere).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
image="$here/../build/image/knockgate.qcow2"
snapshot=""
seed=""
wan="user"
lan="listen:10550"
console="stdio"
mem=1024

usage() {
  sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}
while getopts "i:Ss:w:l:c:m:h" opt; do
  case "$opt" in
    i) image="$OPTARG" ;;
    S) snapshot=1 ;;
    s) seed="$OPTARG" ;;
    w) wan="$OPTARG" ;;
    l) lan="$OPTARG" ;;
    c) console="$OPTARG" ;;
    m) mem="$OPTARG" ;;
    h) usage 0 ;;
    *) usage ;;
  esac
done

die() {
  echo "run-qemu: $*" >&2
  exit 1
}
[ -r "$image" ] || die "$image: no image (build it with vm/build-image.sh)"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (scripts/deps.sh image)"

netdev() { # ROLE SPEC -> -netdev argument
  local id="$1" spec="$2"
  case "$spec" in
    user) echo "user,id=$id" ;;
    tap:*) echo "tap,id=$id,ifname=${spec#tap:},script=no,downscript=no" ;;
    listen:*) echo "socket,id=$id,listen=127.0.0.1:${spec#listen:}" ;;
    connect:*) echo "socket,id=$id,connect=127.0.0.1:${spec#connect:}" ;;
    mcast:*) echo "socket,id=$id,mcast=${spec#mcast:}" ;;
    *) die "unknown network '$spec'" ;;
  esac
}

args=(-machine q35,accel=tcg -cpu max -m "$mem" -smp 2 -nodefaults -no-user-config
  -drive "file=$image,if=virtio,format=qcow2${snapshot:+,snapshot=on}"
  -device virtio-rng-pci)
# KVM only when this image really runs under it: a nested host (a VM exposing /dev/kvm) may
# refuse an MSR of `-cpu host` (seen: "failed to set MSR 0x10a", then an abort) or fail to
# emulate the boot loader ("KVM internal error ... emulation failure", the guest paused).
# So boot the image itself, snapshot, no network, for a few seconds and ask whether it is
# still running; `host`, then `host` without IA32_ARCH_CAPABILITIES, else TCG.
# KG_QEMU_ACCEL=kvm or tcg skips the probe.
kvm_cpu_works() {
  local status
  status="$( (sleep 4; echo "info status"; sleep 0.5; echo quit) |
    timeout 30 qemu-system-x86_64 -machine q35,accel=kvm -cpu "$1" -m "$mem" -nodefaults \
      -no-user-config -display none -drive "file=$image,if=virtio,format=qcow2,snapshot=on" \
      -monitor stdio 2>/dev/null)" || true
  [[ "$status" == *"VM status: running"* ]]
}
accel="${KG_QEMU_ACCEL:-auto}"
if [ "$accel" = kvm ]; then
  args=(-machine q35,accel=kvm -cpu host "${args[@]:4}")
elif [ "$accel" = auto ] && [ -w /dev/kvm ]; then
  for cpu in host host,arch-capabilities=off; do
    if kvm_cpu_works "$cpu"; then
      args=(-machine q35,accel=kvm -cpu "$cpu" "${args[@]:4}")
      break
    fi
    echo "run-qemu: this image does not run under KVM with -cpu $cpu here" >&2
  done
  [ "${args[1]}" = "q35,accel=kvm" ] || echo "run-qemu: using TCG (slower)" >&2
fi
# q35 puts its own devices low; pin the NICs to slots 3 and 4 of the root bus.
args+=(-netdev "$(netdev wan "$wan")" -device "virtio-net-pci,netdev=wan,addr=0x3,mac=52:54:00:4b:47:01")
if [ "$lan" != "none" ]; then
  args+=(-netdev "$(netdev lan "$lan")" -device "virtio-net-pci,netdev=lan,addr=0x4,mac=52:54:00:4b:47:02")
fi
[ -z "$seed" ] || args+=(-fw_cfg "name=opt/knockgate/seed,file=$seed")
case "$console" in
  stdio) args+=(-nographic -serial mon:stdio) ;;
  unix:*) args+=(-display none -serial "unix:${console#unix:},server=on,wait=off") ;;
  file:*) args+=(-display none -serial "file:${console#file:}") ;;
  *) die "unknown console '$console'" ;;
esac

exec qemu-system-x86_64 "${args[@]}"
