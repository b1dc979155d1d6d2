#!/usr/bin/env python3
"""policyd before and after a change, in one run (docs/BENCHMARKS.md, "policyd's two
processes"): the figures that must hold across it, measured on the real daemons in the
namespace lab, the two builds alternating round by round.

- restart with N active grants: from starting knockgate-policyd on a database holding N
  grants (a fresh copy each time, the kernel state cleared) until its log says the start
  reconcile is done — the table replaced, N set elements, ip rules;
- knock -> grant installed: the client's last knock SYN to a subscriber holding the grant's
  add delta (grant_latency_bench.py).

  sudo bench/policyd_split_bench.py --build A --build B [--grants 100000] [--knocks 500] [--rounds 3]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import grant_latency_bench  # noqa: E402
import kglab  # noqa: E402

CONF = """[options]
  Interface = kg-wan
  WanInterface = kg-wan
  Database = {d}/kg.db
  RuntimeDir = {d}
  PidFile = {d}/policyd.pid
  CaptureUser = nobody
  VerdictUser = nobody
[profile ssh-only]
  direction = inbound
  expose = tcp/22 -> 192.168.50.10:22
  fwmark = 0x10000000/0xff000000
  table = 100
  lifetime = 8h
  max_lifetime = 8h
"""


def seed(lab, build, d, grants):
    """A database with `grants` active grants, made by the build's own policyd."""
    conf = os.path.join(d, "k.conf")
    with open(conf, "w") as f:
        f.write(CONF.format(d=d))
    pol = lab.start("gw", [grant_latency_bench.program(build, "knockgate-policyd"), "-c", conf],
                    d + "/seed.out")
    if not pol.wait_for_output(r"ready:", 20):
        raise SystemExit("policyd did not start:\n" + pol.output())
    ctl = grant_latency_bench.program(build, "knockgatectl")
    batch = []
    for i in range(grants):
        batch.append("10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255))
        if len(batch) == 3000 or i == grants - 1:
            lab.run("gw", [ctl, "-c", conf, "grant-many", "ssh-only"] + batch, timeout=120)
            batch = []
    pol.stop(timeout=30)
    return conf


def restart_seconds(lab, build, d, seeded_db, grants):
    for suffix in ("", "-wal", "-shm", "-revocations"):
        p = os.path.join(d, "kg.db" + suffix)
        if os.path.exists(p):
            os.remove(p)
    shutil.copy(seeded_db, os.path.join(d, "kg.db"))
    lab.run("gw", ["nft", "delete", "table", "inet", "knockgate"], check=False)
    out = os.path.join(d, "restart.out")
    if os.path.exists(out):
        os.remove(out)
    t0 = time.monotonic()
    pol = lab.start("gw", [grant_latency_bench.program(build, "knockgate-policyd"), "-c",
                           os.path.join(d, "k.conf")], out)
    rx = re.compile(r"start: %d grant\(s\)" % grants)
    while not rx.search(pol.output()):
        if not pol.alive() or time.monotonic() - t0 > 60:
            raise SystemExit("no start reconcile:\n" + pol.output()[-2000:])
        time.sleep(0.005)
    took = time.monotonic() - t0
    pol.stop(timeout=30)
    return took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", action="append", required=True)
    ap.add_argument("--grants", type=int, default=100000)
    ap.add_argument("--knocks", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    builds = [os.path.abspath(b) for b in a.build]
    restart = {b: [] for b in builds}
    p99 = {b: [] for b in builds}
    p50 = {b: [] for b in builds}
    with kglab.Lab(mode="wan") as lab:
        d = lab.dir("split")
        os.chmod(d, 0o777)
        seed(lab, builds[0], d, a.grants)
        seeded = os.path.join(lab.dir("seed"), "seeded.db")
        subprocess.run(["sqlite3", os.path.join(d, "kg.db"), ".backup " + seeded], check=True)
        for r in range(a.rounds):
            for b in builds if r % 2 == 0 else reversed(builds):
                restart[b].append(restart_seconds(lab, b, d, seeded, a.grants))
    for r in range(a.rounds):
        for b in builds if r % 2 == 0 else reversed(builds):
            lat, missed = grant_latency_bench.measure(b, a.knocks)
            p50[b].append(kglab.percentile(lat, 50))
            p99[b].append(kglab.percentile(lat, 99))
    for b in builds:
        print("%s\n  restart with %d grants to reconciled: median %.2f s (%s)\n"
              "  knock -> grant installed, %d knocks x %d rounds: p50 median %.2f ms, "
              "p99 median %.2f ms (%s)" %
              (b, a.grants, statistics.median(restart[b]),
               ", ".join("%.2f" % x for x in restart[b]), a.knocks, a.rounds,
               statistics.median(p50[b]), statistics.median(p99[b]),
               ", ".join("%.2f" % x for x in p99[b])))


if __name__ == "__main__":
    main()
