#!/usr/bin/env python3
"""knockgate-knock on the wire, side by side with knockd's `knock`: the same packets (one
plain SYN per TCP hit, one 0x00 datagram per UDP hit), the same verbose lines, the same
delays; plus doors from config files, one-time sequences, --wait, and clear errors."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kglab  # noqa: E402
from kglab import CLIENT4, CLIENT6, GW_WAN4, GW_WAN6  # noqa: E402

BUILD_DIR = os.environ.get("KG_BUILD_DIR", "")
KG_KNOCK = os.path.join(BUILD_DIR, "tools", "knock", "knockgate-knock") if BUILD_DIR else ""
BPF = "(dst host %s or dst host %s) and (tcp or udp)" % (GW_WAN4, GW_WAN6)


def wire(packets):
    """What matters of each packet: family-independent source, protocol, port, flags,
    payload."""
    return [(p.src, p.proto, p.dport, p.flag_str() if p.proto == "tcp" else "", p.payload)
            for p in packets]


class KnockClient(unittest.TestCase):
    lab = None

    @classmethod
    def setUpClass(cls):
        if not (KG_KNOCK and os.access(KG_KNOCK, os.X_OK)):
            raise unittest.SkipTest("knockgate-knock not built (KG_BUILD_DIR=%r)" % BUILD_DIR)
        cls.lab = kglab.Lab(mode="wan").__enter__()
        cls.addClassCleanup(cls.lab.close)

    def capture(self, argv, host="client"):
        with kglab.Capture(self.lab, "gw", "kg-wan", BPF) as cap:
            r = self.lab.run(host, argv, check=False)
        return r, cap.packets

    def same_on_wire(self, args):
        r1, theirs = self.capture(["knock"] + args)
        r2, ours = self.capture([KG_KNOCK] + args)
        self.assertEqual(r1.returncode, 0, r1.stderr)
        self.assertEqual(r2.returncode, 0, r2.stderr)
        self.assertEqual(wire(ours), wire(theirs))
        self.assertEqual(r2.stdout, r1.stdout)  # the -v lines, when asked for
        return ours

    def test_tcp_hits_are_single_plain_syns(self):
        ours = self.same_on_wire([GW_WAN4, "7000", "8000", "9000"])
        self.assertEqual(wire(ours), [(CLIENT4, "tcp", p, "S", b"") for p in (7000, 8000, 9000)])

    def test_udp_hits_are_one_zero_byte(self):
        ours = self.same_on_wire(["-u", GW_WAN4, "7000", "8000:tcp"])
        # knock's -u makes every hit UDP, even one written "port:tcp".
        self.assertEqual(wire(ours), [(CLIENT4, "udp", 7000, "", b"\x00"),
                                      (CLIENT4, "udp", 8000, "", b"\x00")])

    def test_verbose_lines_match_knock(self):
        ours = self.same_on_wire(["-v", GW_WAN4, "7000", "8000:udp", "9000:tcp"])
        self.assertEqual(len(ours), 3)
        r = self.lab.run("client", [KG_KNOCK, "-v", GW_WAN4, "7000", "8000:udp"])
        self.assertEqual(r.stdout, "hitting tcp 203.0.113.1:7000\nhitting udp 203.0.113.1:8000\n")

    def test_ipv6(self):
        ours = self.same_on_wire(["-v", "-6", GW_WAN6, "7000", "8000:udp"])
        self.assertEqual(wire(ours), [(CLIENT6, "tcp", 7000, "S", b""),
                                      (CLIENT6, "udp", 8000, "", b"\x00")])
        r = self.lab.run("client", [KG_KNOCK, "-v", GW_WAN6, "7000"])
        self.assertEqual(r.stdout, "hitting tcp 2001:db8:1::1:7000\n")

    def test_delay_after_every_hit_like_knock(self):
        for prog in ("knock", KG_KNOCK):
            start = time.monotonic()
            _, packets = self.capture([prog, "-d", "300", GW_WAN4, "7000", "8000", "9000"])
            elapsed = time.monotonic() - start
            self.assertEqual(len(packets), 3, prog)
            gaps = [b.time - a.time for a, b in zip(packets, packets[1:])]
            self.assertTrue(all(0.28 <= g <= 0.6 for g in gaps), (prog, gaps))
            self.assertGreaterEqual(elapsed, 0.9, prog)  # knock sleeps after the last hit too

    def test_wait_after_last_hit(self):
        start = time.monotonic()
        r = self.lab.run("client", [KG_KNOCK, "-v", "--wait", "600", GW_WAN4, "7000"])
        self.assertGreaterEqual(time.monotonic() - start, 0.6)
        self.assertIn("waiting 600 ms", r.stdout)

    def test_door_from_client_file(self):
        conf = self.lab.path("client", "knock.conf")
        with open(conf, "w") as f:
            f.write("[door ssh]\n  host = %s\n  sequence = 7000, 8000:udp ,9000\n"
                    "[door other]\n  host = %s\n  sequence = 1\n" % (GW_WAN4, GW_WAN6))
        r, packets = self.capture([KG_KNOCK, "-c", conf, "-p", "ssh"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(wire(packets), [(CLIENT4, "tcp", 7000, "S", b""),
                                         (CLIENT4, "udp", 8000, "", b"\x00"),
                                         (CLIENT4, "tcp", 9000, "S", b"")])
        # A host on the command line wins over the file's.
        r, packets = self.capture([KG_KNOCK, "-c", conf, "-p", "other", GW_WAN4])
        self.assertEqual(wire(packets), [(CLIENT4, "tcp", 1, "S", b"")])
        # Several doors and no -p: the error names them.
        r = self.lab.run("client", [KG_KNOCK, "-c", conf], check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("several doors (ssh, other): choose one with -p", r.stderr)

    def test_door_from_default_file(self):
        xdg = self.lab.dir("xdg")
        os.makedirs(os.path.join(xdg, "knockgate"), exist_ok=True)
        with open(os.path.join(xdg, "knockgate", "knock.conf"), "w") as f:
            f.write("[door web]\nhost = %s\nsequence = 4242:udp\n" % GW_WAN4)
        r, packets = self.capture(["env", "XDG_CONFIG_HOME=" + xdg, KG_KNOCK, "-p", "web"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(wire(packets), [(CLIENT4, "udp", 4242, "", b"\x00")])

    def test_door_from_knockd_conf_uses_target(self):
        conf = self.lab.path("client", "knockd.conf")
        with open(conf, "w") as f:
            f.write("[options]\n\tUseSyslog\n[openSSH]\n\tsequence = 7000,8000\n"
                    "\tseq_timeout = 5\n\ttcpflags = syn,ack\n\ttarget = %s\n"
                    "\tcommand = /sbin/iptables -A INPUT -s %%IP%% -j ACCEPT\n" % GW_WAN4)
        r, packets = self.capture([KG_KNOCK, "-c", conf])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(packets), 2)
        self.assertIn("tcpflags test that a plain SYN fails", r.stderr)

    def test_one_time_sequences_opened_by_knockd(self):
        """The client's copy of knockd's one-time list stays in step with the server's."""
        work = self.lab.dir("onetime")
        seqs = " 7000,8000\n 7100,8100:udp\n"
        server_list, client_list = os.path.join(work, "server"), os.path.join(work, "client")
        for p in (server_list, client_list):
            with open(p, "w") as f:
                f.write(seqs)
        mark = os.path.join(work, "mark")
        conf = os.path.join(work, "knockd.conf")
        with open(conf, "w") as f:
            f.write("[options]\n  LogFile = %s/knockd.log\n  PidFile = %s/knockd.pid\n"
                    "[ot]\n  one_time_sequences = %s\n  seq_timeout = 5\n"
                    '  command = echo "%%IP%% ot" >> %s\n' % (work, work, server_list, mark))
        client_conf = os.path.join(work, "knock.conf")
        with open(client_conf, "w") as f:
            f.write("[door ot]\nhost = %s\none_time_sequences = client\n" % GW_WAN4)
        knockd = self.lab.start("gw", ["knockd", "-i", "kg-wan", "-c", conf, "-D", "-v"],
                                os.path.join(work, "knockd.out"))
        try:
            self.assertTrue(knockd.wait_for_output("listening on kg-wan",
                                                   path=os.path.join(work, "knockd.log")),
                            knockd.output())
            for _ in range(2):
                r = self.lab.run("client", [KG_KNOCK, "-c", client_conf, "-v"])
                self.assertIn("marked line", r.stdout)
                time.sleep(0.5)  # knockd rotates its list and rebuilds its filter
            r = self.lab.run("client", [KG_KNOCK, "-c", client_conf], check=False)
            self.assertEqual(r.returncode, 1)
            self.assertIn("no unused sequence left", r.stderr)
        finally:
            knockd.stop()
            self.lab.kill_all("gw")
        with open(mark) as f:
            self.assertEqual(f.read(), "%s ot\n%s ot\n" % (CLIENT4, CLIENT4))
        for p in (server_list, client_list):
            with open(p) as f:
                self.assertEqual(f.read(), "#7000,8000\n#7100,8100:udp\n", p)

    def test_errors(self):
        cases = [
            ([GW_WAN4, "70000"], "'70000': port must be 1-65535"),
            ([GW_WAN4, "7000:icmp"], "unknown protocol 'icmp'"),
            (["no-such-host.invalid", "7000"], "cannot resolve 'no-such-host.invalid'"),
            ([GW_WAN4], "need a host and at least one port"),
            (["-d", "-1", GW_WAN4, "1"], "delay must be a number of milliseconds"),
            (["-6", GW_WAN4, "1"], "cannot resolve '203.0.113.1'"),
        ]
        for args, message in cases:
            r = self.lab.run("client", [KG_KNOCK] + args, check=False)
            self.assertEqual(r.returncode, 1, args)
            self.assertIn(message, r.stderr, args)
        bad = self.lab.path("client", "bad.conf")
        with open(bad, "w") as f:
            f.write("[door x]\nhost = %s\nsequence = 7000,abc\n" % GW_WAN4)
        r = self.lab.run("client", [KG_KNOCK, "-c", bad], check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(bad + ":3: sequence: 'abc': port must be a number 1-65535", r.stderr)
        # Nothing was sent for any of these.
        r, packets = self.capture([KG_KNOCK, GW_WAN4, "7000", "bogus:proto"])
        self.assertEqual(r.returncode, 1)
        self.assertEqual(packets, [])


if __name__ == "__main__":
    kglab.main()
