"""SPA end to end: the real Debian fwknop client (several key, digest, HMAC types, CBC and
legacy modes, -P udp/tcp/http) → knockgate-captured → knockgate-policyd (audit row, log
line); replays refused (resent, '=' appended, after a policyd restart); rejections by
reason; knockgate-knock's packets accepted by the real fwknopd (fed a pcap file, test mode)
and by knockgate; the IPv6 extension refused cleanly by fwknopd and accepted by us."""
import base64
import os
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import tempfile
import time
import unittest

import kglab

BUILD = os.environ.get("KG_BUILD_DIR") or os.path.join(kglab.SOURCE_DIR, "build", "debug")
POLICYD = os.path.join(BUILD, "daemons", "policyd", "knockgate-policyd")
CAPTURED = os.path.join(BUILD, "daemons", "captured", "knockgate-captured")
KNOCK = os.path.join(BUILD, "tools", "knock", "knockgate-knock")
CTL = os.path.join(BUILD, "tools", "ctl", "knockgatectl")
FWKNOP = shutil.which("fwknop")
FWKNOPD = shutil.which("fwknopd") or ("/usr/sbin/fwknopd" if os.path.exists("/usr/sbin/fwknopd") else None)

KEY_B64 = "pwczPhemmcJqsBpRrPjZWsiXfxFUY4GXO0Z8D/QEV/A="
HMAC_B64 = ("QgPNwQ5XkZ5T7hfJx2Hl2NMODfopUJE9W/1n9VEfMS2v4xAdBxZq1rk2dXibwbkspTWfHlOxwEhhI0T6mz94Mw==")

CONF = """[options]
  LogFile = {w}/knock.log
  Interface = kg-wan
  WanInterface = kg-wan
  RuntimeDir = {w}
  Database = {w}/knockgate.db
  PidFile = {w}/policyd.pid
  CaptureUser = nobody

[profile ssh-only]
  direction = inbound
  expose = tcp/22 -> 192.168.50.10:22

[spa gate]
  port = 62201
  proto = udp
  grant = ssh-only
  # stanza 1: fwknop --key-gen style base64 keys, HMAC-SHA256
  SOURCE = ANY
  KEY_BASE64 = %s
  HMAC_KEY_BASE64 = %s
  REQUIRE_USERNAME = alice, bob
  # stanza 2: plain keys, HMAC-SHA512, CTR mode
  SOURCE = 203.0.113.0/24, 2001:db8:1::/64
  KEY = ctr-key-42
  HMAC_KEY = ctr-hmac-key-4242
  HMAC_DIGEST_TYPE = sha512
  ENCRYPTION_MODE = CTR
  # stanza 3: legacy clients, no HMAC
  SOURCE = ANY
  KEY = short
  ENCRYPTION_MODE = legacy

[spa gate-tcp]
  port = 62202
  proto = tcp
  grant = ssh-only
  SOURCE = ANY
  KEY = tcp-key
  HMAC_KEY = tcp-hmac

[spa gate-http]
  port = 62203
  proto = http
  grant = ssh-only
  SOURCE = ANY
  KEY = http-key
  HMAC_KEY = http-hmac
""" % (KEY_B64, HMAC_B64)


class Appliance:
    def __init__(self, lab):
        self.lab = lab
        self.w = lab.dir("spa%d" % time.monotonic_ns())
        self.conf = os.path.join(self.w, "knockgate.conf")
        fd = os.open(self.conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(CONF.replace("{w}", self.w))
        self.policyd = None
        self.captured = None

    def start_policyd(self):
        self.policyd = self.lab.start("gw", [POLICYD, "-c", self.conf, "-v"],
                                      os.path.join(self.w, "policyd%d.out" % time.monotonic_ns()))
        assert self.policyd.wait_for_output(r"listening on", 5), self.policyd.output()

    def start(self):
        self.start_policyd()
        self.captured = self.lab.start("gw", [CAPTURED, "-c", self.conf, "-v"],
                                       os.path.join(self.w, "captured.out"))
        assert self.captured.wait_for_output(r"connected to policyd", 5), self.captured.output()
        assert self.captured.wait_for_output(r"SPA door gate-http: listening", 5), \
            self.captured.output()

    def audit(self, kind):
        db = sqlite3.connect(os.path.join(self.w, "knockgate.db"))
        try:
            return db.execute("SELECT door, source, detail FROM audit WHERE kind = ? ORDER BY id",
                              (kind,)).fetchall()
        finally:
            db.close()

    def grants(self):
        db = sqlite3.connect(os.path.join(self.w, "knockgate.db"))
        try:
            return db.execute("SELECT source, profile, method, origin, state FROM grants "
                              "ORDER BY id").fetchall()
        finally:
            db.close()

    def wait_audit(self, kind, n, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            rows = self.audit(kind)
            if len(rows) >= n:
                return rows
            time.sleep(0.05)
        return self.audit(kind)


def fwknop(lab, *args, home):
    return lab.run("client", [FWKNOP, "--rc-file", os.path.join(home, "fwknoprc"), "--no-save-args",
                              "-D", kglab.GW_WAN4] + list(args),
                   env={"HOME": home}, check=False)


def send_udp(lab, payload, host=kglab.GW_WAN4, port=62201):
    code = ("import socket,sys;s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else "
            "socket.AF_INET,socket.SOCK_DGRAM);s.sendto(sys.argv[3].encode(),(sys.argv[1],"
            "int(sys.argv[2])))")
    lab.run("client", ["python3", "-c", code, host, str(port), payload])


@unittest.skipUnless(FWKNOP, "fwknop client not installed")
class SpaInteropTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for p in (POLICYD, CAPTURED, KNOCK):
            if not os.path.exists(p):
                raise unittest.SkipTest("not built: " + p)
        cls.lab = kglab.Lab(mode="wan").__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.lab.close()

    def setUp(self):
        self.home, _ = self.enterContext(kglab.fwknop_home())

    def tearDown(self):
        bad = []
        for d in list(self.lab.daemons):
            rc = d.stop()
            if rc not in (0, -signal.SIGKILL):
                bad.append("%s exited %s:\n%s" % (d.argv[0], rc, d.output()[-3000:]))
        self.lab.daemons.clear()
        self.lab.kill_all("gw")
        self.assertEqual(bad, [])

    def test_real_fwknop_client_variants_accepted(self):
        a = Appliance(self.lab)
        a.start()
        variants = [
            # (args, user): base64 keys + HMAC-SHA256 + SHA-256 digest (fwknop's defaults)
            (["-A", "tcp/22", "-a", kglab.CLIENT4, "--key-base64-rijndael", KEY_B64,
              "--key-base64-hmac", HMAC_B64, "--use-hmac", "-U", "alice"], "alice"),
            # SHA-1 and MD5 digests, SHA-384 digest, client timeout (-f)
            (["-A", "tcp/22", "-s", "--key-base64-rijndael", KEY_B64, "--key-base64-hmac",
              HMAC_B64, "--use-hmac", "-m", "sha1", "-U", "bob"], "bob"),
            (["-A", "tcp/22", "-a", kglab.CLIENT4, "--key-base64-rijndael", KEY_B64,
              "--key-base64-hmac", HMAC_B64, "--use-hmac", "-m", "md5", "-f", "60", "-U", "alice"],
             "alice"),
            # plain keys, CTR mode, HMAC-SHA512, SHA-384 digest
            (["-A", "tcp/22", "-a", kglab.CLIENT4, "--key-rijndael", "ctr-key-42", "--key-hmac",
              "ctr-hmac-key-4242", "--hmac-digest-type", "sha512", "-M", "ctr", "-m", "sha384",
              "-U", "carol"], "carol"),
            # legacy mode (pre-2.5 key handling), no HMAC, SHA-512 digest
            (["-A", "tcp/22", "-s", "--key-rijndael", "short", "-M", "legacy", "-m", "sha512",
              "-U", "dave"], "dave"),
        ]
        for i, (args, user) in enumerate(variants):
            r = fwknop(self.lab, *args, home=self.home)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            rows = a.wait_audit("spa_accepted", i + 1)
            self.assertEqual(len(rows), i + 1, (args, a.captured.output()[-2000:]))
            self.assertEqual(rows[i][0], "gate")
            self.assertEqual(rows[i][1], kglab.CLIENT4)
            self.assertIn("user %s access tcp/22" % user, rows[i][2])
        self.assertIn("timeout 60", a.audit("spa_accepted")[2][2])
        # Every accepted packet granted the door's profile: one active grant for the
        # source, created by the first packet and extended by the others.
        grants = a.grants()
        self.assertEqual(len(grants), 1, grants)
        self.assertEqual(grants[0][0], kglab.CLIENT4)
        self.assertEqual(grants[0][2:], ("spa", "gate", "active"))
        self.assertEqual(len(a.audit("grant_create")), 1)
        self.assertGreaterEqual(len(a.audit("grant_extend")), 1)
        self.assertTrue(a.policyd.wait_for_output(
            re.escape(kglab.CLIENT4 + ": gate: SPA accepted (user dave access tcp/22"), 2))

        # -P tcp and -P http to their doors.
        r = fwknop(self.lab, "-A", "tcp/22", "-a", kglab.CLIENT4, "--key-rijndael", "tcp-key",
                   "--key-hmac", "tcp-hmac", "-P", "tcp", "-p", "62202", "-U", "alice",
                   home=self.home)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        rows = a.wait_audit("spa_accepted", 6)
        self.assertEqual(rows[-1][0], "gate-tcp", a.captured.output()[-2000:])
        r = fwknop(self.lab, "-A", "tcp/22", "-a", kglab.CLIENT4, "--key-rijndael", "http-key",
                   "--key-hmac", "http-hmac", "-P", "http", "-p", "62203", "-U", "alice",
                   home=self.home)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        rows = a.wait_audit("spa_accepted", 7)
        self.assertEqual(rows[-1][0], "gate-http", a.captured.output()[-2000:])

    def test_knockgate_knock_accepted_ipv4_and_ipv6(self):
        a = Appliance(self.lab)
        a.start()
        self.lab.run("client", [KNOCK, "--spa", "-D", kglab.GW_WAN4, "-A", "tcp/22", "-s",
                                "--key-base64-rijndael", KEY_B64, "--key-base64-hmac", HMAC_B64,
                                "-U", "alice"])
        self.assertEqual(len(a.wait_audit("spa_accepted", 1)), 1, a.captured.output())
        # IPv6: knockgate's extension (an IPv6 allow address; "::" with -s).
        self.lab.run("client", [KNOCK, "--spa", "-6", "-D", kglab.GW_WAN6, "-A", "tcp/22", "-a",
                                kglab.CLIENT6, "--key-rijndael", "ctr-key-42", "--key-hmac",
                                "ctr-hmac-key-4242", "--hmac-digest-type", "sha512", "-M", "ctr",
                                "-U", "carol"])
        rows = a.wait_audit("spa_accepted", 2)
        self.assertEqual(len(rows), 2, a.captured.output())
        self.assertEqual(rows[1][1], kglab.CLIENT6)
        for proto, port, door in (("tcp", 62202, "gate-tcp"), ("http", 62203, "gate-http")):
            self.lab.run("client", [KNOCK, "--spa", "-D", kglab.GW_WAN4, "-A", "tcp/22", "-s",
                                    "--key-rijndael", proto + "-key", "--key-hmac",
                                    proto + "-hmac", "-P", proto, "-p", str(port), "-U", "bob"])
            rows = a.wait_audit("spa_accepted", 3 if proto == "tcp" else 4)
            self.assertEqual(rows[-1][0], door, a.captured.output())

    def test_replays_refused_even_after_policyd_restart(self):
        a = Appliance(self.lab)
        a.start()
        pkt = self.lab.run("client", [KNOCK, "--spa", "-D", kglab.GW_WAN4, "-A", "tcp/22", "-s",
                                      "--key-base64-rijndael", KEY_B64, "--key-base64-hmac",
                                      HMAC_B64, "-U", "alice", "--test"]).stdout.strip()
        send_udp(self.lab, pkt)
        self.assertEqual(len(a.wait_audit("spa_accepted", 1)), 1, a.captured.output())
        send_udp(self.lab, pkt)  # resent as captured on the wire
        self.assertEqual(len(a.wait_audit("spa_replayed", 1)), 1, a.policyd.output())
        self.assertTrue(a.policyd.wait_for_output(
            re.escape(kglab.CLIENT4 + ": gate: SPA packet refused: replayed (already used)"), 2))
        # fwknopd 2.6.10 grants this one again; we refuse it before decryption.
        send_udp(self.lab, pkt + "=")
        self.assertTrue(a.captured.wait_for_output(
            re.escape("SPA from %s to door gate refused: padding" % kglab.CLIENT4), 3),
            a.captured.output())
        # Restart policyd (kill -9: no clean shutdown), then replay once more.
        a.policyd.proc.send_signal(signal.SIGKILL) if hasattr(a.policyd, "proc") else \
            os.kill(a.policyd.pid, signal.SIGKILL)
        time.sleep(0.3)
        a.start_policyd()
        self.assertTrue(a.captured.wait_for_output(r"connected to policyd", 10))
        time.sleep(0.5)
        send_udp(self.lab, pkt)
        self.assertEqual(len(a.wait_audit("spa_replayed", 2)), 2, a.policyd.output())
        self.assertEqual(len(a.audit("spa_accepted")), 1)
        # Only the first use granted anything; replays neither created nor extended.
        self.assertEqual(len(a.audit("grant_create")), 1)
        self.assertEqual(a.audit("grant_extend"), [])

    def test_rejections_by_reason(self):
        a = Appliance(self.lab)
        a.start()
        cases = [
            ("bad_hmac", ["-A", "tcp/22", "-s", "--key-base64-rijndael", KEY_B64, "--key-hmac",
                          "not-the-hmac-key", "-U", "alice"]),
            # right HMAC key, wrong encryption key
            ("decrypt_failed", ["-A", "tcp/22", "-s", "--key-rijndael", "wrong",
                                "--key-base64-hmac", HMAC_B64, "-U", "alice"]),
            ("stale", ["-A", "tcp/22", "-s", "--key-base64-rijndael", KEY_B64,
                       "--key-base64-hmac", HMAC_B64, "--use-hmac", "-U", "alice",
                       "--time-offset-minus", "5min"]),
            ("future", ["-A", "tcp/22", "-s", "--key-base64-rijndael", KEY_B64,
                        "--key-base64-hmac", HMAC_B64, "--use-hmac", "-U", "alice",
                        "--time-offset-plus", "5min"]),
            ("port_not_allowed", ["-A", "tcp/23", "-s", "--key-base64-rijndael", KEY_B64,
                                  "--key-base64-hmac", HMAC_B64, "--use-hmac", "-U", "alice"]),
            ("user_not_allowed", ["-A", "tcp/22", "-s", "--key-base64-rijndael", KEY_B64,
                                  "--key-base64-hmac", HMAC_B64, "--use-hmac", "-U", "mallory"]),
            ("source_mismatch", ["-A", "tcp/22", "-a", "198.51.100.7", "--key-base64-rijndael",
                                 KEY_B64, "--key-base64-hmac", HMAC_B64, "--use-hmac", "-U",
                                 "alice"]),
        ]
        for reason, args in cases:
            r = fwknop(self.lab, *args, home=self.home)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertTrue(a.captured.wait_for_output(
                re.escape("SPA from %s to door gate refused: %s (" % (kglab.CLIENT4, reason)), 3),
                reason + ":\n" + a.captured.output()[-3000:])
        out = a.captured.output()
        self.assertRegex(out, r"refused: stale .*client's clock is 3\d\d s behind")
        # Whole seconds: a packet made 300 s ahead is 299 s ahead once a second boundary
        # passes before captured checks it.
        self.assertRegex(out, r"refused: future .*client's clock is (29\d|3\d\d) s ahead of")
        send_udp(self.lab, "A" * 60)
        send_udp(self.lab, "A" * 1600)  # fragmented on a 1500-byte link: never verified whole
        for reason in ("too_short", "truncated"):
            self.assertTrue(a.captured.wait_for_output(
                re.escape("SPA from %s to door gate refused: %s (" % (kglab.CLIENT4, reason)), 3),
                reason + ":\n" + a.captured.output()[-2000:])
        code = ("import socket,sys;s=socket.create_connection((sys.argv[1],62202));"
                "s.sendall(b'A'*1600);s.close()")
        self.lab.run("client", ["python3", "-c", code, kglab.GW_WAN4])
        self.assertTrue(a.captured.wait_for_output(
            re.escape("SPA from %s to door gate-tcp refused: too_long (" % kglab.CLIENT4), 3),
            a.captured.output()[-2000:])
        self.assertEqual(a.audit("spa_accepted"), [])
        # Keys never reach the logs, nor the printed config (check-config, the daemons' -n).
        printed = []
        for argv in ([CTL, "check-config", a.conf], [CAPTURED, "-n", "-c", a.conf],
                     [POLICYD, "-n", "-c", a.conf]):
            r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, (argv, r.stderr))
            self.assertIn("KEY_BASE64 = (secret, not shown)", r.stdout, argv)
            printed.append(r.stdout + r.stderr)
        for text in [a.captured.output(), a.policyd.output()] + printed:
            for secret in (KEY_B64, HMAC_B64, "ctr-key-42", "ctr-hmac-key-4242", "tcp-key", "tcp-hmac",
                           "http-key", "http-hmac"):
                self.assertNotIn(secret, text)
                self.assertNotIn(base64.b64encode(secret.encode()).decode(), text)


def udp_pcap(payloads, path, src="10.0.0.2", dst="10.0.0.1"):
    def ip(s):
        return bytes(int(x) for x in s.split("."))
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        for i, p in enumerate(payloads):
            udp = struct.pack("!HHHH", 40000 + i, 62201, 8 + len(p), 0) + p
            hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i + 1, 0, 64, 17, 0,
                              ip(src), ip(dst))
            s = sum(struct.unpack("!10H", hdr))
            s = (s & 0xffff) + (s >> 16)
            s = (s & 0xffff) + (s >> 16)
            hdr = hdr[:10] + struct.pack("!H", (~s) & 0xffff) + hdr[12:]
            frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + hdr + udp
            f.write(struct.pack("<IIII", int(time.time()) + i, 0, len(frame), len(frame)))
            f.write(frame)


@unittest.skipUnless(FWKNOPD, "fwknopd not installed")
class FwknopdAcceptsOurPackets(unittest.TestCase):
    """knockgate-knock → the real fwknopd 2.6.10, fed a pcap file in test mode (-t: no
    firewall changes), one run per packet."""

    def setUp(self):
        if not os.path.exists(KNOCK):
            raise unittest.SkipTest("not built: " + KNOCK)
        self.d = tempfile.mkdtemp(prefix="kg-fwknopd-")

    def tearDown(self):
        shutil.rmtree(self.d, ignore_errors=True)

    def fwknopd(self, access, packet):
        acc = os.path.join(self.d, "access.conf")
        with open(acc, "w") as f:
            f.write(access)
        os.chmod(acc, 0o600)
        conf = os.path.join(self.d, "fwknopd.conf")
        with open(conf, "w") as f:
            f.write("PCAP_INTF lo\nENABLE_PCAP_PROMISC N\n")
        os.chmod(conf, 0o600)
        pcap = os.path.join(self.d, "spa.pcap")
        udp_pcap([packet.encode()], pcap)
        for n in ("digest.cache", "pid"):
            try:
                os.unlink(os.path.join(self.d, n))
            except FileNotFoundError:
                pass
        r = subprocess.run([FWKNOPD, "-f", "-t", "-C", "1", "-c", conf, "-a", acc, "--pcap-file", pcap,
                            "-d", os.path.join(self.d, "digest.cache"), "-p",
                            os.path.join(self.d, "pid"), "-r", self.d, "-v"],
                           capture_output=True, text=True, timeout=20)
        return r.stdout + r.stderr

    def knock(self, *args):
        r = subprocess.run([KNOCK, "--spa", "-D", "10.0.0.1", "--test"] + list(args),
                           capture_output=True, text=True, check=True)
        return r.stdout.strip()

    def test_variants(self):
        cases = [
            ("SOURCE ANY\nKEY fwknoptest\nHMAC_KEY hmactest\n",
             ["-A", "tcp/22", "-a", "10.0.0.2", "--key-rijndael", "fwknoptest", "--key-hmac",
              "hmactest", "-U", "alice"], "Message String: 10.0.0.2,tcp/22"),
            ("SOURCE ANY\nKEY_BASE64 %s\nHMAC_KEY_BASE64 %s\nHMAC_DIGEST_TYPE SHA512\n"
             % (KEY_B64, HMAC_B64),
             ["-A", "tcp/22,udp/53", "-s", "--key-base64-rijndael", KEY_B64, "--key-base64-hmac",
              HMAC_B64, "--hmac-digest-type", "sha512", "-m", "sha1", "-U", "bob", "-f", "45"],
             "Client Timeout: 45"),
            ("SOURCE ANY\nKEY short\nENCRYPTION_MODE legacy\n",
             ["-A", "tcp/22", "-s", "--key-rijndael", "short", "-M", "legacy", "-m", "md5",
              "-U", "carol"], "Message String: 0.0.0.0,tcp/22"),
            ("SOURCE ANY\nKEY ofbkey\nHMAC_KEY ofbhmac\nENCRYPTION_MODE OFB\nHMAC_DIGEST_TYPE SHA384\n",
             ["-A", "tcp/22", "-s", "--key-rijndael", "ofbkey", "--key-hmac", "ofbhmac",
              "--hmac-digest-type", "sha384", "-M", "ofb", "-m", "sha384", "-U", "dave"],
             "Encryption Mode: 5"),
        ]
        for access, args, expect in cases:
            out = self.fwknopd(access, self.knock(*args))
            self.assertIn("--test mode enabled, skipping firewall manipulation", out, (args, out))
            self.assertIn(expect, out)

    def test_ipv6_extension_refused_cleanly(self):
        out = self.fwknopd("SOURCE ANY\nKEY fwknoptest\nHMAC_KEY hmactest\n",
                           self.knock("-A", "tcp/22", "-a", "2001:db8::5", "--key-rijndael",
                                      "fwknoptest", "--key-hmac", "hmactest", "-U", "alice"))
        self.assertIn("FKO_ERROR_INVALID_DATA_DECODE_ACCESS_VALIDFAIL", out)
        self.assertNotIn("skipping firewall manipulation", out)


if __name__ == "__main__":
    kglab.main()
