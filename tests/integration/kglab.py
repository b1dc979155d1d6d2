"""Namespace-lab fixture for knockgate's integration tests (Python 3 standard library only).

    with Lab() as lab:                       # a uniquely tagged lab from vm/lablib.sh
        d = lab.start("gw", ["knockd", ...], log="/tmp/x/knockd.out")
        lab.run("client", ["knock", "203.0.113.1", "7000"])
        d.stop()

The lab is ALWAYS torn down: on normal exit and exceptions (context manager), on
SIGTERM/SIGINT/SIGHUP (signal handlers raise, then the finally blocks run), at interpreter
exit (atexit), before an outer ctest timeout would kill us with SIGKILL (an alarm that
fires earlier), and a later run sweeps the namespaces of runs whose process is gone.
"""

import atexit
import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

SOURCE_DIR = os.environ.get("KG_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
LABLIB = os.path.join(SOURCE_DIR, "vm", "lablib.sh")

# ctest's SKIP_RETURN_CODE for this directory.
SKIP_RC = 77

HOSTS = ("sw", "client", "client2", "gw", "ssh", "vm", "r2", "log")

# Addresses of the lab (vm/lablib.sh is the truth; these mirror it).
GW_WAN4 = "203.0.113.1"
GW_WAN6 = "2001:db8:1::1"
GW_LAN4 = "192.168.50.1"
CLIENT4 = "203.0.113.10"
CLIENT6 = "2001:db8:1::10"
CLIENT2_4 = "203.0.113.11"
CLIENT2_6 = "2001:db8:1::11"
WAN_IF = "kg-wan"

# Tags of our runs: "kgi" + owning PID + "x" + a counter, so a sweep can tell whether the
# run that made a namespace is still alive.
_TAG_RE = re.compile(r"^(kgi(\d+)x\d+)-(" + "|".join(HOSTS) + r")$")

_live_labs = []
_handlers_installed = False


class LabError(Exception):
    pass


class Deadline(KeyboardInterrupt):
    """Raised by the watchdog alarm. A KeyboardInterrupt, because unittest re-raises those
    (stopping the run) where it would record any other exception and carry on."""


def skip_reason():
    """Why these tests cannot run here (None if they can): only root and netns matter."""
    if os.geteuid() != 0:
        return "integration tests need root (network namespaces)"
    if shutil.which("ip") is None:
        return "iproute2 'ip' not found"
    probe = "kgiprobe%d" % os.getpid()
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return "no network namespace support: " + r.stderr.strip()
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _bash_lab(func, *args, timeout=60):
    script = 'source "$1"; shift; "$@"'
    return subprocess.run(["bash", "-c", script, "lablib", LABLIB, func, *args],
                          capture_output=True, text=True, timeout=timeout)


def _netns_list():
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_labs():
    """Remove labs left behind by runs that were SIGKILLed (ctest timeout, OOM…)."""
    stale = set()
    for name in _netns_list():
        m = _TAG_RE.match(name)
        if m and not _pid_alive(int(m.group(2))):
            stale.add(m.group(1))
    for tag in sorted(stale):
        sys.stderr.write("kglab: removing stale lab %s\n" % tag)
        _bash_lab("lab_down", tag)


def _cleanup_all():
    for lab in list(_live_labs):
        lab.close()


def _on_signal(signum, _frame):
    # Raising unwinds through every `with Lab()` and finally block; the process then
    # exits non-zero. Ignore further signals of this kind while we clean up.
    signal.signal(signum, signal.SIG_IGN)
    raise KeyboardInterrupt("signal %d" % signum)


def _on_alarm(_signum, _frame):
    raise Deadline("integration test watchdog expired (KG_TEST_TIMEOUT)")


def install_handlers(watchdog_seconds=None):
    """Signal handlers, atexit and an optional watchdog; idempotent."""
    global _handlers_installed
    if not _handlers_installed:
        atexit.register(_cleanup_all)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, _on_signal)
        signal.signal(signal.SIGALRM, _on_alarm)
        _handlers_installed = True
    if watchdog_seconds:
        signal.alarm(max(1, int(watchdog_seconds)))


class Daemon:
    """A process started inside a namespace, its output in a log file."""

    def __init__(self, lab, host, argv, log_path, env=None):
        self.lab, self.host, self.argv, self.log_path = lab, host, list(argv), log_path
        self._log = open(log_path, "ab")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(["ip", "netns", "exec", lab.ns(host)] + self.argv,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=full_env,
                                     start_new_session=True)
        self.started_at = time.monotonic()

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def seccomp_filtered(self, timeout=3.0):
        """True once the process runs under a seccomp filter with no_new_privs set
        (/proc/PID/status: Seccomp 2, NoNewPrivs 1); the daemons install theirs after
        start-up."""
        end = time.monotonic() + timeout
        while self.alive():
            try:
                with open("/proc/%d/status" % self.pid) as f:
                    status = dict(line.rstrip("\n").split(":\t", 1) for line in f
                                  if ":\t" in line)
            except FileNotFoundError:
                return False
            if status.get("Seccomp", "").strip() == "2" and \
                    status.get("NoNewPrivs", "").strip() == "1":
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.02)
        return False

    def returncode(self):
        return self.proc.poll()

    def output(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_for_output(self, pattern, timeout=5.0, path=None):
        """Wait until `pattern` (regex) appears in the output or in `path`; False on timeout
        or if the process died first."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = self.output()
            if path:
                try:
                    with open(path, "r", errors="replace") as f:
                        text += f.read()
                except FileNotFoundError:
                    pass
            if rx.search(text):
                return True
            if not self.alive():
                return False
            time.sleep(0.02)
        return False

    def stop(self, timeout=3.0):
        """SIGTERM, then SIGKILL; returns the exit status (negative: killed by signal)."""
        if self.alive():
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if self in self.lab.daemons:
            self.lab.daemons.remove(self)
        return self.proc.returncode


class Lab:
    """A uniquely tagged namespace lab (vm/lablib.sh), removed whatever happens."""

    _counter = 0

    def __init__(self, mode="full", keep_workdir=False):
        Lab._counter += 1
        self.tag = "kgi%dx%d" % (os.getpid(), Lab._counter)
        self.mode = mode
        self.daemons = []
        self.workdir = None
        self.keep_workdir = keep_workdir
        self._up = False

    # --- lifecycle
    def __enter__(self):
        install_handlers()
        sweep_stale_labs()
        _live_labs.append(self)
        try:
            self.workdir = tempfile.mkdtemp(prefix="kg-%s-" % self.tag)
            os.chmod(self.workdir, 0o755)
            self._up = True  # from here on close() must try to remove namespaces
            r = _bash_lab("lab_up", self.tag, self.mode)
            if r.returncode != 0:
                raise LabError("lab_up %s failed:\n%s%s" % (self.tag, r.stdout, r.stderr))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        for d in list(self.daemons):
            try:
                d.stop(timeout=1.0)
            except Exception:  # noqa: BLE001 — teardown must go on whatever happens
                pass
        if self._up:
            self._up = False
            r = _bash_lab("lab_down", self.tag)
            left = self.namespaces()
            for ns in left:  # belt and braces: lab_down failed or was interrupted
                for pid in self._ns_pids(ns):
                    _kill(pid, signal.SIGKILL)
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            if r.returncode != 0 or left:
                sys.stderr.write("kglab: lab_down %s: rc=%d %s%s\n"
                                 % (self.tag, r.returncode, r.stdout, r.stderr))
        if self in _live_labs:
            _live_labs.remove(self)
        if self.workdir and not self.keep_workdir and os.environ.get("KG_KEEP_WORKDIR") is None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- namespaces
    def ns(self, host):
        if host not in HOSTS:
            raise LabError("unknown lab host %r" % host)
        return "%s-%s" % (self.tag, host)

    def namespaces(self):
        return [n for n in _netns_list() if n.startswith(self.tag + "-")]

    @staticmethod
    def _ns_pids(ns):
        r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        return [int(p) for p in r.stdout.split()] if r.returncode == 0 else []

    def pids(self, host):
        return self._ns_pids(self.ns(host))

    def kill_all(self, host, grace=1.0):
        """Every process in HOST's namespace (left-over command children, stop-command
        sleepers…): SIGTERM, then SIGKILL. They are all ours: the namespace is."""
        pids = self.pids(host)
        for p in pids:
            _kill(p, signal.SIGTERM)
        end = time.monotonic() + grace
        while pids and time.monotonic() < end:
            time.sleep(0.05)
            pids = self.pids(host)
        for p in pids:
            _kill(p, signal.SIGKILL)

    # --- processes
    def run(self, host, argv, timeout=30, check=True, env=None, input=None):
        full_env = None
        if env:
            full_env = dict(os.environ)
            full_env.update(env)
        r = subprocess.run(["ip", "netns", "exec", self.ns(host)] + list(argv),
                           capture_output=True, text=True, timeout=timeout, env=full_env,
                           input=input)
        if check and r.returncode != 0:
            raise LabError("in %s: %s → rc %d\n%s%s"
                           % (host, " ".join(argv), r.returncode, r.stdout, r.stderr))
        return r

    def start(self, host, argv, log, env=None):
        d = Daemon(self, host, argv, log, env=env)
        self.daemons.append(d)
        return d

    def path(self, *parts):
        """A file path under the run's work directory (its directory is created)."""
        p = os.path.join(self.workdir, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def dir(self, *parts):
        """A directory under the run's work directory, created world-writable so daemons
        that drop privileges can still write their files there."""
        p = os.path.join(self.workdir, *parts)
        os.makedirs(p, exist_ok=True)
        os.chmod(p, 0o777)
        return p



# ---- Measurement helpers shared by bench/*.py ----

def percentile(values, q):
    """The q-th percentile (nearest rank) of a non-empty list."""
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100.0 * (len(s) - 1))))]


def real_pid(pid):
    """`ip netns exec` execs the daemon, so the pid is the daemon's; follow a child if not."""
    try:
        with open("/proc/%d/comm" % pid) as f:
            if f.read().strip() != "ip":
                return pid
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            kids = f.read().split()
        return int(kids[0]) if kids else pid
    except FileNotFoundError:
        return pid


def cpu_seconds(pid):
    """User + system CPU time of a process, seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid):
    """{"VmRSS": KiB, "VmHWM": KiB} of a process."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                k, v = line.split(":")
                out[k] = int(v.split()[0])
    return out


class LineReader:
    """Lines from a child's stdout as they arrive, each stamped (time.time_ns()) when read.
    Raw reads with its own buffer: a buffered readline() can hold a second line where
    select() no longer sees it."""

    def __init__(self, stream):
        self.fd = stream.fileno()
        os.set_blocking(self.fd, False)
        self.buf = b""

    def lines(self, timeout):
        """Complete lines read within `timeout` seconds (at most one read)."""
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return []
        try:
            self.buf += os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        now = time.time_ns()
        *done, self.buf = self.buf.split(b"\n")
        return [(now, x.decode(errors="replace")) for x in done]

    def first(self, match, timeout):
        """The stamp of the first line for which match(line) is true, or None."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for now, line in self.lines(min(0.5, max(0.0, end - time.monotonic()))):
                if match(line):
                    return now
        return None

    def drain(self):
        while self.lines(0):
            pass


@contextlib.contextmanager
def fwknop_home():
    """A HOME with an empty ~/.fwknoprc (mode 0600, as the fwknop client demands); yields
    (home, rc_path)."""
    home = tempfile.mkdtemp(prefix="kg-fwknop-home-")
    try:
        rc = os.path.join(home, "fwknoprc")
        with open(rc, "w") as f:
            f.write("[default]\n")
        os.chmod(rc, 0o600)
        yield home, rc
    finally:
        shutil.rmtree(home, ignore_errors=True)

def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def main(module_name="__main__"):
    """Entry point for a test file run by ctest: skip (77) or run unittest with a watchdog
    that fires before ctest's TIMEOUT so teardown still happens."""
    reason = skip_reason()
    if reason:
        print("SKIP: " + reason)
        sys.exit(SKIP_RC)
    timeout = float(os.environ.get("KG_TEST_TIMEOUT", "0") or 0)
    install_handlers(watchdog_seconds=(timeout - 20) if timeout > 40 else None)
    sweep_stale_labs()
    prog = unittest.main(module=module_name, exit=False, verbosity=2)
    _cleanup_all()
    sys.exit(0 if prog.result.wasSuccessful() else 1)


class Capture:
    """tcpdump in a namespace for the duration of a `with` block; .packets afterwards.

        with Capture(lab, "gw", "kg-wan", "dst host 203.0.113.1") as cap:
            ...
        cap.packets  # pcaplite.Packet list
    """

    _counter = 0

    def __init__(self, lab, host, iface, bpf, name="capture"):
        self.lab, self.host, self.iface, self.bpf = lab, host, iface, bpf
        Capture._counter += 1
        self.file = lab.path("%s-%d.pcap" % (name, Capture._counter))
        self.packets = []
        self._daemon = None

    def __enter__(self):
        import pcaplite  # noqa: F401 — fail early if the helper is missing
        log = self.file + ".log"
        # -Z root: tcpdump would otherwise drop to its own user and fail to write here.
        # --immediate-mode: without it packets wait for the 1 s buffer timeout and are lost
        # when we stop tcpdump.
        argv = ["tcpdump", "-i", self.iface, "-nn", "-U", "--immediate-mode", "-Z", "root",
                "-w", self.file, self.bpf]
        self._daemon = self.lab.start(self.host, argv, log)
        if not self._daemon.wait_for_output(r"listening on " + re.escape(self.iface), 5):
            out = self._daemon.output()
            self._daemon.stop()
            raise LabError("tcpdump did not start:\n" + out)
        return self

    def __exit__(self, *exc):
        import pcaplite
        time.sleep(0.2)  # packets in flight reach the capture
        self._daemon.stop()
        self.packets = pcaplite.read_pcap(self.file) if os.path.exists(self.file) else []
        return False
