// Data parallelism of one pipeline rank's chunks (DESIGN §8): each local
// chunk's gradients summed over its dp replicas, started when the schedule's
// REDUCE_GRADS says and finished before the optimizer step; under ZeRO-1
// reduce-scattered into this rank's part of the chunk's flat buffer, and
// after each rank updated its part, the parameters all-gathered from their
// owners. The executor starts the sums; the trainer reads the parts.
#pragma once
#include <cstddef>
#include <vector>

#include "kernels/memory.h"
#include "models/chunk.h"
#include "parallel/communicator.h"

namespace attnres {

// The part [begin, begin + count) of a chunk's flat parameter buffer that
// this rank updates, and its summed gradients (grads[0] is element begin):
// the whole buffer unless gradients are sharded.
struct GradPart {
  size_t begin, count;
  float* grads;
};

// ZeRO-1: a flat buffer of `total` floats whole on dp rank 0 of `data`
// (`whole`, host memory), from every rank's part (`mine`, n floats of device
// memory; the parts contiguous, in dp rank order). The other ranks only
// send (`whole` may be null there). Collective over `data`.
void gather_parts_to_root(Communicator& data, const kernels::Device& dev, const float* mine, size_t n, float* whole,
                          size_t total);

class DataParallelSync {
 public:
  // `data` connects the replicas of `chunks` (null when dp = 1); `ids` are
  // the chunks' schedule indices, for errors.
  DataParallelSync(Communicator* data, std::vector<Chunk>& chunks, std::vector<int> ids);
  ~DataParallelSync();  // waits for sums still running
  DataParallelSync(const DataParallelSync&) = delete;
  DataParallelSync& operator=(const DataParallelSync&) = delete;

  // ZeRO-1: from now on each sum is a reduce-scatter (split_evenly of the
  // chunk's parameters, in dp rank order) into a buffer of this rank's part.
  // No-op without a dp group.
  void shard();
  // Local chunk i's gradients are final: sum the replicated tensors' token-row
  // shares over tp (sequence parallelism), then start the sum over dp.
  void start(size_t i);
  // Moves the running sums along (MPI progresses them only inside its calls).
  void progress();
  // Every local chunk's sum was started this step; waits for them all.
  void finish();
  GradPart part(size_t i);
  // After each rank wrote its part of the weights (chunk_write_weights from
  // the masters it updated): starts bringing every part from its owner, in
  // the run's precision (no-op unless sharded). The weights of local chunk i are whole
  // once wait_parameters(i) returns: the executor waits before the chunk's
  // first forward of the next step, so the all-gather runs under the
  // earlier forwards; whoever else reads them (evaluation, checkpoints,
  // export) waits for all.
  void gather_parameters();
  void wait_parameters(size_t i);
  void wait_parameters();

 private:
  Communicator* data_;
  std::vector<Chunk>& chunks_;
  std::vector<int> ids_;
  std::vector<bool> started_;              // this step, per local chunk
  std::vector<std::vector<size_t>> parts_;  // ZeRO-1: per local chunk, the parameters' split (empty otherwise)
  std::vector<kernels::DeviceBuffer<float>> grad_parts_;  // ZeRO-1: this rank's summed part, per local chunk
  std::vector<Request> pending_;   // gradient sums
  std::vector<Request> gathers_;   // per local chunk: its parameters' all-gather
};

}  // namespace attnres
