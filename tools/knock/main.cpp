// knockgate-knock: knockd's `knock` client, plus doors from a config file, one-time
// sequences and --wait. See docs/knockgate-knock.1.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "knock/knock_client.h"
#include "knock/spa_client.h"

namespace {

constexpr const char* kProgram = "knockgate-knock";

void sleep_ms(int ms) {
  if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

int fail(const std::string& message) {
  std::cerr << kProgram << ": " << message << "\n";
  return 1;
}

// SPA mode (--spa, --key-gen): fwknop-compatible packets, see docs/spa.md.
int run_spa(const std::vector<std::string>& args) {
  using namespace kg::knockclient;
  auto parsed = parse_spa_command_line(args);
  if (!parsed) {
    std::cerr << kProgram << ": " << parsed.error().message << "\n"
              << "Try '" << kProgram << " --spa -h' for help.\n";
    return 1;
  }
  const SpaOptions& o = *parsed;
  if (o.help) {
    std::cout << spa_usage_text(kProgram);
    return 0;
  }
  if (o.key_gen) {
    const auto keys = kg::spa::generate_keys(o.keys.hmac_type);
    std::cout << "KEY_BASE64: " << keys.key_b64 << "\nHMAC_KEY_BASE64: " << keys.hmac_key_b64
              << "\n";
    return 0;
  }
  auto target = resolve(o.host, o.family == 4   ? FamilyWanted::v4
                                : o.family == 6 ? FamilyWanted::v6
                                                : FamilyWanted::any);
  if (!target) return fail(target.error().message);
  auto packet = build_spa_packet(o, target->ip);
  if (!packet) return fail(packet.error().message);
  if (o.test || o.verbose) std::cout << *packet << std::endl;
  if (o.test) return 0;
  auto sent = send_spa_packet(o, *packet);
  if (!sent) return fail(sent.error().message);
  if (o.verbose) std::cout << *sent << std::endl;
  return 0;
}

int run(const std::vector<std::string>& args) {
  using namespace kg::knockclient;
  if (wants_spa(args)) return run_spa(args);

  auto parsed = parse_command_line(args);
  if (!parsed) {
    std::cerr << kProgram << ": " << parsed.error().message << "\n"
              << "Try '" << kProgram << " -h' for help.\n";
    return 1;
  }
  const Options& o = *parsed;
  if (o.help) {
    std::cout << usage_text(kProgram);
    return 0;
  }
  if (o.version) {
    std::cout << kProgram << " " << KG_VERSION << "\n";
    return 0;
  }

  std::string host = o.host;
  std::vector<kg::Knock> hits = o.hits;
  int delay_ms = o.delay_ms.value_or(0);
  int wait_ms = o.wait_ms.value_or(0);
  FamilyWanted family = o.family.value_or(FamilyWanted::any);
  std::optional<OneTimePick> one_time;
  std::string one_time_file;

  if (o.config_file || o.door_name) {
    const std::string path = o.config_file.value_or(default_config_path());
    auto config = load_client_config(path);
    if (!config) return fail(config.error().message);
    auto picked = pick_door(*config, o.door_name);
    if (!picked) return fail(path + ": " + picked.error().message);
    const ClientDoor& door = **picked;
    if (host.empty()) host = door.host;
    if (host.empty()) {
      return fail("no host for door '" + door.name +
                  "': give one on the command line or "
                  "'host =' in " +
                  door.file + ":" + std::to_string(door.line));
    }
    if (!door.one_time_file.empty()) {
      auto pick = pick_one_time(door.one_time_file);
      if (!pick) return fail(pick.error().message);
      hits = pick->sequence;
      one_time = std::move(*pick);
      one_time_file = door.one_time_file;
    } else {
      hits = door.sequence;
    }
    if (!o.delay_ms && door.delay_ms) delay_ms = *door.delay_ms;
    if (!o.wait_ms && door.wait_ms) wait_ms = *door.wait_ms;
    if (!o.family && door.family) family = *door.family;
    bool any_tcp = false;
    for (const kg::Knock& k : hits) any_tcp = any_tcp || k.proto == kg::Proto::tcp;
    if (door.tcpflags && any_tcp && !plain_syn_satisfies(*door.tcpflags)) {
      std::cerr << kProgram << ": warning: door '" << door.name
                << "' has a tcpflags test that a plain SYN fails; its TCP hits will not "
                   "count (send them with hping3)\n";
    }
  }

  auto target = resolve(host, family);
  if (!target) return fail(target.error().message);

  for (const kg::Knock& hit : hits) {
    if (o.verbose) std::cout << hit_line(*target, hit) << std::endl;
    auto sent = send_hit(*target, hit);
    if (!sent) return fail(sent.error().message);
    sleep_ms(delay_ms);  // after every hit, the last one too, as knock does
  }

  if (one_time) {
    auto used = consume_one_time(one_time_file, *one_time);
    if (!used) return fail("knocked, but " + used.error().message);
    if (o.verbose) {
      std::cout << "marked line " << one_time->line << " of " << one_time_file << " used"
                << std::endl;
    }
  }
  if (wait_ms > 0) {
    if (o.verbose) std::cout << "waiting " << wait_ms << " ms" << std::endl;
    sleep_ms(wait_ms);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return run(args);
}
