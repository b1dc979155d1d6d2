#!/usr/bin/env python3
"""knockd differential suite: every scenario of knockd_scenarios.py against

  * knockd 0.8 with the real `knock` client (asserts the reference behaviour),
  * knockd 0.8 with knockgate-knock as the client (asserts the same outcomes),
  * knockgate (captured + policyd) with the real `knock` client (asserts knockd's outcome,
    or knockgate's documented one for deliberate differences) — skipped with a message
    until both daemons are built.

All scenarios share one lab; only the daemons restart between scenarios.
Environment: KG_BUILD_DIR (binaries), KG_SOURCE_DIR, KG_TEST_TIMEOUT (set by ctest),
KG_SCENARIOS (comma-separated names to run a subset), KG_KEEP_WORKDIR (keep the logs).
"""

import os
import re
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kglab  # noqa: E402
from knockd_scenarios import (SCENARIOS, AlignSecond, Hping, Knock, Outcome,  # noqa: E402
                              Sleep)

BUILD_DIR = os.environ.get("KG_BUILD_DIR", "")
HERE = os.path.dirname(os.path.abspath(__file__))

# The raw-IP link: two tun devices joined by tunlink.py (see ensure_tun_link).
TUN_IF = "kg-tun"
TUN_GW4, TUN_GW6 = "10.99.0.1", "2001:db8:99::1"
TUN_CLIENT4, TUN_CLIENT6 = "10.99.0.10", "2001:db8:99::10"

ADDRS = {
    "C1": kglab.CLIENT4, "C2": kglab.CLIENT2_4,
    "C1v6": kglab.CLIENT6, "C2v6": kglab.CLIENT2_6,
    "C1t": TUN_CLIENT4, "C1t6": TUN_CLIENT6,
}
DSTS = {"wan4": kglab.GW_WAN4, "wan6": kglab.GW_WAN6, "lan4": kglab.GW_LAN4,
        "tun4": TUN_GW4, "tun6": TUN_GW6}
_SYMBOL_OF = {v: k for k, v in ADDRS.items()}

# How long to wait for commands after the last packet: knockd forks and runs them in
# 40-100 ms; a scenario that expects nothing waits QUIET_S before it concludes so.
QUIET_S = 0.4
EXTRA_S = 0.25
MAX_WAIT_S = 2.5


def binary(*rel):
    return os.path.join(BUILD_DIR, *rel) if BUILD_DIR else ""


def knockgate_knock_path():
    p = binary("tools", "knock", "knockgate-knock")
    return p if p and os.access(p, os.X_OK) else None


# ---------------------------------------------------------------- implementations
class KnockdImpl:
    name = "knockd"

    @staticmethod
    def missing():
        return None if shutil.which("knockd") else "knockd is not installed"

    def start(self, lab, conf, workdir, iface):
        d = lab.start("gw", ["knockd", "-i", iface, "-c", conf, "-D", "-v"],
                      os.path.join(workdir, "knockd.out"))
        # knockd prints this after pcap is open and its filter set: knocks from now on count.
        if not d.wait_for_output(r"listening on " + re.escape(iface), timeout=5):
            raise AssertionError("knockd did not start:\n" + d.output())
        return [d]


class KnockgateImpl:
    """captured + policyd reading the same knockd.conf. The exact start-up handshake
    (ready lines, run directory) follows the daemons' documented conventions."""
    name = "knockgate"

    @staticmethod
    def paths():
        return (binary("daemons", "policyd", "knockgate-policyd"),
                binary("daemons", "captured", "knockgate-captured"))

    @classmethod
    def missing(cls):
        if not BUILD_DIR:
            return "KG_BUILD_DIR is not set (run through ctest)"
        for p in cls.paths():
            if not os.access(p, os.X_OK):
                return "knockgate daemon not built yet: %s" % p
        return None

    @staticmethod
    def extra_options(workdir):
        """knockgate-only [options] keys (knockd would reject them): a private run
        directory and database per scenario, so runs never share state, and an unprivileged
        capture user that exists everywhere."""
        run_dir = os.path.join(workdir, "run")
        os.makedirs(run_dir, exist_ok=True)
        os.chmod(run_dir, 0o755)
        return ["    RuntimeDir = %s" % run_dir,
                "    Database = %s" % os.path.join(workdir, "knockgate.db"),
                "    PidFile = %s" % os.path.join(workdir, "policyd.pid"),
                "    CaptureUser = %s" % os.environ.get("KG_CAPTURE_USER", "nobody")]

    def start(self, lab, conf, workdir, iface):
        policyd, captured = self.paths()
        p = lab.start("gw", [policyd, "-c", conf, "-v"], os.path.join(workdir, "policyd.out"))
        sock = os.path.join(workdir, "run", "policyd.sock")
        end = time.monotonic() + 10
        while not os.path.exists(sock):
            if time.monotonic() > end or not p.alive():
                raise AssertionError("knockgate-policyd did not start (no %s):\n%s"
                                     % (sock, p.output()))
            time.sleep(0.02)
        c = lab.start("gw", [captured, "-c", conf, "-i", iface, "-v"],
                      os.path.join(workdir, "captured.out"))
        log = os.path.join(workdir, "daemon.log")
        if not c.wait_for_output(r"listening on " + re.escape(iface), timeout=10, path=log):
            raise AssertionError("knockgate-captured did not start:\n%s\n%s"
                                 % (c.output(), p.output()))
        return [p, c]


IMPLS = {"knockd": KnockdImpl(), "knockgate": KnockgateImpl()}


# ---------------------------------------------------------------- running a scenario
def write_conf(sc, workdir, extra_options=()):
    mark = os.path.join(workdir, "mark")
    subst = {"mark": mark, "dir": workdir}
    lines = ["[options]",
             "    LogFile = %s" % os.path.join(workdir, "daemon.log"),
             "    PidFile = %s" % os.path.join(workdir, "daemon.pid")]
    lines += list(extra_options) + [""]
    for d in sc.doors:
        lines.append("[%s]" % d.name)
        for k, v in d.keys:
            lines.append(("    %s = %s" % (k, v.format(**subst))).rstrip())
        if d.default_command:
            lines.append('    command = echo "%%IP%% %s" >> %s' % (d.name, mark))
        lines.append("")
    conf = os.path.join(workdir, "knockd.conf")
    with open(conf, "w") as f:
        f.write("\n".join(lines))
    for name, content in sc.files.items():
        with open(os.path.join(workdir, name), "w") as f:
            f.write(content)
    return conf, mark


def client_argv(client, step):
    argv = list(client) + list(step.opts) + [DSTS[step.dst]] + [str(h) for h in step.hits]
    return argv


def run_step(lab, client, step):
    if isinstance(step, Knock):
        lab.run(step.host, client_argv(client, step), timeout=20)
    elif isinstance(step, Hping):
        argv = ["hping3", "-c", "1", "-q", "-p", str(step.port)]
        argv += ["--udp"] if step.udp else ["-" + step.flags]
        argv.append(DSTS[step.dst])
        # hping3 exits 1 when its probe gets no reply; the packet was still sent.
        r = lab.run(step.host, argv, timeout=20, check=False)
        if r.returncode not in (0, 1):
            raise AssertionError("hping3 failed: %s\n%s" % (r.stdout, r.stderr))
    elif isinstance(step, Sleep):
        time.sleep(step.seconds)
    elif isinstance(step, AlignSecond):
        now = time.time()
        time.sleep((step.frac - (now % 1.0)) % 1.0)
    else:
        raise TypeError("unknown step %r" % (step,))


_STAMP = re.compile(r"^(.*?) @(\d+\.\d+)$")


def read_mark(mark):
    """Lines with addresses turned into symbols, and when timed lines were written."""
    try:
        with open(mark) as f:
            raw = [line.rstrip("\n") for line in f if line.strip()]
    except FileNotFoundError:
        raw = []
    lines, times = [], {}
    for line in raw:
        m = _STAMP.match(line)
        if m:
            line = m.group(1)
            times.setdefault(_symbolic(line), float(m.group(2)))
        lines.append(_symbolic(line))
    return lines, times


def _symbolic(line):
    return " ".join(_SYMBOL_OF.get(w, w) for w in line.split(" "))


class Run:
    """What one scenario run produced, with everything needed to explain a failure."""

    def __init__(self, outcome, times, logs, workdir):
        self.outcome, self.times, self.logs, self.workdir = outcome, times, logs, workdir

    def explain(self):
        parts = ["workdir: %s" % self.workdir, "outcome: %r" % (self.outcome,)]
        for name, text in self.logs.items():
            tail = "\n".join(text.splitlines()[-40:])
            parts.append("---- %s\n%s" % (name, tail))
        return "\n".join(parts)


def ensure_tun_link(lab):
    """A raw-IP point-to-point link client <-> gw (kg-tun), made once per lab. The relay
    lives in the switch namespace, so restarting the gateway's daemons leaves it alone."""
    if getattr(lab, "tun_link", None) is not None and lab.tun_link.alive():
        return
    relay = lab.start("sw", [sys.executable, os.path.join(HERE, "tunlink.py"), lab.ns("sw"),
                             lab.ns("client"), TUN_IF, lab.ns("gw"), TUN_IF],
                      lab.path("tunlink.out"))
    if not relay.wait_for_output(r"^ready$|\nready\n|^ready\n", timeout=5):
        raise AssertionError("tunlink did not start:\n" + relay.output())
    for host, a4, a6 in (("client", TUN_CLIENT4, TUN_CLIENT6), ("gw", TUN_GW4, TUN_GW6)):
        lab.run(host, ["ip", "link", "set", TUN_IF, "up"])
        lab.run(host, ["ip", "addr", "add", a4 + "/24", "dev", TUN_IF])
        lab.run(host, ["ip", "addr", "add", a6 + "/64", "dev", TUN_IF, "nodad"])
    lab.tun_link = relay


def run_scenario(lab, impl, sc, client=("knock",), expect=None):
    """Runs scenario `sc` on implementation `impl` ("knockd" or "knockgate") with the
    knock client argv prefix `client`; `expect` (an Outcome) only shortens the wait."""
    impl_obj = IMPLS[impl]
    if sc.iface == TUN_IF:
        ensure_tun_link(lab)
    workdir = lab.dir(impl + "-" + os.path.basename(client[0]), sc.name)
    extra = impl_obj.extra_options(workdir) if hasattr(impl_obj, "extra_options") else ()
    conf, mark = write_conf(sc, workdir, extra)
    daemons = impl_obj.start(lab, conf, workdir, sc.iface)
    try:
        for step in sc.steps:
            run_step(lab, client, step)
        want = len(expect.lines) if expect else 0
        longest = max([t for _, _, t in sc.timing] or [0])
        deadline = time.monotonic() + (MAX_WAIT_S + longest if want else QUIET_S)
        while time.monotonic() < deadline:
            if want and len(read_mark(mark)[0]) >= want:
                time.sleep(EXTRA_S)  # time for an unexpected extra line to show up
                break
            time.sleep(0.05)
        alive = all(d.alive() for d in daemons)
    finally:
        logs = {}
        for d in daemons:
            d.stop()
            logs[os.path.basename(d.log_path)] = d.output()
        # Children of the daemons (pending stop commands) must not outlive the scenario.
        lab.kill_all("gw")
    try:
        with open(os.path.join(workdir, "daemon.log"), errors="replace") as f:
            logs["daemon.log"] = f.read()
    except FileNotFoundError:
        logs["daemon.log"] = ""
    lines, times = read_mark(mark)
    files = {}
    for name in sc.expect_files:
        with open(os.path.join(workdir, name)) as f:
            files[name] = f.read()
    return Run(Outcome(lines, alive, files), times, logs, workdir)


# ---------------------------------------------------------------- the tests
def _selected():
    only = os.environ.get("KG_SCENARIOS")
    if not only:
        return SCENARIOS
    names = set(only.split(","))
    unknown = names - {s.name for s in SCENARIOS}
    if unknown:
        raise SystemExit("unknown scenarios: %s" % ", ".join(sorted(unknown)))
    return [s for s in SCENARIOS if s.name in names]


def _norm(outcome, unordered):
    lines = sorted(outcome.lines) if unordered else list(outcome.lines)
    return Outcome(lines, outcome.alive, dict(outcome.files))


class KnockdDiff(unittest.TestCase):
    lab = None
    knockd_runs = {}

    @classmethod
    def setUpClass(cls):
        cls.lab = kglab.Lab(mode="full").__enter__()
        cls.addClassCleanup(cls.lab.close)

    def check_common(self, sc, run, expected):
        self.assertEqual(_norm(run.outcome, sc.unordered), _norm(expected, sc.unordered),
                         run.explain())
        for a, b, seconds in sc.timing:
            self.assertIn(a, run.times, run.explain())
            self.assertIn(b, run.times, run.explain())
            took = run.times[b] - run.times[a]
            self.assertGreaterEqual(took, seconds - 0.3, run.explain())
            self.assertLessEqual(took, seconds + 1.2, run.explain())

    def check_logs(self, sc, run):
        text = run.logs.get("daemon.log", "")
        for rx in sc.expect_log:
            self.assertRegex(text, rx, run.explain())

    def knockd_run(self, sc):
        if sc.name not in self.knockd_runs:
            self.knockd_runs[sc.name] = run_scenario(self.lab, "knockd", sc,
                                                     expect=sc.knockd_outcome())
        return self.knockd_runs[sc.name]

    def run_knockd(self, sc):
        missing = KnockdImpl.missing()
        if missing:
            self.fail(missing)  # the test dependencies are installed by scripts/deps.sh
        run = self.knockd_run(sc)
        self.check_common(sc, run, sc.knockd_outcome())
        self.check_logs(sc, run)
        everything = "\n".join(run.logs.values())
        for rx in sc.knockd_log:
            self.assertRegex(everything, rx, run.explain())

    def run_kgknock(self, sc):
        path = knockgate_knock_path()
        if path is None:
            self.skipTest("knockgate-knock not built (KG_BUILD_DIR=%r)" % BUILD_DIR)
        run = run_scenario(self.lab, "knockd", sc, client=(path,), expect=sc.knockd_outcome())
        self.check_common(sc, run, sc.knockd_outcome())

    def run_knockgate(self, sc):
        missing = KnockgateImpl.missing()
        if missing:
            self.skipTest(missing)
        if sc.knockgate is not None:
            expected = sc.knockgate
        else:
            reference = self.knockd_run(sc)
            expected = reference.outcome
        run = run_scenario(self.lab, "knockgate", sc, expect=expected)
        self.check_common(sc, run, expected)
        self.check_logs(sc, run)


def _add_tests():
    for sc in _selected():
        def t_knockd(self, sc=sc):
            self.run_knockd(sc)

        def t_kgknock(self, sc=sc):
            self.run_kgknock(sc)

        def t_knockgate(self, sc=sc):
            self.run_knockgate(sc)

        doc = sc.diff or sc.note or None
        for prefix, fn in (("test_knockd_", t_knockd), ("test_knockgate_", t_knockgate)):
            fn.__doc__ = doc
            setattr(KnockdDiff, prefix + sc.name, fn)
        if sc.runs_with_kgknock():
            setattr(KnockdDiff, "test_kgknock_" + sc.name, t_kgknock)


_add_tests()


class ScenarioTable(unittest.TestCase):
    """The table itself meets the brief: enough scenarios, unique names, differences
    explained."""

    def test_table(self):
        names = [s.name for s in SCENARIOS]
        self.assertGreaterEqual(len(names), 30)
        self.assertEqual(len(names), len(set(names)))
        for s in SCENARIOS:
            self.assertEqual(s.knockgate is None, s.diff is None, s.name)
        self.assertGreaterEqual(sum(s.runs_with_kgknock() for s in SCENARIOS), 15)


if __name__ == "__main__":
    kglab.main()
