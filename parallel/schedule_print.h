// Human- and tool-readable views of a schedule and its simulation:
// the raw action lists, a text timeline, and a Chrome trace (Perfetto).
#pragma once
#include <string>

#include "parallel/schedule.h"
#include "parallel/simulator.h"

namespace attnres {

// One numbered line per action, grouped by rank.
std::string format_actions(const Schedule& s);

// One line per rank; each cell is one time step (the smallest compute cost
// in the run) showing what runs at its midpoint: F3 forward, B3 backward,
// i3 / w3 input / weight gradient of microbatch 3, c3 a local copy (if
// copies cost time), '.' idle. With V > 1 a letter names the chunk among the
// rank's chunks (F3a = its first chunk, F3b = its second, …).
std::string format_timeline(const Schedule& s, const SimResult& sim);

// Writes a Chrome trace to `path`: one "X" event per compute action and
// local copy, per RECV wait that took time, and per REDUCE_GRADS that took
// time (on tid 1, beside the compute), pid = rank, ts/dur in microseconds
// (one cost unit = us_per_unit microseconds). Loads in Perfetto and
// chrome://tracing. Throws std::runtime_error naming the path if it cannot
// be written.
void write_chrome_trace(const std::string& path, const Schedule& s, const SimResult& sim,
                        double us_per_unit = 1000.0);

}  // namespace attnres
