#include "parallel/cuda/nccl_communicator.h"

#include <nccl.h>
#include <unistd.h>

#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda_debug.h"
#include "kernels/memory.h"
#include "parallel/comm_watch.h"
#include "parallel/cuda/nccl_arrangement.h"
#include "parallel/group_guard.h"
#include "parallel/shared_gpu.h"
#include "parallel/tensor_group.h"

namespace attnres {

namespace {

void check(ncclResult_t r, const char* call) {
  if (r != ncclSuccess) throw std::runtime_error(std::string("NCCL: ") + call + ": " + ncclGetErrorString(r));
}

ncclDataType_t nccl_type(kernels::DType t) {
  switch (t) {
    case kernels::DType::F32: return ncclFloat;
    case kernels::DType::BF16: return ncclBfloat16;
    case kernels::DType::I32: return ncclInt32;
    case kernels::DType::F64: return ncclFloat64;
  }
  throw std::logic_error("NCCL: no type for this dtype");
}

// A pending NCCL call: the event recorded on the communication stream after it.
struct PendingCall : Request::State {
  kernels::Event done;
  ~PendingCall() override { kernels::event_destroy(done); }
};

// One ncclComm_t: watched by the watchdog while it lives
// (parallel/comm_watch.h), destroyed with the object without throwing.
class NcclComm final : public AsyncComm {
 public:
  explicit NcclComm(ncclComm_t comm) : comm_(comm) { watch_comm(this); }
  ~NcclComm() override {
    unwatch_comm(this);
    kernels::release_quietly("ncclCommDestroy", [&] { check(ncclCommDestroy(comm_), "ncclCommDestroy"); });
  }
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;
  ncclComm_t get() const { return comm_; }

  std::string async_error() override {
    ncclResult_t r = ncclSuccess;
    if (const ncclResult_t q = ncclCommGetAsyncError(comm_, &r); q != ncclSuccess) r = q;
    if (r == ncclSuccess || r == ncclInProgress) return "";
    return std::string("NCCL: asynchronous error: ") + ncclGetErrorString(r) + " (" + ncclGetLastError(comm_) + ")";
  }
  void abort() override { ncclCommAbort(comm_); }

 private:
  ncclComm_t comm_;
};

// ATTNRES_SHARE_GPU: NCCL's environment for ranks on one device
// (parallel/shared_gpu.h), set before NCCL's first call in the process.
void prepare_nccl_env() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (!kernels::share_gpu()) return;
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    set_env(shared_gpu_nccl_env(host, long(::getpid())));
  });
}

// An NCCL communicator over the ranks of an MPI group: rank 0 makes the
// unique id and broadcasts it over MPI.
std::unique_ptr<NcclComm> nccl_comm_of(Communicator& mpi) {
  prepare_nccl_env();
  ncclUniqueId id;
  if (mpi.rank() == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  mpi.broadcast(&id, sizeof id, 0);
  ncclComm_t comm = nullptr;
  check(ncclCommInitRank(&comm, mpi.size(), id, mpi.rank()), "ncclCommInitRank");
  return std::make_unique<NcclComm>(comm);
}

// A communication stream beside a compute stream. Each call waits for the
// compute stream's work issued before it (an event), issues its NCCL calls
// in one group on the communication stream, and returns its completion
// event. Its errors name the call (`what`). Under ATTNRES_CUDA_DEBUG the
// communicator's asynchronous error is checked right after; the call is
// not waited for: a receive posted ahead finishes only when the peer gets
// further, which may be after this rank's next calls.
class CommStream {
 public:
  explicit CommStream(const kernels::Device& compute)
      : compute_(compute),
        comm_(kernels::open_device(kernels::Backend::CUDA, compute.ordinal)),
        ready_(kernels::event_create(compute)) {}
  ~CommStream() {
    kernels::event_destroy(ready_);
    kernels::close_device(comm_);
  }
  CommStream(const CommStream&) = delete;
  CommStream& operator=(const CommStream&) = delete;

  template <class Issue>
  std::unique_ptr<PendingCall> run(NcclComm& comm, const char* what, Issue issue) {
    return kernels::run_op(
        what, kernels::cuda_debug(),
        [&] {
          kernels::event_record(ready_, compute_);
          kernels::stream_wait_event(comm_, ready_);
          GroupGuard group([] { check(ncclGroupStart(), "ncclGroupStart"); },
                           [] { check(ncclGroupEnd(), "ncclGroupEnd"); });
          issue(comm.get(), static_cast<cudaStream_t>(comm_.stream));
          group.close();
          auto p = std::make_unique<PendingCall>();
          p->done = kernels::event_create(comm_);
          kernels::event_record(p->done, comm_);
          return p;
        },
        [&] { return comm.async_error(); });
  }
  // Work issued on the compute stream from now on waits for the call.
  void join(const PendingCall& p) const { kernels::stream_wait_event(compute_, p.done); }

 private:
  kernels::Device compute_, comm_;
  kernels::Event ready_;  // recorded on the compute stream before each call
};

// The communicator of one directed edge of the group (two ranks), on a
// stream of its own: nccl_arrangement.h says why.
struct Edge {
  std::unique_ptr<NcclComm> comm;
  int peer = 0;  // the other end's rank in comm
  std::unique_ptr<CommStream> stream;
};

// An Edge for each directed edge this rank is an end of, by p2p_queue, split
// from the group's communicator one round of edge_rounds at a time. One float
// crosses each new edge at once: NCCL connects peers at their first call,
// with a handshake inside ncclGroupEnd, and here no hop waits for one.
std::vector<Edge> split_edges(const NcclComm& group, int me, int size, const kernels::Device& dev) {
  std::vector<Edge> edges(size_t(size * size));
  kernels::DeviceBuffer<float> one(dev, 1);
  for (const auto& round : edge_rounds(size)) {
    int color = NCCL_SPLIT_NOCOLOR, peer = 0;
    for (const auto& [src, dst] : round)
      if (src == me || dst == me) {
        color = p2p_queue(src, dst, size);
        peer = src == me ? dst : src;
      }
    ncclComm_t comm = nullptr;
    check(ncclCommSplit(group.get(), color, me, &comm, nullptr), "ncclCommSplit");  // key me: the lower rank is 0
    if (color == NCCL_SPLIT_NOCOLOR) continue;
    Edge& e = edges[size_t(color)];
    e = {std::make_unique<NcclComm>(comm), peer < me ? 0 : 1, std::make_unique<CommStream>(dev)};
    const std::unique_ptr<PendingCall> hello = e.stream->run(*e.comm, "NCCL edge set-up", [&](ncclComm_t c, cudaStream_t s) {
      if (color == p2p_queue(me, peer, size)) check(ncclSend(one.data(), 1, ncclFloat, e.peer, c, s), "ncclSend");
      else check(ncclRecv(one.data(), 1, ncclFloat, e.peer, c, s), "ncclRecv");
    });
    kernels::event_synchronize(hello->done);
  }
  return edges;
}

class NcclCommunicator final : public Communicator {
 public:
  // Edges only where messages may go (a TagSpace that allows them).
  NcclCommunicator(std::unique_ptr<Communicator> mpi, const kernels::Device& dev, TagSpace tags)
      : mpi_owned_(std::move(mpi)), mpi_(*mpi_owned_), stream_(dev), tags_(tags), comm_(nccl_comm_of(mpi_)),
        edges_(tags.microbatches > 0 ? split_edges(*comm_, rank(), size(), dev) : std::vector<Edge>()) {}

  int rank() const override { return mpi_.rank(); }
  int size() const override { return mpi_.size(); }

  Request isend(const std::vector<TensorRef>& tensors, int peer, MessageTag tag) override {
    check_tag(tag, tensors.size());
    Edge& e = edge(rank(), peer);
    for (const TensorRef& t : tensors) bytes_sent_ += t.bytes();
    return Request(e.stream->run(*e.comm, "NcclCommunicator::isend", [&](ncclComm_t c, cudaStream_t s) {
      for (const TensorRef& t : tensors) check(ncclSend(t.data, t.count, nccl_type(t.dtype), e.peer, c, s), "ncclSend");
    }));
  }
  Request irecv(const std::vector<TensorRef>& tensors, int peer, MessageTag tag) override {
    check_tag(tag, tensors.size());
    Edge& e = edge(peer, rank());
    return Request(e.stream->run(*e.comm, "NcclCommunicator::irecv", [&](ncclComm_t c, cudaStream_t s) {
      for (const TensorRef& t : tensors) check(ncclRecv(t.data, t.count, nccl_type(t.dtype), e.peer, c, s), "ncclRecv");
    }));
  }
  // Every CommStream joins the same compute stream.
  void wait(Request& r) override {
    if (!r.pending()) return;
    stream_.join(static_cast<PendingCall&>(*r.state));
    r.state.reset();
  }
  // Done only once the call has finished on its stream: joining the compute
  // stream earlier would make compute wait for a call still running (the
  // executor tests the dp sums after every action to move them along).
  bool test(Request& r) override {
    if (r.pending() && !kernels::event_done(static_cast<PendingCall&>(*r.state).done)) return false;
    wait(r);
    return true;
  }

  void allreduce_sum(float* data, size_t n) override {
    Request r = iallreduce_sum(data, n);
    wait(r);
  }
  Request iallreduce_sum(float* data, size_t n) override {
    return Request(stream_.run(*comm_, "NcclCommunicator::iallreduce_sum", [&](ncclComm_t c, cudaStream_t s) {
      check(ncclAllReduce(data, data, n, ncclFloat, ncclSum, c, s), "ncclAllReduce");
    }));
  }
  // ZeRO-1's parts may differ by a float, and ncclReduceScatter/AllGather
  // want equal ones: one ncclReduce (ncclBroadcast) per part, rooted at its
  // owner, in the call's one group.
  Request ireduce_scatter_sum(float* in, float* out, const std::vector<size_t>& counts) override {
    return Request(stream_.run(*comm_, "NcclCommunicator::ireduce_scatter_sum", [&](ncclComm_t c, cudaStream_t s) {
      size_t off = 0;
      for (size_t r = 0; r < counts.size(); off += counts[r], ++r)
        check(ncclReduce(in + off, out, counts[r], ncclFloat, ncclSum, int(r), c, s), "ncclReduce");
    }));
  }
  void allgather_parts(TensorRef data, const std::vector<size_t>& counts) override {
    Request r = Request(stream_.run(*comm_, "NcclCommunicator::allgather_parts", [&](ncclComm_t c, cudaStream_t s) {
      char* base = static_cast<char*>(data.data);
      const size_t elem = kernels::dtype_size(data.dtype);
      size_t off = 0;
      for (size_t k = 0; k < counts.size(); off += counts[k], ++k)
        check(ncclBroadcast(base + off * elem, base + off * elem, counts[k], nccl_type(data.dtype), int(k), c, s),
              "ncclBroadcast");
    }));
    wait(r);
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
  Edge& edge(int src, int dst) {
    if (src < 0 || dst < 0 || src >= size() || dst >= size() || src == dst)
      throw std::logic_error("NcclCommunicator: no edge " + std::to_string(src) + " -> " + std::to_string(dst));
    return edges_[size_t(p2p_queue(src, dst, size()))];
  }
  std::unique_ptr<Communicator> mpi_owned_;
  Communicator& mpi_;
  CommStream stream_;  // the collectives'
  TagSpace tags_;
  std::unique_ptr<NcclComm> comm_;  // the whole group's: the collectives
  std::vector<Edge> edges_;         // by p2p_queue; this rank's ends only
};

// The tensor group's collectives (models/tensor_collectives.h) on a
// communication stream ordered by events; each returns with the compute
// stream waiting for it, since the model reads its result next.
class NcclTensorGroup final : public TensorGroup {
 public:
  NcclTensorGroup(Communicator& mpi, const kernels::Device& dev)
      : rank_(mpi.rank()), size_(mpi.size()), stream_(dev), comm_(nccl_comm_of(mpi)) {}
  NcclTensorGroup(const NcclTensorGroup&) = delete;
  NcclTensorGroup& operator=(const NcclTensorGroup&) = delete;
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void allreduce_sum(float* x, size_t n) override {
    call("NcclTensorGroup::allreduce_sum",
         [&](ncclComm_t c, cudaStream_t s) { check(ncclAllReduce(x, x, n, ncclFloat, ncclSum, c, s), "ncclAllReduce"); });
    bytes_ += ring_allreduce_bytes(n, size_);
  }
  void allreduce_max(float* x, size_t n) override {
    call("NcclTensorGroup::allreduce_max",
         [&](ncclComm_t c, cudaStream_t s) { check(ncclAllReduce(x, x, n, ncclFloat, ncclMax, c, s), "ncclAllReduce"); });
    bytes_ += ring_allreduce_bytes(n, size_);
  }
  void allgather(float* out, const float* in, size_t n) override {
    call("NcclTensorGroup::allgather",
         [&](ncclComm_t c, cudaStream_t s) { check(ncclAllGather(in, out, n, ncclFloat, c, s), "ncclAllGather"); });
    bytes_ += ring_allgather_bytes(n, size_);
  }
  void allgather(kernels::bf16* out, const kernels::bf16* in, size_t n) override {
    call("NcclTensorGroup::allgather (bf16)",
         [&](ncclComm_t c, cudaStream_t s) { check(ncclAllGather(in, out, n, ncclBfloat16, c, s), "ncclAllGather"); });
    bytes_ += ring_allgather_bytes(n, size_, sizeof(kernels::bf16));
  }
  void reduce_scatter_sum(float* out, const float* in, size_t n) override {
    call("NcclTensorGroup::reduce_scatter_sum", [&](ncclComm_t c, cudaStream_t s) {
      check(ncclReduceScatter(in, out, n, ncclFloat, ncclSum, c, s), "ncclReduceScatter");
    });
    bytes_ += ring_allgather_bytes(n, size_);
  }

 private:
  template <class Issue>
  void call(const char* what, Issue issue) {
    stream_.join(*stream_.run(*comm_, what, issue));
  }
  int rank_, size_;
  CommStream stream_;
  std::unique_ptr<NcclComm> comm_;
};

void require_cuda(const kernels::Device& dev, const char* what) {
  if (dev.backend != kernels::Backend::CUDA) throw std::logic_error(std::string(what) + ": the device is not a CUDA device");
}

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Communicator> mpi_group,
                                                     const kernels::Device& dev, TagSpace tags) {
  require_cuda(dev, "make_nccl_communicator");
  return std::make_unique<NcclCommunicator>(std::move(mpi_group), dev, tags);
}

Groups make_nccl_groups(Groups mpi, const kernels::Device& dev, TagSpace pipeline_tags) {
  require_cuda(dev, "make_nccl_groups");
  Groups g;
  if (mpi.tensor->size() > 1) g.tensor_collectives = std::make_unique<NcclTensorGroup>(*mpi.tensor, dev);
  g.world = std::move(mpi.world);
  g.pipeline = make_nccl_communicator(std::move(mpi.pipeline), dev, pipeline_tags);
  g.data = make_nccl_communicator(std::move(mpi.data), dev, TagSpace{});
  g.tensor = make_nccl_communicator(std::move(mpi.tensor), dev, TagSpace{});
  return g;
}

}  // namespace attnres
