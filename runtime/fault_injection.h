// Failure injection for tests: the environment variable ATTNRES_FAULT makes a
// chosen rank die (SIGKILL), hang, get a signal or a NaN gradient at a chosen
// point, so the supervisor, save on signal, the non-finite guard,
// watchdog and checkpoint recovery can be tested against real crashes.
//
//   ATTNRES_FAULT=rank=1,step=7,at=step,once=/tmp/x.marker
//
//   rank  world rank that fails (required)
//   step  step number, 1-based = optimizer steps done, as in the metrics and
//         the checkpoint directory names (required)
//   at    step              SIGKILL at the end of that step, before any checkpoint
//                           of that step is written
//         checkpoint_write  SIGKILL partway through writing that step's checkpoint
//         hang              sleep forever at the end of that step (the watchdog's case);
//                           step=0: during set-up, before the communicators are made
//         nan               make one gradient element of that step NaN (nan_fault_due)
//         sigterm, sigusr1, sigint
//                           send this signal to itself at the end of that step and
//                           go on (save on signal, runtime/stop_signal.h)
//   once  optional marker file: fail only if it does not exist, and create it
//         (fsynced) first, so the restarted job does not fail again there.
//
// Unset or empty: no faults. A malformed value is an error (std::runtime_error).
#pragma once
#include <optional>
#include <string>

namespace attnres {

struct FaultSpec {
  int rank = 0;
  int step = 0;
  std::string at;    // "step" | "checkpoint_write" | "hang" | "nan" | "sigterm" | "sigusr1" | "sigint"
  std::string once;  // marker path; empty = every time
};

// Parses an ATTNRES_FAULT value; nullopt for an empty one. Throws naming the
// value and what was expected.
std::optional<FaultSpec> parse_fault_spec(const std::string& text);

// The fault points. `where` is "step" (end of a step: at=step, hang and the signals),
// "setup" (step 0, before the communicators are made: hang and the signals) or
// "checkpoint_write" (inside the checkpoint writer, after the first tensor of
// the shard). Does nothing unless ATTNRES_FAULT names this rank, this point
// and this step. The rank is this process's MPI world rank, read from the
// launcher's environment (OMPI_COMM_WORLD_RANK, PMI_RANK; 0 without one), so
// any thread may call it. Throws on a malformed ATTNRES_FAULT.
void fault_point(const char* where, int step);

// True when ATTNRES_FAULT names this rank, at=nan and this step (claiming the
// once= marker): the trainer then poisons a gradient, to test the guard
// against non-finite states.
bool nan_fault_due(int step);

}  // namespace attnres
