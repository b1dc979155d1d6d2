"""Just enough pcap to check what went on the wire: classic pcap files with Ethernet
frames (what tcpdump -w writes on a veth), IPv4/IPv6 (no extension headers), TCP/UDP."""

import struct
from dataclasses import dataclass

TCP_FLAG_NAMES = (("F", 0x01), ("S", 0x02), ("R", 0x04), ("P", 0x08), ("A", 0x10), ("U", 0x20))


@dataclass
class Packet:
    time: float
    src: str
    dst: str
    proto: str        # "tcp" or "udp"
    sport: int
    dport: int
    flags: int = 0    # TCP flags byte
    payload: bytes = b""

    def flag_str(self):
        return "".join(n for n, bit in TCP_FLAG_NAMES if self.flags & bit)


def _ip4(b):
    return ".".join(str(x) for x in b)


def _ip6(b):
    import ipaddress
    return str(ipaddress.IPv6Address(bytes(b)))


def parse_frame(ts, frame):
    if len(frame) < 14:
        return None
    ethertype = struct.unpack("!H", frame[12:14])[0]
    ip = frame[14:]
    if ethertype == 0x0800 and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        proto_num = ip[9]
        src, dst = _ip4(ip[12:16]), _ip4(ip[16:20])
        l4 = ip[ihl:total]
    elif ethertype == 0x86DD and len(ip) >= 40:
        plen = struct.unpack("!H", ip[4:6])[0]
        proto_num = ip[6]
        src, dst = _ip6(ip[8:24]), _ip6(ip[24:40])
        l4 = ip[40:40 + plen]
    else:
        return None
    if proto_num == 6 and len(l4) >= 20:
        sport, dport = struct.unpack("!HH", l4[0:4])
        off = (l4[12] >> 4) * 4
        return Packet(ts, src, dst, "tcp", sport, dport, l4[13], bytes(l4[off:]))
    if proto_num == 17 and len(l4) >= 8:
        sport, dport, ulen = struct.unpack("!HHH", l4[0:6])
        return Packet(ts, src, dst, "udp", sport, dport, 0, bytes(l4[8:ulen]))
    return None


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return []
    magic = struct.unpack("<I", data[0:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        endian = ">"
        magic = struct.unpack(">I", data[0:4])[0]
    else:
        raise ValueError("not a classic pcap file: %s" % path)
    nano = magic == 0xA1B23C4D
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise ValueError("link type %d is not Ethernet" % linktype)
    out, pos = [], 24
    while pos + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[pos:pos + 16])
        pos += 16
        frame = data[pos:pos + incl]
        pos += incl
        p = parse_frame(sec + frac / (1e9 if nano else 1e6), frame)
        if p:
            out.append(p)
    return out
