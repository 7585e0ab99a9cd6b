// `attnres plan`: what a config would do on a pipeline, without training:
// partition, parameters and activation memory per chunk, hop payload bytes for
// standard / Full AttnRes / Block AttnRes on the same layout (with and without
// cross-stage caching) next to the paper's Eq. 7/8, the simulated bubble, and
// each rank's device memory as the executor allocates it (parallel/memory_plan.h),
// and, given a link, the hops' communication time and the step time the
// simulator predicts with it (parallel/link_model.h).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "launch/commands.h"
#include "models/chunk.h"
#include "models/params.h"
#include "parallel/hop_payload.h"
#include "parallel/link_model.h"
#include "parallel/memory_plan.h"
#include "parallel/partition.h"
#include "parallel/tensor_group.h"
#include "parallel/schedule.h"
#include "parallel/simulator.h"
#include "runtime/config.h"
#include "runtime/host_memory.h"

namespace attnres::cli {

namespace {

std::string human(double v, const char* unit) {
  const char* prefix[] = {"", "K", "M", "G", "T", "P"};
  int i = 0;
  while (v >= 1000.0 && i < 5) v /= 1000.0, ++i;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f %s%s", v, prefix[i], unit);
  return buf;
}

std::string block_span(const ModelConfig& m, const ChunkRange& ch) {
  if (!m.attnres()) return "-";
  const int a = m.block_of(ch.first), b = m.block_of(ch.last - 1);
  std::string s = a == b ? std::to_string(a) : std::to_string(a) + "-" + std::to_string(b);
  if (ch.first % m.block_size != 0) s = "(" + s;  // starts inside a block
  if (ch.last % m.block_size != 0 && ch.last != m.num_sublayers()) s += ")";
  return s;
}

struct Variant {
  std::string name;
  ModelConfig model;
  HopCaching cache;
};

// What `plan` needs besides the config: the link and the compute time that
// the network model turns into a predicted step.
struct NetOpts {
  LinkModel link;
  double compute_ms = 0;  // measured step time without communication cost; 0 = not given
  double tflops = 0;      // or: sustained TFLOP/s per rank; 0 = not given
};

void print_network(const ModelConfig& m, const Partition& part, const Schedule& sched,
                   const std::vector<Variant>& variants, const NetOpts& net, int M, int b,
                   int tp, int hop_share);

// The config's model with the standard residual, as Full AttnRes (S = 1),
// and as Block AttnRes with its block size: the modes the plan compares.
struct ModeVariants {
  ModelConfig standard, full, block;
};
ModeVariants mode_variants(const ModelConfig& m) {
  ModeVariants v{m, m, m};
  v.standard.mode = ResidualMode::Standard;
  v.full.mode = v.block.mode = ResidualMode::AttnRes;
  v.full.block_size = 1;
  return v;
}

// Bytes of the token files a training rank reads whole into memory (0 for a
// file that is not there yet).
uint64_t data_file_bytes(const std::string& dir) {
  uint64_t n = 0;
  for (const char* f : {"train.bin", "val.bin"}) {
    std::error_code ec;
    const uintmax_t size = std::filesystem::file_size(std::filesystem::path(dir) / f, ec);
    if (!ec) n += uint64_t(size);
  }
  return n;
}

// Each rank's device memory (executor + optimizer) on this layout for each
// residual mode under each recompute setting: what blocks and recomputation
// save. Each mode gets the partition the trainer would give it.
void print_memory_by_mode(const Config& cfg, const Schedule& sched, HopCaching caching, const TensorParallel& tp,
                          ZeroShard zero) {
  const ParallelConfig& pc = cfg.parallel;
  ModeVariants v = mode_variants(cfg.model);
  const std::vector<std::pair<std::string, ModelConfig*>> modes = {
      {"standard", &v.standard}, {"Full AttnRes (S=1)", &v.full},
      {"Block AttnRes (S=" + std::to_string(v.block.block_size) + ")", &v.block}};
  const Recompute settings[] = {Recompute::None, Recompute::Selective, Recompute::Block, Recompute::Full};
  std::printf("\ndevice memory per rank (executor + optimizer) by residual mode and train.recompute, layout tp=%d x "
              "pp=%d x dp=%d%s (every dp replica and tp rank of a stage alike)\n",
              pc.tp, pc.pp, pc.dp, zero.parts > 1 ? ", ZeRO-1" : "");
  std::printf("%-24s %-5s", "mode", "rank");
  for (Recompute r : settings) std::printf(" %14s", recompute_name(r));
  std::printf("\n");
  for (const auto& [name, m] : modes) {
    const Partition part = make_partition(*m, pc.pp, pc.virtual_stages, pc.layout);  // once: costs ignore recompute
    for (int rank = 0; rank < pc.pp; ++rank) {
      std::printf("%-24s %-5d", rank == 0 ? name.c_str() : "", rank);
      for (Recompute r : settings) {
        if (r == Recompute::Block && !m->attnres()) {  // no blocks to recompute by
          std::printf(" %14s", "-");
          continue;
        }
        m->recompute = r;
        const MemoryBytes t = plan_rank_memory(*m, part, sched, rank, cfg.train.micro_batch_size, caching, tp, zero).total;
        std::printf(" %14s", format_bytes(double(t.total())).c_str());
      }
      std::printf("\n");
    }
  }
}

// The bubble of each rank, simulated with uniform chunk costs.
void print_bubble(const Schedule& sched) {
  const int P = sched.P, V = sched.V, M = sched.M;
  const SimResult sim = simulate(sched);
  if (!sim.ok()) throw std::runtime_error("schedule '" + sched.name + "' failed simulation: " + sim.errors.front());
  const SimCosts unit;
  std::printf("bubble    schedule %s simulated with uniform chunk costs (F=%g, B=%g, BI=%g, "
              "BW=%g, no latency; the simulator takes one cost per action kind, so the chunk "
              "imbalance above is not included)\n",
              sched.name.c_str(), unit.F, unit.B, unit.BI, unit.BW);
  double worst = 0;
  for (size_t r = 0; r < sim.ranks.size(); ++r) {
    const RankStats& rs = sim.ranks[r];
    worst = std::max(worst, rs.bubble);
    std::printf("  rank %zu: bubble %.4f, peak live (microbatch, chunk) %d\n", r, rs.bubble, rs.peak_live);
  }
  std::printf("  max bubble %.4f; theory: 1F1B (P-1)/(M+P-1) = %.4f, interleaved "
              "(P-1)/(V*M+P-1) = %.4f\n\n",
              worst, one_f_one_b_bubble(P, M), double(P - 1) / double(V * M + P - 1));
}

void run_plan(const std::string& path, const std::vector<std::string>& sets, const NetOpts& net) {
  // This binary's code and libraries, resident in a training rank too.
  const uint64_t runtime_bytes = resident_bytes();
  const Config cfg = load_config(path, sets);
  const ModelConfig& m = cfg.model;
  const ParallelConfig& pc = cfg.parallel;
  const int P = pc.pp, V = pc.virtual_stages, C = P * V, L = m.num_sublayers();
  const int M = pc.microbatches ? pc.microbatches : cfg.train.grad_accum / pc.dp;
  const int b = cfg.train.micro_batch_size;
  const double tokens = double(b) * m.seq_len;
  const Partition part = make_partition(m, P, V, pc.layout);  // validated by load_config
  // Every tp rank of a stage holds the same amount: plan for tp rank 0.
  const TensorParallel tp{{0, pc.tp}, pc.sequence_parallel && pc.tp > 1, nullptr};

  Schedule sched;
  try {
    sched = make_schedule(pc.schedule, P, M, V);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(path + ": parallel.schedule '" + pc.schedule + "' with pp=" +
                      std::to_string(P) + ", microbatches=" + std::to_string(M) +
                      ", virtual_stages=" + std::to_string(V) + ": " + e.what());
  }

  std::printf("plan for %s\n", path.c_str());
  std::printf("model     L=%d sublayers (%d transformer blocks), d=%d, heads=%d (hd %d), d_ff=%d, "
              "vocab=%d, T=%d\n",
              L, m.n_layers, m.d_model, m.n_heads, m.head_dim(), m.d_ff, m.vocab_size,
              m.seq_len);
  if (m.attnres())
    std::printf("residual  attnres, block size S=%d -> N=%d blocks (sources: b_0 + N blocks); each depth-attention "
                "site keeps %zu to %zu B per token (h, log-sum-exp, key rstd, and u . v of each of its 1 to N "
                "completed sources; the weights are recomputed from them in the backward)\n",
                m.block_size, m.num_blocks(), attnres_site_floats_per_token(m.d_model, 1) * sizeof(float),
                attnres_site_floats_per_token(m.d_model, m.num_blocks()) * sizeof(float));
  else
    std::printf("residual  standard\n");
  std::printf("attention %s (model.attention)%s\n", m.flash() ? "flash" : "materialized",
              m.flash() ? ": each attention keeps its rows' log-sum-exp [b, H, T], no probabilities"
                        : ": each attention keeps its probabilities [b, H, T, T]");
  std::printf("recompute %s (train.recompute)%s\n", recompute_name(m.recompute),
              m.recomputes_attention()
                  ? ": attention probabilities recomputed in the backward, one set held in the chunk's scratch"
              : m.recompute == Recompute::Full
                  ? ": a microbatch keeps its input and the outputs its chunk produced; the backward runs the "
                    "chunk's forward again in one arena the microbatches share"
                  : "");
  std::printf("pipeline  pp=%d x virtual_stages=%d = %d chunks, schedule %s, M=%d microbatches "
              "of %d x %d tokens per pipeline (dp=%d, tp=%d)\n",
              P, V, C, pc.schedule.c_str(), M, b, m.seq_len, pc.dp, pc.tp);
  std::printf("layout    %s\n\n", pc.layout.empty()
                                      ? (m.attnres() ? "default: cost-balanced on AttnRes block "
                                                       "boundaries"
                                                     : "default: cost-balanced on transformer-block "
                                                       "boundaries")
                                      : ("explicit \"" + pc.layout + "\"").c_str());

  // ---- partition -----------------------------------------------------------
  std::printf("%-5s %-4s %-11s %-9s %-5s %-4s %12s %14s %14s\n", "chunk", "rank", "sublayers",
              "blocks", "embed", "head", "params", "GFLOP/token", "act/microbatch");
  double max_cost = 0, sum_cost = 0;
  for (const ChunkRange& ch : part.chunks) {
    const ChunkFloats f = chunk_floats(m, ch.first, ch.last, b, tp);
    const double cost = double(chunk_cost(m, ch));
    max_cost = std::max(max_cost, cost);
    sum_cost += cost;
    const std::string range = "[" + std::to_string(ch.first) + "," + std::to_string(ch.last) + ")";
    std::printf("%-5d %-4d %-11s %-9s %-5s %-4s %12s %14.2f %14s\n", ch.index, sched.placement[size_t(ch.index)],
                range.c_str(), block_span(m, ch).c_str(), ch.has_embed ? "yes" : "-",
                ch.has_head ? "yes" : "-", human(double(f.grads), "").c_str(), cost / 1e9,  // a gradient per parameter
                format_bytes(double(f.acts) * sizeof(float)).c_str());  // the arena is a float buffer
  }
  std::printf("blocks: \"(\" = chunk starts inside a block, \")\" = ends inside one. GFLOP/token: "
              "training (fwd+bwd) cost model of parallel/partition.h; max/mean chunk cost = %.3f\n\n",
              max_cost / (sum_cost / C));

  // ---- hop payloads --------------------------------------------------------
  const auto [standard, full, block] = mode_variants(m);
  const std::string bs = "block S=" + std::to_string(block.block_size);
  // "+cache" as parallel.cached_grads says: with exact, the backward hops
  // still carry every source's gradient.
  const HopCaching cached{true, pc.cached_grads == "local"};
  const std::vector<Variant> variants = {{"standard", standard, {}},
                                         {"full S=1", full, {}},
                                         {"full+cache", full, cached},
                                         {bs, block, {}},
                                         {bs + "+cache", block, cached}};
  const double tensor_bytes = tokens * m.d_model * double(kernels::dtype_size(m.hop_dtype));
  std::printf("hop payloads per microbatch (tensors x [%d, %d, %d] %s = %s each); the backward "
              "hop carries the gradient of every forward tensor, so bwd = fwd, except under caching "
              "with parallel.cached_grads: exact (here: %s), where it carries every source's gradient\n",
              b, m.seq_len, m.d_model, kernels::dtype_name(m.hop_dtype), format_bytes(tensor_bytes).c_str(),
              pc.cached_grads.c_str());
  if (!m.attnres())
    std::printf("(the config is in standard mode, so \"block\" uses model.block_size = %d; compare "
                "with --set residual.mode=attnres --set residual.block_size=S)\n",
                m.block_size);
  std::printf("%-12s %-3s", "hop", "dir");
  for (const Variant& v : variants) std::printf(" %20s", v.name.c_str());
  std::printf("\n");
  std::vector<double> total(variants.size(), 0.0);
  for (int c = 1; c < C; ++c) {
    char hop[64];
    std::snprintf(hop, sizeof hop, "%d->%d r%d>r%d", c - 1, c, sched.placement[size_t(c - 1)],
                  sched.placement[size_t(c)]);
    for (const char* dir : {"fwd", "bwd"}) {
      std::printf("%-12s %-3s", dir[0] == 'f' ? hop : "", dir);
      for (size_t i = 0; i < variants.size(); ++i) {
        const HopCaching& k = variants[i].cache;
        const HopPayload h = hop_payload(variants[i].model, part, c, dir[0] == 'f' ? k.forward : k.backward);
        const double by = double(hop_bytes(variants[i].model, h, b));
        total[i] += by;
        std::printf(" %20s", (std::to_string(h.tensors.size()) + " / " + format_bytes(by)).c_str());
      }
      std::printf("\n");
    }
  }
  std::printf("%-16s", "per microbatch");
  for (double t : total) std::printf(" %20s", format_bytes(t).c_str());
  std::printf("\n%-16s", ("per step (x" + std::to_string(M) + ")").c_str());
  for (double t : total) std::printf(" %20s", format_bytes(t * M).c_str());
  std::printf("\n\n");

  // ---- closed forms ---------------------------------------------------------
  // The rule's exact counts (blocks only, then b_0) next to Eq. 7/8 with
  // N_p = N / C (exact when every chunk holds the same whole blocks).
  std::printf("closed forms, block summaries per microbatch crossing all hops forward (backward: "
              "the same, but rule+cache only with parallel.cached_grads: local, else rule), b_0 "
              "excluded; N_p = N / C\n");
  std::printf("%-12s %7s %10s %10s %10s %12s %12s %12s %6s\n", "variant", "N_p", "rule", "Eq.7",
              "rule+cache", "Eq.8 paper", "Eq.8 exact", "b_0 (nc/c)", "exact?");
  for (const ModelConfig* v : {&full, &block}) {
    const int S = v->block_size, N = v->num_blocks();
    bool uniform = L % S == 0 && N % C == 0;
    for (const ChunkRange& ch : part.chunks)
      uniform = uniform && ch.last - ch.first == L / C && ch.first % S == 0;
    const double Np = double(N) / C;
    const int64_t nc = total_source_tensors(*v, part, false, false);
    const int64_t wc = total_source_tensors(*v, part, true, false);
    const int64_t e_nc = total_source_tensors(*v, part, false, true) - nc;
    const int64_t e_wc = total_source_tensors(*v, part, true, true) - wc;
    char emb[32];
    std::snprintf(emb, sizeof emb, "%lld/%lld", (long long)e_nc, (long long)e_wc);
    std::printf("%-12s %7.3f %10lld %10.2f %10lld %12.2f %12.2f %12s %6s\n",
                ("S=" + std::to_string(S)).c_str(), Np, (long long)nc,
                paper_eq7_blocks(P, V, Np), (long long)wc, paper_eq8_blocks(P, V, Np),
                exact_eq8_blocks(P, V, Np), emb, uniform ? "yes" : "no");
  }
  std::printf("(\"exact?\" = every chunk holds N_p whole blocks, where rule = Eq.7 and rule+cache "
              "= Eq.8 exact; Eq.8 as printed overcounts by (V-1)*P*N_p; docs/PARALLEL.md)\n"
              "bytes = count x %s per microbatch\n\n",
              format_bytes(tensor_bytes).c_str());

  // ---- bubble ---------------------------------------------------------------
  // A layout beyond the simulator's limits is still planned, without the bubble and the network.
  const std::string too_large = simulation_limit_error(P, V, M);
  if (!too_large.empty()) std::printf("bubble    not simulated: %s\n\n", too_large.c_str());
  else print_bubble(sched);

  // ---- network model ----------------------------------------------------------
  if (net.link.enabled() && too_large.empty())
    print_network(m, part, sched, variants, net, M, b, pc.tp, tp.sequence_parallel ? pc.tp : 1);

  // ---- memory per rank -------------------------------------------------------
  const HopCaching caching{pc.caches_forward(), pc.caches_backward()};  // as the trainer runs it
  // ZeRO-1: dp rank 0 holds the largest part (split_evenly), one float more at most.
  const ZeroShard zero{0, cfg.train.zero == 1 ? pc.dp : 1};
  std::printf("device memory per rank (%s) as the executor allocates it (parallel/memory_plan.h), for each "
              "pipeline stage; every dp replica and tp rank of a stage holds the same (tp = %d%s)\n"
              "slots = peak live microbatches of the chunk (+ 1 past chunk 0, for an input arriving early); acts = slots x arena; hops = slots x "
              "receive/gradient buffers (+ bf16 wire buffers with bf16 hops); fixed = RoPE tables + backward scratch; "
              "params = the weights the chunks read (fp32; or bf16, with gains and pseudo-queries widened to fp32); "
              "optimizer = AdamW m, v (+ the fp32 masters in bf16) = 2 (3) x 4 bytes x parameters%s\n"
              "cpu rss = what a rank of a CPU run holds resident: total + the token files it reads (%s in %s) "
              "+ this binary's code and libraries (%s resident as the plan starts)\n",
              kernels::dtype_name(m.precision), pc.tp, tp.sequence_parallel ? ", sequence parallel" : "",
              zero.parts > 1 ? " / dp (train.zero: 1; grads add the summed gradients of the rank's part)"
                             : "",
              format_bytes(double(data_file_bytes(cfg.data.dir))).c_str(), cfg.data.dir.c_str(),
              format_bytes(double(runtime_bytes)).c_str());
  std::printf("%-4s %-22s %10s %10s %10s %10s %10s %10s %10s %10s %10s\n", "rank", "chunks (slots)", "params",
              "grads", "optimizer", "acts", "hops", "fixed", "executor", "total", "cpu rss");
  for (int r = 0; r < P; ++r) {
    const RankMemoryPlan plan = plan_rank_memory(m, part, sched, r, b, caching, tp, zero);
    std::string chunks;
    for (const ChunkMemoryPlan& ch : plan.chunks)
      chunks += (chunks.empty() ? "" : " ") + std::to_string(ch.chunk) + "(" + std::to_string(ch.slots) + ")";
    const MemoryBytes& t = plan.total;
    const double total = double(t.total());
    std::printf("%-4d %-22s %10s %10s %10s %10s %10s %10s %10s %10s %10s\n", r, chunks.c_str(),
                format_bytes(double(t.params)).c_str(), format_bytes(double(t.grads)).c_str(),
                format_bytes(double(t.adamw)).c_str(), format_bytes(double(t.acts)).c_str(),
                format_bytes(double(t.hops)).c_str(), format_bytes(double(t.fixed)).c_str(),
                format_bytes(double(t.executor())).c_str(), format_bytes(total).c_str(),
                format_bytes(total + double(data_file_bytes(cfg.data.dir) + runtime_bytes)).c_str());
  }

  print_memory_by_mode(cfg, sched, caching, tp, zero);

  // ---- communication per rank -------------------------------------------------
  // What one rank sends per step: its share of each hop it sends on (1/tp of
  // the token rows under sequence parallelism, else the whole payload), and
  // its tensor-parallel collectives (ring model, parallel/tensor_group.h).
  const int hop_share = tp.sequence_parallel ? pc.tp : 1;
  std::printf("\ncommunication per step, sent by one rank of each stage (dp = %d replicas alike)\n", pc.dp);
  std::printf("%-4s %14s %14s %18s\n", "rank", "hops fwd", "hops bwd", "tp collectives");
  for (int r = 0; r < P; ++r) {
    double fwd = 0, bwd = 0;
    std::vector<ChunkRange> mine;
    for (const ChunkRange& ch : part.chunks) {
      if (sched.placement[size_t(ch.index)] != r) continue;
      mine.push_back(ch);
      if (ch.index + 1 < C)
        fwd += double(M) * double(hop_bytes(m, hop_payload(m, part, ch.index + 1, caching.forward), b)) / hop_share;
      if (ch.index > 0)
        bwd += double(M) * double(hop_bytes(m, hop_payload(m, part, ch.index, caching.backward), b)) / hop_share;
    }
    std::printf("%-4d %14s %14s %18s\n", r, format_bytes(fwd).c_str(), format_bytes(bwd).c_str(),
                format_bytes(tp_step_bytes(m, mine, M, b, tp)).c_str());
  }
}

// Per variant: bytes each pipeline rank pair exchanges per step, the time
// the hops take on the link one after another (fwd + bwd, M microbatches),
// and the step the simulator predicts with compute and hops overlapping.
// Compute per (microbatch, chunk): F = u, B = 2u (BI = BW = u), the same for
// every variant; u comes from --compute-ms (the step simulated without link
// costs equals it) or from --tflops (the most expensive chunk's training
// FLOPs, fwd + bwd = 3u, shared by the tp ranks). Tensor-parallel collectives
// and the dp all-reduce are not in the predicted step.
void print_network(const ModelConfig& m, const Partition& part, const Schedule& sched,
                   const std::vector<Variant>& variants, const NetOpts& net, int M, int b,
                   int tp, int hop_share) {
  const int C = sched.num_chunks();
  double u = 0;
  std::string from;
  if (net.compute_ms > 0) {
    u = net.compute_ms * 1e-3 / simulate(sched, SimCosts{1, 2, 1, 1, 0}).makespan;
    from = "--compute-ms " + std::to_string(net.compute_ms);
  } else if (net.tflops > 0) {
    double worst = 0;
    for (const ChunkRange& ch : part.chunks) worst = std::max(worst, double(chunk_cost(m, ch)));
    u = worst * double(b) * m.seq_len / tp / (net.tflops * 1e12) / 3;  // a tp rank does 1/tp
    from = "--tflops " + std::to_string(net.tflops) + " and the slowest chunk's FLOPs";
  }
  std::printf("network   alpha-beta link: %g Gbit/s, %g us per hop message (parallel/link_model.h); "
              "one link per direction between each pair of pipeline ranks%s\n",
              net.link.gbps, net.link.latency_us,
              hop_share > 1 ? "; under sequence parallelism each tp rank sends 1/tp of a hop on its own link" : "");
  if (u > 0)
    std::printf("compute   per (microbatch, chunk) F = %.3f ms, B = %.3f ms (from %s), the same for "
                "every variant\n", u * 1e3, 2 * u * 1e3, from.c_str());
  else
    std::printf("compute   not given (--compute-ms or --tflops): step times below are communication only\n");
  std::printf("%-16s %14s %16s %14s %10s\n", "variant", "hop bytes/step", "comm s/step", "step s", "bubble");
  for (const Variant& v : variants) {
    SimCosts k{u, 2 * u, u, u, 0};
    k.sends_in_flight = m.sends_in_flight;
    k.hop.assign(size_t(C), 0.0);
    k.hop_bwd.assign(size_t(C), 0.0);
    double bytes_step = 0, comm = 0;
    for (int c = 1; c < C; ++c) {
      if (sched.placement[size_t(c - 1)] == sched.placement[size_t(c)]) continue;  // a local copy
      const int64_t fwd = hop_bytes(v.model, hop_payload(v.model, part, c, v.cache.forward), b) / hop_share;
      const int64_t bwd = hop_bytes(v.model, hop_payload(v.model, part, c, v.cache.backward), b) / hop_share;
      k.hop[size_t(c)] = hop_seconds(net.link, fwd);
      k.hop_bwd[size_t(c)] = hop_seconds(net.link, bwd);
      bytes_step += double(M) * double(fwd + bwd);
      comm += double(M) * (k.hop[size_t(c)] + k.hop_bwd[size_t(c)]);
    }
    const SimResult r = simulate(sched, k);
    double bubble = 0;
    for (const RankStats& rs : r.ranks) bubble = std::max(bubble, rs.bubble);
    char bub[16] = "-";  // without compute every rank only waits
    if (u > 0) std::snprintf(bub, sizeof bub, "%.4f", bubble);
    std::printf("%-16s %14s %16.4f %14.4f %10s\n", v.name.c_str(), format_bytes(bytes_step).c_str(), comm,
                r.makespan, bub);
  }
  std::printf("comm s/step: every hop message of the step one after another (fwd + bwd, x%d); step s: "
              "the schedule simulated with compute and transfers overlapping (a message moves once "
              "its receive is posted into a free slot, shares its link with the others moving, and "
              "its RECV waits for it); bubble: max over ranks of idle / step; hop bytes and "
              "comm summed over all hops of the pipeline\n\n", M);
}

}  // namespace

void print_plan(const std::string& config_path, const std::vector<std::string>& sets) {
  run_plan(config_path, sets, NetOpts{});
}

void add_plan_command(CLI::App& app) {
  CLI::App* plan = app.add_subcommand(
      "plan", "Print the pipeline plan of a config without training: partition, parameters, "
              "activation memory, hop payload bytes (standard / Full / Block AttnRes, with and "
              "without cross-stage caching) against Eq. 7/8, the simulated bubble, and with "
              "--link-gbps the communication time and predicted step time per mode");
  struct Opts {
    std::string config;
    std::vector<std::string> sets;
    NetOpts net;
  };
  auto opts = std::make_shared<Opts>();
  plan->add_option("--config", opts->config, "YAML config file")->required();
  plan->add_option("--set", opts->sets, "Override a config key: --set parallel.pp=4 (repeatable)");
  plan->add_option("--link-gbps", opts->net.link.gbps,
                   "Bandwidth of the link between pipeline ranks, Gbit/s: prints the hops' "
                   "communication time and the predicted step per residual mode")
      ->check(number_in(0, true));
  plan->add_option("--link-latency-us", opts->net.link.latency_us,
                   "Latency per hop message, microseconds (with --link-gbps)")
      ->check(number_in(0, false));
  auto* ms = plan->add_option("--compute-ms", opts->net.compute_ms,
                              "Measured step time of this layout where the link costs nothing; "
                              "sets the compute per action (with --link-gbps)")
                 ->check(number_in(0, true));
  plan->add_option("--tflops", opts->net.tflops,
                   "Or: sustained TFLOP/s per rank, to derive the compute per action from the "
                   "cost model (with --link-gbps)")
      ->check(number_in(0, true))
      ->excludes(ms);
  plan->callback([opts] { run_plan(opts->config, opts->sets, opts->net); });
}

}  // namespace attnres::cli
