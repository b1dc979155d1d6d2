#!/usr/bin/env python3
"""policyd's kernel layer: grant install latency and 100k-grant reconcile, with the peer
"fork the nft binary per grant" (what knockd-style command setups do) in the same run.

    sudo python3 bench/kernel_bench.py [BUILD_DIR]     (default build/release)

Runs in a network namespace of its own (created and removed here); never touches the
root namespace. Prints lines for docs/BENCHMARKS.md."""
import os
import statistics
import subprocess
import sys
import tempfile
import time

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(SRC, "build", "release")
TOOL = os.path.join(BUILD, "tests", "kg_kernel_tool")
NS = "kgbench%d" % os.getpid()


def run(*argv, **kw):
    return subprocess.run(["ip", "netns", "exec", NS] + list(argv), check=True,
                          capture_output=True, text=True, **kw)


def main():
    if os.geteuid() != 0:
        sys.exit("needs root (network namespace)")
    # The shipped profiles without the route (the bench namespace has no 192.168.70.0/24).
    with open(os.path.join(SRC, "etc", "knockgate.conf")) as f:
        conf_text = "".join(l for l in f if "route        = default via" not in l)
    conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
    conf.write(conf_text)
    conf.close()
    grants = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
    grants.close()
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        run("ip", "link", "set", "lo", "up")
        run(TOOL, conf.name, "apply", grants.name)
        # Peer: one `nft add element` process per grant.
        lat = []
        for i in range(200):
            cmd = "add element inet knockgate grant4_ssh_only { 10.200.%d.%d timeout 3600s }" % (
                i // 256, i % 256)
            t0 = time.perf_counter()
            subprocess.run(["nsenter", "--net=/run/netns/" + NS, "nft", cmd], check=True)
            lat.append((time.perf_counter() - t0) * 1e6)
        lat.sort()
        print("peer: fork+exec `nft add element` per grant: p50 %.0f us, p99 %.0f us (200 runs)"
              % (statistics.median(lat), lat[int(0.99 * (len(lat) - 1))]))
        print(run(TOOL, conf.name, "bench").stdout, end="")
    finally:
        subprocess.run(["ip", "netns", "del", NS])
        os.unlink(conf.name)
        os.unlink(grants.name)


if __name__ == "__main__":
    main()
