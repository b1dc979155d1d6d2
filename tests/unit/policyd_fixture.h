// What a PolicyCore under test needs around it: a scratch directory (removed afterwards)
// for the database and the knockd-format log, a log writer on that file, the diagnostics
// policyd logs (captured), and an io_context. Tests open core_ themselves.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/knocklog.h"
#include "common/log.h"
#include "policyd/policy.h"
#include "policyd/sqlite_store.h"

// A GrantInstaller that records what the grant logic asks of the kernel, and fails on
// request.
class RecordingInstaller final : public kg::policyd::GrantInstaller {
 public:
  kg::Result<kg::Ok> add(std::span<const kg::policyd::GrantInstall> grants) override {
    ++add_calls;
    if (!fail_with.empty()) return kg::Error{fail_with};
    for (const auto& g : grants) added.push_back(g);
    return kg::Ok{};
  }
  kg::Result<size_t> remove(std::span<const kg::policyd::GrantInstall> grants) override {
    for (const auto& g : grants) removed.push_back(g);
    return size_t{0};
  }
  std::vector<kg::policyd::GrantInstall> added, removed;
  int add_calls = 0;
  std::string fail_with;
};

// The SQLite backend behind a core opened on a path, for tests that read its tables.
inline kg::policyd::SqliteStore& sqlite_store(kg::policyd::PolicyCore& core) {
  return dynamic_cast<kg::policyd::SqliteStore&>(core.store());
}

class PolicydFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "policyd-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    db_path_ = dir_ + "/knockgate.db";
    log_path_ = dir_ + "/knockd.log";
    kg::knocklog::Options opt;
    opt.log_file = log_path_;
    opt.journal = false;
    auto w = kg::knocklog::Writer::open(opt);
    ASSERT_TRUE(w) << w.error().message;
    log_ = std::move(*w);
    kg::log::set_sink([this](kg::log::Level, const std::string& m) { diagnostics_.push_back(m); });
    io_ = std::make_unique<boost::asio::io_context>();
  }

  void TearDown() override {
    core_.reset();
    io_.reset();
    kg::log::set_sink(nullptr);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string dir_, db_path_, log_path_;
  std::unique_ptr<kg::knocklog::Writer> log_;
  std::unique_ptr<boost::asio::io_context> io_;
  std::unique_ptr<kg::policyd::PolicyCore> core_;
  std::vector<std::string> diagnostics_;
};
