#include "runtime/trace.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace attnres {

std::string trace_path_for_rank(const std::string& path, int rank) {
  const std::filesystem::path p(path);
  const std::string ext = p.has_extension() ? p.extension().string() : ".json";
  return (p.parent_path() / (p.stem().string() + ".rank" + std::to_string(rank) + ext)).string();
}

namespace {
// Row of an event: pipeline compute (and local copies), communication waits,
// or the trainer's phases (steps, optimizer, evaluation, checkpoints).
// Messages on the wire get rows of their own below (wire_rows).
int trace_row(const std::string& category) {
  if (category == "compute" || category == "copy") return 0;
  return category == "comm" ? 1 : 2;
}
constexpr int kFirstWireRow = 3;

// Messages overlap one another, so each takes the first wire row that is
// free at its start (rows kFirstWireRow, ...), in start order. Returns the
// row of every event (wire or not) and the number of wire rows.
std::vector<int> event_rows(const std::vector<TraceEvent>& events, int& wire_rows) {
  std::vector<int> rows(events.size());
  std::vector<size_t> wire;
  for (size_t i = 0; i < events.size(); ++i) {
    if (std::string(events[i].category) == "wire") wire.push_back(i);
    else rows[i] = trace_row(events[i].category);
  }
  std::stable_sort(wire.begin(), wire.end(), [&](size_t a, size_t b) { return events[a].start_us < events[b].start_us; });
  std::vector<double> busy_until;  // per wire row
  for (size_t i : wire) {
    size_t r = 0;
    while (r < busy_until.size() && busy_until[r] > events[i].start_us) ++r;
    if (r == busy_until.size()) busy_until.push_back(0);
    busy_until[r] = events[i].start_us + events[i].dur_us;
    rows[i] = kFirstWireRow + int(r);
  }
  wire_rows = int(busy_until.size());
  return rows;
}
}  // namespace

void write_trace(const std::string& path, const std::vector<TraceEvent>& events, int rank) {
  nlohmann::json ev = nlohmann::json::array();
  ev.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", rank}, {"args", {{"name", "rank " + std::to_string(rank)}}}});
  int wire_rows = 0;
  const std::vector<int> rows = event_rows(events, wire_rows);
  std::vector<std::string> threads = {"compute", "communication", "trainer"};
  for (int w = 0; w < wire_rows; ++w) threads.push_back("on the wire " + std::to_string(w + 1));
  for (size_t tid = 0; tid < threads.size(); ++tid)
    ev.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", rank}, {"tid", tid}, {"args", {{"name", threads[tid]}}}});
  for (size_t i = 0; i < events.size(); ++i) {
    const TraceEvent& e = events[i];
    ev.push_back({{"name", e.name}, {"cat", e.category}, {"ph", "X"}, {"pid", rank}, {"tid", rows[i]},
                  {"ts", e.start_us}, {"dur", e.dur_us}});
  }
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  std::ofstream f(path);
  if (!f) throw std::runtime_error(path + ": cannot open trace file for writing");
  f << nlohmann::json{{"traceEvents", ev}, {"displayTimeUnit", "ms"}}.dump() << "\n";
}

}  // namespace attnres
