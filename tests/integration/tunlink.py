#!/usr/bin/env python3
"""A point-to-point link between two namespaces made of two tun devices (raw IP, no
link-layer header: libpcap's DLT_RAW) and this process copying packets between them.
The lab's kernel has no ipip/gre/sit modules, so this is how tests get a non-Ethernet
link type.

    tunlink.py HOME_NS NS_A IF_A NS_B IF_B

It opens IF_A inside NS_A and IF_B inside NS_B (a tun fd stays bound to its device
whatever namespace the process moves to), returns to HOME_NS so it is counted among
that namespace's processes, prints "ready", and relays until killed. The devices vanish
with it.
"""

import ctypes
import fcntl
import os
import select
import signal
import struct
import sys

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000

_libc = ctypes.CDLL(None, use_errno=True)


def enter_netns(name):
    fd = os.open("/run/netns/" + name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "setns(%s): %s" % (name, os.strerror(err)))
    finally:
        os.close(fd)


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    ifr = struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI)
    fcntl.ioctl(fd, TUNSETIFF, ifr)
    return fd


def main(argv):
    if len(argv) != 6:
        sys.stderr.write(__doc__)
        return 2
    home, ns_a, if_a, ns_b, if_b = argv[1:]
    enter_netns(ns_a)
    fd_a = open_tun(if_a)
    enter_netns(ns_b)
    fd_b = open_tun(if_b)
    enter_netns(home)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    peer = {fd_a: fd_b, fd_b: fd_a}
    while True:
        readable, _, _ = select.select([fd_a, fd_b], [], [])
        for fd in readable:
            try:
                os.write(peer[fd], os.read(fd, 65536))
            except OSError:
                pass  # the far device is down for a moment: drop, as a wire would


if __name__ == "__main__":
    sys.exit(main(sys.argv))
