#include "runtime/fault_injection.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "runtime/durable_file.h"

namespace attnres {

namespace {

[[noreturn]] void bad(const std::string& text, const std::string& why) {
  throw std::runtime_error("ATTNRES_FAULT='" + text + "': " + why +
                           " (expected e.g. rank=1,step=7,at=step[,once=/tmp/marker]; "
                           "at is step, checkpoint_write, hang, nan, sigterm, sigusr1 or sigint)");
}

int parse_int(const std::string& text, const std::string& key, const std::string& v) {
  int x = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc() || end != v.data() + v.size() || x < 0)
    bad(text, key + "='" + v + "' is not a non-negative integer");
  return x;
}

int env_rank() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"})
    if (const char* v = std::getenv(var)) return std::atoi(v);
  return 0;
}

// Creates the marker durably, so it survives the kill that follows; false if
// it already existed (the fault happened before). Only the failing rank
// claims it, so checking first and then creating cannot race.
bool claim_marker(const std::string& path) {
  if (std::filesystem::exists(path)) return false;
  try {
    write_file_durably(path, "");
  } catch (const std::runtime_error& e) {
    throw std::runtime_error("ATTNRES_FAULT: cannot create the once= marker: " + std::string(e.what()));
  }
  return true;
}

// The signal an at= value sends, or 0 for the other fault kinds.
int fault_signal(const std::string& at) {
  if (at == "sigterm") return SIGTERM;
  if (at == "sigusr1") return SIGUSR1;
  if (at == "sigint") return SIGINT;
  return 0;
}

const std::optional<FaultSpec>& env_spec() {
  static const std::optional<FaultSpec> spec = [] {
    const char* v = std::getenv("ATTNRES_FAULT");
    return parse_fault_spec(v ? v : "");
  }();
  return spec;
}

}  // namespace

std::optional<FaultSpec> parse_fault_spec(const std::string& text) {
  if (text.empty()) return std::nullopt;
  FaultSpec s;
  bool has_rank = false, has_step = false, has_at = false;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, comma - pos);
    pos = comma + 1;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) bad(text, "'" + item + "' is not key=value");
    const std::string key = item.substr(0, eq), val = item.substr(eq + 1);
    if (key == "rank") s.rank = parse_int(text, key, val), has_rank = true;
    else if (key == "step") s.step = parse_int(text, key, val), has_step = true;
    else if (key == "at") {
      if (val != "step" && val != "checkpoint_write" && val != "hang" && val != "nan" && !fault_signal(val))
        bad(text, "at='" + val + "' is not a fault point");
      s.at = val, has_at = true;
    } else if (key == "once") {
      if (val.empty()) bad(text, "once= needs a marker file path");
      s.once = val;
    } else {
      bad(text, "unknown key '" + key + "'");
    }
  }
  if (!has_rank) bad(text, "rank= is missing");
  if (!has_step) bad(text, "step= is missing");
  if (!has_at) bad(text, "at= is missing");
  return s;
}

bool nan_fault_due(int step) {
  const std::optional<FaultSpec>& s = env_spec();
  if (!s || s->at != "nan" || s->step != step || env_rank() != s->rank) return false;
  if (!s->once.empty() && !claim_marker(s->once)) return false;
  std::fprintf(stderr, "attnres: ATTNRES_FAULT: rank %d makes a gradient NaN in step %d\n", s->rank, step);
  return true;
}

void fault_point(const char* where, int step) {
  const std::string w(where);
  if (w != "step" && w != "checkpoint_write" && w != "setup") throw std::logic_error("fault_point: unknown point " + w);
  const std::optional<FaultSpec>& s = env_spec();
  if (!s || s->step != step || env_rank() != s->rank || s->at == "nan") return;
  const bool hang = s->at == "hang";
  const int sig = fault_signal(s->at);
  if ((hang || sig ? (step == 0 ? "setup" : "step") : s->at) != w) return;
  if (!s->once.empty() && !claim_marker(s->once)) return;
  const std::string when = w == "setup"  ? "during set-up"
                           : w == "step" ? "at the end of step " + std::to_string(step)
                                         : "inside the checkpoint write of step " + std::to_string(step);
  std::fprintf(stderr, "attnres: ATTNRES_FAULT: rank %d %s %s\n", s->rank,
               hang ? "hangs" : sig ? ("sends itself " + s->at).c_str() : "killed (SIGKILL)", when.c_str());
  std::fflush(stderr);
  if (sig) {
    ::raise(sig);
    return;
  }
  if (!hang) ::raise(SIGKILL);
  for (;;) ::pause();  // until the watchdog or mpirun ends the process
}

}  // namespace attnres
