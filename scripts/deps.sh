#!/usr/bin/env bash
# Installs the Debian 12 packages knockgate needs to build, test and run, if missing.
# Idempotent: does nothing (and needs no network) when everything is present.
set -euo pipefail

build_pkgs=(build-essential cmake ninja-build pkg-config git
  clang libclang-rt-14-dev                 # libFuzzer targets
  libgtest-dev libgmock-dev libbenchmark-dev
  libpcap-dev libnl-3-dev libnl-route-3-dev libnl-nf-3-dev
  libnetfilter-queue-dev libnetfilter-conntrack-dev libmnl-dev libnftables-dev libnftnl-dev
  libboost-dev libboost-system-dev libsqlite3-dev libssl-dev libsodium-dev libsystemd-dev
  libseccomp-dev)
run_pkgs=(nftables iproute2 conntrack sqlite3 procps
  openssh-server openssh-client rsyslog socat python3)  # the lab: SSH host, syslog server, console forward
test_pkgs=(knockd fwknop-client fwknop-server hping3 tcpdump iputils-ping netcat-openbsd
  python3 iperf3 iptables
  chromium nodejs)   # chromium + node: webd's browser test (playwright-core via npm)
# NodeSource's nodejs ships npm itself; Debian's needs the npm package.
command -v npm >/dev/null 2>&1 || test_pkgs+=(npm)
# The Debian package and the VM image (vm/build-image.sh, tests labelled package/image).
# Not part of `all`: scripts/test.sh does not install them; ask with `deps.sh image`.
image_pkgs=(debootstrap qemu-system-x86 qemu-utils lintian e2fsprogs fdisk extlinux
  syslinux-common dpkg-dev fakeroot file)

want=("${build_pkgs[@]}" "${run_pkgs[@]}")
case "${1:-all}" in
  build) want=("${build_pkgs[@]}") ;;
  run) want=("${build_pkgs[@]}" "${run_pkgs[@]}") ;;
  all | test) want+=("${test_pkgs[@]}") ;;
  image) want+=("${test_pkgs[@]}" "${image_pkgs[@]}") ;;
  *) echo "usage: $0 [build|run|test|image]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# knockd's package would start its own daemon on eth0 on install; keep services down.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
