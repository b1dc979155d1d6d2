// The control command table (ipc/control_commands.h) and policyd's dispatch over it
// (policyd/control.cpp): unknown commands, numbers, roles, and webd's typed requests.
#include "policyd/control.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "ipc/control_commands.h"
#include "policyd/policy.h"
#include "policyd_fixture.h"

namespace {

using namespace std::chrono_literals;
namespace control = kg::ipc::control;
using control::Command;
using control::Exit;
using control::Option;
using kg::ipc::Role;

TEST(ControlTable, EveryCommandIsFoundByNameAndEnum) {
  for (const control::CommandSpec& c : control::commands()) {
    EXPECT_EQ(control::find_command(c.name), &c);
    EXPECT_EQ(&control::spec(c.id), &c);
    for (Option o : c.options) EXPECT_EQ(control::option(o).id, o);
  }
  EXPECT_EQ(control::find_command("frobnicate"), nullptr);
  EXPECT_EQ(control::spec(Command::grant_many).usage(),
            "grant-many PROFILE SOURCE... [--for DURATION] [--json]");
}

TEST(ControlTable, NumbersWithoutExceptions) {
  EXPECT_EQ(*control::parse_number("--limit", "25", 1, 100), 25);
  EXPECT_EQ(control::parse_number("--limit", "12x", 1, 100).error().message,
            "--limit: '12x' is not a number");
  EXPECT_EQ(control::parse_number("--limit", "", 1, 100).error().message,
            "--limit: '' is not a number");
  EXPECT_EQ(control::parse_number("--limit", "-3", 1, 100).error().message,
            "--limit: '-3' is not a number");
  EXPECT_EQ(control::parse_number("--limit", "0", 1, 100).error().message,
            "--limit: '0' is out of range (1-100)");
  EXPECT_EQ(control::parse_number("id", "99999999999999999999", 1, INT64_MAX).error().message,
            "id: '99999999999999999999' is out of range (1-9223372036854775807)");
}

TEST(ControlTable, RolesAndOptions) {
  EXPECT_EQ(control::refuse_role(Role::captured)->exit, Exit::denied);
  EXPECT_FALSE(control::refuse_role(Role::webd));
  EXPECT_EQ(control::refuse_command(control::spec(Command::reload), Role::webd)->message,
            "reload: not permitted for webd");
  EXPECT_FALSE(control::refuse_command(control::spec(Command::reload), Role::ctl));
  EXPECT_EQ(control::refuse_command(control::spec(Command::login_lockout), Role::ctl)->exit,
            Exit::denied);

  auto bad = control::parse(control::spec(Command::status), {"--source", "1.2.3.4"}, Role::ctl);
  ASSERT_TRUE(bad.refusal);
  EXPECT_EQ(bad.refusal->exit, Exit::usage);
  EXPECT_EQ(bad.refusal->message, "status: unknown option '--source'\nusage: status [--json]");
  auto unsaid = control::parse(control::spec(Command::revoke), {"1"}, Role::webd);
  ASSERT_TRUE(unsaid.refusal);
  EXPECT_EQ(unsaid.refusal->exit, Exit::denied);
}

TEST(ControlTable, RequestsRoundTrip) {
  control::Args args;
  args.json = true;
  args.as = "alice";
  args.positional = {"203.0.113.10", "ssh-only"};
  args.set(Option::for_duration, "10m");
  const kg::ipc::ControlRequest r = control::make_request(9, Command::grant, args);
  EXPECT_EQ(r.request_id, 9u);
  EXPECT_EQ(r.command, "grant");
  EXPECT_EQ(r.args, (std::vector<std::string>{"--as", "alice", "--json", "--for", "10m",
                                              "203.0.113.10", "ssh-only"}));
  auto back = control::parse(control::spec(Command::grant), r.args, Role::webd);
  ASSERT_FALSE(back.refusal) << back.refusal->message;
  EXPECT_EQ(back.args.as, args.as);
  EXPECT_EQ(back.args.positional, args.positional);
  EXPECT_EQ(*back.args.get(Option::for_duration), "10m");
  EXPECT_TRUE(back.args.json);
}

class ControlDispatch : public PolicydFixture {
 protected:
  void SetUp() override {
    PolicydFixture::SetUp();
    auto parsed = kg::config::parse_text(
        "[options]\n  Interface = eth0\n  WanInterface = eth0\n"
        "[profile ssh-only]\n  direction = inbound\n  expose = tcp/22 -> 192.168.50.10:22\n"
        "  lifetime = 1h\n  max_lifetime = 8h\n"
        "[openSSH]\n  sequence = 7000,8000,9000\n  grant = ssh-only\n",
        "test.conf");
    ASSERT_TRUE(parsed.config) << (parsed.errors.empty() ? "" : parsed.errors[0].str());
    config_ = *parsed.config;
    kg::policyd::PolicyCore::Options opt;
    opt.database_path = db_path_;
    auto core = kg::policyd::PolicyCore::open(*io_, *log_, opt, {});
    ASSERT_TRUE(core) << core.error().message;
    core_ = std::move(*core);
    kg::policyd::GrantProfile p;
    p.name = "ssh-only";
    p.lifetime = 1h;
    p.max_lifetime = 8h;
    core_->set_profiles({p});
    core_->set_installer(&installer_);
    ASSERT_TRUE(core_->start());
    kg::policyd::Control::Hooks hooks;
    hooks.config = [this]() -> const kg::config::Config& { return config_; };
    hooks.status = [] { return kg::policyd::StatusInfo{}; };
    hooks.reload = []() -> kg::Result<std::string> { return std::string("reloaded"); };
    control_ = std::make_unique<kg::policyd::Control>(*core_, hooks);
  }
  kg::ipc::ControlReply run(Role role, std::string command, std::vector<std::string> args) {
    kg::ipc::ControlRequest r;
    r.request_id = 5;
    r.command = std::move(command);
    r.args = std::move(args);
    kg::policyd::Caller c{role, "root"};
    return control_->handle(c, r);
  }
  kg::config::Config config_;
  RecordingInstaller installer_;
  std::unique_ptr<kg::policyd::Control> control_;
};

TEST_F(ControlDispatch, UnknownCommand) {
  auto r = run(Role::ctl, "frobnicate", {});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "knockgate-policyd: unknown command 'frobnicate'\n");
  EXPECT_EQ(r.request_id, 5u);
}

TEST_F(ControlDispatch, BadNumbersArePreciseUsageErrors) {
  auto r = run(Role::ctl, "extend", {"12x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "extend: '12x' is not a number\n");
  r = run(Role::ctl, "extend", {"99999999999999999999"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "extend: '99999999999999999999' is out of range (1-9223372036854775807)\n");
  r = run(Role::ctl, "audit", {"--limit", "99999999999999999999"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "--limit: '99999999999999999999' is out of range (1-9223372036854775807)\n");
  r = run(Role::ctl, "audit", {"--before", "0"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "--before: '0' is out of range (1-9223372036854775807)\n");
  r = run(Role::webd, "login-lockout",
          {"--source", "192.0.2.1", "--failures", "5x", "--delay", "30"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "login-lockout: --failures: '5x' is not a number\n");
  EXPECT_EQ(run(Role::ctl, "audit", {"--limit", "3", "--json"}).exit_code, 0);
}

TEST_F(ControlDispatch, RolesRefusedByTheTable) {
  auto r = run(Role::ctl, "login-lockout", {"--source", "192.0.2.1"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(r.err, "login-lockout: not permitted for ctl\n");
  r = run(Role::webd, "grant-many", {"--as", "alice", "ssh-only", "192.0.2.1"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(r.err, "grant-many: not permitted for webd\n");
  r = run(Role::verdictd, "status", {});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(r.err, "knockgate-policyd: role verdictd may not run control commands\n");
  EXPECT_TRUE(installer_.added.empty());
}

}  // namespace
