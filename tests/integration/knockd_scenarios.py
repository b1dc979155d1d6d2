"""The knockd differential scenarios: a door configuration, what the clients send, and
what knockd 0.8 does (docs/knockd-compatibility.md, checked against the real
daemon). Where knockgate deliberately differs, `knockgate` holds its documented outcome
and `diff` says why (docs/knockd-compatibility.md).

Outcome lines are what the doors' commands write: "ADDR DOOR", with ADDR one of
C1/C2 (the clients' IPv4 addresses), C1v6/C2v6, or C1t/C1t6 (client 1 on the tun link).
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple


# ---- doors
@dataclass
class Door:
    name: str
    keys: Sequence[Tuple[str, str]]
    # Add `command = echo "%IP% NAME" >> MARK` (off when the door sets its own commands).
    default_command: bool = True


def door(name, sequence=None, seq_timeout=5, tcpflags=None, default_command=True, **extra):
    keys = []
    if sequence is not None:
        keys.append(("sequence", sequence))
    if seq_timeout is not None:
        keys.append(("seq_timeout", str(seq_timeout)))
    if tcpflags is not None:
        keys.append(("tcpflags", tcpflags))
    for k, v in extra.items():
        keys.append((k, v))
    return Door(name, keys, default_command)


def mark_cmd(text, timed=False):
    """A command that appends TEXT (with %IP% in it) to the scenario's mark file; timed
    commands add "@<epoch seconds>" so the runner can measure when they ran."""
    stamp = ' @$(date +%s.%N)' if timed else ""
    return 'echo "%s%s" >> {mark}' % (text, stamp)


# ---- client steps
@dataclass
class Knock:
    """The knock client (real `knock` or knockgate-knock): one invocation."""
    hits: Sequence[str]
    host: str = "client"
    dst: str = "wan4"
    opts: Sequence[str] = ()


@dataclass
class Hping:
    """One exact packet from hping3 (-c 1 -q): TCP with FLAGS (e.g. "S", "SA"), or UDP."""
    flags: str
    port: int
    host: str = "client"
    dst: str = "wan4"
    udp: bool = False


@dataclass
class Sleep:
    seconds: float


@dataclass
class AlignSecond:
    """Sleep until the wall clock's fractional second is `frac` (pcap timestamps are
    wall-clock; knockd compares whole seconds)."""
    frac: float


def K(*hits, host="client", dst="wan4", opts=()):
    return Knock(list(hits), host, dst, list(opts))


def K6(*hits, host="client", dst="wan6", opts=()):
    return Knock(list(hits), host, dst, ["-6"] + list(opts))


def H(flags, *ports, host="client"):
    return [Hping(flags, p, host) for p in ports]


def HU(*ports, host="client"):
    return [Hping("", p, host, udp=True) for p in ports]


def _flatten(steps):
    out = []
    for s in steps:
        if isinstance(s, list):
            out.extend(s)
        else:
            out.append(s)
    return out


@dataclass
class Outcome:
    lines: List[str]
    alive: bool = True                     # the daemon(s) still running at the end
    files: Dict[str, str] = field(default_factory=dict)  # data files after the run


@dataclass
class Scenario:
    name: str
    doors: Sequence[Door]
    steps: list
    expect: List[str]                      # knockd's outcome lines
    alive: bool = True                     # knockd still alive at the end
    files: Dict[str, str] = field(default_factory=dict)         # data files to create
    expect_files: Dict[str, str] = field(default_factory=dict)  # …and their content after
    knockgate: Optional[Outcome] = None    # knockgate's documented outcome where it differs
    diff: Optional[str] = None             # why it differs (a deliberate difference)
    unordered: bool = False                # commands run concurrently: compare as a multiset
    timing: Sequence[Tuple[str, str, float]] = ()  # (line A, line B, seconds from A to B)
    expect_log: Sequence[str] = ()         # regexes the daemon log must contain
    knockd_log: Sequence[str] = ()         # regexes knockd's output must contain (why it
                                           # behaves as it does, where that is not obvious)
    iface: str = "kg-wan"
    note: str = ""
    # Also run with knockgate-knock as the client (scenarios where what the client puts
    # on the wire matters: protocols, families, delays, targets, flag tests, one-time).
    kgknock: bool = False

    def __post_init__(self):
        self.steps = _flatten(self.steps)

    def uses_knock_client(self):
        return any(isinstance(s, Knock) for s in self.steps)

    def runs_with_kgknock(self):
        return self.kgknock and self.uses_knock_client()

    def knockd_outcome(self):
        return Outcome(list(self.expect), self.alive, dict(self.expect_files))


D1 = "7000,8000,9000"
# knockd runs each command in a forked child 40-150 ms after the last knock, and reads
# packets in 50 ms batches: a pause this long between two sequences keeps the order of
# their commands (and one-time rotations) deterministic.
GAP = Sleep(0.4)
ONE_TIME_3 = " 7000,8000\n 7100,8100\n 7200,8200\n"

SCENARIOS = [
    # ---- sequences
    Scenario("right_sequence", [door("d1", D1)], [K(7000, 8000, 9000)], ["C1 d1"],
             expect_log=[r"\] 203\.0\.113\.10: d1: Stage 1\n", r"203\.0\.113\.10: d1: Stage 3\n",
                         r"203\.0\.113\.10: d1: OPEN SESAME\n",
                         r'd1: running command: echo "203\.0\.113\.10 d1" >> '], kgknock=True),
    Scenario("wrong_order", [door("d1", D1)], [K(8000, 7000, 9000)], []),
    Scenario("foreign_port_between", [door("d1", D1)], [K(7000, 7500, 8000, 9000)], ["C1 d1"],
             note="a port in no door never reaches the matcher", kgknock=True),
    Scenario("other_door_port_between", [door("d1", D1), door("d2", "6000,6100")],
             [K(7000, 8000, 6100, 9000)], []),
    Scenario("breaking_packet_starts_nothing", [door("d1", D1), door("d2", "6000,6100")],
             [K(7000, 6000, 6100)], [],
             note="6000 breaks d1 and does not start d2; 6100 is then judged fresh"),
    Scenario("fresh_start_after_break", [door("d1", D1)], [K(7000, 9000, 7000, 8000, 9000)],
             ["C1 d1"]),
    Scenario("repeat_opens_twice", [door("d1", D1)],
             [K(7000, 8000, 9000), GAP, K(7000, 8000, 9000)], ["C1 d1", "C1 d1"]),
    Scenario("duplicate_syn_breaks", [door("d1", D1)], [K(7000, 7000, 8000, 9000)], [],
             note="knockd's most common complaint; knockgate only tolerates it when asked",
             kgknock=True),
    Scenario("knock_delay", [door("d1", D1)], [K(7000, 8000, 9000, opts=["-d", "300"])],
             ["C1 d1"], kgknock=True),
    Scenario("one_knock_door", [door("d1", "7000")], [K(7000)], ["C1 d1"]),
    Scenario("one_knock_udp_door", [door("d1", "7000:udp")], [K("7000:udp")], ["C1 d1"],
             kgknock=True),

    # ---- timeouts
    Scenario("timeout_exceeded", [door("d1", D1, seq_timeout=2)],
             [K(7000, 8000), Sleep(3), K(9000)], [],
             expect_log=[r"203\.0\.113\.10: d1: sequence timeout \(stage 2\)"]),
    Scenario("timeout_not_exceeded", [door("d1", D1, seq_timeout=5)],
             [K(7000), Sleep(1), K(8000), Sleep(1), K(9000)], ["C1 d1"]),
    Scenario("timeout_then_fresh_attempt", [door("d1", D1, seq_timeout=2)],
             [K(7000), Sleep(3), K(7000, 8000, 9000)], ["C1 d1"]),
    Scenario("seq_timeout_zero", [door("d1", "7000,8000", seq_timeout=0)], [K(7000, 8000)], []),
    Scenario("timeout_whole_seconds", [door("d1", "7000,8000", seq_timeout=2)],
             [AlignSecond(0.6), K(7000), Sleep(1.6), K(8000)], [],
             knockd_log=[r"d1: sequence timeout \(stage 1\)"],
             knockgate=Outcome(["C1 d1"]),
             diff="on-time timeouts: knockd compares whole seconds of pcap time, so 1.6 s "
                  "across two second boundaries counts as 2 s; knockgate measures real time"),

    # ---- TCP flags (hping3 sends the exact flags)
    Scenario("tcpflags_syn_ignores_ack", [door("d1", D1, tcpflags="syn")],
             [H("S", 7000), H("A", 8000), H("S", 8000), H("A", 9000), H("S", 9000)], ["C1 d1"]),
    Scenario("no_tcpflags_ack_breaks", [door("d1", D1)],
             [H("S", 7000), H("A", 7000), H("S", 8000), H("S", 9000)], [],
             note="without tcpflags any TCP segment counts: normal traffic breaks knocks"),
    Scenario("tcpflags_synack", [door("d1", D1, tcpflags="syn,ack")],
             [H("SA", 7000, 8000, 9000)], ["C1 d1"]),
    Scenario("tcpflags_synack_plain_syn_ignored", [door("d1", D1, tcpflags="syn,ack")],
             [K(7000, 8000, 9000)], [], kgknock=True),
    Scenario("tcpflags_not_ack", [door("d1", D1, tcpflags="syn,!ack")],
             [H("S", 7000), H("SA", 8000), H("S", 8000), H("S", 9000)], ["C1 d1"]),
    Scenario("tcpflags_not_ack_rejects_synack", [door("d1", D1, tcpflags="syn,!ack")],
             [H("SA", 7000, 8000, 9000)], []),
    Scenario("tcpflags_fin", [door("d1", D1, tcpflags="fin")],
             [H("S", 7000), H("F", 7000), H("S", 8000), H("F", 8000, 9000)], ["C1 d1"]),
    Scenario("tcpflags_syn_knock_client", [door("d1", D1, tcpflags="syn")],
             [K(7000, 8000, 9000)], ["C1 d1"], kgknock=True),
    Scenario("tcpflags_udp_always_passes", [door("d1", "7000,8000:udp,9000", tcpflags="syn")],
             [K(7000, "8000:udp", 9000)], ["C1 d1"], kgknock=True),

    # ---- protocols
    Scenario("mixed_tcp_udp", [door("d1", "7000,8000:udp,9000")], [K(7000, "8000:udp", 9000)],
             ["C1 d1"], kgknock=True),
    Scenario("mixed_wrong_proto_is_foreign", [door("d1", "7000,8000:udp,9000")],
             [K(7000, 8000, "8000:udp", 9000)], ["C1 d1"],
             note="tcp/8000 is in no door, so it cannot break the attempt", kgknock=True),
    Scenario("all_udp", [door("d1", "7000:udp,8000:udp,9000:udp")],
             [K(7000, 8000, 9000, opts=["-u"])],
             ["C1 d1"], kgknock=True),
    Scenario("all_udp_door_tcp_sent", [door("d1", "7000:udp,8000:udp,9000:udp")],
             [K(7000, 8000, 9000)], [], kgknock=True),
    Scenario("all_udp_hping", [door("d1", "7000:udp,8000:udp,9000:udp")], [HU(7000, 8000, 9000)],
             ["C1 d1"]),

    # ---- several doors, several clients
    Scenario("shared_first_port", [door("d1", D1), door("d2", "7000,8100,9100")],
             [K(7000, 8100, 9100), GAP, K(7000, 8000, 9000)], ["C1 d1"],
             knockgate=Outcome(["C1 d2", "C1 d1"]),
             diff="knockd's list-head bug: 7000 starts d1 (the list head) and d2; 8100 breaks "
                  "d1, and removing d1 at the next packet empties the list, losing d2"),
    Scenario("shared_first_port_first_door", [door("d1", D1), door("d2", "7000,8100,9100")],
             [K(7000, 8000, 9000)], ["C1 d1"],
             note="the broken attempt (d2) is not the list head: knockd gets this one right"),
    Scenario("one_packet_two_doors_one_completes",
             [door("dA", "7000,8000"), door("dB", "7000,9000")],
             [K(7000, 8000)], ["C1 dA"]),
    Scenario("two_doors_same_sequence", [door("d1", "7000,8000"), door("d2", "7000,8000")],
             [K(7000, 8000)], ["C1 d1", "C1 d2"], unordered=True),
    Scenario("overlapping_doors_list_head", [door("dA", "7000,8000"), door("dB", D1)],
             [K(7000, 8000, 9000)], ["C1 dA"],
             knockgate=Outcome(["C1 dA", "C1 dB"]),
             # The two doors open one knock apart (microseconds: the client sends the three
             # SYNs back to back), so their commands run concurrently and append in either order.
             unordered=True,
             diff="knockd's list-head bug: removing the finished dA attempt at the head of the "
                  "list empties the whole list, so dB's progress is lost; knockgate keeps it"),
    Scenario("other_client_port_does_not_break", [door("d1", D1)],
             [K(7000), K(9000, host="client2"), K(8000), K(9000)], ["C1 d1"]),
    Scenario("second_client", [door("d1", D1)], [K(7000, 8000, 9000, host="client2")], ["C2 d1"],
             kgknock=True),
    Scenario("two_clients_sequential", [door("d1", D1)],
             [K(7000, 8000, 9000), GAP, K(7000, 8000, 9000, host="client2")], ["C1 d1", "C2 d1"]),
    Scenario("two_clients_interleaved_first_finishes_first", [door("d1", D1)],
             [K(7000), K(7000, host="client2"), K(8000), K(8000, host="client2"),
              K(9000), K(9000, host="client2")], ["C1 d1"],
             knockgate=Outcome(["C1 d1", "C2 d1"]),
             diff="concurrent knockers: knockd's list-head bug drops client2's progress when "
                  "client1's finished attempt (the list head) is removed"),
    Scenario("two_clients_interleaved_second_finishes_first", [door("d1", D1)],
             [K(7000), K(7000, host="client2"), K(8000, host="client2"), K(8000),
              K(9000, host="client2"), GAP, K(9000)], ["C2 d1", "C1 d1"],
             note="the finished attempt is not the list head: knockd gets this one right"),

    # ---- one-time sequences
    Scenario("one_time_used_sequence_fails", [door("ot", None, one_time_sequences="{dir}/otseq")],
             [K(7000, 8000), GAP, K(7000, 8000)], ["C1 ot"],
             files={"otseq": ONE_TIME_3},
             expect_files={"otseq": "#7000,8000\n 7100,8100\n 7200,8200\n"}),
    Scenario("one_time_next_sequence_works", [door("ot", None, one_time_sequences="{dir}/otseq")],
             [K(7000, 8000), GAP, K(7100, 8100)], ["C1 ot", "C1 ot"],
             files={"otseq": ONE_TIME_3},
             expect_files={"otseq": "#7000,8000\n#7100,8100\n 7200,8200\n"}, kgknock=True),
    Scenario("one_time_exhaustion", [door("ot", None, one_time_sequences="{dir}/otseq")],
             [K(7000, 8000), GAP, K(7000, 8000)], ["C1 ot"], alive=False,
             knockd_log=["no more sequences left in the one time sequences file for door ot",
                         "double free"],
             files={"otseq": " 7000,8000\n"}, expect_files={"otseq": "#7000,8000\n"},
             knockgate=Outcome(["C1 ot"], True, {"otseq": "#7000,8000\n"}),
             diff="one-time exhaustion: knockd crashes (double free); knockgate disables the "
                  "door with a log line and keeps running"),
    Scenario("one_time_ipv6_after_rotation", [door("ot", None, one_time_sequences="{dir}/otseq")],
             [K6(7000, 8000), GAP, K6(7100, 8100)], ["C1v6 ot"],
             files={"otseq": ONE_TIME_3},
             expect_files={"otseq": "#7000,8000\n 7100,8100\n 7200,8200\n"},
             knockgate=Outcome(["C1v6 ot", "C1v6 ot"], True,
                               {"otseq": "#7000,8000\n#7100,8100\n 7200,8200\n"}),
             diff="after a one-time rotation knockd rebuilds only its IPv4 filter, so the new "
                  "sequence is invisible over IPv6; knockgate treats both families alike"),

    # ---- IPv6
    Scenario("ipv6_knock", [door("d1", D1)], [K6(7000, 8000, 9000)], ["C1v6 d1"],
             expect_log=[r"2001:db8:1::10: d1: OPEN SESAME\n"], kgknock=True),
    Scenario("ipv6_command_6", [door("d1", D1, command_6=mark_cmd("%IP% d1:v6"))],
             [K(7000, 8000, 9000), GAP, K6(7000, 8000, 9000)], ["C1 d1", "C1v6 d1:v6"]),
    Scenario("ipv6_empty_command_6", [door("d1", D1, command_6="")],
             [K6(7000, 8000, 9000), GAP, K(7000, 8000, 9000)], ["C1 d1"],
             note="an empty _6 command stops the fall-back to the IPv4 one"),
    Scenario("ipv6_mixed_udp", [door("d1", "7000,8000:udp,9000")], [K6(7000, "8000:udp", 9000)],
             ["C1v6 d1"], kgknock=True),
    Scenario("ipv6_tcpflags_syn", [door("d1", D1, tcpflags="syn")], [K6(7000, 8000, 9000)],
             ["C1v6 d1"]),
    Scenario("ipv6_second_client", [door("d1", D1)], [K6(7000, 8000, 9000, host="client2")],
             ["C2v6 d1"]),

    # ---- a raw-IP link (tun devices: libpcap's DLT_RAW, no Ethernet header)
    Scenario("raw_ip_link_ipv4", [door("d1", D1)], [K(7000, 8000, 9000, dst="tun4")],
             ["C1t d1"], iface="kg-tun", kgknock=True),
    Scenario("raw_ip_link_ipv6", [door("d1", D1)], [K6(7000, 8000, 9000, dst="tun6")], [],
             iface="kg-tun", knockgate=Outcome(["C1t6 d1"]),
             knockd_log=["IPv6 is not supported under this link-layer type"],
             diff="IPv6 on every link type: knockd decodes IPv6 only on Ethernet; knockgate "
                  "decodes raw IP and Linux cooked captures for both families", kgknock=True),

    # ---- target, commands
    Scenario("target_door", [door("dt", D1, target="192.168.50.1")],
             [K(7000, 8000, 9000), GAP, K(7000, 8000, 9000, dst="lan4")], ["C1 dt"],
             note="only knocks to the target address count (they reach kg-wan routed)",
             kgknock=True),
    Scenario("start_stop_cmd_timeout",
             [door("oc", D1, default_command=False, cmd_timeout="2",
                   start_command=mark_cmd("%IP% oc-start", timed=True),
                   stop_command=mark_cmd("%IP% oc-stop", timed=True))],
             [K(7000, 8000, 9000)], ["C1 oc-start", "C1 oc-stop"],
             timing=[("C1 oc-start", "C1 oc-stop", 2.0)],
             expect_log=[r"203\.0\.113\.10: oc: command timeout\n"]),
    Scenario("ip_substitution_every_occurrence",
             [door("d1", D1, default_command=False, command=mark_cmd("%IP% d1 %IP%"))],
             [K(7000, 8000, 9000)], ["C1 d1 C1"]),
    Scenario("command_nonzero_status",
             [door("d1", D1, default_command=False, command=mark_cmd("%IP% d1") + "; exit 3")],
             [K(7000, 8000, 9000)], ["C1 d1"],
             expect_log=[r"d1: command returned non-zero status code \(3\)"]),
]
