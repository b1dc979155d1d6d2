#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_packet (tests/fuzz/corpus/fuzz_packet/).

Each seed is one selector byte (index into kDlts in tests/fuzz/fuzz_packet.cpp) followed by
a frame. Most frames are real ones picked from the captures next to this script
(capture.sh); the kinds those captures cannot contain (VLAN tags, IPv6 routing/AH/
destination-options chains, BSD loopback, DLT_IPV4/IPV6) are crafted here.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "fuzz", "corpus", "fuzz_packet")

# Must match kDlts in fuzz_packet.cpp.
SEL = {"en10mb": 0, "sll": 1, "sll2": 2, "raw": 3, "ipv4": 4, "ipv6": 5, "null": 6,
       "loop": 7, "linktype_raw": 8}
IP_OFFSET = {"eth.pcap": 14, "sll.pcap": 16, "sll2.pcap": 20, "raw.pcap": 0}


def read_pcap(name):
    data = open(os.path.join(HERE, name), "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    at, records = 24, []
    while at + 16 <= len(data):
        caplen = struct.unpack(endian + "I", data[at + 8:at + 12])[0]
        records.append(data[at + 16:at + 16 + caplen])
        at += 16 + caplen
    return records


def summary(ip):
    """(version, l4 proto, frag offset, more fragments, dport or ICMP type, ihl, next0)."""
    if not ip:
        return None
    if ip[0] >> 4 == 4:
        ihl = (ip[0] & 15) * 4
        frag = struct.unpack(">H", ip[6:8])[0]
        l4 = ip[ihl:]
        proto = ip[9]
        key = struct.unpack(">H", l4[2:4])[0] if proto in (6, 17) and len(l4) >= 4 else (
            l4[0] if l4 else None)
        return (4, proto, frag & 0x1FFF, bool(frag & 0x2000), key, ihl, None)
    nxt, pos, offset, more = ip[6], 40, 0, False
    first_next = nxt
    while nxt in (0, 43, 60, 44):
        if nxt == 44:
            fo = struct.unpack(">H", ip[pos + 2:pos + 4])[0]
            offset, more = fo >> 3, bool(fo & 1)
            nxt, pos = ip[pos], pos + 8
            if offset:
                break
        else:
            nxt, pos = ip[pos], pos + (ip[pos + 1] + 1) * 8
    l4 = ip[pos:]
    key = struct.unpack(">H", l4[2:4])[0] if nxt in (6, 17) and len(l4) >= 4 else (
        l4[0] if l4 else None)
    return (6, nxt, offset, more, key, 40, first_next)


def pick(name, pred):
    off = IP_OFFSET[name]
    for frame in read_pcap(name):
        proto = frame[off - 2:off] if name != "sll2.pcap" else frame[0:2]
        if name != "raw.pcap" and proto not in (b"\x08\x00", b"\x86\xdd"):
            continue
        s = summary(frame[off:])
        if s and pred(*s):
            return frame
    sys.exit(f"no frame in {name} matches")


def ipv4(proto, l4, src=b"\xc0\x00\x02\x01", dst=b"\xc6\x33\x64\x07"):
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0, src,
                       dst) + l4


def ipv6(nxt, rest):
    src = bytes.fromhex("20010db8000000000000000000000001")
    dst = bytes.fromhex("20010db8000100000000000000000007")
    return struct.pack(">IHBB", 6 << 28, len(rest), nxt, 64) + src + dst + rest


def tcp_syn(dport):
    return struct.pack(">HHIIBBHHH", 40000, dport, 1, 0, 5 << 4, 0x02, 1024, 0, 0)


def udp(dport, payload):
    return struct.pack(">HHHH", 40000, dport, 8 + len(payload), 0) + payload


def ext(nxt, units=1):
    return bytes([nxt, units - 1, 1, units * 8 - 4]) + bytes(units * 8 - 4)


def main():
    seeds = {}
    eth = lambda f: bytes([SEL["en10mb"]]) + f
    seeds["eth-v4-tcp-syn"] = eth(pick("eth.pcap", lambda v, p, o, m, k, ihl, n: v == 4 and p == 6 and k == 7000))
    seeds["eth-v6-tcp-syn"] = eth(pick("eth.pcap", lambda v, p, o, m, k, ihl, n: v == 6 and p == 6 and k == 7001))
    seeds["eth-v4-udp-spa"] = eth(pick("eth.pcap", lambda v, p, o, m, k, ihl, n: v == 4 and p == 17 and k == 62201))
    seeds["eth-v6-udp-spa"] = eth(pick("eth.pcap", lambda v, p, o, m, k, ihl, n: v == 6 and p == 17 and k == 62201))
    seeds["eth-v4-icmp-echo"] = eth(pick("eth.pcap", lambda v, p, o, m, k, ihl, n: v == 4 and p == 1 and k == 8 and not m))
    seeds["eth-v4-udp-first-fragment"] = eth(pick("eth.pcap", lambda v, p, o, m, k, ihl, n: v == 4 and p == 17 and m and o == 0))
    seeds["eth-v4-later-fragment"] = eth(pick("eth.pcap", lambda v, p, o, m, k, ihl, n: v == 4 and o != 0))
    seeds["eth-v6-icmp-first-fragment"] = eth(pick("eth.pcap", lambda v, p, o, m, k, ihl, n: v == 6 and p == 58 and m and o == 0))
    seeds["eth-v6-later-fragment"] = eth(pick("eth.pcap", lambda v, p, o, m, k, ihl, n: v == 6 and o != 0))
    seeds["eth-v4-ip-options"] = eth(pick("eth.pcap", lambda v, p, o, m, k, ihl, n: v == 4 and ihl > 20))
    seeds["eth-v6-hbh-mld"] = eth(pick("eth.pcap", lambda v, p, o, m, k, ihl, n: v == 6 and n == 0))
    seeds["sll-v4-tcp-syn"] = bytes([SEL["sll"]]) + pick("sll.pcap", lambda v, p, o, m, k, ihl, n: v == 4 and p == 6 and k == 7000)
    seeds["sll2-v6-udp"] = bytes([SEL["sll2"]]) + pick("sll2.pcap", lambda v, p, o, m, k, ihl, n: v == 6 and p == 17 and k == 62201)
    seeds["raw-v4-tcp-syn"] = bytes([SEL["linktype_raw"]]) + pick("raw.pcap", lambda v, p, o, m, k, ihl, n: v == 4 and p == 6)
    seeds["raw-v6-tcp-syn"] = bytes([SEL["raw"]]) + pick("raw.pcap", lambda v, p, o, m, k, ihl, n: v == 6 and p == 6)

    mac = bytes.fromhex("020000000002020000000001")
    chain = (ext(43) + ext(44, 2) + struct.pack(">BBHI", 51, 0, 1, 7) +
             struct.pack(">BBHII", 60, 4, 0, 256, 1) + bytes(12) + ext(6) + tcp_syn(7000))
    seeds["eth-qinq-v6-ext-chain"] = eth(mac + struct.pack(">HHHH", 0x88A8, 200, 0x8100, 100) +
                                         b"\x86\xdd" + ipv6(0, chain))
    seeds["eth-vlan-v4-tcp"] = eth(mac + struct.pack(">HH", 0x8100, 42) + b"\x08\x00" +
                                   ipv4(6, tcp_syn(7000)))
    seeds["sll-vlan-v4-udp"] = bytes([SEL["sll"]]) + struct.pack(">HHH8sH", 0, 1, 6, bytes(8), 0x8100) + \
        struct.pack(">HH", 7, 0x0800) + ipv4(17, udp(62201, b"\x00"))
    seeds["null-le-v6-udp"] = bytes([SEL["null"]]) + struct.pack("<I", 30) + ipv6(17, udp(62201, b"spa"))
    seeds["loop-be-v4-tcp"] = bytes([SEL["loop"]]) + struct.pack(">I", 2) + ipv4(6, tcp_syn(7001))
    seeds["dlt-ipv4-icmp"] = bytes([SEL["ipv4"]]) + ipv4(1, struct.pack(">BBHI", 8, 0, 0, 1) + b"ping")
    seeds["dlt-ipv6-esp"] = bytes([SEL["ipv6"]]) + ipv6(50, struct.pack(">II", 0x100, 1) + bytes(16))

    os.makedirs(OUT, exist_ok=True)
    for name, data in sorted(seeds.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"{len(seeds)} seeds in {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
