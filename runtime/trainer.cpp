#include "runtime/trainer.h"

#include <mpi.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <thread>

#include "kernels/device.h"
#include "kernels/ops.h"
#include "kernels/peak.h"
#include "models/chunk.h"
#include "parallel/executor.h"
#include "parallel/mpi_communicator.h"
#include "parallel/partition.h"
#include "parallel/schedule.h"
#include "parallel/topology.h"
#include "runtime/checkpoint.h"
#include "runtime/comm_report.h"
#include "runtime/data.h"
#include "runtime/evaluate.h"
#include "runtime/fault_injection.h"
#include "runtime/metrics.h"
#include "runtime/optimizer.h"
#include "runtime/safetensors.h"
#include "runtime/trace.h"
#include "runtime/watchdog.h"

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

// MPI lives for the whole process: a program not started by mpirun is a world of one.
void ensure_mpi() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return;
  MPI_Init(nullptr, nullptr);
  std::atexit([] {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  });
}

// train.threads = 0: this node's cores shared evenly by its ranks, so that
// `mpirun -np 4` on 2 cores does not run 8 spinning threads.
int threads_per_rank() {
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int local_ranks = 1;
  MPI_Comm_size(node, &local_ranks);
  MPI_Comm_free(&node);
  const int cores = int(std::thread::hardware_concurrency());
  return std::max(1, cores / local_ranks);
}

// Tokens and targets of microbatches, as the executor takes them.
struct MicroBatches {
  std::vector<Batch> batches;
  std::vector<const int32_t*> tokens, targets;
  void point() {
    tokens.clear(), targets.clear();
    for (const Batch& b : batches) tokens.push_back(b.inputs.data()), targets.push_back(b.targets.data());
  }
};

// Everything of one rank's run.
struct Run {
  const Config& cfg;
  Topology topo;
  Groups groups;
  Partition part;
  std::unique_ptr<PipelineExecutor> exec;
  std::vector<AdamW> adam;           // per local chunk
  std::vector<size_t> global_index;  // per local tensor (chunk by chunk): index in the full model
  size_t n_global_tensors = 0;
  int M = 0;                         // microbatches per pipeline per step

  explicit Run(const Config& c) : cfg(c) {}
  bool is_logger() const { return topo.world_rank == 0; }
};

void setup(Run& r) {
  const ParallelConfig& p = r.cfg.parallel;
  const ModelConfig& m = r.cfg.model;
  ensure_mpi();
  int world_size = 1, world_rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  r.topo = make_topology(world_size, world_rank, p.dp, p.pp, p.tp);
  r.M = r.cfg.train.grad_accum / p.dp;
  r.part = make_partition(m, p.pp, p.virtual_stages, p.layout);
  Schedule sched;
  try {
    sched = make_schedule(p.schedule, p.pp, r.M, p.virtual_stages);
  } catch (const std::invalid_argument& e) {  // name the keys behind P, M and V
    throw ConfigError(std::string("parallel.schedule: ") + e.what() +
                      " (P = parallel.pp, M = train.grad_accum / parallel.dp, V = parallel.virtual_stages)");
  }
  int max_tensors = 1;
  for (int c = 1; c < r.part.num_chunks(); ++c)
    max_tensors = std::max(max_tensors, int(hop_payload(m, r.part, c, false).tensors.size()));
  TagSpace tags{std::max(r.M, r.cfg.train.eval_batches), r.part.num_chunks(), max_tensors};
  r.groups = make_mpi_groups(r.topo, tags);
  const bool cache = p.cross_stage_cache && p.virtual_stages >= 2;
  r.exec = std::make_unique<PipelineExecutor>(m, r.part, std::move(sched), r.topo.coord.pp_idx,
                                              p.pp > 1 ? r.groups.pipeline.get() : nullptr,
                                              p.dp > 1 ? r.groups.data.get() : nullptr,
                                              r.cfg.train.micro_batch_size, r.cfg.train.seed, cache);
  const ParamLayout full = make_param_layout(m, 0, m.num_sublayers());
  r.n_global_tensors = full.tensors.size();
  for (Chunk& c : r.exec->chunks()) {
    r.adam.emplace_back().init(c.layout.total);
    for (const TensorSpec& t : c.layout.tensors)
      r.global_index.push_back(size_t(full.find(t.name) - full.tensors.data()));
  }
}

// The global norm of the gradients (already summed over dp replicas by the
// executor's REDUCE_GRADS) from per-tensor partials summed in global tensor
// order (DESIGN §5).
double grad_norm(Run& r) {
  std::vector<double> partials(r.n_global_tensors, 0.0);
  size_t i = 0;
  for (Chunk& c : r.exec->chunks())
    for (double s : tensor_sum_squares(c.layout, c.grads)) partials[r.global_index[i++]] = s;
  // Each tensor lives on one pipeline rank; the others contribute exact zeros.
  if (r.cfg.parallel.pp > 1) r.groups.pipeline->allreduce_sum(partials.data(), partials.size());
  return global_norm(partials);
}

// The last chunk's rank knows the loss; every rank gets it, summed over dp.
double share_loss(Run& r, double local_sum) {
  double v = r.exec->holds_last_chunk() ? local_sum : 0.0;
  if (r.cfg.parallel.pp > 1) r.groups.pipeline->allreduce_sum(&v, 1);
  if (r.cfg.parallel.dp > 1) r.groups.data->allreduce_sum(&v, 1);
  return v;
}

// Per world rank: bubble; per hop: bytes sent forward + backward (summed over ranks).
struct CommStats {
  std::vector<double> bubble;
  std::vector<double> hop_bytes;
};
CommStats gather_comm_stats(Run& r) {
  CommStats s;
  s.bubble.assign(size_t(r.topo.world_size), 0.0);
  const double busy = r.exec->busy_seconds(), idle = r.exec->idle_seconds();
  s.bubble[size_t(r.topo.world_rank)] = busy + idle > 0 ? idle / (busy + idle) : 0.0;
  const auto& f = r.exec->fwd_bytes();
  const auto& b = r.exec->bwd_bytes();
  s.hop_bytes.assign(f.size(), 0.0);
  for (size_t c = 0; c < f.size(); ++c) s.hop_bytes[c] = double(f[c] + b[c]);
  r.groups.world->allreduce_sum(s.bubble.data(), s.bubble.size());
  r.groups.world->allreduce_sum(s.hop_bytes.data(), s.hop_bytes.size());
  return s;
}

std::string comm_log(const CommStats& s, int dp) {
  std::string out = " | bubble";
  char buf[64];
  for (double b : s.bubble) std::snprintf(buf, sizeof buf, " %.2f", b), out += buf;
  out += " | hop MB";
  for (size_t c = 1; c < s.hop_bytes.size(); ++c)
    std::snprintf(buf, sizeof buf, " %.2f", s.hop_bytes[c] / dp / 1e6), out += buf;
  return out;
}

std::string comm_json(const CommStats& s, int dp) {
  std::vector<uint64_t> hops;
  for (size_t c = 1; c < s.hop_bytes.size(); ++c) hops.push_back(uint64_t(s.hop_bytes[c] / dp));
  const std::string j = nlohmann::json{{"bubble", s.bubble}, {"hop_bytes", hops}}.dump();
  return j.substr(1, j.size() - 2);  // the members, to splice into the step's object
}

// The full model's parameters in global order, on every rank.
std::vector<float> gather_parameters(Run& r) {
  const ModelConfig& m = r.cfg.model;
  const ParamLayout full = make_param_layout(m, 0, m.num_sublayers());
  std::vector<float> out(full.total, 0.0f);
  if (r.topo.coord.dp_idx == 0 && r.topo.coord.tp_idx == 0)
    for (Chunk& c : r.exec->chunks())
      for (const TensorSpec& t : c.layout.tensors)
        std::copy_n(c.params + t.offset, t.numel, out.begin() + long(full.find(t.name)->offset));
  // Every element is owned by one rank; the others add exact zeros.
  if (r.topo.world_size > 1) r.groups.world->allreduce_sum(out.data(), out.size());
  return out;
}

// Tokens of the step's global batch: micro_batch_size x grad_accum sequences.
double tokens_per_global_batch(const Config& cfg) {
  return double(cfg.train.micro_batch_size) * cfg.model.seq_len * cfg.train.grad_accum;
}

void print_header(const Run& r, double peak_flops) {
  const ModelConfig& m = r.cfg.model;
  const ParallelConfig& p = r.cfg.parallel;
  std::printf("model: %zu parameters, %s residual", make_param_layout(m, 0, m.num_sublayers()).total,
              residual_mode_name(m.mode));
  if (m.attnres()) std::printf(", block size %d (%d blocks)", m.block_size, m.num_blocks());
  std::printf(" | dp %d pp %d tp %d, %s, %d microbatches/pipeline | %d threads/rank | peak (measured sgemm) %.1f GFLOP/s\n",
              p.dp, p.pp, p.tp, p.schedule.c_str(), r.M, kernels::get_num_threads(), peak_flops / 1e9);
}

// One optimizer step (0-based `step`): this dp rank's microbatches through the
// pipeline (which also sums the gradients over dp), global-norm clip, AdamW.
// Returns step, loss, lr, norm.
StepMetrics optimizer_step(Run& r, const DataLoader& loader, MicroBatches& mbs, int step) {
  const TrainConfig& tc = r.cfg.train;
  const double tokens_per_step = tokens_per_global_batch(r.cfg);
  PipelineExecutor& exec = *r.exec;
  for (Chunk& c : exec.chunks()) kernels::device_zero(c.dev, c.grads, c.layout.total);
  // This dp rank's share of the step's global microbatches, in order.
  for (int i = 0; i < r.M; ++i) {
    const uint64_t global_mb = uint64_t(step) * tc.grad_accum + uint64_t(r.topo.coord.dp_idx) * r.M + i;
    loader.fill(mbs.batches[size_t(i)], global_mb * tc.micro_batch_size);
  }
  mbs.point();
  double loss_sum = 0.0;
  for (double l : exec.run(mbs.tokens, mbs.targets, float(1.0 / tokens_per_step))) loss_sum += l;  // mb order
  StepMetrics s;
  s.step = step + 1;
  s.grad_norm = grad_norm(r);
  s.lr = lr_at(tc, step);
  const float clip = clip_factor(s.grad_norm, tc.grad_clip);
  for (size_t i = 0; i < exec.chunks().size(); ++i) {
    Chunk& c = exec.chunks()[i];
    if (clip != 1.0f) kernels::scale_inplace(c.dev, c.grads, clip, c.layout.total);
    r.adam[i].step(c.layout, c.params, c.grads, float(s.lr), tc);
  }
  s.loss = share_loss(r, loss_sum) / tokens_per_step;
  return s;
}

}  // namespace

TrainResult train(const Config& cfg, const TrainOptions& opt) {
  const ModelConfig& m = cfg.model;
  const TrainConfig& tc = cfg.train;
  Run r(cfg);
  setup(r);
  kernels::set_num_threads(tc.threads > 0 ? tc.threads : threads_per_rank());
  const Watchdog watchdog(tc.watchdog_timeout, r.topo.world_rank);
  PipelineExecutor& exec = *r.exec;
  exec.enable_trace(!opt.trace_path.empty());
  Checkpointer ckpt({&cfg, &r.topo, &r.part, r.groups.world.get(), &exec.chunks(), &r.adam});
  const int first_step = ckpt.resume(opt.resume);  // steps already done

  const TokenFile train_file(cfg.data.dir + "/train.bin");
  const TokenFile val_file(cfg.data.dir + "/val.bin");
  const DataLoader loader(train_file, tc.micro_batch_size, m.seq_len, tc.seed);
  MicroBatches val, mbs;
  val.batches = validation_batches(val_file, tc.micro_batch_size, m.seq_len, tc.eval_batches);
  std::erase_if(val.batches, [&](const Batch& b) { return b.B != tc.micro_batch_size; });
  val.point();
  mbs.batches.resize(size_t(r.M));

  const bool log = r.is_logger() && !opt.quiet;
  MetricsWriter metrics = opt.metrics_path.empty() || !r.is_logger() ? MetricsWriter()
                                                                : MetricsWriter(opt.metrics_path, first_step);
  const double peak_per_rank = opt.peak_gflops > 0 ? opt.peak_gflops : kernels::measure_sgemm_gflops(kernels::get_num_threads());
  const double peak_flops = peak_per_rank * 1e9 * r.topo.world_size;
  const double flops_per_token = model_flops_per_token(m);
  const double tokens_per_step = tokens_per_global_batch(cfg);
  if (log) print_header(r, peak_flops);

  TrainResult res;
  res.final_val_loss = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> tps, mfus;
  std::vector<double> last_hop_bytes;  // of the last step, summed over dp replicas
  for (int step = first_step; step < tc.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    StepMetrics s = optimizer_step(r, loader, mbs, step);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    s.tokens_per_s = tokens_per_step / secs;
    s.mfu = flops_per_token * s.tokens_per_s / peak_flops;
    if (r.topo.world_size > 1) {
      const CommStats cs = gather_comm_stats(r);
      last_hop_bytes = cs.hop_bytes;
      s.extra_log = comm_log(cs, cfg.parallel.dp);
      s.extra_json = comm_json(cs, cfg.parallel.dp);
    }
    if (eval_due(tc, s.step) && !val.batches.empty()) {
      heartbeat();  // evaluation is a long phase of its own
      const double sum = share_loss(r, exec.forward_only(val.tokens, val.targets)) / cfg.parallel.dp;
      s.val_loss = sum / (double(val.batches.size()) * tc.micro_batch_size * m.seq_len);
      res.final_val_loss = *s.val_loss;
    }
    if (step > 0) tps.push_back(s.tokens_per_s), mfus.push_back(s.mfu);
    res.losses.push_back(s.loss);
    metrics.write(s);
    if (log && (s.step % std::max(tc.log_every, 1) == 0 || s.step == tc.steps || s.val_loss))
      std::printf("%s\n", format_log_line(s, tc.steps).c_str());
    heartbeat(s.step);
    fault_point("step", s.step);  // before this step's checkpoint is written
    ckpt.after_step(s.step);
  }
  ckpt.finish();
  res.world_rank = r.topo.world_rank;
  res.steps = tc.steps;
  res.tokens_per_s = median(tps);
  res.mfu = median(mfus);
  res.params = gather_parameters(r);
  if (log && cfg.parallel.pp > 1 && !last_hop_bytes.empty()) {
    for (double& b : last_hop_bytes) b /= cfg.parallel.dp;
    std::printf("%s", comm_table(cfg, r.part, last_hop_bytes).c_str());
  }
  if (!opt.trace_path.empty()) write_trace(trace_path_for_rank(opt.trace_path, r.topo.world_rank), exec.trace(), r.topo.world_rank);
  if (!opt.export_path.empty() && r.is_logger()) {
    write_safetensors(opt.export_path, named_tensors(make_param_layout(m, 0, m.num_sublayers()), res.params.data()), m);
    if (log) std::printf("exported %s and %s\n", opt.export_path.c_str(), export_config_path(opt.export_path).c_str());
  }
  return res;
}

}  // namespace attnres
