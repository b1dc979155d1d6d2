// What policyd's control commands print: the text tables and the --json objects of
// grants, status, audit rows, profiles and doors (docs/knockgatectl.8).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/json.h"
#include "config/config.h"
#include "ipc/messages.h"
#include "policyd/policy.h"
#include "policyd/store.h"

namespace kg::policyd {

// What `status` shows besides the core's own counters.
struct StatusInfo {
  std::string version;
  int64_t pid = 0;
  int64_t uptime_s = 0;
  uint64_t events_received = 0;
  std::string kernel_features;
  std::vector<ipc::StatusEntry> policyd_extra;  // sessions, subscribers, seq, ...
  // captured's last StatusReply (policyd polls it); nullopt: not connected.
  std::optional<std::vector<ipc::StatusEntry>> captured;
  int64_t captured_age_ms = 0;  // how old that reply is
};

// ISO-8601 UTC with milliseconds: 2026-11-23T14:05:00.123Z.
std::string iso_time(int64_t ns);

void grant_json(json::Writer& w, const GrantRow& g, const GrantProfile* profile);
std::string grants_table(const std::vector<GrantRow>& rows);
// `{"grant":{...}}` or `VERB grant ID: SOURCE PROFILE until TIME`.
std::string one_grant(const GrantRow& g, const GrantProfile* profile, const char* verb, bool json);

std::string status_json(const StatusInfo& s, const PolicyCore& core);
std::string status_text(const StatusInfo& s, const PolicyCore& core);

// `more`: the page was full; the last row's id is where the next page starts.
std::string audit_json(const std::vector<AuditRecord>& rows, bool more);
std::string audit_text(const std::vector<AuditRecord>& rows, bool more);

std::string profiles_output(const config::Config& c, bool json);
std::string doors_output(const config::Config& c, bool json);

}  // namespace kg::policyd
