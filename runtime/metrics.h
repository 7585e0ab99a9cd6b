// Per-step metrics: the log line, the JSONL metrics file, and MFU.
#pragma once
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>

#include "models/model_config.h"

namespace attnres {

// printf prints a NaN whose sign bit is set as "-nan"; a NaN's sign means
// nothing, so every NaN is printed as "nan".
inline double printable(double x) { return std::isnan(x) ? std::fabs(x) : x; }

struct StepMetrics {
  int step = 0;  // 1-based: the number of optimizer steps done
  double loss = 0, lr = 0, grad_norm = 0, tokens_per_s = 0, mfu = 0;
  double elapsed_s = 0;  // wall time since this run's first step began
  double eta_s = 0;      // the rest of the run at this run's mean step time (evaluation and checkpoints included)
  std::optional<double> val_loss;
  bool skipped = false;    // non-finite loss or grad norm: the update was not applied
  std::string extra_log;   // appended to the log line (e.g. bubble, bytes per hop)
  std::string extra_json;  // extra JSON members, e.g. "\"bubble\":[0.1,0.2]"
};

// Training FLOPs per token of the model (forward + backward = 3 x forward):
// 6 x (parameters in matrix multiplies, LM head included, embedding lookup
// excluded) + 6 x n_layers x seq_len x d_model for causal attention scores and
// values. The AttnRes depth attention is NOT counted: it is overhead the
// residual mode adds, so it shows as lower MFU.
double model_flops_per_token(const ModelConfig& m);

// "4:05", or "1:02:03" from an hour on.
std::string format_duration(double seconds);
std::string format_log_line(const StepMetrics& s, int total_steps);

// One JSON object per line: step, loss, lr, grad_norm, tokens_per_s, mfu,
// elapsed_s, eta_s, and val_loss on evaluation steps.
class MetricsWriter {
 public:
  MetricsWriter() = default;
  // Starts the file afresh, or on a resumed run (resumed_step > 0) keeps the
  // lines of steps up to resumed_step and appends after them, so the file
  // reads as one run. Throws naming the path.
  MetricsWriter(const std::string& path, int resumed_step);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  void write(const StepMetrics& s);

 private:
  std::FILE* f_ = nullptr;
};

}  // namespace attnres
