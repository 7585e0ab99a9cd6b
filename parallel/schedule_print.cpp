#include "parallel/schedule_print.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace attnres {

namespace {

// What the timeline draws: compute, and the local copies (which take time
// only when the simulator was given a copy cost).
bool drawn(Op op) { return is_compute(op) || is_copy(op); }

// "F3", "i3", "w3", "B3", "c3" (a copy); with V > 1 the letter of the chunk
// among the rank's chunks: "F3b".
std::string cell_label(const Schedule& s, const Action& a) {
  std::string l;
  switch (a.op) {
    case Op::F: l = "F"; break;
    case Op::B: l = "B"; break;
    case Op::BI: l = "i"; break;
    case Op::BW: l = "w"; break;
    case Op::COPY_F:
    case Op::COPY_B: l = "c"; break;
    default: return "";
  }
  l += std::to_string(a.mb);
  if (s.V > 1) {
    const std::vector<int> mine = s.chunks_of(s.placement[size_t(a.chunk)]);
    l += char('a' + (std::find(mine.begin(), mine.end(), a.chunk) - mine.begin()));
  }
  return l;
}

}  // namespace

std::string format_actions(const Schedule& s) {
  std::string out;
  for (int r = 0; r < int(s.ranks.size()); r++) {
    out += "rank " + std::to_string(r) + ":\n";
    for (int i = 0; i < int(s.ranks[r].size()); i++)
      out += "  " + std::to_string(i) + "  " + to_string(s.ranks[r][i]) + "\n";
  }
  return out;
}

std::string format_timeline(const Schedule& s, const SimResult& sim) {
  // The cell is the shortest compute in the run, so no action disappears.
  double dt = std::numeric_limits<double>::infinity();
  size_t width = 1;
  for (const RankStats& st : sim.ranks)
    for (const TimedAction& t : st.timeline)
      if (drawn(t.action.op) && t.end > t.start) {
        dt = std::min(dt, t.end - t.start);
        width = std::max(width, cell_label(s, t.action).size());
      }
  if (!std::isfinite(dt)) return "";
  const int cells = int(std::ceil(sim.makespan / dt - 1e-9));
  const std::string rank_w = std::to_string(sim.ranks.size() - 1);

  std::string out;
  for (int r = 0; r < int(sim.ranks.size()); r++) {
    std::string name = std::to_string(r);
    out += "rank " + std::string(rank_w.size() - name.size(), ' ') + name + " |";
    size_t next = 0;  // timeline entries are in time order
    const auto& tl = sim.ranks[r].timeline;
    for (int k = 0; k < cells; k++) {
      const double mid = (k + 0.5) * dt;
      while (next < tl.size() && (!drawn(tl[next].action.op) || tl[next].end <= mid)) next++;
      std::string cell = ".";
      if (next < tl.size() && tl[next].start <= mid) cell = cell_label(s, tl[next].action);
      out += (k ? " " : "") + cell + std::string(width - cell.size(), ' ');
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    out += "\n";
  }
  return out;
}

static nlohmann::json chrome_trace(const Schedule& s, const SimResult& sim, double us_per_unit) {
  nlohmann::json events = nlohmann::json::array();
  for (int r = 0; r < int(sim.ranks.size()); r++) {
    events.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", r}, {"tid", 0},
                      {"args", {{"name", "rank " + std::to_string(r)}}}});
    for (const TimedAction& t : sim.ranks[r].timeline) {
      const Action& a = t.action;
      const bool took = t.end > t.start;
      const bool wait = (a.op == Op::RECV_F || a.op == Op::RECV_B) && took;
      const bool reduce = a.op == Op::REDUCE_GRADS && took;
      if (!drawn(a.op) && !wait && !reduce) continue;
      std::string name = wait ? std::string("wait ") + op_name(a.op) : op_name(a.op);
      if (a.mb >= 0) name += " mb" + std::to_string(a.mb);
      name += " c" + std::to_string(a.chunk);
      const char* cat = wait ? "wait" : reduce ? "reduce" : is_copy(a.op) ? "copy" : "compute";
      events.push_back({{"name", name},
                        {"cat", cat},
                        {"ph", "X"},
                        {"pid", r},
                        {"tid", reduce ? 1 : 0},  // reductions run beside the compute
                        {"ts", t.start * us_per_unit},
                        {"dur", (t.end - t.start) * us_per_unit},
                        {"args", {{"mb", a.mb}, {"chunk", a.chunk}, {"index", t.index}}}});
    }
  }
  return {{"traceEvents", events},
          {"displayTimeUnit", "ms"},
          {"otherData",
           {{"schedule", s.name}, {"P", s.P}, {"M", s.M}, {"V", s.V}, {"makespan", sim.makespan}}}};
}

void write_chrome_trace(const std::string& path, const Schedule& s, const SimResult& sim,
                        double us_per_unit) {
  std::ofstream f(path);
  if (!f) throw std::runtime_error("cannot open trace file '" + path + "' for writing");
  f << chrome_trace(s, sim, us_per_unit).dump() << "\n";
  if (!f) throw std::runtime_error("failed writing trace file '" + path + "'");
}

}  // namespace attnres
