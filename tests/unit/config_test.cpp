#include "config/config.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "config/one_time.h"
#include "config/values.h"

namespace kg::config {
namespace {

namespace fs = std::filesystem;

const std::string kGood = KG_TEST_DATA "/config/good/";
const std::string kBad = KG_TEST_DATA "/config/bad/";

Knock tcp(uint16_t port) {
  return Knock{Proto::tcp, port};
}
Knock udp(uint16_t port) {
  return Knock{Proto::udp, port};
}

std::vector<std::string> rendered(const std::vector<Diagnostic>& diags) {
  std::vector<std::string> out;
  for (const auto& d : diags) out.push_back(d.str());
  return out;
}

std::string joined(const std::vector<Diagnostic>& diags) {
  std::string out;
  for (const auto& d : diags) out += d.str() + "\n";
  return out;
}

ParseResult parse(std::string_view text) {
  return parse_text(text, "t.conf");
}

// Parses text that must be valid; a failure shows every error.
Config parse_ok(std::string_view text) {
  auto r = parse(text);
  EXPECT_TRUE(r.errors.empty()) << joined(r.errors);
  EXPECT_TRUE(r.config.has_value());
  return r.config.value_or(Config{});
}

Config parse_file_ok(const std::string& path) {
  auto r = parse_file(path);
  EXPECT_TRUE(r.errors.empty()) << joined(r.errors);
  return r.config.value_or(Config{});
}

// The single error a snippet must produce, rendered.
std::string only_error(std::string_view text) {
  auto r = parse(text);
  EXPECT_FALSE(r.config.has_value());
  if (r.errors.size() != 1) return "expected one error, got:\n" + joined(r.errors);
  return r.errors[0].str();
}

Door one_door(std::string_view body) {
  auto c = parse_ok("[d]\n" + std::string(body));
  if (c.doors.size() != 1) {
    ADD_FAILURE() << "expected one door";
    return Door{};
  }
  return c.doors[0];
}

// ---- Diagnostics ----

TEST(Diagnostic, RendersFileLineKeyMessage) {
  EXPECT_EQ((Diagnostic{"/etc/k.conf", 12, "sequence", "empty knock sequence"}).str(),
            "/etc/k.conf:12: sequence: empty knock sequence");
  EXPECT_EQ((Diagnostic{"k.conf", 3, "", "missing key before '='"}).str(),
            "k.conf:3: missing key before '='");
  EXPECT_EQ((Diagnostic{"k.conf", 0, "", "cannot open: No such file or directory"}).str(),
            "k.conf: cannot open: No such file or directory");
}

TEST(ParseFile, UnreadableFileSaysWhy) {
  auto r = parse_file("/nonexistent/knockgate.conf");
  EXPECT_FALSE(r.config);
  EXPECT_EQ(rendered(r.errors),
            std::vector<std::string>{"/nonexistent/knockgate.conf: cannot open: No such file or "
                                     "directory"});
  auto dir = parse_file(KG_TEST_DATA);
  ASSERT_EQ(dir.errors.size(), 1U);
  EXPECT_EQ(dir.errors[0].str(), std::string(KG_TEST_DATA) + ": cannot read: Is a directory");
}

// ---- Defaults ----

TEST(Defaults, KnockdDefaultsAndKnockgateDefaults) {
  auto c = parse_ok("[d]\nsequence = 7000\n");
  const Options& o = c.options;
  EXPECT_FALSE(o.use_syslog);
  EXPECT_EQ(o.log_file, "");
  EXPECT_EQ(o.pid_file, "/var/run/knockd.pid");
  EXPECT_EQ(o.interfaces, std::vector<std::string>{"eth0"});
  EXPECT_TRUE(o.wan_interfaces.empty());  // no roles: knockd's host mode
  EXPECT_TRUE(o.lan_interfaces.empty());
  EXPECT_TRUE(o.management_interfaces.empty());
  EXPECT_EQ(o.management_ports, (std::vector<AllowRule>{{AllowProto::tcp, {22, 22}}}));
  EXPECT_EQ(c.mode(), Mode::host);
  EXPECT_EQ(o.database, "/var/lib/knockgate/knockgate.db");
  EXPECT_EQ(o.runtime_dir, "/run/knockgate");
  EXPECT_EQ(o.max_tracked_sources, 65536U);
  EXPECT_EQ(o.capture_user, "knockgate");
  EXPECT_EQ(o.admin_group, "knockgate-admin");

  ASSERT_EQ(c.doors.size(), 1U);
  const Door& d = c.doors[0];
  EXPECT_EQ(d.name, "d");
  EXPECT_EQ(d.line, 1);
  EXPECT_EQ(d.sequence, std::vector<Knock>{tcp(7000)});
  EXPECT_EQ(d.seq_timeout, 25);
  EXPECT_EQ(d.cmd_timeout, 10);
  EXPECT_FALSE(d.tcpflags.any());
  EXPECT_EQ(d.start_command, "");
  EXPECT_FALSE(d.start_command_6.has_value());
  EXPECT_EQ(d.stop_command, "");
  EXPECT_FALSE(d.stop_command_6.has_value());
  EXPECT_FALSE(d.target.has_value());
  EXPECT_EQ(d.grant, "");
  EXPECT_FALSE(d.tolerate_duplicates);
  EXPECT_TRUE(d.one_time_sequences.empty());
}

TEST(Defaults, ProfileDefaults) {
  auto c = parse_ok(
      "[profile p]\ndirection = inbound\nexpose = tcp/22 -> 10.0.0.1\n[options]\nWanInterface = "
      "w\n");
  ASSERT_EQ(c.profiles.size(), 1U);
  const Profile& p = c.profiles[0];
  EXPECT_EQ(p.lifetime, std::chrono::hours(1));
  EXPECT_EQ(p.max_lifetime, std::chrono::hours(8));
  EXPECT_EQ(p.revoke, Revoke::new_flows);
  EXPECT_FALSE(p.fwmark);
  EXPECT_FALSE(p.table);
  EXPECT_EQ(c.find_profile("p"), &c.profiles[0]);
  EXPECT_EQ(c.find_profile("q"), nullptr);
}

// ---- Every door key and alias, in any case ----

struct DoorKeyCase {
  std::string line;
  std::function<void(Door&)> expect;  // applied to a default door with sequence 1
};

TEST(DoorKeys, EveryKeyAndAlias) {
  const std::vector<DoorKeyCase> cases = {
      {"Seq_Timeout = 5", [](Door& d) { d.seq_timeout = 5; }},
      {"TIMEOUT = 0", [](Door& d) { d.seq_timeout = 0; }},
      {"tcpflags = syn", [](Door& d) { d.tcpflags.must_set = tcpflag::syn; }},
      {"Start_Command = /bin/open %IP%", [](Door& d) { d.start_command = "/bin/open %IP%"; }},
      {"command = /bin/open %IP%", [](Door& d) { d.start_command = "/bin/open %IP%"; }},
      {"start_command_6 = open6 %IP%", [](Door& d) { d.start_command_6 = "open6 %IP%"; }},
      {"Command_6 = open6 %IP%", [](Door& d) { d.start_command_6 = "open6 %IP%"; }},
      {"stop_command = close %IP%", [](Door& d) { d.stop_command = "close %IP%"; }},
      {"STOP_COMMAND_6 = close6 %IP%", [](Door& d) { d.stop_command_6 = "close6 %IP%"; }},
      {"cmd_timeout = 3600", [](Door& d) { d.cmd_timeout = 3600; }},
      {"Target = 192.0.2.9", [](Door& d) { d.target = IpAddr::parse("192.0.2.9"); }},
      {"target = 2001:db8::9", [](Door& d) { d.target = IpAddr::parse("2001:db8::9"); }},
      {"one_time_sequences = /etc/ots",
       [](Door& d) {
         d.sequence.clear();
         d.one_time_sequences = "/etc/ots";
       }},
      {"Sequence = 9:udp", [](Door& d) { d.sequence = {udp(9)}; }},
      {"Tolerate_Duplicates = yes", [](Door& d) { d.tolerate_duplicates = true; }},
      {"tolerate_duplicates = On", [](Door& d) { d.tolerate_duplicates = true; }},
      {"tolerate_duplicates = no", [](Door&) {}},
      {"command = a = b == c", [](Door& d) { d.start_command = "a = b == c"; }},
      {"command =    spaced   ", [](Door& d) { d.start_command = "spaced"; }},
      {"  command=x", [](Door& d) { d.start_command = "x"; }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.line);
    Door expected;
    expected.name = "d";
    expected.sequence = {tcp(1)};
    c.expect(expected);
    EXPECT_EQ(one_door("sequence = 1\n" + c.line + "\n"), expected);
  }
}

TEST(DoorKeys, GrantNamesAProfile) {
  auto c = parse_ok(
      "[openSSH]\nsequence = 1\ngrant = ssh\n"
      "[profile ssh]\ndirection = inbound\nexpose = self tcp/22\n");
  ASSERT_EQ(c.doors.size(), 1U);
  EXPECT_EQ(c.doors[0].grant, "ssh");
}

TEST(OptionsKeys, EveryKey) {
  auto c = parse_ok(
      "[options]\n"
      "LOGFILE = /var/log/k.log\nPidFile = /run/k.pid\nInterface = wan0, wan1\n"
      "WanInterface = wan1\nlaninterface = lan0\nDatabase = /var/k.db\nRuntimeDir = /run/k\n"
      "MaxTrackedSources = 16\nCaptureUser = cap_user\nAdminGroup = admins\nUseSyslog\n"
      "PolicyUser = pol_user\nCommandUser = cmd_user\n"
      "[d]\nsequence = 1\n");
  const Options& o = c.options;
  EXPECT_EQ(o.policy_user, "pol_user");
  EXPECT_EQ(o.command_user, "cmd_user");
  EXPECT_EQ(parse_ok("[d]\nsequence = 1\n").options.command_user, "");  // root, as knockd
  EXPECT_EQ(only_error("[options]\nPolicyUser = a b\n[d]\nsequence=1\n"),
            "t.conf:2: policyuser: \"a b\" is not a valid user name");
  EXPECT_TRUE(o.use_syslog);
  EXPECT_EQ(o.log_file, "/var/log/k.log");
  EXPECT_EQ(o.pid_file, "/run/k.pid");
  EXPECT_EQ(o.interfaces, (std::vector<std::string>{"wan0", "wan1"}));
  EXPECT_EQ(o.wan_interfaces, std::vector<std::string>{"wan1"});
  EXPECT_EQ(o.lan_interfaces, std::vector<std::string>{"lan0"});
  EXPECT_EQ(o.database, "/var/k.db");
  EXPECT_EQ(o.runtime_dir, "/run/k");
  EXPECT_EQ(o.max_tracked_sources, 16U);
  EXPECT_EQ(o.capture_user, "cap_user");
  EXPECT_EQ(o.admin_group, "admins");
  EXPECT_EQ(parse_ok("[options]\nMaxTrackedSources = 16777216\n[d]\nsequence=1\n")
                .options.max_tracked_sources,
            16777216U);
  EXPECT_EQ(only_error("[options]\nMaxTrackedSources = 16777217\n[d]\nsequence=1\n"),
            "t.conf:2: maxtrackedsources: 16777217 is out of range (16-16777216)");
}

TEST(OptionsKeys, WebKeys) {
  auto c = parse_ok(
      "[options]\nWebListen = 127.0.0.1:8080, [::1]:8443,192.168.50.1:80\nWebUser = web_u\n"
      "WebTlsCertificate = /etc/k/c.pem\nWebTlsKey = /etc/k/k.pem\n"
      "WebPasswordFile = /etc/k/pw\nWebTokenFile = /etc/k/tok\nWebRoot = /srv/web\n"
      "[d]\nsequence = 1\n");
  const Options& o = c.options;
  ASSERT_EQ(o.web_listen.size(), 3U);
  EXPECT_EQ(o.web_listen[0].str(), "127.0.0.1:8080");
  EXPECT_EQ(o.web_listen[1].str(), "[::1]:8443");
  EXPECT_EQ(o.web_listen[2].port, 80);
  EXPECT_EQ(o.web_user, "web_u");
  EXPECT_EQ(o.web_tls_certificate, "/etc/k/c.pem");
  EXPECT_EQ(o.web_tls_key, "/etc/k/k.pem");
  EXPECT_EQ(o.web_password_file, "/etc/k/pw");
  EXPECT_EQ(o.web_token_file, "/etc/k/tok");
  EXPECT_EQ(o.web_root, "/srv/web");
  EXPECT_EQ(parse_ok(dump(c)), c);
  EXPECT_EQ(only_error("[options]\nWebListen = 127.0.0.1\n[d]\nsequence=1\n"),
            "t.conf:2: weblisten: \"127.0.0.1\" is not ADDRESS:PORT (IPv6 as [ADDRESS]:PORT)");
  EXPECT_EQ(only_error("[options]\nWebListen = ::1:80\n[d]\nsequence=1\n"),
            "t.conf:2: weblisten: \"::1:80\" is not ADDRESS:PORT (IPv6 as [ADDRESS]:PORT)");
  EXPECT_EQ(only_error("[options]\nWebListen = 10.0.0.1:0\n[d]\nsequence=1\n"),
            "t.conf:2: weblisten: port of \"10.0.0.1:0\": 0 is out of range (1-65535)");
  EXPECT_EQ(only_error("[options]\nWebRoot = web\n[d]\nsequence=1\n"),
            "t.conf:2: webroot: must be an absolute path");
  EXPECT_EQ(only_error("[options]\nWebTlsKey = /k.pem\n[d]\nsequence=1\n"),
            "t.conf:2: webtlskey: WebTlsCertificate must be set too");
}

// ---- Sequences ----

TEST(Sequence, PortProtoForms) {
  const std::vector<std::pair<std::string, std::vector<Knock>>> cases = {
      {"7000,8000,9000", {tcp(7000), tcp(8000), tcp(9000)}},
      {"2222:udp,3333:tcp,4444:udp", {udp(2222), tcp(3333), udp(4444)}},
      {"1:UDP, 2 : Tcp ,3:  udp  ", {udp(1), tcp(2), udp(3)}},
      {" 65535 ", {tcp(65535)}},
      {"007", {tcp(7)}},
      {"1,1,1", {tcp(1), tcp(1), tcp(1)}},
  };
  for (const auto& [text, knocks] : cases) {
    SCOPED_TRACE(text);
    EXPECT_EQ(one_door("sequence = " + text + "\n").sequence, knocks);
  }
  std::string thirty_two;
  for (int i = 1; i <= 32; ++i) thirty_two += (i > 1 ? "," : "") + std::to_string(i);
  EXPECT_EQ(one_door("sequence = " + thirty_two + "\n").sequence.size(), 32U);
}

TEST(Sequence, RejectsWhatKnockdMisreads) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"abc", "port \"abc\" is not a number"},
      {"-1", "port \"-1\" is not a number"},
      {"+5", "port \"+5\" is not a number"},
      {"0", "port 0 is out of range (1-65535)"},
      {"65536", "port 65536 is out of range (1-65535)"},
      {"99999999999999999999999", "port 99999999999999999999999 is out of range (1-65535)"},
      {"7000x", "port \"7000x\" is not a number"},
      {"7000 8000", "port \"7000 8000\" is not a number"},
      {"7000,,8000", "empty item 2 in knock sequence"},
      {"7000,", "empty item 2 in knock sequence"},
      {"7000,8000 # x", "inline comments are not allowed (a comment is a line starting with '#')"},
      {"7000:icmp", "unknown protocol \"icmp\" in knock sequence (expected tcp or udp)"},
      {"7000:tcp:x", "unknown protocol \"tcp:x\" in knock sequence (expected tcp or udp)"},
      {"7000:", "missing protocol after ':' in \"7000:\""},
      {":udp", "missing port number"},
  };
  for (const auto& [text, message] : cases) {
    SCOPED_TRACE(text);
    EXPECT_EQ(only_error("[d]\nsequence = " + text + "\n"), "t.conf:2: sequence: " + message);
  }
}

TEST(Sequence, LastOfSequenceAndOneTimeSequencesWins) {
  Door a = one_door("sequence = 1\none_time_sequences = /x\n");
  EXPECT_TRUE(a.sequence.empty());
  EXPECT_EQ(a.one_time_sequences, "/x");
  Door b = one_door("one_time_sequences = /x\nsequence = 2\n");
  EXPECT_EQ(b.sequence, std::vector<Knock>{tcp(2)});
  EXPECT_TRUE(b.one_time_sequences.empty());
}

// ---- tcpflags ----

TEST(TcpFlags, ListsNegationsAndAccumulation) {
  struct Case {
    std::string lines;
    uint8_t must_set;
    uint8_t must_clear;
  };
  const std::vector<Case> cases = {
      {"tcpflags = syn", tcpflag::syn, 0},
      {"tcpflags = syn,ack", tcpflag::syn | tcpflag::ack, 0},
      {"tcpflags = SYN,!ACK", tcpflag::syn, tcpflag::ack},
      {"tcpflags = fin,syn,rst,psh,ack,urg", 0x3f, 0},
      {"tcpflags = !fin,!syn,!rst,!psh,!ack,!urg", 0, 0x3f},
      {"tcpflags = syn\ntcpflags = ack", tcpflag::syn | tcpflag::ack, 0},  // lines add up
      {"tcpflags = syn\ntcpflags = !syn", 0, tcpflag::syn},  // a later mention replaces
      {"tcpflags = !syn,syn", tcpflag::syn, 0},
      {"tcpflags = syn,!rst\ntcpflags = psh", tcpflag::syn | tcpflag::psh, tcpflag::rst},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.lines);
    const Door d = one_door("sequence = 1\n" + c.lines + "\n");
    EXPECT_EQ(d.tcpflags.must_set, c.must_set);
    EXPECT_EQ(d.tcpflags.must_clear, c.must_clear);
  }
}

TEST(TcpFlags, NoTrimmingLikeKnockdButAPreciseError) {
  EXPECT_EQ(only_error("[d]\nsequence = 1\ntcpflags = syn, ack\n"),
            "t.conf:3: tcpflags: unrecognized flag \" ack\" (no spaces around flags: write e.g. "
            "\"syn,ack\")");
  EXPECT_EQ(only_error("[d]\nsequence = 1\ntcpflags = ece\n"),
            "t.conf:3: tcpflags: unrecognized flag \"ece\" (expected fin, syn, rst, psh, ack or "
            "urg, each optionally with a leading !)");
  EXPECT_EQ(only_error("[d]\nsequence = 1\ntcpflags =\n"),
            "t.conf:3: tcpflags: unrecognized flag \"\" (empty item in the list)");
  // A bad line changes nothing, even its good flags.
  auto r = parse("[d]\nsequence = 1\ntcpflags = syn\ntcpflags = ack,bad\n");
  EXPECT_EQ(r.errors.size(), 1U);
}

TEST(TcpFlags, RendersInKnockdOrder) {
  EXPECT_EQ(tcpflags_str(TcpFlagsTest{}), "");
  EXPECT_EQ(tcpflags_str(TcpFlagsTest{tcpflag::syn, 0}), "syn");
  EXPECT_EQ(tcpflags_str(TcpFlagsTest{tcpflag::ack | tcpflag::syn, tcpflag::fin | tcpflag::urg}),
            "!fin,syn,ack,!urg");
}

// ---- IPv6 command semantics ----

TEST(Commands, EmptySixKeyIsDistinctFromAbsent) {
  Door absent = one_door("sequence = 1\nstart_command = a\nstop_command = b\n");
  EXPECT_FALSE(absent.start_command_6.has_value());  // falls back to start_command
  EXPECT_FALSE(absent.stop_command_6.has_value());
  Door empty = one_door("sequence = 1\nstart_command = a\nstart_command_6 =\nstop_command_6 =  \n");
  ASSERT_TRUE(empty.start_command_6.has_value());  // do nothing for IPv6
  EXPECT_EQ(*empty.start_command_6, "");
  ASSERT_TRUE(empty.stop_command_6.has_value());
  EXPECT_EQ(*empty.stop_command_6, "");
  EXPECT_NE(absent, empty);
}

// ---- knockd's reading rules ----

TEST(Reading, RepeatedKeysLastWins) {
  Door d = one_door(
      "sequence = 1\nsequence = 2,3\nseq_timeout = 4\ntimeout = 5\ncommand = a\n"
      "start_command = b\ncmd_timeout = 1\ncmd_timeout = 2\ntarget = 192.0.2.1\n"
      "target = 192.0.2.2\n");
  EXPECT_EQ(d.sequence, (std::vector<Knock>{tcp(2), tcp(3)}));
  EXPECT_EQ(d.seq_timeout, 5);
  EXPECT_EQ(d.start_command, "b");
  EXPECT_EQ(d.cmd_timeout, 2);
  EXPECT_EQ(d.target, IpAddr::parse("192.0.2.2"));
  auto c = parse_ok("[options]\nInterface = a\nInterface = b\n[d]\nsequence=1\n");
  EXPECT_EQ(c.options.interfaces, std::vector<std::string>{"b"});
}

TEST(Reading, CapitalisedOptionsIsADoorAndDuplicateDoorsAreTwoDoors) {
  auto c = parse_ok("[Options]\nsequence = 1\n[x]\nsequence = 2\n[x]\nsequence = 3\n");
  ASSERT_EQ(c.doors.size(), 3U);
  EXPECT_EQ(c.doors[0].name, "Options");
  EXPECT_EQ(c.doors[1].name, "x");
  EXPECT_EQ(c.doors[2].name, "x");
  EXPECT_EQ(c.doors[2].sequence, std::vector<Knock>{tcp(3)});
  EXPECT_EQ(c.doors[2].line, 5);
}

TEST(Reading, SectionNamesAreNotTrimmed) {
  auto c = parse_ok("  [ options ]  \nsequence = 1\n[a]b]\nsequence = 2\n");
  ASSERT_EQ(c.doors.size(), 2U);
  EXPECT_EQ(c.doors[0].name, " options ");
  EXPECT_EQ(c.doors[1].name, "a]b");
}

TEST(Reading, UseSyslogIsABareFlagInAnySection) {
  EXPECT_TRUE(parse_ok("[options]\nUseSyslog\n[d]\nsequence = 1\n").options.use_syslog);
  EXPECT_TRUE(parse_ok("[d]\nsequence = 1\n  usesyslog  \n").options.use_syslog);
  EXPECT_TRUE(parse_ok("[profile p]\nUSESYSLOG\ndirection = inbound\nexpose = self tcp/1\n")
                  .options.use_syslog);
  const std::string bare_flag =
      "usesyslog: UseSyslog is a bare flag: write \"UseSyslog\" alone, without '='";
  EXPECT_EQ(only_error("[options]\nUseSyslog = yes\n[d]\nsequence=1\n"), "t.conf:2: " + bare_flag);
  EXPECT_EQ(only_error("[options]\nUseSyslog =\n[d]\nsequence=1\n"), "t.conf:2: " + bare_flag);
  EXPECT_EQ(only_error("[d]\nsequence=1\nUseSyslog = 1\n"), "t.conf:3: " + bare_flag);
  EXPECT_EQ(only_error("UseSyslog\n[d]\nsequence=1\n"),
            "t.conf:1: usesyslog: all directives must belong to a section");
}

TEST(Reading, CommentsBlankLinesAndLineEndings) {
  auto c = parse_ok(
      "# comment\n\n   \t\n\t# indented comment\r\n[d]\r\n  sequence = 1,2  \r\n"
      "command = echo #not a comment\n#[e]\n[f]\nsequence = 3");  // no final newline
  ASSERT_EQ(c.doors.size(), 2U);
  EXPECT_EQ(c.doors[0].sequence, (std::vector<Knock>{tcp(1), tcp(2)}));
  EXPECT_EQ(c.doors[0].start_command, "echo #not a comment");  // kept as written
  EXPECT_EQ(c.doors[1].line, 9);
  EXPECT_EQ(only_error("[d]\nsequence = 1\nseq_timeout = 5 # five\n"),
            "t.conf:3: seq_timeout: inline comments are not allowed (a comment is a line "
            "starting with '#')");
  EXPECT_EQ(only_error(std::string("[d]\nsequence = 1\ncommand = a\0b\n", 31)),
            "t.conf:3: line contains a NUL byte");
}

TEST(Reading, CollectsEveryErrorInLineOrder) {
  auto r = parse(
      "[profile p]\ndirection = egress\nallow = tcp/1\ndestination = 10.0.0.0/8\n"
      "[door]\ngrant = p\ngrant = nope\nsequence = 0\nseq_timeout = x\n"
      "[options]\nInterface = \nLanInterface = lan0\n[e]\nsequence=1\ncmd_timeout=-1\n");
  EXPECT_FALSE(r.config);
  EXPECT_EQ(rendered(r.errors),
            (std::vector<std::string>{
                "t.conf:7: grant: no profile named \"nope\" (define it with [profile nope])",
                "t.conf:8: sequence: port 0 is out of range (1-65535)",
                "t.conf:9: seq_timeout: \"x\" is not a non-negative whole number of seconds",
                "t.conf:11: interface: empty item 1 in the list",
                "t.conf:15: cmd_timeout: \"-1\" is not a non-negative whole number of seconds",
            }));
}

TEST(Reading, EmptyKnockSequenceUsesTheHeaderLine) {
  EXPECT_EQ(only_error("\n[options]\n\n[lonely]\nseq_timeout = 5\n"),
            "t.conf:4: sequence: door \"lonely\" has an empty knock sequence");
}

// ---- The example files: every one parses to the documented structure ----

TEST(GoodFiles, DebianDefault) {
  auto c = parse_file_ok(kGood + "debian-default.conf");
  EXPECT_TRUE(c.options.use_syslog);
  ASSERT_EQ(c.doors.size(), 3U);
  EXPECT_EQ(c.doors[0].name, "openSSH");
  EXPECT_EQ(c.doors[0].sequence, (std::vector<Knock>{tcp(7000), tcp(8000), tcp(9000)}));
  EXPECT_EQ(c.doors[0].seq_timeout, 5);
  EXPECT_EQ(c.doors[0].start_command,
            "/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT");
  EXPECT_EQ(c.doors[0].tcpflags, (TcpFlagsTest{tcpflag::syn, 0}));
  EXPECT_EQ(c.doors[1].name, "closeSSH");
  EXPECT_EQ(c.doors[1].sequence, (std::vector<Knock>{tcp(9000), tcp(8000), tcp(7000)}));
  EXPECT_EQ(c.doors[1].start_command,
            "/sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT");
  EXPECT_EQ(c.doors[2].name, "openHTTPS");
  EXPECT_EQ(c.doors[2].sequence,
            (std::vector<Knock>{tcp(12345), tcp(54321), tcp(24680), tcp(13579)}));
  EXPECT_EQ(c.doors[2].start_command,
            "/usr/local/sbin/knock_add -i -c INPUT -p tcp -d 443 -f %IP%");
}

TEST(GoodFiles, KnockdClassicOpenCloseSsh) {
  auto c = parse_file_ok(kGood + "knockd-classic.conf");
  EXPECT_EQ(c.options.log_file, "/var/log/knockd.log");
  EXPECT_FALSE(c.options.use_syslog);
  ASSERT_EQ(c.doors.size(), 2U);
  EXPECT_EQ(c.doors[0].name, "openSSH");
  EXPECT_EQ(c.doors[0].seq_timeout, 10);
  EXPECT_EQ(c.doors[0].tcpflags, (TcpFlagsTest{tcpflag::syn, 0}));
  EXPECT_EQ(c.doors[0].start_command,
            "/usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT");
  EXPECT_EQ(c.doors[1].name, "closeSSH");
  EXPECT_EQ(c.doors[1].sequence, (std::vector<Knock>{tcp(9000), tcp(8000), tcp(7000)}));
  EXPECT_EQ(c.doors[1].start_command,
            "/usr/sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT");
  EXPECT_EQ(c.doors[1].stop_command, "");
}

TEST(GoodFiles, KnockdOpenCloseWithStopCommand) {
  auto c = parse_file_ok(kGood + "knockd-openclose.conf");
  ASSERT_EQ(c.doors.size(), 1U);
  const Door& d = c.doors[0];
  EXPECT_EQ(d.name, "opencloseSSH");
  EXPECT_EQ(d.sequence, (std::vector<Knock>{udp(2222), tcp(3333), udp(4444)}));
  EXPECT_EQ(d.seq_timeout, 15);
  EXPECT_EQ(d.tcpflags, (TcpFlagsTest{tcpflag::syn | tcpflag::ack, 0}));
  EXPECT_EQ(d.start_command,
            "/usr/sbin/iptables -A INPUT -s %IP% -p tcp --syn --dport 22 -j ACCEPT");
  EXPECT_EQ(d.cmd_timeout, 5);
  EXPECT_EQ(d.stop_command,
            "/usr/sbin/iptables -D INPUT -s %IP% -p tcp --syn --dport 22 -j ACCEPT");
}

TEST(GoodFiles, MixedProtocols) {
  auto c = parse_file_ok(kGood + "mixed-proto.conf");
  EXPECT_EQ(c.options.interfaces, std::vector<std::string>{"eth1"});
  ASSERT_EQ(c.doors.size(), 1U);
  EXPECT_EQ(c.doors[0].sequence,
            (std::vector<Knock>{udp(2222), tcp(3333), udp(4444), tcp(5555), tcp(6666)}));
  EXPECT_EQ(c.doors[0].seq_timeout, 20);
  EXPECT_EQ(c.doors[0].start_command, "/usr/local/bin/open %IP%");
}

TEST(GoodFiles, TcpFlags) {
  auto c = parse_file_ok(kGood + "tcpflags.conf");
  ASSERT_EQ(c.doors.size(), 2U);
  EXPECT_EQ(c.doors[0].tcpflags, (TcpFlagsTest{tcpflag::syn | tcpflag::ack, 0}));
  EXPECT_EQ(c.doors[1].tcpflags, (TcpFlagsTest{tcpflag::syn | tcpflag::psh,
                                               tcpflag::ack | tcpflag::fin | tcpflag::urg}));
}

TEST(GoodFiles, KnockdQuirks) {
  auto c = parse_file_ok(kGood + "knockd-quirks.conf");
  EXPECT_TRUE(c.options.use_syslog);
  EXPECT_EQ(c.options.pid_file, "/run/knockd-test.pid");
  EXPECT_EQ(c.options.log_file, "/var/log/knockd.log");
  std::vector<std::string> names;
  for (const auto& d : c.doors) names.push_back(d.name);
  EXPECT_EQ(names, (std::vector<std::string>{"Options", "dup", "dup", "repeat", "ipv6quiet", "ipv6",
                                             "onetime", "backtoseq"}));
  const Door& repeat = c.doors[3];
  EXPECT_EQ(repeat.sequence, (std::vector<Knock>{tcp(30), tcp(40)}));
  EXPECT_EQ(repeat.seq_timeout, 0);
  EXPECT_EQ(repeat.start_command, "logger -t knock opened=%IP%");
  EXPECT_EQ(repeat.cmd_timeout, 60);
  EXPECT_EQ(repeat.target, IpAddr::parse("192.0.2.1"));
  const Door& quiet = c.doors[4];
  EXPECT_EQ(quiet.start_command_6, std::optional<std::string>(""));
  EXPECT_EQ(quiet.stop_command_6, std::optional<std::string>(""));
  const Door& v6 = c.doors[5];
  EXPECT_EQ(v6.sequence, std::vector<Knock>{udp(7001)});
  EXPECT_EQ(v6.start_command_6, std::optional<std::string>("add6 %IP%"));
  EXPECT_FALSE(v6.stop_command_6 == std::nullopt);
  EXPECT_EQ(v6.target, IpAddr::parse("2001:db8::10"));
  EXPECT_EQ(c.doors[6].one_time_sequences, "/etc/knockd/onetime.seq");
  EXPECT_TRUE(c.doors[6].sequence.empty());
  EXPECT_EQ(c.doors[7].sequence, std::vector<Knock>{udp(5001)});
  EXPECT_TRUE(c.doors[7].one_time_sequences.empty());
}

TEST(GoodFiles, Profiles) {
  auto c = parse_file_ok(kGood + "profiles.conf");
  const Options& o = c.options;
  EXPECT_EQ(o.interfaces, (std::vector<std::string>{"wan0", "wan1"}));
  EXPECT_EQ(o.wan_interfaces, o.interfaces);
  EXPECT_EQ(o.lan_interfaces, (std::vector<std::string>{"lan0", "lan1"}));
  EXPECT_EQ(o.management_interfaces, o.lan_interfaces);  // ManagementFrom's default
  EXPECT_EQ(c.mode(), Mode::gateway);
  EXPECT_EQ(o.database, "/srv/knockgate/state.db");
  EXPECT_EQ(o.runtime_dir, "/run/kg");
  EXPECT_EQ(o.max_tracked_sources, 4096U);
  EXPECT_EQ(o.capture_user, "kgcap");
  EXPECT_EQ(o.admin_group, "wheel");

  ASSERT_EQ(c.profiles.size(), 3U);
  const Profile& web = c.profiles[0];
  EXPECT_EQ(web.name, "web");
  EXPECT_EQ(web.direction, Direction::inbound);
  ASSERT_EQ(web.exposures.size(), 3U);
  EXPECT_EQ(web.exposures[0], (Exposure{Proto::tcp, 443, *IpAddr::parse("192.168.50.11"), 443}));
  EXPECT_EQ(web.exposures[1], (Exposure{Proto::tcp, 8443, *IpAddr::parse("192.168.50.11"), 443}));
  EXPECT_EQ(web.exposures[2], (Exposure{Proto::udp, 51820, *IpAddr::parse("fd00::11"), 51820}));
  EXPECT_EQ(web.fwmark, (FwMark{0x1, 0xf}));
  EXPECT_EQ(web.table, 0x1000U);
  ASSERT_EQ(web.routes.size(), 2U);
  EXPECT_EQ(web.routes[0], (Route{*IpPrefix::parse("192.168.50.0/24"), std::nullopt, "lan0"}));
  EXPECT_EQ(web.routes[1],
            (Route{*IpPrefix::parse("fd00::/64"), IpAddr::parse("fd00::1"), "lan1"}));
  EXPECT_EQ(web.lifetime, std::chrono::seconds(90));
  EXPECT_EQ(web.max_lifetime, std::chrono::hours(24));
  EXPECT_EQ(web.revoke, Revoke::all_flows);

  const Profile& backups = c.profiles[1];
  EXPECT_EQ(backups.direction, Direction::egress);
  EXPECT_EQ(backups.allow, (std::vector<AllowRule>{{AllowProto::tcp, {22, 22}},
                                                   {AllowProto::udp, {1000, 2000}},
                                                   {AllowProto::icmp, {0, 0}}}));
  EXPECT_EQ(backups.destinations, (std::vector<IpPrefix>{*IpPrefix::parse("198.51.100.0/24"),
                                                         *IpPrefix::parse("2001:db8:1::/48"),
                                                         *IpPrefix::parse("203.0.113.7")}));
  EXPECT_EQ(backups.sources, (std::vector<IpPrefix>{*IpPrefix::parse("192.168.50.30"),
                                                    *IpPrefix::parse("192.168.50.32/31")}));
  ASSERT_EQ(backups.routes.size(), 2U);
  EXPECT_EQ(backups.routes[0],
            (Route{*IpPrefix::parse("0.0.0.0/0"), IpAddr::parse("192.168.70.2"), "wan1"}));
  EXPECT_EQ(backups.routes[1], (Route{*IpPrefix::parse("::/0"), IpAddr::parse("2001:db8::1"), ""}));
  EXPECT_EQ(backups.lifetime, std::chrono::minutes(15));
  EXPECT_EQ(backups.max_lifetime, std::chrono::hours(2));
  EXPECT_EQ(backups.revoke, Revoke::new_flows);

  const Profile& noroute = c.profiles[2];
  EXPECT_FALSE(noroute.fwmark);
  EXPECT_FALSE(noroute.table);

  ASSERT_EQ(c.doors.size(), 2U);
  EXPECT_EQ(c.doors[0].grant, "web");
  EXPECT_TRUE(c.doors[0].tolerate_duplicates);
  EXPECT_EQ(c.doors[0].tcpflags, (TcpFlagsTest{tcpflag::syn, tcpflag::ack}));
  EXPECT_EQ(c.doors[1].grant, "backups");
  EXPECT_FALSE(c.doors[1].tolerate_duplicates);
}

TEST(GoodFiles, ShippedDefaultConfig) {
  auto c = parse_file_ok(KG_SOURCE_DIR "/etc/knockgate.conf");
  EXPECT_EQ(c.options.interfaces, std::vector<std::string>{"kg-wan"});
  EXPECT_EQ(c.options.wan_interfaces, std::vector<std::string>{"kg-wan"});
  EXPECT_EQ(c.options.lan_interfaces, std::vector<std::string>{"kg-lan"});
  const Profile* ssh = c.find_profile("ssh-only");
  ASSERT_NE(ssh, nullptr);
  EXPECT_EQ(ssh->direction, Direction::inbound);
  EXPECT_EQ(ssh->exposures,
            (std::vector<Exposure>{{Proto::tcp, 22, *IpAddr::parse("192.168.50.10"), 22}}));
  EXPECT_EQ(ssh->table, 100U);
  const Profile* syslog = c.find_profile("syslog-only");
  ASSERT_NE(syslog, nullptr);
  EXPECT_EQ(syslog->direction, Direction::egress);
  EXPECT_EQ(syslog->sources, std::vector<IpPrefix>{*IpPrefix::parse("192.168.50.20")});
  EXPECT_EQ(syslog->destinations, std::vector<IpPrefix>{*IpPrefix::parse("192.168.60.5")});
  EXPECT_EQ(syslog->allow,
            (std::vector<AllowRule>{{AllowProto::udp, {514, 514}}, {AllowProto::tcp, {514, 514}}}));
  EXPECT_EQ(syslog->table, 120U);
  ASSERT_EQ(syslog->routes.size(), 1U);
  EXPECT_EQ(format_route(syslog->routes[0]), "default via 192.168.70.2");
  ASSERT_TRUE(ssh->fwmark && syslog->fwmark);
  EXPECT_FALSE(ssh->fwmark->can_match_same_packet_as(*syslog->fwmark));
  ASSERT_GE(c.doors.size(), 2U);
  EXPECT_EQ(c.doors[0].name, "openSSH");
  EXPECT_EQ(c.doors[0].sequence, (std::vector<Knock>{tcp(7000), tcp(8000), tcp(9000)}));
  EXPECT_EQ(c.doors[0].tcpflags, (TcpFlagsTest{tcpflag::syn, 0}));
  EXPECT_EQ(c.doors[0].grant, "ssh-only");
  EXPECT_EQ(c.doors[1].grant, "syslog-only");
}

// ---- Bad files: each carries the exact errors it must produce as `# expect:` lines ----

std::vector<std::string> expectations_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  const std::string marker = "# expect: ";
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(marker, 0) == 0) out.push_back(path + ":" + line.substr(marker.size()));
  }
  return out;
}

TEST(BadFiles, EachGivesExactlyTheExpectedErrors) {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(kBad)) files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  EXPECT_GE(files.size(), 30U);
  for (const auto& path : files) {
    SCOPED_TRACE(path);
    const auto expected = expectations_of(path);
    ASSERT_FALSE(expected.empty()) << "no # expect: lines";
    auto r = parse_file(path);
    EXPECT_FALSE(r.config.has_value());
    EXPECT_EQ(rendered(r.errors), expected);
  }
}

// ---- Cross-profile validation ----

TEST(Profiles, MarksThatCanMatchTheSamePacketConflict) {
  const std::string a =
      "[profile a]\ndirection = inbound\nexpose = self tcp/22\n"
      "fwmark = 0x10000000/0xf0000000\ntable = 100\n";
  // Disjoint masks always overlap in the packets they match (each ignores the other's bits).
  EXPECT_EQ(only_error(a + "[profile b]\ndirection = inbound\nexpose = self tcp/23\n"
                           "fwmark = 0x1/0xff\ntable = 101\n"),
            "t.conf:9: fwmark: mark 0x1/0xff can match the same packets as mark "
            "0x10000000/0xf0000000 of profile \"a\" at line 1");
  // Same mask, other value: fine.
  parse_ok(a +
           "[profile b]\ndirection = inbound\nexpose = self tcp/23\n"
           "fwmark = 0x20000000/0xf0000000\ntable = 101\n");
  FwMark m1{0x10000000, 0xff000000};
  FwMark m2{0x10000000, 0xf0000000};
  FwMark m3{0x20000000, 0xf0000000};
  EXPECT_TRUE(m1.can_match_same_packet_as(m2));
  EXPECT_FALSE(m1.can_match_same_packet_as(m3));
  EXPECT_TRUE(m3.can_match_same_packet_as(m3));
}

// ---- Value parsers ----

TEST(Values, FwMark) {
  EXPECT_EQ(*parse_fwmark("0x10000000/0xff000000"), (FwMark{0x10000000, 0xff000000}));
  EXPECT_EQ(*parse_fwmark("268435456/4278190080"), (FwMark{0x10000000, 0xff000000}));
  EXPECT_EQ(*parse_fwmark("0X4/0XC"), (FwMark{4, 12}));
  EXPECT_EQ(*parse_fwmark("0xc0000000/0xc0000000"), (FwMark{0xc0000000, 0xc0000000}));
  for (const char* bad : {"", "0x", "0x100000000/0xff000000", "4294967296", "1/", "/1", "1/2/3",
                          "-1", "0x10000000", "0x100/0x100", "0x10000/0x10000", "5/4"}) {
    EXPECT_FALSE(parse_fwmark(bad).ok()) << bad;
  }
  EXPECT_EQ(parse_fwmark("0x100/0xf00").error().message,
            "mask 0xf00 overlaps bits other software owns: 0x3f00 (OpenWrt mwan3); give a mask "
            "that leaves them out, e.g. 0x10000000/0xff000000");
  EXPECT_EQ(format_fwmark(FwMark{0x10000000, 0xff000000}), "0x10000000/0xff000000");
}

TEST(Values, Table) {
  EXPECT_EQ(*parse_table("1"), 1U);
  EXPECT_EQ(*parse_table("252"), 252U);
  EXPECT_EQ(*parse_table("256"), 256U);
  EXPECT_EQ(*parse_table("0xfffffffe"), 0xfffffffeU);
  EXPECT_EQ(*parse_table("4294967294"), 0xfffffffeU);
  for (const char* bad :
       {"0", "253", "254", "255", "0xffffffff", "4294967295", "main", "-1", "1.5", ""}) {
    EXPECT_FALSE(parse_table(bad).ok()) << bad;
  }
}

TEST(Values, Durations) {
  const std::vector<std::pair<std::string, long>> good = {
      {"90", 90}, {"90s", 90}, {"15m", 900}, {"2h", 7200}, {"1d", 86400}, {"365d", 31536000}};
  for (const auto& [text, secs] : good) {
    auto d = parse_duration(text);
    ASSERT_TRUE(d.ok()) << text;
    EXPECT_EQ(d->count(), secs) << text;
  }
  for (const char* bad :
       {"", "0", "0s", "1w", "h", "1.5h", "-1", "366d", "1 h", "99999999999999h"}) {
    EXPECT_FALSE(parse_duration(bad).ok()) << bad;
  }
  EXPECT_EQ(format_duration(std::chrono::seconds(90)), "90s");
  EXPECT_EQ(format_duration(std::chrono::seconds(5400)), "90m");
  EXPECT_EQ(format_duration(std::chrono::seconds(7200)), "2h");
  EXPECT_EQ(format_duration(std::chrono::seconds(172800)), "2d");
}

TEST(Values, Routes) {
  const std::vector<std::pair<std::string, std::string>> good = {
      {"default via 192.168.70.2", "default via 192.168.70.2"},
      {"DEFAULT   via  192.168.70.2   dev eth1", "default via 192.168.70.2 dev eth1"},
      {"default dev wg0", "default dev wg0"},
      {"dev wg0", ""},
      {"10.0.0.0/8 via 192.168.70.2", "10.0.0.0/8 via 192.168.70.2"},
      {"10.0.0.0/8 dev eth2 via 192.168.70.2", "10.0.0.0/8 via 192.168.70.2 dev eth2"},
      {"192.0.2.1 dev eth2", "192.0.2.1/32 dev eth2"},
      {"2001:db8::/32 via fe80::1 dev eth1", "2001:db8::/32 via fe80::1 dev eth1"},
      {"default via 2001:db8::1", "default via 2001:db8::1"},
      {"::/0 dev eth1", "::/0 dev eth1"},
  };
  for (const auto& [text, formatted] : good) {
    auto r = parse_route(text);
    if (formatted.empty()) {
      EXPECT_FALSE(r.ok()) << text;
      continue;
    }
    ASSERT_TRUE(r.ok()) << text << ": " << r.error().message;
    EXPECT_EQ(format_route(*r), formatted);
    auto again = parse_route(formatted);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *r);
  }
  auto def = parse_route("default via 192.168.70.2");
  ASSERT_TRUE(def.ok());
  EXPECT_EQ(def->prefix, *IpPrefix::parse("0.0.0.0/0"));
  EXPECT_EQ(def->gateway, IpAddr::parse("192.168.70.2"));
  EXPECT_EQ(def->device, "");
  for (const char* bad :
       {"", "default", "default via", "default via 1.2.3.4 via 1.2.3.5", "default dev a dev b",
        "10.0.0.0/8", "10.0.0.1/8 dev x", "10.0.0.0/8 gw 1.2.3.4", "default dev a/b"}) {
    EXPECT_FALSE(parse_route(bad).ok()) << bad;
  }
}

TEST(Values, Exposures) {
  const std::vector<std::pair<std::string, std::string>> good = {
      {"tcp/22 -> 192.168.50.10", "tcp/22 -> 192.168.50.10:22"},
      {"TCP/2222->192.168.50.10:22", "tcp/2222 -> 192.168.50.10:22"},
      {"udp/53 -> 2001:db8::53", "udp/53 -> [2001:db8::53]:53"},
      {"udp/53 -> [2001:db8::53]:5353", "udp/53 -> [2001:db8::53]:5353"},
      {"udp/53 -> [2001:db8::53]", "udp/53 -> [2001:db8::53]:53"},
  };
  for (const auto& [text, formatted] : good) {
    auto e = parse_exposure(text);
    ASSERT_TRUE(e.ok()) << text << ": " << e.error().message;
    EXPECT_EQ(format_exposure(*e), formatted);
  }
  auto own = parse_exposure("self tcp/22");
  ASSERT_TRUE(own.ok()) << own.error().message;
  EXPECT_TRUE(own->self);
  EXPECT_EQ(own->public_port, 22);
  EXPECT_EQ(own->host_port, 22);
  EXPECT_TRUE(own->host.empty());
  EXPECT_EQ(format_exposure(*own), "self tcp/22");
  EXPECT_EQ(format_exposure(*parse_exposure("SELF\tUDP/1194")), "self udp/1194");
  for (const char* bad :
       {"self", "self tcp", "self tcp/22 -> 1.2.3.4", "selftcp/22", "self icmp/1", "self tcp/0"}) {
    EXPECT_FALSE(parse_exposure(bad).ok()) << bad;
  }
  for (const char* bad :
       {"", "tcp/22", "tcp/22 > 1.2.3.4", "tcp -> 1.2.3.4", "icmp/1 -> 1.2.3.4", "tcp/0 -> 1.2.3.4",
        "tcp/22 -> 1.2.3.4:", "tcp/22 -> 1.2.3.4:99999", "tcp/22 -> host", "tcp/22 -> [1.2.3.4]:22",
        "tcp/22 -> [::1", "tcp/22 -> [::1]x", "tcp/22-23 -> 1.2.3.4"}) {
    EXPECT_FALSE(parse_exposure(bad).ok()) << bad;
  }
}

TEST(Values, AllowAndPrefixLists) {
  auto a = parse_allow("tcp/1-65535, UDP/53 ,icmp");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(format_allow(*a), "tcp/1-65535,udp/53,icmp");
  for (const char* bad : {"", "tcp", "tcp/", "tcp/0", "udp/5-", "udp/-5", "icmp/0", "esp", ","}) {
    EXPECT_FALSE(parse_allow(bad).ok()) << bad;
  }
  auto p = parse_prefix_list("10.0.0.0/8, 192.0.2.1 ,2001:db8::/32,::1");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(format_prefix_list(*p), "10.0.0.0/8,192.0.2.1,2001:db8::/32,::1");
  for (const char* bad :
       {"", "10.0.0.0/8,", "10.0.0.1/8", "host", "10.0.0.0/33", "2001:db8::1/32"}) {
    EXPECT_FALSE(parse_prefix_list(bad).ok()) << bad;
  }
}

TEST(Values, Names) {
  for (const char* good :
       {"eth0", "kg-wan", "a", "wlp0s20f3", "enp0s31f6.100", "veth1234567890a"}) {
    EXPECT_TRUE(valid_interface_name(good)) << good;
  }
  for (const char* bad : {"", ".", "..", "a/b", "a:b", "a b", "veth1234567890ab"}) {
    EXPECT_FALSE(valid_interface_name(bad)) << bad;
  }
  for (const char* good : {"ssh-only", "a", "9", "web.v2", "x_y"}) {
    EXPECT_TRUE(valid_profile_name(good)) << good;
  }
  for (const std::string& bad :
       std::vector<std::string>{"", "-x", ".x", "a b", "a/b", "a]", std::string(65, 'a')}) {
    EXPECT_FALSE(valid_profile_name(bad)) << bad;
  }
  for (const char* good : {"knockgate", "_kg", "kg-admin", "machine$", "Ab.c"}) {
    EXPECT_TRUE(valid_account_name(good)) << good;
  }
  for (const char* bad : {"", "9x", "-x", "a b", "a$b", "a:b"}) {
    EXPECT_FALSE(valid_account_name(bad)) << bad;
  }
}

// ---- dump: normalised and re-parseable ----

// ---- Modes: what the config asks of the kernel ----

TEST(Modes, FollowTheRolesAndProfiles) {
  EXPECT_EQ(parse_ok("[options]\nInterface = eth0\n[d]\nsequence = 1,2\n").mode(), Mode::host);
  EXPECT_EQ(parse_ok("[profile p]\ndirection = inbound\nexpose = self tcp/22\n").mode(),
            Mode::self);
  EXPECT_EQ(parse_ok("[options]\nLanInterface = lan0\n").mode(), Mode::gateway);
  EXPECT_EQ(parse_ok("[options]\nWanInterface = wan0\n").mode(), Mode::gateway);
}

TEST(Modes, ForwardingNeedsRoles) {
  auto r = parse_text(
      "[options]\nInterface = eth0\n"
      "[profile fwd]\ndirection = inbound\nexpose = tcp/22 -> 192.168.1.10\n"
      "[profile out]\ndirection = egress\nallow = tcp/22\ndestination = 0.0.0.0/0\n",
      "m.conf");
  ASSERT_FALSE(r.config.has_value());
  ASSERT_EQ(r.errors.size(), 1U);
  EXPECT_EQ(r.errors[0].str(),
            "m.conf:3: section: profiles \"fwd\", \"out\" pass traffic through the gateway: "
            "declare the interface roles (WanInterface, LanInterface) for gateway mode; without "
            "them only `expose = self PROTO/PORT` profiles are possible");
}

TEST(Modes, APortIsEitherTheGatewaysOrForwarded) {
  auto r = parse_text(
      "[options]\nWanInterface = wan0\n"
      "[profile fwd]\ndirection = inbound\nexpose = tcp/22 -> 192.168.1.10\n"
      "[profile own]\ndirection = inbound\nexpose = self udp/22\nexpose = self tcp/22\n",
      "m.conf");
  ASSERT_FALSE(r.config.has_value());
  ASSERT_EQ(r.errors.size(), 1U);
  EXPECT_EQ(r.errors[0].str(),
            "m.conf:9: expose: tcp/22 is forwarded to 192.168.1.10 by profile \"fwd\" at line 3: a "
            "port is either the gateway's own or forwarded");
}

TEST(OptionsKeys, ManagementFromAndPorts) {
  auto c = parse_ok(
      "[options]\nWanInterface = wan0\nLanInterface = lan0\n"
      "ManagementFrom = 198.51.100.0/24, vpn0, 2001:db8::7\nManagementPorts = tcp/22,udp/161\n");
  EXPECT_EQ(c.options.management_interfaces, std::vector<std::string>{"vpn0"});
  EXPECT_EQ(c.options.management_prefixes,
            (std::vector<IpPrefix>{*IpPrefix::parse("198.51.100.0/24"),
                                   *IpPrefix::parse("2001:db8::7/128")}));
  EXPECT_EQ(c.options.management_ports,
            (std::vector<AllowRule>{{AllowProto::tcp, {22, 22}}, {AllowProto::udp, {161, 161}}}));
  auto again = parse_text(dump(c), "dump");
  ASSERT_TRUE(again.config.has_value());
  EXPECT_EQ(*again.config, c);

  auto r = parse_text(
      "[options]\nManagementFrom = 10.0.0.1/8\nManagementFrom = lan0,,x\n"
      "ManagementPorts = icmp\nManagementFrom = bad/name\n",
      "o.conf");
  ASSERT_EQ(r.errors.size(), 4U);
  EXPECT_EQ(
      r.errors[0].str(),
      "o.conf:2: managementfrom: \"10.0.0.1/8\" has host bits set (did you mean 10.0.0.0/8?)");
  EXPECT_EQ(r.errors[1].str(), "o.conf:3: managementfrom: empty item 2 in the list");
  EXPECT_EQ(r.errors[2].str(),
            "o.conf:4: managementports: icmp is not a port: list tcp/PORT or udp/PORT");
  EXPECT_EQ(r.errors[3].str(),
            "o.conf:5: managementfrom: \"bad/name\" is neither an address, a prefix nor an "
            "interface name");
}

TEST(Dump, RoundTripsEveryGoodFile) {
  std::vector<std::string> files = {KG_SOURCE_DIR "/etc/knockgate.conf"};
  for (const auto& entry : fs::directory_iterator(kGood)) files.push_back(entry.path().string());
  EXPECT_GE(files.size(), 8U);
  for (const auto& path : files) {
    SCOPED_TRACE(path);
    auto first = parse_file(path);
    ASSERT_TRUE(first.config) << joined(first.errors);
    const std::string text = dump(*first.config);
    auto second = parse_text(text, "dumped");
    ASSERT_TRUE(second.config) << joined(second.errors) << text;
    EXPECT_EQ(*second.config, *first.config) << text;
    EXPECT_EQ(dump(*second.config), text);  // normal form is a fixed point
  }
}

TEST(Dump, CanonicalForm) {
  auto c = parse_ok(
      "[options]\nusesyslog\n[ d ]\nTimeout = 7\nSequence = 1:UDP, 2\nCommand = a\n"
      "Command_6 =\ntcpflags = ACK\ntcpflags = !syn\n");
  EXPECT_EQ(dump(c),
            "[options]\nUseSyslog\nPidFile = /var/run/knockd.pid\nInterface = eth0\n"
            "ManagementPorts = tcp/22\n"
            "Database = /var/lib/knockgate/knockgate.db\n"
            "RuntimeDir = /run/knockgate\nMaxTrackedSources = 65536\nCaptureUser = knockgate\n"
            "PolicyUser = knockgate-policy\n"
            "AdminGroup = knockgate-admin\nVerdictQueue = 0\nVerdictFailOpen = no\n"
            "VerdictHoldMs = 25\nVerdictUser = knockgate-verdict\n"
            "WebUser = knockgate-web\nWebPasswordFile = /etc/knockgate/web.passwd\n"
            "WebTokenFile = /etc/knockgate/web.tokens\nWebRoot = /usr/share/knockgate/web\n"
            "\n[ d ]\nsequence = 1:udp,2:tcp\nseq_timeout = 7\ntcpflags = !syn,ack\n"
            "start_command = a\nstart_command_6 =\ncmd_timeout = 10\n");
}

TEST(Equality, IgnoresWhereThingsWereWritten) {
  auto a = parse_ok("[d]\nsequence = 1\n");
  auto b = parse_ok("\n\n# moved\n[d]\nsequence = 1:tcp\n");
  EXPECT_EQ(a, b);
  auto c = parse_ok("[d]\nsequence = 1:udp\n");
  EXPECT_NE(a, c);
}

// ---- check_external_files ----

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "kg-config-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& content) {
    const auto path = (fs::path(dir_) / name).string();
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }
  static std::string read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string dir_;
};

using ExternalFiles = TempDir;

TEST_F(ExternalFiles, OneTimeSequenceFilesMustExistAndHoldASequence) {
  const auto good = write("good.seq", " 1,2,3\n");
  const auto used = write("used.seq", "#1,2,3\n\njunk\n");
  auto c = parse_ok("[a]\none_time_sequences = " + good + "\n[b]\none_time_sequences = " + used +
                    "\n[c]\none_time_sequences = " + dir_ + "/missing.seq\n[d]\nsequence = 1\n");
  EXPECT_EQ(rendered(check_external_files(c)),
            (std::vector<std::string>{
                "t.conf:3: one_time_sequences: " + used + ": no usable sequence left",
                "t.conf:5: one_time_sequences: " + dir_ +
                    "/missing.seq: cannot open: No such file or directory"}));
}

// ---- One-time sequences ----

using OneTime = TempDir;

TEST_F(OneTime, ActiveIsTheFirstLineThatParses) {
  const auto path =
      write("ots", "# used ones are commented\n\n  \n 70000,1\n junk\n 7000,8000:udp\n 9\n");
  auto ots = OneTimeSequences::open(path);
  ASSERT_TRUE(ots.ok()) << ots.error().message;
  EXPECT_FALSE(ots->exhausted());
  EXPECT_EQ(ots->active(), (std::vector<Knock>{tcp(7000), udp(8000)}));
  EXPECT_EQ(ots->active_line(), 6);
  EXPECT_EQ(rendered(ots->skipped()),
            (std::vector<std::string>{
                path + ":4: one_time_sequences: port 70000 is out of range (1-65535)",
                path + ":5: one_time_sequences: port \"junk\" is not a number"}));
}

TEST_F(OneTime, ConsumeMarksTheUsedLineNotAnEarlierBadOne) {
  const std::string before = "# header\n junk\n 7000,8000\n 1,2,3\n";
  const auto path = write("ots", before);
  auto ots = OneTimeSequences::open(path);
  ASSERT_TRUE(ots.ok());
  auto next = ots->consume();
  ASSERT_TRUE(next.ok()) << next.error().message;
  ASSERT_TRUE(next->has_value());
  EXPECT_EQ(**next, (std::vector<Knock>{tcp(1), tcp(2), tcp(3)}));
  // Only the first byte of the used line changed; the junk line is untouched.
  EXPECT_EQ(read(path), "# header\n junk\n#7000,8000\n 1,2,3\n");
  EXPECT_EQ(ots->active_line(), 4);

  auto last = ots->consume();
  ASSERT_TRUE(last.ok());
  EXPECT_FALSE(last->has_value());
  EXPECT_TRUE(ots->exhausted());
  EXPECT_EQ(read(path), "# header\n junk\n#7000,8000\n#1,2,3\n");
  EXPECT_FALSE(ots->consume().ok());  // nothing left to use

  // A fresh reader agrees: nothing usable remains.
  auto again = OneTimeSequences::open(path);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->exhausted());
}

TEST_F(OneTime, LineWithoutLeadingSpaceIsStillMarkedAndDoesNotComeBack) {
  const auto path = write("ots", "7000\n8000");  // no final newline
  auto ots = OneTimeSequences::open(path);
  ASSERT_TRUE(ots.ok());
  auto next = ots->consume();
  ASSERT_TRUE(next.ok());
  ASSERT_TRUE(next->has_value());
  EXPECT_EQ(**next, std::vector<Knock>{tcp(8000)});
  EXPECT_EQ(read(path), "#000\n8000");
}

TEST_F(OneTime, FileEditedUnderneath) {
  const auto path = write("ots", " 1\n 2\n");
  auto ots = OneTimeSequences::open(path);
  ASSERT_TRUE(ots.ok());
  // An admin prepends sequences: the used one is found where it moved to.
  write("ots", " 5\n 6\n 1\n 2\n");
  auto next = ots->consume();
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(read(path), " 5\n 6\n#1\n 2\n");
  ASSERT_TRUE(next->has_value());
  EXPECT_EQ(**next, std::vector<Knock>{tcp(5)});
  // The used sequence vanished entirely: an error, and the file is left alone.
  write("ots", " 7\n");
  auto gone = ots->consume();
  EXPECT_FALSE(gone.ok());
  EXPECT_EQ(read(path), " 7\n");
}

TEST_F(OneTime, OpenErrorsAndReadOnly) {
  auto missing = OneTimeSequences::open(dir_ + "/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message, dir_ + "/nope: cannot open: No such file or directory");
  const auto path = write("ots", " 1\n");
  auto ro = OneTimeSequences::open(path, /*writable=*/false);
  ASSERT_TRUE(ro.ok());
  EXPECT_FALSE(ro->consume().ok());
  EXPECT_EQ(read(path), " 1\n");
  auto empty = OneTimeSequences::open(write("empty", ""));
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->exhausted());
  EXPECT_EQ(empty->active_line(), 0);
}

}  // namespace
}  // namespace kg::config
