#!/usr/bin/env python3
"""Every verdictd goal figure from one run of the whole appliance in one namespace lab
(tests/integration/kglab.py): policyd with its own ruleset, captured, verdictd. As root:

  sudo bench/verdictd_bench.py --build build/release [--seconds 4] [--rounds 3]
                               [--knocks 200] [--grants 100000] [--queues N]

--queues: VerdictQueue = 0-(N-1), CPU fanout, one pinned reader per queue (default: one
queue per CPU; --queues 1 for a single queue).

1. Connections/s, verdictd against a static nftables accept. The path is the one an
SSH-only grant opens: the outside client (holding a grant made with
knockgatectl) connects to the gateway's WAN address, port 22; policyd's own ruleset DNATs
it to conn_bench's server on the LAN's SSH host. Three modes, alternated per round (in a
rotating order) so drift hits them alike, nothing else changed between them, conntrack
flushed before each measurement:

  static    one rule `meta mark set 0x10000000 accept` inserted at the head of policyd's
            `verdict` chain: the gate's NEW flows are marked and accepted in the kernel
            (same ruleset, DNAT, conntrack, grant-set check in forward, mark routing)
  verdictd  that rule removed: every NEW flow goes to NFQUEUE and knockgate-verdictd
  floor     the same queue served by bench/nfq_floor, a bare consumer (one blocking
            recvmmsg, ACCEPT + mark for everything, no decoding): the cost of the queue
            itself, which no verdict daemon can go below

Loads (bench/conn_bench): `threads C` = C threads doing blocking connect + close in a loop
(each connect waits for its own verdict); `events N` = N non-blocking connects kept in
flight with epoll, the shape of wrk, h2load and proxies. Also: bulk throughput (iperf3, one
stream) and the first packet's added latency (threads 1, verdictd minus static).

2. Connect right after a knock (the SYN race of kernel-notes.md): three knock SYNs and,
0 µs after the last one left, a connect to the WAN address, port 22; captured → policyd →
grant → verdictd must let that SYN through (held while the grant is on its way,
VerdictHoldMs = 25, the default) without TCP's 1 s SYN retransmit. The grant is revoked
between knocks (untimed).

3. The verdict rate with 10 vs GRANTS active grants: the client's grant among grants made
with `knockgatectl grant-many` (3000 sources per request) spread over 10.0.0.0/8 and sent
to verdictd's cache through policyd's broadcast, so the cache's tables are far larger than
the CPU's caches; verdictd's RSS with each.

Prints Markdown for docs/BENCHMARKS.md. Traffic stays inside the lab's namespaces.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import kglab  # noqa: E402
import verdict_lab as vl  # noqa: E402

PORT = 22
LOADS = [("threads", 1), ("threads", 16), ("threads", 64), ("events", 16), ("events", 64)]
MODES = ("static", "verdictd", "floor")
STATIC_RULE = "meta mark set 0x%08x accept comment \"bench static\"" % vl.SSH_MARK


def parse(line):
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}


class Appliance:
    def __init__(self, lab, build, queues):
        self.lab, self.build, self.queues = lab, build, queues
        self.conf, self.w = vl.write_conf(lab)
        with open(self.conf) as f:
            text = f.read()
        if queues > 1:
            text = text.replace("VerdictQueue = 0", "VerdictQueue = 0-%d" % (queues - 1))
        with open(self.conf, "w") as f:
            f.write(text + vl.SSH_DOOR)
        self.ctl = os.path.join(build, "tools", "ctl", "knockgatectl")
        self.policyd = lab.start("gw", [os.path.join(build, "daemons", "policyd",
                                                     "knockgate-policyd"), "-c", self.conf],
                                 os.path.join(self.w, "policyd.out"))
        assert self.policyd.wait_for_output(r"ready", 10), self.policyd.output()
        lab.run("gw", [self.ctl, "-c", self.conf, "grant", kglab.CLIENT4, "ssh-only",
                       "--for", "2h"])
        self.verdictd = None
        self.floor = None
        self.verdictd_out = ""
        self.start_verdictd()
        self.captured = lab.start("gw", [os.path.join(build, "daemons", "captured",
                                                      "knockgate-captured"), "-c", self.conf],
                                  os.path.join(self.w, "captured.out"))
        assert self.captured.wait_for_output(r"connected to policyd", 10), self.captured.output()

    def ctl_run(self, *argv, timeout=30):
        r = self.lab.run("gw", [self.ctl, "-c", self.conf] + list(argv), timeout=timeout,
                         check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def start_verdictd(self):
        self.verdictd = vl.start_verdictd(self.lab, self.conf, debug=False)
        assert self.verdictd.wait_for_output(r"grant snapshot at seq", 5), self.verdictd.output()

    def revoke_client(self):
        # "no active grant" is fine: the knock may not have made one
        self.lab.run("gw", [self.ctl, "-c", self.conf, "revoke", kglab.CLIENT4], check=False)

    def static_rule(self, present):
        r = self.lab.run("gw", ["nft", "-a", "list", "chain", "inet", "knockgate", "verdict"])
        handles = re.findall(r'"bench static".*# handle (\d+)', r.stdout)
        if present and not handles:
            self.lab.run("gw", ["nft", "insert", "rule", "inet", "knockgate", "verdict"] +
                         STATIC_RULE.split())
        if not present:
            for h in handles:
                self.lab.run("gw", ["nft", "delete", "rule", "inet", "knockgate", "verdict",
                                    "handle", h])

    def mode(self, mode):
        self.static_rule(mode == "static")
        if mode == "floor" and self.floor is None:
            self.verdictd_out += self.verdictd.output()
            self.verdictd.stop()
            self.verdictd = None
            self.floor = self.lab.start("gw", [os.path.join(self.build, "bench", "nfq_floor"),
                                               "0", str(self.queues), hex(vl.SSH_MARK)],
                                        self.lab.path("floor-%d.out" % time.monotonic_ns()))
            assert self.floor.wait_for_output("serving queue", 5), self.floor.output()
        if mode != "floor" and self.floor is not None:
            self.floor.stop()
            self.floor = None
            self.start_verdictd()

    def stop(self):
        self.captured.stop()
        if self.floor:
            self.floor.stop()
        if self.verdictd:
            self.verdictd_out += self.verdictd.output()
            self.verdictd.stop()
        self.policyd.stop()


def sources(n, skip):
    out = []
    i = 1
    while len(out) < n:
        a = 0x0A000000 + i
        s = "%d.%d.%d.%d" % (a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255)
        if s not in skip:
            out.append(s)
        i += 1
    return out


def settle(daemons, quiet_ms=20, timeout=60):
    """Waits until none of the daemons used more than quiet_ms of CPU in the last second."""
    pids = [kglab.real_pid(d.pid) for d in daemons]
    end = time.monotonic() + timeout
    before = [kglab.cpu_seconds(p) for p in pids]
    while time.monotonic() < end:
        time.sleep(1.0)
        now = [kglab.cpu_seconds(p) for p in pids]
        if all(b - a < quiet_ms / 1000 for a, b in zip(before, now)):
            return
        before = now


def knock_then_connect(lab, app, knocks):
    """Connect times (ms) right after the knock, and how many connects failed."""
    kc = subprocess.Popen(["ip", "netns", "exec", lab.ns("client"), "python3", "-c",
                           vl.KNOCK_CONNECT, kglab.GW_WAN4, str(knocks)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    connect_ms, failed = [], 0
    for _ in range(knocks):
        app.revoke_client()
        time.sleep(0.02)
        kc.stdin.write("\n")
        kc.stdin.flush()
        word, secs = kc.stdout.readline().split()
        if word == "ok":
            connect_ms.append(float(secs) * 1000)
        else:
            failed += 1
    kc.stdin.close()
    kc.wait()
    return connect_ms, failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(kglab.SOURCE_DIR, "build", "release"))
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--grants", type=int, default=100000)
    ap.add_argument("--knocks", type=int, default=200)
    ap.add_argument("--queues", type=int, default=os.cpu_count())
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    os.environ["KG_BUILD_DIR"] = build
    vl.VERDICTD = os.path.join(build, "daemons", "verdictd", "knockgate-verdictd")
    conn_bench = os.path.join(build, "bench", "conn_bench")
    reason = kglab.skip_reason()
    if reason:
        sys.exit("cannot run: " + reason)
    kglab.install_handlers()
    results = {m: {} for m in MODES}
    bulk = {"static": [], "verdictd": []}
    load_avg = []
    grant_rows = {}
    with kglab.Lab("full") as lab:
        app = Appliance(lab, build, args.queues)
        try:
            srv = lab.start("ssh", [conn_bench, "server", str(PORT)], lab.path("server.out"))
            assert srv.wait_for_output("listening", 5), srv.output()
            # Paired: each load is measured in all three modes back to back (in a rotating
            # order), so the machine's drift between measurements of one pair is small.
            for rnd in range(args.rounds):
                for li, (shape, n) in enumerate(LOADS):
                    k = (rnd + li) % len(MODES)
                    for mode in MODES[k:] + MODES[:k]:
                        app.mode(mode)
                        # Every measurement starts from an empty conntrack table (the
                        # previous one leaves ~100 000 entries in CLOSE).
                        lab.run("gw", ["conntrack", "-F"], check=False)
                        r = lab.run("client", [conn_bench, "client" if shape == "threads"
                                               else "eclient", kglab.GW_WAN4, str(PORT),
                                               str(args.seconds), str(n)],
                                    timeout=args.seconds + 60)
                        results[mode].setdefault("%s %d" % (shape, n), []).append(parse(r.stdout))
                load_avg.append(os.getloadavg()[0])
            srv.stop()
            ip = lab.start("ssh", ["iperf3", "-s", "-p", str(PORT)], lab.path("iperf.out"))
            time.sleep(0.5)
            for _ in range(args.rounds):
                for mode in bulk:
                    app.mode(mode)
                    r = lab.run("client", ["iperf3", "-c", kglab.GW_WAN4, "-p", str(PORT), "-t",
                                           str(max(1, round(args.seconds))), "-J"], timeout=args.seconds + 60)
                    bulk[mode].append(json.loads(r.stdout)["end"]["sum_received"]
                                      ["bits_per_second"] / 1e9)
            ip.stop()

            app.mode("verdictd")
            srv = lab.start("ssh", [conn_bench, "server", str(PORT)], lab.path("server2.out"))
            assert srv.wait_for_output("listening", 5), srv.output()
            connect_ms, knock_failed = knock_then_connect(lab, app, args.knocks)

            def grant_run(label):
                rows = {}
                for shape, n in (("threads", 1), ("threads", 16), ("events", 64)):
                    runs = []
                    for _ in range(args.rounds):
                        lab.run("gw", ["conntrack", "-F"], check=False)
                        runs.append(parse(lab.run("client", [conn_bench, "client"
                                                             if shape == "threads" else "eclient",
                                                             kglab.GW_WAN4, str(PORT),
                                                             str(args.seconds), str(n)],
                                                  timeout=args.seconds + 60).stdout))
                    runs.sort(key=lambda r: r["rate"])
                    rows["%s %d" % (shape, n)] = runs[len(runs) // 2]
                rows["rss_kib"] = kglab.memory_kib(kglab.real_pid(app.verdictd.pid))["VmRSS"]
                st = app.ctl_run("status", "--json")
                m = re.search(r'"grants_active"\s*:\s*(\d+)', st)
                rows["active"] = int(m.group(1)) if m else None
                grant_rows[label] = rows

            def grant_many(srcs):
                for i in range(0, len(srcs), 3000):
                    app.ctl_run("grant-many", "ssh-only", *srcs[i:i + 3000], "--for", "2h",
                                timeout=300)

            app.revoke_client()
            grant_many([kglab.CLIENT4] + sources(9, {kglab.CLIENT4}))
            time.sleep(0.5)
            grant_run("10")
            t0 = time.monotonic()
            grant_many(sources(args.grants - 10 + 9, {kglab.CLIENT4})[9:])
            grant_many_s = time.monotonic() - t0
            settle([app.policyd, app.verdictd])  # policyd commits, verdictd applies the deltas
            grant_run(str(args.grants))
            srv.stop()
        finally:
            app.stop()

    def median(vals):
        vals = sorted(vals)
        return vals[len(vals) // 2] if len(vals) % 2 else (vals[len(vals) // 2 - 1] +
                                                           vals[len(vals) // 2]) / 2

    def best(mode, load, key):
        return median([r[key] for r in results[mode][load]])

    def ratio(a, b, load):
        # the median over rounds of the paired ratio a/b
        return median([x["rate"] / y["rate"] for x, y in zip(results[a][load], results[b][load])])

    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    print("Machine: %s, %d vCPU, kernel %s; %s; %d queue(s); %d rounds x %.0f s, modes "
          "paired per load, medians of the rounds; 1-min load average after each round: %s."
          % (cpu, os.cpu_count(), platform.release(), time.strftime("%Y-%m-%d %H:%M UTC",
                                                                    time.gmtime()),
             args.queues, args.rounds, args.seconds, ", ".join("%.1f" % v for v in load_avg)))
    print()
    print("| load | static conn/s | verdictd conn/s | floor conn/s | verdictd / static "
          "| floor / static | verdictd / floor | min–max verdictd / static | static p50/p99 µs "
          "| verdictd p50/p99 µs "
          "| failures (verdictd) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for shape, n in LOADS:
        load = "%s %d" % (shape, n)
        s, v, f = (best(m, load, "rate") for m in MODES)
        fails = sum(r["failures"] for r in results["verdictd"][load])
        pairs = [x["rate"] / y["rate"] for x, y in zip(results["verdictd"][load],
                                                       results["static"][load])]
        print("| %s | %.0f | %.0f | %.0f | %.0f %% | %.0f %% | %.0f %% | %.0f–%.0f %% "
              "| %.0f / %.0f | %.0f / %.0f | %d |" % (
                  load, s, v, f, 100 * ratio("verdictd", "static", load),
                  100 * ratio("floor", "static", load), 100 * ratio("verdictd", "floor", load),
                  100 * min(pairs), 100 * max(pairs),
                  best("static", load, "p50_us"), best("static", load, "p99_us"),
                  best("verdictd", load, "p50_us"), best("verdictd", load, "p99_us"), fails))
    print()
    s_b, g_b = max(bulk["static"]), max(bulk["verdictd"])
    print("Bulk (iperf3, one stream, best of %d): static %.2f Gbit/s, verdictd %.2f Gbit/s "
          "(%.0f %%)." % (args.rounds, s_b, g_b, 100 * g_b / s_b))
    add50 = best("verdictd", "threads 1", "p50_us") - best("static", "threads 1", "p50_us")
    add99 = best("verdictd", "threads 1", "p99_us") - best("static", "threads 1", "p99_us")
    print("First packet's added latency (threads 1, verdictd minus static, medians of rounds): "
          "p50 %.0f µs, p99 %.0f µs." % (add50, add99))
    print()
    print("Connect right after the knock (%d knocks, VerdictHoldMs 25): p50 %.2f ms, p99 %.2f ms, "
          "max %.2f ms; %d of %d at or above 1 s (SYN retransmit); %d failed."
          % (args.knocks, kglab.percentile(connect_ms, 50), kglab.percentile(connect_ms, 99),
             max(connect_ms), sum(1 for t in connect_ms if t >= 1000), len(connect_ms),
             knock_failed))
    print()
    print("| grants | load | conn/s | p50 µs | p99 µs | failures | verdictd RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    loads = ("threads 1", "threads 16", "events 64")
    for label in ("10", str(args.grants)):
        for load in loads:
            r = grant_rows[label][load]
            print("| %s | %s | %.0f | %.0f | %.0f | %d | %.1f |" % (
                label, load, r["rate"], r["p50_us"], r["p99_us"], r["failures"],
                grant_rows[label]["rss_kib"] / 1024))
    print()
    for load in loads:
        ratio = grant_rows[str(args.grants)][load]["rate"] / grant_rows["10"][load]["rate"]
        print("%s: %d grants at %.0f %% of the 10-grant rate." % (load, args.grants, 100 * ratio))
    print("\ngrants active per policyd status: %s; %d grants created in %.1f s"
          % ({k: grant_rows[k]["active"] for k in grant_rows}, args.grants - 10, grant_many_s))
    if "ENOBUFS" in app.verdictd_out:
        print("\nverdictd reported socket overflows during the run.")
    print("\nraw: " + json.dumps({"conn": results, "bulk": bulk, "grants": grant_rows,
                                 "knock_connect_ms": connect_ms}))


if __name__ == "__main__":
    main()
