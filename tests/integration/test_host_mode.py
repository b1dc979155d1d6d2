"""knockd's host mode: a plain knockd.conf (no interface roles, no profiles) changes
nothing in the kernel. The lab's gw namespace plays a host that routes with its own
nftables ruleset; knockgate's policyd and captured start with knockd.conf files in the
shapes of knockd's own examples; the ruleset, ip rules and forwarding are exactly as before
start, while they run and after they stop, and the doors' commands still run with the
knocker's address. A `self` profile adds one input chain in our own table and nothing else.
"""
import os
import signal
import socket
import time
import unittest

import kglab
import webdlib

POLICYD, CAPTURED, CTL, KNOCK = webdlib.POLICYD, webdlib.CAPTURED, webdlib.CTL, webdlib.KNOCK

# The host's own firewall: forwarding allowed client → LAN host port 22 only, a counter on
# input, a NAT table. knockgate must leave every byte of it alone.
HOST_RULESET = """
table inet hostfw {
  chain input { type filter hook input priority 0; policy accept; counter; }
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    ip daddr 192.168.50.10 tcp dport 22 accept
  }
}
table ip hostnat {
  chain post { type nat hook postrouting priority 100; oifname "kg-wan" masquerade; }
}
"""

OPTIONS = """[options]
  Interface = kg-wan
  LogFile = {w}/knockd.log
  PidFile = {w}/knockd.pid
  RuntimeDir = {w}
  Database = {w}/knockgate.db
  CaptureUser = nobody
"""

# knockd's man page examples, commands writing to a file instead of calling iptables.
SEED_CONFS = {
    "open-close": """
[openSSH]
  sequence    = 7000,8000,9000
  seq_timeout = 5
  command     = echo open %IP% >> {w}/commands.log
  tcpflags    = syn

[closeSSH]
  sequence    = 9000,8000,7000
  seq_timeout = 5
  command     = echo close %IP% >> {w}/commands.log
  tcpflags    = syn
""",
    "start-stop": """
[opencloseSSH]
  sequence      = 2222:udp,3333:tcp,4444:udp
  seq_timeout   = 15
  tcpflags      = syn
  start_command = echo open %IP% >> {w}/commands.log
  cmd_timeout   = 2
  stop_command  = echo close %IP% >> {w}/commands.log
""",
}


class HostMode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not all(os.path.exists(p) for p in (POLICYD, CAPTURED, CTL, KNOCK)):
            raise unittest.SkipTest("daemons not built")
        cls.lab = kglab.Lab("full").__enter__()
        try:
            cls.lab.run("gw", ["nft", "-f", "-"], input=HOST_RULESET)
            cls.lan = cls.lab.start("ssh", ["python3", "-c", LAN_LISTENER],
                                    cls.lab.path("lan-listener.out"))
            assert cls.lan.wait_for_output("listening", 5), cls.lan.output()
        except BaseException:
            cls.lab.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.lab.close()

    def kernel_state(self):
        """Everything knockgate could touch in the host: ruleset, rules, routes, sysctls."""
        out = []
        for argv in (["nft", "list", "ruleset"], ["ip", "rule"], ["ip", "-6", "rule"],
                     ["ip", "route", "show", "table", "all"],
                     ["sysctl", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]):
            text = self.lab.run("gw", argv).stdout
            # Counters move with traffic, and the kernel keeps adding IPv6 local routes as
            # addresses finish DAD; everything else must not move.
            out.append("\n".join(l for l in text.splitlines()
                                 if "counter" not in l and "table local" not in l))
        return out

    def forwards(self):
        with webdlib.netns(self.lab.ns("client")):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(1)
        try:
            s.connect(("192.168.50.10", 22))
            return True
        except OSError:
            return False
        finally:
            s.close()

    def wait_line(self, path, text, seconds=5):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if os.path.exists(path) and text in open(path).read():
                return True
            time.sleep(0.05)
        return False

    def run_appliance(self, name, doors):
        w = self.lab.dir("host-" + name)
        os.chmod(w, 0o777)
        conf = os.path.join(w, "knockd.conf")
        with open(conf, "w") as f:
            f.write(OPTIONS.format(w=w) + doors.format(w=w))
        policyd = self.lab.start("gw", [POLICYD, "-c", conf, "-v"], os.path.join(w, "policyd.out"))
        self.assertTrue(policyd.wait_for_output(r"listening on", 15), policyd.output())
        captured = self.lab.start("gw", [CAPTURED, "-c", conf, "-v"],
                                  os.path.join(w, "captured.out"))
        self.assertTrue(captured.wait_for_output(r"connected to policyd", 10), captured.output())
        return w, conf, policyd, captured

    def stop(self, *daemons):
        for d in daemons:
            d.proc.send_signal(signal.SIGTERM)
        for d in daemons:
            d.proc.wait(timeout=15)

    def test_plain_knockd_confs_change_nothing(self):
        for name, doors in SEED_CONFS.items():
            with self.subTest(name):
                before = self.kernel_state()
                self.assertTrue(self.forwards())
                w, conf, policyd, captured = self.run_appliance(name, doors)
                r = self.lab.run("gw", [CTL, "-c", conf, "status"], check=False)
                self.assertIn("mode host", r.stdout, r.stderr)
                self.assertEqual(self.kernel_state(), before)
                self.assertTrue(self.forwards())
                log = os.path.join(w, "commands.log")
                if name == "open-close":
                    self.lab.run("client", [KNOCK, kglab.GW_WAN4, "7000", "8000", "9000"])
                    self.assertTrue(self.wait_line(log, "open " + kglab.CLIENT4))
                    self.lab.run("client", [KNOCK, kglab.GW_WAN4, "9000", "8000", "7000"])
                    self.assertTrue(self.wait_line(log, "close " + kglab.CLIENT4))
                else:
                    self.lab.run("client", [KNOCK, kglab.GW_WAN4, "2222:udp", "3333:tcp",
                                            "4444:udp"])
                    self.assertTrue(self.wait_line(log, "open " + kglab.CLIENT4))
                    self.assertTrue(self.wait_line(log, "close " + kglab.CLIENT4, 6))
                self.assertEqual(self.kernel_state(), before)
                self.assertTrue(self.forwards())
                self.stop(captured, policyd)
                self.assertEqual(self.kernel_state(), before)

    def test_self_profile_adds_only_an_input_chain(self):
        before = self.kernel_state()
        doors = """
[profile own-ssh]
  direction = inbound
  expose    = self tcp/2200

[openOwn]
  sequence    = 7100,8100,9100
  seq_timeout = 5
  tcpflags    = syn
  grant       = own-ssh
"""
        w, conf, policyd, captured = self.run_appliance("self", doors)
        table = self.lab.run("gw", ["nft", "list", "table", "inet", "knockgate"]).stdout
        chains = sorted(l.split()[1] for l in table.splitlines() if l.strip().startswith("chain "))
        self.assertEqual(chains, ["input"], table)
        self.assertNotIn("hook forward", table)
        self.assertNotIn("nat", table)
        # The host's own tables, rules, routes and forwarding are untouched.
        now = self.kernel_state()
        self.assertEqual(without_our_table(now[0]), before[0])
        self.assertEqual(now[1:], before[1:])
        self.assertTrue(self.forwards())
        self.stop(captured, policyd)
        self.assertEqual(self.kernel_state(), before)


def without_our_table(ruleset):
    out, skipping = [], False
    for line in ruleset.splitlines():
        if line.startswith("table inet knockgate {"):
            skipping = True
        elif skipping and line == "}":
            skipping = False
        elif not skipping:
            out.append(line)
    return "\n".join(out)


LAN_LISTENER = r"""
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 22)); s.listen(16)
print("listening", flush=True)
while True:
    c, a = s.accept(); c.close()
"""

if __name__ == "__main__":
    kglab.main()
