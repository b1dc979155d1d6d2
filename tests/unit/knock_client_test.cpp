// knockgate-knock's parsing: hits, the command line, client files, one-time sequences,
// and what a hit puts on the wire (loopback sockets, no namespaces needed).
#include "knock/knock_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "knock/spa_client.h"

using namespace kg::knockclient;
using kg::Knock;
using kg::Proto;

namespace {

Options parse_ok(std::vector<std::string> args) {
  auto r = parse_command_line(args);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : Options{};
}

std::string parse_err(std::vector<std::string> args) {
  auto r = parse_command_line(args);
  EXPECT_FALSE(r.ok());
  return r.ok() ? "" : r.error().message;
}

std::string config_err(const std::string& text) {
  auto r = parse_client_config(text, "f.conf");
  EXPECT_FALSE(r.ok());
  return r.ok() ? "" : r.error().message;
}

class TempFile {
 public:
  explicit TempFile(const std::string& content) {
    char name[] = "/tmp/kg-knock-test-XXXXXX";
    const int fd = ::mkstemp(name);
    EXPECT_GE(fd, 0);
    ::close(fd);
    path_ = name;
    std::ofstream(path_, std::ios::binary) << content;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }
  std::string read() const {
    std::ifstream in(path_, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  std::string path_;
};

}  // namespace

TEST(ParseHit, PortsAndProtocols) {
  auto a = parse_hit("7000", Proto::tcp);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, (Knock{Proto::tcp, 7000}));
  auto b = parse_hit("8000:udp", Proto::tcp);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, (Knock{Proto::udp, 8000}));
  auto c = parse_hit("9000:TCP", Proto::udp);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, (Knock{Proto::tcp, 9000}));
  auto d = parse_hit("9000", Proto::udp);  // -u makes the default udp
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->proto, Proto::udp);
  auto e = parse_hit("65535:UDP", Proto::tcp);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e, (Knock{Proto::udp, 65535}));
}

TEST(ParseHit, RejectsWhatKnockSilentlyMangles) {
  EXPECT_FALSE(parse_hit("70000", Proto::tcp).ok());
  EXPECT_FALSE(parse_hit("0", Proto::tcp).ok());
  EXPECT_FALSE(parse_hit("-1", Proto::tcp).ok());
  EXPECT_FALSE(parse_hit("7000:", Proto::tcp).ok());
  EXPECT_FALSE(parse_hit("7000:icmp", Proto::tcp).ok());
  EXPECT_FALSE(parse_hit(":udp", Proto::tcp).ok());
  EXPECT_FALSE(parse_hit("12a", Proto::tcp).ok());
  EXPECT_FALSE(parse_hit("99999999999999", Proto::tcp).ok());
  EXPECT_FALSE(parse_hit("no-such-service-kg", Proto::tcp).ok());
}

TEST(ParseSequence, KnockdFormat) {
  auto s = parse_sequence("7000, 8000:udp ,9000:tcp");
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(s->size(), 3u);
  EXPECT_EQ((*s)[1], (Knock{Proto::udp, 8000}));
  EXPECT_FALSE(parse_sequence("").ok());
  EXPECT_FALSE(parse_sequence("7000,,8000").ok());
  EXPECT_FALSE(parse_sequence("ssh").ok());  // no service names in config files
  std::string many;
  for (int i = 1; i <= 33; ++i) many += (i > 1 ? "," : "") + std::to_string(1000 + i);
  EXPECT_FALSE(parse_sequence(many).ok());
  many = many.substr(0, many.rfind(','));
  EXPECT_TRUE(parse_sequence(many).ok());
}

TEST(CommandLine, KnockCompatible) {
  Options o = parse_ok({"-v", "-d", "250", "gw.example", "7000", "8000:udp", "9000"});
  EXPECT_TRUE(o.verbose);
  EXPECT_EQ(o.delay_ms, 250);
  EXPECT_EQ(o.host, "gw.example");
  ASSERT_EQ(o.hits.size(), 3u);
  EXPECT_EQ(o.hits[1], (Knock{Proto::udp, 8000}));

  o = parse_ok({"gw", "1", "-u", "2:tcp"});  // options after operands, like getopt
  EXPECT_TRUE(o.all_udp);
  EXPECT_EQ(o.hits[0].proto, Proto::udp);
  EXPECT_EQ(o.hits[1].proto, Proto::udp);  // knock's -u overrides ":tcp" too

  o = parse_ok({"-uv6d10", "::1", "5"});
  EXPECT_TRUE(o.all_udp);
  EXPECT_TRUE(o.verbose);
  EXPECT_EQ(o.family, FamilyWanted::v6);
  EXPECT_EQ(o.delay_ms, 10);

  o = parse_ok({"--delay=7", "--wait", "500", "--ipv4", "h", "1"});
  EXPECT_EQ(o.delay_ms, 7);
  EXPECT_EQ(o.wait_ms, 500);
  EXPECT_EQ(o.family, FamilyWanted::v4);

  o = parse_ok({"--", "-host-", "1"});
  EXPECT_EQ(o.host, "-host-");

  EXPECT_TRUE(parse_ok({"-h"}).help);
  EXPECT_TRUE(parse_ok({"--version"}).version);
}

TEST(CommandLine, Errors) {
  EXPECT_EQ(parse_err({}), "need a host and at least one port");
  EXPECT_EQ(parse_err({"host"}), "need a host and at least one port");
  EXPECT_EQ(parse_err({"-x", "h", "1"}), "unknown option '-x'");
  EXPECT_EQ(parse_err({"--bogus", "h", "1"}), "unknown option '--bogus'");
  EXPECT_EQ(parse_err({"h", "1", "-d"}), "option '-d' needs a value");
  EXPECT_NE(parse_err({"-d", "-5", "h", "1"}).find("delay must be"), std::string::npos);
  EXPECT_NE(parse_err({"-d", "abc", "h", "1"}).find("delay must be"), std::string::npos);
  EXPECT_EQ(parse_err({"-4", "-6", "h", "1"}), "-4 and -6 exclude each other");
  EXPECT_EQ(parse_err({"--verbose=1", "h", "1"}), "option '--verbose' takes no value");
  EXPECT_NE(parse_err({"h", "70000"}).find("1-65535"), std::string::npos);
}

// fwknop's client options through getopt_long: clusters, attached values, --name=value,
// operands anywhere, and the parser's own messages for what getopt refuses.
TEST(SpaCommandLine, FwknopOptionsAndErrors) {
  const std::vector<std::string> base = {"--spa",          "-A",    "tcp/22", "-a", "198.51.100.7",
                                         "--key-rijndael", "secret"};
  auto with = [&base](std::vector<std::string> more) {
    std::vector<std::string> args = base;
    args.insert(args.end(), more.begin(), more.end());
    return parse_spa_command_line(args);
  };
  auto o = with({"-vT", "-p8443", "--server-proto=tcp", "gw.example"});
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_TRUE(o->verbose);
  EXPECT_TRUE(o->test);
  EXPECT_EQ(o->port, 8443);
  EXPECT_EQ(o->host, "gw.example");
  EXPECT_EQ(o->access, (std::vector<std::string>{"tcp/22"}));
  o = with({"-D", "gw.example", "--fw-timeout", "30", "--use-hmac", "--key-hmac", "other"});
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->client_timeout, 30u);
  EXPECT_TRUE(o->use_hmac);

  EXPECT_EQ(with({"gw", "-D"}).error().message, "option -D needs a value");
  EXPECT_EQ(with({"gw", "--server-port"}).error().message, "option --server-port needs a value");
  EXPECT_EQ(with({"gw", "--bogus"}).error().message, "unknown SPA option --bogus");
  EXPECT_EQ(with({"gw", "-x"}).error().message, "unknown SPA option -x");
  EXPECT_EQ(with({"gw", "--verbose=1"}).error().message, "option --verbose takes no value");
  EXPECT_EQ(with({"gw", "-p", "0"}).error().message, "bad port '0'");
  EXPECT_NE(with({"gw", "-R"}).error().message.find("-R"), std::string::npos);
  EXPECT_EQ(with({"gw", "other"}).error().message, "one destination only");
}

TEST(CommandLine, ConfigMode) {
  Options o = parse_ok({"-c", "k.conf", "-p", "ssh"});
  EXPECT_EQ(o.config_file, "k.conf");
  EXPECT_EQ(o.door_name, "ssh");
  EXPECT_TRUE(o.host.empty());
  o = parse_ok({"--profile=ssh", "gw.example"});
  EXPECT_EQ(o.door_name, "ssh");
  EXPECT_EQ(o.host, "gw.example");
  EXPECT_NE(parse_err({"-p", "ssh", "gw", "7000"}).find("only a host"), std::string::npos);
  EXPECT_NE(parse_err({"-u", "-c", "f"}).find("-u cannot"), std::string::npos);
}

TEST(ClientConfig, ClientFileAndKnockdConfig) {
  const std::string text =
      "# client file\n"
      "[options]\n"
      "  UseSyslog\n"
      "  logfile = /x\n"
      "[door ssh]\n"
      "  host = gw.example.net\n"
      "  sequence = 7000,8000:udp,9000\n"
      "  delay = 100\n"
      "  wait = 500\n"
      "  family = 6\n"
      "[profile ssh-only]\n"
      "  anything = goes here\n"
      "[openHTTPS]\n"
      "  sequence = 12345,54321\n"
      "  seq_timeout = 5\n"
      "  tcpflags = syn\n"
      "  tcpflags = !ack\n"
      "  command = /sbin/iptables -A INPUT -s %IP% -j ACCEPT\n"
      "  future_knockgate_key = 1\n"
      "[toLan]\n"
      "  sequence = 1\n"
      "  target = 192.168.50.1\n";
  auto c = parse_client_config(text, "/etc/k/k.conf");
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_EQ(c->doors.size(), 3u);
  const ClientDoor& ssh = c->doors[0];
  EXPECT_EQ(ssh.name, "ssh");
  EXPECT_EQ(ssh.host, "gw.example.net");
  EXPECT_EQ(ssh.line, 5);
  ASSERT_EQ(ssh.sequence.size(), 3u);
  EXPECT_EQ(ssh.sequence[1], (Knock{Proto::udp, 8000}));
  EXPECT_EQ(ssh.delay_ms, 100);
  EXPECT_EQ(ssh.wait_ms, 500);
  EXPECT_EQ(ssh.family, FamilyWanted::v6);
  const ClientDoor& https = c->doors[1];
  EXPECT_EQ(https.name, "openHTTPS");
  EXPECT_TRUE(https.host.empty());
  ASSERT_TRUE(https.tcpflags.has_value());
  EXPECT_EQ(https.tcpflags->must_set, kg::tcpflag::syn);
  EXPECT_EQ(https.tcpflags->must_clear, kg::tcpflag::ack);
  EXPECT_TRUE(plain_syn_satisfies(*https.tcpflags));
  EXPECT_EQ(c->doors[2].host, "192.168.50.1");  // target is the host when none is given

  auto picked = pick_door(*c, std::string("openHTTPS"));
  ASSERT_TRUE(picked.ok());
  EXPECT_EQ((*picked)->name, "openHTTPS");
  auto none = pick_door(*c, std::nullopt);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().message, "several doors (ssh, openHTTPS, toLan): choose one with -p");
  auto missing = pick_door(*c, std::string("nope"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message, "no door 'nope' (doors: ssh, openHTTPS, toLan)");
}

TEST(ClientConfig, OnlyDoorIsPickedWithoutName) {
  auto c = parse_client_config("[door a]\nsequence = 1,2\n", "f");
  ASSERT_TRUE(c.ok());
  auto d = pick_door(*c, std::nullopt);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ((*d)->name, "a");
}

TEST(ClientConfig, DuplicateDoorIsAmbiguous) {
  auto c = parse_client_config("[a]\nsequence = 1\n[a]\nsequence = 2\n", "f");
  ASSERT_TRUE(c.ok());
  auto d = pick_door(*c, std::string("a"));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().message, "door 'a' is defined twice (f:1 and line 3)");
}

TEST(ClientConfig, ErrorsNameFileLineAndKey) {
  EXPECT_EQ(config_err("sequence = 1\n"), "f.conf:1: all directives must belong to a section");
  EXPECT_EQ(config_err("[]\n"), "f.conf:1: bad section name");
  EXPECT_EQ(config_err("[door x\n"), "f.conf:1: section header without ']'");
  EXPECT_EQ(config_err("[door x]\nsequence = 7000:icmp\n"),
            "f.conf:2: sequence: '7000:icmp': unknown protocol 'icmp' (tcp or udp)");
  EXPECT_EQ(config_err("[door x]\n\nsequence = 70000\n"),
            "f.conf:3: sequence: '70000': port must be 1-65535");
  EXPECT_EQ(config_err("[door x]\nsequence = 1\nbogus = 2\n"), "f.conf:3: bogus: unknown key");
  EXPECT_EQ(config_err("[door x]\nsequence = 1\nhost\n"), "f.conf:3: host: expected 'key = value'");
  EXPECT_EQ(config_err("[door x]\nsequence = 1\ndelay = soon\n"),
            "f.conf:3: delay: delay must be a number of milliseconds 0-86400000, not 'soon'");
  EXPECT_EQ(config_err("[door x]\nsequence = 1\nfamily = 5\n"),
            "f.conf:3: family: must be 4, 6 or any");
  EXPECT_EQ(config_err("[x]\nsequence = 1\ntcpflags = syn,bogus\n"),
            "f.conf:3: tcpflags: unrecognized flag 'bogus'");
  EXPECT_EQ(config_err("[door x]\nhost = h\n[door y]\nsequence = 1\n"),
            "f.conf:1: door 'x' has no sequence or one_time_sequences");
  EXPECT_EQ(config_err("[door x]\nhost = h\n"),
            "f.conf:1: door 'x' has no sequence or one_time_sequences");
}

TEST(ClientConfig, SynAckDoorWarns) {
  auto c = parse_client_config("[x]\nsequence = 1\ntcpflags = syn,ack\n", "f");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(plain_syn_satisfies(*c->doors[0].tcpflags));
}

TEST(ClientConfig, LastOfSequenceAndOneTimeWins) {
  auto c = parse_client_config("[x]\nsequence = 1\none_time_sequences = ot.txt\n", "/a/b/k.conf");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->doors[0].sequence.empty());
  EXPECT_EQ(c->doors[0].one_time_file, "/a/b/ot.txt");
  c = parse_client_config("[x]\none_time_sequences = /ot\nsequence = 1\n", "k.conf");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->doors[0].one_time_file.empty());
  EXPECT_EQ(c->doors[0].sequence.size(), 1u);
}

TEST(ClientConfig, LoadsFromFile) {
  TempFile f("[door d]\nhost = 127.0.0.1\nsequence = 1\n");
  auto c = load_client_config(f.path());
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->doors[0].file, f.path());
  auto missing = load_client_config("/nonexistent/kg/knock.conf");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message,
            "/nonexistent/kg/knock.conf: cannot open: No such file or directory");
}

TEST(OneTime, PicksAndConsumesLikeKnockd) {
  TempFile f("# used ones get a #\n#7000,8000\n\n bogus\n 7100,8100:udp\n 7200,8200\n");
  auto p = pick_one_time(f.path());
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->line, 5);
  ASSERT_EQ(p->sequence.size(), 2u);
  EXPECT_EQ(p->sequence[1], (Knock{Proto::udp, 8100}));
  ASSERT_TRUE(consume_one_time(f.path(), *p).ok());
  EXPECT_EQ(f.read(), "# used ones get a #\n#7000,8000\n\n bogus\n#7100,8100:udp\n 7200,8200\n");
  auto next = pick_one_time(f.path());
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->line, 6);
  ASSERT_TRUE(consume_one_time(f.path(), *next).ok());
  auto none = pick_one_time(f.path());
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().message, f.path() + ": no unused sequence left");
}

TEST(Send, ResolveAndHitLine) {
  auto t = resolve("127.0.0.1", FamilyWanted::any);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(hit_line(*t, Knock{Proto::tcp, 7000}), "hitting tcp 127.0.0.1:7000");
  auto t6 = resolve("::1", FamilyWanted::v6);
  ASSERT_TRUE(t6.ok());
  EXPECT_EQ(hit_line(*t6, Knock{Proto::udp, 9}), "hitting udp ::1:9");
  EXPECT_FALSE(resolve("127.0.0.1", FamilyWanted::v6).ok());
  EXPECT_FALSE(resolve("name.invalid", FamilyWanted::any).ok());
}

// A UDP hit is one datagram holding a single zero byte.
TEST(Send, UdpHitIsOneZeroByte) {
  const int rx = ::socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(rx, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(rx, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(rx, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const uint16_t port = ntohs(addr.sin_port);

  auto t = resolve("127.0.0.1", FamilyWanted::v4);
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(send_hit(*t, Knock{Proto::udp, port}).ok());
  unsigned char buf[16];
  pollfd pfd{rx, POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 2000), 1);
  EXPECT_EQ(::recv(rx, buf, sizeof buf, 0), 1);
  EXPECT_EQ(buf[0], 0);
  ::close(rx);
}

// A TCP hit to a listener and to a closed port (answered with RST) both succeed.
TEST(Send, TcpHitToOpenAndClosedPort) {
  const int ls = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(ls, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(ls, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(ls, 4), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(ls, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const uint16_t port = ntohs(addr.sin_port);

  auto t = resolve("127.0.0.1", FamilyWanted::v4);
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(send_hit(*t, Knock{Proto::tcp, port}).ok());
  ::close(ls);
  // Port now closed: the kernel answers RST, the hit still counts as sent.
  EXPECT_TRUE(send_hit(*t, Knock{Proto::tcp, port}).ok());
}
