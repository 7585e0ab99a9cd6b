// The pipeline executor (DESIGN §3): interprets one rank's schedule action list
// on real chunks. The schedule decides everything: which chunks are local (its
// placement), the peer of every message (the action's peer), the hand-offs
// between local chunks (COPY_F / COPY_B) and when each chunk's data-parallel
// gradient reduction starts (REDUCE_GRADS). Hop payloads (DESIGN §2) move with
// non-blocking point-to-point messages; receives are posted as early as a
// slot is free (parallel/slot_policy.h), and each send leaves from a staging
// buffer of its own, so freeing a slot never waits for a send; only a send
// beyond parallel.sends_in_flight waits, for the oldest.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "kernels/memory.h"
#include "models/chunk.h"
#include "parallel/communicator.h"
#include "parallel/data_parallel.h"
#include "parallel/hop_payload.h"
#include "parallel/partition.h"
#include "parallel/schedule.h"
#include "parallel/slot_policy.h"

namespace attnres {

// One timed action, for traces.
struct TraceEvent {
  std::string name;
  const char* category;  // "compute", "copy" (a hand-off between local chunks),
                         // "comm" (waiting for a message or the dp reductions), "wire"
                         // (a message from its post to the first poll that finds it
                         // done); the trainer's phases: "step", "optimizer", "eval",
                         // "checkpoint"
  double start_us, dur_us;
};

class PipelineExecutor {
 public:
  // `pipe` is the pipeline communicator (ranks 0..P-1); null when P = 1.
  // `data` connects the replicas of this rank's chunks (the dp group); null
  // when dp = 1. `tp` is this rank's tensor-parallel shard of every chunk;
  // under sequence parallelism a hop carries its token rows only.
  PipelineExecutor(const ModelConfig& cfg, const Partition& part, Schedule schedule, int pp_rank,
                   Communicator* pipe, Communicator* data, int micro_batch, uint64_t seed,
                   HopCaching caching, kernels::Device dev = {}, const TensorParallel& tp = {});
  ~PipelineExecutor();
  PipelineExecutor(const PipelineExecutor&) = delete;
  PipelineExecutor& operator=(const PipelineExecutor&) = delete;

  // Runs this rank's actions up to OPTIMIZER_STEP (the trainer's part) for the
  // step's M microbatches. tokens[mb] / targets[mb] hold micro_batch * seq_len
  // ids each (only the ranks of the first and last chunk read them).
  // Gradients accumulate into the local chunks' grads in microbatch order;
  // each chunk's REDUCE_GRADS starts their sum over `data`, and run() returns
  // once every sum is done. Returns the token-loss sum of each microbatch
  // (zero unless this rank holds the last chunk).
  std::vector<double> run(const std::vector<const int32_t*>& tokens,
                          const std::vector<const int32_t*>& targets, float loss_scale);

  // Forward only, one microbatch at a time through every chunk (evaluation),
  // with messages to and copies from the ranks the placement names.
  // Returns the token-loss sum (zero unless this rank holds the last chunk).
  // Message tags use mb < tokens.size(): size the tag space for it.
  double forward_only(const std::vector<const int32_t*>& tokens,
                      const std::vector<const int32_t*>& targets);

  // The dp sums of the local chunks' gradients, ZeRO-1's parts and the
  // parameter all-gather (parallel/data_parallel.h).
  DataParallelSync& data_parallel() { return *dp_; }

  std::vector<Chunk>& chunks() { return chunks_; }
  const Schedule& schedule() const { return schedule_; }  // local chunks, in chunk order
  bool holds_last_chunk() const;

  // Of the last run: bytes this rank sent on the hop into chunk c (forward)
  // and from chunk c back (backward), indexed by c; compute (and copy) and
  // idle seconds. Both are timed by device events around each action (host
  // timestamps on the CPU): busy is the sum of the actions' spans, idle the
  // rest of the span from the run's start to its last action's end. The
  // final wait for the dp reductions is in neither.
  const std::vector<uint64_t>& fwd_bytes() const { return fwd_bytes_; }
  const std::vector<uint64_t>& bwd_bytes() const { return bwd_bytes_; }
  double busy_seconds() const { return busy_s_; }
  double idle_seconds() const { return idle_s_; }
  // Timed actions of every run so far (when tracing is on).
  void enable_trace(bool on) { tracing_ = on; }
  std::vector<TraceEvent>& trace() { return trace_; }
  // The trainer's own phases on the trace's clock: trace_span records
  // [start_us, now) when tracing is on.
  double trace_clock_us() const;
  void trace_span(std::string name, const char* category, double start_us);

 private:
  struct Slot;
  struct Local;
  Local& local(int chunk);
  Slot& slot_of(int mb, int chunk);
  Slot& acquire(int mb, int chunk);
  void release(int chunk, int slot);
  void post_recv_f(int mb, int chunk, int peer);
  void post_recv_b(int mb, int chunk, int peer);
  void post_ahead(size_t from);
  void forward(int mb, int chunk, const int32_t* tokens, const int32_t* targets, double* loss);
  void backward_input(int mb, int chunk, const int32_t* tokens, const int32_t* targets,
                      float loss_scale);
  std::vector<float*> forward_payload(int mb, int chunk);
  std::vector<float*> backward_payload(int mb, int chunk);
  void send_f(int mb, int chunk, int peer);
  void send_b(int mb, int chunk, int peer);
  void copy_f(int mb, int chunk);
  void copy_b(int mb, int chunk);
  void finish_reductions();
  void backward_weight(int mb, int chunk);
  void wait_recv(Request& r, const char* what, int mb, int chunk);
  bool bf16_hops() const;
  void ready_weights(size_t i);
  void unwire(const std::vector<kernels::bf16*>& wire, const std::vector<float*>& to);
  struct SendPool;
  void init_send_pool(Local& L, SendPool& pool, const HopPayload& hop);
  void let_messages_move();
  void fly(const char* what, MessageTag tag, Request& r);
  void land_flights();
  void land_sends();
  int take(SendPool& pool);
  uint64_t send(const std::vector<float*>& vals, SendPool& pool, int peer, MessageTag tag);
  Request receive(const std::vector<float*>& vals, const std::vector<kernels::bf16*>& wire, int peer, MessageTag tag);
  kernels::Event& next_timed(const Action& a);
  void settle_timing();

  ModelConfig cfg_;
  Partition part_;
  Schedule schedule_;
  int rank_;
  Communicator* pipe_;
  Communicator* data_;
  int micro_batch_;
  HopCaching caching_;
  kernels::Device dev_;
  SlotTable table_;  // which microbatch holds each slot of Local::slots
  size_t stream_floats_;  // one [b*T, d] tensor
  std::vector<Chunk> chunks_;
  std::vector<std::unique_ptr<Local>> locals_;  // per local chunk
  std::vector<int> local_index_;                // by chunk: index in locals_, or -1
  std::vector<bool> weights_ready_;              // per local chunk, this run (ready_weights)
  std::unique_ptr<DataParallelSync> dp_;        // over `data`; after chunks_, which it refers to
  kernels::DeviceBuffer<double> losses_;  // per microbatch, on the device until run() ends
  std::vector<uint64_t> fwd_bytes_, bwd_bytes_;
  double busy_s_ = 0, idle_s_ = 0;
  // Events around this run's compute and copy actions (reused every run):
  // start and end of action i are timed_[2i], timed_[2i+1].
  std::vector<kernels::Event> timed_;
  std::vector<Action> timed_actions_;
  kernels::Event run_start_;
  double run_start_us_ = 0;              // host clock at run_start_, for the trace
  kernels::Event* open_start_ = nullptr;  // the running action's start, re-recorded after a receive wait
  bool tracing_ = false;
  // Tracing: messages posted and not yet seen done (their requests live in
  // a Slot or a SendPool until then).
  struct Flight {
    std::string name;
    double start_us;
    Request* req;
  };
  std::vector<Flight> flights_;
  std::vector<TraceEvent> trace_;
  double t0_us_ = 0;
};

}  // namespace attnres
