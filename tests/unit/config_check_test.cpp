// config::check(), behind `knockgatectl check-config` and every daemon's -n, and the
// [spa NAME] keys going through the one key table (libs/config).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "config/config.h"

namespace kg::config {
namespace {

namespace fs = std::filesystem;

constexpr const char* kGate =
    "[profile ssh-only]\ndirection = inbound\nexpose = self tcp/22\n"
    "[spa gate]\ngrant = ssh-only\nSOURCE = ANY\nKEY = plain-key-1\nHMAC_KEY = hmac-key-1\n";

// A config file of its own, mode 0600 (inline SPA keys must not be readable by others).
class ConfigFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("kg-check-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    path_ = (dir_ / "knockgate.conf").string();
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& text) {
    std::ofstream(path_) << text;
    ASSERT_EQ(::chmod(path_.c_str(), 0600), 0);
  }
  fs::path dir_;
  std::string path_;
};

TEST_F(ConfigFile, CheckPrintsTheNormalisedConfigWithSecretsHidden) {
  write(kGate);
  const CheckResult r = check(path_);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.err, "");
  ASSERT_TRUE(r.config.has_value());
  EXPECT_EQ(r.out, dump(*r.config, Secrets::hidden));
  EXPECT_EQ(r.out.find("plain-key-1"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("hmac-key-1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("KEY_BASE64 = (secret, not shown)"), std::string::npos) << r.out;
}

TEST_F(ConfigFile, CheckListsEveryErrorAndPrintsNoConfig) {
  write("[options]\nVerdictHoldMs = 5000\n[d]\nsequence = 70000\n");
  const CheckResult r = check(path_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_FALSE(r.config.has_value());
  const std::string prefix = path_ + ":";
  EXPECT_EQ(r.err.rfind(prefix + "2: verdictholdms: ", 0), 0U) << r.err;
  EXPECT_NE(r.err.find("\n" + prefix + "4: sequence: "), std::string::npos) << r.err;
  EXPECT_EQ(r.err.back(), '\n');
}

TEST_F(ConfigFile, CheckRefusesAMissingOneTimeSequenceFile) {
  const std::string missing = (dir_ / "missing.seq").string();
  write("[d]\none_time_sequences = " + missing + "\n");
  const CheckResult r = check(path_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find(missing), std::string::npos) << r.err;
}

// verdictd's and webd's -n: they never read one-time sequence files.
TEST_F(ConfigFile, CheckCanLeaveOneTimeSequenceFilesAlone) {
  write("[d]\none_time_sequences = " + (dir_ / "missing.seq").string() + "\n");
  const CheckResult r = check(path_, ExternalFiles::unchecked);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find("missing.seq"), std::string::npos) << r.out;
}

TEST_F(ConfigFile, CheckOfAnUnreadableFileSaysWhy) {
  const CheckResult r = check((dir_ / "absent.conf").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot open"), std::string::npos) << r.err;
}

std::string errors_of(std::string_view text) {
  std::string out;
  for (const auto& e : parse_text(text, "k.conf").errors) out += e.str() + "\n";
  return out;
}

// fwknopd's REQUIRE_SOURCE is REQUIRE_SOURCE_ADDRESS in the key table: before a SOURCE
// line it is a stanza key out of place, not an unknown key.
TEST(SpaKeys, AnAliasIsAStanzaKeyBeforeSource) {
  EXPECT_EQ(errors_of("[profile p]\ndirection = inbound\nexpose = self tcp/22\n"
                      "[spa gate]\ngrant = p\nREQUIRE_SOURCE = Y\nSOURCE = ANY\nKEY = k\n"),
            "k.conf:6: require_source: access stanza keys must follow a SOURCE line\n");
}

// The table keeps each section's keys apart: SPA keys are unknown in a door, door keys in
// an SPA door.
TEST(SpaKeys, StayInTheirSections) {
  EXPECT_EQ(errors_of("[d]\nsequence = 1\nport = 62201\n"),
            "k.conf:3: port: unknown key in a door section\n");
  EXPECT_EQ(errors_of("[profile p]\ndirection = inbound\nexpose = self tcp/22\n"
                      "[spa gate]\ngrant = p\nsequence = 1\nSOURCE = ANY\nKEY = k\n"),
            "k.conf:6: sequence: unknown key in an SPA door\n");
}

}  // namespace
}  // namespace kg::config
