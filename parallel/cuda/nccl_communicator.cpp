#include "parallel/cuda/nccl_communicator.h"

#include <nccl.h>

#include <stdexcept>
#include <string>
#include <utility>

#include "kernels/memory.h"

namespace attnres {

namespace {

void check(ncclResult_t r, const char* call) {
  if (r != ncclSuccess) throw std::runtime_error(std::string("NCCL: ") + call + ": " + ncclGetErrorString(r));
}

// A pending NCCL call: the event recorded on the communication stream after it.
struct PendingCall : Request::State {
  kernels::Event done;
  ~PendingCall() override { kernels::event_destroy(done); }
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(Communicator& mpi, const kernels::Device& dev, TagSpace tags)
      : mpi_(mpi), dev_(dev), comm_stream_(kernels::open_device(kernels::Backend::CUDA, dev.ordinal)), tags_(tags) {
    ncclUniqueId id;
    if (mpi_.rank() == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    mpi_.broadcast(&id, sizeof id, 0);
    check(ncclCommInitRank(&comm_, mpi_.size(), id, mpi_.rank()), "ncclCommInitRank");
    ready_ = kernels::event_create(dev_);
  }
  ~NcclCommunicator() override {
    kernels::event_destroy(ready_);
    ncclCommDestroy(comm_);
    kernels::close_device(comm_stream_);
  }

  int rank() const override { return mpi_.rank(); }
  int size() const override { return mpi_.size(); }

  Request isend(const std::vector<TensorRef>& tensors, int peer, MessageTag tag) override {
    check_tag(tag, tensors.size());
    for (const TensorRef& t : tensors) bytes_sent_ += t.count * sizeof(float);
    return on_comm_stream([&](cudaStream_t s) {
      for (const TensorRef& t : tensors) check(ncclSend(t.data, t.count, ncclFloat, peer, comm_, s), "ncclSend");
    });
  }
  Request irecv(const std::vector<TensorRef>& tensors, int peer, MessageTag tag) override {
    check_tag(tag, tensors.size());
    return on_comm_stream([&](cudaStream_t s) {
      for (const TensorRef& t : tensors) check(ncclRecv(t.data, t.count, ncclFloat, peer, comm_, s), "ncclRecv");
    });
  }
  void wait(Request& r) override {
    if (!r.pending()) return;
    kernels::stream_wait_event(dev_, static_cast<PendingCall&>(*r.state).done);
    r.state.reset();
  }
  bool test(Request& r) override {
    wait(r);  // the compute stream orders itself after the call; the host need not block
    return true;
  }

  void allreduce_sum(float* data, size_t n) override {
    Request r = iallreduce_sum(data, n);
    wait(r);
  }
  Request iallreduce_sum(float* data, size_t n) override {
    return on_comm_stream([&](cudaStream_t s) {
      check(ncclAllReduce(data, data, n, ncclFloat, ncclSum, comm_, s), "ncclAllReduce");
    });
  }
  // Host-side collectives: the MPI group.
  void allreduce_sum(double* data, size_t n) override { mpi_.allreduce_sum(data, n); }
  void broadcast(void* data, size_t bytes, int root) override { mpi_.broadcast(data, bytes, root); }
  std::vector<std::string> gather(const void* data, size_t bytes, int root) override {
    return mpi_.gather(data, bytes, root);
  }
  std::vector<std::string> allgather(const void* data, size_t bytes) override { return mpi_.allgather(data, bytes); }
  void barrier() override { mpi_.barrier(); }

 private:
  void check_tag(MessageTag tag, size_t tensors) const {
    if (tag.mb < 0 || tag.mb >= tags_.microbatches || tag.chunk < 0 || tag.chunk >= tags_.chunks ||
        int(tensors) > tags_.max_tensors)
      throw std::logic_error("NcclCommunicator: message tag outside the communicator's TagSpace");
  }
  // Runs `issue` on the communication stream after the compute stream's work,
  // grouped, and returns the Request of its completion event.
  template <class Issue>
  Request on_comm_stream(Issue issue) {
    kernels::event_record(ready_, dev_);
    kernels::stream_wait_event(comm_stream_, ready_);
    check(ncclGroupStart(), "ncclGroupStart");
    issue(static_cast<cudaStream_t>(comm_stream_.stream));
    check(ncclGroupEnd(), "ncclGroupEnd");
    auto p = std::make_unique<PendingCall>();
    p->done = kernels::event_create(comm_stream_);
    kernels::event_record(p->done, comm_stream_);
    return Request(std::move(p));
  }

  Communicator& mpi_;
  kernels::Device dev_, comm_stream_;
  TagSpace tags_;
  ncclComm_t comm_ = nullptr;
  kernels::Event ready_;  // recorded on the compute stream before each call
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& mpi_group, const kernels::Device& dev,
                                                     TagSpace tags) {
  if (dev.backend != kernels::Backend::CUDA)
    throw std::logic_error("make_nccl_communicator: the device is not a CUDA device");
  return std::make_unique<NcclCommunicator>(mpi_group, dev, tags);
}

}  // namespace attnres
