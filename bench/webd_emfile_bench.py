#!/usr/bin/env python3
"""knockgate-webd out of file descriptors, in the namespace lab (run as root from the
source tree, release build):

    KG_BUILD_DIR=build/release python3 bench/webd_emfile_bench.py [--runs 5] [--nofile 64]

policyd + webd in the lab's gw namespace, webd under `prlimit --nofile=N:N`. Each run
opens 3 N connections to webd (those it cannot accept wait in the listen backlog),
measures webd's CPU use (utime + stime from /proc/PID/stat) over 3 s while it is out of
descriptors, closes them and times how long a new GET / then takes to be answered. A
fresh policyd + webd per run. Prints the runs and the median and spread as JSON."""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import kglab  # noqa: E402
import webdlib  # noqa: E402


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--nofile", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    runs = []
    with kglab.Lab(mode="wan") as lab:
        for i in range(args.runs):
            app = webdlib.Appliance(lab, port=8082 + i)
            app.set_password()
            app.start(wrapper=["prlimit", "--nofile=%d:%d" % (args.nofile, args.nofile)])
            r = webdlib.exhaust_descriptors(app, connections=3 * args.nofile,
                                            measure_s=args.seconds)
            app.webd.stop()
            app.policyd.stop()
            runs.append(r)
            print("run %d: %s" % (i + 1, json.dumps(r)), file=sys.stderr)
    cpu = [r["cpu_percent"] for r in runs]
    recovered = [r["recovery_s"] * 1000 for r in runs if r["recovery_s"] is not None]
    print(json.dumps({
        "build": webdlib.BUILD,
        "nofile": args.nofile,
        "runs": runs,
        "cpu_percent_exhausted": summary(cpu),
        "recovery_ms": summary(recovered) if recovered else None,
        "not_recovered": len(runs) - len(recovered),
        "loadavg": os.getloadavg(),
    }, indent=2))


if __name__ == "__main__":
    main()
