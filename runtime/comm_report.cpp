#include "runtime/comm_report.h"

#include <cstdio>

#include "parallel/hop_payload.h"

namespace attnres {

namespace {

// Bytes per step, forward + backward, of the hop into chunk c under `m`.
double analytic(const ModelConfig& m, const Partition& part, int c, bool cache, const Config& cfg) {
  const int M = cfg.train.grad_accum / cfg.parallel.dp;
  return 2.0 * M * double(hop_bytes(m, hop_payload(m, part, c, cache), cfg.train.micro_batch_size));
}

}  // namespace

std::string comm_table(const Config& cfg, const Partition& part, const std::vector<double>& measured) {
  const bool cache = cfg.parallel.cross_stage_cache && cfg.parallel.virtual_stages >= 2;
  ModelConfig standard = cfg.model, full = cfg.model;
  standard.mode = ResidualMode::Standard;
  full.mode = ResidualMode::AttnRes;
  full.block_size = 1;
  const char* mode = !cfg.model.attnres() ? "standard" : cfg.model.block_size == 1 ? "Full AttnRes" : "Block AttnRes";
  std::string out;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "communication per step (one pipeline, forward + backward, MB = 1e6 bytes)%s\n"
                "  hop (chunk)  measured %-14s  standard   Full AttnRes (S=1)\n",
                cache ? ", cross-stage caching on" : "", mode);
  out += buf;
  double tot[4] = {0, 0, 0, 0};
  for (int c = 1; c < part.num_chunks(); ++c) {
    const double row[4] = {measured[size_t(c)], analytic(cfg.model, part, c, cache, cfg),
                           analytic(standard, part, c, false, cfg), analytic(full, part, c, cache, cfg)};
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
  return out;
}

}  // namespace attnres
