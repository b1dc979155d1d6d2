#include "webd/stream_hub.h"

#include <vector>

namespace kg::webd {

uint64_t StreamHub::add(Sink sink) {
  const uint64_t id = next_id_++;
  for (const auto& f : history_) sink(f);
  sinks_.emplace(id, std::move(sink));
  return id;
}

void StreamHub::publish(std::string_view event, std::string_view data_json, bool keep) {
  std::string text;
  text.reserve(event.size() + data_json.size() + 16);
  text += "event: ";
  text += event;
  text += "\ndata: ";
  // data_json is serialised JSON: no raw newlines, so one data line.
  text += data_json;
  text += "\n\n";
  auto frame = std::make_shared<const std::string>(std::move(text));
  ++published_;
  if (keep) {
    history_.push_back(frame);
    if (history_.size() > kHistory) history_.pop_front();
  }
  // A sink may remove itself (its client is gone) while we iterate: copy the ids first.
  std::vector<uint64_t> ids;
  ids.reserve(sinks_.size());
  for (const auto& [id, s] : sinks_) ids.push_back(id);
  for (const uint64_t id : ids) {
    auto it = sinks_.find(id);
    if (it != sinks_.end()) it->second(frame);
  }
}

}  // namespace kg::webd
