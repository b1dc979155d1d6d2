"""knockgate-verdictd behind policyd's real ruleset (docs/datapath.md, installed with
tests/tools/kg_kernel_tool from the shipped profiles): the verdict's mark steers the flow
through the profile's routing table (the gw's main table has no route to the syslog
network), fail-closed gating of inbound flows verdictd has no grant for, and kill -9 of
verdictd while a client loops connects: no unauthorised NEW flow reaches the LAN."""
import os
import re
import signal
import time
import unittest

import kglab
import verdict_lab as vl

TOOL = os.path.join(vl.BUILD, "tests", "kg_kernel_tool")
SHIPPED = os.path.join(kglab.SOURCE_DIR, "etc", "knockgate.conf")


class RulesetTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(TOOL):
            raise unittest.SkipTest("kg_kernel_tool not built")
        cls.lab = kglab.Lab("full").__enter__()
        try:
            cls.w = cls.lab.dir("rs")
            with open(SHIPPED) as f:
                text = f.read()
            text = re.sub(r"RuntimeDir\s*=.*", "RuntimeDir = " + cls.w, text)
            text = re.sub(r"Database\s*=.*", "Database = %s/kg.db\n\tPidFile = %s/policyd.pid\n"
                          "\tVerdictUser = nobody\n\tCaptureUser = nobody" % (cls.w, cls.w), text)
            cls.conf = os.path.join(cls.w, "knockgate.conf")
            with open(cls.conf, "w") as f:
                f.write(text)
            grants = os.path.join(cls.w, "grants.txt")
            # The kernel's own set holds a grant for client; verdictd has none (no policyd).
            with open(grants, "w") as f:
                f.write("1 %s ssh-only 600\n" % kglab.CLIENT4)
            # Only the profile's table 120 reaches the syslog network.
            cls.lab.run("gw", ["ip", "route", "del", "192.168.60.0/24"])
            r = cls.lab.run("gw", [TOOL, cls.conf, "apply", grants], check=False, timeout=60)
            if r.returncode != 0:
                raise AssertionError("kg_kernel_tool apply: %s%s" % (r.stdout, r.stderr))
            cls.log = vl.Listener(cls.lab, "log", [514, 80], "log")
            cls.ssh = vl.Listener(cls.lab, "ssh", [22], "ssh")
        except BaseException:
            cls.lab.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.lab.close()

    def setUp(self):
        self.d = vl.start_verdictd(self.lab, self.conf)

    def tearDown(self):
        if self.d is not None:
            self.d.stop()

    def test_static_egress_routed_by_profile_table(self):
        vl.send_udp(self.lab, "vm", vl.LOG_HOST, 514, "syslog-udp-ruleset")
        self.assertTrue(self.log.wait_for(r"udp 514 192.168.50.20 syslog-udp-ruleset"),
                        self.log.lines() + [self.d.output()])
        res = vl.probe(self.lab, "vm", vl.LOG_HOST, 514, msg="syslog-tcp-ruleset")
        self.assertTrue(res[0][0], res)
        self.assertTrue(self.log.wait_for(r"tcp 514 192.168.50.20 syslog-tcp-ruleset"))
        ct = self.lab.run("gw", ["conntrack", "-L", "-s", vl.VM_HOST, "-p", "tcp"],
                          check=False).stdout
        self.assertIn("mark=%d" % vl.SYSLOG_MARK, ct)
        # Anything else from the VM host fails: another port, ping, the WAN.
        self.assertFalse(vl.probe(self.lab, "vm", vl.LOG_HOST, 80, timeout=0.5)[0][0])
        r = self.lab.run("vm", ["ping", "-c", "1", "-W", "1", vl.LOG_HOST], check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertFalse(vl.probe(self.lab, "vm", kglab.CLIENT4, 80, timeout=0.5)[0][0])

    def test_inbound_gated_by_verdictd_not_only_the_set(self):
        # The kernel set has client's element, but verdictd knows no grant: held, dropped.
        res = vl.probe(self.lab, "client", kglab.GW_WAN4, 22, timeout=0.8)
        self.assertFalse(res[0][0], res)
        self.assertTrue(self.d.wait_for_output(
            r"hold 203.0.113.10 -> 192.168.50.10:22: awaiting grant", 1), self.d.output())
        self.assertFalse(self.ssh.wait_for(r"tcp 22 ", 0.2))

    def test_kill9_during_connect_loop_lets_nothing_through(self):
        loop = self.lab.start("client2", ["python3", self.probe_script(), kglab.GW_WAN4, "22",
                                          "0.2", "40"], self.lab.path("loop.out"))
        with kglab.Capture(self.lab, "ssh", "eth0", "tcp dst port 22 and tcp[tcpflags] & tcp-syn != 0",
                           name="lan-syn") as cap:
            time.sleep(0.5)
            os.kill(self.d.pid, signal.SIGKILL)
            self.d.proc.wait()
            time.sleep(1.0)
            t0 = time.monotonic()
            self.d = vl.start_verdictd(self.lab, self.conf)
            started = time.monotonic() - t0
            res = vl.probe(self.lab, "vm", vl.LOG_HOST, 514, timeout=1.0, msg="after-restart")
            self.assertTrue(res[0][0], res)
            self.assertLess(started, 1.0)
            time.sleep(1.0)
        loop.stop()
        self.assertEqual(len(cap.packets), 0, [(p.src, p.dst) for p in cap.packets])
        self.assertIn("fail", loop.output())

    def probe_script(self):
        p = self.lab.path("probe.py")
        with open(p, "w") as f:
            f.write(vl.PROBE)
        return p


if __name__ == "__main__":
    kglab.main()
