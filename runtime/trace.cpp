#include "runtime/trace.h"

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
int trace_row(const std::string& category) {
  if (category == "compute" || category == "copy") return 0;
  return category == "comm" ? 1 : 2;
}
}  // namespace

void write_trace(const std::string& path, const std::vector<TraceEvent>& events, int rank) {
  nlohmann::json ev = nlohmann::json::array();
  ev.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", rank}, {"args", {{"name", "rank " + std::to_string(rank)}}}});
  const char* threads[] = {"compute", "communication", "trainer"};
  for (int tid = 0; tid < 3; ++tid)
    ev.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", rank}, {"tid", tid}, {"args", {{"name", threads[tid]}}}});
  for (const TraceEvent& e : events)
    ev.push_back({{"name", e.name}, {"cat", e.category}, {"ph", "X"}, {"pid", rank}, {"tid", trace_row(e.category)},
                  {"ts", e.start_us}, {"dur", e.dur_us}});
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  std::ofstream f(path);
  if (!f) throw std::runtime_error(path + ": cannot open trace file for writing");
  f << nlohmann::json{{"traceEvents", ev}, {"displayTimeUnit", "ms"}}.dump() << "\n";
}

}  // namespace attnres
