#include "runtime/trainer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

#include "kernels/device.h"
#include "kernels/device_overhead.h"
#include "kernels/memory.h"
#include "kernels/ops.h"
#include "kernels/peak.h"
#include "models/chunk.h"
#include "parallel/executor.h"
#include "parallel/memory_plan.h"
#include "parallel/mpi_communicator.h"
#ifdef ATTNRES_WITH_CUDA
#include "parallel/cuda/nccl_communicator.h"
#endif
#include "parallel/partition.h"
#include "parallel/schedule.h"
#include "parallel/topology.h"
#include "runtime/checkpoint.h"
#include "runtime/comm_report.h"
#include "runtime/data.h"
#include "runtime/device_batch.h"
#include "runtime/durable_file.h"
#include "runtime/evaluate.h"
#include "runtime/fault_injection.h"
#include "runtime/host_memory.h"
#include "runtime/metrics.h"
#include "runtime/optimizer.h"
#include "runtime/safetensors.h"
#include "runtime/stop_signal.h"
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

int node_cores() { return std::max(1, int(std::thread::hardware_concurrency())); }

// train.threads = 0: this node's cores shared evenly by its ranks, so that
// `mpirun -np 4` on 2 cores does not run 8 spinning threads.
int threads_per_rank(const Communicator& node) { return std::max(1, node_cores() / node.size()); }

// Microbatches: their ids on the host, and in device memory as the executor takes them.
struct MicroBatches {
  std::vector<Batch> batches;
  std::vector<DeviceBatch> on_device;
  std::vector<const int32_t*> tokens, targets;
  // Checks the batches' ids and copies them to the device (the batches must
  // stay unchanged until the device's stream is synchronized).
  void load(const kernels::Device& dev, int vocab) {
    on_device.resize(batches.size());
    tokens.clear(), targets.clear();
    for (size_t i = 0; i < batches.size(); ++i) {
      on_device[i].load(dev, batches[i], vocab);
      tokens.push_back(on_device[i].inputs.data()), targets.push_back(on_device[i].targets.data());
    }
  }
};

// train.device, closed after everything allocated on it: the first member of Run.
struct OpenDevice {
  kernels::Device dev;
  OpenDevice() = default;
  OpenDevice(const OpenDevice&) = delete;
  OpenDevice& operator=(const OpenDevice&) = delete;
  ~OpenDevice() { kernels::close_device(dev); }
};

// Everything of one rank's run.
struct Run {
  OpenDevice device;
  const Config& cfg;
  Topology topo;
  Groups groups;
  std::unique_ptr<Communicator> node;  // the ranks on this machine
  TensorParallel tp;                    // this rank's shard of its chunks
  double tp_step_bytes = 0;             // sent in tp collectives by the last training step
  Partition part;
  std::unique_ptr<PipelineExecutor> exec;
  std::vector<AdamW> adam;           // per local chunk
  std::vector<size_t> global_index;  // per local tensor (chunk by chunk): index in the full model
  kernels::DeviceBuffer<double> norm_sums, norm_scratch;  // per local tensor; tensor_sum_squares' scratch
  size_t n_global_tensors = 0;
  int M = 0;                         // microbatches per pipeline per step
  // Bytes per step of each hop on this layout under the standard residual and
  // Full AttnRes, beside the measured ones in the metrics.
  std::vector<double> standard_hop_bytes, full_hop_bytes;
  uint64_t start_resident = 0;  // this process's resident set before MPI and any allocation
  double planned_bytes = 0;     // the memory plan of this rank, AdamW's moments included
  // Started before any communicator is made; stopped first, before they go.
  std::unique_ptr<Watchdog> watchdog;

  explicit Run(const Config& c) : cfg(c) {}
  bool is_logger() const { return topo.world_rank == 0; }
};

// ZeRO-1 with more than one dp rank: each updates its part of the parameters.
bool sharded(const Run& r) { return r.cfg.train.zero == 1 && r.cfg.parallel.dp > 1; }

// What the ranks that share this rank's memory need together: on CPUs every
// rank of the machine, on GPUs the ranks on its device (itself, unless
// ATTNRES_SHARE_GPU puts several there).
double shared_need(Run& r, bool gpu, double need) {
  const double mine[2] = {gpu ? double(r.device.dev.ordinal) : -1.0, need};
  double sum = 0;
  for (const std::string& rank : r.node->allgather(mine, sizeof mine)) {
    double other[2];
    std::memcpy(other, rank.data(), sizeof other);
    if (other[0] == mine[0]) sum += other[1];
  }
  return sum;
}

// NCCL communicators of two or more ranks that run collectives: the data
// group's sums and the tensor group's (the pipeline's only sends over edges,
// whose buffers exist before the check).
int collective_comms(const ParallelConfig& p) { return (p.dp > 1 ? 1 : 0) + (p.tp > 1 ? 1 : 0); }

// A model too large for the machine fails before the first allocation, with
// what one rank needs (the memory plan plus AdamW's moments, and on a GPU
// what CUDA, cuBLAS and NCCL take beside them) against what the ranks
// sharing this machine can still get (on GPUs: what its device has free).
// The ranks agree, so none waits on one that stopped.
void check_memory_fits(Run& r, const Schedule& sched, HopCaching caching) {
  const ModelConfig& m = r.cfg.model;
  const RankMemoryPlan plan = plan_rank_memory(m, r.part, sched, r.topo.coord.pp_idx,
                                               r.cfg.train.micro_batch_size, caching, r.tp,
                                               sharded(r) ? ZeroShard{r.topo.coord.dp_idx, r.cfg.parallel.dp} : ZeroShard{});
  const MemoryBytes& b = plan.total;
  r.planned_bytes = double(b.total());
  const bool gpu = r.device.dev.backend == kernels::Backend::CUDA;
  const kernels::DeviceOverhead cuda =
      gpu ? kernels::device_overhead(kernels::device_shape(r.device.dev),
                                     m.attnres() ? sources_at(m, m.num_sublayers()) : 0, collective_comms(r.cfg.parallel))
          : kernels::DeviceOverhead{};
  const double need = r.planned_bytes + double(cuda.total());
  const double share_need = shared_need(r, gpu, need);
  const double avail = gpu ? double(kernels::device_free_bytes(r.device.dev)) : double(available_host_bytes());
  const std::string sharing = share_need > need ? " (shared: its ranks need " + format_bytes(share_need) + ")" : "";
  const std::string where = gpu ? "its CUDA device " + std::to_string(r.device.dev.ordinal) + sharing + " has "
                                : "the " + std::to_string(r.node->size()) + " rank(s) on this machine need " +
                                      format_bytes(share_need) + " and ";
  const std::string runtime =
      gpu ? ", CUDA context growth " + format_bytes(double(cuda.context)) + ", cuBLASLt workspace " +
                format_bytes(double(cuda.gemm_workspace)) + ", NCCL buffers " + format_bytes(double(cuda.nccl)) +
                ", kernel stacks " + format_bytes(double(cuda.kernel_stacks))
          : "";
  std::string err;
  if (avail > 0 && share_need > avail)
    err = "not enough memory: rank " + std::to_string(r.topo.world_rank) + " needs " + format_bytes(need) +
          " (parameters " + format_bytes(double(b.params)) + ", gradients " + format_bytes(double(b.grads)) +
          ", optimizer " + format_bytes(double(b.adamw)) + ", activations " +
          format_bytes(double(b.acts)) + ", pipeline buffers " + format_bytes(double(b.hops + b.fixed)) + runtime +
          "); " + where + format_bytes(avail) +
          " is available; make the model, train.micro_batch_size or model.seq_len smaller, spread the "
          "layers over more machines (parallel.pp)" +
          (r.cfg.parallel.dp > 1 && !sharded(r) ? ", shard the optimizer state over dp (train.zero: 1)" : "") +
          " or recompute activations (train.recompute); `attnres plan` shows each rank's share";
  err = agree_on_error(*r.groups.world, err);
  if (!err.empty()) throw std::runtime_error(err);
}

// train.device: the CPU, or the CUDA device of this rank's place on its node
// (one rank per GPU, or several under ATTNRES_SHARE_GPU). Every failure is
// found before anything is allocated, and the ranks agree on it.
kernels::Device choose_device(Run& r) {
  if (r.cfg.train.device == "cpu") return kernels::Device{};
  std::string why, err;
  kernels::Device dev;
  try {
    const int n = kernels::cuda_device_count(&why);
    const int ordinal = n == 0 ? -1 : kernels::device_of_rank(r.node->rank(), r.node->size(), n, kernels::share_gpu(), &why);
    if (n == 0) err = "train.device: cuda: no usable CUDA device: " + why;
    else if (ordinal < 0) err = "train.device: cuda: " + why;
    else dev = kernels::open_device(kernels::Backend::CUDA, ordinal);
  } catch (const std::exception& e) {
    err = std::string("train.device: cuda: ") + e.what();
  }
  err = agree_on_error(*r.groups.world, err);
  if (!err.empty()) {
    kernels::close_device(dev);
    throw std::runtime_error(err);
  }
  dev.tf32 = r.cfg.train.tf32;
  return dev;
}

void setup(Run& r) {
  const ParallelConfig& p = r.cfg.parallel;
  const ModelConfig& m = r.cfg.model;
  r.start_resident = resident_bytes();
  init_mpi();
  const std::unique_ptr<Communicator> world = make_mpi_world();
  r.topo = make_topology(world->size(), world->rank(), p.dp, p.pp, p.tp);
  // Before the groups: making them waits on every peer, and NCCL's on the network.
  r.watchdog = std::make_unique<Watchdog>(r.cfg.train.watchdog_timeout, r.topo.world_rank);
  fault_point("setup", 0);
  r.M = r.cfg.train.grad_accum / p.dp;
  r.part = make_partition(m, p.pp, p.virtual_stages, p.layout);
  r.standard_hop_bytes = standard_hop_bytes(r.cfg, r.part);
  r.full_hop_bytes = full_attnres_hop_bytes(r.cfg, r.part);
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
  // One rank per pipeline sends no pipeline messages: no tags to encode.
  const TagSpace tags = p.pp > 1 ? TagSpace{std::max(r.M, r.cfg.train.eval_batches), r.part.num_chunks(), max_tensors}
                                 : TagSpace{};
  r.groups = make_mpi_groups(r.topo, tags);
  r.node = make_mpi_node();
  r.device.dev = choose_device(r);
#ifdef ATTNRES_WITH_CUDA
  // Hops, dp reductions and tp collectives move device buffers: over NCCL.
  if (r.device.dev.backend == kernels::Backend::CUDA) r.groups = make_nccl_groups(std::move(r.groups), r.device.dev, tags);
#endif
  r.tp = {{r.topo.coord.tp_idx, p.tp}, p.sequence_parallel && p.tp > 1, r.groups.tensor_collectives.get()};
  const HopCaching caching{p.caches_forward(), p.caches_backward()};
  check_memory_fits(r, sched, caching);
  r.exec = std::make_unique<PipelineExecutor>(m, r.part, std::move(sched), r.topo.coord.pp_idx,
                                              p.pp > 1 ? r.groups.pipeline.get() : nullptr,
                                              p.dp > 1 ? r.groups.data.get() : nullptr,
                                              r.cfg.train.micro_batch_size, r.cfg.train.seed, caching,
                                              r.device.dev, r.tp);
  const ParamLayout full = make_param_layout(m, 0, m.num_sublayers());
  r.n_global_tensors = full.tensors.size();
  if (sharded(r)) r.exec->data_parallel().shard();
  for (size_t i = 0; i < r.exec->chunks().size(); ++i) {
    Chunk& c = r.exec->chunks()[i];
    const GradPart part = r.exec->data_parallel().part(i);
    r.adam.emplace_back().init(c, part.begin, part.count);
    for (const TensorSpec& t : c.layout.tensors)
      r.global_index.push_back(size_t(full.find(t.name) - full.tensors.data()));
  }
  size_t scratch = 0;
  for (const Chunk& c : r.exec->chunks()) scratch = std::max(scratch, tensor_sum_squares_scratch(c.layout));
  r.norm_sums = kernels::DeviceBuffer<double>(r.device.dev, r.global_index.size());
  r.norm_scratch = kernels::DeviceBuffer<double>(r.device.dev, scratch);
}

// The global norm of the gradients (already summed over dp replicas by the
// executor's REDUCE_GRADS) from per-tensor partials summed in global tensor
// order (DESIGN §5). Every local tensor's sum of squares is made on the
// device, and the host reads them all at once: the step's one read for the
// norm (docs/CUDA.md).
double grad_norm(Run& r) {
  const std::vector<Chunk>& chunks = r.exec->chunks();
  for (size_t k = 0, i = 0; k < chunks.size(); i += chunks[k].layout.tensors.size(), ++k) {
    const GradPart part = r.exec->data_parallel().part(k);
    tensor_sum_squares(chunks[k].dev, r.norm_sums.data() + i, r.norm_scratch.data(), chunks[k].layout, part.grads,
                       part.begin, part.count);
  }
  const std::vector<double> sums = kernels::to_host(r.device.dev, r.norm_sums.data(), r.norm_sums.size());
  std::vector<double> partials(r.n_global_tensors, 0.0);
  size_t i = 0;
  for (const Chunk& c : chunks)  // a replicated tensor is the same on every tp rank: counted once
    for (size_t t = 0; t < c.layout.tensors.size(); ++t, ++i)
      partials[r.global_index[i]] = c.layout.tensors[t].sharded() || r.topo.coord.tp_idx == 0 ? sums[i] : 0.0;
  // Each tensor lives on one pipeline rank (its shards on the tp ranks); the others contribute exact zeros.
  if (r.cfg.parallel.tp > 1) r.groups.tensor->allreduce_sum(partials.data(), partials.size());
  if (r.cfg.parallel.pp > 1) r.groups.pipeline->allreduce_sum(partials.data(), partials.size());
  // ZeRO-1: each dp rank summed the squares of its part only.
  if (sharded(r)) r.groups.data->allreduce_sum(partials.data(), partials.size());
  return global_norm(partials);
}

// The last chunk's rank knows the loss; every rank gets it, summed over dp.
double share_loss(Run& r, double local_sum) {
  double v = r.exec->holds_last_chunk() ? local_sum : 0.0;
  if (r.cfg.parallel.pp > 1) r.groups.pipeline->allreduce_sum(&v, 1);
  if (r.cfg.parallel.dp > 1) r.groups.data->allreduce_sum(&v, 1);
  return v;
}

// Per world rank: bubble and bytes sent in tp collectives; per hop: bytes sent
// forward + backward (summed over ranks).
struct CommStats {
  std::vector<double> bubble;
  std::vector<double> hop_bytes;
  std::vector<double> tp_bytes;
  int tp = 1, dp = 1;
};
CommStats gather_comm_stats(Run& r) {
  CommStats s;
  s.tp = r.topo.tp, s.dp = r.topo.dp;
  s.bubble.assign(size_t(r.topo.world_size), 0.0);
  const double busy = r.exec->busy_seconds(), idle = r.exec->idle_seconds();
  s.bubble[size_t(r.topo.world_rank)] = busy + idle > 0 ? idle / (busy + idle) : 0.0;
  s.tp_bytes.assign(size_t(r.topo.world_size), 0.0);
  s.tp_bytes[size_t(r.topo.world_rank)] = r.tp_step_bytes;
  r.groups.world->allreduce_sum(s.tp_bytes.data(), s.tp_bytes.size());
  const auto& f = r.exec->fwd_bytes();
  const auto& b = r.exec->bwd_bytes();
  s.hop_bytes.assign(f.size(), 0.0);
  for (size_t c = 0; c < f.size(); ++c) s.hop_bytes[c] = double(f[c] + b[c]);
  r.groups.world->allreduce_sum(s.bubble.data(), s.bubble.size());
  r.groups.world->allreduce_sum(s.hop_bytes.data(), s.hop_bytes.size());
  return s;
}

std::string comm_log(const CommStats& s) {
  std::string out = " | bubble";
  char buf[64];
  for (double b : s.bubble) std::snprintf(buf, sizeof buf, " %.2f", b), out += buf;
  if (s.hop_bytes.size() > 1) out += " | hop MB";
  for (size_t c = 1; c < s.hop_bytes.size(); ++c)
    std::snprintf(buf, sizeof buf, " %.2f", s.hop_bytes[c] / s.dp / 1e6), out += buf;
  if (s.tp > 1) {  // per pipeline stage: its first rank (every tp rank of a stage sends the same)
    out += " | tp MB/rank";
    for (size_t w = 0; w < s.tp_bytes.size(); w += size_t(s.tp * s.dp))
      std::snprintf(buf, sizeof buf, " %.2f", s.tp_bytes[w] / 1e6), out += buf;
  }
  return out;
}

std::string comm_json(const CommStats& s, const Run& r) {
  std::vector<uint64_t> hops, standard, full;
  for (size_t c = 1; c < s.hop_bytes.size(); ++c) {
    hops.push_back(uint64_t(s.hop_bytes[c] / s.dp));
    standard.push_back(uint64_t(r.standard_hop_bytes[c]));
    full.push_back(uint64_t(r.full_hop_bytes[c]));
  }
  nlohmann::json j{{"bubble", s.bubble}, {"hop_bytes", hops}};
  if (!hops.empty()) j["hop_bytes_standard"] = standard, j["hop_bytes_full"] = full;
  if (s.tp > 1) j["tp_bytes"] = s.tp_bytes;  // per world rank
  const std::string text = j.dump();
  return text.substr(1, text.size() - 2);  // the members, to splice into the step's object
}

// The validation set is split between the dp replicas: replica i evaluates
// batches i, i + dp, ... The last, shorter batch is padded to
// micro_batch_size with masked rows, so every hop keeps its shape. Returns the
// real tokens of the whole set, the denominator of the val loss.
double validation_share(const TokenFile& f, const Config& cfg, const Coord& co, MicroBatches& out) {
  const TrainConfig& tc = cfg.train;
  std::vector<Batch> all = validation_batches(f, tc.micro_batch_size, cfg.model.seq_len, tc.eval_batches);
  if (tc.eval_every > 0 && all.size() < size_t(cfg.parallel.dp))
    throw std::runtime_error(f.path + ": its windows fill " + std::to_string(all.size()) +
                             " validation microbatch(es) of train.micro_batch_size = " +
                             std::to_string(tc.micro_batch_size) + ", fewer than the parallel.dp = " +
                             std::to_string(cfg.parallel.dp) +
                             " replicas that share them; use more validation data or train.eval_every: 0");
  double tokens = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    tokens += double(all[i].inputs.size());
    if (int(i % size_t(cfg.parallel.dp)) != co.dp_idx) continue;
    pad_batch(all[i], tc.micro_batch_size);
    out.batches.push_back(std::move(all[i]));
  }
  return tokens;
}

// The MFU denominator in FLOP/s, the sum over nodes of each node's peak in
// the run's precision: --peak-gflops (per node); on CPUs its GEMM rate
// (kernels::measure_cpu_peak_gflops), measured once by the node's first
// rank with all the node's cores while its other ranks wait asleep; on GPUs
// the sum of its ranks' cuBLAS rates, one GPU each.
double machine_peak_flops(Run& r, double given_gflops) {
  Communicator& node = *r.node;
  const kernels::DType precision = r.cfg.model.precision;
  double mine = 0.0;  // this rank's part of the world's sum
  if (given_gflops > 0) {
    mine = node.rank() == 0 ? given_gflops : 0.0;
  } else if (r.device.dev.backend == kernels::Backend::CUDA) {
    mine = kernels::measure_gemm_gflops(r.device.dev, 4096, precision);  // each rank its own GPU
  } else {
    node.barrier();  // every rank of the node is done with its set-up and waits asleep
    if (node.rank() == 0) mine = kernels::measure_cpu_peak_gflops(precision, node_cores());
    node.barrier();
  }
  r.groups.world->allreduce_sum(&mine, 1);
  return mine * 1e9;
}

// MFU is model FLOP/s over the peak, never above 1: a measured peak is a lower
// bound of what the machine can do, so a step that beats it (e.g. another job
// slowed the measurement) is reported at 100 %, and rank 0 says so once.
void warn_peak_beaten(int step, double achieved_flops, double peak_flops) {
  std::fprintf(stderr,
               "attnres: step %d ran at %.1f GFLOP/s, above the peak of %.1f GFLOP/s (a measured lower bound, "
               "or --peak-gflops): MFU is reported as 100%%\n",
               step, achieved_flops / 1e9, peak_flops / 1e9);
}

// The fp32 master weights of every local chunk, whole, in host memory: the
// one read of them by the export. Under ZeRO-1 their parts come to dp rank 0
// (collective over dp); elsewhere they are empty.
std::vector<std::vector<float>> masters_to_host(Run& r) {
  std::vector<std::vector<float>> out;
  for (size_t i = 0; i < r.exec->chunks().size(); ++i) {
    const Chunk& c = r.exec->chunks()[i];
    const AdamW& a = r.adam[i];
    std::vector<float>& whole = out.emplace_back();
    if (!sharded(r)) {
      if (r.topo.coord.dp_idx == 0) whole = kernels::to_host(c.dev, a.master, c.layout.total);
      continue;
    }
    if (r.topo.coord.dp_idx == 0) whole.resize(c.layout.total);
    gather_parts_to_root(*r.groups.data, c.dev, a.master, a.count(), whole.data(), c.layout.total);
  }
  return out;
}

// --export, on every rank: rank 0 writes the whole model. Each tensor comes to
// it, one at a time, from the ranks that hold it (dp_idx = 0 of its stage:
// every tp rank's shard, or tp rank 0's copy of a replicated tensor) by a
// gather in which the other ranks send nothing, and rank 0 puts the shards in
// place. No other rank ever holds the whole model, and nothing moves unless
// an export is asked for.
void export_model(Run& r, const std::string& path, kernels::DType dtype) {
  const ModelConfig& m = r.cfg.model;
  const Coord me = r.topo.coord;
  std::vector<ParamLayout> shards;  // the whole model as each tp rank holds it
  for (int t = 0; t < r.topo.tp; ++t) shards.push_back(make_param_layout(m, 0, m.num_sublayers(), {t, r.topo.tp}));
  const std::vector<std::vector<float>> masters = masters_to_host(r);
  std::vector<NamedTensor> out;
  for (const TensorSpec& t : make_param_layout(m, 0, m.num_sublayers()).tensors) {
    std::vector<float> mine;
    for (size_t i = 0; me.dp_idx == 0 && i < masters.size(); ++i)
      if (const TensorSpec* local = r.exec->chunks()[i].layout.find(t.name); local && (local->sharded() || me.tp_idx == 0))
        mine.assign(masters[i].begin() + long(local->offset), masters[i].begin() + long(local->offset + local->numel));
    const std::vector<std::string> got = r.groups.world->gather(mine.data(), mine.size() * sizeof(float), 0);
    if (!r.is_logger()) continue;
    NamedTensor& nt = out.emplace_back(NamedTensor{t.name, t.shape, std::vector<float>(t.numel)});
    size_t placed = 0;
    for (size_t w = 0; w < got.size(); ++w) {
      if (got[w].empty()) continue;
      const TensorSpec& shard = *shards[size_t(r.topo.coord_of(int(w)).tp_idx)].find(t.name);
      assert(got[w].size() == shard.numel * sizeof(float));
      shard_to_whole(nt.data.data(), shard, reinterpret_cast<const float*>(got[w].data()));
      placed += shard.numel;
    }
    assert(placed == t.numel && "every element has exactly one holder");
  }
  if (r.is_logger()) write_safetensors(path, out, m, dtype);
}

// Tokens of the step's global batch: micro_batch_size x grad_accum sequences.
double tokens_per_global_batch(const Config& cfg) {
  return double(cfg.train.micro_batch_size) * cfg.model.seq_len * cfg.train.grad_accum;
}

void print_header(const Run& r, double peak_flops, bool measured) {
  const ModelConfig& m = r.cfg.model;
  const ParallelConfig& p = r.cfg.parallel;
  std::printf("model: %zu parameters, %s residual", make_param_layout(m, 0, m.num_sublayers()).total,
              residual_mode_name(m.mode));
  if (m.attnres()) std::printf(", block size %d (%d blocks)", m.block_size, m.num_blocks());
  if (m.recompute != Recompute::None) std::printf(", recompute %s", recompute_name(m.recompute));
  const kernels::DType precision = m.precision;
  const std::string peak = !measured ? "--peak-gflops per node"
                           : r.device.dev.backend == kernels::Backend::CUDA
                               ? std::string("cuBLAS ") + kernels::dtype_name(precision) + " measured per GPU"
                               : kernels::cpu_gemm_engine(precision) + ", measured per node";
  std::printf(" | %s, hops %s | dp %d%s pp %d tp %d, %s, %d microbatches/pipeline | %d threads/rank | peak %.1f "
              "GFLOP/s (%s)\n",
              kernels::dtype_name(m.precision), kernels::dtype_name(m.hop_dtype), p.dp, sharded(r) ? " (ZeRO-1)" : "", p.pp,
              p.tp, p.schedule.c_str(), r.M, kernels::get_num_threads(), peak_flops / 1e9, peak.c_str());
  const TrainConfig& t = r.cfg.train;
  if (t.warmup_steps > t.steps)  // a short smoke run of a longer config: allowed, said once
    std::printf("note: train.warmup_steps %d > train.steps %d: the whole run is warm-up; the learning rate "
                "reaches %.3g of train.lr\n", t.warmup_steps, t.steps, double(t.steps) / t.warmup_steps);
}

// ATTNRES_FAULT at=nan: one NaN in the summed gradients this rank updates with.
void poison_gradient(const Chunk& c, const GradPart& part) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  if (part.count > 0) kernels::from_host(c.dev, part.grads, &nan, 1);
}

// Each rank's peak resident set against what `attnres plan` predicts for it
// (its memory plan, the token files it read, and what was resident before
// MPI and the first allocation), printed by the logger. CPU runs only: on a
// GPU the plan is device memory.
void report_resident_memory(Run& r, size_t data_bytes, bool log) {
  const double mine[2] = {double(peak_resident_bytes()),
                          double(r.start_resident) + r.planned_bytes + double(data_bytes)};
  const std::vector<std::string> all = r.groups.world->gather(mine, sizeof mine, 0);
  if (!log) return;
  std::string line = "memory: peak resident per rank, MiB (planned: memory plan + token files + resident at start):";
  char buf[64];
  for (size_t w = 0; w < all.size(); ++w) {
    double v[2];
    std::memcpy(v, all[w].data(), sizeof v);
    std::snprintf(buf, sizeof buf, " r%zu %.1f (%.1f)", w, v[0] / 1048576.0, v[1] / 1048576.0);
    line += buf;
  }
  std::printf("%s\n", line.c_str());
}

// One optimizer step (0-based `step`): this dp rank's microbatches through the
// pipeline (which also sums the gradients over dp), global-norm clip, AdamW.
// Returns step, loss, lr, norm.
StepMetrics optimizer_step(Run& r, const DataLoader& loader, MicroBatches& mbs, int step) {
  const TrainConfig& tc = r.cfg.train;
  const double tokens_per_step = tokens_per_global_batch(r.cfg);
  PipelineExecutor& exec = *r.exec;
  for (Chunk& c : exec.chunks()) kernels::zero(c.dev, c.grads.data(), c.grads.size());
  // This dp rank's share of the step's global microbatches, in order.
  for (int i = 0; i < r.M; ++i) {
    const uint64_t global_mb = uint64_t(step) * tc.grad_accum + uint64_t(r.topo.coord.dp_idx) * r.M + i;
    loader.fill(mbs.batches[size_t(i)], global_mb * tc.micro_batch_size);
  }
  mbs.load(r.device.dev, r.cfg.model.vocab_size);
  double loss_sum = 0.0;
  for (double l : exec.run(mbs.tokens, mbs.targets, float(1.0 / tokens_per_step))) loss_sum += l;  // mb order
  if (nan_fault_due(step + 1)) poison_gradient(exec.chunks().front(), exec.data_parallel().part(0));
  StepMetrics s;
  s.step = step + 1;
  s.grad_norm = grad_norm(r);
  s.loss = share_loss(r, loss_sum) / tokens_per_step;
  s.lr = lr_at(tc, step);
  // Both are the same on every rank: all skip (or stop) together.
  s.skipped = !std::isfinite(s.loss) || !std::isfinite(s.grad_norm);
  if (s.skipped) return s;
  const double t_opt = exec.trace_clock_us();
  const float clip = clip_factor(s.grad_norm, tc.grad_clip);
  for (size_t i = 0; i < exec.chunks().size(); ++i) {
    Chunk& c = exec.chunks()[i];
    const GradPart part = exec.data_parallel().part(i);
    if (clip != 1.0f) kernels::scale_inplace(c.dev, part.grads, clip, part.count);
    r.adam[i].step(c.layout, part.grads, float(s.lr), tc);
    chunk_write_weights(c, r.adam[i].master, part.begin, part.count);
  }
  exec.data_parallel().gather_parameters();
  exec.trace_span("AdamW", "optimizer", t_opt);
  return s;
}

// Never trains on a non-finite state (DESIGN §10): the step was not applied;
// stop (train.on_nonfinite: stop) or go on unless more than
// train.max_skipped_steps steps in a row were skipped. Throws to stop, before
// any checkpoint of the step is written.
void guard_nonfinite(const TrainConfig& tc, const StepMetrics& s, int in_a_row) {
  char what[160];
  std::snprintf(what, sizeof what, "step %d: loss %g, gradient norm %g: not finite; the update was not applied",
                s.step, printable(s.loss), printable(s.grad_norm));
  if (tc.on_nonfinite == "stop")
    throw std::runtime_error(std::string(what) +
                             "; stopping (train.on_nonfinite: stop; the checkpoints written before it are intact)");
  if (in_a_row > tc.max_skipped_steps)
    throw std::runtime_error(std::string(what) + "; " + std::to_string(in_a_row) +
                             " steps in a row skipped, more than train.max_skipped_steps = " +
                             std::to_string(tc.max_skipped_steps) + "; stopping");
}

// Outputs written only at the end (the export by rank 0, each rank's trace)
// fail now, not after training, on every rank alike.
void check_late_outputs(Run& r, const TrainOptions& opt) {
  std::string err = error_on_root(*r.groups.world, 0, [&] {
    if (!opt.export_path.empty()) check_export_writable(opt.export_path);
  });
  if (!err.empty()) throw std::runtime_error("--export: " + err);
  std::string mine;
  try {
    if (!opt.trace_path.empty()) check_writable(trace_path_for_rank(opt.trace_path, r.topo.world_rank));
  } catch (const std::exception& e) {
    mine = e.what();
  }
  err = agree_on_error(*r.groups.world, mine);
  if (!err.empty()) throw std::runtime_error("--trace: " + err);
}

// The ranks agree at a step boundary whether to stop on a signal: a SIGINT on
// any rank makes it the user's stop, else a SIGTERM, SIGUSR1 or SIGHUP a preemption.
// Returns the exit status that says which (runtime/stop_signal.h), or 0.
int agreed_stop(Run& r) {
  const int sig = received_stop_signal();
  double v[2] = {sig == SIGINT ? 1.0 : 0.0, sig != 0 && sig != SIGINT ? 1.0 : 0.0};
  if (r.topo.world_size > 1) r.groups.world->allreduce_sum(v, 2);
  return v[0] > 0 ? kInterruptedExitCode : v[1] > 0 ? kPreemptedExitCode : 0;
}

}  // namespace

TrainResult train(const Config& cfg, const TrainOptions& opt) {
  const ModelConfig& m = cfg.model;
  const TrainConfig& tc = cfg.train;
  if (opt.peak_gflops < 0)
    throw std::invalid_argument("--peak-gflops must be a positive number of GFLOP/s, got " +
                                (std::ostringstream() << opt.peak_gflops).str());
  install_stop_signals();
  Run r(cfg);
  setup(r);
  check_late_outputs(r, opt);
  kernels::set_num_threads(tc.threads > 0 ? tc.threads : threads_per_rank(*r.node));
  PipelineExecutor& exec = *r.exec;
  exec.enable_trace(!opt.trace_path.empty());
  Checkpointer ckpt({&cfg, &r.topo, &r.part, r.groups.world.get(), &exec.chunks(), &r.adam,
                     sharded(r) ? r.groups.data.get() : nullptr});
  const int first_step = ckpt.resume(opt.resume, opt.new_run);  // steps already done
  if (first_step > tc.steps)
    throw std::runtime_error("the checkpoint resumed is at step " + std::to_string(first_step) +
                             ", past train.steps = " + std::to_string(tc.steps) +
                             "; raise train.steps to train on from it");

  const TokenFile train_file(cfg.data.dir + "/train.bin");
  const TokenFile val_file(cfg.data.dir + "/val.bin");
  const DataLoader loader(train_file, tc.micro_batch_size, m.seq_len, tc.seed);
  MicroBatches val, mbs;
  const double val_tokens = validation_share(val_file, cfg, r.topo.coord, val);
  val.load(r.device.dev, m.vocab_size);
  mbs.batches.resize(size_t(r.M));

  const bool log = r.is_logger() && !opt.quiet;
  MetricsWriter metrics = opt.metrics_path.empty() || !r.is_logger() ? MetricsWriter()
                                                                : MetricsWriter(opt.metrics_path, first_step);
  const double peak_flops = machine_peak_flops(r, opt.peak_gflops);
  const double flops_per_token = model_flops_per_token(m);
  const double tokens_per_step = tokens_per_global_batch(cfg);
  if (log) print_header(r, peak_flops, opt.peak_gflops == 0);

  TrainResult res;
  res.steps = first_step;
  res.final_val_loss = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> tps, mfus;
  bool peak_beaten = false;
  std::vector<double> last_hop_bytes;  // of the last step, summed over dp replicas
  std::vector<double> last_tp_bytes;   // of the last step, per world rank
  int skipped_in_a_row = 0;            // non-finite steps not applied (train.on_nonfinite: skip)
  const auto run_start = std::chrono::steady_clock::now();
  for (int step = first_step; step < tc.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    const double t0_trace = exec.trace_clock_us();
    const double tp_bytes_before = r.groups.tensor_collectives ? r.groups.tensor_collectives->bytes_sent() : 0;
    StepMetrics s = optimizer_step(r, loader, mbs, step);
    skipped_in_a_row = s.skipped ? skipped_in_a_row + 1 : 0;
    if (s.skipped) {
      guard_nonfinite(tc, s, skipped_in_a_row);
      res.skipped_steps++;
    }
    if (r.groups.tensor_collectives) r.tp_step_bytes = r.groups.tensor_collectives->bytes_sent() - tp_bytes_before;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    s.tokens_per_s = tokens_per_step / secs;
    const double achieved = flops_per_token * s.tokens_per_s;
    if (achieved > peak_flops && !std::exchange(peak_beaten, true) && r.is_logger())
      warn_peak_beaten(s.step, achieved, peak_flops);
    s.mfu = std::min(1.0, achieved / peak_flops);
    if (r.topo.world_size > 1) {
      const CommStats cs = gather_comm_stats(r);
      last_hop_bytes = cs.hop_bytes;
      last_tp_bytes = cs.tp_bytes;
      s.extra_log = comm_log(cs);
      s.extra_json = comm_json(cs, r);
    }
    if (eval_due(tc, s.step)) {
      heartbeat();  // evaluation is a long phase of its own
      const double t_eval = exec.trace_clock_us();
      s.val_loss = share_loss(r, exec.forward_only(val.tokens, val.targets)) / val_tokens;
      exec.trace_span("evaluation", "eval", t_eval);
      res.final_val_loss = *s.val_loss;
    }
    s.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
    s.eta_s = s.elapsed_s / (step + 1 - first_step) * (tc.steps - step - 1);
    if (step > 0) tps.push_back(s.tokens_per_s), mfus.push_back(s.mfu);
    res.losses.push_back(s.loss);
    metrics.write(s);
    if (log && (s.step % std::max(tc.log_every, 1) == 0 || s.step == tc.steps || s.val_loss || s.skipped))
      std::printf("%s\n", format_log_line(s, tc.steps).c_str());
    heartbeat(s.step);
    fault_point("step", s.step);  // before this step's checkpoint is written
    res.steps = s.step;
    res.stop_status = s.step < tc.steps ? agreed_stop(r) : 0;
    const double t_ckpt = exec.trace_clock_us();
    if (res.stop_status) {
      ckpt.save_now(s.step);
      exec.trace_span("checkpoint (on signal)", "checkpoint", t_ckpt);
      exec.trace_span("step " + std::to_string(s.step), "step", t0_trace);
      break;
    }
    if (ckpt.after_step(s.step)) exec.trace_span("checkpoint", "checkpoint", t_ckpt);
    exec.trace_span("step " + std::to_string(s.step), "step", t0_trace);
  }
  ckpt.finish();
  res.world_rank = r.topo.world_rank;
  res.tokens_per_s = median(tps);
  res.mfu = median(mfus);
  if (log && (cfg.parallel.pp > 1 || cfg.parallel.tp > 1) && !last_hop_bytes.empty()) {
    for (double& b : last_hop_bytes) b /= cfg.parallel.dp;
    std::printf("%s", comm_table(cfg, r.part, exec.schedule().placement, last_hop_bytes, last_tp_bytes).c_str());
  }
  if (r.device.dev.backend == kernels::Backend::CPU)
    report_resident_memory(r, train_file.tokens.size() + val_file.tokens.size(), log);
  // A trace that fails this late (the disk filled) still leaves the export to be written.
  std::string trace_error;
  try {
    if (!opt.trace_path.empty()) write_trace(trace_path_for_rank(opt.trace_path, r.topo.world_rank), exec.trace(), r.topo.world_rank);
  } catch (const std::exception& e) {
    trace_error = e.what();
    std::fprintf(stderr, "attnres: --trace: %s; the other outputs are still written\n", e.what());
  }
  exec.data_parallel().wait_parameters();  // ZeRO-1's last all-gather ends before the run
  if (!opt.export_path.empty() && !res.stop_status) {
    export_model(r, opt.export_path, export_dtype(opt.export_dtype));
    if (log) std::printf("exported %s and %s\n", opt.export_path.c_str(), export_config_path(opt.export_path).c_str());
  }
  if (!trace_error.empty()) throw std::runtime_error("--trace: " + trace_error);
  return res;
}

}  // namespace attnres
