#!/usr/bin/env python3
"""knockgate-webd benchmark in the namespace lab (run as root from the source tree):

    KG_BUILD_DIR=build/release python3 bench/webd_bench.py [--grants 10000] [--clients 200]

policyd + webd in the lab's gw namespace, real sockets and SQLite. Measures
  1. GET /api/v1/grants latency (p50/p99 over 300 requests, keep-alive, API token) with
     N active grants (created with `knockgatectl grant-many` in one transaction), once with
     the set unchanged between requests and once with a new grant before every request;
  2. C concurrent live-stream clients: time from the POST that creates a grant until each
     client has read its `event: grant` line (max and p99 over clients, 5 rounds);
  3. webd's VmRSS/VmHWM with those clients connected, after the runs.
Needs policyd's control commands; without them it measures what it can
(static file and session latency, stream RSS) and says so."""
import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import kglab  # noqa: E402
import webdlib  # noqa: E402






def timed_gets(app, path, headers, n):
    conn = app.conn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r, body = app.request("GET", path, headers=headers, conn=conn)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status == 200, (r.status, body[:200])
    conn.close()
    return times, len(body)


def open_streams(app, n, headers):
    sel = selectors.DefaultSelector()
    socks = []
    req = ("GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % "".join(
        "%s: %s\r\n" % kv for kv in headers.items())).encode()
    for _ in range(n):
        s = webdlib.raw_socket(app.lab.ns("gw"), "127.0.0.1", app.port, timeout=10)
        s.sendall(req)
        socks.append(s)
    for s in socks:  # wait for each head
        data = b""
        while b"retry:" not in data:
            data += s.recv(65536)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
    return sel, socks


def wait_event(sel, socks, marker, t0, timeout=5.0):
    got = {}
    end = time.monotonic() + timeout
    while len(got) < len(socks) and time.monotonic() < end:
        for key, _ in sel.select(timeout=0.5):
            s, buf = key.fileobj, key.data
            try:
                buf += s.recv(65536)
            except BlockingIOError:
                continue
            if s not in got and marker in buf:
                got[s] = (time.perf_counter() - t0) * 1000
                del buf[:]
    return list(got.values())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grants", type=int, default=10000)
    ap.add_argument("--clients", type=int, default=200)
    args = ap.parse_args()
    results = {"grants": args.grants, "clients": args.clients}
    with kglab.Lab(mode="wan") as lab:
        app = webdlib.Appliance(lab)
        app.set_password()
        token = app.new_token("bench")
        app.start()
        auth = {"Authorization": "Bearer " + token}
        r, body = app.request("GET", "/api/v1/grants", headers=auth)
        control = r.status == 200
        results["control_commands"] = control
        if control:
            base = 0x0A000000  # 10.0.0.0/8 sources
            sources = ["%d.%d.%d.%d" % ((base + i) >> 24, ((base + i) >> 16) & 255,
                                        ((base + i) >> 8) & 255, (base + i) & 255)
                       for i in range(1, args.grants + 1)]
            t0 = time.monotonic()
            for chunk in range(0, len(sources), 3000):  # requests stay under 64 KiB frames
                r = subprocess.run([webdlib.CTL, "-c", app.conf, "grant-many", "ssh-only"]
                                   + sources[chunk:chunk + 3000] + ["--for", "2h"],
                                   capture_output=True, text=True, timeout=300)
                assert r.returncode == 0, r.stderr
            results["grant_many_s"] = round(time.monotonic() - t0, 2)
            times, size = timed_gets(app, "/api/v1/grants", auth, 300)
            results["grants_list_ms"] = {"p50": round(kglab.percentile(times, 50), 2),
                                         "p99": round(kglab.percentile(times, 99), 2),
                                         "max": round(max(times), 2), "bytes": size}
            # Under churn: a new grant lands between any two requests (as knocks do on a
            # busy gateway), so no request can be answered from the previous one's body.
            conn = app.conn()
            times = []
            for i in range(300):
                src = "198.18.%d.%d" % (i // 250, i % 250 + 1)
                r, body = app.request("POST", "/api/v1/grants",
                                      {"source": src, "profile": "ssh-only"}, auth, conn=conn)
                assert r.status == 201, body
                time.sleep(0.005)  # the grant's delta reaches webd
                t0 = time.perf_counter()
                r, body = app.request("GET", "/api/v1/grants", headers=auth, conn=conn)
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status == 200 and ('"%s"' % src).encode() in body, r.status
            conn.close()
            results["grants_list_churn_ms"] = {"p50": round(kglab.percentile(times, 50), 2),
                                               "p99": round(kglab.percentile(times, 99), 2),
                                               "max": round(max(times), 2)}
        times, _ = timed_gets(app, "/api/v1/session", auth, 300)
        results["session_ms"] = {"p50": round(kglab.percentile(times, 50), 3),
                                 "p99": round(kglab.percentile(times, 99), 3)}
        times, _ = timed_gets(app, "/js/app.js", {}, 300)
        results["static_ms"] = {"p50": round(kglab.percentile(times, 50), 3),
                                "p99": round(kglab.percentile(times, 99), 3)}
        sel, socks = open_streams(app, args.clients, auth)
        results["rss_with_clients_kib"] = kglab.memory_kib(app.webd.pid)
        if control:
            rounds = []
            for i in range(5):
                src = "198.51.100.%d" % (i + 1)
                t0 = time.perf_counter()
                r, body = app.request("POST", "/api/v1/grants",
                                      {"source": src, "profile": "ssh-only"}, auth)
                assert r.status == 201, body
                lat = wait_event(sel, socks, ('"source":"%s"' % src).encode(), t0)
                rounds.append({"received": len(lat), "max_ms": round(max(lat), 2) if lat else None,
                               "p99_ms": round(kglab.percentile(lat, 99), 2) if lat else None})
            results["stream_rounds"] = rounds
        results["rss_after_kib"] = kglab.memory_kib(app.webd.pid)
        for s in socks:
            s.close()
        results["webd_alive"] = app.webd.alive()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    kglab.install_handlers()
    main()
