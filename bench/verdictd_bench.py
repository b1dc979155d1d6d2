#!/usr/bin/env python3
"""verdictd benchmarks for issue #5, gated vs a static nftables accept, one run, one lab
(tests/integration/kglab.py), as root:

  conn     new TCP connections per second, LAN host vm → syslog host through the gateway
           (conn_bench, CONCURRENCY threads connecting and closing), with verdictd
           deciding every SYN (static egress source of syslog-only) vs the same ruleset with
           the queue rules left out and forward accepting (same NAT, same conntrack).
  latency  connect time at concurrency 1: p50/p99 gated minus baseline = the first packet's
           added latency (queue → verdictd → verdict).
  bulk     iperf3 single stream over a gated flow vs the baseline.

  sudo bench/verdictd_bench.py --build build/release [--seconds 5]

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

PORT = 514  # the syslog-only profile allows tcp/514


def parse(line):
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}


def set_mode(lab, gated):
    lab.run("gw", ["nft", "flush", "ruleset"])
    vl.install_gate(lab, static_accept=not gated)


def conn(lab, build, seconds, concurrency):
    r = lab.run("vm", [os.path.join(build, "bench", "conn_bench"), "client", vl.LOG_HOST,
                       str(PORT), str(seconds), str(concurrency)], timeout=seconds + 60)
    return parse(r.stdout)


def bulk(lab, seconds):
    r = lab.run("vm", ["iperf3", "-c", vl.LOG_HOST, "-p", str(PORT), "-t", str(seconds), "-J"],
                timeout=seconds + 60)
    j = json.loads(r.stdout)
    return j["end"]["sum_received"]["bits_per_second"] / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(kglab.SOURCE_DIR, "build", "release"))
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    os.environ["KG_BUILD_DIR"] = build
    vl.VERDICTD = os.path.join(build, "daemons", "verdictd", "knockgate-verdictd")
    reason = kglab.skip_reason()
    if reason:
        sys.exit("cannot run: " + reason)
    kglab.install_handlers()
    results = {"gated": {}, "static": {}}
    with kglab.Lab("full") as lab:
        conf, _ = vl.write_conf(lab)
        srv = lab.start("log", [os.path.join(build, "bench", "conn_bench"), "server", str(PORT)],
                        lab.path("server.out"))
        assert srv.wait_for_output("listening", 5), srv.output()
        d = None
        for rnd in range(args.rounds):
            for mode in ("static", "gated"):  # alternate: drift hits both alike
                set_mode(lab, mode == "gated")
                if mode == "gated" and d is None:
                    d = vl.start_verdictd(lab, conf, debug=False)
                for c in (1, 16, 64):
                    results[mode].setdefault(c, []).append(conn(lab, build, args.seconds, c))
        # Bulk: iperf3 needs the port; stop the connection server first.
        srv.stop()
        ip = lab.start("log", ["iperf3", "-s", "-p", str(PORT)], lab.path("iperf.out"))
        time.sleep(0.5)
        for rnd in range(args.rounds):
            for mode in ("static", "gated"):
                set_mode(lab, mode == "gated")
                results[mode].setdefault("bulk", []).append(bulk(lab, args.seconds))
        ip.stop()
        d_out = d.output() if d else ""
        if d:
            d.stop()

    def best(mode, c, key):
        vals = [r[key] for r in results[mode][c]]
        return max(vals) if key == "rate" else sorted(vals)[len(vals) // 2]

    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    print("Machine: %s, %d vCPU, kernel %s; %s; %d rounds x %.0f s, modes alternated."
          % (cpu, os.cpu_count(), platform.release(), time.strftime("%Y-%m-%d"), args.rounds,
             args.seconds))
    print()
    print("| concurrency | static accept conn/s | verdictd conn/s | ratio | static p50/p99 µs | verdictd p50/p99 µs | failures (gated) |")
    print("|---|---|---|---|---|---|---|")
    for c in (1, 16, 64):
        s_rate, g_rate = best("static", c, "rate"), best("gated", c, "rate")
        fails = sum(r["failures"] for r in results["gated"][c])
        print("| %d | %.0f | %.0f | %.0f %% | %.0f / %.0f | %.0f / %.0f | %d |" % (
            c, s_rate, g_rate, 100 * g_rate / s_rate,
            best("static", c, "p50_us"), best("static", c, "p99_us"),
            best("gated", c, "p50_us"), best("gated", c, "p99_us"), fails))
    print()
    s_b = max(results["static"]["bulk"])
    g_b = max(results["gated"]["bulk"])
    print("Bulk (iperf3, one stream, best of %d): static %.2f Gbit/s, verdictd %.2f Gbit/s (%.0f %%)."
          % (args.rounds, s_b, g_b, 100 * g_b / s_b))
    add50 = best("gated", 1, "p50_us") - best("static", 1, "p50_us")
    add99 = best("gated", 1, "p99_us") - best("static", 1, "p99_us")
    print("First-packet added latency (connect at concurrency 1, gated minus static, medians of rounds): "
          "p50 %.0f µs, p99 %.0f µs." % (add50, add99))
    if "ENOBUFS" in d_out:
        print("\nverdictd reported socket overflows during the run.")
    print("\nraw: " + json.dumps(results))


if __name__ == "__main__":
    main()
