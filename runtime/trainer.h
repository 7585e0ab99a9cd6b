// The training loop (DESIGN §4): loader -> microbatches -> forward/backward ->
// global grad-norm clip -> AdamW -> metrics, evaluation and export. The final
// parameters leave the ranks only through --export (and checkpoints).
#pragma once
#include <string>
#include <vector>

#include "runtime/config.h"

namespace attnres {

struct TrainOptions {
  std::string metrics_path;  // JSONL, one object per step
  std::string export_path;   // model.safetensors written at the end
  std::string export_dtype = "fp32";  // its element type: fp32 | bf16
  std::string trace_path;    // Chrome trace; rank r writes <stem>.rank<r>.json
  bool quiet = false;        // no per-step log lines
  double peak_gflops = 0;    // MFU denominator per node (> 0); 0 = measure each node's sgemm rate
  std::string resume;        // "" = fresh, "auto" or a checkpoint path (runtime/checkpoint.h)
  bool new_run = false;      // fresh, in a checkpoint.dir holding another run's checkpoints: set them aside
};

struct TrainResult {
  int world_rank = 0;
  int steps = 0;                 // optimizer steps done when train() returned
  int stop_status = 0;           // stopped early on a signal: the exit status (runtime/stop_signal.h)
  std::vector<double> losses;    // train loss of every step
  double final_val_loss = 0.0;   // last evaluation (NaN if none ran)
  double tokens_per_s = 0.0;     // median over the steps after the first
  double mfu = 0.0;              // median
  int skipped_steps = 0;         // updates not applied: non-finite loss or grad norm (on_nonfinite: skip)
};

TrainResult train(const Config& cfg, const TrainOptions& opt);

}  // namespace attnres
