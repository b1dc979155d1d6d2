"""Helpers for the knockgate-webd tests: a policyd + webd appliance in the lab's gw
namespace, and HTTP clients whose sockets are opened inside a lab namespace (setns on the
calling thread only while the socket is created)."""
import contextlib
import ctypes
import http.client
import json
import os
import socket
import subprocess
import time

import kglab

BUILD = os.environ.get("KG_BUILD_DIR") or os.path.join(kglab.SOURCE_DIR, "build", "debug")
POLICYD = os.path.join(BUILD, "daemons", "policyd", "knockgate-policyd")
WEBD = os.path.join(BUILD, "daemons", "webd", "knockgate-webd")
CTL = os.path.join(BUILD, "tools", "ctl", "knockgatectl")
CAPTURED = os.path.join(BUILD, "daemons", "captured", "knockgate-captured")
KNOCK = os.path.join(BUILD, "tools", "knock", "knockgate-knock")
WEB_ROOT = os.path.join(kglab.SOURCE_DIR, "web")
PASSWORD = "correct horse battery"
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def netns(name):
    """Runs the block with this thread in /run/netns/NAME (sockets made inside stay there)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open("/run/netns/" + name, os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns " + name)
        yield
    finally:
        _libc.setns(own, CLONE_NEWNET)
        os.close(own)
        os.close(target)


class Connection(http.client.HTTPConnection):
    """http.client connection whose socket lives in a lab namespace."""

    def __init__(self, ns, host, port, timeout=10, source=None):
        super().__init__(host, port, timeout=timeout,
                         source_address=(source, 0) if source else None)
        self.ns = ns

    def connect(self):
        with netns(self.ns):
            super().connect()


def raw_socket(ns, host, port, timeout=5):
    with netns(ns):
        return socket.create_connection((host, port), timeout=timeout)


def raw_exchange(ns, host, port, data, timeout=5):
    """Sends bytes, returns everything the server answers until it closes (or timeout)."""
    s = raw_socket(ns, host, port, timeout)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def config(w, port, extra=""):
    return ("[options]\n"
            "  LogFile = {w}/knock.log\n"
            "  Interface = kg-wan\n"
            "  WanInterface = kg-wan\n"
            # The tests reach the console from the client namespace over the WAN link.
            "  ManagementFrom = kg-wan\n"
            "  RuntimeDir = {w}\n"
            "  Database = {w}/knockgate.db\n"
            "  PidFile = {w}/policyd.pid\n"
            "  CaptureUser = nobody\n"
            "  WebUser = nobody\n"
            "  VerdictUser = nobody\n"
            "  WebListen = 127.0.0.1:{port},{wan}:{port}\n"
            "  WebRoot = {root}\n"
            "  WebPasswordFile = {w}/web.passwd\n"
            "  WebTokenFile = {w}/web.tokens\n{extra}\n"
            "[profile ssh-only]\n"
            "  direction = inbound\n"
            "  expose = tcp/2222 -> 192.168.50.10:22\n"
            "  fwmark = 0x10000000/0xff000000\n"
            "  table = 100\n"
            "  lifetime = 10m\n"
            "[openSSH]\n"
            "  sequence = 7000,8000,9000\n"
            "  seq_timeout = 5\n"
            "  tcpflags = syn\n"
            "  grant = ssh-only\n").format(w=w, port=port, wan=kglab.GW_WAN4, root=WEB_ROOT,
                                           extra=extra)


class Appliance:
    """policyd + webd (and optionally captured) in the gw namespace of `lab`."""

    def __init__(self, lab, port=8080, extra=""):
        self.lab = lab
        self.port = port
        self.w = lab.dir("webd%d" % time.monotonic_ns())
        self.conf = os.path.join(self.w, "knockgate.conf")
        with open(self.conf, "w") as f:
            f.write(config(self.w, port, extra))
        self.policyd = self.webd = self.captured = None

    def set_password(self, user="admin", password=PASSWORD):
        r = subprocess.run([CTL, "passwd", "-c", self.conf, "--stdin", user], input=password + "\n",
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        return r

    def new_token(self, name):
        r = subprocess.run([CTL, "passwd", "-c", self.conf, "--token", name], capture_output=True,
                           text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def start(self, captured=False, wrapper=()):
        self.policyd = self.lab.start("gw", [POLICYD, "-c", self.conf, "-v"],
                                      os.path.join(self.w, "policyd.out"))
        assert self.policyd.wait_for_output(r"listening on", 10), self.policyd.output()
        if captured:
            self.captured = self.lab.start("gw", [CAPTURED, "-c", self.conf, "-v"],
                                           os.path.join(self.w, "captured.out"))
            assert self.captured.wait_for_output(r"connected to policyd", 10), self.captured.output()
        self.start_webd(wrapper)

    def start_webd(self, wrapper=()):
        """`wrapper`: argv words put before webd's (e.g. prlimit and its options)."""
        self.webd = self.lab.start("gw", list(wrapper) + [WEBD, "-c", self.conf],
                                   os.path.join(self.w, "webd.out"))
        assert self.webd.wait_for_output(r"listening on", 10), self.webd.output()
        assert self.webd.wait_for_output(r"connected to policyd", 10), self.webd.output()
        assert self.webd.seccomp_filtered(), "webd runs without seccomp"

    def conn(self, host="127.0.0.1", ns_host="gw", source=None, timeout=10):
        return Connection(self.lab.ns(ns_host), host, self.port, timeout, source)

    def request(self, method, path, body=None, headers=None, conn=None, host="127.0.0.1",
                ns_host="gw", source=None):
        """`source`: the local address to connect from (another 127.0.0.x on loopback)."""
        c = conn or self.conn(host, ns_host, source)
        h = dict(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        payload = r.read()
        if conn is None:
            c.close()
        return r, payload

    def origin(self, host="127.0.0.1"):
        return "http://%s:%d" % (host, self.port)

    def login(self, user="admin", password=PASSWORD, host="127.0.0.1", ns_host="gw", source=None):
        r, body = self.request("POST", "/api/v1/login", {"username": user, "password": password},
                               {"Origin": self.origin(host)}, host=host, ns_host=ns_host,
                               source=source)
        if r.status != 200:
            return r, None
        cookie = r.getheader("Set-Cookie").split(";")[0]
        return r, Session(self, cookie, json.loads(body)["csrf_token"])


class Session:
    def __init__(self, app, cookie, csrf):
        self.app, self.cookie, self.csrf = app, cookie, csrf

    def headers(self, state_changing=False, extra=None):
        h = {"Cookie": self.cookie}
        if state_changing:
            h["X-CSRF-Token"] = self.csrf
            h["Origin"] = self.app.origin()
        h.update(extra or {})
        return h

    def get(self, path):
        r, body = self.app.request("GET", path, headers=self.headers())
        return r, body

    def send(self, method, path, body=None):
        return self.app.request(method, path, body, headers=self.headers(True))


def exhaust_descriptors(app, connections=200, measure_s=3.0, probe_timeout=5.0):
    """For a webd started under a small RLIMIT_NOFILE (prlimit): opens `connections` client
    sockets (the ones webd cannot accept wait in its listen backlog), measures webd's CPU
    use (utime + stime from /proc/PID/stat) over `measure_s` while it is out of
    descriptors, closes them, and times how long a new request then takes to be answered.
    Returns {"open_fds", "cpu_percent", "recovery_s"} (recovery_s None: no answer within
    probe_timeout)."""
    pid = kglab.real_pid(app.webd.pid)
    ns = app.lab.ns("gw")
    socks = []
    try:
        for _ in range(connections):
            socks.append(raw_socket(ns, "127.0.0.1", app.port))
        time.sleep(0.5)  # webd accepts what it can and runs out
        open_fds = len(os.listdir("/proc/%d/fd" % pid))
        cpu0, t0 = kglab.cpu_seconds(pid), time.monotonic()
        time.sleep(measure_s)
        cpu_percent = (kglab.cpu_seconds(pid) - cpu0) / (time.monotonic() - t0) * 100
    finally:
        for s in socks:
            s.close()
    t0 = time.monotonic()
    recovery_s = None
    try:
        r, _ = app.request("GET", "/", conn=app.conn(timeout=probe_timeout))
        if r.status == 200:
            recovery_s = time.monotonic() - t0
    except OSError:
        pass
    return {"open_fds": open_fds, "cpu_percent": cpu_percent, "recovery_s": recovery_s}
