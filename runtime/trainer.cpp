#include "runtime/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>

#include "kernels/device.h"
#include "kernels/ops.h"
#include "kernels/peak.h"
#include "models/chunk.h"
#include "runtime/data.h"
#include "runtime/evaluate.h"
#include "runtime/metrics.h"
#include "runtime/optimizer.h"
#include "runtime/safetensors.h"

namespace attnres {

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

bool eval_due(const TrainConfig& t, int step) {  // step is 1-based
  return t.eval_every > 0 && (step % t.eval_every == 0 || step == t.steps);
}

}  // namespace

TrainResult train(const Config& cfg, const TrainOptions& opt) {
  const ModelConfig& m = cfg.model;
  const TrainConfig& tc = cfg.train;
  kernels::set_num_threads(tc.threads);

  const TokenFile train_file(cfg.data.dir + "/train.bin");
  const TokenFile val_file(cfg.data.dir + "/val.bin");
  const DataLoader loader(train_file, tc.micro_batch_size, m.seq_len, tc.seed);
  std::vector<Batch> val = validation_batches(val_file, tc.micro_batch_size, m.seq_len, tc.eval_batches);
  std::erase_if(val, [&](const Batch& b) { return b.B != tc.micro_batch_size; });

  Chunk model;
  chunk_init(model, m, 0, m.num_sublayers(), tc.micro_batch_size, tc.seed);
  ChunkActs acts;
  acts_init(acts, model);
  AdamW adam;
  adam.init(model.layout.total);
  MetricsWriter metrics = opt.metrics_path.empty() ? MetricsWriter() : MetricsWriter(opt.metrics_path);

  const double peak_flops = kernels::measure_sgemm_gflops(tc.threads) * 1e9;
  const double flops_per_token = model_flops_per_token(m);
  const size_t tokens_per_mb = size_t(tc.micro_batch_size) * m.seq_len;
  const double tokens_per_step = double(tokens_per_mb) * tc.grad_accum;
  if (!opt.quiet)
    std::printf("model: %zu parameters, %s residual%s | %d threads | peak (measured sgemm) %.1f GFLOP/s\n",
                model.layout.total, residual_mode_name(m.mode),
                m.attnres() ? (", block size " + std::to_string(m.block_size) + " (" +
                               std::to_string(m.num_blocks()) + " blocks)").c_str() : "",
                kernels::get_num_threads(), peak_flops / 1e9);

  // Gradient buffers of the output stream (every source), zeroed per microbatch.
  const int n_src = m.attnres() ? sources_at(m, m.num_sublayers()) : 0;
  std::vector<float> dstream(size_t(n_src) * tokens_per_mb * m.d_model);
  Batch batch;
  TrainResult res;
  res.final_val_loss = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> tps, mfus;

  for (int step = 0; step < tc.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    kernels::device_zero(model.dev, model.grads, model.layout.total);
    double loss_sum = 0.0;
    for (int mb = 0; mb < tc.grad_accum; ++mb) {
      loader.fill(batch, (uint64_t(step) * tc.grad_accum + mb) * tc.micro_batch_size);
      loss_sum += chunk_forward(model, acts, batch.inputs.data(), batch.targets.data(), Stream{});
      Stream dout, din;
      std::fill(dstream.begin(), dstream.end(), 0.0f);
      for (int s = 0; s < n_src; ++s) dout.sources.push_back(dstream.data() + size_t(s) * tokens_per_mb * m.d_model);
      chunk_backward_input(model, acts, batch.inputs.data(), batch.targets.data(),
                           float(1.0 / tokens_per_step), dout, din);
      chunk_backward_weight(model, acts);
    }
    const double norm = global_norm(tensor_sum_squares(model.layout, model.grads));
    const float clip = clip_factor(norm, tc.grad_clip);
    if (clip != 1.0f) kernels::scale_inplace(model.dev, model.grads, clip, model.layout.total);
    const float lr = lr_at(tc, step);
    adam.step(model.layout, model.params, model.grads, lr, tc);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    StepMetrics s;
    s.step = step + 1;
    s.loss = loss_sum / tokens_per_step;
    s.lr = lr;
    s.grad_norm = norm;
    s.tokens_per_s = tokens_per_step / secs;
    s.mfu = flops_per_token * s.tokens_per_s / peak_flops;
    if (eval_due(tc, s.step) && !val.empty()) {
      s.val_loss = mean_loss(model, acts, val);
      res.final_val_loss = *s.val_loss;
    }
    if (step > 0) tps.push_back(s.tokens_per_s), mfus.push_back(s.mfu);
    res.losses.push_back(s.loss);
    metrics.write(s);
    if (!opt.quiet && (s.step % std::max(tc.log_every, 1) == 0 || s.step == tc.steps || s.val_loss))
      std::printf("%s\n", format_log_line(s, tc.steps).c_str());
  }
  res.steps = tc.steps;
  res.tokens_per_s = median(tps);
  res.mfu = median(mfus);
  res.params.assign(model.params, model.params + model.layout.total);
  if (!opt.export_path.empty()) {
    write_safetensors(opt.export_path, named_tensors(model), m);
    if (!opt.quiet) std::printf("exported %s and %s\n", opt.export_path.c_str(), export_config_path(opt.export_path).c_str());
  }
  acts_free(acts, model);
  chunk_free(model);
  return res;
}

}  // namespace attnres
