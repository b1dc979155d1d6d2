"""The gateway's own exposure, end to end: real policyd, captured and webd in the lab's gw
namespace with the policyd-installed ruleset. From the WAN client every address of the
gateway (WAN and LAN, IPv4 and IPv6, spoofed loopback) is closed on the console port, the
sshd port and any other listener; the doors still work; the LAN still reaches the console;
`expose = self` opens a port of the gateway only for a knocker. webd binds to loopback and
the LAN addresses by default."""
import os
import socket
import struct
import subprocess
import time
import unittest

import kglab
import verdict_lab
import webdlib

POLICYD, CAPTURED, WEBD, CTL, KNOCK = (webdlib.POLICYD, webdlib.CAPTURED, webdlib.WEBD,
                                       webdlib.CTL, webdlib.KNOCK)
GW_LAN6 = "fd00:50::1"
GW_WAN6 = kglab.GW_WAN6
SSH_HOST = "192.168.50.10"
OWN_PORT = 2200       # `expose = self tcp/2200`
OTHER_PORT = 5555     # a listener nobody exposes
CONSOLE = 8080

CONF = """[options]
  Interface = kg-wan
  WanInterface = kg-wan
  LanInterface = kg-lan
  RuntimeDir = {w}
  Database = {w}/state/knockgate.db
  PidFile = {w}/policyd.pid
  LogFile = {w}/knock.log
  CaptureUser = nobody
  VerdictUser = nobody
  VerdictHoldMs = 250
  WebUser = nobody
  WebRoot = {root}
  WebPasswordFile = {w}/web.passwd
  WebTokenFile = {w}/web.tokens

[profile ssh-only]
  direction = inbound
  expose = tcp/22 -> 192.168.50.10:22

[profile gateway-ssh]
  direction = inbound
  expose = self tcp/{own}

[openSSH]
  sequence = 7000,8000,9000
  seq_timeout = 5
  tcpflags = syn
  grant = ssh-only

[ownSSH]
  sequence = 7100,8100,9100
  seq_timeout = 5
  tcpflags = syn
  grant = gateway-ssh
"""

# Dual-stack TCP and UDP listeners on every address: the worst case of "any listener".
LISTENER = r"""
import socket, sys, threading
out = open(sys.argv[1], "a", buffering=1)
def tcp(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port)); s.listen(64)
    while True:
        c, a = s.accept()
        out.write("tcp %d %s\n" % (port, a[0])); c.close()
def udp(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    while True:
        d, a = s.recvfrom(2048)
        out.write("udp %d %s\n" % (port, a[0]))
for p in [int(x) for x in sys.argv[2:]]:
    threading.Thread(target=tcp, args=(p,), daemon=True).start()
    threading.Thread(target=udp, args=(p,), daemon=True).start()
print("listening", flush=True)
threading.Event().wait()
"""


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff


def spoofed_loopback_frame(dst_mac, src_mac, src_ip, port):
    """An Ethernet frame carrying UDP from src_ip to 127.0.0.1:port."""
    payload = b"spoofed"
    udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton(src_ip), socket.inet_aton("127.0.0.1"))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + udp


class GatewayExposure(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not all(os.path.exists(p) for p in (POLICYD, CAPTURED, WEBD, CTL, KNOCK,
                                               verdict_lab.VERDICTD)):
            raise unittest.SkipTest("daemons not built")
        cls.lab = kglab.Lab("full").__enter__()
        try:
            cls.w = cls.lab.dir("gw-exposure")
            os.chmod(cls.w, 0o755)
            cls.conf = os.path.join(cls.w, "knockgate.conf")
            with open(cls.conf, "w") as f:
                f.write(CONF.format(w=cls.w, root=webdlib.WEB_ROOT, own=OWN_PORT))
            r = subprocess.run([CTL, "passwd", "-c", cls.conf, "--stdin", "admin"],
                               input=webdlib.PASSWORD + "\n", capture_output=True, text=True,
                               timeout=20)
            assert r.returncode == 0, r.stderr
            # Loopback destinations would be routed from the wire if the kernel allowed it:
            # the ruleset must stop them by itself.
            cls.lab.run("gw", ["sysctl", "-qw", "net.ipv4.conf.kg-wan.route_localnet=1"])
            cls.policyd = cls.lab.start("gw", [POLICYD, "-c", cls.conf, "-v"],
                                        os.path.join(cls.w, "policyd.out"))
            assert cls.policyd.wait_for_output(r"listening on", 15), cls.policyd.output()
            cls.captured = cls.lab.start("gw", [CAPTURED, "-c", cls.conf, "-v"],
                                         os.path.join(cls.w, "captured.out"))
            assert cls.captured.wait_for_output(r"connected to policyd", 10), cls.captured.output()
            cls.verdictd = verdict_lab.start_verdictd(cls.lab, cls.conf, debug=False)
            cls.webd = cls.lab.start("gw", [WEBD, "-c", cls.conf],
                                     os.path.join(cls.w, "webd.out"))
            assert cls.webd.wait_for_output(r"connected to policyd", 15), cls.webd.output()
            script = cls.lab.path("exposure_listener.py")
            with open(script, "w") as f:
                f.write(LISTENER)
            cls.recv = cls.lab.path("gw-listener.recv")
            cls.listener = cls.lab.start(
                "gw", ["python3", "-u", script, cls.recv, "22", str(OWN_PORT), str(OTHER_PORT)],
                cls.lab.path("gw-listener.out"))
            assert cls.listener.wait_for_output("listening", 5), cls.listener.output()
            cls.lan_ssh = cls.lab.start(
                "ssh", ["python3", "-u", script, cls.lab.path("ssh-listener.recv"), "22"],
                cls.lab.path("ssh-listener.out"))
            assert cls.lan_ssh.wait_for_output("listening", 5), cls.lan_ssh.output()
        except BaseException:
            cls.lab.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.lab.close()

    def tcp_open(self, host, dst, port, timeout=0.7):
        """A TCP connect from `host`'s namespace: True when it completes."""
        family = socket.AF_INET6 if ":" in dst else socket.AF_INET
        with webdlib.netns(self.lab.ns(host)):
            s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect((dst, port))
            return True
        except OSError:
            return False
        finally:
            s.close()

    def ctl(self, *args):
        return self.lab.run("gw", [CTL, "-c", self.conf] + list(args), check=False)

    def revoke_all(self):
        for src in (kglab.CLIENT4, kglab.CLIENT6, kglab.CLIENT2_4):
            self.ctl("revoke", src)

    def knock(self, host, ports, dst=kglab.GW_WAN4):
        self.lab.run(host, [KNOCK, dst] + [str(p) for p in ports])

    def wait_open(self, host, dst, port, seconds=5):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.tcp_open(host, dst, port, timeout=0.5):
                return True
            time.sleep(0.1)
        return False

    def counter(self, chain):
        """Packets counted by the last `counter drop` of a chain of our table."""
        r = self.lab.run("gw", ["nft", "list", "chain", "inet", "knockgate", chain])
        drops = [l for l in r.stdout.splitlines() if "counter packets" in l and "drop" in l]
        self.assertTrue(drops, r.stdout)
        return int(drops[-1].split("counter packets")[1].split()[0])

    # ---- tests

    def test_every_gateway_address_is_closed_from_the_wan(self):
        self.revoke_all()
        before = self.counter("input_wan")
        closed = []
        for dst in (kglab.GW_WAN4, GW_WAN6, kglab.GW_LAN4, GW_LAN6):
            for port in (22, CONSOLE, OWN_PORT, OTHER_PORT):
                if dst == kglab.GW_WAN4 and port == 22:
                    continue  # forwarded to the LAN's SSH host: the gate's business
                closed.append((dst, port, self.tcp_open("client", dst, port)))
        self.assertEqual([c for c in closed if c[2]], [], closed)
        # UDP to the listener on the LAN address: never delivered.
        with webdlib.netns(self.lab.ns("client")):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.sendto(b"x", (kglab.GW_LAN4, OTHER_PORT))
        u.close()
        time.sleep(0.3)
        with open(self.recv) as f:
            got = f.read()
        self.assertNotIn("udp %d ::ffff:%s" % (OTHER_PORT, kglab.CLIENT4), got)
        self.assertGreater(self.counter("input_wan"), before)  # dropped and counted

    def test_spoofed_loopback_from_the_wan_is_dropped(self):
        mac = lambda ns, dev: bytes.fromhex(self.lab.run(ns, ["cat", "/sys/class/net/%s/address"
                                                              % dev]).stdout.strip().replace(":", ""))
        gw_mac, client_mac = mac("gw", "kg-wan"), mac("client", "eth0")
        before = self.lab.run("gw", ["nft", "list", "chain", "inet", "knockgate", "input"]).stdout
        with webdlib.netns(self.lab.ns("client")):
            raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        raw.bind(("eth0", 0))
        for _ in range(3):
            raw.send(spoofed_loopback_frame(gw_mac, client_mac, kglab.CLIENT4, OTHER_PORT))
        raw.close()
        time.sleep(0.3)
        with open(self.recv) as f:
            self.assertNotIn("udp %d %s" % (OTHER_PORT, kglab.CLIENT4), f.read())
        after = self.lab.run("gw", ["nft", "list", "chain", "inet", "knockgate", "input"]).stdout
        count = lambda text: int(next(l for l in text.splitlines() if "127.0.0.0/8" in l)
                                 .split("counter packets")[1].split()[0])
        self.assertGreaterEqual(count(after) - count(before), 3, after)

    def test_lan_reaches_the_console_and_webd_binds_lan_and_loopback(self):
        for dst in (kglab.GW_LAN4, GW_LAN6):
            self.assertTrue(self.tcp_open("ssh", dst, CONSOLE), dst)
        c = webdlib.Connection(self.lab.ns("ssh"), kglab.GW_LAN4, CONSOLE)
        c.request("GET", "/")
        self.assertEqual(c.getresponse().status, 200)
        c.close()
        r = self.lab.run("gw", ["ss", "-ltnH", "sport = :%d" % CONSOLE])
        bound = sorted(l.split()[3].rsplit(":", 1)[0].strip("[]") for l in r.stdout.splitlines())
        self.assertEqual(bound, sorted(["127.0.0.1", kglab.GW_LAN4, GW_LAN6]), r.stdout)

    def test_doors_still_work_and_self_opens_only_after_a_knock(self):
        self.revoke_all()
        self.assertFalse(self.tcp_open("client", kglab.GW_WAN4, OWN_PORT))
        # The forwarding door: the LAN's SSH host through WAN:22.
        self.assertFalse(self.tcp_open("client", kglab.GW_WAN4, 22))
        self.knock("client", [7000, 8000, 9000])
        self.assertTrue(self.wait_open("client", kglab.GW_WAN4, 22))
        self.assertFalse(self.tcp_open("client", kglab.GW_WAN4, OWN_PORT))  # another profile
        # The gateway's own port, for the knocker only.
        self.knock("client", [7100, 8100, 9100])
        self.assertTrue(self.wait_open("client", kglab.GW_WAN4, OWN_PORT))
        self.assertTrue(self.tcp_open("client", kglab.GW_LAN4, OWN_PORT))  # any of its addresses
        self.assertFalse(self.tcp_open("client2", kglab.GW_WAN4, OWN_PORT))
        self.assertFalse(self.tcp_open("client", GW_WAN6, OWN_PORT))  # the grant is IPv4's
        # IPv6 works through the input policy (neighbour discovery is let in): a knock over
        # IPv6 opens the port to the client's IPv6 address.
        self.knock("client", [7100, 8100, 9100], dst=GW_WAN6)
        self.assertTrue(self.wait_open("client", GW_WAN6, OWN_PORT))
        self.assertFalse(self.tcp_open("client2", GW_WAN6, OWN_PORT))
        # Management stays closed to a knocker.
        self.assertFalse(self.tcp_open("client", kglab.GW_WAN4, CONSOLE))
        self.assertFalse(self.tcp_open("client", kglab.GW_LAN4, 22))
        r = self.ctl("revoke", kglab.CLIENT4)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertFalse(self.tcp_open("client", kglab.GW_WAN4, OWN_PORT),
                         self.lab.run("gw", ["nft", "list", "ruleset"]).stdout + r.stdout)


if __name__ == "__main__":
    kglab.main()
