// Test driver for policyd's kernel layer (tests/integration/test_kernel_state.py and the
// kernel benchmark). Runs KernelState calls inside whatever namespace it is started in.
//
//   kg_kernel_tool CONFIG apply GRANTS      reconcile(config, grants)
//   kg_kernel_tool CONFIG add GRANTS        add_grants
//   kg_kernel_tool CONFIG remove GRANTS     remove_grants (prints conntrack entries deleted)
//   kg_kernel_tool CONFIG remove-all
//   kg_kernel_tool CONFIG watch GRANTS SECS reconcile, print "ready", reconcile again on
//                                           every process_netlink() == true and on every
//                                           SIGUSR1 (same KernelState) until SECS pass
//   kg_kernel_tool CONFIG bench             latency figures (see docs/BENCHMARKS.md)
//   kg_kernel_tool CONFIG ruleset native|xt the generated ruleset text (no kernel access)
//
// GRANTS: a text file, one grant per line: `ID SOURCE PROFILE SECONDS_LEFT`.
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "config/config.h"
#include "policyd/kernel/kernel_state.h"

namespace {

volatile sig_atomic_t g_again = 0;
void on_usr1(int) {
  g_again = 1;
}

using kg::policyd::GrantInstall;
using kg::policyd::KernelState;

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

bool read_grants(const std::string& path, std::vector<GrantInstall>& out) {
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    return false;
  }
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    GrantInstall g;
    std::string addr;
    double seconds = 0;
    if (!(ls >> g.id >> addr >> g.profile >> seconds)) {
      std::fprintf(stderr, "bad grant line: %s\n", line.c_str());
      return false;
    }
    auto a = kg::IpAddr::parse(addr);
    if (!a) {
      std::fprintf(stderr, "bad address: %s\n", addr.c_str());
      return false;
    }
    g.source = *a;
    g.expires_ns = now_ns() + static_cast<int64_t>(seconds * 1e9);
    out.push_back(g);
  }
  return true;
}

int fail(const kg::Error& e) {
  std::fprintf(stderr, "error: %s\n", e.message.c_str());
  return 1;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  return v[i];
}

// This process's CPU time (user + system), ms: on a shared machine the wall clock also
// counts other people's work.
double cpu_ms() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

kg::IpAddr nth_address(uint32_t i) {
  return kg::IpAddr::v4(0x0a000000U + i);
}  // 10.x.y.z

int bench(const kg::config::Config& config, KernelState& ks) {
  using Clock = std::chrono::steady_clock;
  auto us = [](Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); };
  const std::string profile = config.profiles.at(0).name;
  auto empty = ks.reconcile(config, {});
  if (!empty) return fail(empty.error());

  std::vector<double> single;
  double cpu_before = cpu_ms();
  for (uint32_t i = 0; i < 1000; ++i) {
    GrantInstall g{i + 1, nth_address(i), profile, now_ns() + 3600'000'000'000};
    auto t0 = Clock::now();
    auto r = ks.add_grants(std::span(&g, 1));
    single.push_back(us(Clock::now() - t0));
    if (!r) return fail(r.error());
  }
  std::printf(
      "add_grants 1 element: p50 %.0f us, p90 %.0f us, p99 %.0f us, max %.0f us (1000 calls)\n",
      percentile(single, 0.5), percentile(single, 0.9), percentile(single, 0.99),
      percentile(single, 1.0));
  std::printf("add_grants 1 element: %.0f us CPU per call on average (this process, user+sys)\n",
              (cpu_ms() - cpu_before) * 1000 / 1000);
  size_t slow = 0;
  for (double v : single) slow += v > 2000 ? 1 : 0;
  std::printf("add_grants 1 element: %zu of 1000 calls above 2 ms\n", slow);

  std::vector<GrantInstall> batch;
  for (uint32_t i = 0; i < 1000; ++i) {
    batch.push_back({i + 1, nth_address(10000 + i), profile, now_ns() + 3600'000'000'000});
  }
  auto t0 = Clock::now();
  auto r = ks.add_grants(batch);
  if (!r) return fail(r.error());
  std::printf("add_grants batch of 1000: %.1f ms\n", us(Clock::now() - t0) / 1000);

  t0 = Clock::now();
  auto rm = ks.remove_grants(batch);
  if (!rm) return fail(rm.error());
  std::printf("remove_grants batch of 1000: %.1f ms\n", us(Clock::now() - t0) / 1000);

  std::vector<GrantInstall> many;
  for (uint32_t i = 0; i < 100000; ++i) {
    many.push_back({i + 1, nth_address(i), profile, now_ns() + 3600'000'000'000});
  }
  // A fresh KernelState (as after a restart) replaces the table with all elements.
  auto fresh = KernelState::open(config);
  if (!fresh) return fail(fresh.error());
  auto timed = [&](const char* what) -> bool {
    auto start = Clock::now();
    double cpu0 = cpu_ms();
    auto rec = (*fresh)->reconcile(config, many);
    if (!rec) {
      fail(rec.error());
      return false;
    }
    std::printf("%s: %.0f ms wall, %.0f ms CPU in this process (%s)\n", what,
                us(Clock::now() - start) / 1000, cpu_ms() - cpu0, rec->summary().c_str());
    return true;
  };
  if (!timed("reconcile 100000 grants after restart")) return 1;
  if (!timed("reconcile 100000 grants, nothing to change")) return 1;
  many.resize(99000);  // 1000 grants ended while we were not looking
  if (!timed("reconcile 100000 -> 99000 grants")) return 1;
  auto done = (*fresh)->remove_all();
  if (!done) return fail(done.error());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: %s CONFIG apply|add|remove|remove-all|watch|bench [GRANTS] [SECS]\n",
                 argv[0]);
    return 2;
  }
  auto parsed = kg::config::parse_file(argv[1]);
  if (!parsed.config) {
    for (const auto& d : parsed.errors) std::fprintf(stderr, "%s\n", d.str().c_str());
    return 2;
  }
  const auto& config = *parsed.config;
  const std::string cmd = argv[2];
  std::vector<GrantInstall> grants;
  if ((cmd == "apply" || cmd == "add" || cmd == "remove" || cmd == "watch") &&
      (argc < 4 || !read_grants(argv[3], grants))) {
    return 2;
  }
  if (cmd == "ruleset") {
    bool native = argc > 3 && std::string(argv[3]) == "native";
    std::fputs(kg::policyd::ruleset_text(config, native ? kg::policyd::QueueMode::native
                                                        : kg::policyd::QueueMode::xt_fallback)
                   .c_str(),
               stdout);
    return 0;
  }
  auto opened = KernelState::open(config);
  if (!opened) return fail(opened.error());
  KernelState& ks = **opened;
  std::printf("features: %s\n", ks.features().c_str());

  if (cmd == "apply") {
    auto r = ks.reconcile(config, grants);
    if (!r) return fail(r.error());
    std::printf("%s\n", r->summary().c_str());
  } else if (cmd == "add") {
    auto r = ks.add_grants(grants);
    if (!r) return fail(r.error());
    std::printf("added %zu\n", grants.size());
  } else if (cmd == "remove") {
    auto r = ks.remove_grants(grants);
    if (!r) return fail(r.error());
    std::printf("conntrack deleted %zu\n", *r);
  } else if (cmd == "remove-all") {
    auto r = ks.remove_all();
    if (!r) return fail(r.error());
    std::printf("removed\n");
  } else if (cmd == "watch") {
    double secs = argc > 4 ? std::atof(argv[4]) : 10;
    signal(SIGUSR1, on_usr1);
    auto r = ks.reconcile(config, grants);
    if (!r) return fail(r.error());
    std::printf("ready: %s\n", r->summary().c_str());
    std::fflush(stdout);
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(secs);
    while (std::chrono::steady_clock::now() < end) {
      pollfd p{ks.netlink_fd(), POLLIN, 0};
      if (poll(&p, 1, 100) > 0 && ks.process_netlink()) {
        auto again = ks.reconcile(config, grants);
        std::printf("link back: %s\n",
                    again ? again->summary().c_str() : again.error().message.c_str());
        std::fflush(stdout);
      }
      if (g_again) {
        g_again = 0;
        auto again = ks.reconcile(config, grants);
        std::printf("again: %s\n",
                    again ? again->summary().c_str() : again.error().message.c_str());
        std::fflush(stdout);
      }
    }
  } else if (cmd == "bench") {
    return bench(config, ks);
  } else {
    std::fprintf(stderr, "unknown command %s\n", cmd.c_str());
    return 2;
  }
  return 0;
}
