#!/usr/bin/env bash
# Builds the knockgate gateway image: Debian 12 (bookworm) with knockgate installed from our
# own .deb, configured from etc/, bootable under QEMU/KVM (qcow2) and VMware (VMDK).
# Run as root. See docs/images.md.
#
#   vm/build-image.sh [-o OUTDIR] [-d DEB] [-s SIZE] [-m MIRROR]
#   vm/build-image.sh -B        only make (or check) the cached base system
#
#   -o OUTDIR   where the image goes (default: build/image)
#   -d DEB      the knockgate .deb (default: the newest in build/package, built if missing)
#   -s SIZE     disk size (default: 2G)
#   -m MIRROR   Debian mirror (default: $KG_DEBIAN_MIRROR or http://deb.debian.org/debian)
#
# Outputs in OUTDIR: knockgate.qcow2, knockgate.vmdk, vmlinuz and initrd.img (for -kernel
# boots), image.env (kernel command line, root UUID). The debootstrapped base system is
# cached in $KG_IMAGE_CACHE (default: build/image-cache) and reused while its package list
# is unchanged.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "$here/.." && pwd)"
out="$src/build/image"
deb=""
size="2G"
mirror="${KG_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache="${KG_IMAGE_CACHE:-$src/build/image-cache}"
base_only=""

usage() {
  sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}
while getopts "o:d:s:m:Bh" opt; do
  case "$opt" in
    o) out="$OPTARG" ;;
    d) deb="$OPTARG" ;;
    s) size="$OPTARG" ;;
    m) mirror="$OPTARG" ;;
    B) base_only=1 ;;
    h) usage 0 ;;
    *) usage ;;
  esac
done

log() { printf '%s build-image: %s\n' "$(date -u +%T)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot, loop mount for the boot loader)"
for tool in debootstrap qemu-img mkfs.ext4 sfdisk extlinux unshare chroot; do
  command -v "$tool" >/dev/null || die "$tool missing (scripts/deps.sh image installs it)"
done
mbr=/usr/lib/EXTLINUX/mbr.bin
[ -r "$mbr" ] || die "$mbr missing (package extlinux)"

started=$(date +%s)

# --- the base system (cached) ----------------------------------------------------------
# Everything the package depends on is in the base, so installing it needs no network.
base_pkgs="systemd,systemd-sysv,udev,dbus,kmod,linux-image-amd64,initramfs-tools,\
init-system-helpers,adduser,passwd,login,nftables,iproute2,conntrack,sqlite3,procps,logrotate,\
netbase,less,libpcap0.8,libnl-3-200,libnl-route-3-200,libsqlite3-0,libnetfilter-queue1,\
libnetfilter-conntrack3,libmnl0,libnftables1,libsodium23,libssl3,libsystemd0"
base="$cache/rootfs"
stamp="bookworm minbase $base_pkgs"
if [ ! -f "$base/.kg-base" ] || [ "$(cat "$base/.kg-base")" != "$stamp" ]; then
  log "debootstrap bookworm from $mirror into $base (a few minutes)"
  rm -rf "$base" "$base.tmp"
  mkdir -p "$cache"
  debootstrap --variant=minbase --include="$base_pkgs" bookworm "$base.tmp" "$mirror" \
    >"$cache/debootstrap.log" 2>&1 || die "debootstrap failed, see $cache/debootstrap.log"
  printf '%s' "$stamp" >"$base.tmp/.kg-base"
  mv "$base.tmp" "$base"
fi
[ -z "$base_only" ] || { log "base system ready: $base"; exit 0; }

# --- the package -----------------------------------------------------------------------
if [ -z "$deb" ]; then
  deb="$(ls -t "$src"/build/package/knockgate_*.deb 2>/dev/null | head -n1 || true)"
  if [ -z "$deb" ]; then
    log "no .deb yet: building it (cmake --preset package)"
    (cd "$src" && cmake --preset package >/dev/null &&
      cmake --build build/package -j "$(nproc)" >/dev/null &&
      cpack --config build/package/CPackConfig.cmake -B build/package >/dev/null)
    deb="$(ls -t "$src"/build/package/knockgate_*.deb | head -n1)"
  fi
fi
[ -r "$deb" ] || die "$deb: no such package"
deb="$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")"
log "package: $deb"

# --- the image's root file system ------------------------------------------------------
mkdir -p "$out"
root="$out/rootfs"
rm -rf "$root"
log "copying the base system"
cp -a "$base" "$root"
rm -f "$root/.kg-base"

# Runs a command in the image root: own mount namespace (proc, sysfs, dev), so nothing is
# left mounted on this machine whatever happens; policy-rc.d keeps services from starting.
in_root() {
  unshare --mount --propagation private -- /bin/sh -euc '
    root="$1"; shift
    mount -t proc proc "$root/proc"
    mount -t sysfs sysfs "$root/sys"
    mount --bind /dev "$root/dev"
    exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
      DEBIAN_FRONTEND=noninteractive "$@"' in_root "$root" "$@"
}

printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
cp "$deb" "$root/tmp/"
log "installing $(basename "$deb")"
in_root dpkg -i "/tmp/$(basename "$deb")" >"$out/dpkg.log" 2>&1 ||
  die "dpkg -i failed in the image, see $out/dpkg.log"
rm -f "$root/tmp/$(basename "$deb")" "$root/usr/sbin/policy-rc.d"

# --- configuration ---------------------------------------------------------------------
log "configuring"
uuid="$(cat /proc/sys/kernel/random/uuid)"
echo knockgate >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tknockgate\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
  >"$root/etc/hosts"
printf 'UUID=%s\t/\text4\terrors=remount-ro\t0\t1\n' "$uuid" >"$root/etc/fstab"
# A fresh machine-id on first boot, not this build's.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# Accounts are locked until the first boot sets the admin password.
in_root usermod -p '*' root

# Interfaces: the first two Ethernet NICs become kg-wan and kg-lan on first boot (see
# knockgate-firstboot); the default config names exactly those, as in the lab.
install -m 0644 "$here/image/20-kg-wan.network" "$here/image/20-kg-lan.network" \
  "$root/etc/systemd/network/"
install -m 0644 "$here/image/60-knockgate-router.conf" "$root/etc/sysctl.d/"
install -m 0755 "$here/image/knockgate-firstboot" "$root/usr/local/sbin/"
install -m 0644 "$here/image/knockgate-firstboot.service" "$root/etc/systemd/system/"
in_root systemctl enable systemd-networkd.service knockgate-firstboot.service >/dev/null 2>&1
# The gateway's configuration is the repository's default (etc/), as the package installs it.
cmp -s "$src/etc/knockgate.conf" "$root/etc/knockgate/knockgate.conf" ||
  die "the package's knockgate.conf differs from etc/knockgate.conf (stale .deb?)"

# Boot loader: extlinux on the root partition, serial console and VGA.
kver="$(basename "$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n1)" | sed 's/^vmlinuz-//')"
cmdline="root=UUID=$uuid ro console=tty0 console=ttyS0,115200n8"
mkdir -p "$root/boot/extlinux"
cat >"$root/boot/extlinux/extlinux.conf" <<EOC
DEFAULT knockgate
TIMEOUT 10
PROMPT 0
SERIAL 0 115200
LABEL knockgate
	LINUX /boot/vmlinuz-$kver
	INITRD /boot/initrd.img-$kver
	APPEND $cmdline
EOC
cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$out/initrd.img"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/*
printf 'KG_IMAGE_UUID=%s\nKG_IMAGE_KERNEL=%s\nKG_IMAGE_CMDLINE="%s"\n' "$uuid" "$kver" "$cmdline" \
  >"$out/image.env"

# --- disk: MBR, one bootable ext4 partition at 1 MiB -------------------------------------
log "making the disk ($size)"
raw="$out/knockgate.raw"
rm -f "$raw"
qemu-img create -q -f raw "$raw" "$size"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$raw" >/dev/null
part_start=$((2048 * 512))
part_kib=$((($(stat -c %s "$raw") - part_start) / 1024))
# No 64bit/metadata_csum_seed: extlinux 6.04 cannot read them. -d fills it without a mount.
mkfs.ext4 -q -F -L knockgate-root -U "$uuid" -O ^64bit,^metadata_csum_seed \
  -E offset="$part_start" -d "$root" "$raw" "${part_kib}k"
# extlinux patches its own block list into the file system, so it needs it mounted: a loop
# mount in a private mount namespace (auto-detached on unmount).
unshare --mount --propagation private -- /bin/sh -euc '
  mnt=$(mktemp -d)
  mount -o loop,offset="$2" "$1" "$mnt"
  extlinux --install "$mnt/boot/extlinux" >/dev/null 2>&1 || { umount "$mnt"; exit 1; }
  umount "$mnt"
  rmdir "$mnt"' extlinux "$raw" "$part_start" || die "extlinux --install failed"
dd if="$mbr" of="$raw" bs=440 count=1 conv=notrunc status=none

log "converting to qcow2 and vmdk"
qemu-img convert -O qcow2 "$raw" "$out/knockgate.qcow2"
qemu-img convert -O vmdk -o adapter_type=lsilogic,subformat=monolithicSparse "$raw" \
  "$out/knockgate.vmdk"
qemu-img info "$out/knockgate.vmdk" | grep -q '^file format: vmdk' || die "VMDK check failed"
rm -f "$raw"
rm -rf "$root"

log "done in $(($(date +%s) - started)) s: $out/knockgate.qcow2 $out/knockgate.vmdk"
