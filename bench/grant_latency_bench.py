#!/usr/bin/env python3
"""Knock packet → grant installed, end to end (docs/BENCHMARKS.md, "policyd grants").

The client stamps the time after its last knock SYN; `knockgatectl watch` (a real
subscriber of policyd's grant broadcast) stamps the arrival of the grant's add/extend
delta, which policyd sends only after the grant is committed and its nft element is in
the kernel. So each figure is an upper bound of knock → installed.

  sudo bench/grant_latency_bench.py --build build/release [--knocks 1000]
"""
import argparse, json, os, select, subprocess, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import kglab  # noqa: E402

KNOCKER = r"""
import socket, sys, time
host, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    for p in (7000, 8000, 9000):
        s = socket.socket(); s.setblocking(False); s.connect_ex((host, p)); s.close()
    print(time.time_ns(), flush=True)
    if not sys.stdin.readline():
        break
"""




def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--knocks", type=int, default=1000)
    a = ap.parse_args()
    b = os.path.abspath(a.build)
    with kglab.Lab(mode="wan") as lab:
        d = lab.dir("grantlat")
        os.chmod(d, 0o755)
        conf = os.path.join(d, "k.conf")
        with open(conf, "w") as f:
            f.write("[options]\n  Interface = kg-wan\n  WanInterface = kg-wan\n  Database = %s/kg.db\n  RuntimeDir = %s\n"
                    "  PidFile = %s/policyd.pid\n"
                    "  CaptureUser = nobody\n  VerdictUser = nobody\n"
                    "[profile ssh-only]\n  direction = inbound\n"
                    "  expose = tcp/22 -> 192.168.50.10:22\n  fwmark = 0x10000000/0xff000000\n"
                    "  table = 100\n  lifetime = 1h\n  max_lifetime = 8h\n"
                    "[openSSH]\n  sequence = 7000,8000,9000\n  seq_timeout = 5\n"
                    "  tcpflags = syn\n  grant = ssh-only\n" % (d, d, d))
        pol = lab.start("gw", [b + "/daemons/policyd/knockgate-policyd", "-c", conf], d + "/p.out")
        pol.wait_for_output(r"ready", 10)
        cap = lab.start("gw", [b + "/daemons/captured/knockgate-captured", "-c", conf], d + "/c.out")
        cap.wait_for_output(r"connected to policyd", 10)
        watch = subprocess.Popen(["ip", "netns", "exec", lab.ns("gw"), b + "/tools/ctl/knockgatectl",
                                  "-c", conf, "watch"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        knocker = subprocess.Popen(["ip", "netns", "exec", lab.ns("client"), "python3", "-c",
                                    KNOCKER, kglab.GW_WAN4, str(a.knocks)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        watch_lines = kglab.LineReader(watch.stdout)
        lat, missed = [], 0
        for _ in range(a.knocks):
            sent = int(knocker.stdout.readline())
            got = watch_lines.first(lambda line: '"add"' in line or '"extend"' in line, 2.0)
            if got is None:
                missed += 1
            else:
                lat.append((got - sent) / 1e6)
            time.sleep(0.01)
            watch_lines.drain()  # nothing of this knock may be taken for the next one's
            knocker.stdin.write("\n")
            knocker.stdin.flush()
        knocker.stdin.close()
        knocker.wait()
        watch.terminate()
        print("knock -> grant installed (broadcast received), %d knocks: p50 %.2f ms, p99 %.2f ms, "
              "max %.2f ms, missed %d" % (a.knocks, kglab.percentile(lat, 50), kglab.percentile(lat, 99), max(lat), missed))


if __name__ == "__main__":
    main()
