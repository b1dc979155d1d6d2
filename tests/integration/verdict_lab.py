"""Pieces the verdictd integration tests and benchmarks share: the gate ruleset installed
by hand in the gw namespace (until policyd's own ruleset is merged), listeners and
connect probes run inside lab namespaces."""
import os
import re
import time

import kglab

BUILD = os.environ.get("KG_BUILD_DIR") or os.path.join(kglab.SOURCE_DIR, "build", "debug")
VERDICTD = os.path.join(BUILD, "daemons", "verdictd", "knockgate-verdictd")

SSH_HOST = "192.168.50.10"
VM_HOST = "192.168.50.20"
LOG_HOST = "192.168.60.5"
MASK = 0xff000000
SSH_MARK = 0x10000000
SYSLOG_MARK = 0x20000000

CONF = """[options]
  Interface = kg-wan
  WanInterface = kg-wan
  LanInterface = kg-lan
  RuntimeDir = {w}
  Database = {w}/knockgate.db
  PidFile = {w}/policyd.pid
  LogFile = {w}/knock.log
  CaptureUser = nobody
  VerdictUser = nobody
  VerdictQueue = 0
  VerdictHoldMs = {hold}
{extra}
[profile ssh-only]
  direction = inbound
  expose = tcp/22 -> 192.168.50.10:22
  fwmark = 0x10000000/0xff000000
  table = 100
  lifetime = 1h

[profile syslog-only]
  direction = egress
  sources = 192.168.50.20
  allow = udp/514,tcp/514
  destination = 192.168.60.5
  fwmark = 0x20000000/0xff000000
  table = 120
  route = default via 192.168.70.2
  lifetime = 1h
"""

# The knockd-style door the end-to-end tests and the benchmark knock: three SYNs, then the
# ssh-only grant.
SSH_DOOR = """
[openSSH]
  sequence = 7000,8000,9000
  seq_timeout = 5
  tcpflags = syn
  grant = ssh-only
"""

# The data path of docs/datapath.md, reduced to what these tests need. This kernel has no
# nft `queue` statement, so the queue rule is xt NFQUEUE through iptables-nft, in mangle
# FORWARD (after DNAT: verdictd sees the LAN target). No --queue-bypass: fail-closed.
RULESET = """
table inet kgtest {
  chain prerouting_nat {
    type nat hook prerouting priority dstnat;
    iifname "kg-wan" tcp dport 22 dnat ip to 192.168.50.10:22
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    meta mark & 0xff000000 == 0x10000000 ip daddr 192.168.50.10 tcp dport 22 accept
    meta mark & 0xff000000 == 0x20000000 ip daddr 192.168.60.5 meta l4proto { tcp, udp } th dport 514 accept
    iifname "kg-lan" ip saddr != 192.168.50.20 accept
  }
  chain postrouting_mark {
    type filter hook postrouting priority mangle;
    meta mark & 0xff000000 != 0 ct mark set meta mark
  }
  chain postrouting_nat {
    type nat hook postrouting priority srcnat;
    oifname "kg-wan" masquerade
  }
}
"""

QUEUE_RULES = [
    ["-i", "kg-wan", "-m", "conntrack", "--ctstate", "NEW"],
    ["-s", VM_HOST, "-m", "conntrack", "--ctstate", "NEW"],
]


def install_gate(lab, static_accept=False):
    """The gate in gw. static_accept: the benchmark baseline, forward accepts without a
    queue (same NAT, same conntrack)."""
    text = RULESET
    if static_accept:
        text = text.replace("policy drop;", "policy accept;")
    lab.run("gw", ["nft", "-f", "-"], input=text)
    if not static_accept:
        for match in QUEUE_RULES:
            lab.run("gw", ["iptables-nft", "-t", "mangle", "-A", "FORWARD"] + match +
                    ["-j", "NFQUEUE", "--queue-num", "0"])


LISTENER = r"""
import socket, sys, threading, os
out = open(sys.argv[1], "a", buffering=1)
ports = [int(p) for p in sys.argv[2:]]
def tcp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(512)
    while True:
        c, a = s.accept()
        def serve(c=c, a=a):
            try:
                while True:
                    d = c.recv(4096)
                    if not d: break
                    out.write("tcp %d %s %s\n" % (port, a[0], d.decode(errors="replace").strip()))
                    c.sendall(d)
            except OSError:
                pass
            c.close()
        threading.Thread(target=serve, daemon=True).start()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        d, a = s.recvfrom(4096)
        out.write("udp %d %s %s\n" % (port, a[0], d.decode(errors="replace").strip()))
for p in ports:
    threading.Thread(target=tcp, args=(p,), daemon=True).start()
    threading.Thread(target=udp, args=(p,), daemon=True).start()
print("listening", flush=True)
threading.Event().wait()
"""

PROBE = r"""
import socket, sys, time
host, port, timeout, count = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
msg = sys.argv[5] if len(sys.argv) > 5 else ""
for i in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    t = time.monotonic()
    try:
        s.connect((host, port))
        if msg:
            s.sendall((msg + "\n").encode())
            s.recv(100)
        print("ok %.6f" % (time.monotonic() - t), flush=True)
    except OSError as e:
        print("fail %.6f %s" % (time.monotonic() - t, e.__class__.__name__), flush=True)
    s.close()
"""


class Listener:
    def __init__(self, lab, host, ports, name):
        self.file = lab.path("%s.recv" % name)
        script = lab.path("listener.py")
        with open(script, "w") as f:
            f.write(LISTENER)
        self.d = lab.start(host, ["python3", "-u", script, self.file] + [str(p) for p in ports],
                           lab.path("%s.out" % name))
        assert self.d.wait_for_output("listening", 5), self.d.output()

    def lines(self):
        try:
            with open(self.file) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def wait_for(self, pattern, timeout=3.0):
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(rx.search(l) for l in self.lines()):
                return True
            time.sleep(0.02)
        return False


def probe(lab, host, dst, port, timeout=1.0, count=1, msg=""):
    """TCP connects from `host`; a list of (ok, seconds)."""
    script = lab.path("probe.py")
    with open(script, "w") as f:
        f.write(PROBE)
    r = lab.run(host, ["python3", script, dst, str(port), str(timeout), str(count), msg],
                timeout=timeout * count + 30)
    res = []
    for line in r.stdout.splitlines():
        parts = line.split()
        res.append((parts[0] == "ok", float(parts[1])))
    return res


def send_udp(lab, host, dst, port, text):
    lab.run(host, ["python3", "-c",
                   "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                   "s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))",
                   dst, str(port), text])


# The SYN race (kernel-notes.md): per line on stdin, three knock SYNs (non-blocking
# connects to 7000, 8000, 9000) and, 0 µs after the last one left, a connect to port 22;
# prints "ok SECONDS" or "fail SECONDS". Arguments: HOST ROUNDS.
KNOCK_CONNECT = r"""
import socket, sys, time
host, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    if not sys.stdin.readline():
        break
    knocks = []
    for port in (7000, 8000, 9000):
        k = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        k.setblocking(False)
        k.connect_ex((host, port))
        knocks.append(k)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    t = time.monotonic()
    try:
        s.connect((host, 22))
        print("ok %.6f" % (time.monotonic() - t), flush=True)
    except OSError as e:
        print("fail %.6f" % (time.monotonic() - t), flush=True)
    s.close()
    for k in knocks:
        k.close()
"""

def write_conf(lab, hold_ms=25, extra=""):
    w = lab.dir("verdictd%d" % time.monotonic_ns())
    path = os.path.join(w, "knockgate.conf")
    with open(path, "w") as f:
        f.write(CONF.format(w=w, hold=hold_ms, extra=extra))
    return path, w


def start_verdictd(lab, conf, name="verdictd", debug=True):
    argv = [VERDICTD, "-c", conf] + (["-D"] if debug else ["-v"])
    d = lab.start("gw", argv, lab.path("%s-%d.out" % (name, time.monotonic_ns())))
    assert d.wait_for_output(r"serving queue", 5), d.output()
    return d


def capabilities(pid):
    caps = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("CapEff", "CapPrm", "CapInh", "CapAmb", "Uid"):
                caps[k] = v.strip()
    return caps
