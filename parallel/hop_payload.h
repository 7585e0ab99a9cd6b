// What crosses the pipeline hop from chunk c−1 into chunk c (DESIGN §2), as a
// pure function of (model, partition, chunk, caching), so sender and receiver
// agree on shapes without a handshake.
//
// Sources are indexed 0 = embedding b_0, k+1 = block k (k = 0 .. N−1). At
// sublayer boundary s (between sublayers s−1 and s, 0 < s < L) the completed
// sources are 0 .. floor(s/S), i.e. 1 + floor(s/S) of them, and a partial sum p
// of the current block exists iff s % S != 0. (At s = L every source, the
// last short block included, is complete.)
//
// Payload of the hop into chunk c >= 1, first sublayer s = start(c):
//   standard mode:        {Hidden}.
//   attnres, no caching:  Source 0 .. floor(s/S), then Partial if s % S != 0.
//   attnres, caching, c >= P (chunk c−P ran on the same rank for the same
//     microbatch, as under the schedules' round-robin placement; the executor
//     checks that its schedule places c−P with c): that rank still holds
//     every source completed by the end of chunk c−P (it received or held
//     those completed by start(c−P) and produced the ones completed inside
//     c−P). So the hop ships only the sources
//     completed at start(c) but not at end(c−P) = start(c−P+1), in index order,
//     then Partial if s % S != 0. The partial sum is never cached: it changes in
//     every sublayer. For c < P caching changes nothing.
// Tensor order is the wire order: sources ascending, Partial last.
//
// Backward: the hop carries back, in the same order, the gradient of each
// tensor of its backward payload, which is hop_payload(..., caching.backward):
//   - caching.backward false (parallel.cached_grads: exact): every source
//     completed at start(c), as without caching. A source's gradient is a
//     running sum that visits the chunks from last to first, as in one
//     process, so the run equals pp = 1 bit for bit. Caching then saves
//     forward bytes only.
//   - caching.backward true (local): the forward payload. The gradient of a
//     cached source accumulates on the rank during chunk c's backward and
//     leaves with chunk c−P's backward hop, never on chunk c's: both
//     directions have the same bytes, but the rank adds its later chunks'
//     terms as one, so the sums differ from one process's in the last bits.
#pragma once
#include <cstdint>
#include <vector>

#include "models/model_config.h"
#include "parallel/partition.h"

namespace attnres {

struct HopTensor {
  enum Kind { Hidden, Source, Partial } kind;
  int source = -1;  // source index for Source, else -1
  bool operator==(const HopTensor&) const = default;
};

struct HopPayload {
  int chunk = 0;                   // receiving chunk (>= 1)
  int cached_from = -1;            // with caching, the chunk c−P whose sources the
                                   // receiving rank still holds; else −1
  std::vector<HopTensor> tensors;  // each a [micro_batch, seq_len, d_model] tensor (cfg.hop_dtype)
};

HopPayload hop_payload(const ModelConfig& cfg, const Partition& part, int chunk,
                       bool cross_stage_cache);

// Whether each direction's payload leaves out what the receiver holds.
struct HopCaching {
  bool forward = false, backward = false;
};

// With bf16 hops the stream stays in float buffers and each received
// message lands in bf16 buffers of its own: per activation slot of chunk c,
// one per tensor of the two payloads it receives (forward in, backward from
// the next chunk). 0 with fp32 hops.
int hop_receive_wire_buffers(const ModelConfig& cfg, const Partition& part, int c, HopCaching caching);
// Each message chunk c sends to another rank is staged in a buffer of the
// hop's element type, cfg.sends_in_flight per direction: the tensors of
// those buffers (forward into c+1, backward into c−1, where `placement`
// puts that chunk on a rank other than c's). The executor allocates these
// and the memory plan counts them.
int hop_send_buffers(const ModelConfig& cfg, const Partition& part, const std::vector<int>& placement, int c,
                     HopCaching caching);

// Bytes one direction of the hop moves for a microbatch of `micro_batch`
// sequences: tensors × micro_batch × seq_len × d_model × the hop's element
// size (cfg.hop_dtype: 4 bytes, or 2 with bf16 hops).
int64_t hop_bytes(const ModelConfig& cfg, const HopPayload& hop, int micro_batch);

// Source tensors (embedding included or not) summed over all hops 1 .. C−1,
// per microbatch and token, in units of d floats.
int64_t total_source_tensors(const ModelConfig& cfg, const Partition& part,
                             bool cross_stage_cache, bool include_embedding);

// The paper's closed forms [paper, §4.1]: block summaries (d floats per token
// each) crossing all hops per microbatch, for P ranks, V chunks per rank and
// N_p whole blocks in every chunk.
//   Eq. 7 (no caching):           C(C−1)/2 · N_p,              C = P·V
//   Eq. 8 as printed (caching):   P(P−1)/2 · N_p + (V−1)·P²·N_p
// What the caching rule above actually ships for such a uniform layout is
//   P(P−1)/2 · N_p + (V−1)·P·(P−1)·N_p
// because the hop into chunk c >= P ships only the blocks of chunks
// c−P+1 .. c−1, i.e. (P−1)·N_p of them (docs/PARALLEL.md). None of the three
// counts the embedding b_0, which crosses C−1 hops without caching and P−1
// with it. N_p may be fractional (average blocks per chunk) for an estimate.
double paper_eq7_blocks(int P, int V, double N_p);
double paper_eq8_blocks(int P, int V, double N_p);
double exact_eq8_blocks(int P, int V, double N_p);

}  // namespace attnres
