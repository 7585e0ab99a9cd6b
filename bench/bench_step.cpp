// Whole training steps of configs/small.yaml in each residual mode, with the
// same thread count throughout: tokens/s, MFU against the measured sgemm rate,
// and the step-time ratios of Block AttnRes and Full AttnRes to standard.
// Modes run in interleaved rounds so machine drift hits all of them alike.
//
//   build/bench/bench_step [CONFIG] [THREADS] [ROUNDS] [key=value]...
// (train.steps=N among them: N - 1 timed steps per mode and round, default 2)
// Needs the prepared corpus (attnres data prepare) in the config's data.dir.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/peak.h"
#include "runtime/config.h"
#include "runtime/metrics.h"
#include "runtime/trainer.h"

using namespace attnres;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "configs/small.yaml";
  const int threads = argc > 2 ? std::atoi(argv[2]) : 0;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
  const std::vector<std::string> overrides(argv + std::min(argc, 4), argv + argc);
  struct Mode {
    std::string name;
    std::string set;
    std::vector<double> tps;
  };
  const Config cfg = load_config(path, overrides);
  // More timed steps per mode and round steady the ratios on a noisy machine.
  const bool steps_given = std::any_of(overrides.begin(), overrides.end(),
                                       [](const std::string& o) { return o.rfind("train.steps=", 0) == 0; });
  const int steps = steps_given ? std::max(3, cfg.train.steps) : 3;
  // Full AttnRes as N = L blocks, so a config that sets num_blocks needs no other change.
  // Block AttnRes with the config's blocks (8 in small.yaml; residual.num_blocks=4 gives S = 4).
  const std::string blocks = std::to_string(cfg.model.attnres() ? cfg.model.num_blocks() : 8);
  std::vector<Mode> modes = {{"standard", "residual.mode=standard", {}},
                             {"Block AttnRes (" + blocks + " blocks)", "residual.num_blocks=" + blocks, {}},
                             {"Full AttnRes (S = 1)", "residual.num_blocks=" + std::to_string(cfg.model.num_sublayers()), {}}};
  // The sgemm rate is measured before every round (a shared VM drifts) and
  // the median is the MFU denominator.
  std::vector<double> peaks;
  TrainOptions opt;
  opt.quiet = true;
  opt.peak_gflops = 1e9;  // MFU is recomputed below from tokens/s; a huge peak keeps train() quiet
  for (int r = 0; r < rounds; ++r) {
    peaks.push_back(kernels::measure_sgemm_gflops(threads));
    for (size_t k = 0; k < modes.size(); ++k) {
      Mode& m = modes[(k + size_t(r)) % modes.size()];  // rotate which mode goes first
      // 3 steps (or train.steps=N given): the first is a warm-up; the result's
      // rate is the median of the rest.
      std::vector<std::string> sets = {"train.steps=" + std::to_string(steps), "train.warmup_steps=1",
                                       "train.eval_every=0", "train.threads=" + std::to_string(threads), m.set};
      sets.insert(sets.begin(), overrides.begin(), overrides.end());
      m.tps.push_back(train(load_config(path, sets), opt).tokens_per_s);
    }
  }
  const double peak = median(peaks);
  std::printf("config %s, %d thread(s), %d rounds x %d timed steps, %d tokens/step; sgemm peak (median of %d) %.1f GFLOP/s\n\n",
              path.c_str(), threads, rounds, steps - 1, cfg.train.micro_batch_size * cfg.model.seq_len * cfg.train.grad_accum,
              rounds, peak);
  const double flops_per_token = model_flops_per_token(cfg.model);
  std::printf("| mode | tokens/s (median) | MFU | step time / standard: median of per-round ratios (range) |\n|---|---|---|---|\n");
  // Step-time ratio: the median over rounds of each round's ratio, so that
  // drift of the shared machine between rounds cancels.
  for (const Mode& m : modes) {
    std::vector<double> ratio;
    for (int r = 0; r < rounds; ++r) ratio.push_back(modes[0].tps[size_t(r)] / m.tps[size_t(r)]);
    std::printf("| %s | %.0f | %.1f%% | %.3f (%.3f-%.3f) |\n", m.name.c_str(), median(m.tps),
                100.0 * flops_per_token * median(m.tps) / (peak * 1e9), median(ratio),
                *std::min_element(ratio.begin(), ratio.end()), *std::max_element(ratio.begin(), ratio.end()));
  }
  return 0;
}
