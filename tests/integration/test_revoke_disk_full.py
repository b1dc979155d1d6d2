"""A revocation never depends on the disk: policyd and verdictd in the gw namespace, the
database on a small tmpfs, a TCP listener behind the gateway's ssh-only exposure. The tmpfs
is mounted in a private mount namespace held by a `sleep` in the lab (policyd joins it with
nsenter; the test reaches it through /proc/PID/root), so it goes away with the lab's
processes whatever happens to the test: no mount is ever left behind. With the tmpfs full, `knockgatectl revoke` succeeds, the set
element is gone and the client cannot connect; a short grant expiring meanwhile goes too.
policyd killed while the disk is still full, space freed, policyd started again: the
revoked grant stays revoked (not listed, not in the kernel) and the database records it.
Also: policyd creates the database's directory (0750) and writes, guards and removes its
PidFile."""
import errno
import json
import os
import signal
import time
import unittest

import kglab
import verdict_lab as vl

BUILD = vl.BUILD
POLICYD = os.path.join(BUILD, "daemons", "policyd", "knockgate-policyd")
CTL = os.path.join(BUILD, "tools", "ctl", "knockgatectl")
SET4 = "grant4_ssh_only"
TMPFS_SIZE = "8m"  # the revocation journal (1 MiB), the database and its WAL


class RevokeDiskFullTest(unittest.TestCase):
    lab = None

    @classmethod
    def setUpClass(cls):
        for p in (POLICYD, CTL, vl.VERDICTD):
            if not os.path.exists(p):
                raise unittest.SkipTest("not built: " + p)
        cls.lab = kglab.Lab("full").__enter__()
        try:
            cls.w = cls.lab.dir("revoke")
            mount_point = cls.lab.dir("dbfs")
            cls.holder = cls.lab.start(
                "gw", ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                       'mount -t tmpfs -o size=%s,mode=0755 kg-test-dbfs "$1" && echo mounted '
                       '&& exec sleep 100000' % TMPFS_SIZE, "sh", mount_point],
                os.path.join(cls.w, "holder.out"))
            assert cls.holder.wait_for_output(r"mounted", 5), cls.holder.output()
            # The tmpfs as the test sees it, and as policyd (inside the namespace) sees it.
            cls.fs = "/proc/%d/root%s" % (cls.holder.pid, mount_point)
            cls.db_inside = os.path.join(mount_point, "state", "knockgate.db")
            cls.db_dir = os.path.join(cls.fs, "state")
            cls.pid_path = os.path.join(cls.w, "policyd.pid")
            text = vl.CONF.format(w=cls.w, hold=250, extra="  PidFile = %s\n" % cls.pid_path)
            text = text.replace("Database = %s/knockgate.db" % cls.w, "Database = " + cls.db_inside)
            cls.conf = os.path.join(cls.w, "knockgate.conf")
            with open(cls.conf, "w") as f:
                f.write(text)
            cls.filler = os.path.join(cls.fs, "filler")
            cls.starts = 0
            cls.policyd = None
            cls.start_policyd()
            cls.verdictd = vl.start_verdictd(cls.lab, cls.conf)
            cls.listener = vl.Listener(cls.lab, "ssh", [22], "ssh22")
        except BaseException:
            cls.lab.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.lab.close()  # the tmpfs goes with the holder and policyd

    # --- helpers
    @classmethod
    def start_policyd(cls):
        cls.starts += 1
        cls.policyd = cls.lab.start("gw", cls.in_fs([POLICYD, "-c", cls.conf, "-v"]),
                                    os.path.join(cls.w, "policyd%d.out" % cls.starts))
        assert cls.policyd.wait_for_output(r"ready:", 15), cls.policyd.output()

    @classmethod
    def in_fs(cls, argv):
        """argv run in the mount namespace that has the tmpfs."""
        return ["nsenter", "-t", str(cls.holder.pid), "-m", "--"] + argv

    def ctl(self, *args, check=True):
        r = self.lab.run("gw", [CTL, "-c", self.conf] + list(args), check=False)
        if check:
            self.assertEqual(r.returncode, 0, "knockgatectl %s: %s%s" % (args, r.stdout, r.stderr))
        return r

    def ctl_json(self, *args):
        return json.loads(self.ctl(*(list(args) + ["--json"])).stdout)

    def active(self, source):
        return self.ctl_json("grants", "--source", source)["grants"]

    def set_elements(self):
        r = self.lab.run("gw", ["nft", "-j", "list", "set", "inet", "knockgate", SET4])
        out = set()
        for item in json.loads(r.stdout)["nftables"]:
            for e in item.get("set", {}).get("elem", []):
                out.add(e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e)
        return out

    def connects(self, client):
        return vl.probe(self.lab, client, kglab.GW_WAN4, 22, timeout=1.0)[0][0]

    def wait(self, pred, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            v = pred()
            if v:
                return v
            time.sleep(0.1)
        self.fail("timed out waiting for " + what + "\n" + self.policyd.output()[-3000:])

    def fill_disk(self):
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 20, 4096, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * chunk)
                except OSError as e:
                    self.assertEqual(e.errno, errno.ENOSPC)
        finally:
            os.close(fd)
        self.assertEqual(os.statvfs(self.fs).f_bavail, 0)

    def free_disk(self):
        os.unlink(self.filler)

    def db_state(self, grant_id):
        """The grant's row as the database has it (knockgatectl shows ends not yet recorded
        as they are in effect). Read inside the namespace: SQLite resolves /proc/PID/root."""
        script = ("import json, sqlite3, sys\n"
                  "db = sqlite3.connect('file:%s?mode=ro' % sys.argv[1], uri=True)\n"
                  "row = db.execute('SELECT state, ended_by FROM grants WHERE id = ?',"
                  " (int(sys.argv[2]),)).fetchone()\n"
                  "print(json.dumps(row))\n")
        r = self.lab.run("gw", self.in_fs(["python3", "-c", script, self.db_inside,
                                           str(grant_id)]))
        row = json.loads(r.stdout)
        return tuple(row) if row else None

    # --- tests
    def test_1_database_directory_and_pid_file(self):
        st = os.stat(self.db_dir)
        self.assertEqual(st.st_mode & 0o7777, 0o750)
        with open(self.pid_path) as f:
            self.assertEqual(f.read(), "%d\n" % kglab.real_pid(self.policyd.pid))
        second = self.lab.start("gw", self.in_fs([POLICYD, "-c", self.conf]),
                                os.path.join(self.w, "policyd-second.out"))
        self.assertEqual(second.proc.wait(timeout=10), 1, second.output())
        self.assertRegex(second.output(), r"PidFile %s belongs to process %d .*running"
                         % (self.pid_path, kglab.real_pid(self.policyd.pid)))
        with open(self.pid_path) as f:
            self.assertEqual(f.read(), "%d\n" % kglab.real_pid(self.policyd.pid))

    def test_2_revoke_and_expiry_while_the_disk_is_full(self):
        self.ctl("grant", kglab.CLIENT4, "ssh-only")
        self.ctl("grant", kglab.CLIENT2_4, "ssh-only", "--for", "8s")
        RevokeDiskFullTest.grant_id = self.active(kglab.CLIENT4)[0]["id"]
        self.assertTrue({kglab.CLIENT4, kglab.CLIENT2_4} <= self.set_elements())
        self.assertTrue(self.connects("client"))
        self.assertTrue(self.connects("client2"))
        self.fill_disk()
        # The database really cannot take writes now.
        r = self.ctl("grant", "198.51.100.1", "ssh-only", check=False)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertRegex(r.stderr, r"full")

        r = self.ctl("revoke", kglab.CLIENT4, check=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("revoked grant %d" % self.grant_id, r.stdout)
        self.assertRegex(r.stdout, r"database record pending \(.*full.*\)")
        self.assertNotIn(kglab.CLIENT4, self.set_elements())
        self.assertFalse(self.connects("client"))
        self.assertEqual(self.active(kglab.CLIENT4), [])
        rows = self.ctl_json("grants", "--all", "--source", kglab.CLIENT4)["grants"]
        self.assertEqual([(x["id"], x["state"]) for x in rows], [(self.grant_id, "revoked")])
        self.assertEqual(self.ctl("revoke", kglab.CLIENT4, check=False).returncode, 3)

        # The short grant expires on time although its end cannot be recorded either.
        self.wait(lambda: not self.active(kglab.CLIENT2_4), 15, "the expiry")
        self.assertNotIn(kglab.CLIENT2_4, self.set_elements())
        self.assertFalse(self.connects("client2"))
        self.assertGreaterEqual(self.ctl_json("status")["policyd"]["grant_ends_unrecorded"], 2)
        self.assertRegex(self.policyd.output(), r"not recorded in the database yet")

    def test_3_restart_after_a_crash_keeps_the_revocation(self):
        os.kill(self.policyd.pid, signal.SIGKILL)
        self.policyd.proc.wait()
        self.free_disk()
        # The database never heard of the revocation...
        self.assertEqual(self.db_state(self.grant_id), ("active", None))
        # ...yet after the restart (over the stale PidFile) the grant stays revoked.
        self.start_policyd()
        with open(self.pid_path) as f:
            self.assertEqual(f.read(), "%d\n" % kglab.real_pid(self.policyd.pid))
        self.assertEqual(self.active(kglab.CLIENT4), [])
        self.assertNotIn(kglab.CLIENT4, self.set_elements())
        self.assertNotIn(kglab.CLIENT2_4, self.set_elements())
        self.assertFalse(self.connects("client"))
        self.wait(lambda: self.db_state(self.grant_id) == ("revoked", "ctl:root"), 10,
                  "the revocation in the database")
        audit = self.ctl_json("audit", "--source", kglab.CLIENT4, "--kind", "grant_revoke")
        self.assertEqual(len(audit["entries"]), 1, audit)
        rows = self.ctl_json("grants", "--all", "--source", kglab.CLIENT2_4)["grants"]
        self.assertEqual([x["state"] for x in rows], ["expired"])
        self.assertEqual(self.ctl_json("status")["policyd"]["grant_ends_unrecorded"], 0)

    def test_4_the_record_lands_once_space_returns(self):
        g = self.ctl_json("grant", kglab.CLIENT4, "ssh-only")["grant"]
        self.assertTrue(self.connects("client"))
        self.fill_disk()
        r = self.ctl_json("revoke", str(g["id"]))
        self.assertTrue(r["record_pending"], r)
        self.assertFalse(self.connects("client"))
        self.assertEqual(self.db_state(g["id"]), ("active", None))
        self.free_disk()
        self.wait(lambda: self.db_state(g["id"]) == ("revoked", "ctl:root"), 10,
                  "the revocation in the database")
        self.wait(lambda: self.ctl_json("status")["policyd"]["grant_ends_unrecorded"] == 0, 10,
                  "nothing owed")
        audit = self.ctl_json("audit", "--source", kglab.CLIENT4, "--kind", "grant_revoke")
        self.assertEqual(len(audit["entries"]), 2, audit)
        # A clean stop removes the PidFile.
        self.policyd.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.policyd.proc.wait(timeout=10), 0, self.policyd.output()[-3000:])
        self.assertFalse(os.path.exists(self.pid_path))


if __name__ == "__main__":
    kglab.main()
