"""policyd's control socket is mode 0666, so every local user can connect to it. A flood
of connections that never say Hello, from one unprivileged user (nobody) and then from
many uids at once, must not lock out root's knockgatectl or captured (which restarts and
reconnects during the flood), must not delay a knock's grant, and must not turn into one
log line per connection. Real policyd and captured in a WAN lab; the flood runs in forked
children that drop to the flooding uids and reconnect whenever policyd closes them."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest

import kglab

BUILD = os.environ.get("KG_BUILD_DIR") or os.path.join(kglab.SOURCE_DIR, "build", "debug")
POLICYD = os.path.join(BUILD, "daemons", "policyd", "knockgate-policyd")
CAPTURED = os.path.join(BUILD, "daemons", "captured", "knockgate-captured")
CTL = os.path.join(BUILD, "tools", "ctl", "knockgatectl")

CONF = """[options]
  Interface = kg-wan
  WanInterface = kg-wan
  RuntimeDir = {w}
  Database = {w}/state/knockgate.db
  PidFile = {w}/policyd.pid
  LogFile = {w}/knock.log
  CaptureUser = daemon
[profile ssh-only]
  direction = inbound
  expose = tcp/22 -> 192.168.50.10:22
  fwmark = 0x10000000/0xff000000
  table = 100
  lifetime = 1h
  max_lifetime = 8h
[openSSH]
  sequence = 7000,8000,9000
  seq_timeout = 5
  tcpflags = syn
  grant = ssh-only
"""

# Run as root: one forked child per "uid:count"; each drops to its uid and keeps `count`
# connections open without a word, opening a new one whenever policyd closes one, until
# `seconds` have passed. Prints one JSON line with the totals.
FLOODER = r"""
import json, os, select, socket, sys, time
path, seconds = sys.argv[1], float(sys.argv[2])
specs = [tuple(int(x) for x in a.split(":")) for a in sys.argv[3:]]

def hold(uid, count, deadline, out):
    os.setgroups([]); os.setgid(65534); os.setuid(uid)
    socks, poller = {}, select.poll()
    connects = refused = closed = peak = 0
    while time.monotonic() < deadline:
        while len(socks) < count:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(path)
            except OSError:  # backlog full: try again after the next poll
                s.close(); refused += 1
                break
            connects += 1
            socks[s.fileno()] = s
            poller.register(s.fileno(), select.POLLIN)
        peak = max(peak, len(socks))
        for fd, _ in poller.poll(20):
            poller.unregister(fd); socks.pop(fd).close(); closed += 1
    os.write(out, (json.dumps({"connects": connects, "closed": closed, "refused": refused,
                               "peak": peak}) + "\n").encode())

deadline = time.monotonic() + seconds
r, w = os.pipe()
kids = []
for uid, count in specs:
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            hold(uid, count, deadline, w)
        finally:
            os._exit(0)
    kids.append(pid)
os.close(w)
print("started", flush=True)
for k in kids:
    os.waitpid(k, 0)
total = {"connects": 0, "closed": 0, "refused": 0, "peak": 0}
with os.fdopen(r) as f:
    for line in f:
        for k, v in json.loads(line).items():
            total[k] += v
print(json.dumps(total), flush=True)
"""

# From the client: the door's three SYNs, then the time after the last one.
KNOCKER = r"""
import socket, sys, time
for p in (7000, 8000, 9000):
    s = socket.socket(); s.setblocking(False); s.connect_ex((sys.argv[1], p)); s.close()
print(time.time_ns(), flush=True)
"""


class ControlFloodTest(unittest.TestCase):
    lab = None

    @classmethod
    def setUpClass(cls):
        for p in (POLICYD, CAPTURED, CTL):
            if not os.path.exists(p):
                raise unittest.SkipTest("not built: " + p)
        cls.lab = kglab.Lab(mode="wan").__enter__()
        cls.w = cls.lab.dir("flood")
        os.chmod(cls.w, 0o755)  # nobody must reach the socket inside, as in /run/knockgate
        cls.conf = os.path.join(cls.w, "knockgate.conf")
        with open(cls.conf, "w") as f:
            f.write(CONF.format(w=cls.w))
        cls.sock = os.path.join(cls.w, "policyd.sock")
        cls.policyd = cls.lab.start("gw", [POLICYD, "-c", cls.conf, "-v"],
                                    os.path.join(cls.w, "policyd.out"))
        if not cls.policyd.wait_for_output(r"ready:", 10):
            raise AssertionError("policyd did not start:\n" + cls.policyd.output())
        cls.captured = None
        cls.start_captured()
        cls.watch = subprocess.Popen(["ip", "netns", "exec", cls.lab.ns("gw"), CTL, "-c",
                                      cls.conf, "watch"], stdout=subprocess.PIPE,
                                     start_new_session=True)
        cls.watch_lines = kglab.LineReader(cls.watch.stdout)
        if cls.watch_lines.first(lambda line: '"snapshot"' in line, 5) is None:
            raise AssertionError("knockgatectl watch got no snapshot")
        cls.flooders = []

    @classmethod
    def tearDownClass(cls):
        for p in getattr(cls, "flooders", []) + [getattr(cls, "watch", None)]:
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if cls.lab:
            cls.lab.close()

    @classmethod
    def start_captured(cls):
        if cls.captured is not None:
            cls.captured.stop()
        cls.captured = cls.lab.start("gw", [CAPTURED, "-c", cls.conf, "-v"],
                                     os.path.join(cls.w, "captured%d.out" % time.monotonic_ns()))
        t0 = time.monotonic()
        ok = cls.captured.wait_for_output(r"connected to policyd", 5)
        return ok, time.monotonic() - t0

    # --- helpers
    def flood(self, seconds, specs):
        p = subprocess.Popen([sys.executable, "-c", FLOODER, self.sock, str(seconds)] +
                             ["%d:%d" % s for s in specs], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
        self.flooders.append(p)
        self.assertEqual(p.stdout.readline().strip(), "started")
        return p

    def flood_result(self, p):
        out, _ = p.communicate(timeout=30)
        return json.loads(out.strip().splitlines()[-1])

    def timed_status(self):
        t0 = time.monotonic()
        r = self.lab.run("gw", [CTL, "-c", self.conf, "status", "--json"], check=False,
                         timeout=10)
        took = time.monotonic() - t0
        self.assertEqual(r.returncode, 0, "status during the flood: %s%s\n%s" %
                         (r.stdout, r.stderr, self.policy_tail()))
        self.assertLess(took, 2.0, "status took %.2f s during the flood" % took)
        return took, json.loads(r.stdout)

    def knock_latency(self, source_host, source):
        self.watch_lines.drain()
        r = self.lab.run(source_host, ["python3", "-c", KNOCKER, kglab.GW_WAN4])
        sent = int(r.stdout.strip())
        got = self.watch_lines.first(
            lambda line: ('"add"' in line or '"extend"' in line) and source in line, 3.0)
        self.assertIsNotNone(got, "no grant for the knock from %s during the flood\n%s"
                             % (source, self.policy_tail()))
        return (got - sent) / 1e9

    def warnings(self):
        return len(re.findall(r"(?m)^.*warning:.*$", self.policyd.output()))

    def policy_tail(self):
        return self.policyd.output()[-3000:]

    def run_flood(self, specs, knock_from):
        connections = sum(n for _, n in specs)
        warnings_before = self.warnings()
        p = self.flood(12, specs)
        time.sleep(1.5)  # the flood is established, the first deadlines have passed
        statuses = []
        for _ in range(3):
            statuses.append(self.timed_status()[0])
            time.sleep(0.3)
        # captured restarts during the flood and gets its slot back at once.
        ok, took = self.start_captured()
        self.assertTrue(ok, "captured did not reconnect during the flood:\n" +
                        self.captured.output()[-2000:] + self.policy_tail())
        self.assertLess(took, 2.0)
        # policyd asks a new captured for its status at once; it answers through the flood.
        end = time.monotonic() + 2.0
        while not self.timed_status()[1]["captured"]["connected"]:
            self.assertLess(time.monotonic(), end, "captured's status never reached policyd")
            time.sleep(0.1)
        latency = self.knock_latency(*knock_from)
        self.assertLess(latency, 1.0, "knock → grant took %.2f s during the flood" % latency)
        for _ in range(3):
            statuses.append(self.timed_status()[0])
            time.sleep(0.3)
        self.assertIsNone(p.poll(), "the flood ended before the checks did")
        result = self.flood_result(p)
        self.assertTrue(self.policyd.alive(), self.policy_tail())
        warnings = self.warnings() - warnings_before
        sys.stderr.write("flood %s: %s; status %s s; knock → grant %.3f s; %d warning lines\n"
                         % (specs[:2], result, ["%.2f" % s for s in statuses], latency,
                            warnings))
        self.assertGreaterEqual(result["connects"], connections)
        # Counts in a summary line, not a line per connection.
        self.assertLessEqual(warnings, 30, self.policy_tail())
        self.assertLess(warnings * 10, result["connects"], self.policy_tail())
        return result

    # --- tests
    def test_1_flood_from_one_unprivileged_user(self):
        self.run_flood([(65534, 200)], ("client", kglab.CLIENT4))
        self.assertRegex(self.policyd.output(),
                         r"unauthenticated connections closed in \d+ ms \(\d+ over connection "
                         r"limits.*most from uid 65534")

    def test_2_flood_from_many_uids(self):
        # 4 connections from each of 50 uids without passwd entries: past the per-uid
        # limits they take every slot that is not reserved for root and the daemons.
        self.run_flood([(40000 + i, 4) for i in range(50)], ("client2", kglab.CLIENT2_4))


if __name__ == "__main__":
    kglab.main()
