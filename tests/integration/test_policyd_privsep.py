"""policyd's privilege separation against the real kernel in the namespace lab: the engine
runs as PolicyUser with no capabilities, NoNewPrivs and its own seccomp filter; the kernel
writer keeps uid 0 with exactly NET_ADMIN, NET_RAW, KILL, SETUID and SETGID. A compromised
engine is played by taking the engine's end of the channel (pidfd_getfd) while the engine
is stopped: requests outside the writer's closed set are refused with a reason and change
nothing. A door's command runs in the writer (uid 0, or CommandUser). A killed engine is restarted by the
writer, which reconciles the grants again; a killed writer takes the engine with it."""
import ctypes
import json
import os
import pwd
import re
import signal
import socket
import struct
import time
import unittest

import kglab

BUILD = os.environ.get("KG_BUILD_DIR") or os.path.join(kglab.SOURCE_DIR, "build", "debug")
POLICYD = os.path.join(BUILD, "daemons", "policyd", "knockgate-policyd")
CTL = os.path.join(BUILD, "tools", "ctl", "knockgatectl")
SHIPPED = os.path.join(kglab.SOURCE_DIR, "etc", "knockgate.conf")
SET4 = "grant4_ssh_only"
# CAP_KILL 5, CAP_SETGID 6, CAP_SETUID 7, CAP_NET_ADMIN 12, CAP_NET_RAW 13
WRITER_CAPS = (1 << 5) | (1 << 6) | (1 << 7) | (1 << 12) | (1 << 13)
SYS_PIDFD_GETFD = 438


def status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def take_fd(pid, fd):
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        got = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if got < 0:
            raise OSError(ctypes.get_errno(), "pidfd_getfd")
        return got
    finally:
        os.close(pidfd)


def string(s):
    b = s.encode()
    return struct.pack(">I", len(b)) + b


def grant(gid, addr, profile, expires_ns):
    return (struct.pack(">QB", gid, 4) + socket.inet_aton(addr) + string(profile) +
            struct.pack(">q", expires_ns))


def add_grants(request_id, grants):
    return bytes([4]) + struct.pack(">II", request_id, len(grants)) + b"".join(grants)


def run_command(request_id, door, stop, addr):
    return (bytes([7]) + struct.pack(">IQ", request_id, request_id) + string(door) +
            bytes([1 if stop else 0, 4]) + socket.inet_aton(addr))


def decode_reply(datagram):
    if datagram[0] != 8:
        return None
    request_id, ok, count = struct.unpack(">IBQ", datagram[1:14])
    (n,) = struct.unpack(">I", datagram[14:18])
    return request_id, bool(ok), count, datagram[18:18 + n].decode()


class PrivsepTest(unittest.TestCase):
    lab = None

    @classmethod
    def setUpClass(cls):
        for p in (POLICYD, CTL):
            if not os.path.exists(p):
                raise unittest.SkipTest("not built: " + p)
        try:
            cls.policy_uid = pwd.getpwnam("knockgate-policy").pw_uid
        except KeyError:
            raise unittest.SkipTest("no knockgate-policy user (scripts/deps.sh creates it)")
        cls.lab = kglab.Lab().__enter__()
        cls.w = cls.lab.dir("privsep")
        with open(SHIPPED) as f:
            text = f.read()
        text = re.sub(r"(?m)^\s*(RuntimeDir|Database)\s*=.*\n", "", text)
        options = ("  RuntimeDir = {w}\n  Database = {w}/knockgate.db\n  PidFile = {w}/policyd.pid\n"
                   "  CaptureUser = nobody\n  VerdictFailOpen = yes\n").format(w=cls.w)
        text = text.replace("[options]\n", "[options]\n" + options, 1)
        # A door whose start command records who ran it.
        text += ("\n[recordUid]\n\tsequence = 6001,6002\n"
                 "\tcommand = /bin/sh -c 'id -u > {w}/cmd-%IP%'\n").format(w=cls.w)
        cls.conf = os.path.join(cls.w, "knockgate.conf")
        with open(cls.conf, "w") as f:
            f.write(text)
        cls.policyd = cls.lab.start("gw", [POLICYD, "-c", cls.conf, "-v"],
                                    os.path.join(cls.w, "policyd.out"))
        if not cls.policyd.wait_for_output(r"ready:", 15):
            raise AssertionError("policyd did not start:\n" + cls.policyd.output())

    @classmethod
    def tearDownClass(cls):
        if cls.lab:
            cls.lab.close()

    def writer_pid(self):
        return kglab.real_pid(self.policyd.pid)

    def engine_pid(self, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            kids = [p for p in children(self.writer_pid())
                    if status(p).get("Uid", "").split()[0] == str(self.policy_uid)]
            if kids and status(kids[0]).get("Seccomp", "").strip() == "2":
                return kids[0]
            time.sleep(0.05)
        self.fail("no engine process\n" + self.policyd.output()[-3000:])

    def ctl(self, *args):
        r = self.lab.run("gw", [CTL, "-c", self.conf] + list(args), check=False)
        self.assertEqual(r.returncode, 0, "knockgatectl %s: %s%s" % (args, r.stdout, r.stderr))
        return r.stdout

    def set_elements(self):
        r = self.lab.run("gw", ["nft", "-j", "list", "set", "inet", "knockgate", SET4])
        out = set()
        for item in json.loads(r.stdout)["nftables"]:
            for e in item.get("set", {}).get("elem", []):
                out.add(e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e)
        return out

    def wait(self, pred, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return
            time.sleep(0.05)
        self.fail("timed out waiting for " + what + "\n" + self.policyd.output()[-3000:])

    def test_1_engine_and_writer_credentials(self):
        engine = status(self.engine_pid())
        self.assertEqual(engine["Uid"].split(), [str(self.policy_uid)] * 4)
        self.assertNotIn("0", engine["Gid"].split())
        for field in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            self.assertEqual(int(engine[field], 16), 0, field)
        self.assertEqual(engine["NoNewPrivs"].strip(), "1")
        self.assertEqual(engine["Seccomp"].strip(), "2")
        # Its own filter on top of the writer's.
        self.assertEqual(engine["Seccomp_filters"].strip(), "2")
        writer = status(self.writer_pid())
        self.assertEqual(writer["Uid"].split(), ["0"] * 4)
        for field in ("CapPrm", "CapEff", "CapBnd"):
            self.assertEqual(int(writer[field], 16), WRITER_CAPS,
                             "%s %s" % (field, writer[field]))
        self.assertEqual(int(writer["CapInh"], 16), 0)
        self.assertEqual(int(writer["CapAmb"], 16), 0)
        self.assertEqual(writer["NoNewPrivs"].strip(), "1")
        self.assertEqual(writer["Seccomp"].strip(), "2")
        # Nothing of the writer's crosses into the engine: no netlink socket at all.
        with open("/proc/%d/net/netlink" % self.engine_pid()) as f:
            netlink_inodes = {line.split()[-1] for line in f.readlines()[1:]}
        fd_dir = "/proc/%d/fd" % self.engine_pid()
        engine_sockets = {os.readlink(os.path.join(fd_dir, fd))[8:-1] for fd in os.listdir(fd_dir)
                          if os.readlink(os.path.join(fd_dir, fd)).startswith("socket:[")}
        self.assertFalse(engine_sockets & netlink_inodes, "netlink sockets in the engine")
        # The database belongs to the engine's user.
        self.assertEqual(os.stat(os.path.join(self.w, "knockgate.db")).st_uid, self.policy_uid)

    def test_2_grants_and_commands_go_through_the_writer(self):
        self.ctl("grant", "203.0.113.7", "ssh-only")
        self.wait(lambda: "203.0.113.7" in self.set_elements(), 5, "the grant's element")
        # The engine's request for a door's command, as it sends it after a knock (knocks
        # themselves, with captured, run commands in integration_lab and knockd_diff).
        (reply,) = self.as_engine(lambda s: [self.ask(s, run_command(900, "recordUid", False,
                                                                      "198.51.100.9"), 900)])
        self.assertTrue(reply[1], reply)
        path = os.path.join(self.w, "cmd-198.51.100.9")
        self.wait(lambda: self.file_text(path), 5, "the door's command")
        self.assertEqual(self.file_text(path), "0")  # as root, as knockd

    def as_engine(self, talk):
        """Plays a compromised engine: stops the real one, takes its end of the channel
        and lets `talk(socket)` speak to the writer."""
        engine = self.engine_pid()
        os.kill(engine, signal.SIGSTOP)
        try:
            with socket.socket(fileno=take_fd(engine, 3)) as s:
                s.settimeout(5)
                return talk(s)
        finally:
            os.kill(engine, signal.SIGCONT)

    @staticmethod
    def ask(s, datagram, request_id):
        s.send(datagram)
        while True:
            r = decode_reply(s.recv(70000))
            if r is not None and r[0] == request_id:
                return r

    def file_text(self, path):
        try:
            with open(path) as f:
                return f.read().strip()
        except FileNotFoundError:
            return ""

    def test_3_requests_outside_the_set_are_refused(self):
        before = self.set_elements()
        far = (int(time.time()) + 3600) * 10**9
        cases = [
            (bytes([99]) + b"\0" * 8, 0, "unknown kernel request type 99"),
            (add_grants(11, [grant(5, "203.0.113.50", "no-such-profile", far)]), 11,
             "names profile no-such-profile, which the config does not define"),
            (add_grants(12, [grant(6, "203.0.113.51", "ssh-only", far)])[:-3], 0,
             "truncated"),
            (run_command(13, "no-such-door", False, "203.0.113.52"), 13,
             "door no-such-door is not configured"),
            (run_command(14, "openSSH", False, "203.0.113.53"), 14,
             "door openSSH has no start command"),
            (bytes([1]) + string("forged WriterReady"), 0, "is not a request"),
        ]
        replies = self.as_engine(lambda s: [self.ask(s, d, rid) for d, rid, _ in cases])
        for (_, _, reason), reply in zip(cases, replies):
            self.assertFalse(reply[1], reply)
            self.assertIn(reason, reply[3])
            self.assertIn("refused", reply[3])
        self.assertEqual(self.set_elements(), before)
        self.assertFalse(os.path.exists(os.path.join(self.w, "cmd-203.0.113.52")))
        self.assertIn("engine: refused", self.policyd.output())
        # The channel goes on: the engine still gets its grants installed.
        self.ctl("grant", "203.0.113.8", "ssh-only")
        self.wait(lambda: "203.0.113.8" in self.set_elements(), 5, "a grant after the refusals")

    def test_3b_reload_of_a_root_only_config(self):
        # SPA keys make a config root's alone; the writer reads it for the engine.
        os.chmod(self.conf, 0o600)
        before = self.policyd.output().count("config reloaded")
        os.kill(self.writer_pid(), signal.SIGHUP)
        self.wait(lambda: self.policyd.output().count("config reloaded") > before, 10,
                  "the reload")
        self.assertEqual(self.engine_pid(), self.engine_pid())  # still the same, still alive

    def test_4_killed_engine_is_restarted_and_reconciles(self):
        self.ctl("grant", "203.0.113.9", "ssh-only")
        self.wait(lambda: "203.0.113.9" in self.set_elements(), 5, "the grant")
        old = self.engine_pid()
        # The element goes behind the engine's back; the restart's reconcile brings it back.
        self.lab.run("gw", ["nft", "delete", "element", "inet", "knockgate", SET4,
                            "{ 203.0.113.9 }"])
        os.kill(old, signal.SIGKILL)
        self.wait(lambda: "engine exited (signal 9); restarting" in self.policyd.output(), 5,
                  "the writer to notice")
        self.wait(lambda: any(p != old for p in children(self.writer_pid())), 10, "a new engine")
        new = self.engine_pid()
        self.assertNotEqual(new, old)
        self.wait(lambda: "203.0.113.9" in self.set_elements(), 10, "the reconcile after restart")
        grants = json.loads(self.ctl("grants", "--json"))["grants"]
        self.assertIn("203.0.113.9", [g["source"] for g in grants])

    def test_5_killed_writer_takes_the_engine_with_it(self):
        engine = self.engine_pid()
        os.kill(self.writer_pid(), signal.SIGKILL)
        self.wait(lambda: not os.path.exists("/proc/%d" % engine) or
                  status(engine).get("State", "").startswith("Z"), 5, "the engine to end")

    def test_6_command_user_lowers_the_commands(self):
        self.wait(lambda: not self.policyd.alive(), 5, "the killed writer's exit")
        with open(self.conf) as f:
            text = f.read()
        with open(self.conf, "w") as f:
            f.write(text.replace("[options]\n", "[options]\n  CommandUser = nobody\n", 1))
        PrivsepTest.policyd = self.lab.start("gw", [POLICYD, "-c", self.conf, "-v"],
                                             os.path.join(self.w, "policyd2.out"))
        self.assertTrue(self.policyd.wait_for_output(r"ready:", 15), self.policyd.output())
        (reply,) = self.as_engine(lambda s: [self.ask(s, run_command(901, "recordUid", False,
                                                                      "198.51.100.10"), 901)])
        self.assertTrue(reply[1], reply)
        path = os.path.join(self.w, "cmd-198.51.100.10")
        self.wait(lambda: self.file_text(path), 5, "the door's command")
        self.assertEqual(self.file_text(path), str(pwd.getpwnam("nobody").pw_uid))


if __name__ == "__main__":
    kglab.main()
