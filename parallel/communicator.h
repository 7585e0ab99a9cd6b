// The communicator interface (DESIGN §4): point-to-point messages for the
// pipeline hops and collectives for data/tensor parallelism, on raw pointers
// and counts. The MPI implementation (mpi_communicator.h) works on host memory,
// the NCCL one (parallel/cuda/nccl_communicator.h) on device memory.
//
// Point-to-point. isend/irecv move a list of tensors to/from a peer
// (a rank of THIS communicator) and return a Request; nothing may touch the
// buffers until wait() or a true test() on that Request. A message is named by
// a MessageTag, which both sides pass identically; messages with different tags
// never match each other, whatever the order in which they are posted or
// arrive. The tensor list of a receive must have the same counts, in the same
// order, as the matching send (hop shapes are known on both sides, DESIGN §2).
//
// Tags. Each communicator is constructed with a TagSpace (the largest
// microbatch, chunk and list-length values it will see); construction throws
// if the space cannot be encoded in the backend's tag range. A tag outside the
// space is a caller bug (std::logic_error).
//
// Collectives must be called by every rank of the communicator in the same
// order. They are blocking, except iallreduce_sum, which returns a Request
// like isend/irecv: the data must not be touched until it completes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "kernels/dtype.h"

namespace attnres {

// count elements of dtype at data (hops carry parallel.hop_dtype, DESIGN §11).
struct TensorRef {
  void* data;
  size_t count;
  kernels::DType dtype = kernels::DType::F32;
  size_t bytes() const { return count * kernels::dtype_size(dtype); }
};

enum class Direction { Forward = 0, Backward = 1 };

// Names one hop message of one microbatch. `chunk` is the hop's downstream
// chunk c (the hop c−1 → c), for both directions: SEND_F(mb, c−1) and
// RECV_F(mb, c) use {mb, c, Forward}; SEND_B(mb, c) and RECV_B(mb, c−1) use
// {mb, c, Backward}.
struct MessageTag {
  int mb;
  int chunk;
  Direction dir;
};

// The range of MessageTag values a communicator must distinguish:
// 0 <= mb < microbatches, 0 <= chunk < chunks, lists of at most max_tensors.
// The default (all zero) allows no point-to-point messages at all, which is
// right for communicators used only for collectives.
struct TagSpace {
  int microbatches = 0;
  int chunks = 0;
  int max_tensors = 0;
};

// Handle of one pending isend/irecv. Move-only; owned by the caller; completed
// (and emptied) by Communicator::wait or a true Communicator::test. Destroying
// a pending Request is a bug and aborts.
class Request {
 public:
  struct State {  // implemented by each communicator
    virtual ~State() = default;
  };
  Request() = default;
  explicit Request(std::unique_ptr<State> s) : state(std::move(s)) {}
  Request(Request&&) = default;
  Request& operator=(Request&&) = default;
  // True while the operation has not been completed by wait/test.
  bool pending() const { return state != nullptr; }
  std::unique_ptr<State> state;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  virtual Request isend(const std::vector<TensorRef>& tensors, int peer, MessageTag tag) = 0;
  virtual Request irecv(const std::vector<TensorRef>& tensors, int peer, MessageTag tag) = 0;
  // Blocks until r completes; r is then no longer pending. No-op if it is not.
  virtual void wait(Request& r) = 0;
  // True (and r completed) if r has finished or was not pending.
  virtual bool test(Request& r) = 0;
  void wait_all(std::vector<Request>& rs) {
    for (Request& r : rs) wait(r);
  }

  // In place over all ranks of this communicator.
  virtual void allreduce_sum(float* data, size_t n) = 0;
  // Non-blocking allreduce_sum: `data` holds the sum once the Request
  // completes (wait, or a true test).
  virtual Request iallreduce_sum(float* data, size_t n) = 0;
  virtual void allreduce_sum(double* data, size_t n) = 0;
  // ZeRO-1 (DESIGN §8). `counts` cuts a flat buffer into contiguous parts in
  // rank order, rank r's of counts[r] floats (split_evenly). Non-blocking:
  // `out` (room for the largest part, outside `data`) receives this rank's
  // part of the sum of every rank's `data`. `data` may serve as scratch: its
  // contents are undefined afterwards.
  virtual Request ireduce_scatter_sum(float* data, float* out, const std::vector<size_t>& counts) = 0;
  // In place: every rank's part of `data` (its elements, fp32 or bf16: the
  // weights in the run's precision) from the rank that owns it; `counts` in
  // elements.
  virtual void allgather_parts(TensorRef data, const std::vector<size_t>& counts) = 0;
  // Non-blocking allgather_parts: `data` is whole once the Request completes.
  // This default blocks, for communicators without a non-blocking one.
  virtual Request iallgather_parts(TensorRef data, const std::vector<size_t>& counts) {
    allgather_parts(data, counts);
    return Request();
  }
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  // Every rank's `bytes` bytes (the lengths may differ, zero included), in
  // rank order: on `root` only (the other ranks get an empty list), or on
  // every rank. Byte strings hold them.
  virtual std::vector<std::string> gather(const void* data, size_t bytes, int root) = 0;
  virtual std::vector<std::string> allgather(const void* data, size_t bytes) = 0;
  // Waiting ranks sleep rather than spin, so they leave their cores to the
  // ranks still working (e.g. a node's sgemm peak measurement).
  virtual void barrier() = 0;

  // Lets the library move pending messages and collectives while the caller
  // computes: MPI moves data only inside its calls. Cheap; changes no value.
  virtual void progress() {}

  // Payload bytes passed to isend so far (4 per float), counted when posted.
  uint64_t bytes_sent() const { return bytes_sent_; }

 protected:
  uint64_t bytes_sent_ = 0;
};

// ZeRO-1's parts of a flat buffer of n floats over `parts` ranks, in rank
// order: n / parts each, the first n % parts one float more.
inline std::vector<size_t> split_evenly(size_t n, int parts) {
  std::vector<size_t> counts(size_t(parts), n / size_t(parts));
  for (size_t r = 0; r < n % size_t(parts); ++r) ++counts[r];
  return counts;
}

// Where rank r's part starts.
inline size_t part_offset(const std::vector<size_t>& counts, int r) {
  size_t off = 0;
  for (int i = 0; i < r; ++i) off += counts[size_t(i)];
  return off;
}

// Root's string on every rank (two broadcasts: length, then bytes).
inline std::string broadcast_string(Communicator& c, std::string s, int root) {
  uint64_t n = s.size();
  c.broadcast(&n, sizeof n, root);
  s.resize(n);
  if (n) c.broadcast(s.data(), n, root);
  return s;
}

// Runs f on `root` only and returns, on every rank, the message of the
// exception it threw ("" if none), so the ranks fail or go on together.
template <class F>
std::string error_on_root(Communicator& c, int root, F&& f) {
  std::string err;
  if (c.rank() == root) {
    try {
      f();
    } catch (const std::exception& e) {
      err = e.what();
    }
  }
  return broadcast_string(c, err, root);
}

// The first non-empty of the ranks' messages, on every rank ("" if none), so
// a check that may fail on some ranks only makes all of them stop together.
inline std::string agree_on_error(Communicator& c, const std::string& mine) {
  for (std::string& e : c.allgather(mine.data(), mine.size()))
    if (!e.empty()) return e;
  return "";
}

}  // namespace attnres
