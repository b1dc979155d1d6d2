// The engine ↔ kernel writer message set: every message round-trips, grant lists are cut
// into datagrams that fit, and what the writer must refuse does not decode.
#include "ipc/kernel_messages.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using namespace kg::ipc;

GrantInstall grant(uint64_t id, const char* addr, std::string profile = "ssh-only") {
  return GrantInstall{id, *kg::IpAddr::parse(addr), std::move(profile), 1796690000000000000};
}

KernelMessage round_trip(const KernelMessage& m) {
  auto bytes = encode_kernel_message(m);
  EXPECT_TRUE(bytes) << kernel_message_name(m);
  auto back = decode_kernel_message(*bytes);
  EXPECT_TRUE(back) << (back ? "" : back.error().message);
  return *back;
}

TEST(KernelMessages, EveryMessageRoundTrips) {
  const std::vector<KernelMessage> all = {
      WriterReady{"mode gateway"},
      EngineReady{},
      GrantChunk{{grant(1, "203.0.113.7"), grant(2, "2001:db8::7", "syslog-only")}},
      AddGrants{7, {grant(3, "192.0.2.1")}},
      RemoveGrants{8, {grant(4, "192.0.2.2")}},
      Reconcile{9, true, "reload", {grant(5, "192.0.2.3")}},
      RunCommand{10, 10, "openSSH", true, *kg::IpAddr::parse("2001:db8::9")},
      KernelReply{11, false, 3, "refused: why"},
      CommandExited{12, false, 0, 9},
      ReconcileNeeded{"link up"},
      ReadConfig{13},
      ConfigText{std::string("[options]\n\xe9 not UTF-8 \0 and a NUL", 33)},
  };
  for (const auto& m : all) EXPECT_EQ(round_trip(m), m) << kernel_message_name(m);
}

TEST(KernelMessages, LongGrantListsTravelInChunksThatFit) {
  AddGrants request{42, {}};
  for (uint32_t i = 1; i <= 100000; ++i) {
    request.grants.push_back(grant(i, ("10." + std::to_string(i >> 16 & 255) + "." +
                                       std::to_string(i >> 8 & 255) + "." + std::to_string(i & 255))
                                          .c_str()));
  }
  const auto datagrams = split_grants(request, 1500);
  ASSERT_EQ(datagrams.size(), 67u);  // 66 chunks of 1500, then the request with 1000
  size_t total = 0;
  for (size_t i = 0; i < datagrams.size(); ++i) {
    auto bytes = encode_kernel_message(datagrams[i]);
    ASSERT_TRUE(bytes) << i;
    EXPECT_LE(bytes->size(), kKernelDatagramBytes);
    if (i + 1 < datagrams.size()) {
      total += std::get<GrantChunk>(datagrams[i]).grants.size();
    } else {
      const auto& last = std::get<AddGrants>(datagrams[i]);
      EXPECT_EQ(last.request_id, 42u);
      total += last.grants.size();
      EXPECT_EQ(last.grants.back().id, 100000u);
    }
  }
  EXPECT_EQ(total, 100000u);
}

TEST(KernelMessages, WhatTheWriterMustRefuseDoesNotDecode) {
  auto refused = [](std::vector<uint8_t> bytes) {
    auto m = decode_kernel_message(bytes);
    return m ? std::string() : m.error().message;
  };
  EXPECT_NE(refused({99}).find("unknown kernel request type 99"), std::string::npos);
  EXPECT_FALSE(refused({}).empty());
  auto good = *encode_kernel_message(AddGrants{1, {grant(1, "192.0.2.1")}});
  auto trailing = good;
  trailing.push_back(0);
  EXPECT_NE(refused(trailing).find("AddGrants"), std::string::npos);
  auto truncated = good;
  truncated.resize(truncated.size() - 2);
  EXPECT_NE(refused(truncated).find("truncated"), std::string::npos);
  EXPECT_FALSE(refused(*encode_kernel_message(AddGrants{1, {grant(0, "192.0.2.1")}})).empty());
  EXPECT_FALSE(refused(*encode_kernel_message(AddGrants{1, {grant(1, "192.0.2.1", "")}})).empty());
  auto command =
      *encode_kernel_message(RunCommand{1, 1, "door", false, *kg::IpAddr::parse("192.0.2.1")});
  auto bad_bool = command;
  bad_bool[1 + 4 + 8 + 4 + 4] = 2;  // the `stop` byte after request, job and door
  EXPECT_NE(refused(bad_bool).find("stop"), std::string::npos);
  EXPECT_FALSE(
      refused(*encode_kernel_message(RunCommand{1, 1, "", false, *kg::IpAddr::parse("192.0.2.1")}))
          .empty());
}

TEST(KernelMessages, OversizedMessagesAreNotEncoded) {
  AddGrants request{1, {}};
  for (uint32_t i = 1; i <= 5000; ++i) request.grants.push_back(grant(i, "192.0.2.1"));
  EXPECT_FALSE(encode_kernel_message(request));
}

}  // namespace
