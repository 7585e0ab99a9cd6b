// Whole training steps of configs/small.yaml in each residual mode and each
// precision (fp32, bf16), with the same thread count throughout: tokens/s,
// MFU against the measured peak of the precision, the step-time ratios of
// Block AttnRes and Full AttnRes to standard within a precision, and the
// bf16 / fp32 speed of each mode. Runs go in interleaved rounds so machine
// drift hits all of them alike.
//
//   build/bench/bench_step [CONFIG] [THREADS] [ROUNDS] [key=value]...
// (train.steps=N among them: N - 1 timed steps per mode and round, default 2)
// Needs the prepared corpus (attnres data prepare) in the config's data.dir.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
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

// THREADS or ROUNDS as given: a whole number >= lo, or an error naming it.
static int count_arg(const char* text, const char* what, int lo) {
  int v = 0;
  const char* end = text + std::strlen(text);
  const auto [p, ec] = std::from_chars(text, end, v);
  if (ec != std::errc() || p != end || v < lo)
    throw std::invalid_argument(std::string(what) + " '" + text + "': expected a whole number >= " + std::to_string(lo));
  return v;
}

static int run(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "configs/small.yaml";
  const int threads = argc > 2 ? count_arg(argv[2], "THREADS", 0) : 0;
  const int rounds = argc > 3 ? count_arg(argv[3], "ROUNDS", 1) : 3;
  const std::vector<std::string> overrides(argv + std::min(argc, 4), argv + argc);
  struct Mode {
    std::string name;
    std::string set;
    std::string precision;
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
  // Each residual mode in each precision; ratios compare modes within a precision.
  std::vector<Mode> modes;
  for (const char* precision : {"fp32", "bf16"}) {
    modes.push_back({"standard", "residual.mode=standard", precision, {}});
    modes.push_back({"Block AttnRes (" + blocks + " blocks)", "residual.num_blocks=" + blocks, precision, {}});
    modes.push_back({"Full AttnRes (S = 1)", "residual.num_blocks=" + std::to_string(cfg.model.num_sublayers()),
                     precision, {}});
  }
  const size_t per_precision = 3;
  // The peaks are measured before every round (a shared VM drifts) and the
  // medians are the MFU denominators: OpenBLAS's sgemm for fp32, oneDNN's
  // bf16 GEMM for bf16.
  std::vector<double> peak32, peak16;
  TrainOptions opt;
  opt.quiet = true;
  opt.peak_gflops = 1e9;  // MFU is recomputed below from tokens/s; a huge peak keeps train() quiet
  for (int r = 0; r < rounds; ++r) {
    peak32.push_back(kernels::measure_cpu_peak_gflops(kernels::DType::F32, threads));
    peak16.push_back(kernels::measure_cpu_peak_gflops(kernels::DType::BF16, threads));
    for (size_t k = 0; k < modes.size(); ++k) {
      Mode& m = modes[(k + size_t(r)) % modes.size()];  // rotate which mode goes first
      // 3 steps (or train.steps=N given): the first is a warm-up; the result's
      // rate is the median of the rest.
      std::vector<std::string> sets = {"train.steps=" + std::to_string(steps), "train.warmup_steps=1",
                                       "train.eval_every=0", "train.threads=" + std::to_string(threads), m.set,
                                       "train.precision=" + m.precision};
      sets.insert(sets.begin(), overrides.begin(), overrides.end());
      m.tps.push_back(train(load_config(path, sets), opt).tokens_per_s);
    }
  }
  std::printf("config %s, %d thread(s), %d rounds x %d timed steps, %d tokens/step; peaks (median of %d): "
              "fp32 sgemm %.1f, %s %.1f GFLOP/s\n\n",
              path.c_str(), threads, rounds, steps - 1, cfg.train.micro_batch_size * cfg.model.seq_len * cfg.train.grad_accum,
              rounds, median(peak32), kernels::cpu_gemm_engine(kernels::DType::BF16).c_str(), median(peak16));
  const double flops_per_token = model_flops_per_token(cfg.model);
  std::printf("| precision | mode | tokens/s (median) | MFU (peak of the precision) | step time / standard: median of "
              "per-round ratios (range) | tokens/s bf16 / fp32 (median of per-round ratios) |\n"
              "|---|---|---|---|---|---|\n");
  // Ratios: the median over rounds of each round's ratio, so that drift of
  // the shared machine between rounds cancels.
  auto round_ratios = [&](const Mode& num, const Mode& den) {
    std::vector<double> ratio;
    for (int r = 0; r < rounds; ++r) ratio.push_back(num.tps[size_t(r)] / den.tps[size_t(r)]);
    return ratio;
  };
  for (size_t i = 0; i < modes.size(); ++i) {
    const Mode& m = modes[i];
    const bool bf16 = i >= per_precision;
    const std::vector<double> ratio = round_ratios(modes[bf16 ? per_precision : 0], m);
    const double peak = median(bf16 ? peak16 : peak32);
    std::printf("| %s | %s | %.0f | %.1f%% | %.3f (%.3f-%.3f) |", m.precision.c_str(), m.name.c_str(), median(m.tps),
                100.0 * flops_per_token * median(m.tps) / (peak * 1e9), median(ratio),
                *std::min_element(ratio.begin(), ratio.end()), *std::max_element(ratio.begin(), ratio.end()));
    if (bf16) std::printf(" %.2f |\n", median(round_ratios(m, modes[i - per_precision])));
    else std::printf(" |\n");
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
    std::printf("usage: bench_step [CONFIG] [THREADS] [ROUNDS] [key=value]...\n"
                "Whole training steps of CONFIG (default configs/small.yaml) in each residual mode and\n"
                "precision; train.steps=N among the key=value overrides times N - 1 steps per mode and round.\n");
    return 0;
  }
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // a bad config or argument: its message, not std::terminate
    std::fprintf(stderr, "bench_step: error: %s\n", e.what());
    return 1;
  }
}
