#!/usr/bin/env bash
# Regenerates the real captures that decoder_test reads (run by hand, as root, with
# iproute2, tcpdump, hping3, iputils ping and python3; then run make_fuzz_seeds.py). The
# committed .pcap files are what the tests use. Everything happens inside two network
# namespaces made here and removed on exit; the root namespace is not touched.
#
#   eth.pcap   DLT_EN10MB    on the gateway's veth
#   sll.pcap   DLT_LINUX_SLL on the gateway's "any" device
#   sll2.pcap  DLT_LINUX_SLL2 on the same
#   raw.pcap   DLT_RAW (LINKTYPE_RAW) on a tun device in the client namespace
#
# Traffic (client 192.0.2.1 / 2001:db8:7::1 -> gateway 192.0.2.2 / 2001:db8:7::2):
# TCP SYNs to 7000 (v4) and 7001 (v6); UDP "knockgate-spa-v4"/"-v6" to 62201; ICMP and
# ICMPv6 echo; ping and UDP datagrams of 3000 bytes (fragments, UDP to 62202); hping3 SYN
# with the record-route IP option to 7002 and a segment with all eight flags to 7003; an
# MLD report (hop-by-hop header) from joining ff05::4b47. Snap length 256, so the big
# fragments are cut by the capture. Over the tun: TCP SYN 10.77.0.5:7000, UDP
# "knockgate-tun" to 10.77.0.5:62201, ICMP echo, TCP SYN [fd00:77::5]:7001.
set -euo pipefail
out=$(cd "$(dirname "$0")" && pwd)
a=kgpkt-a-$$ b=kgpkt-b-$$
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns del "$a" 2>/dev/null || true
  ip netns del "$b" 2>/dev/null || true
}
trap cleanup EXIT

ip netns add "$a"
ip netns add "$b"
ip -n "$a" link add va type veth peer name vb netns "$b"
ip -n "$a" link set lo up
ip -n "$b" link set lo up
ip -n "$a" addr add 192.0.2.1/24 dev va
ip -n "$b" addr add 192.0.2.2/24 dev vb
ip -n "$a" addr add 2001:db8:7::1/64 dev va nodad
ip -n "$b" addr add 2001:db8:7::2/64 dev vb nodad
ip -n "$a" link set va up
ip -n "$b" link set vb up

# A tun device whose fd a helper keeps open, so routed packets are transmitted (and seen).
ip netns exec "$a" python3 - <<'PY' &
import fcntl, os, struct, time
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", b"kgtun", 0x0001 | 0x1000))  # TUN | NO_PI
time.sleep(30)
PY
pids+=($!)
for _ in $(seq 50); do ip -n "$a" link show kgtun >/dev/null 2>&1 && break; sleep 0.1; done
ip -n "$a" link set kgtun up
ip -n "$a" addr add 10.77.0.1/24 dev kgtun
ip -n "$a" addr add fd00:77::1/64 dev kgtun nodad

snap=256
ip netns exec "$b" tcpdump -n -U -s $snap -i vb -w "$out/eth.pcap" 2>/dev/null &
pids+=($!)
ip netns exec "$b" tcpdump -n -U -s $snap -i any -y LINUX_SLL -w "$out/sll.pcap" 2>/dev/null &
pids+=($!)
ip netns exec "$b" tcpdump -n -U -s $snap -i any -y LINUX_SLL2 -w "$out/sll2.pcap" 2>/dev/null &
pids+=($!)
ip netns exec "$a" tcpdump -n -U -s $snap -i kgtun -w "$out/raw.pcap" 2>/dev/null &
pids+=($!)
sleep 2

in_a() { ip netns exec "$a" "$@"; }
in_a timeout 2 bash -c 'exec 3<>/dev/tcp/192.0.2.2/7000' 2>/dev/null || true
in_a timeout 2 bash -c 'exec 3<>/dev/tcp/2001:db8:7::2/7001' 2>/dev/null || true
in_a bash -c 'printf knockgate-spa-v4 > /dev/udp/192.0.2.2/62201'
in_a bash -c 'printf knockgate-spa-v6 > /dev/udp/2001:db8:7::2/62201'
in_a ping -c 1 -W 1 192.0.2.2 >/dev/null
in_a ping -6 -c 1 -W 1 2001:db8:7::2 >/dev/null
in_a ping -c 1 -W 1 -s 3000 192.0.2.2 >/dev/null
in_a ping -6 -c 1 -W 1 -s 3000 2001:db8:7::2 >/dev/null
in_a bash -c 'head -c 3000 /dev/zero | tr "\0" x > /dev/udp/192.0.2.2/62202'
in_a hping3 -q -c 1 -S -p 7002 --rroute 192.0.2.2 >/dev/null 2>&1 || true
in_a hping3 -q -c 1 -F -S -R -P -A -U -X -Y -p 7003 192.0.2.2 >/dev/null 2>&1 || true
in_a python3 -c '
import socket, struct, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
             socket.inet_pton(socket.AF_INET6, "ff05::4b47") + struct.pack("@I", socket.if_nametoindex("va")))
time.sleep(0.5)'
in_a timeout 1 bash -c 'exec 3<>/dev/tcp/10.77.0.5/7000' 2>/dev/null || true
in_a bash -c 'printf knockgate-tun > /dev/udp/10.77.0.5/62201'
in_a ping -c 1 -W 1 10.77.0.5 >/dev/null || true
in_a timeout 1 bash -c 'exec 3<>/dev/tcp/fd00:77::5/7001' 2>/dev/null || true
sleep 1
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
ls -l "$out"/*.pcap
