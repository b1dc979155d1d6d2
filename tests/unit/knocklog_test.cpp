// knockd-format log lines, the file writer and the flood rate limiter.
#include "common/knocklog.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace kl = kg::knocklog;
using namespace std::chrono_literals;

namespace {

kg::IpAddr ip(const char* text) {
  auto a = kg::IpAddr::parse(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(kg::IpAddr{});
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) out.push_back(line);
  return out;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "knocklog-XXXXXX").string();
    path_ = mkdtemp(tmpl.data()) != nullptr ? tmpl : std::string();
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Pins local time to UTC for the format tests and restores it afterwards.
class UtcScope {
 public:
  UtcScope() {
    const char* old = getenv("TZ");
    if (old != nullptr) saved_ = old;
    had_ = old != nullptr;
    setenv("TZ", "UTC", 1);
    tzset();
  }
  ~UtcScope() {
    if (had_) {
      setenv("TZ", saved_.c_str(), 1);
    } else {
      unsetenv("TZ");
    }
    tzset();
  }

 private:
  std::string saved_;
  bool had_ = false;
};

}  // namespace

TEST(KnockLogMessages, ExactKnockdTexts) {
  const auto v4 = ip("192.0.2.7");
  const auto v6 = ip("2001:db8::1");
  EXPECT_EQ(kl::stage(v4, "openSSH", 1).message, "192.0.2.7: openSSH: Stage 1");
  EXPECT_EQ(kl::stage(v6, "openSSH", 3).message, "2001:db8::1: openSSH: Stage 3");
  EXPECT_EQ(kl::open_sesame(v4, "openSSH").message, "192.0.2.7: openSSH: OPEN SESAME");
  EXPECT_EQ(
      kl::running_command("openSSH", "/sbin/iptables -A INPUT -s 192.0.2.7 -j ACCEPT").message,
      "openSSH: running command: /sbin/iptables -A INPUT -s 192.0.2.7 -j ACCEPT");
  EXPECT_EQ(kl::command_status("openSSH", 2).message,
            "openSSH: command returned non-zero status code (2)");
  EXPECT_EQ(kl::command_timeout(v4, "opencloseSSH").message,
            "192.0.2.7: opencloseSSH: command timeout");
  EXPECT_EQ(kl::sequence_timeout(v6, "door", 2).message,
            "2001:db8::1: door: sequence timeout (stage 2)");
  EXPECT_EQ(kl::starting_up("eth0").message, "starting up, listening on eth0");
  EXPECT_EQ(kl::shutting_down().message, "shutting down");
  EXPECT_EQ(kl::rereading_config("/etc/knockd.conf").message,
            "re-reading config file: /etc/knockd.conf");
  EXPECT_EQ(kl::one_time_exhausted("otp").message,
            "no more sequences left in the one time sequences file for door otp --> "
            "disabling the door");
}

TEST(KnockLogMessages, StructuredFields) {
  const auto e = kl::open_sesame(ip("192.0.2.7"), "openSSH");
  EXPECT_EQ(e.event, "open");
  EXPECT_EQ(e.door, "openSSH");
  EXPECT_EQ(e.source, "192.0.2.7");
  const auto c = kl::running_command("openSSH", "true");
  EXPECT_EQ(c.event, "command");
  EXPECT_EQ(c.door, "openSSH");
  EXPECT_TRUE(c.source.empty());
  EXPECT_EQ(kl::shutting_down().event, "stop");
}

TEST(KnockLogFormat, FileLineIsKnockdsFormat) {
  UtcScope utc;
  // 2024-03-05 07:09:59 UTC: seconds are not printed, as in knockd.
  EXPECT_EQ(kl::format_file_line("192.0.2.7: d: Stage 1", 1709622599),
            "[2024-03-05 07:09] 192.0.2.7: d: Stage 1\n");
  EXPECT_EQ(kl::format_file_line("shutting down", 0), "[1970-01-01 00:00] shutting down\n");
}

TEST(KnockLogFormat, LocalTimeIsUsed) {
  UtcScope utc;
  setenv("TZ", "UTC-2", 1);  // POSIX sign: two hours east of UTC
  tzset();
  EXPECT_EQ(kl::format_file_line("x", 1709622599), "[2024-03-05 09:09] x\n");
}

TEST(KnockLogWriter, AppendsLinesToTheLogFile) {
  TempDir dir;
  const std::string path = dir.path() + "/knockd.log";
  {
    std::ofstream pre(path);
    pre << "existing line\n";
  }
  kl::Options opt;
  opt.log_file = path;
  opt.journal = false;
  auto w = kl::Writer::open(opt);
  ASSERT_TRUE(w) << w.error().message;
  (*w)->write(kl::stage(ip("192.0.2.7"), "door1", 1));
  (*w)->write(kl::open_sesame(ip("2001:db8::5"), "door1"));
  const auto lines = lines_of(read_file(path));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "existing line");
  const std::regex stamp(R"(^\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}\] )");
  EXPECT_TRUE(std::regex_search(lines[1], stamp)) << lines[1];
  EXPECT_EQ(lines[1].substr(19), "192.0.2.7: door1: Stage 1");
  EXPECT_EQ(lines[2].substr(19), "2001:db8::5: door1: OPEN SESAME");
}

TEST(KnockLogWriter, TwoWritersShareOneFileWithoutTornLines) {
  TempDir dir;
  const std::string path = dir.path() + "/shared.log";
  kl::Options opt;
  opt.log_file = path;
  opt.journal = false;
  auto a = kl::Writer::open(opt);
  auto b = kl::Writer::open(opt);
  ASSERT_TRUE(a && b);
  constexpr int kLines = 2000;
  auto writer = [](kl::Writer& w, const char* door) {
    for (int i = 0; i < kLines; ++i) {
      w.write(kl::stage(kg::IpAddr::v4(0xC0000200u + static_cast<uint32_t>(i % 200)), door,
                        static_cast<unsigned>(i)));
    }
  };
  std::thread ta(writer, std::ref(**a), "alpha");
  std::thread tb(writer, std::ref(**b), "beta");
  ta.join();
  tb.join();
  const auto lines = lines_of(read_file(path));
  ASSERT_EQ(lines.size(), 2u * kLines);
  const std::regex whole(
      R"(^\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}\] 192\.0\.2\.\d+: (alpha|beta): Stage \d+$)");
  for (const auto& line : lines) ASSERT_TRUE(std::regex_match(line, whole)) << line;
}

TEST(KnockLogWriter, ReopenFollowsLogrotate) {
  TempDir dir;
  const std::string path = dir.path() + "/k.log";
  kl::Options opt;
  opt.log_file = path;
  opt.journal = false;
  auto w = kl::Writer::open(opt);
  ASSERT_TRUE(w);
  (*w)->write(kl::shutting_down());
  std::filesystem::rename(path, path + ".1");
  (*w)->write(kl::rereading_config("/etc/knockd.conf"));  // still goes to the moved file
  ASSERT_TRUE((*w)->reopen());
  (*w)->write(kl::starting_up("eth0"));
  EXPECT_EQ(lines_of(read_file(path + ".1")).size(), 2u);
  const auto fresh = lines_of(read_file(path));
  ASSERT_EQ(fresh.size(), 1u);
  EXPECT_NE(fresh[0].find("starting up, listening on eth0"), std::string::npos);
}

TEST(KnockLogWriter, UnwritableLogFileIsAnError) {
  TempDir dir;
  kl::Options opt;
  opt.log_file = dir.path() + "/missing-dir/k.log";
  opt.journal = false;
  auto w = kl::Writer::open(opt);
  ASSERT_FALSE(w);
  EXPECT_NE(w.error().message.find("missing-dir/k.log"), std::string::npos);
}

TEST(KnockLogJournal, DetectsOnlyOurOwnJournalStream) {
  const char* old = getenv("JOURNAL_STREAM");
  const std::string saved = old != nullptr ? old : "";
  unsetenv("JOURNAL_STREAM");
  EXPECT_FALSE(kl::running_under_journal());
  struct stat st {};
  ASSERT_EQ(fstat(STDERR_FILENO, &st), 0);
  const std::string mine = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  setenv("JOURNAL_STREAM", mine.c_str(), 1);
  EXPECT_TRUE(kl::running_under_journal());
  // Inherited from a parent whose stderr was something else: not ours.
  const std::string other = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino + 1);
  setenv("JOURNAL_STREAM", other.c_str(), 1);
  EXPECT_FALSE(kl::running_under_journal());
  setenv("JOURNAL_STREAM", "garbage", 1);
  EXPECT_FALSE(kl::running_under_journal());
  if (old != nullptr) {
    setenv("JOURNAL_STREAM", saved.c_str(), 1);
  } else {
    unsetenv("JOURNAL_STREAM");
  }
}

TEST(KnockLogRateLimiter, LimitsPerKindAndSummarisesPerInterval) {
  kl::RateLimiter limiter(3, 1s);
  const auto t0 = kl::RateLimiter::Clock::time_point{} + 100s;
  int emitted = 0;
  for (int i = 0; i < 10; ++i) {
    auto d = limiter.admit("Stage 1", t0 + std::chrono::milliseconds(i));
    EXPECT_FALSE(d.summary.has_value());
    emitted += d.emit ? 1 : 0;
  }
  EXPECT_EQ(emitted, 3);
  EXPECT_EQ(limiter.suppressed_total(), 7u);
  // Another kind has its own budget.
  EXPECT_TRUE(limiter.admit("sequence timeout", t0 + 5ms).emit);
  // Still inside the interval: suppressed, no summary yet.
  auto inside = limiter.admit("Stage 1", t0 + 999ms);
  EXPECT_FALSE(inside.emit);
  EXPECT_FALSE(inside.summary.has_value());
  // The next interval starts with the previous one's summary, then lines flow again.
  auto next = limiter.admit("Stage 1", t0 + 1s);
  EXPECT_TRUE(next.emit);
  ASSERT_TRUE(next.summary.has_value());
  EXPECT_EQ(*next.summary, "Stage 1: 8 similar messages suppressed");
  auto after = limiter.admit("Stage 1", t0 + 1s + 1ms);
  EXPECT_TRUE(after.emit);
  EXPECT_FALSE(after.summary.has_value());
}

TEST(KnockLogRateLimiter, FlushReportsTheLastCountOfAFlood) {
  kl::RateLimiter limiter(2, 1s);
  const auto t0 = kl::RateLimiter::Clock::time_point{} + 50s;
  for (int i = 0; i < 1000; ++i) (void)limiter.admit("Stage 1", t0);
  (void)limiter.admit("quiet", t0);
  EXPECT_TRUE(limiter.flush(t0 + 500ms).empty());  // interval not over yet
  const auto lines = limiter.flush(t0 + 1s);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "Stage 1: 998 similar messages suppressed");
  // Reported once: the count was reset, and a quiet interval reports nothing.
  EXPECT_TRUE(limiter.flush(t0 + 2s).empty());
  EXPECT_TRUE(limiter.flush(t0 + 3s).empty());
  EXPECT_TRUE(limiter.admit("Stage 1", t0 + 3s).emit);
}

TEST(KnockLogRateLimiter, BoundsAFloodToTheBudget) {
  // 100 k spoofed Stage 1 lines over 10 s at a budget of 20/s: 200 lines + 10 summaries.
  kl::RateLimiter limiter(20, 1s);
  const auto t0 = kl::RateLimiter::Clock::time_point{} + 1000s;
  size_t written = 0;
  size_t summaries = 0;
  uint64_t reported = 0;
  for (int i = 0; i < 100000; ++i) {
    auto d = limiter.admit("Stage 1", t0 + std::chrono::microseconds(i * 100));
    written += d.emit ? 1 : 0;
    if (d.summary) {
      ++summaries;
      reported += std::stoull(d.summary->substr(std::string("Stage 1: ").size()));
    }
  }
  for (const auto& s : limiter.flush(t0 + 11s)) {
    ++summaries;
    reported += std::stoull(s.substr(std::string("Stage 1: ").size()));
  }
  EXPECT_EQ(written, 200u);
  EXPECT_EQ(summaries, 10u);
  EXPECT_EQ(written + reported, 100000u);  // every line is either written or counted
}
