// Whole training steps of configs/small.yaml in each residual mode, with the
// same thread count throughout: tokens/s, MFU against the measured sgemm rate,
// and the step-time ratios of Block AttnRes and Full AttnRes to standard.
// Modes run in interleaved rounds so machine drift hits all of them alike.
//
//   build/bench/bench_step [CONFIG] [THREADS] [ROUNDS]
// Needs the prepared corpus (attnres data prepare) in the config's data.dir.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/peak.h"
#include "runtime/config.h"
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
  struct Mode {
    const char* name;
    std::string set;
    std::vector<double> tps, mfu;
  };
  const Config cfg = load_config(path, {});
  // Full AttnRes as N = L blocks, so a config that sets num_blocks needs no other change.
  std::vector<Mode> modes = {{"standard", "residual.mode=standard", {}, {}},
                             {"Block AttnRes (8 blocks)", "residual.num_blocks=8", {}, {}},
                             {"Full AttnRes (S = 1)", "residual.num_blocks=" + std::to_string(cfg.model.num_sublayers()), {}, {}}};
  const double peak = kernels::measure_sgemm_gflops(threads);
  TrainOptions opt;
  opt.quiet = true;
  opt.peak_gflops = peak;
  for (int r = 0; r < rounds; ++r)
    for (size_t k = 0; k < modes.size(); ++k) {
      Mode& m = modes[(k + size_t(r)) % modes.size()];  // rotate which mode goes first
      // 7 steps: the first is a warm-up; the result's rate is the median of the rest.
      std::vector<std::string> sets = {"train.steps=7", "train.warmup_steps=1", "train.eval_every=0",
                                       "train.threads=" + std::to_string(threads), m.set};
      const TrainResult res = train(load_config(path, sets), opt);
      m.tps.push_back(res.tokens_per_s);
      m.mfu.push_back(res.mfu);
    }
  std::printf("config %s, %d thread(s), %d rounds x 6 timed steps, %d tokens/step; sgemm peak %.1f GFLOP/s\n\n",
              path.c_str(), threads, rounds, cfg.train.micro_batch_size * cfg.model.seq_len * cfg.train.grad_accum, peak);
  std::printf("| mode | tokens/s (median) | MFU | step time / standard |\n|---|---|---|---|\n");
  const double base = median(modes[0].tps);
  for (const Mode& m : modes)
    std::printf("| %s | %.0f | %.1f%% | %.3f |\n", m.name, median(m.tps), 100.0 * median(m.mfu), base / median(m.tps));
  return 0;
}
