#!/usr/bin/env python3
"""Capture benchmarks: knockgate and knockd 0.8 measured in one run, in one
namespace lab (tests/integration/kglab.py), as root:

  latency  last knock packet sent → the door's command started (it writes to a FIFO that
           this script reads); N knocks from one client, p50/p99/max per implementation.
  flood    flood_gen sends TCP SYNs from spoofed, ever-new sources (each one starts an
           attempt: the worst case) to the door's first port at increasing rates while a
           legitimate client knocks 100 times; per rate: knocks detected, daemon CPU, peak
           RSS, generator's achieved rate.

  sudo bench/capture_bench.py --build build/release [--knocks 1000] [--only latency|flood]

Prints Markdown for docs/BENCHMARKS.md. Traffic stays inside the lab's namespaces.
"""
import argparse
import os
import platform
import select
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import kglab  # noqa: E402

DOOR_PORTS = (7000, 8000, 9000)

KNOCKER = r"""
import socket, sys, time
host, n, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ports = [int(p) for p in sys.argv[4].split(",")]
for i in range(n):
    for p in ports:
        s = socket.socket(); s.setblocking(False); s.connect_ex((host, p)); s.close()
    print(time.time_ns(), flush=True)
    if gap < 0:
        if not sys.stdin.readline():
            break
    else:
        time.sleep(gap)
"""


def conf_text(impl, fifo, logfile, runtime, db):
    opts = ["[options]", "  LogFile = " + logfile, "  Interface = kg-wan"]
    if impl == "knockgate":
        opts += ["  RuntimeDir = " + runtime, "  Database = " + db,
                 "  PidFile = " + db + ".pid", "  CaptureUser = nobody"]
    door = ["[bench]", "  sequence = " + ",".join(map(str, DOOR_PORTS)), "  seq_timeout = 10",
            "  tcpflags = syn", "  command = echo %IP% > " + fifo]
    return "\n".join(opts + [""] + door) + "\n"


class Impl:
    """knockd, or knockgate's policyd + captured, running in the lab's gateway."""

    def __init__(self, lab, name, build, tag):
        self.lab, self.name, self.build = lab, name, build
        d = lab.dir("bench-" + tag)
        self.fifo = os.path.join(d, "cmd.fifo")
        os.mkfifo(self.fifo)
        os.chmod(self.fifo, 0o666)
        self.conf = os.path.join(d, "bench.conf")
        with open(self.conf, "w") as f:
            f.write(conf_text(name, self.fifo, os.path.join(d, "knock.log"), d,
                              os.path.join(d, "kg.db")))
        # Read end first, non-blocking, plus a writer of our own so it never sees EOF.
        self.rfd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.wfd = os.open(self.fifo, os.O_WRONLY)
        self.buf = b""
        self.procs = []
        self.dir = d

    def start(self):
        if self.name == "knockd":
            p = self.lab.start("gw", ["knockd", "-i", "kg-wan", "-c", self.conf],
                               os.path.join(self.dir, "knockd.out"))
            self.procs = [p]
            ok = p.wait_for_output(r"listening on", 5, path=os.path.join(self.dir, "knock.log"))
        else:
            pol = self.lab.start("gw", [os.path.join(self.build, "daemons/policyd/knockgate-policyd"),
                                        "-c", self.conf], os.path.join(self.dir, "policyd.out"))
            if not pol.wait_for_output(r"listening|ready|Listening", 5):
                time.sleep(0.5)
            cap = self.lab.start("gw", [os.path.join(self.build, "daemons/captured/knockgate-captured"),
                                        "-c", self.conf], os.path.join(self.dir, "captured.out"))
            self.procs = [cap, pol]
            ok = cap.wait_for_output(r"connected to policyd", 5)
        if not ok:
            raise RuntimeError("%s did not start:\n%s" % (self.name,
                               "\n".join(p.output()[-2000:] for p in self.procs)))
        time.sleep(0.3)

    def stop(self):
        for p in self.procs:
            p.stop()
        self.procs = []

    def lines(self, timeout):
        """Command lines written since the last call, waiting up to `timeout` for one."""
        out = []
        r, _, _ = select.select([self.rfd], [], [], timeout)
        if r:
            try:
                self.buf += os.read(self.rfd, 65536)
            except BlockingIOError:
                pass
            *done, self.buf = self.buf.split(b"\n")
            out = [(time.time_ns(), x.decode()) for x in done]
        return out

    def rusage(self):
        """(cpu seconds, peak RSS KiB) per daemon process."""
        res = {}
        tick = os.sysconf("SC_CLK_TCK")
        for p in self.procs:
            pid = kglab.real_pid(p.pid)
            try:
                with open("/proc/%d/stat" % pid) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                cpu = (int(fields[11]) + int(fields[12])) / tick
                hwm = 0
                with open("/proc/%d/status" % pid) as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            hwm = int(line.split()[1])
                res[os.path.basename(p.argv[0])] = (cpu, hwm)
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
        return res






def bench_latency(lab, impl, n):
    impl.start()
    knocker = subprocess.Popen(["ip", "netns", "exec", lab.ns("client"), "python3", "-c", KNOCKER,
                                kglab.GW_WAN4, str(n), "-1", ",".join(map(str, DOOR_PORTS))],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lat, missed = [], 0
    for _ in range(n):
        sent = int(knocker.stdout.readline())
        got = impl.lines(2.0)
        if got:
            lat.append((got[0][0] - sent) / 1e6)
        else:
            missed += 1
        knocker.stdin.write("\n")
        knocker.stdin.flush()
    knocker.stdin.close()
    knocker.wait()
    impl.stop()
    return lat, missed


def client_mac_target(lab):
    r = lab.run("gw", ["cat", "/sys/class/net/kg-wan/address"])
    return r.stdout.strip()


def bench_flood(lab, impl, rate, flood_gen, seconds=12, knocks=100):
    impl.start()
    before = impl.rusage()
    gw_mac = client_mac_target(lab)
    gen = subprocess.Popen(["ip", "netns", "exec", lab.ns("client"), flood_gen, "eth0", gw_mac,
                            kglab.GW_WAN4, str(DOOR_PORTS[0]), str(rate), str(seconds)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)  # the flood is on before the first legitimate knock
    gap = (seconds - 3.0) / knocks
    knocker = subprocess.Popen(["ip", "netns", "exec", lab.ns("client"), "python3", "-c", KNOCKER,
                                kglab.GW_WAN4, str(knocks), str(gap), ",".join(map(str, DOOR_PORTS))],
                               stdout=subprocess.DEVNULL)
    detected = 0
    end = time.monotonic() + seconds + 3
    while time.monotonic() < end:
        for _, line in impl.lines(0.2):
            if line.strip() == kglab.CLIENT4:
                detected += 1
        if knocker.poll() is not None and gen.poll() is not None and detected >= knocks:
            break
    knocker.wait()
    gen_out = gen.communicate()[0]
    time.sleep(1.0)
    for _, line in impl.lines(0.1):
        if line.strip() == kglab.CLIENT4:
            detected += 1
    after = impl.rusage()
    impl.stop()
    achieved = 0.0
    for tok in gen_out.split("("):
        if "pkt/s" in tok:
            achieved = float(tok.split()[0])
    usage = {k: (after[k][0] - before.get(k, (0, 0))[0], after[k][1]) for k in after}
    return detected, achieved, usage, seconds


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d vCPU, kernel %s" % (model, os.cpu_count(), platform.release())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build", "release"))
    ap.add_argument("--knocks", type=int, default=1000)
    ap.add_argument("--only", choices=["latency", "flood"])
    ap.add_argument("--knockd-rates", default="1000,3000,6000,12000")
    ap.add_argument("--knockgate-rates", default="12000,30000,60000,120000,250000,500000")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    flood_gen = os.path.join(build, "bench", "flood_gen")
    reason = kglab.skip_reason()
    if reason:
        sys.exit("capture_bench: " + reason)
    kglab.install_handlers()
    print("## Capture: knock → action, and spoofed-source floods (knockgate vs knockd 0.8)\n")
    print("%s, %s; `sudo bench/capture_bench.py --build %s`\n"
          % (time.strftime("%Y-%m-%d"), machine(), os.path.relpath(build, os.path.join(HERE, ".."))))
    with kglab.Lab() as lab:
        if args.only in (None, "latency"):
            print("### Knock-to-action latency (%d knocks, last knock sent → command started)\n" % args.knocks)
            print("| implementation | p50 ms | p99 ms | max ms | missed |")
            print("|---|---|---|---|---|")
            for name in ("knockgate", "knockd"):
                impl = Impl(lab, name, build, "lat-" + name)
                lat, missed = bench_latency(lab, impl, args.knocks)
                print("| %s | %.2f | %.2f | %.2f | %d |" % (name, kglab.percentile(lat, 50), kglab.percentile(lat, 99),
                                                           max(lat), missed), flush=True)
            print()
        if args.only in (None, "flood"):
            print("### Flood: spoofed new-source SYNs to the first port + 100 legitimate knocks\n")
            print("| implementation | flood target pkt/s | achieved pkt/s | detected | CPU % (per daemon) | peak RSS MiB (per daemon) |")
            print("|---|---|---|---|---|---|")
            for name, rates in (("knockgate", args.knockgate_rates), ("knockd", args.knockd_rates)):
                for rate in [int(r) for r in rates.split(",")]:
                    impl = Impl(lab, name, build, "flood-%s-%d" % (name, rate))
                    detected, achieved, usage, secs = bench_flood(lab, impl, rate, flood_gen)
                    cpu = ", ".join("%s %.0f" % (k.replace("knockgate-", ""), 100 * v[0] / (secs + 2))
                                    for k, v in sorted(usage.items()))
                    rss = ", ".join("%s %.1f" % (k.replace("knockgate-", ""), v[1] / 1024)
                                    for k, v in sorted(usage.items()))
                    print("| %s | %d | %.0f | %d/100 | %s | %s |" % (name, rate, achieved, detected, cpu, rss),
                          flush=True)
            print()


if __name__ == "__main__":
    main()
