// `attnres train`: train a model from a YAML config.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "launch/commands.h"
#include "runtime/config.h"
#include "runtime/path_clash.h"
#include "runtime/safetensors.h"
#include "runtime/stop_signal.h"
#include "runtime/trace.h"
#include "runtime/trainer.h"

namespace attnres::cli {
namespace {

void print_stop(const TrainResult& r, const Config& cfg) {
  const bool preempted = r.stop_status == kPreemptedExitCode;
  std::printf("stopped after step %d of %d: %s; %s; exit status %d\n", r.steps, cfg.train.steps,
              preempted ? "preempted (SIGTERM, SIGUSR1 or SIGHUP)" : "interrupted by the user (SIGINT)",
              cfg.checkpoint.dir.empty()
                  ? "nothing saved (no checkpoint.dir)"
                  : ("checkpoint of step " + std::to_string(r.steps) + " saved in " + cfg.checkpoint.dir +
                     "; --resume auto continues from it")
                        .c_str(),
              r.stop_status);
}

// Only what there is to report: no val loss without an evaluation, no
// tokens/s from the first step alone (it includes the warm-up of buffers).
void print_summary(const TrainResult& r) {
  if (r.losses.empty()) {  // resumed at train.steps
    std::printf("summary: nothing to train: the checkpoint resumed is at step %d = train.steps\n", r.steps);
    return;
  }
  char buf[128];
  std::snprintf(buf, sizeof buf, "summary: steps %d | final train loss %.4f", r.steps, r.losses.back());
  std::string line = buf;
  if (std::isfinite(r.final_val_loss)) std::snprintf(buf, sizeof buf, " | val loss %.4f", r.final_val_loss), line += buf;
  if (r.tokens_per_s > 0)
    std::snprintf(buf, sizeof buf, " | %.0f tok/s | mfu %.1f%%", r.tokens_per_s, 100.0 * r.mfu), line += buf;
  if (r.skipped_steps) line += " | " + std::to_string(r.skipped_steps) + " skipped (non-finite)";
  std::printf("%s\n", line.c_str());
}

// Everything a run reads and writes: no output may overwrite another path.
std::vector<PathUse> train_paths(const std::string& config, const Config& cfg, const TrainOptions& o) {
  std::vector<PathUse> u{{"--config", config},
                         {"data.dir train.bin", cfg.data.dir + "/train.bin"},
                         {"data.dir val.bin", cfg.data.dir + "/val.bin"}};
  if (!cfg.checkpoint.dir.empty()) u.push_back({"checkpoint.dir", cfg.checkpoint.dir, true, true});
  if (!o.resume.empty() && o.resume != "auto") u.push_back({"--resume", o.resume, false, true});
  if (!o.metrics_path.empty()) u.push_back({"--metrics", o.metrics_path, true});
  if (!o.export_path.empty()) {
    u.push_back({"--export", o.export_path, true});
    u.push_back({"config.json of --export", export_config_path(o.export_path), true});
  }
  const int ranks = cfg.parallel.dp * cfg.parallel.pp * cfg.parallel.tp;
  for (int r = 0; r < ranks && !o.trace_path.empty(); ++r)
    u.push_back({"--trace of rank " + std::to_string(r), trace_path_for_rank(o.trace_path, r), true});
  return u;
}

}  // namespace

void add_train_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("train", "Train a model from a YAML config");
  struct Opts {
    std::string config;
    std::vector<std::string> sets;
    TrainOptions train;
    bool dry_run = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--config", o->config, "YAML config file (see docs/CONFIG.md)")->required();
  cmd->add_option("--set", o->sets, "Override a config key: --set train.steps=100 (repeatable)");
  cmd->add_option("--metrics", o->train.metrics_path, "Write one JSON object per step to this file");
  cmd->add_option("--export", o->train.export_path,
                  "Write the trained weights to this .safetensors file (and config.json beside it)");
  cmd->add_option("--export-dtype", o->train.export_dtype, "Element type of the --export file: fp32 or bf16")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->add_option("--trace", o->train.trace_path,
                  "Write a Chrome trace per rank (FILE.json -> FILE.rank<r>.json), loadable in Perfetto");
  cmd->add_option("--peak-gflops", o->train.peak_gflops,
                  "Peak GFLOP/s of one node (all its cores) for MFU (default: measure each node's sgemm rate "
                  "once; docs/MODEL.md)")
      ->check(number_in(0, true));
  cmd->add_flag("--dry-run", o->dry_run, "Print the resolved config and the plan (as `attnres plan`), then exit");
  CLI::Option* resume = cmd->add_option("--resume", o->train.resume,
                  "Resume from a checkpoint: 'auto' (the newest complete one in checkpoint.dir, falling back "
                  "to older ones; fresh if none) or a checkpoint directory (docs/CHECKPOINT.md)");
  cmd->add_flag("--new-run", o->train.new_run,
                "Start a new run in a checkpoint.dir that holds another run's checkpoints: they move to "
                "checkpoint.dir/previous_runs/<run id>/ (without it, such a dir is refused; docs/CHECKPOINT.md)");
  cmd->callback([o, resume] {
    if (resume->count() > 0 && o->train.resume.empty())
      throw std::invalid_argument("--resume '': expected 'auto' or a checkpoint directory");
    if (o->train.new_run && !o->train.resume.empty())
      throw std::invalid_argument("--new-run starts a new run and --resume continues one: give one of them");
    const Config cfg = load_config(o->config, o->sets);
    if (o->train.new_run && cfg.checkpoint.dir.empty())
      throw std::invalid_argument("--new-run: checkpoint.dir is not set, so there is no directory to start in");
    refuse_path_clashes(train_paths(o->config, cfg, o->train));
    if (o->dry_run) {
      std::printf("# resolved config\n%s\n", config_to_yaml(cfg).c_str());
      print_plan(o->config, o->sets);
      std::printf("\ndry run: nothing trained\n");
      return;
    }
    const TrainResult r = train(cfg, o->train);
    if (r.stop_status) {
      if (r.world_rank == 0) print_stop(r, cfg);
      throw ExitStatus{r.stop_status};
    }
    if (r.world_rank == 0) print_summary(r);
  });
}

}  // namespace attnres::cli
