#include "runtime/comm_report.h"

#include <cstdio>

#include "parallel/hop_payload.h"
#include "parallel/tensor_group.h"

namespace attnres {

double hop_step_bytes(const ModelConfig& m, const Partition& part, int c, const Config& cfg) {
  const ParallelConfig& p = cfg.parallel;
  const int M = cfg.train.grad_accum / p.dp;
  const int copies = p.sequence_parallel ? 1 : p.tp;
  const int b = cfg.train.micro_batch_size;
  const double fwd = double(hop_bytes(m, hop_payload(m, part, c, p.caches_forward()), b));
  const double bwd = double(hop_bytes(m, hop_payload(m, part, c, p.caches_backward()), b));
  return double(M) * copies * (fwd + bwd);
}

namespace {

std::vector<double> hop_bytes_as(const Config& cfg, const Partition& part, ResidualMode mode, int block_size) {
  ModelConfig m = cfg.model;
  m.mode = mode, m.block_size = block_size;
  std::vector<double> out(size_t(part.num_chunks()), 0.0);
  for (int c = 1; c < part.num_chunks(); ++c) out[size_t(c)] = hop_step_bytes(m, part, c, cfg);
  return out;
}

// The tp lines: each stage's measured bytes per rank against the model's.
std::string tp_table(const Config& cfg, const Partition& part, const std::vector<int>& placement,
                     const std::vector<double>& measured) {
  const ParallelConfig& p = cfg.parallel;
  const TensorParallel tp{{0, p.tp}, p.sequence_parallel, nullptr};
  std::string out = std::string("tensor-parallel collectives per step and rank (ring model, MB = 1e6 bytes)") +
                    (p.sequence_parallel ? ", sequence parallel\n" : "\n");
  char buf[160];
  for (int stage = 0; stage < p.pp; ++stage) {
    std::vector<ChunkRange> mine;
    for (const ChunkRange& c : part.chunks)
      if (placement[size_t(c.index)] == stage) mine.push_back(c);
    const double expect = tp_step_bytes(cfg.model, mine, cfg.train.grad_accum / p.dp, cfg.train.micro_batch_size, tp);
    std::snprintf(buf, sizeof buf, "  stage %-3d %10.2f (expected %10.2f)\n", stage,
                  measured[size_t(stage * p.dp * p.tp)] / 1e6, expect / 1e6);
    out += buf;
  }
  return out;
}

}  // namespace

std::vector<double> standard_hop_bytes(const Config& cfg, const Partition& part) {
  return hop_bytes_as(cfg, part, ResidualMode::Standard, 1);
}
std::vector<double> full_attnres_hop_bytes(const Config& cfg, const Partition& part) {
  return hop_bytes_as(cfg, part, ResidualMode::AttnRes, 1);
}

std::string comm_table(const Config& cfg, const Partition& part, const std::vector<int>& placement,
                       const std::vector<double>& measured, const std::vector<double>& tp_measured) {
  if (part.num_chunks() == 1) return tp_table(cfg, part, placement, tp_measured);
  const bool cache = cfg.model.attnres() && cfg.parallel.caches_forward();
  const std::vector<double> standard = standard_hop_bytes(cfg, part), full = full_attnres_hop_bytes(cfg, part);
  const char* mode = !cfg.model.attnres() ? "standard" : cfg.model.block_size == 1 ? "Full AttnRes" : "Block AttnRes";
  std::string out;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "communication per step (one pipeline, forward + backward, MB = 1e6 bytes)%s\n"
                "  hop (chunk)  measured %-14s  standard   Full AttnRes (S=1)\n",
                !cache                                       ? ""
                : cfg.parallel.caches_backward() ? ", cross-stage caching on (gradients sum locally)"
                                                 : ", cross-stage caching on (forward; gradients sum on the hops)",
                mode);
  out += buf;
  double tot[4] = {0, 0, 0, 0};
  for (int c = 1; c < part.num_chunks(); ++c) {
    const double row[4] = {measured[size_t(c)], hop_step_bytes(cfg.model, part, c, cfg), standard[size_t(c)],
                           full[size_t(c)]};
    for (int i = 0; i < 4; ++i) tot[i] += row[i];
    std::snprintf(buf, sizeof buf, "  %2d -> %-2d    %8.2f (expected %8.2f)  %9.2f  %12.2f\n", c - 1, c,
                  row[0] / 1e6, row[1] / 1e6, row[2] / 1e6, row[3] / 1e6);
    out += buf;
  }
  std::snprintf(buf, sizeof buf, "  total       %8.2f (expected %8.2f)  %9.2f  %12.2f\n", tot[0] / 1e6, tot[1] / 1e6,
                tot[2] / 1e6, tot[3] / 1e6);
  out += buf;
  if (tot[3] > 0) {
    std::snprintf(buf, sizeof buf, "  %s sends %.2fx the standard residual and %.2fx Full AttnRes\n", mode,
                  tot[0] / tot[2], tot[0] / tot[3]);
    out += buf;
  }
  if (cfg.parallel.tp > 1) out += tp_table(cfg, part, placement, tp_measured);
  return out;
}

}  // namespace attnres
