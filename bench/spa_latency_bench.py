#!/usr/bin/env python3
"""Valid SPA packet → access installed in the kernel, knockgate vs fwknopd, one run, one
namespace lab (docs/BENCHMARKS.md, "SPA"), as root:

  sudo bench/spa_latency_bench.py --build build/release [--packets 500]

Packets are made by the real fwknop client (`-T -B FILE -b`: built, HMAC-SHA256, saved, not
sent) right before each implementation's run, so every one is fresh and unique. A sender in
the client namespace sends one packet, stamps the time, and waits; `nft monitor new
elements` in the gateway namespace — the same observer for both — stamps the moment the
source's element appears in a set. Between packets the access is removed again (untimed),
so every packet creates access rather than refreshing it.

  knockgate  captured (pcap) → SPA verified → event → policyd: replay check, grant and
             audit rows committed, element added to the profile's grant set (libnftables)
  fwknopd    fwknopd 2.6.10 (pcap) → SPA verified → CMD_CYCLE_OPEN runs
             `nft add element inet kgpeer allow { $IP timeout 30s }` (the usual way to
             use fwknopd with nftables)

Prints Markdown. Traffic stays inside the lab's namespaces.
"""
import argparse
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import kglab  # noqa: E402

KEY = "bench-spa-key"
HMAC = "bench-spa-hmac-key"
PORT = 62201

# One packet per line on stdin's cue: send it, print the time it left.
SENDER = r"""
import socket, sys, time
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
packets = [l.strip() for l in open(path) if l.strip()]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for p in packets:
    if not sys.stdin.readline():
        break
    s.sendto(p.encode(), (host, port))
    print(time.time_ns(), flush=True)
"""


def make_packets(n, path):
    with kglab.fwknop_home() as (home, rc):
        for _ in range(n):
            subprocess.run([shutil.which("fwknop"), "--rc-file", rc, "--no-save-args",
                            "-D", kglab.GW_WAN4, "-A", "tcp/22", "-a", kglab.CLIENT4,
                            "--key-rijndael", KEY, "--key-hmac", HMAC, "--use-hmac",
                            "-U", "alice", "-T", "-B", path, "-b"],
                           env={"HOME": home, "PATH": os.environ["PATH"]},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    with open(path) as f:
        got = sum(1 for line in f if line.strip())
    if got != n:
        raise RuntimeError("fwknop saved %d of %d packets" % (got, n))
    os.chmod(path, 0o644)


class Monitor(kglab.LineReader):
    """`nft monitor new elements` in the gateway."""

    def __init__(self, lab):
        self.p = subprocess.Popen(["ip", "netns", "exec", lab.ns("gw"), "nft", "monitor", "new",
                                   "elements"], stdout=subprocess.PIPE)
        super().__init__(self.p.stdout)

    def close(self):
        self.p.terminate()
        self.p.wait()


def measure(lab, packets_path, n, remove_access):
    mon = Monitor(lab)
    time.sleep(0.3)
    sender = subprocess.Popen(["ip", "netns", "exec", lab.ns("client"), "python3", "-c", SENDER,
                               kglab.GW_WAN4, str(PORT), packets_path],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lat, missed = [], 0
    try:
        for _ in range(n):
            sender.stdin.write("\n")
            sender.stdin.flush()
            sent = int(sender.stdout.readline())
            got = mon.first(lambda line: kglab.CLIENT4 in line, 2.0)
            if got is None:
                missed += 1
            else:
                lat.append((got - sent) / 1e6)
            remove_access()
            time.sleep(0.005)
            mon.drain()
    finally:
        sender.stdin.close()
        sender.wait()
        mon.close()
    return lat, missed




def run_knockgate(lab, build, n):
    d = lab.dir("kg-spa")
    os.chmod(d, 0o755)
    conf = os.path.join(d, "k.conf")
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("[options]\n  Interface = kg-wan\n  WanInterface = kg-wan\n  Database = %s/state/kg.db\n  RuntimeDir = %s\n"
                "  PidFile = %s/policyd.pid\n"
                "  CaptureUser = nobody\n"
                "[profile ssh-only]\n  direction = inbound\n"
                "  expose = tcp/22 -> 192.168.50.10:22\n  fwmark = 0x10000000/0xff000000\n"
                "  table = 100\n  lifetime = 1h\n"
                "[spa gate]\n  port = %d\n  proto = udp\n  grant = ssh-only\n"
                "  SOURCE = ANY\n  KEY = %s\n  HMAC_KEY = %s\n" % (d, d, d, PORT, KEY, HMAC))
    pol = lab.start("gw", [build + "/daemons/policyd/knockgate-policyd", "-c", conf],
                    d + "/policyd.out")
    assert pol.wait_for_output(r"ready", 10), pol.output()
    cap = lab.start("gw", [build + "/daemons/captured/knockgate-captured", "-c", conf],
                    d + "/captured.out")
    assert cap.wait_for_output(r"connected to policyd", 10), cap.output()
    packets = os.path.join(d, "packets")
    make_packets(n, packets)
    ctl = build + "/tools/ctl/knockgatectl"

    def revoke():
        lab.run("gw", [ctl, "-c", conf, "revoke", kglab.CLIENT4], check=False)

    try:
        return measure(lab, packets, n, revoke)
    finally:
        cap.stop()
        pol.stop()


def run_fwknopd(lab, n):
    d = lab.dir("fwknopd-spa")
    os.chmod(d, 0o755)
    lab.run("gw", ["nft", "-f", "-"], input="table inet kgpeer {\n set allow {\n"
            "  type ipv4_addr\n  flags timeout\n }\n}\n")
    acc = os.path.join(d, "access.conf")
    with open(acc, "w") as f:
        f.write("SOURCE ANY\nKEY %s\nHMAC_KEY %s\nCMD_CYCLE_OPEN %s add element inet kgpeer "
                "allow { $IP timeout 30s }\nCMD_CYCLE_CLOSE __NONE__\nCMD_CYCLE_TIMER 30\n"
                % (KEY, HMAC, shutil.which("nft") or "/usr/sbin/nft"))
    os.chmod(acc, 0o600)
    conf = os.path.join(d, "fwknopd.conf")
    with open(conf, "w") as f:
        f.write("PCAP_INTF kg-wan\nENABLE_PCAP_PROMISC N\n")
    os.chmod(conf, 0o600)
    fw = lab.start("gw", [shutil.which("fwknopd") or "/usr/sbin/fwknopd", "-f", "-c", conf,
                          "-a", acc, "-d", os.path.join(d, "digest"), "-p",
                          os.path.join(d, "pid"), "-r", d], os.path.join(d, "fwknopd.out"))
    assert fw.wait_for_output(r"main event loop", 10), fw.output()
    packets = os.path.join(d, "packets")
    make_packets(n, packets)

    def remove():
        lab.run("gw", ["nft", "delete", "element", "inet", "kgpeer", "allow",
                       "{ %s }" % kglab.CLIENT4], check=False)

    try:
        return measure(lab, packets, n, remove)
    finally:
        fw.stop()
        lab.run("gw", ["nft", "delete", "table", "inet", "kgpeer"], check=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build", "release"))
    ap.add_argument("--packets", type=int, default=500)
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    reason = kglab.skip_reason()
    if reason:
        sys.exit("spa_latency_bench: " + reason)
    if not shutil.which("fwknop"):
        sys.exit("spa_latency_bench: the fwknop client is not installed")
    kglab.install_handlers()
    rows = []
    with kglab.Lab(mode="wan") as lab:
        rows.append(("knockgate",) + run_knockgate(lab, build, a.packets))
        if shutil.which("fwknopd") or os.path.exists("/usr/sbin/fwknopd"):
            rows.append(("fwknopd 2.6.10 + nft (CMD_CYCLE_OPEN)",) + run_fwknopd(lab, a.packets))
    print("## SPA packet → access installed (%d packets each)\n" % a.packets)
    print("%s, %d vCPU, kernel %s; `sudo bench/spa_latency_bench.py --build %s`\n"
          % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.cpu_count(),
             platform.release(), os.path.relpath(build, os.path.join(HERE, ".."))))
    print("| implementation | p50 ms | p99 ms | max ms | missed |")
    print("|---|---|---|---|---|")
    for name, lat, missed in rows:
        if lat:
            print("| %s | %.2f | %.2f | %.2f | %d |" % (name, kglab.percentile(lat, 50), kglab.percentile(lat, 99),
                                                       max(lat), missed))
        else:
            print("| %s | — | — | — | %d |" % (name, missed))


if __name__ == "__main__":
    main()
