// [spa NAME] sections of knockgate.conf and fwknopd access.conf files (libs/config).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "config/config.h"
#include "spa/base64.h"

namespace kg::config {
namespace {

constexpr const char* kProfile =
    "[profile ssh-only]\ndirection = inbound\nexpose = self tcp/22\n";

std::vector<std::string> errors_of(const ParseResult& r) {
  std::vector<std::string> out;
  for (const auto& e : r.errors) out.push_back(e.str());
  return out;
}

// check-config and every daemon's -n print the config: never its keys.
TEST(SpaConfig, DumpHidesKeysUnlessAskedFor) {
  const std::string text = std::string(kProfile) +
                           "[spa gate]\nport = 62201\ngrant = ssh-only\nSOURCE = ANY\n"
                           "KEY_BASE64 = pwczPhemmcJqsBpRrPjZWsiXfxFUY4GXO0Z8D/QEV/A=\n"
                           "HMAC_KEY = secret-hmac-key\nSOURCE = 10.0.0.0/8\nKEY = plain-key-1\n";
  auto r = parse_text(text, "k.conf");
  ASSERT_TRUE(r.config) << errors_of(r).front();
  const std::string shown_hmac = spa::b64_encode("secret-hmac-key");
  const std::string shown_plain = spa::b64_encode("plain-key-1");
  const std::string hidden = dump(*r.config);
  for (const std::string& secret : {std::string("pwczPhemmcJqsBpRrPjZWsiXfxFUY4GXO0Z8D/QEV/A="),
                                    shown_hmac, shown_plain, std::string("secret-hmac-key"),
                                    std::string("plain-key-1")}) {
    EXPECT_EQ(hidden.find(secret), std::string::npos) << secret;
  }
  EXPECT_NE(hidden.find("KEY_BASE64 = (secret, not shown)"), std::string::npos) << hidden;
  EXPECT_NE(hidden.find("HMAC_KEY_BASE64 = (secret, not shown)"), std::string::npos);
  const std::string shown = dump(*r.config, Secrets::shown);
  EXPECT_NE(shown.find(shown_hmac), std::string::npos);
  EXPECT_NE(shown.find(shown_plain), std::string::npos);
}

TEST(SpaConfig, InlineStanzasWithFwknopKeys) {
  const std::string text = std::string(kProfile) +
                           "[spa gate]\n"
                           "port = 62201\n"
                           "proto = http\n"
                           "grant = ssh-only\n"
                           "MAX_SPA_PACKET_AGE = 60s\n"
                           "SOURCE = ANY\n"
                           "KEY_BASE64 = pwczPhemmcJqsBpRrPjZWsiXfxFUY4GXO0Z8D/QEV/A=\n"
                           "HMAC_KEY = secret-hmac\n"
                           "HMAC_DIGEST_TYPE = SHA512\n"
                           "REQUIRE_USERNAME = alice, bob\n"
                           "OPEN_PORTS = tcp/22\n"
                           "FW_ACCESS_TIMEOUT = 60\n"
                           "REQUIRE_SOURCE_ADDRESS = Y\n"
                           "SOURCE = 10.0.0.0/8, 192.0.2.1\n"
                           "KEY = short\n"
                           "ENCRYPTION_MODE = legacy\n";
  auto r = parse_text(text, "k.conf");
  ASSERT_TRUE(r.config) << errors_of(r).front();
  ASSERT_EQ(r.config->spa_doors.size(), 1U);
  const SpaDoor& d = r.config->spa_doors[0];
  EXPECT_EQ(d.transport, spa::Transport::http);
  EXPECT_EQ(d.max_age_s, 60);
  ASSERT_EQ(d.access.size(), 2U);
  const spa::Stanza& s = d.access[0].stanza;
  EXPECT_EQ(s.key.size(), 32U);
  EXPECT_EQ(s.hmac_type, spa::DigestType::sha512);
  EXPECT_EQ(s.usernames, (std::vector<std::string>{"alice", "bob"}));
  EXPECT_TRUE(s.require_source_address);
  EXPECT_EQ(s.fw_access_timeout, 60U);
  EXPECT_EQ(d.access[1].stanza.mode, spa::EncryptionMode::legacy);
  EXPECT_EQ(d.access[1].stanza.sources.size(), 2U);

  // dump → parse gives the same config.
  auto again = parse_text(dump(*r.config, Secrets::shown), "dumped");
  ASSERT_TRUE(again.config) << errors_of(again).front();
  EXPECT_EQ(*again.config, *r.config);
}

TEST(SpaConfig, ErrorsAreFileLineKey) {
  const std::string text = std::string(kProfile) +       // lines 1-3
                           "[spa gate]\n"                // 4
                           "grant = nobody\n"            // 5
                           "KEY = x\n"                   // 6
                           "SOURCE = ANY\n"              // 7
                           "KEY = same\n"                // 8
                           "HMAC_KEY = same\n"           // 9
                           "HMAC_DIGEST_TYPE = sha7\n"   // 10
                           "FORCE_NAT = 1.2.3.4 22\n"    // 11
                           "OPEN_PORTS = tcp/0\n"        // 12
                           "SOURCE = ANY\n"              // 13
                           "ENCRYPTION_MODE = legacy\n"  // 14
                           "HMAC_KEY = h\n"              // 15
                           "[spa gate]\n"                // 16
                           "port = 99999\n";             // 17
  auto r = parse_text(text, "k.conf");
  ASSERT_FALSE(r.config);
  const auto e = errors_of(r);
  auto has = [&](const std::string& s) { return std::find(e.begin(), e.end(), s) != e.end(); };
  EXPECT_TRUE(
      has("k.conf:4: grant: no profile named \"nobody\" (define it with [profile nobody])"));
  EXPECT_TRUE(has("k.conf:6: key: access stanza keys must follow a SOURCE line"));
  EXPECT_TRUE(has("k.conf:9: hmac_key: the HMAC key must differ from the encryption key"));
  EXPECT_TRUE(
      has("k.conf:10: hmac_digest_type: \"sha7\" is not md5, sha1, sha256, sha384, "
          "sha512, sha3_256 or sha3_512"));
  EXPECT_TRUE(has("k.conf:11: force_nat: fwknopd key not supported by knockgate (docs/spa.md)"));
  EXPECT_TRUE(has("k.conf:12: open_ports: bad port \"0\""));
  EXPECT_TRUE(has("k.conf:13: key: access stanza has no KEY or KEY_BASE64"));
  EXPECT_TRUE(has("k.conf:13: encryption_mode: legacy mode cannot be used with an HMAC key"));
  EXPECT_TRUE(has("k.conf:16: section: duplicate SPA door \"gate\" (first at line 4)"));
  EXPECT_TRUE(has("k.conf:16: grant: an SPA door needs grant = PROFILE"));
  EXPECT_TRUE(
      has("k.conf:16: source: an SPA door needs access stanzas (SOURCE = ... lines) or "
          "AccessFile = PATH"));
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/kg-spa-conf-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf " + path_).c_str()); }
  std::string write(const std::string& name, const std::string& text, mode_t mode) {
    const std::string p = path_ + "/" + name;
    std::ofstream(p) << text;
    ::chmod(p.c_str(), mode);
    return p;
  }

 private:
  std::string path_;
};

TEST(SpaConfig, AccessFileReadUnchangedAndPermissionsChecked) {
  TempDir dir;
  // A stanza as fwknopd's access.conf has it: whitespace-separated, comments, Y/N.
  const std::string access =
      "# fwknopd access.conf\n"
      "SOURCE                ANY\n"
      "KEY_BASE64            pwczPhemmcJqsBpRrPjZWsiXfxFUY4GXO0Z8D/QEV/A=\n"
      "HMAC_KEY_BASE64       "
      "QgPNwQ5XkZ5T7hfJx2Hl2NMODfopUJE9W/1n9VEfMS2v4xAdBxZq1rk2dXibwbkspTWfHlOxwEhhI0T6mz94Mw==\n"
      "REQUIRE_SOURCE_ADDRESS Y\n"
      "FW_ACCESS_TIMEOUT     30\n";
  const std::string acc = dir.write("access.conf", access, 0600);
  const std::string conf_text =
      std::string(kProfile) + "[spa gate]\ngrant = ssh-only\nAccessFile = " + acc + "\n";
  const std::string conf = dir.write("k.conf", conf_text, 0644);  // no keys inline: fine
  auto r = parse_file(conf);
  ASSERT_TRUE(r.config) << errors_of(r).front();
  ASSERT_EQ(r.config->spa_doors[0].file_access.size(), 1U);
  EXPECT_TRUE(r.config->spa_doors[0].file_access[0].stanza.hmac_key);
  EXPECT_EQ(r.config->spa_doors[0].file_access[0].line, 2);

  ::chmod(acc.c_str(), 0640);
  r = parse_file(conf);
  ASSERT_FALSE(r.config);
  EXPECT_EQ(
      errors_of(r).front(),
      acc + ": mode 0640 lets group or other read keys (chmod 600, owned by the daemon's user)");

  // Inline keys in a world-readable config file: refused at the first stanza's line.
  const std::string inline_conf = dir.write(
      "inline.conf",
      std::string(kProfile) + "[spa gate]\ngrant = ssh-only\nSOURCE = ANY\nKEY = k\n", 0644);
  r = parse_file(inline_conf);
  ASSERT_FALSE(r.config);
  EXPECT_EQ(errors_of(r).front(), inline_conf +
                                      ":6: key: mode 0644 lets group or other read keys "
                                      "(chmod 600, owned by the daemon's user)");
  ::chmod(inline_conf.c_str(), 0600);
  EXPECT_TRUE(parse_file(inline_conf).config);
}

// fwknopd reads `KEY: value;` (the old form) and REQUIRE_SOURCE; its keys knockgate does
// not implement are named as such, and an AccessFile's errors come in line order.
TEST(SpaConfig, AccessFileOldSyntaxSynonymsAndErrorOrder) {
  TempDir dir;
  const std::string access =
      "SOURCE: ANY;\n"
      "KEY: old-style-key;\n"
      "HMAC_KEY: old-style-hmac;  # trailing words after ';' are ignored, as fwknopd does\n"
      "REQUIRE_SOURCE: Y;\n"
      "OPEN_PORTS: tcp/22;\n";
  const std::string acc = dir.write("access.conf", access, 0600);
  const std::string conf = dir.write(
      "k.conf", std::string(kProfile) + "[spa gate]\ngrant = ssh-only\nAccessFile = " + acc + "\n",
      0600);
  auto r = parse_file(conf);
  ASSERT_TRUE(r.config) << errors_of(r).front();
  const spa::Stanza& s = r.config->spa_doors[0].file_access.at(0).stanza;
  EXPECT_EQ(std::string(s.key.begin(), s.key.end()), "old-style-key");
  ASSERT_TRUE(s.hmac_key);
  EXPECT_EQ(std::string(s.hmac_key->begin(), s.hmac_key->end()), "old-style-hmac");
  EXPECT_TRUE(s.require_source_address);
  EXPECT_EQ(s.open_ports.size(), 1U);
  EXPECT_EQ(s.fw_access_timeout, 30U);  // fwknopd's default for an access.conf

  // Inline, a ';' is refused rather than kept in the key.
  auto inline_r = parse_text(std::string(kProfile) +
                                 "[spa gate]\ngrant = ssh-only\nSOURCE = ANY\nKEY = abc;\n",
                             "i.conf");
  ASSERT_FALSE(inline_r.config);
  const auto inline_errs = errors_of(inline_r);
  EXPECT_NE(std::find_if(inline_errs.begin(), inline_errs.end(),
                         [](const std::string& e) {
                           return e.rfind("i.conf:7: key: ';' ends a value", 0) == 0;
                         }),
            inline_errs.end())
      << inline_errs.front();

  // Unsupported fwknopd keys say so; errors of the file are in line order.
  const std::string bad = dir.write("bad.conf",
                                    "SOURCE ANY\n"
                                    "GPG_DISABLE_SIG Y\n"
                                    "KEY short\n"
                                    "HMAC_KEY short\n"
                                    "SOURCE 10.0.0.0/8\n"
                                    "REQUIRE_SOURCE maybe\n",
                                    0600);
  const std::string conf2 = dir.write(
      "k2.conf", std::string(kProfile) + "[spa gate]\ngrant = ssh-only\nAccessFile = " + bad + "\n",
      0600);
  r = parse_file(conf2);
  ASSERT_FALSE(r.config);
  const auto errs = errors_of(r);
  ASSERT_GE(errs.size(), 3U);
  EXPECT_NE(errs[0].find(bad + ":2: gpg_disable_sig: fwknopd key not supported"), std::string::npos)
      << errs[0];
  for (size_t i = 1; i < errs.size(); ++i) {
    auto line_of = [&](const std::string& e) {
      return std::stoi(e.substr(bad.size() + 1, e.find(':', bad.size() + 1) - bad.size() - 1));
    };
    if (errs[i].rfind(bad, 0) == 0 && errs[i - 1].rfind(bad, 0) == 0) {
      EXPECT_LE(line_of(errs[i - 1]), line_of(errs[i])) << errs[i - 1] << " / " << errs[i];
    }
  }
  EXPECT_NE(std::find_if(errs.begin(), errs.end(),
                         [&](const std::string& e) {
                           return e.find(bad + ":6: require_source:") == 0;
                         }),
            errs.end());
}

}  // namespace
}  // namespace kg::config
