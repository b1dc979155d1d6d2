"""policyd's kernel layer (KernelState) against the real kernel in a lab, driven by
tests/tools/kg_kernel_tool: the exact nftables/ip rule/route state for the shipped profiles,
foreign state left alone, repair of state changed behind our back, the data path (no
verdictd yet: VerdictFailOpen = yes, so the queue is bypassed and the kernel's own grant
check marks the flow; fail-closed: queued packets with no listener are dropped and counted),
revoke = all vs revoke = new on real TCP flows, link down/up, and run-time failures."""
import json
import os
import re
import signal
import subprocess
import time
import unittest

import kglab

BUILD = os.environ.get("KG_BUILD_DIR") or os.path.join(kglab.SOURCE_DIR, "build", "debug")
TOOL = os.path.join(BUILD, "tests", "kg_kernel_tool")
SHIPPED = os.path.join(kglab.SOURCE_DIR, "etc", "knockgate.conf")
PROTO = 107  # our routing protocol number (0x6b)


# RTM_NEWRULE without NLM_F_EXCL: pref 10120 fwmark 0x20000000/0xff000000 lookup 120 proto 107.
ADD_RULE_WITHOUT_EXCL = r"""
import socket, struct
def attr(t, fmt, v):
    body = struct.pack(fmt, v)
    return struct.pack("HH", 4 + len(body), t) + body + b"\0" * (-len(body) % 4)
hdr = struct.pack("BBBBBBBBI", socket.AF_INET, 0, 0, 0, 0, 0, 0, 1, 0)
attrs = (attr(6, "I", 10120) + attr(10, "I", 0x20000000) + attr(16, "I", 0xff000000)
         + attr(15, "I", 120) + attr(21, "B", 107))
body = hdr + attrs
msg = struct.pack("IHHII", 16 + len(body), 32, 1 | 4 | 0x400, 1, 0) + body
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.send(msg)
err = struct.unpack("i", s.recv(4096)[16:20])[0]
assert err == 0, err
"""


def shipped_conf(extra_options=""):
    with open(SHIPPED) as f:
        text = f.read()
    return text.replace("[options]\n", "[options]\n" + extra_options, 1)


class KernelStateTest(unittest.TestCase):
    lab = None

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(TOOL):
            raise unittest.SkipTest("kg_kernel_tool not built")
        cls.lab = kglab.Lab().__enter__()

    @classmethod
    def tearDownClass(cls):
        if cls.lab:
            cls.lab.close()

    def setUp(self):
        self.n = getattr(KernelStateTest, "_n", 0) + 1
        KernelStateTest._n = self.n

    def tearDown(self):
        for h in ("gw", "client", "ssh", "vm", "log"):
            if h != "gw":
                self.lab.kill_all(h, grace=0.3)
        self.tool(self.write_conf(shipped_conf()), "remove-all", check=False)

    # --- helpers
    def write(self, name, text):
        p = self.lab.path("t%d" % self.n, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def write_conf(self, text):
        return self.write("knockgate.conf", text)

    def grants(self, *items):
        return self.write("grants%d.txt" % time.monotonic_ns(),
                          "".join("%d %s %s %s\n" % g for g in items))

    def tool(self, conf, *args, check=True):
        r = self.lab.run("gw", [TOOL, conf] + list(args), check=False, timeout=60)
        if check and r.returncode != 0:
            self.fail("kg_kernel_tool %s: rc %d\n%s%s" % (args, r.returncode, r.stdout, r.stderr))
        return r

    def gw(self, *argv, check=True):
        return self.lab.run("gw", list(argv), check=check)

    def nft_json(self):
        r = self.gw("nft", "-j", "list", "table", "inet", "knockgate", check=False)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)["nftables"]

    def elements(self, nft, set_name):
        for o in nft:
            if "set" in o and o["set"]["name"] == set_name:
                out = set()
                for e in o["set"].get("elem", []):
                    out.add(e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e)
                return out
        raise AssertionError("no set " + set_name)

    def chains(self, nft):
        return sorted(o["chain"]["name"] for o in nft if "chain" in o)

    def rules(self, family="-4"):
        r = self.gw("ip", "-j", family, "rule", "show")
        return json.loads(r.stdout)

    def our_rules(self, family="-4"):
        return [r for r in self.rules(family) if r.get("protocol") in (PROTO, "107", "0x6b")]

    def routes(self, table):
        r = self.gw("ip", "-j", "route", "show", "table", str(table), check=False)
        return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else []

    def wait_listening(self, host, port):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if ":%d " % port in self.lab.run(host, ["ss", "-ltnH"], check=False).stdout:
                return
            time.sleep(0.05)
        self.fail("nothing listening on %s:%d" % (host, port))

    def conntrack(self):
        return self.gw("conntrack", "-L", check=False).stdout

    def assert_shipped_state(self, ssh_sources, syslog_sources=()):
        nft = self.nft_json()
        self.assertIsNotNone(nft, "table inet knockgate missing")
        self.assertEqual(self.chains(nft), ["forward", "gate", "gate_new", "input", "input_wan",
                                            "management", "postrouting_mark", "postrouting_nat",
                                            "prerouting_nat", "verdict", "verdict_queue"])
        v4 = {s for s in ssh_sources if ":" not in s}
        v6 = {s for s in ssh_sources if ":" in s}
        self.assertEqual(self.elements(nft, "grant4_ssh_only"), v4)
        self.assertEqual(self.elements(nft, "grant6_ssh_only"), v6)
        self.assertEqual(self.elements(nft, "grant4_syslog_only"), set(syslog_sources))
        self.assertEqual(self.elements(nft, "grant6_syslog_only"), set())
        # The queue rule (xt NFQUEUE here, nft shows it as `queue num 0`) in verdict_queue.
        listing = self.gw("nft", "list", "chain", "inet", "knockgate", "verdict_queue").stdout
        self.assertRegex(listing, r"queue num 0")
        for fam in ("-4", "-6"):
            ours = sorted((r["priority"], r["fwmark"], r["fwmask"], str(r["table"]))
                          for r in self.our_rules(fam))
            self.assertEqual(ours, [(10100, "0x10000000", "0xff000000", "100"),
                                    (10120, "0x20000000", "0xff000000", "120")], fam)
        ours = [r for r in self.routes(120) if r.get("protocol") in (PROTO, "107", "0x6b")]
        self.assertEqual([(r["dst"], r.get("gateway")) for r in ours],
                         [("default", "192.168.70.2")])

    def add_foreign_state(self):
        self.gw("nft", "add table inet foreign; add chain inet foreign c "
                "{ type filter hook input priority 0; }; add rule inet foreign c counter")
        self.gw("ip", "rule", "add", "fwmark", "0x5", "lookup", "55", "pref", "10100")
        self.gw("ip", "route", "add", "10.99.0.0/16", "via", "192.168.50.10", "table", "120")

    def assert_foreign_state(self):
        self.assertIn("table inet foreign",
                      self.gw("nft", "list", "tables").stdout)
        self.assertTrue(any(r.get("fwmark") == "0x5" and str(r.get("table")) == "55"
                            for r in self.rules()), self.rules())
        self.assertTrue(any(r["dst"] == "10.99.0.0/16" for r in self.routes(120)))

    def remove_foreign_state(self):
        self.gw("nft", "delete table inet foreign", check=False)
        self.gw("ip", "rule", "del", "fwmark", "0x5", "lookup", "55", "pref", "10100", check=False)
        self.gw("ip", "route", "del", "10.99.0.0/16", "table", "120", check=False)

    # --- tests
    def test_exact_state_and_foreign_state_untouched(self):
        self.add_foreign_state()
        try:
            conf = self.write_conf(shipped_conf())
            g = self.grants((1, "203.0.113.10", "ssh-only", 600),
                            (2, "2001:db8:1::10", "ssh-only", 600),
                            (3, "192.168.50.30", "syslog-only", 600),
                            (4, "203.0.113.11", "ssh-only", -5))  # already expired
            r = self.tool(conf, "apply", g)
            self.assertIn("xt NFQUEUE via nft_compat", r.stdout)  # this kernel: no nft queue
            self.assertIn("ruleset replaced", r.stdout)
            self.assert_shipped_state({"203.0.113.10", "2001:db8:1::10"}, {"192.168.50.30"})
            self.assert_foreign_state()
            # Twice: nothing more (no duplicate rules, routes, elements).
            r = self.tool(conf, "apply", g)
            self.assertIn("ip rules +0/-0, routes +0/-0", r.stdout)
            self.assert_shipped_state({"203.0.113.10", "2001:db8:1::10"}, {"192.168.50.30"})
            # add (extend) and remove single grants.
            self.tool(conf, "add", self.grants((5, "203.0.113.11", "ssh-only", 900)))
            self.assertIn("203.0.113.11", self.elements(self.nft_json(), "grant4_ssh_only"))
            listing = self.gw("nft", "list", "set", "inet", "knockgate", "grant4_ssh_only").stdout
            self.assertRegex(listing, r"203\.0\.113\.11 timeout (14m5\ds|15m)")
            self.tool(conf, "add", self.grants((5, "203.0.113.11", "ssh-only", 1800)))
            listing = self.gw("nft", "list", "set", "inet", "knockgate", "grant4_ssh_only").stdout
            self.assertRegex(listing, r"203\.0\.113\.11 timeout (29m5\ds|30m)")  # extended
            self.tool(conf, "remove", self.grants((5, "203.0.113.11", "ssh-only", 0)))
            self.assertNotIn("203.0.113.11", self.elements(self.nft_json(), "grant4_ssh_only"))
            # Removing it again (already gone) is not an error.
            self.tool(conf, "remove", self.grants((5, "203.0.113.11", "ssh-only", 0)))
            # Clean stop: ours gone, foreign state still there.
            self.tool(conf, "remove-all")
            self.assertIsNone(self.nft_json())
            self.assertEqual(self.our_rules("-4"), [])
            self.assertEqual(self.our_rules("-6"), [])
            self.assertFalse(any(r.get("protocol") in (PROTO, "107") for r in self.routes(120)))
            self.assert_foreign_state()
        finally:
            self.remove_foreign_state()

    def test_reconcile_repairs_state_changed_behind_our_back(self):
        self.add_foreign_state()
        try:
            conf = self.write_conf(shipped_conf())
            g = self.grants((1, "203.0.113.10", "ssh-only", 600))
            self.tool(conf, "apply", g)
            # A crash or an admin: stale element, missing and duplicate ip rules, a lost
            # route, a rule slipped into our forward chain.
            self.gw("nft", "add element inet knockgate grant4_ssh_only { 198.51.100.7 timeout 1h }")
            self.gw("nft", "delete element inet knockgate grant4_ssh_only { 203.0.113.10 }")
            self.gw("nft", "insert rule inet knockgate forward accept")
            self.gw("ip", "rule", "del", "pref", "10100", "fwmark", "0x10000000/0xff000000",
                    "lookup", "100")
            # `ip rule add` refuses exact duplicates (NLM_F_EXCL); a request without it, as
            # an older policyd or libnl's default would send, creates one.
            self.lab.run("gw", ["python3", "-c", ADD_RULE_WITHOUT_EXCL])
            self.gw("ip", "-6", "rule", "add", "pref", "10555", "fwmark", "0x1", "lookup", "555",
                    "protocol", str(PROTO))
            self.gw("ip", "route", "del", "default", "table", "120")
            r = self.tool(conf, "apply", g)
            self.assertIn("ruleset replaced, 1 elements loaded, ip rules +1/-2, routes +1/-0",
                          r.stdout)
            self.assert_shipped_state({"203.0.113.10"})
            fwd = self.gw("nft", "list", "chain", "inet", "knockgate", "forward").stdout
            self.assertNotRegex(fwd, r"\n\t\taccept\n\t\tct state")
            self.assert_foreign_state()
        finally:
            self.remove_foreign_state()

    def test_reconcile_in_process_detects_drift(self):
        # The same KernelState reconciling again (reload, link back): unchanged state is left
        # alone, a changed element set is patched, a changed rule makes it replace the table.
        conf = self.write_conf(shipped_conf())
        g = self.grants((1, "203.0.113.10", "ssh-only", 600))
        out = self.lab.path("t%d" % self.n, "watch.out")
        d = self.lab.start("gw", [TOOL, conf, "watch", g, "20"], out)
        self.assertTrue(d.wait_for_output(r"ready:", 10), d.output())

        def again(count):
            d.proc.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                lines = [l for l in d.output().splitlines() if l.startswith("again: ")]
                if len(lines) >= count:
                    return lines[count - 1]
                time.sleep(0.05)
            self.fail("no reconcile #%d:\n%s" % (count, d.output()))

        self.assertIn("ruleset unchanged, elements +0/-0, ip rules +0/-0, routes +0/-0",
                      again(1))
        self.gw("nft", "add element inet knockgate grant4_ssh_only { 198.51.100.7 timeout 1h }")
        self.gw("nft", "delete element inet knockgate grant4_ssh_only { 203.0.113.10 }")
        self.assertIn("ruleset unchanged, elements +1/-1", again(2))
        self.assert_shipped_state({"203.0.113.10"})
        self.gw("nft", "insert rule inet knockgate forward accept")
        self.assertIn("ruleset replaced, 1 elements loaded", again(3))
        self.assert_shipped_state({"203.0.113.10"})
        fwd = self.gw("nft", "list", "chain", "inet", "knockgate", "forward").stdout
        self.assertNotRegex(fwd, r"\n\t\taccept\n\t\tct state")
        d.stop()

    def test_fail_closed_drops_queued_packets_without_verdictd(self):
        conf = self.write_conf(shipped_conf())
        self.tool(conf, "apply", self.grants((1, "203.0.113.10", "ssh-only", 600)))
        self.lab.start("ssh", ["nc", "-lk", "22"], self.lab.path("t%d" % self.n, "nc.out"))
        self.wait_listening("ssh", 22)
        r = self.lab.run("client", ["nc", "-z", "-w", "2", kglab.GW_WAN4, "22"], check=False)
        self.assertNotEqual(r.returncode, 0, "a SYN passed with no verdictd, fail-closed")
        listing = self.gw("nft", "list", "chain", "inet", "knockgate", "verdict_queue").stdout
        m = re.search(r"counter packets (\d+) .*queue num 0\s*$", listing, re.M)
        self.assertTrue(m and int(m.group(1)) >= 1, listing)
        self.assertNotIn("bypass", listing)

    def test_data_path_fail_open_marks_routes_and_revokes(self):
        # No verdictd yet: fail-open bypasses the queue and the kernel's own grant check
        # marks the flow. Table 120 is the only way to the log server.
        conf = self.write_conf(shipped_conf("\tVerdictFailOpen = yes\n"))
        self.gw("ip", "route", "del", "192.168.60.0/24")
        try:
            self.tool(conf, "apply", self.grants((1, "203.0.113.10", "ssh-only", 600)))
            listing = self.gw("nft", "list", "chain", "inet", "knockgate", "verdict_queue").stdout
            self.assertRegex(listing, r"queue num 0 bypass")
            w = self.lab.dir("t%d" % self.n)
            self.lab.start("ssh", ["nc", "-lk", "22"], os.path.join(w, "ssh.out"))
            self.lab.start("log", ["nc", "-lk", "514"], os.path.join(w, "log.out"))
            self.wait_listening("ssh", 22)
            self.wait_listening("log", 514)
            r = self.lab.run("client", ["nc", "-z", "-w", "2", kglab.GW_WAN4, "22"], check=False)
            self.assertEqual(r.returncode, 0, "granted client could not connect: " + r.stderr)
            r = self.lab.run("client2", ["nc", "-z", "-w", "1", kglab.GW_WAN4, "22"], check=False)
            self.assertNotEqual(r.returncode, 0, "client without a grant got through")
            # Long-lived flows: client → ssh (revoke = new), vm → log server (revoke = all).
            ssh_flow = self.lab.start("client", ["sh", "-c", "sleep 20 | nc %s 22" % kglab.GW_WAN4],
                                      os.path.join(w, "c.out"))
            log_flow = self.lab.start("vm", ["sh", "-c", "sleep 20 | nc 192.168.60.5 514"],
                                      os.path.join(w, "v.out"))
            deadline = time.monotonic() + 5
            ct = ""
            while time.monotonic() < deadline:
                ct = self.conntrack()
                if (re.search(r"ESTABLISHED src=203\.0\.113\.10 .*dport=22 .*mark=268435456", ct)
                        and re.search(r"ESTABLISHED src=192\.168\.50\.20 dst=192\.168\.60\.5 .*"
                                      r"mark=536870912", ct)):
                    break
                time.sleep(0.1)
            else:
                self.fail("flows not established with their marks:\n" + ct)
            # revoke = new: the element goes, the established flow stays.
            r = self.tool(conf, "remove", self.grants((1, "203.0.113.10", "ssh-only", 0)))
            self.assertIn("conntrack deleted 0", r.stdout)
            self.assertRegex(self.conntrack(), r"ESTABLISHED src=203\.0\.113\.10 .*dport=22")
            r = self.lab.run("client", ["nc", "-z", "-w", "1", kglab.GW_WAN4, "22"], check=False)
            self.assertNotEqual(r.returncode, 0, "new flow passed after the grant was removed")
            # revoke = all: the source's flows of that profile are cut.
            r = self.tool(conf, "remove", self.grants((2, "192.168.50.20", "syslog-only", 0)))
            self.assertIn("conntrack deleted 1", r.stdout)
            ct = self.conntrack()
            self.assertNotRegex(ct, r"src=192\.168\.50\.20 dst=192\.168\.60\.5 .*dport=514")
            self.assertRegex(ct, r"ESTABLISHED src=203\.0\.113\.10 .*dport=22")
            ssh_flow.stop()
            log_flow.stop()
        finally:
            self.gw("ip", "route", "add", "192.168.60.0/24", "via", "192.168.70.2", check=False)

    def test_link_down_up_reinstalls_route(self):
        conf = self.write_conf(shipped_conf())
        g = self.grants((1, "203.0.113.10", "ssh-only", 600))
        out = self.lab.path("t%d" % self.n, "watch.out")
        d = self.lab.start("gw", [TOOL, conf, "watch", g, "15"], out)
        self.assertTrue(d.wait_for_output(r"ready:", 10), d.output())
        self.assertEqual(len([r for r in self.routes(120) if r.get("protocol") in (PROTO, "107")]),
                         1)
        self.gw("ip", "link", "set", "kg-r2", "down")
        time.sleep(0.3)
        self.assertEqual([r for r in self.routes(120) if r.get("protocol") in (PROTO, "107")], [])
        self.gw("ip", "link", "set", "kg-r2", "up")
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            if [r for r in self.routes(120) if r.get("protocol") in (PROTO, "107")]:
                break
            time.sleep(0.1)
        else:
            self.fail("route not re-installed after link up:\n" + d.output())
        self.assertIn("link back:", d.output())
        d.stop()

    def test_failures_carry_the_kernels_reason(self):
        text = shipped_conf().replace(
            "route        = default via 192.168.70.2",
            "route        = default via 192.168.70.2\n"
            "\troute        = 10.77.0.0/16 via 10.66.0.1\n"
            "\troute        = 10.78.0.0/16 dev kg-nope\n")
        conf = self.write_conf(text)
        r = self.tool(conf, "apply", self.grants((1, "203.0.113.10", "ssh-only", 600)),
                      check=False)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertRegex(r.stderr, r"route 10\.77\.0\.0/16 via 10\.66\.0\.1 table 120 "
                                   r"\(profile syslog-only\): Network is unreachable")
        self.assertRegex(r.stderr, r"route 10\.78\.0\.0/16 dev kg-nope table 120 "
                                   r"\(profile syslog-only\): device kg-nope: No such device")
        # Everything else was installed, and says so.
        self.assertRegex(r.stderr, r"routes \+1/-0")
        self.assert_shipped_state({"203.0.113.10"})
        # A bad grant is refused before touching the kernel.
        r = self.tool(conf, "add", self.grants((9, "203.0.113.10", "no-such", 60)), check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn('grant 9: no profile "no-such"', r.stderr)
        # An nft failure at run time comes back with nft's reason: our table deleted behind
        # our back, then a grant added.
        self.gw("nft", "delete table inet knockgate")
        r = self.tool(conf, "add", self.grants((10, "203.0.113.12", "ssh-only", 60)), check=False)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertRegex(r.stderr, r"error: nft: Error: No such file or directory \(in: add "
                                   r"element inet knockgate grant4_ssh_only \{ 203\.0\.113\.12 ")

    def test_native_queue_ruleset_parses(self):
        # Kernels with nft `queue` get the statement in the ruleset itself. This kernel lacks
        # it, so the kernel refuses that rule (ENOENT) — but nft must parse and send all of it:
        # no syntax error, and nothing is committed (--check).
        for extra in ("", "\tVerdictFailOpen = yes\n\tVerdictQueue = 2-5\n"):
            conf = self.write_conf(shipped_conf(extra))
            text = self.tool(conf, "ruleset", "native").stdout
            self.assertIn("queue num", text)
            r = self.lab.run("gw", ["nft", "-c", "-f", "-"], input=text, check=False)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("Could not process rule: No such file or directory", r.stderr)
            self.assertRegex(r.stderr, r"\n\s*counter queue num [0-9-]+( bypass,fanout)?\n")
            self.assertNotIn("syntax error", r.stderr)
            self.assertIsNone(self.nft_json())

    def test_ipv6_exposure_and_two_wan_interfaces_load(self):
        conf = self.write_conf(
            "[options]\n\tInterface = kg-wan, kg-r2\n\tWanInterface = kg-wan, kg-r2\n\tLanInterface = kg-lan\n"
            "[profile web6]\n\tdirection = inbound\n\texpose = tcp/443 -> [fd00:50::10]:8443\n"
            "\tfwmark = 0x1000000/0xf000000\n\ttable = 200\n\troute = default via fd00:50::10\n"
            "[profile ntp]\n\tdirection = egress\n\tsources = fd00:50::20, 192.168.50.21\n"
            "\tallow = udp/123, icmp\n\tdestination = 2001:db8:9::/48, 198.51.100.0/24\n")
        r = self.tool(conf, "apply", self.grants((1, "2001:db8:1::10", "web6", 60)))
        self.assertIn("routes +1/-0", r.stdout)
        listing = self.gw("nft", "list", "table", "inet", "knockgate").stdout
        self.assertIn("dnat ip6 to [fd00:50::10]:8443", listing)
        self.assertRegex(listing, r'iifname \{ "kg-(wan|r2)", "kg-(wan|r2)" \}')
        self.assertIn("2001:db8:1::10", listing)
        r6 = self.gw("ip", "-6", "route", "show", "table", "200").stdout
        self.assertIn("default via fd00:50::10", r6)
        self.tool(conf, "remove-all")
        self.assertEqual(self.gw("ip", "-6", "route", "show", "table", "200",
                                 check=False).stdout.strip(), "")


if __name__ == "__main__":
    kglab.main()
