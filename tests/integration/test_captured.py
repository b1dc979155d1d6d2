"""knockgate-captured + knockgate-policyd as an admin runs them, in a WAN lab: privilege
drop, interfaces that disappear and come back, malformed configs, events while policyd is
away, SIGHUP keeping attempts, stop commands across a kill -9 of policyd, IPv6 %IP%."""
import os
import re
import signal
import subprocess
import time
import unittest

import kglab

BUILD = os.environ.get("KG_BUILD_DIR") or os.path.join(kglab.SOURCE_DIR, "build", "debug")
POLICYD = os.path.join(BUILD, "daemons", "policyd", "knockgate-policyd")
CAPTURED = os.path.join(BUILD, "daemons", "captured", "knockgate-captured")
KNOCK = os.path.join(BUILD, "tools", "knock", "knockgate-knock")


def conf(workdir, doors, extra=""):
    return ("[options]\n"
            "  LogFile = {w}/knock.log\n"
            "  Interface = kg-wan\n"
            "  RuntimeDir = {w}\n"
            "  Database = {w}/knockgate.db\n"
            "  PidFile = {w}/policyd.pid\n"
            "  CaptureUser = nobody\n{extra}\n{doors}").format(w=workdir, doors=doors, extra=extra)


DOOR = """[openSSH]
  sequence = 7000,8000,9000
  seq_timeout = 5
  tcpflags = syn
  start_command = echo open %IP% >> {w}/cmd.out
"""


class Appliance:
    def __init__(self, lab, text):
        self.lab = lab
        self.w = lab.dir("appliance%d" % time.monotonic_ns())
        self.conf = os.path.join(self.w, "knockgate.conf")
        with open(self.conf, "w") as f:
            f.write(text.replace("{w}", self.w))
        self.policyd = None
        self.captured = None

    def start_policyd(self):
        self.policyd = self.lab.start("gw", [POLICYD, "-c", self.conf, "-v"],
                                      os.path.join(self.w, "policyd.out"))
        assert self.policyd.wait_for_output(r"listening on", 5), self.policyd.output()

    def start_captured(self):
        self.captured = self.lab.start("gw", [CAPTURED, "-c", self.conf, "-v"],
                                       os.path.join(self.w, "captured.out"))
        assert self.captured.wait_for_output(r"connected to policyd", 5), self.captured.output()

    def start(self):
        self.start_policyd()
        self.start_captured()

    def knock(self, *ports, host=kglab.GW_WAN4, client="client"):
        self.lab.run(client, [KNOCK, host] + [str(p) for p in ports])

    def commands(self):
        try:
            with open(os.path.join(self.w, "cmd.out")) as f:
                return f.read().split("\n")[:-1]
        except FileNotFoundError:
            return []

    def wait_commands(self, n, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if len(self.commands()) >= n:
                return self.commands()
            time.sleep(0.02)
        return self.commands()

    def log(self):
        with open(os.path.join(self.w, "knock.log")) as f:
            return f.read()


class CapturedTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for p in (POLICYD, CAPTURED, KNOCK):
            if not os.path.exists(p):
                raise unittest.SkipTest("not built: " + p)
        cls.lab = kglab.Lab(mode="wan").__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.lab.close()

    def tearDown(self):
        # A daemon that does not exit 0 on SIGTERM (a sanitizer report, a crash at
        # shutdown) fails the test that ran it; kill -9 in a test shows as -9.
        bad = []
        for d in list(self.lab.daemons):
            rc = d.stop()
            if rc not in (0, -signal.SIGKILL):
                bad.append("%s exited %s:\n%s" % (d.argv[0], rc, d.output()[-3000:]))
        self.lab.kill_all("gw")
        self.assertEqual(bad, [])

    def test_privileges_dropped_to_capture_user(self):
        a = Appliance(self.lab, conf("{w}", DOOR))
        a.start()
        with open("/proc/%d/status" % a.captured.pid) as f:
            status = f.read()
        caps = dict(re.findall(r"^(Cap\w+):\s+(\w+)$", status, re.M))
        for k in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
            self.assertEqual(int(caps[k], 16), 0, "%s not empty: %s" % (k, caps))
        uid = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)", status, re.M).groups()
        self.assertEqual(set(uid), {"65534"})
        self.assertRegex(re.search(r"^NoNewPrivs:\s+(\d)", status, re.M).group(1), "1")
        # ...and it still works after the drop.
        a.knock(7000, 8000, 9000)
        self.assertEqual(a.wait_commands(1), ["open " + kglab.CLIENT4])
        # knockd's lines, each once: log watchers count them.
        log = a.log()
        self.assertEqual(log.count("203.0.113.10: openSSH: OPEN SESAME"), 1, log)
        for n in (1, 2, 3):
            self.assertEqual(log.count("203.0.113.10: openSSH: Stage %d" % n), 1, log)
        self.assertEqual(log.count("openSSH: running command: echo open 203.0.113.10"), 1, log)

    def test_interface_deleted_and_recreated(self):
        a = Appliance(self.lab, conf("{w}", DOOR))
        a.start()
        a.knock(7000, 8000, 9000)
        self.assertEqual(len(a.wait_commands(1)), 1)
        sw, gw = self.lab.ns("sw"), self.lab.ns("gw")
        subprocess.run(["ip", "-n", gw, "link", "del", "kg-wan"], check=True)
        self.assertTrue(a.captured.wait_for_output(r"kg-wan is absent", 5), a.captured.output())
        time.sleep(0.3)
        subprocess.run(["ip", "-n", gw, "link", "add", "kg-wan", "type", "veth", "peer", "name",
                        "wan-gw", "netns", sw], check=True)
        subprocess.run(["ip", "-n", sw, "link", "set", "wan-gw", "master", "br-wan", "up"], check=True)
        subprocess.run(["ip", "-n", gw, "addr", "add", "203.0.113.1/24", "dev", "kg-wan"], check=True)
        subprocess.run(["ip", "-n", gw, "addr", "add", "2001:db8:1::1/64", "dev", "kg-wan", "nodad"],
                       check=True)
        subprocess.run(["ip", "-n", gw, "link", "set", "kg-wan", "up"], check=True)
        self.assertTrue(a.captured.wait_for_output(r"kg-wan addresses: 203\.0\.113\.1", 5),
                        a.captured.output())
        self.assertTrue(a.captured.alive())
        time.sleep(0.5)  # ARP on the new link
        a.knock(7000, 8000, 9000)
        self.assertEqual(len(a.wait_commands(2)), 2, a.captured.output())

    def test_interface_absent_at_start_is_waited_for(self):
        a = Appliance(self.lab, conf("{w}", DOOR).replace("Interface = kg-wan", "Interface = kg-late"))
        a.start()
        self.assertTrue(a.captured.wait_for_output(r"kg-late is absent; waiting", 5))
        gw = self.lab.ns("gw")
        # (no dummy module on this kernel: a veth pair inside the gateway will do)
        subprocess.run(["ip", "-n", gw, "link", "add", "kg-late", "type", "veth", "peer", "name",
                        "kg-late-peer"], check=True)
        subprocess.run(["ip", "-n", gw, "link", "set", "kg-late", "up"], check=True)
        subprocess.run(["ip", "-n", gw, "addr", "add", "198.51.100.1/24", "dev", "kg-late"], check=True)
        try:
            self.assertTrue(a.captured.wait_for_output(r"kg-late addresses: 198\.51\.100\.1", 5),
                            a.captured.output())
        finally:
            subprocess.run(["ip", "-n", gw, "link", "del", "kg-late"])
        self.assertTrue(a.captured.alive())

    def test_malformed_config_names_file_and_line(self):
        w = self.lab.dir("badconf")
        path = os.path.join(w, "bad.conf")
        with open(path, "w") as f:
            f.write("[options]\n  Interface = kg-wan\n\n[door]\n  sequence = 7000,70x0\n")
        for prog in (CAPTURED, POLICYD):
            for extra in ([], ["-n"]):
                r = subprocess.run([prog, "-c", path] + extra, capture_output=True, text=True)
                self.assertEqual(r.returncode, 1, (prog, r.stdout, r.stderr))
                self.assertRegex(r.stderr, re.escape(path) + r":5: sequence: ", prog)

    def test_events_wait_for_policyd(self):
        a = Appliance(self.lab, conf("{w}", DOOR))
        a.start()
        a.policyd.stop()
        a.knock(7000, 8000, 9000)
        time.sleep(0.5)
        self.assertEqual(a.commands(), [])
        a.start_policyd()
        self.assertEqual(a.wait_commands(1, timeout=8), ["open " + kglab.CLIENT4])

    def test_sighup_keeps_attempts_of_unchanged_doors(self):
        a = Appliance(self.lab, conf("{w}", DOOR))
        a.start()
        a.knock(7000)
        time.sleep(0.2)
        a.captured.proc.send_signal(signal.SIGHUP)
        self.assertTrue(a.captured.wait_for_output(r"configuration reloaded", 5))
        a.knock(8000, 9000)
        self.assertEqual(a.wait_commands(1), ["open " + kglab.CLIENT4])
        self.assertIn("re-reading config file: " + a.conf, a.log())

    def test_stop_command_survives_kill_9_of_policyd(self):
        door = DOOR + "  stop_command = echo close %IP% >> {w}/cmd.out\n  cmd_timeout = 2\n"
        a = Appliance(self.lab, conf("{w}", door))
        a.start()
        a.knock(7000, 8000, 9000)
        self.assertEqual(a.wait_commands(1), ["open " + kglab.CLIENT4])
        os.kill(a.policyd.pid, signal.SIGKILL)
        a.policyd.proc.wait()
        time.sleep(2.5)  # the stop is due while policyd is dead
        self.assertEqual(a.commands(), ["open " + kglab.CLIENT4])
        a.start_policyd()
        self.assertEqual(a.wait_commands(2), ["open " + kglab.CLIENT4, "close " + kglab.CLIENT4])

    def test_ipv6_knock_substitutes_compressed_address(self):
        door = DOOR + "  start_command_6 = echo open6 %IP% >> {w}/cmd.out\n"
        a = Appliance(self.lab, conf("{w}", door))
        a.start()
        a.knock(7000, 8000, 9000, host=kglab.GW_WAN6)
        self.assertEqual(a.wait_commands(1), ["open6 " + kglab.CLIENT6],
                         a.captured.output() + a.policyd.output() + a.log())

    def test_knocks_to_other_destinations_never_count(self):
        # Routed through the gateway (the client's default route), seen on kg-wan, but not
        # addressed to it: knockd's semantics and ours say this is not a knock.
        a = Appliance(self.lab, conf("{w}", DOOR))
        a.start()
        a.knock(7000, 8000, 9000, host="198.51.100.99")
        a.knock(7000, 8000, 9000, host=kglab.GW_WAN4)
        self.assertEqual(a.wait_commands(1), ["open " + kglab.CLIENT4])
        time.sleep(0.3)
        self.assertEqual(a.commands(), ["open " + kglab.CLIENT4])

    def test_concurrent_knockers_do_not_interfere(self):
        a = Appliance(self.lab, conf("{w}", DOOR))
        a.start()
        a.knock(7000)
        a.knock(7000, client="client2")
        a.knock(8000)
        a.knock(8000, client="client2")
        a.knock(9000)
        a.knock(9000, client="client2")
        self.assertEqual(sorted(a.wait_commands(2)),
                         sorted(["open " + kglab.CLIENT4, "open " + kglab.CLIENT2_4]))


if __name__ == "__main__":
    kglab.main()
