#!/usr/bin/env python3
"""Root's control-plane latency while unprivileged users flood policyd's socket
(docs/BENCHMARKS.md, "Control socket under a connection flood").

One sample is what knockgatectl does for `status`: a new connection to policyd.sock, Hello
as role ctl, Welcome, ControlRequest "status", ControlReply; timed from connect() to the
reply's last byte, spoken here directly so the figure is policyd's, not a process start;
one every 5 ms for --seconds per phase. Each run measures three phases in a fresh order: no flood; 200 connections from nobody that
never say Hello (reopened whenever policyd closes one); 4 each from 50 uids. The flood is
the integration test's (tests/integration/test_control_flood.py). captured is connected
throughout. Every sample must get its reply; a failure is counted, not timed.

  sudo bench/control_flood_bench.py --build build/release [--runs 3] [--seconds 6]

Prints Markdown.
"""
import argparse
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import kglab  # noqa: E402
from test_control_flood import CONF, FLOODER  # noqa: E402

HELLO, WELCOME, REFUSED, CONTROL_REQUEST, CONTROL_REPLY = 1, 2, 3, 10, 11
ROLE_CTL = 4


def frame(msg_type, body):
    return struct.pack(">IBBH", 4 + len(body), 1, msg_type, 0) + body


def string(text):
    b = text.encode()
    return struct.pack(">I", len(b)) + b


def read_frame(sock):
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            raise ConnectionError("closed by policyd")
        head += chunk
    (length,) = struct.unpack(">I", head)
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            raise ConnectionError("closed by policyd")
        body += chunk
    return body[1], body[4:]


def status_round_trip(path, request_id):
    """Seconds from connect to the status reply; raises on any failure."""
    t0 = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5.0)
        s.connect(path)
        hello = struct.pack(">BBIQI", ROLE_CTL, 1, os.getpid(), 0x6b67, 65536) + string("bench")
        s.sendall(frame(HELLO, hello))
        kind, body = read_frame(s)
        if kind != WELCOME:
            raise ConnectionError("no Welcome (type %d): %r" % (kind, body[:80]))
        request = struct.pack(">I", request_id) + string("status") + struct.pack(">I", 0)
        s.sendall(frame(CONTROL_REQUEST, request))
        kind, body = read_frame(s)
        if kind != CONTROL_REPLY or struct.unpack(">I", body[:4])[0] != request_id:
            raise ConnectionError("unexpected reply type %d" % kind)
    return time.perf_counter() - t0


def measure(path, seconds):
    lat, failed = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            lat.append(status_round_trip(path, len(lat) + failed + 1) * 1e3)
        except (OSError, ConnectionError):
            failed += 1
        time.sleep(0.005)
    return lat, failed


PHASES = {
    "no flood": [],
    "nobody ×200": [(65534, 200)],
    "50 uids ×4": [(40000 + i, 4) for i in range(50)],
}


def run_phase(path, name, seconds):
    """(latencies ms, failed, flood connects per second or None)."""
    specs = PHASES[name]
    if not specs:
        return measure(path, seconds) + (None,)
    settle = 1.5  # established, first deadlines passed
    flood_for = settle + seconds + 0.5
    flooder = subprocess.Popen([sys.executable, "-c", FLOODER, path, str(flood_for)] +
                               ["%d:%d" % s for s in specs], stdout=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        assert flooder.stdout.readline().strip() == "started"
        time.sleep(settle)
        lat, failed = measure(path, seconds)
        out, _ = flooder.communicate(timeout=30)
        return lat, failed, json.loads(out.strip().splitlines()[-1])["connects"] / flood_for
    finally:
        if flooder.poll() is None:
            os.killpg(flooder.pid, 9)
            flooder.wait()


def pct(values, q):
    return "%.2f" % kglab.percentile(values, q) if values else "—"


def top(values):
    return "%.2f" % max(values) if values else "—"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=6.0, help="sampling time per phase")
    a = ap.parse_args()
    b = os.path.abspath(a.build)
    results = {name: [] for name in PHASES}
    with kglab.Lab(mode="wan") as lab:
        w = lab.dir("ctlflood")
        os.chmod(w, 0o755)
        conf = os.path.join(w, "knockgate.conf")
        with open(conf, "w") as f:
            f.write(CONF.format(w=w))
        pol = lab.start("gw", [b + "/daemons/policyd/knockgate-policyd", "-c", conf],
                        w + "/policyd.out")
        assert pol.wait_for_output(r"ready:", 10), pol.output()
        cap = lab.start("gw", [b + "/daemons/captured/knockgate-captured", "-c", conf],
                        w + "/captured.out")
        assert cap.wait_for_output(r"connected to policyd", 10), cap.output()
        path = os.path.join(w, "policyd.sock")
        for run in range(a.runs):
            order = list(PHASES)
            random.shuffle(order)
            for name in order:
                load = loadavg()
                lat, failed, rate = run_phase(path, name, a.seconds)
                results[name].append((lat, failed, load, rate))
                sys.stderr.write("run %d %-12s %d samples: median %s p99 %s max %s ms, %d failed, "
                                 "flood %s connections/s, load %s\n"
                                 % (run + 1, name, len(lat), pct(lat, 50), pct(lat, 99), top(lat),
                                    failed, "%.0f" % rate if rate else "—", load))
        assert pol.alive() and cap.alive()
    print("| phase | runs, samples | median ms | p99 ms | max ms | failed | median / p99 "
          "range over runs | flood connections/s | load (1/5/15 min) at start |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, rs in results.items():
        all_lat = [x for r in rs for x in r[0]]
        medians = [kglab.percentile(r[0], 50) for r in rs if r[0]]
        p99s = [kglab.percentile(r[0], 99) for r in rs if r[0]]
        spread = ("%.2f–%.2f / %.2f–%.2f" % (min(medians), max(medians), min(p99s), max(p99s))
                  if medians else "—")
        rates = [r[3] for r in rs if r[3]]
        print("| %s | %d, %d | %s | %s | %s | %d | %s | %s | %s |" % (
            name, len(rs), len(all_lat), pct(all_lat, 50), pct(all_lat, 99), top(all_lat),
            sum(r[1] for r in rs), spread,
            "%.0f–%.0f" % (min(rates), max(rates)) if rates else "—",
            "; ".join(r[2] for r in rs)))


if __name__ == "__main__":
    main()
