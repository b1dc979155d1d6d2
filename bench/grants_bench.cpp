// policyd's grants, measured on the real PolicyCore and SQLite file (docs/BENCHMARKS.md,
// "policyd grants"). Run from a Release build:
//
//   grants_bench DIR [--kernel]
//
// 1. creation rate: grant_many batches of 1000 up to 100 000 active grants;
// 2. RSS of the process with 100 000 active grants;
// 3. restart: a new PolicyCore on the same file, start() (load + close expired) until it
//    serves, and the snapshot it would send (grant_records());
// 4. expiry lateness under load: 20 000 grants expiring within 2 s while the loop also
//    creates 1000-grant batches every 20 ms;
// 5. revocation, 1000 grants revoked one by one (kernel stand-in that notes the time):
//    revoke call → kernel removal called, and → the call returns (journal fdatasync,
//    database commit and sync), p50/p99; five rounds;
// 6. with --kernel (root, run it inside a scratch network namespace: `ip netns exec`):
//    knock-to-grant-installed latency over 1000 knocks through KernelState (commit + nft
//    element), p50/p99.
#include <sys/resource.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/knocklog.h"
#include "common/log.h"
#include "config/config.h"
#include "policyd/config_bridge.h"
#include "policyd/kernel/kernel_state.h"
#include "policyd/policy.h"

using namespace std::chrono_literals;
using kg::policyd::PolicyCore;
using Clock = std::chrono::steady_clock;

namespace {

long rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

std::vector<kg::IpAddr> sources(uint32_t base, size_t n) {
  std::vector<kg::IpAddr> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(kg::IpAddr::v4(base + static_cast<uint32_t>(i)));
  return out;
}

class KernelInstaller final : public kg::policyd::GrantInstaller {
 public:
  explicit KernelInstaller(kg::policyd::KernelState& k) : k_(k) {}
  kg::Result<kg::Ok> add(std::span<const kg::policyd::GrantInstall> g) override {
    return k_.add_grants(convert(g));
  }
  kg::Result<size_t> remove(std::span<const kg::policyd::GrantInstall> g) override {
    return k_.remove_grants(convert(g));
  }
  static std::vector<kg::policyd::GrantInstall> convert(
      std::span<const kg::policyd::GrantInstall> g) {
    std::vector<kg::policyd::GrantInstall> v;
    for (const auto& x : g) v.push_back({x.id, x.source, x.profile, x.expires_ns});
    return v;
  }

 private:
  kg::policyd::KernelState& k_;
};

// Notes when the kernel removal is asked for (the revocation's effect).
class TimingInstaller final : public kg::policyd::GrantInstaller {
 public:
  kg::Result<kg::Ok> add(std::span<const kg::policyd::GrantInstall>) override { return kg::Ok{}; }
  kg::Result<size_t> remove(std::span<const kg::policyd::GrantInstall>) override {
    removed_at = Clock::now();
    return size_t{0};
  }
  Clock::time_point removed_at;
};

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q / 100.0 * static_cast<double>(v.size())))];
}

const char* kConfig =
    "[options]\n  Interface = kg-wan\n  WanInterface = kg-wan\n  LanInterface = kg-lan\n"
    "[profile ssh-only]\n  direction = inbound\n  expose = tcp/22 -> 192.168.50.10:22\n"
    "  fwmark = 0x10000000/0xff000000\n  table = 100\n  lifetime = 1h\n  max_lifetime = 8h\n"
    "[openSSH]\n  sequence = 7000,8000,9000\n  grant = ssh-only\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: grants_bench DIR [--kernel]\n");
    return 2;
  }
  const std::string dir = argv[1];
  const bool kernel = argc > 2 && std::string(argv[2]) == "--kernel";
  std::filesystem::create_directories(dir);
  std::filesystem::remove(dir + "/bench.db");
  std::filesystem::remove(dir + "/bench.db-wal");
  std::filesystem::remove(dir + "/bench.db-shm");
  kg::log::init("grants_bench", kg::log::Level::warn);
  kg::knocklog::Options lo;
  lo.log_file = dir + "/bench.log";
  lo.journal = false;
  auto log = kg::knocklog::Writer::open(lo);
  if (!log) return 1;
  auto parsed = kg::config::parse_text(kConfig, "bench.conf");
  if (!parsed.config) return 1;
  const kg::config::Config config = *parsed.config;

  auto io = std::make_unique<boost::asio::io_context>();
  PolicyCore::Options opt;
  opt.database_path = dir + "/bench.db";
  auto open = [&]() {
    auto c = PolicyCore::open(*io, **log, opt, kg::policyd::door_actions(config));
    if (!c) {
      std::fprintf(stderr, "%s\n", c.error().message.c_str());
      std::exit(1);
    }
    (*c)->set_profiles(kg::policyd::grant_profiles(config));
    return std::move(*c);
  };
  std::unique_ptr<PolicyCore> core = open();
  if (!core->start()) return 1;

  // 1. creation rate
  const size_t total = 100000, batch = 1000;
  auto t0 = Clock::now();
  for (size_t done = 0; done < total; done += batch) {
    auto r = core->grant_many(sources(0x0a000000U + static_cast<uint32_t>(done), batch), "ssh-only",
                              kg::ipc::GrantMethod::ctl, "bench", std::nullopt);
    if (!r) {
      std::fprintf(stderr, "%s\n", r.error().message.c_str());
      return 1;
    }
    io->poll();  // the posted durability sync, as the daemon's loop would run it
  }
  const double create_ms = ms_since(t0);
  std::printf("creation: %zu grants in batches of %zu: %.0f ms, %.0f grants/s\n", total, batch,
              create_ms, static_cast<double>(total) / (create_ms / 1000.0));
  // Single grants, one transaction each (knocks and `knockgatectl grant` one at a time).
  t0 = Clock::now();
  for (uint32_t i = 0; i < 2000; ++i) {
    auto r = core->grant(kg::IpAddr::v4(0x0b000000U + i), "ssh-only", kg::ipc::GrantMethod::ctl,
                         "bench", std::nullopt);
    if (!r) return 1;
    io->poll();
  }
  const double single_ms = ms_since(t0);
  std::printf("creation: 2000 single grants (one commit + sync each): %.0f grants/s\n",
              2000.0 / (single_ms / 1000.0));

  // 2. memory
  std::printf("rss with %zu active grants: %.1f MiB\n", core->active_grant_count(),
              static_cast<double>(rss_kib()) / 1024.0);

  // 3. restart
  core.reset();
  io = std::make_unique<boost::asio::io_context>();
  const long rss_before = rss_kib();
  t0 = Clock::now();
  core = open();
  if (!core->start()) return 1;
  const double load_ms = ms_since(t0);
  auto t1 = Clock::now();
  const auto snapshot = core->grant_records();
  std::printf(
      "restart: open + load %zu active grants: %.0f ms; snapshot built in %.0f ms; "
      "rss %.1f MiB (%.1f MiB before)\n",
      core->active_grant_count(), load_ms, ms_since(t1), static_cast<double>(rss_kib()) / 1024.0,
      static_cast<double>(rss_before) / 1024.0);
  (void)snapshot;

  // 4. expiry under load
  {
    core.reset();
    io = std::make_unique<boost::asio::io_context>();
    std::filesystem::remove(dir + "/bench.db");
    std::filesystem::remove(dir + "/bench.db-wal");
    std::filesystem::remove(dir + "/bench.db-shm");
    core = open();
    if (!core->start()) return 1;
    // 20 batches of 1000, created 100 ms apart, each expiring 3 s after creation.
    for (uint32_t b = 0; b < 20; ++b) {
      if (!core->grant_many(sources(0x0c000000U + b * 1000, 1000), "ssh-only",
                            kg::ipc::GrantMethod::ctl, "bench", 3s)) {
        return 1;
      }
      io->run_for(100ms);
    }
    // Load: another 1000-grant batch every 20 ms while they expire.
    boost::asio::steady_timer load(*io);
    uint32_t next = 0x0d000000U;
    std::function<void()> pump = [&] {
      (void)core->grant_many(sources(next, 1000), "ssh-only", kg::ipc::GrantMethod::ctl, "load",
                             1h);
      next += 1000;
      load.expires_after(20ms);
      load.async_wait([&](const boost::system::error_code& ec) {
        if (!ec) pump();
      });
    };
    pump();
    const auto end = Clock::now() + 4s;
    while (Clock::now() < end && core->grants_expired() < 20000) io->run_for(50ms);
    load.cancel();
    std::printf(
        "expiry under load: %llu of 20000 expired; worst timer lateness %.1f ms "
        "(while creating 1000-grant batches every 20 ms, %zu active)\n",
        static_cast<unsigned long long>(core->grants_expired()),
        static_cast<double>(core->worst_expiry_lateness_us()) / 1000.0, core->active_grant_count());
  }

  // 5. revocation: effect first, record after
  for (int round = 0; round < 5; ++round) {
    core.reset();
    io = std::make_unique<boost::asio::io_context>();
    for (const char* f : {"/bench.db", "/bench.db-wal", "/bench.db-shm", "/bench.db-revocations"}) {
      std::filesystem::remove(dir + f);
    }
    TimingInstaller timing;
    core = open();
    core->set_installer(&timing);
    if (!core->start()) return 1;
    auto made = core->grant_many(sources(0x0f000000U, 1000), "ssh-only", kg::ipc::GrantMethod::ctl,
                                 "bench", std::nullopt);
    if (!made) return 1;
    io->poll();
    std::vector<double> effect, answered;
    for (const auto& g : *made) {
      const auto t = Clock::now();
      auto r = core->revoke_id(g.grant.id, "ctl:bench");
      answered.push_back(ms_since(t));
      effect.push_back(std::chrono::duration<double, std::milli>(timing.removed_at - t).count());
      if (!r || r->size() != 1) return 1;
      io->poll();
    }
    std::printf(
        "revoke (1000 one by one, round %d): kernel removal asked after p50 %.3f ms p99 %.3f "
        "ms; call returns p50 %.3f ms p99 %.3f ms\n",
        round + 1, percentile(effect, 50), percentile(effect, 99), percentile(answered, 50),
        percentile(answered, 99));
    core->set_installer(nullptr);
  }

  // 6. knock to grant installed, through the kernel
  if (kernel) {
    core.reset();
    io = std::make_unique<boost::asio::io_context>();
    std::filesystem::remove(dir + "/bench.db");
    std::filesystem::remove(dir + "/bench.db-wal");
    std::filesystem::remove(dir + "/bench.db-shm");
    auto ks = kg::policyd::KernelState::open(config);
    if (!ks) {
      std::fprintf(stderr, "kernel: %s\n", ks.error().message.c_str());
      return 1;
    }
    auto rec = (*ks)->reconcile(config, {});
    if (!rec) {
      std::fprintf(stderr, "reconcile: %s\n", rec.error().message.c_str());
      return 1;
    }
    KernelInstaller installer(**ks);
    core = open();
    core->set_installer(&installer);
    if (!core->start()) return 1;
    std::vector<double> lat;
    for (uint32_t i = 0; i < 1000; ++i) {
      kg::policyd::KnockEventData ev;
      ev.sender_boot_id = 1;
      ev.event_id = i + 1;
      ev.door = "openSSH";
      ev.source = kg::IpAddr::v4(0xcb007100U + (i % 250) + ((i / 250) << 8));
      ev.time_ns = kg::policyd::wall_now_ns();
      auto t = Clock::now();
      auto r = core->handle_knock(ev);
      lat.push_back(ms_since(t));
      if (!r) return 1;
      io->poll();  // durability sync, after the grant is in (as in the daemon)
    }
    std::sort(lat.begin(), lat.end());
    std::printf(
        "knock -> grant committed + nft element installed (1000 knocks): p50 %.3f ms, "
        "p99 %.3f ms, max %.3f ms; %zu active\n",
        lat[500], lat[990], lat.back(), core->active_grant_count());
    // 100 000 grants through the kernel (batches of 1000: one transaction + one nft
    // transaction each), then a restart: load + reconcile until serving.
    t0 = Clock::now();
    for (uint32_t done = 0; done < 100000; done += 1000) {
      if (!core->grant_many(sources(0x0e000000U + done, 1000), "ssh-only",
                            kg::ipc::GrantMethod::ctl, "bench", std::nullopt)) {
        return 1;
      }
      io->poll();
    }
    const double kcreate_ms = ms_since(t0);
    std::printf("creation with the kernel: 100000 grants in batches of 1000: %.0f grants/s\n",
                100000.0 / (kcreate_ms / 1000.0));
    core.reset();  // as kill -9: the kernel keeps its elements
    io = std::make_unique<boost::asio::io_context>();
    t0 = Clock::now();
    auto ks2 = kg::policyd::KernelState::open(config);
    if (!ks2) return 1;
    core = open();
    if (!core->start()) return 1;
    const auto installs = KernelInstaller::convert(core->active_installs());
    auto rec2 = (*ks2)->reconcile(config, installs);
    if (!rec2) {
      std::fprintf(stderr, "reconcile: %s\n", rec2.error().message.c_str());
      return 1;
    }
    std::printf("restart with the kernel: open + load + reconcile %zu grants: %.0f ms (%s)\n",
                installs.size(), ms_since(t0), rec2->summary().c_str());
    core.reset();
    (void)(*ks2)->remove_all();

    // The knockd way, same namespace, same run: a door's command running the nft CLI
    // (`start_command = nft add element ... %IP% ...`), spawned through /bin/sh per knock.
    if (std::system("nft add table inet kgbench_peer && nft add set inet kgbench_peer s "
                    "'{ type ipv4_addr; flags timeout; }'") != 0) {
      std::fprintf(stderr, "peer: cannot create the scratch table\n");
      return 1;
    }
    std::vector<double> peer;
    for (uint32_t i = 0; i < 200; ++i) {
      const std::string cmd = "nft add element inet kgbench_peer s '{ 203.0.114." +
                              std::to_string(i) + " timeout 1h }'";
      auto t = Clock::now();
      if (std::system(cmd.c_str()) != 0) return 1;
      peer.push_back(ms_since(t));
    }
    (void)std::system("nft delete table inet kgbench_peer");
    std::sort(peer.begin(), peer.end());
    std::printf(
        "peer (knockd-style door command: sh -c 'nft add element ...', 200 runs): "
        "p50 %.3f ms, p99 %.3f ms\n",
        peer[100], peer[198]);
  }
  return 0;
}
