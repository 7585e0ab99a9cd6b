#include "parallel/hop_payload.h"

#include <cassert>

namespace attnres {

HopPayload hop_payload(const ModelConfig& cfg, const Partition& part, int chunk,
                       bool cross_stage_cache) {
  assert(chunk >= 1 && chunk < part.num_chunks());
  HopPayload hop;
  hop.chunk = chunk;
  if (!cfg.attnres()) {
    hop.tensors.push_back({HopTensor::Hidden, -1});
    return hop;
  }
  const int s = part.chunks[chunk].first;
  const int done = sources_at(cfg, s);
  // Sources the receiving rank already holds from chunk c−P of this microbatch.
  int held = 0;
  if (cross_stage_cache && chunk >= part.P) {
    hop.cached_from = chunk - part.P;
    held = sources_at(cfg, part.chunks[hop.cached_from].last);
  }
  assert(held <= done);
  for (int k = held; k < done; ++k) hop.tensors.push_back({HopTensor::Source, k});
  if (s % cfg.block_size != 0) hop.tensors.push_back({HopTensor::Partial, -1});
  return hop;
}

int hop_receive_wire_buffers(const ModelConfig& cfg, const Partition& part, int c, HopCaching caching) {
  if (cfg.hop_dtype != kernels::DType::BF16) return 0;
  size_t n = 0;
  if (c > 0) n += hop_payload(cfg, part, c, caching.forward).tensors.size();
  if (c + 1 < part.num_chunks()) n += hop_payload(cfg, part, c + 1, caching.backward).tensors.size();
  return int(n);
}

int hop_send_buffers(const ModelConfig& cfg, const Partition& part, const std::vector<int>& placement, int c,
                     HopCaching caching) {
  size_t n = 0;
  if (c + 1 < part.num_chunks() && placement[size_t(c + 1)] != placement[size_t(c)])
    n += hop_payload(cfg, part, c + 1, caching.forward).tensors.size();
  if (c > 0 && placement[size_t(c - 1)] != placement[size_t(c)])
    n += hop_payload(cfg, part, c, caching.backward).tensors.size();
  return int(n) * cfg.sends_in_flight;
}

int64_t hop_bytes(const ModelConfig& cfg, const HopPayload& hop, int micro_batch) {
  return static_cast<int64_t>(hop.tensors.size()) * micro_batch * cfg.seq_len * cfg.d_model *
         static_cast<int64_t>(kernels::dtype_size(cfg.hop_dtype));
}

int64_t total_source_tensors(const ModelConfig& cfg, const Partition& part,
                             bool cross_stage_cache, bool include_embedding) {
  int64_t n = 0;
  for (int c = 1; c < part.num_chunks(); ++c)
    for (const HopTensor& t : hop_payload(cfg, part, c, cross_stage_cache).tensors)
      if (t.kind == HopTensor::Source && (include_embedding || t.source != 0)) ++n;
  return n;
}

double paper_eq7_blocks(int P, int V, double N_p) {
  const double C = static_cast<double>(P) * V;
  return C * (C - 1) / 2 * N_p;
}

double paper_eq8_blocks(int P, int V, double N_p) {
  return static_cast<double>(P) * (P - 1) / 2 * N_p + static_cast<double>(V - 1) * P * P * N_p;
}

double exact_eq8_blocks(int P, int V, double N_p) {
  return static_cast<double>(P) * (P - 1) / 2 * N_p +
         static_cast<double>(V - 1) * P * (P - 1) * N_p;
}

}  // namespace attnres
