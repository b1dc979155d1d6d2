// captured's SPA gate: config → stanzas with the profile's ports, events for policyd with
// the replay key, rejections counted by reason, log lines once per source/reason/minute and
// at most kMaxLinesPerSecond overall, with a summary.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "captured/spa_gate.h"
#include "common/log.h"
#include "config/config.h"
#include "spa/encode.h"

namespace kg::captured {
namespace {

constexpr const char* kConf =
    "[profile ssh-only]\ndirection = inbound\nexpose = self tcp/22\n"
    "[spa gate]\ngrant = ssh-only\nSOURCE = ANY\nKEY = fwknoptest\nHMAC_KEY = hmactest\n";

constexpr std::string_view kV4Packet =
    "8AAQIDBAUGB2rzj4RiMGZ2B2xG3eqggyd6EkeBZGYCSF4QZlcLHbA4Z0QcPpCNgr6Qqadi7RDJz7PGBAyp/"
    "nLUCaQggr3LoADX0slkdU8Xq7LSPFYw9qP6LcUCa4bGTmyvIovVDEczz79d7YuKzBcsJjgZ2YQqt18pqpmyqPrp0S9K0sP"
    "9"
    "TxGTy1NQKjLEheEj+PlGk88/vg";
constexpr int64_t kV4TimeNs = int64_t{1700000000} * 1'000'000'000;

class CapturedSpa : public ::testing::Test {
 protected:
  void SetUp() override {
    log::set_sink([this](log::Level, const std::string& m) { lines_.push_back(m); });
    auto parsed = config::parse_text(kConf, "t.conf");
    ASSERT_TRUE(parsed.config);
    gate_ = std::make_unique<SpaGate>(*parsed.config);
  }
  void TearDown() override { log::set_sink(nullptr); }
  size_t count(const std::string& part) const {
    size_t n = 0;
    for (const auto& l : lines_) n += l.find(part) != std::string::npos ? 1U : 0U;
    return n;
  }
  std::vector<std::string> lines_;
  std::unique_ptr<SpaGate> gate_;
  const IpAddr src_ = IpAddr::v4(0x01020304);
  const IpAddr dst_ = IpAddr::v4(0xcb007101);
};

TEST_F(CapturedSpa, ValidPacketBecomesAnEventWithTheReplayKey) {
  ASSERT_EQ(gate_->doors().size(), 1U);
  ASSERT_EQ(gate_->doors()[0].all_stanzas.size(), 1U);
  EXPECT_EQ(gate_->doors()[0].all_stanzas[0].label, "t.conf:6");
  auto ev = gate_->handle(0, kV4Packet, false, src_, dst_, kV4TimeNs, 7);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->door, "gate");
  EXPECT_EQ(ev->source, src_);
  EXPECT_EQ(ev->method, ipc::KnockMethod::spa);
  EXPECT_EQ(ev->config_generation, 7U);
  ASSERT_TRUE(ev->spa);
  EXPECT_EQ(ev->spa->user, "alice");
  ASSERT_EQ(ev->spa->access.size(), 1U);
  EXPECT_EQ(ev->spa->access[0].port, 22);
  // The key covers the decoded ciphertext, not the HMAC appended to it (43 characters).
  const auto blob = spa::b64_decode(std::string(spa::kSaltedB64Prefix) +
                                    std::string(kV4Packet.substr(0, kV4Packet.size() - 43)));
  EXPECT_EQ(ev->spa->replay_key, spa::replay_key_of(*blob));
  EXPECT_EQ(gate_->accepted(), 1U);
  // No key material in the log.
  for (const auto& l : lines_) {
    EXPECT_EQ(l.find("fwknoptest"), std::string::npos);
    EXPECT_EQ(l.find("hmactest"), std::string::npos);
  }
}

TEST_F(CapturedSpa, PortsOutsideTheProfileAreRefused) {
  spa::Plaintext p;
  p.user = "alice";
  p.timestamp = 1700000000;
  p.message = "1.2.3.4,tcp/22,tcp/80";
  spa::EncodeKeys k;
  k.key = spa::Bytes{'f', 'w', 'k', 'n', 'o', 'p', 't', 'e', 's', 't'};
  k.hmac_key = spa::Bytes{'h', 'm', 'a', 'c', 't', 'e', 's', 't'};
  EXPECT_FALSE(gate_->handle(0, spa::encode_packet(p, k), false, src_, dst_, kV4TimeNs, 1));
  EXPECT_EQ(count("refused: port_not_allowed (requested proto/port not allowed: tcp/80) "
                  "[stanza t.conf:6]"),
            1U);
}

TEST_F(CapturedSpa, RejectionsCountedAndLoggedOncePerSourceAndReasonWithSkewHint) {
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(gate_->handle(0, kV4Packet, false, src_, dst_, kV4TimeNs + 300'000'000'000, 1));
  }
  const auto stale = static_cast<size_t>(spa::Reject::stale);
  EXPECT_EQ(gate_->rejected()[stale], 5U);
  EXPECT_EQ(count("SPA from 1.2.3.4 to door gate refused: stale"), 1U);
  EXPECT_EQ(count("the client's clock is 300 s behind"), 1U);
  EXPECT_FALSE(gate_->handle(0, kV4Packet, true, src_, dst_, kV4TimeNs, 1));
  EXPECT_EQ(count("refused: truncated"), 1U);
  EXPECT_EQ(gate_->log_lines_suppressed(), 4U);
}

TEST_F(CapturedSpa, SpoofedFloodIsCappedPerSecondWithASummary) {
  const std::string junk(204, 'Q');
  for (uint32_t i = 0; i < 1000; ++i) {
    EXPECT_FALSE(gate_->handle(0, junk, false, IpAddr::v4(0x0a800000 + i), dst_, kV4TimeNs, 1));
  }
  EXPECT_EQ(count("refused: bad_hmac"), SpaGate::kMaxLinesPerSecond);
  gate_->flush_log_summary();
  EXPECT_EQ(count("SPA: 980 more refused packets not logged one by one (bad_hmac 980)"), 1U);
  gate_->flush_log_summary();  // nothing new: no line
  EXPECT_EQ(count("more refused packets"), 1U);
  // A valid packet still gets through right after.
  EXPECT_TRUE(gate_->handle(0, kV4Packet, false, src_, dst_, kV4TimeNs, 1));
}

}  // namespace
}  // namespace kg::captured
