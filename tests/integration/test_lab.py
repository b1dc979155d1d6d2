#!/usr/bin/env python3
"""The namespace lab (vm/lab.sh, vm/lablib.sh): topology, reachability, isolation of
parallel labs, and that nothing is left behind in the root namespace."""

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kglab  # noqa: E402

LAB_SH = os.path.join(kglab.SOURCE_DIR, "vm", "lab.sh")
# Interface names the lab uses inside its namespaces; none may ever show up in the root.
OUR_LINKS = re.compile(r"^(kg-wan|kg-lan|kg-r2|wan-client2?|wan-gw|lan-gw|lan-ssh|lan-vm|"
                       r"r2-up|r2-log|br-wan|br-lan)(@.*)?$")


def root_links():
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split(":")[1].strip() for line in out.splitlines()}


def root_state():
    """What the lab must never change in the root namespace."""
    def out(argv):
        return subprocess.run(argv, capture_output=True, text=True).stdout

    state = {
        "rules4": out(["ip", "-4", "rule", "show"]),
        "rules6": out(["ip", "-6", "rule", "show"]),
        "routes4": out(["ip", "-4", "route", "show", "table", "all"]),
    }
    if shutil.which("nft"):
        state["nft"] = out(["nft", "list", "tables"])
    return state


def lab_sh(tag, *args, check=True, env=None, timeout=60):
    r = subprocess.run([LAB_SH, "-t", tag] + list(args), capture_output=True, text=True,
                       timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise AssertionError("lab.sh %s: rc %d\n%s%s" % (" ".join(args), r.returncode,
                                                         r.stdout, r.stderr))
    return r


def ping(lab, host, addr):
    # Up to three echoes: the first may wait on neighbour discovery right after bring-up;
    # ping exits 0 as soon as one reply came back.
    r = lab.run(host, ["ping", "-n", "-c", "3", "-i", "0.3", "-W", "2", addr], check=False)
    return r.returncode == 0


class LabTopology(unittest.TestCase):
    def test_full_lab_topology_and_cleanup(self):
        before_links = root_links()
        before = root_state()
        with kglab.Lab(mode="full") as lab:
            names = sorted(lab.namespaces())
            self.assertEqual(names, sorted(lab.ns(h) for h in kglab.HOSTS))
            addrs = lab.run("gw", ["ip", "-o", "addr", "show"]).stdout
            for a in ("203.0.113.1/24", "2001:db8:1::1/64", "192.168.50.1/24", "fd00:50::1/64",
                      "192.168.70.1/24"):
                self.assertIn(a, addrs)
            self.assertIn("kg-wan", addrs)
            self.assertIn("kg-lan", addrs)
            forwarding = ["sysctl", "-n", "net.ipv4.ip_forward"]
            self.assertEqual(lab.run("gw", forwarding).stdout.strip(), "1")
            self.assertEqual(lab.run("client", forwarding).stdout.strip(), "0")

            # Reachability across the WAN bridge, through the gateway and through r2.
            self.assertTrue(ping(lab, "client", kglab.GW_WAN4))
            self.assertTrue(ping(lab, "client", kglab.GW_WAN6))
            self.assertTrue(ping(lab, "client2", kglab.CLIENT4))
            self.assertTrue(ping(lab, "client", "192.168.50.10"))
            self.assertTrue(ping(lab, "client", "fd00:50::20"))
            self.assertTrue(ping(lab, "client", "192.168.60.5"))
            self.assertTrue(ping(lab, "log", "192.168.50.20"))

            # The lab's interfaces live only in its namespaces, and it adds no rules.
            self.assertFalse({n for n in root_links() if OUR_LINKS.match(n)})
            self.assertEqual(root_state(), before)
            for ns in lab.namespaces():
                rules = subprocess.run(["ip", "-n", ns, "rule", "show"], capture_output=True,
                                       text=True).stdout
                self.assertEqual(len(rules.strip().splitlines()), 3, ns + ":\n" + rules)
            tag = lab.tag
        self.assertEqual([n for n in kglab._netns_list() if n.startswith(tag + "-")], [])
        self.assertFalse({n for n in root_links() - before_links if OUR_LINKS.match(n)})
        self.assertEqual(root_state(), before)

    def test_wan_mode_is_small(self):
        with kglab.Lab(mode="wan") as lab:
            self.assertEqual(sorted(lab.namespaces()),
                             sorted(lab.ns(h) for h in ("sw", "client", "client2", "gw")))
            self.assertTrue(ping(lab, "client", kglab.GW_WAN4))

    def test_parallel_labs_do_not_collide(self):
        with kglab.Lab(mode="wan") as a, kglab.Lab(mode="wan") as b:
            self.assertNotEqual(a.tag, b.tag)
            self.assertTrue(ping(a, "client", kglab.GW_WAN4))
            self.assertTrue(ping(b, "client", kglab.GW_WAN4))
            b.close()
            self.assertEqual(b.namespaces(), [])
            self.assertTrue(ping(a, "client", kglab.GW_WAN4))


class LabCommandLine(unittest.TestCase):
    TAG = "kgi%dcli" % os.getpid()

    def tearDown(self):
        lab_sh(self.TAG, "down", check=False)

    def test_up_status_exec_down(self):
        r = lab_sh(self.TAG, "up", "wan")
        self.assertIn("lab %s is up" % self.TAG, r.stdout)
        sleeper = subprocess.Popen([LAB_SH, "-t", self.TAG, "exec", "gw", "sleep", "60"])
        try:
            deadline = time.monotonic() + 5
            status = ""
            while time.monotonic() < deadline:
                status = lab_sh(self.TAG, "status").stdout
                if "sleep 60" in status:
                    break
                time.sleep(0.1)
            self.assertIn("== %s-gw" % self.TAG, status)
            self.assertIn("203.0.113.1/24", status)
            self.assertRegex(status, r"proc +\d+ root +sleep 60")
            r = lab_sh(self.TAG, "exec", "client", "ip", "-o", "-4", "addr", "show", "dev", "eth0")
            self.assertIn("203.0.113.10/24", r.stdout)
            # down stops what runs in the lab, removes it, and is safe to repeat.
            lab_sh(self.TAG, "down")
            self.assertIsNotNone(sleeper.wait(timeout=5))
            lab_sh(self.TAG, "down")
        finally:
            if sleeper.poll() is None:
                sleeper.kill()
                sleeper.wait()
        self.assertIn("down (no namespaces)", lab_sh(self.TAG, "status").stdout)
        self.assertEqual([n for n in kglab._netns_list() if n.startswith(self.TAG + "-")], [])

    def test_errors_are_clear(self):
        r = lab_sh(self.TAG, "exec", "gw", "true", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no host 'gw' in lab '%s'" % self.TAG, r.stderr)
        r = lab_sh("bad-tag", "up", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("bad tag 'bad-tag'", r.stderr)
        r = lab_sh(self.TAG, "sideways", check=False)
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command 'sideways'", r.stderr)

    def test_failed_up_removes_partial_lab(self):
        # A namespace of the tag already exists: up fails, says why, and leaves nothing.
        subprocess.run(["ip", "netns", "add", self.TAG + "-vm"], check=True)
        r = lab_sh(self.TAG, "up", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("namespace %s-vm already exists" % self.TAG, r.stderr)
        self.assertEqual([n for n in kglab._netns_list() if n.startswith(self.TAG + "-")], [])


class StaleSweep(unittest.TestCase):
    def test_sweep_removes_labs_of_dead_runs(self):
        # A lab whose owner PID is gone (as after a SIGKILL) is removed by the next run.
        dead = subprocess.Popen(["true"])
        dead.wait()
        tag = "kgi%dx1" % dead.pid
        r = kglab._bash_lab("lab_up", tag, "wan")
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            self.assertTrue(any(n.startswith(tag + "-") for n in kglab._netns_list()))
            kglab.sweep_stale_labs()
            self.assertEqual([n for n in kglab._netns_list() if n.startswith(tag + "-")], [])
        finally:
            kglab._bash_lab("lab_down", tag)


BUILD = os.environ.get("KG_BUILD_DIR") or os.path.join(kglab.SOURCE_DIR, "build", "debug")
DAEMONS = ("policyd", "captured", "verdictd", "webd")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not running any more.
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def daemon_pid(lab_dir, name):
    """The daemon's own pid: the pid file holds `ip netns exec`'s, which execs it."""
    with open(os.path.join(lab_dir, name + ".pid")) as f:
        return int(f.read())


class LabAppliances(unittest.TestCase):
    """Two appliances side by side: `down` of one tag leaves the other's daemons and
    files alone, and neither touches the default tag's directory."""

    def setUp(self):
        if not os.path.exists(os.path.join(BUILD, "daemons", "policyd", "knockgate-policyd")):
            self.skipTest("daemons not built in " + BUILD)
        self.base = tempfile.mkdtemp(prefix="kg-labdir-")
        self.env = dict(os.environ, KG_LAB_DIR=self.base)
        pid = os.getpid() % 100000
        self.tags = ["kgi%dapa" % pid, "kgi%dapb" % pid]
        self.ports = [str(20000 + pid % 20000), str(40000 + pid % 20000)]
        self.sleeper = None

    def tearDown(self):
        for tag, port in zip(self.tags, self.ports):
            lab_sh(tag, "down", check=False, env=dict(self.env, KG_CONSOLE_PORT=port))
        if self.sleeper is not None:
            self.sleeper.kill()
            self.sleeper.wait()
        shutil.rmtree(self.base, ignore_errors=True)
        for tag in self.tags:
            shutil.rmtree(self.base + "-" + tag, ignore_errors=True)

    def test_down_of_one_tag_leaves_other_labs_alone(self):
        # What the default tag's running lab would have in its directory.
        self.sleeper = subprocess.Popen(["sleep", "120"])
        with open(os.path.join(self.base, "policyd.pid"), "w") as f:
            f.write("%d\n" % self.sleeper.pid)
        bin_dir = BUILD
        dirs = [self.base + "-" + tag for tag in self.tags]
        for tag, port in zip(self.tags, self.ports):
            env = dict(self.env, KG_CONSOLE_PORT=port)
            lab_sh(tag, "up", "full", env=env)
            lab_sh(tag, "start", bin_dir, env=env, timeout=120)
        pids = []
        for d in dirs:
            by_name = {name: daemon_pid(d, name) for name in DAEMONS}
            for name, pid in by_name.items():
                self.assertTrue(alive(pid), "%s of %s is not running" % (name, d))
                st = proc_status(pid)
                # Every daemon runs under its seccomp allow-list (mode 2: filter).
                self.assertEqual(st["Seccomp"].strip(), "2", "%s of %s" % (name, d))
                self.assertEqual(st["NoNewPrivs"].strip(), "1", "%s of %s" % (name, d))
            pids.append(by_name)
            mode = stat.S_IMODE(os.stat(os.path.join(d, "console-password")).st_mode)
            self.assertEqual(mode, 0o600, "%s/console-password is %o" % (d, mode))

        lab_sh(self.tags[0], "down", env=dict(self.env, KG_CONSOLE_PORT=self.ports[0]))
        for name, pid in pids[0].items():
            deadline = time.monotonic() + 5
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertFalse(alive(pid), "%s of the downed lab still runs" % name)
        for name, pid in pids[1].items():
            self.assertTrue(alive(pid), "down of %s stopped %s of %s" % (self.tags[0], name,
                                                                         self.tags[1]))
        self.assertTrue(os.path.isfile(os.path.join(dirs[1], "knockgate.conf")))
        self.assertTrue(alive(self.sleeper.pid), "down of a test tag hit the default tag's pid")
        self.assertTrue(os.path.isfile(os.path.join(self.base, "policyd.pid")))


if __name__ == "__main__":
    kglab.main()
