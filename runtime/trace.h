// Chrome trace files (loadable in Perfetto / chrome://tracing), one per rank.
#pragma once
#include <string>
#include <vector>

#include "parallel/executor.h"

namespace attnres {

// "run/trace.json" -> "run/trace.rank3.json".
std::string trace_path_for_rank(const std::string& path, int rank);
// Writes complete ("X") events with pid = rank: tid 0 pipeline compute,
// tid 1 communication waits, tid 2 the trainer's phases (steps, AdamW,
// evaluation, checkpoints). Throws std::runtime_error naming the path.
void write_trace(const std::string& path, const std::vector<TraceEvent>& events, int rank);

}  // namespace attnres
