#!/usr/bin/env python3
"""SPA under a bad-HMAC flood (docs/BENCHMARKS.md, "SPA"), knockgate and fwknopd 2.6.10
measured in one run, in one namespace lab (tests/integration/kglab.py), as root.

flood_gen sends UDP datagrams of 204 base64 bytes (a real packet's length, wrong HMAC) from
spoofed, ever-new sources to port 62201 at a fixed rate while knockgate-knock sends 20
valid SPA packets 0.4 s apart. Per rate: valid packets accepted, the daemon's CPU.

  sudo bench/spa_flood_bench.py --build build/spa-rel [--knockgate-rates 50000,100000,200000]

Prints Markdown. Traffic stays inside the lab's namespaces.
"""
import argparse
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import kglab  # noqa: E402

KEY = "bench-spa-key"
HMAC = "bench-spa-hmac-key"
LEGIT = 20






def flood_and_knock(lab, build, rate, seconds):
    gw_mac = lab.run("gw", ["cat", "/sys/class/net/kg-wan/address"]).stdout.strip()
    gen = subprocess.Popen(["ip", "netns", "exec", lab.ns("client"),
                            os.path.join(build, "bench", "flood_gen"), "eth0", gw_mac,
                            kglab.GW_WAN4, "62201", str(rate), str(seconds), "spa"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)
    for _ in range(LEGIT):
        lab.run("client", [os.path.join(build, "tools", "knock", "knockgate-knock"), "--spa",
                           "-D", kglab.GW_WAN4, "-A", "tcp/22", "-s", "--key-rijndael", KEY,
                           "--key-hmac", HMAC, "-U", "alice"])
        time.sleep(0.4)
    out = gen.communicate()[0]
    m = re.search(r"\((\d+) pkt/s\)", out)
    return float(m.group(1)) if m else 0.0


def run_knockgate(lab, build, rate, seconds):
    w = lab.dir("kg%d" % time.monotonic_ns())
    conf = os.path.join(w, "knockgate.conf")
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("[options]\n LogFile = {w}/knock.log\n Interface = kg-wan\n WanInterface = kg-wan\n RuntimeDir = {w}\n"
                " Database = {w}/kg.db\n PidFile = {w}/policyd.pid\n CaptureUser = nobody\n"
                "[profile ssh-only]\n direction = inbound\n expose = tcp/22 -> 192.168.50.10:22\n"
                "[spa gate]\n grant = ssh-only\n SOURCE = ANY\n KEY = %s\n HMAC_KEY = %s\n"
                .replace("{w}", w) % (KEY, HMAC))
    pol = lab.start("gw", [os.path.join(build, "daemons", "policyd", "knockgate-policyd"), "-c",
                           conf], os.path.join(w, "policyd.out"))
    assert pol.wait_for_output(r"listening on", 5), pol.output()
    cap = lab.start("gw", [os.path.join(build, "daemons", "captured", "knockgate-captured"), "-c",
                           conf], os.path.join(w, "captured.out"))
    assert cap.wait_for_output(r"connected to policyd", 5), cap.output()
    pid = kglab.real_pid(cap.pid)
    c0 = kglab.cpu_seconds(pid)
    achieved = flood_and_knock(lab, build, rate, seconds)
    time.sleep(1.0)
    c1 = kglab.cpu_seconds(pid)
    db = sqlite3.connect(os.path.join(w, "kg.db"))
    accepted = db.execute("SELECT count(*) FROM audit WHERE kind='spa_accepted'").fetchone()[0]
    db.close()
    if os.environ.get("KG_BENCH_DEBUG"):
        print(cap.output()[-1500:], file=sys.stderr)
    cap.stop()
    pol.stop()
    return achieved, accepted, c1 - c0


def run_fwknopd(lab, build, rate, seconds):
    w = lab.dir("fwk%d" % time.monotonic_ns())
    acc = os.path.join(w, "access.conf")
    with open(acc, "w") as f:
        f.write("SOURCE ANY\nKEY %s\nHMAC_KEY %s\n" % (KEY, HMAC))
    os.chmod(acc, 0o600)
    conf = os.path.join(w, "fwknopd.conf")
    with open(conf, "w") as f:
        f.write("PCAP_INTF kg-wan\nENABLE_PCAP_PROMISC N\n")
    os.chmod(conf, 0o600)
    d = lab.start("gw", [shutil.which("fwknopd") or "/usr/sbin/fwknopd", "-f", "-t", "-c", conf,
                         "-a", acc, "-d", os.path.join(w, "digest"), "-p",
                         os.path.join(w, "pid"), "-r", w, "-v"], os.path.join(w, "fwknopd.out"))
    assert d.wait_for_output(r"main event loop", 10), d.output()
    pid = kglab.real_pid(d.pid)
    c0 = kglab.cpu_seconds(pid)
    achieved = flood_and_knock(lab, build, rate, seconds)
    time.sleep(1.5)
    c1 = kglab.cpu_seconds(pid)
    accepted = d.output().count("skipping firewall manipulation")
    d.stop()
    return achieved, accepted, c1 - c0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build", "spa-rel"))
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--knockgate-rates", default="50000,100000,200000")
    ap.add_argument("--fwknopd-rates", default="1000,5000")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    reason = kglab.skip_reason()
    if reason:
        print("skipped: " + reason)
        return 77
    rows = []
    with kglab.Lab(mode="wan") as lab:
        for rate in [int(r) for r in args.knockgate_rates.split(",") if r]:
            rows.append(("knockgate",) + (rate,) + run_knockgate(lab, build, rate, args.seconds))
        for rate in [int(r) for r in args.fwknopd_rates.split(",") if r]:
            rows.append(("fwknopd 2.6.10",) + (rate,) + run_fwknopd(lab, build, rate, args.seconds))
    print("| daemon | flood asked (pkt/s) | flood sent (pkt/s) | valid SPA accepted | daemon CPU |")
    print("|---|---|---|---|---|")
    for name, rate, achieved, accepted, cpu in rows:
        span = args.seconds + 2.0
        print("| %s | %d | %.0f | %d/%d | %.0f %% |" % (name, rate, achieved, accepted, LEGIT,
                                                       100.0 * cpu / span))
    return 0


if __name__ == "__main__":
    sys.exit(main())
