"""Boot smoke test of the gateway image under QEMU (TCG when there is no KVM).

Builds the image with vm/build-image.sh (or uses KG_IMAGE, a ready qcow2), boots it in
snapshot mode with the WAN NIC on a tap device inside a network namespace this test creates
(never the root namespace), seeds the first boot with a password and a static WAN address
through fw_cfg, then over the serial console:
  - checks that the knockgate daemons are active under systemd;
  - adds a door whose knockd-style command opens TCP port 2222 for the knocking address in a
    test nft table, knocks from the namespace with knockgate-knock and checks that the port
    went from dropped (connect times out) to open (the guest's kernel answers: refused).
Opt-in (ctest label `image`, -DKG_IMAGE_TESTS=ON). Timings are in docs/images.md.
"""

import base64
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

SOURCE_DIR = os.environ.get("KG_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("KG_BUILD_DIR") or os.path.join(SOURCE_DIR, "build", "debug")
SKIP_RC = 77
BOOT_TIMEOUT = float(os.environ.get("KG_IMAGE_BOOT_TIMEOUT", "600"))

NS = "kgimg%d" % os.getpid()
HOST_IP, GUEST_IP = "10.99.0.1", "10.99.0.2"
TEST_PORT = 2222
KNOCK = ["7001", "8001", "9001"]

TEST_DOOR = """
[openTest]
	sequence    = %s
	seq_timeout = 10
	tcpflags    = syn
	command     = /usr/sbin/nft add element inet kgtest allowed { %%IP%% }
""" % ",".join(KNOCK)

TEST_TABLE = """table inet kgtest {
	set allowed { type ipv4_addr; }
	chain input {
		type filter hook input priority 0; policy accept;
		iifname "kg-wan" tcp dport %d ip saddr != @allowed drop
	}
}""" % TEST_PORT


def sh(argv, check=True, timeout=60):
    return subprocess.run(argv, text=True, capture_output=True, check=check, timeout=timeout)


class Console:
    """The guest's serial console on a Unix socket: send lines, wait for patterns."""

    def __init__(self, path, log_path, deadline):
        self.log = open(log_path, "w")
        self.buf = ""
        end = time.monotonic() + 30
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)
        self.deadline = deadline

    def expect(self, pattern, timeout):
        end = min(time.monotonic() + timeout, self.deadline)
        rx = re.compile(pattern, re.DOTALL)
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("console: no %r within %.0f s; last output:\n%s"
                                     % (pattern, timeout, self.buf[-2000:]))
            self.sock.settimeout(min(left, 1.0))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise AssertionError("console closed; last output:\n" + self.buf[-2000:])
            text = data.decode("utf-8", "replace").replace("\r", "")
            self.log.write(text)
            self.log.flush()
            self.buf += text

    def send(self, line):
        self.sock.sendall((line + "\n").encode())

    def run(self, command, timeout=60):
        """Runs COMMAND in the guest's shell; returns (exit status, output)."""
        tag = secrets.token_hex(4)
        self.buf = ""
        # Separate lines, so a here-document in COMMAND ends where it should.
        self.send("echo KGB%s\n%s\necho KGE%s $?" % (tag, command, tag))
        m = self.expect(r"\nKGB%s\n(.*?)KGE%s (\d+)\n" % (tag, tag), timeout)
        return int(m.group(2)), m.group(1)

    def write_file(self, path, content, append=False):
        """Writes CONTENT to PATH in the guest, as one base64 line (no tabs, no
        here-documents through the terminal's line discipline)."""
        data = base64.b64encode(content.encode()).decode()
        return self.run("echo %s | base64 -d %s %s" % (data, ">>" if append else ">", path))

    def close(self):
        self.sock.close()
        self.log.close()


def tcp_state(port, timeout=3.0):
    """From the namespace: 'open' (answered, even with a reset) or 'dropped' (no answer)."""
    probe = ("import socket,sys\n"
             "s=socket.socket()\ns.settimeout(%f)\n"
             "try:\n s.connect(('%s',%d)); print('open')\n"
             "except ConnectionRefusedError: print('open')\n"
             "except (socket.timeout, TimeoutError): print('dropped')\n" % (timeout, GUEST_IP, port))
    r = sh(["ip", "netns", "exec", NS, sys.executable, "-c", probe], timeout=timeout + 10)
    return r.stdout.strip()


class ImageBootTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.out = os.path.join(BUILD_DIR, "image-test")
        os.makedirs(cls.out, exist_ok=True)
        cls.timings = {}
        image = os.environ.get("KG_IMAGE")
        if not image:
            t0 = time.monotonic()
            r = subprocess.run([os.path.join(SOURCE_DIR, "vm", "build-image.sh"), "-o",
                                os.path.join(cls.out, "image")], text=True,
                               capture_output=True, timeout=3000)
            cls.timings["build"] = time.monotonic() - t0
            if r.returncode != 0:
                raise AssertionError("build-image.sh failed:\n" + r.stderr[-3000:])
            image = os.path.join(cls.out, "image", "knockgate.qcow2")
            # The VMware disk is produced too, and is what its name says.
            info = sh(["qemu-img", "info", os.path.join(cls.out, "image", "knockgate.vmdk")])
            if "file format: vmdk" not in info.stdout:
                raise AssertionError("knockgate.vmdk is not a VMDK:\n" + info.stdout)
        cls.image = image
        cls.knock = None
        for d in (os.path.join(SOURCE_DIR, "build", "package"), BUILD_DIR):
            p = os.path.join(d, "tools", "knock", "knockgate-knock")
            if os.access(p, os.X_OK):
                cls.knock = p
                break

    def setUp(self):
        self.qemu = None
        self.console = None
        self.tmp = tempfile.mkdtemp(prefix="kgimg.")
        sh(["ip", "netns", "add", NS])
        self.addCleanup(self._teardown)
        for tap in ("kgwan0", "kglan0"):
            sh(["ip", "-n", NS, "tuntap", "add", "dev", tap, "mode", "tap"])
            sh(["ip", "-n", NS, "link", "set", tap, "up"])
        sh(["ip", "-n", NS, "addr", "add", HOST_IP + "/24", "dev", "kgwan0"])
        sh(["ip", "-n", NS, "link", "set", "lo", "up"])

    def _teardown(self):
        if self.console:
            self.console.close()
        if self.qemu and self.qemu.poll() is None:
            self.qemu.terminate()
            try:
                self.qemu.wait(10)
            except subprocess.TimeoutExpired:
                self.qemu.kill()
                self.qemu.wait()
        sh(["ip", "netns", "del", NS], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_boot_daemons_and_knock(self):
        password = secrets.token_urlsafe(12)
        seed = os.path.join(self.tmp, "seed")
        with open(seed, "w") as f:
            f.write("password=%s\nwan_address=%s/24\n" % (password, GUEST_IP))
        sock = os.path.join(self.tmp, "console.sock")
        t0 = time.monotonic()
        self.qemu_log = open(os.path.join(self.out, "qemu.log"), "w")
        self.addCleanup(self.qemu_log.close)
        self.qemu = subprocess.Popen(
            ["ip", "netns", "exec", NS, os.path.join(SOURCE_DIR, "vm", "run-qemu.sh"),
             "-i", self.image, "-S", "-s", seed, "-w", "tap:kgwan0", "-l", "tap:kglan0",
             "-c", "unix:" + sock],
            stdout=self.qemu_log, stderr=subprocess.STDOUT)
        con = self.console = Console(sock, os.path.join(self.out, "console.log"),
                                     time.monotonic() + BOOT_TIMEOUT + 300)
        con.expect(r"knockgate login: ", BOOT_TIMEOUT)
        self.timings["boot to login"] = time.monotonic() - t0
        con.send("root")
        con.expect(r"Password: ", 30)
        con.send(password)
        con.expect(r"root@knockgate:~# ", 60)
        con.send("stty -echo cols 200; export SYSTEMD_PAGER= SYSTEMD_COLORS=0")
        time.sleep(1)

        # The gateway came up by itself: units enabled by the package, started at boot.
        units = ["knockgate-policyd", "knockgate-captured"]
        for extra in ("verdictd", "webd"):
            if os.path.isdir(os.path.join(SOURCE_DIR, "daemons", extra)):
                units.append("knockgate-" + extra)
        rc, out = con.run("systemctl is-system-running --wait >/dev/null; "
                          "systemctl is-active knockgate.target " + " ".join(units), 180)
        if rc != 0:
            self.fail("not all knockgate units are active:\n" + out +
                      con.run("systemctl --no-pager status 'knockgate*'", 30)[1])
        self.timings["boot to daemons up"] = time.monotonic() - t0
        rc, out = con.run("ip -br addr show kg-wan; ip -br link show kg-lan")
        self.assertEqual(rc, 0, out)
        self.assertIn(GUEST_IP + "/24", out)

        if self.knock is None:
            self.skipTest("no knockgate-knock binary built (build/package or the build dir)")
        self.assertEqual(con.write_file("/root/kgtest.nft", TEST_TABLE + "\n")[0], 0)
        rc, out = con.run("nft -f /root/kgtest.nft")
        self.assertEqual(rc, 0, out)
        self.assertEqual(con.write_file("/etc/knockgate/knockgate.conf", TEST_DOOR, True)[0], 0)
        rc, out = con.run("knockgatectl check-config /etc/knockgate/knockgate.conf >/dev/null && "
                          "systemctl restart knockgate.target && "
                          "systemctl is-active knockgate-policyd knockgate-captured",
                          120)
        self.assertEqual(rc, 0, out)
        time.sleep(2)
        self.assertEqual(tcp_state(TEST_PORT), "dropped", "port open before any knock")
        t1 = time.monotonic()
        sh(["ip", "netns", "exec", NS, self.knock, "-d", "200", GUEST_IP] + KNOCK)
        state = "dropped"
        while state != "open" and time.monotonic() - t1 < 30:
            state = tcp_state(TEST_PORT, timeout=2.0)
        if state != "open":
            self.fail("the knock did not open the port:\n" +
                      con.run("nft list set inet kgtest allowed; tail -n 20 "
                              "/var/log/knockgate.log; journalctl -n 30 --no-pager "
                              "-u 'knockgate*'", 30)[1])
        self.timings["knock to open"] = time.monotonic() - t1
        rc, out = con.run("nft list set inet kgtest allowed")
        self.assertIn(HOST_IP, out)
        # A clean shutdown is nice, not needed (snapshot mode): the cleanup kills QEMU.
        con.send("systemctl poweroff --no-block")
        try:
            self.qemu.wait(30)
        except subprocess.TimeoutExpired:
            pass

    @classmethod
    def tearDownClass(cls):
        with open(os.path.join(cls.out, "timings.txt"), "w") as f:
            for k, v in cls.timings.items():
                f.write("%s: %.0f s\n" % (k, v))
                print("timing %s: %.0f s" % (k, v))


def main():
    if os.geteuid() != 0:
        print("SKIP: needs root")
        sys.exit(SKIP_RC)
    for tool in ("qemu-system-x86_64", "qemu-img", "debootstrap", "extlinux", "ip"):
        if shutil.which(tool) is None:
            print("SKIP: %s not installed (scripts/deps.sh image)" % tool)
            sys.exit(SKIP_RC)
    if not os.path.exists("/dev/net/tun"):
        print("SKIP: no /dev/net/tun")
        sys.exit(SKIP_RC)

    # SIGTERM/SIGINT (ctest, Ctrl-C) and our own watchdog, before ctest's TIMEOUT would
    # SIGKILL us, become SystemExit: unittest records it and still runs the cleanups that
    # stop QEMU and delete the namespace.
    def stop(signum, _frame):
        raise SystemExit("stopped by signal %d" % signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, stop)
    budget = int(os.environ.get("KG_TEST_TIMEOUT", "0"))
    if budget > 60:
        signal.alarm(budget - 30)
    unittest.main(verbosity=2)


if __name__ == "__main__":
    main()
