// The pipeline executor (DESIGN §3): interprets one rank's schedule action list
// on real chunks, moving hop payloads (DESIGN §2) with non-blocking
// point-to-point messages. Receives are posted as early as a buffer is free;
// sends never block compute. With P = 1 the hops between local chunks are
// local copies and nothing is sent.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "models/chunk.h"
#include "parallel/communicator.h"
#include "parallel/hop_payload.h"
#include "parallel/partition.h"
#include "parallel/schedule.h"

namespace attnres {

// One timed action, for traces.
struct TraceEvent {
  std::string name;
  const char* category;  // "compute", "comm" (waiting for a message), "optimizer"
  double start_us, dur_us;
};

class PipelineExecutor {
 public:
  // `pipe` is the pipeline communicator (ranks 0..P-1); null when P = 1.
  PipelineExecutor(const ModelConfig& cfg, const Partition& part, Schedule schedule, int pp_rank,
                   Communicator* pipe, int micro_batch, uint64_t seed, bool cross_stage_cache,
                   kernels::Device dev = {});
  ~PipelineExecutor();
  PipelineExecutor(const PipelineExecutor&) = delete;
  PipelineExecutor& operator=(const PipelineExecutor&) = delete;

  // Runs this rank's actions up to REDUCE_GRADS for the step's M microbatches.
  // tokens[mb] / targets[mb] hold micro_batch * seq_len ids each (only the
  // ranks of the first and last chunk read them). Gradients accumulate into
  // the local chunks' grads in microbatch order. Returns the token-loss sum of
  // each microbatch (zero unless this rank holds the last chunk).
  std::vector<double> run(const std::vector<const int32_t*>& tokens,
                          const std::vector<const int32_t*>& targets, float loss_scale);

  // Forward only, one microbatch at a time through every chunk (evaluation).
  // Returns the token-loss sum (zero unless this rank holds the last chunk).
  // Message tags use mb < tokens.size(): size the tag space for it.
  double forward_only(const std::vector<const int32_t*>& tokens,
                      const std::vector<const int32_t*>& targets);

  std::vector<Chunk>& chunks() { return chunks_; }  // local chunks, in chunk order
  bool holds_last_chunk() const;

  // Of the last run: bytes this rank sent on the hop into chunk c (forward)
  // and from chunk c back (backward), indexed by c; compute and wait seconds.
  const std::vector<uint64_t>& fwd_bytes() const { return fwd_bytes_; }
  const std::vector<uint64_t>& bwd_bytes() const { return bwd_bytes_; }
  double busy_seconds() const { return busy_s_; }
  double idle_seconds() const { return idle_s_; }
  // Timed actions of every run so far (when tracing is on).
  void enable_trace(bool on) { tracing_ = on; }
  std::vector<TraceEvent>& trace() { return trace_; }

 private:
  struct Slot;
  struct Local;
  Local& local(int chunk);
  Slot& slot_of(int mb, int chunk);
  Slot& acquire(int mb, int chunk);
  void release(Slot& s);
  void post_recv_f(int mb, int chunk);
  void post_recv_b(int mb, int chunk);
  void post_ahead(size_t from);
  double forward(int mb, int chunk, const int32_t* tokens, const int32_t* targets);
  void backward_input(int mb, int chunk, const int32_t* tokens, const int32_t* targets,
                      float loss_scale);
  void send_f(int mb, int chunk);
  void send_b(int mb, int chunk);
  void wait_recv(Request& r, const char* what, int mb, int chunk);

  ModelConfig cfg_;
  Partition part_;
  Schedule schedule_;
  int rank_;
  Communicator* pipe_;
  int micro_batch_;
  bool cache_;
  kernels::Device dev_;
  size_t stream_floats_;  // one [b*T, d] tensor
  std::vector<Chunk> chunks_;
  std::vector<std::unique_ptr<Local>> locals_;  // per local chunk
  std::vector<double> losses_;
  std::vector<uint64_t> fwd_bytes_, bwd_bytes_;
  double busy_s_ = 0, idle_s_ = 0;
  bool tracing_ = false;
  std::vector<TraceEvent> trace_;
  double t0_us_ = 0;
};

}  // namespace attnres
