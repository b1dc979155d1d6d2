"""The Debian package: build it (CPack DEB from the `package` preset), lint it, then install,
reinstall, upgrade and purge it in a throwaway root and check that purge leaves nothing.

The throwaway root is an overlay on the cached Debian 12 base system of the image build
(vm/build-image.sh -B makes it), mounted in a private mount namespace: this machine's own
root, users and package database are never touched, and the overlay goes away with the
namespace. Opt-in (ctest label `package`, -DKG_IMAGE_TESTS=ON): it needs debootstrap,
lintian and network access the first time. See docs/install.md.
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

SOURCE_DIR = os.environ.get("KG_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("KG_BUILD_DIR") or os.path.join(SOURCE_DIR, "build", "debug")
PKG_BUILD = os.path.join(SOURCE_DIR, "build", "package")
CACHE = os.environ.get("KG_IMAGE_CACHE") or os.path.join(SOURCE_DIR, "build", "image-cache")
BASE = os.path.join(CACHE, "rootfs")
OUT = os.path.join(BUILD_DIR, "package-test")
SKIP_RC = 77

# What dpkg itself and the account tools legitimately change in any install/purge cycle.
NOISE_PREFIXES = ("/var/lib/dpkg/", "/var/log/dpkg.log", "/var/cache/debconf/", "/kgtest",
                  "/var/log/alternatives.log")
NOISE_FILES = {"/etc/passwd-", "/etc/group-", "/etc/shadow-", "/etc/gshadow-",
               "/etc/subuid-", "/etc/subgid-", "/var/lib/dpkg"}

# Runs inside the chroot. Each step's evidence goes to /kgtest/out.
STEPS = r"""
set -eu
out=/kgtest/out
export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin
snapshot() {
	find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /kgtest -o -path /run \) \
		-prune -o -printf '%p %y %m %u %g\n' | sort >"$out/$1.files"
	cat /etc/passwd /etc/group /etc/shadow /etc/gshadow >"$out/$1.accounts"
}
snapshot before
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 0755 /usr/sbin/policy-rc.d
dpkg -i /kgtest/deb1/knockgate_*.deb
dpkg-query -W -f='${Version}\n' knockgate >"$out/installed.version"
for a in knockgate knockgate-policy knockgate-verdict knockgate-web; do getent passwd "$a"; done >"$out/users"
getent group knockgate-admin >>"$out/users"
stat -c '%a %U %G' /var/lib/knockgate >"$out/statedir"
ls -1 /etc/systemd/system/multi-user.target.wants/ >"$out/enabled" 2>&1 || true
/usr/sbin/knockgatectl check-config /etc/knockgate/knockgate.conf >"$out/check-config" 2>&1
# Reinstall, the way an admin repairs a package: idempotent maintainer scripts.
dpkg -i /kgtest/deb1/knockgate_*.deb
# The admin edits the conffile; an upgrade must keep the edit.
echo '# admin edit' >>/etc/knockgate/knockgate.conf
dpkg -i --force-confold /kgtest/deb2/knockgate_*.deb
dpkg-query -W -f='${Version}\n' knockgate >"$out/upgraded.version"
tail -n1 /etc/knockgate/knockgate.conf >"$out/conffile-tail"
# What the daemons create at run time, which purge must take along too.
: >/var/lib/knockgate/knockgate.db
: >/var/log/knockgate.log
: >/var/log/knockgate.log.1.gz
dpkg -r knockgate
dpkg -l knockgate | tail -n1 | cut -c1-2 >"$out/removed.state"
dpkg -P knockgate
rm -f /usr/sbin/policy-rc.d
snapshot after
echo ok >"$out/done"
"""


def fail_skip(reason):
    print("SKIP: " + reason)
    sys.exit(SKIP_RC)


def run(argv, **kw):
    kw.setdefault("check", True)
    return subprocess.run(argv, text=True, capture_output=True, **kw)


def newest_deb(directory):
    debs = sorted(glob.glob(os.path.join(directory, "knockgate_*.deb")), key=os.path.getmtime)
    return debs[-1] if debs else None


class PackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        shutil.rmtree(OUT, ignore_errors=True)
        os.makedirs(OUT)
        env = dict(os.environ)
        env.setdefault("CCACHE_BASEDIR", "/work")
        # The release build for the package: its own preset and build dir.
        run(["cmake", "--preset", "package"], cwd=SOURCE_DIR, env=env)
        run(["cmake", "--build", PKG_BUILD, "-j", "2"], cwd=SOURCE_DIR, env=env, timeout=3000)
        for release, sub in (("1", "deb1"), ("2", "deb2")):
            d = os.path.join(OUT, sub)
            os.makedirs(d)
            run(["cpack", "--config", os.path.join(PKG_BUILD, "CPackConfig.cmake"), "-B", d,
                 "-D", "CPACK_DEBIAN_PACKAGE_RELEASE=" + release], cwd=PKG_BUILD)
            for junk in ("_CPack_Packages",):
                shutil.rmtree(os.path.join(d, junk), ignore_errors=True)
        cls.deb1 = newest_deb(os.path.join(OUT, "deb1"))
        cls.deb2 = newest_deb(os.path.join(OUT, "deb2"))
        run([os.path.join(SOURCE_DIR, "vm", "build-image.sh"), "-B"], timeout=1500)
        cls.cycle = cls._install_cycle()

    @classmethod
    def _install_cycle(cls):
        work = tempfile.mkdtemp(prefix="kgpkg.", dir=OUT)
        for d in ("upper", "work", "merged", "kgtest/out"):
            os.makedirs(os.path.join(work, d))
        shutil.copytree(os.path.join(OUT, "deb1"), os.path.join(work, "kgtest", "deb1"))
        shutil.copytree(os.path.join(OUT, "deb2"), os.path.join(work, "kgtest", "deb2"))
        with open(os.path.join(work, "kgtest", "steps.sh"), "w") as f:
            f.write(STEPS)
        # Private mount namespace: the overlay, /proc and the bind mount vanish with it.
        script = r"""
set -eu
w="$1"; base="$2"
mount -t overlay overlay -o lowerdir="$base",upperdir="$w/upper",workdir="$w/work" "$w/merged"
mkdir "$w/merged/kgtest"
mount --bind "$w/kgtest" "$w/merged/kgtest"
mount -t proc proc "$w/merged/proc"
exec chroot "$w/merged" /bin/sh /kgtest/steps.sh
"""
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "--",
                            "/bin/sh", "-c", script, "cycle", work, BASE],
                           text=True, capture_output=True, timeout=600)
        with open(os.path.join(OUT, "cycle.log"), "w") as f:
            f.write(r.stdout + r.stderr)
        result = {"rc": r.returncode, "log": r.stdout + r.stderr}
        outdir = os.path.join(work, "kgtest", "out")
        for name in os.listdir(outdir):
            with open(os.path.join(outdir, name)) as f:
                result[name] = f.read()
        shutil.rmtree(work)
        return result

    def test_package_metadata(self):
        info = run(["dpkg-deb", "-f", self.deb1]).stdout
        self.assertIn("Package: knockgate", info)
        self.assertRegex(info, r"Version: \d+\.\d+\.\d+-1\n")
        # Computed by dpkg-shlibdeps: the libraries the binaries link.
        self.assertRegex(info, r"Depends: .*libc6")
        self.assertRegex(info, r"Depends: .*libpcap0\.8")
        self.assertIn("adduser", info)
        files = run(["dpkg-deb", "-c", self.deb1]).stdout
        for path in ("./usr/sbin/knockgate-captured", "./usr/sbin/knockgate-policyd",
                     "./usr/sbin/knockgatectl", "./usr/bin/knockgate-knock",
                     "./lib/systemd/system/knockgate.target",
                     "./lib/systemd/system/knockgate-policyd.service",
                     "./etc/knockgate/knockgate.conf", "./etc/logrotate.d/knockgate",
                     "./usr/share/man/man5/knockgate.conf.5.gz",
                     "./usr/share/man/man8/knockgate-policyd.8.gz",
                     "./usr/share/doc/knockgate/copyright",
                     "./usr/share/doc/knockgate/changelog.Debian.gz"):
            self.assertIn(path, files)
        for daemon in ("verdictd", "webd"):
            if os.path.isdir(os.path.join(SOURCE_DIR, "daemons", daemon)):
                self.assertIn("./usr/sbin/knockgate-" + daemon, files)
        control = run(["dpkg-deb", "-e", self.deb1, os.path.join(OUT, "control")])
        del control
        with open(os.path.join(OUT, "control", "conffiles")) as f:
            self.assertEqual(f.read().split(),
                             ["/etc/knockgate/knockgate.conf", "/etc/logrotate.d/knockgate"])

    def test_lintian(self):
        if shutil.which("lintian") is None:
            self.skipTest("lintian not installed (scripts/deps.sh image)")
        r = run(["lintian", "--no-tag-display-limit", "--info", self.deb1], check=False)
        report = os.path.join(OUT, "lintian.txt")
        with open(report, "w") as f:
            f.write(r.stdout + r.stderr)
        print("lintian report: " + report)
        errors = [l for l in r.stdout.splitlines() if l.startswith("E:")]
        self.assertEqual(errors, [], "lintian errors (full report in %s)" % report)

    def test_install_upgrade_purge_leaves_nothing(self):
        c = self.cycle
        self.assertEqual(c["rc"], 0, c["log"][-3000:])
        self.assertEqual(c.get("done"), "ok\n")
        self.assertTrue(c["installed.version"].endswith("-1\n"))
        self.assertTrue(c["upgraded.version"].endswith("-2\n"))
        for account in ("knockgate:", "knockgate-policy:", "knockgate-verdict:", "knockgate-web:",
                        "knockgate-admin:"):
            self.assertIn("\n" + account, "\n" + c["users"])
        self.assertEqual(c["statedir"], "750 knockgate-policy knockgate-policy\n")
        self.assertIn("knockgate.target", c["enabled"])
        self.assertIn("ssh-only", c["check-config"])  # the normalised config: it parsed
        self.assertEqual(c["conffile-tail"], "# admin edit\n")
        self.assertEqual(c["removed.state"].strip(), "rc")  # config files kept

        def significant(listing):
            keep = set()
            for line in listing.splitlines():
                path = line.split(" ", 1)[0]
                if path in NOISE_FILES or path.startswith(NOISE_PREFIXES):
                    continue
                keep.add(line)
            return keep

        before, after = significant(c["before.files"]), significant(c["after.files"])
        self.assertGreater(len(before), 1000, "the snapshot missed the file system")
        self.assertEqual(sorted(after - before), [], "purge left these behind")
        self.assertEqual(sorted(before - after), [], "install/purge removed or changed these")
        self.assertEqual(c["before.accounts"], c["after.accounts"])


def main():
    if os.geteuid() != 0:
        fail_skip("needs root (chroot, overlay mount)")
    for tool in ("cpack", "debootstrap", "unshare", "dpkg-deb"):
        if shutil.which(tool) is None:
            fail_skip(tool + " not installed (scripts/deps.sh image)")
    unittest.main(verbosity=2)


if __name__ == "__main__":
    main()
