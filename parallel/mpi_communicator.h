// Communicator over MPI on host memory, and the MPI process lifetime.
//
// Tag encoding: a list of n tensors is sent as n MPI messages of MPI_FLOAT,
// message i of tag {mb, chunk, dir} carrying MPI tag
//   ((mb · chunks + chunk) · 2 + dir) · max_tensors + i
// with (chunks, max_tensors) from the communicator's TagSpace. The tags are
// unique per (mb, chunk, dir, i), so messages posted in any order never match
// the wrong buffer. The largest tag, microbatches · chunks · 2 · max_tensors − 1,
// must not exceed MPI_TAG_UB (2^31 − 1 in Open MPI; the MPI standard only
// guarantees 32767).
#pragma once
#include <mpi.h>

#include <cstdint>

#include "parallel/communicator.h"
#include "parallel/topology.h"

namespace attnres {

// Initializes MPI for the lifetime of the object (MPI_Init; a program not
// started by mpirun becomes a world of one) and finalizes it at the end.
// If MPI is already initialized it does neither. Destroy every
// MpiCommunicator before the session ends (MPI_Comm_free needs MPI).
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

 private:
  bool owns_ = false;
};

// The MPI tag of tensor `index` of message `tag`. Throws std::logic_error if
// tag or index lie outside `space`.
int encode_tag(const TagSpace& space, MessageTag tag, int index);

class MpiCommunicator final : public Communicator {
 public:
  // Takes ownership of `comm` (freed in the destructor unless it is
  // MPI_COMM_WORLD). Throws std::runtime_error if `tags` does not fit MPI_TAG_UB.
  explicit MpiCommunicator(MPI_Comm comm, TagSpace tags = {});
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Request isend(const std::vector<TensorRef>& tensors, int peer, MessageTag tag) override;
  Request irecv(const std::vector<TensorRef>& tensors, int peer, MessageTag tag) override;
  void wait(Request& r) override;
  bool test(Request& r) override;
  void allreduce_sum(float* data, size_t n) override;
  Request iallreduce_sum(float* data, size_t n) override;
  void allreduce_sum(double* data, size_t n) override;
  void broadcast(void* data, size_t bytes, int root) override;
  void barrier() override;

  MPI_Comm comm() const { return comm_; }

 private:
  Request post(const std::vector<TensorRef>& tensors, int peer, MessageTag tag, bool send);

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  TagSpace tags_;
};

// Splits MPI_COMM_WORLD by `topo` (which must describe this process's world
// rank and size). `pipeline_tags` is the tag space of the pipeline group; the
// other groups are for collectives only.
Groups make_mpi_groups(const Topology& topo, TagSpace pipeline_tags);

}  // namespace attnres
