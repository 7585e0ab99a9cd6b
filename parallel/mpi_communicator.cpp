#include "parallel/mpi_communicator.h"

#include <mpi.h>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

namespace attnres {

namespace {

// MPI errors are returned (MPI_ERRORS_RETURN on every communicator we own) and
// turned into exceptions naming the call.
void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw std::runtime_error(std::string(what) + " failed: " + std::string(msg, len));
}

int checked_count(size_t count) {
  if (count > static_cast<size_t>(INT_MAX))
    throw std::runtime_error("tensor of " + std::to_string(count) +
                             " floats exceeds the MPI message limit of INT_MAX elements");
  return static_cast<int>(count);
}

// Collectives on more than INT_MAX elements go in pieces.
constexpr size_t kPiece = size_t{1} << 30;

struct MpiRequestState final : Request::State {
  std::vector<MPI_Request> reqs;
  // Called when `reqs` complete: posts the next step's requests and returns
  // true, or returns false when the operation is done (a ring's steps).
  std::function<bool()> next;
  std::vector<int> counts, displs;  // a vector collective's, alive until it completes
  ~MpiRequestState() override {
    for (MPI_Request r : reqs) {
      if (r != MPI_REQUEST_NULL) {
        std::fputs("attnres: a pending MPI request was destroyed without wait()\n", stderr);
        std::abort();
      }
    }
  }
};

// ZeRO-1's parts as MPI's int counts. Their displacements are ints too, so
// the whole buffer must stay below 2^31 floats.
std::vector<int> int_counts(const std::vector<size_t>& counts) {
  size_t total = 0;
  for (size_t c : counts) total += c;
  if (total > size_t(INT_MAX))
    throw std::runtime_error("train.zero: a chunk of " + std::to_string(total) +
                             " floats is beyond what MPI's int counts address (2^31 - 1); "
                             "split the model over more pipeline or tensor ranks");
  return std::vector<int>(counts.begin(), counts.end());
}

MpiRequestState& mpi_state(Request& r) {
  auto* s = dynamic_cast<MpiRequestState*>(r.state.get());
  if (s == nullptr) throw std::logic_error("request was not created by an MpiCommunicator");
  return *s;
}

}  // namespace

// The Communicator over one MPI communicator; only this file sees it.
class MpiCommunicator final : public Communicator {
 public:
  // Takes ownership of `comm` (freed in the destructor). Throws
  // std::runtime_error if `tags` does not fit MPI_TAG_UB.
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
  Request ireduce_scatter_sum(float* data, float* out, const std::vector<size_t>& counts) override;
  void allgather_parts(TensorRef data, const std::vector<size_t>& counts) override;
  Request iallgather_parts(TensorRef data, const std::vector<size_t>& counts) override;
  void broadcast(void* data, size_t bytes, int root) override;
  std::vector<std::string> gather(const void* data, size_t bytes, int root) override;
  std::vector<std::string> allgather(const void* data, size_t bytes) override;
  void barrier() override;
  void progress() override;

 private:
  Request post(const std::vector<TensorRef>& tensors, int peer, MessageTag tag, bool send);
  std::vector<std::string> gather_to(const void* data, size_t bytes, int root);

  MPI_Comm comm_;
  MPI_Comm ring_comm_ = MPI_COMM_NULL;  // a duplicate for the ring's messages, made at its first use
  int rank_ = 0, size_ = 1;
  int tag_ub_ = 32767;  // the standard's minimum, until MPI_TAG_UB is read
  uint64_t rings_ = 0;  // ring reductions started: names their messages
  TagSpace tags_;
};

void init_mpi(int* argc, char*** argv) {
  int initialized = 0;
  check(MPI_Initialized(&initialized), "MPI_Initialized");
  int provided = 0;
  if (initialized) {
    check(MPI_Query_thread(&provided), "MPI_Query_thread");
  } else {
    check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    std::atexit([] {
      int finalized = 0;
      MPI_Finalized(&finalized);
      if (!finalized) MPI_Finalize();
    });
  }
  if (provided < MPI_THREAD_FUNNELED)
    throw std::runtime_error("MPI provides thread level " + std::to_string(provided) +
                             ", below MPI_THREAD_FUNNELED (" + std::to_string(MPI_THREAD_FUNNELED) +
                             ") that attnres needs: OpenMP, the watchdog and the checkpoint writer "
                             "run threads beside the one that calls MPI");
}

int encode_tag(const TagSpace& space, MessageTag tag, int index) {
  const int dir = static_cast<int>(tag.dir);
  if (tag.mb < 0 || tag.mb >= space.microbatches || tag.chunk < 0 || tag.chunk >= space.chunks ||
      index < 0 || index >= space.max_tensors || (dir != 0 && dir != 1))
    throw std::logic_error("message (mb=" + std::to_string(tag.mb) + ", chunk=" +
                           std::to_string(tag.chunk) + ", tensor=" + std::to_string(index) +
                           ") is outside the communicator's tag space (" +
                           std::to_string(space.microbatches) + " microbatches, " +
                           std::to_string(space.chunks) + " chunks, " +
                           std::to_string(space.max_tensors) + " tensors per message)");
  return ((tag.mb * space.chunks + tag.chunk) * 2 + dir) * space.max_tensors + index;
}

// Throws unless microbatches · chunks · 2 · max_tensors distinct tags fit in
// [0, tag_ub].
static void check_tag_space(const TagSpace& tags, int64_t tag_ub) {
  if (tags.microbatches < 0 || tags.chunks < 0 || tags.max_tensors < 0)
    throw std::logic_error("negative tag space");
  // Multiplied stepwise so it cannot overflow: every factor is < 2^31 and the
  // running product is checked against tag_ub + 1 <= 2^31 after each step.
  int64_t n = 1;
  for (int64_t f : {int64_t{tags.microbatches}, int64_t{tags.chunks}, int64_t{2},
                    int64_t{tags.max_tensors}}) {
    n *= f;
    if (n > tag_ub + 1)
      throw std::runtime_error(
          "cannot encode pipeline message tags: " + std::to_string(tags.microbatches) +
          " microbatches × " + std::to_string(tags.chunks) + " chunks × 2 directions × " +
          std::to_string(tags.max_tensors) + " tensors per hop need more than MPI_TAG_UB + 1 = " +
          std::to_string(tag_ub + 1) +
          " tags; use fewer microbatches (the larger of train.grad_accum / parallel.dp and "
          "train.eval_batches) or chunks (parallel.pp × parallel.virtual_stages)");
  }
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, TagSpace tags) : comm_(comm), tags_(tags) {
  try {
    check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    void* attr = nullptr;
    int flag = 0;
    check(MPI_Comm_get_attr(comm_, MPI_TAG_UB, &attr, &flag), "MPI_Comm_get_attr(MPI_TAG_UB)");
    if (flag) tag_ub_ = *static_cast<int*>(attr);
    check_tag_space(tags, tag_ub_);
  } catch (...) {
    MPI_Comm_free(&comm_);  // the destructor will not run
    throw;
  }
}

MpiCommunicator::~MpiCommunicator() {
  if (ring_comm_ != MPI_COMM_NULL) MPI_Comm_free(&ring_comm_);
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

// bf16 travels as its 16-bit pattern: MPI only moves it.
static MPI_Datatype mpi_type(kernels::DType t) {
  switch (t) {
    case kernels::DType::F32: return MPI_FLOAT;
    case kernels::DType::BF16: return MPI_UINT16_T;
    case kernels::DType::I32: return MPI_INT32_T;
    case kernels::DType::F64: return MPI_DOUBLE;
  }
  return MPI_DATATYPE_NULL;
}

Request MpiCommunicator::post(const std::vector<TensorRef>& tensors, int peer, MessageTag tag,
                              bool send) {
  if (peer < 0 || peer >= size_)
    throw std::logic_error("peer " + std::to_string(peer) + " is outside communicator of size " +
                           std::to_string(size_));
  if (tensors.size() > static_cast<size_t>(tags_.max_tensors))
    throw std::logic_error("message of " + std::to_string(tensors.size()) +
                           " tensors exceeds the tag space's " +
                           std::to_string(tags_.max_tensors));
  auto state = std::make_unique<MpiRequestState>();
  state->reqs.assign(tensors.size(), MPI_REQUEST_NULL);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const int mpi_tag = encode_tag(tags_, tag, static_cast<int>(i));
    const int count = checked_count(tensors[i].count);
    if (send) {
      check(MPI_Isend(tensors[i].data, count, mpi_type(tensors[i].dtype), peer, mpi_tag, comm_, &state->reqs[i]),
            "MPI_Isend");
      bytes_sent_ += tensors[i].bytes();
    } else {
      check(MPI_Irecv(tensors[i].data, count, mpi_type(tensors[i].dtype), peer, mpi_tag, comm_, &state->reqs[i]),
            "MPI_Irecv");
    }
  }
  return Request(std::move(state));
}

Request MpiCommunicator::isend(const std::vector<TensorRef>& tensors, int peer, MessageTag tag) {
  return post(tensors, peer, tag, true);
}

Request MpiCommunicator::irecv(const std::vector<TensorRef>& tensors, int peer, MessageTag tag) {
  return post(tensors, peer, tag, false);
}

void MpiCommunicator::wait(Request& r) {
  if (!r.pending()) return;
  MpiRequestState& s = mpi_state(r);
  // A receive whose sender posted a different count fails here (MPI_ERR_TRUNCATE)
  // or leaves the tail unwritten; both sides derive counts from the hop spec.
  do {
    check(MPI_Waitall(static_cast<int>(s.reqs.size()), s.reqs.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
  } while (s.next && s.next());
  r.state.reset();
}

bool MpiCommunicator::test(Request& r) {
  if (!r.pending()) return true;
  MpiRequestState& s = mpi_state(r);
  int done = 0;
  check(MPI_Testall(static_cast<int>(s.reqs.size()), s.reqs.data(), &done, MPI_STATUSES_IGNORE),
        "MPI_Testall");
  if (!done || (s.next && s.next())) return false;
  r.state.reset();
  return true;
}

void MpiCommunicator::allreduce_sum(float* data, size_t n) {
  for (size_t off = 0; off < n; off += kPiece)
    check(MPI_Allreduce(MPI_IN_PLACE, data + off, static_cast<int>(std::min(kPiece, n - off)),
                        MPI_FLOAT, MPI_SUM, comm_),
          "MPI_Allreduce");
}

Request MpiCommunicator::iallreduce_sum(float* data, size_t n) {
  auto state = std::make_unique<MpiRequestState>();
  for (size_t off = 0; off < n; off += kPiece) {
    state->reqs.push_back(MPI_REQUEST_NULL);
    check(MPI_Iallreduce(MPI_IN_PLACE, data + off, static_cast<int>(std::min(kPiece, n - off)),
                         MPI_FLOAT, MPI_SUM, comm_, &state->reqs.back()),
          "MPI_Iallreduce");
  }
  return Request(std::move(state));
}

void MpiCommunicator::allreduce_sum(double* data, size_t n) {
  for (size_t off = 0; off < n; off += kPiece)
    check(MPI_Allreduce(MPI_IN_PLACE, data + off, static_cast<int>(std::min(kPiece, n - off)),
                        MPI_DOUBLE, MPI_SUM, comm_),
          "MPI_Allreduce");
}

// A ring of p - 1 steps, not MPI_Ireduce_scatter: Open MPI's non-blocking
// one reduces the whole buffer at rank 0 (a full-size temporary there, every
// addition on one rank) and made a ZeRO-1 step at dp = 2 ~25 % slower than
// all-reducing. Step k: send part (r - k - 1) mod p, as summed so far, to
// r + 1; receive part (r - k - 2) mod p from r - 1 into `out` and add it
// into `data`; the last step receives part r and sums it into `out`.
// wait/test advance the steps.
Request MpiCommunicator::ireduce_scatter_sum(float* data, float* out, const std::vector<size_t>& counts) {
  const int p = size_, r = rank_;
  int_counts(counts);  // throws where the parts are beyond MPI's int counts
  if (p == 1) {
    std::copy_n(data, counts[0], out);
    return Request();
  }
  if (ring_comm_ == MPI_COMM_NULL) check(MPI_Comm_dup(comm_, &ring_comm_), "MPI_Comm_dup");
  std::vector<size_t> offsets(counts.size());
  for (int i = 0; i < p; ++i) offsets[size_t(i)] = part_offset(counts, i);
  const int first_tag = int((rings_++ * uint64_t(p - 1)) % (uint64_t(tag_ub_) + 1 - uint64_t(p)));
  auto state = std::make_unique<MpiRequestState>();
  MpiRequestState* s = state.get();
  const MPI_Comm comm = ring_comm_;
  auto part = [p, r](int k) { return size_t(((r - k) % p + p) % p); };
  auto post = [=](int k) {
    const size_t send = part(k + 1), recv = part(k + 2);
    s->reqs.assign(2, MPI_REQUEST_NULL);
    check(MPI_Irecv(out, int(counts[recv]), MPI_FLOAT, (r + p - 1) % p, first_tag + k, comm, &s->reqs[0]),
          "MPI_Irecv");
    check(MPI_Isend(data + offsets[send], int(counts[send]), MPI_FLOAT, (r + 1) % p, first_tag + k, comm,
                    &s->reqs[1]),
          "MPI_Isend");
  };
  post(0);
  s->next = [=, k = 0]() mutable {
    const size_t recv = part(k + 2);
    float* acc = data + offsets[recv];
    const bool last = k == p - 2;
    float* sum = last ? out : acc;
    const float* add = last ? acc : out;
    for (size_t i = 0; i < counts[recv]; ++i) sum[i] += add[i];
    if (last) return false;
    post(++k);
    return true;
  };
  return Request(std::move(state));
}

void MpiCommunicator::allgather_parts(TensorRef data, const std::vector<size_t>& counts) {
  Request r = iallgather_parts(data, counts);
  wait(r);
}

// The counts and displacements stay alive in the request until it completes.
Request MpiCommunicator::iallgather_parts(TensorRef data, const std::vector<size_t>& counts) {
  auto state = std::make_unique<MpiRequestState>();
  state->counts = int_counts(counts);
  state->displs.resize(counts.size());
  for (size_t r = 0; r < counts.size(); ++r) state->displs[r] = int(part_offset(counts, int(r)));  // < 2^31: int_counts checked
  state->reqs.assign(1, MPI_REQUEST_NULL);
  if (data.dtype != kernels::DType::F32 && data.dtype != kernels::DType::BF16)
    throw std::logic_error("iallgather_parts: weights are fp32 or bf16");
  const MPI_Datatype type = data.dtype == kernels::DType::F32 ? MPI_FLOAT : MPI_UINT16_T;  // bf16: its bits
  check(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data.data, state->counts.data(), state->displs.data(),
                        type, comm_, &state->reqs[0]),
        "MPI_Iallgatherv");
  return Request(std::move(state));
}

void MpiCommunicator::broadcast(void* data, size_t bytes, int root) {
  if (root < 0 || root >= size_)
    throw std::logic_error("broadcast root " + std::to_string(root) +
                           " is outside communicator of size " + std::to_string(size_));
  auto* p = static_cast<char*>(data);
  for (size_t off = 0; off < bytes; off += kPiece)
    check(MPI_Bcast(p + off, static_cast<int>(std::min(kPiece, bytes - off)), MPI_BYTE, root,
                    comm_),
          "MPI_Bcast");
}

// In rounds, so that every count and displacement fits an int: in each, every
// rank contributes its next piece of at most kPiece / size bytes. root < 0:
// every rank receives (all-gather).
std::vector<std::string> MpiCommunicator::gather_to(const void* data, size_t bytes, int root) {
  std::vector<uint64_t> len(size_t(size_), 0);
  const uint64_t mine = bytes;
  check(MPI_Allgather(&mine, 1, MPI_UINT64_T, len.data(), 1, MPI_UINT64_T, comm_), "MPI_Allgather");
  const bool receives = root < 0 || rank_ == root;
  std::vector<std::string> out;
  if (receives)
    for (uint64_t n : len) out.emplace_back(n, '\0');
  const uint64_t piece = std::max<uint64_t>(1, kPiece / size_t(size_));
  const uint64_t longest = *std::max_element(len.begin(), len.end());
  std::vector<int> counts(len.size()), displs(len.size());
  std::string buf;
  for (uint64_t off = 0; off < longest; off += piece) {
    int total = 0;
    for (size_t r = 0; r < len.size(); ++r) {
      counts[r] = int(len[r] > off ? std::min(piece, len[r] - off) : 0);
      displs[r] = total;
      total += counts[r];
    }
    if (receives) buf.resize(size_t(total));
    const char* src = static_cast<const char*>(data) + (counts[size_t(rank_)] ? off : 0);
    if (root < 0)
      check(MPI_Allgatherv(src, counts[size_t(rank_)], MPI_BYTE, buf.data(), counts.data(), displs.data(),
                           MPI_BYTE, comm_),
            "MPI_Allgatherv");
    else
      check(MPI_Gatherv(src, counts[size_t(rank_)], MPI_BYTE, buf.data(), counts.data(), displs.data(),
                        MPI_BYTE, root, comm_),
            "MPI_Gatherv");
    if (receives)
      for (size_t r = 0; r < len.size(); ++r) std::copy_n(buf.data() + displs[r], counts[r], out[r].data() + off);
  }
  return out;
}

std::vector<std::string> MpiCommunicator::gather(const void* data, size_t bytes, int root) {
  if (root < 0 || root >= size_)
    throw std::logic_error("gather root " + std::to_string(root) + " is outside communicator of size " +
                           std::to_string(size_));
  return gather_to(data, bytes, root);
}

std::vector<std::string> MpiCommunicator::allgather(const void* data, size_t bytes) {
  return gather_to(data, bytes, -1);
}

void MpiCommunicator::barrier() {
  MPI_Request req = MPI_REQUEST_NULL;
  check(MPI_Ibarrier(comm_, &req), "MPI_Ibarrier");
  for (int done = 0;;) {
    check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (done) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// Any MPI call runs Open MPI's progress engine; a probe is the cheapest.
void MpiCommunicator::progress() {
  int flag = 0;
  check(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &flag, MPI_STATUS_IGNORE), "MPI_Iprobe");
}

// Fails clearly, not with an MPI abort, when MPI was never initialised.
static void require_mpi() {
  int initialized = 0;
  check(MPI_Initialized(&initialized), "MPI_Initialized");
  if (!initialized) throw std::logic_error("MPI is not initialised: call init_mpi() first");
}

std::unique_ptr<Communicator> make_mpi_world(TagSpace tags) {
  require_mpi();
  MPI_Comm comm = MPI_COMM_NULL;
  check(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "MPI_Comm_dup");
  return std::make_unique<MpiCommunicator>(comm, tags);
}

// The tensor group's collectives (parallel/tensor_group.h), blocking, on its
// own MPI communicator (freed at destruction).
class MpiTensorGroup final : public TensorGroup {
 public:
  explicit MpiTensorGroup(MPI_Comm comm) : comm_(comm) {
    check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }
  ~MpiTensorGroup() override { MPI_Comm_free(&comm_); }
  MpiTensorGroup(const MpiTensorGroup&) = delete;
  MpiTensorGroup& operator=(const MpiTensorGroup&) = delete;
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void allreduce_sum(float* x, size_t n) override {
    check(MPI_Allreduce(MPI_IN_PLACE, x, checked_count(n), MPI_FLOAT, MPI_SUM, comm_), "MPI_Allreduce (tensor)");
    bytes_ += ring_allreduce_bytes(n, size_);
  }
  void allreduce_max(float* x, size_t n) override {
    check(MPI_Allreduce(MPI_IN_PLACE, x, checked_count(n), MPI_FLOAT, MPI_MAX, comm_), "MPI_Allreduce (tensor, max)");
    bytes_ += ring_allreduce_bytes(n, size_);
  }
  void allgather(float* out, const float* in, size_t n) override {
    check(MPI_Allgather(in, checked_count(n), MPI_FLOAT, out, checked_count(n), MPI_FLOAT, comm_),
          "MPI_Allgather (tensor)");
    bytes_ += ring_allgather_bytes(n, size_);
  }
  void allgather(kernels::bf16* out, const kernels::bf16* in, size_t n) override {
    check(MPI_Allgather(in, checked_count(n), MPI_UINT16_T, out, checked_count(n), MPI_UINT16_T, comm_),
          "MPI_Allgather (tensor, bf16)");
    bytes_ += ring_allgather_bytes(n, size_, sizeof(kernels::bf16));
  }
  void reduce_scatter_sum(float* out, const float* in, size_t n) override {
    check(MPI_Reduce_scatter_block(in, out, checked_count(n), MPI_FLOAT, MPI_SUM, comm_),
          "MPI_Reduce_scatter_block (tensor)");
    bytes_ += ring_allgather_bytes(n, size_);
  }

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

std::unique_ptr<Communicator> make_mpi_node() {
  require_mpi();
  MPI_Comm comm = MPI_COMM_NULL;
  check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &comm),
        "MPI_Comm_split_type");
  return std::make_unique<MpiCommunicator>(comm);
}

Groups make_mpi_groups(const Topology& topo, TagSpace pipeline_tags) {
  require_mpi();
  int world_size = 0, world_rank = 0;
  check(MPI_Comm_size(MPI_COMM_WORLD, &world_size), "MPI_Comm_size");
  check(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank), "MPI_Comm_rank");
  if (world_size != topo.world_size || world_rank != topo.world_rank)
    throw std::runtime_error("topology was built for world rank " +
                             std::to_string(topo.world_rank) + " of " +
                             std::to_string(topo.world_size) + " but this process is rank " +
                             std::to_string(world_rank) + " of " + std::to_string(world_size));
  const Coord c = topo.coord;
  // color = the coordinates that stay fixed in the group, key = the one that varies.
  auto split = [](int color, int key, TagSpace tags) {
    MPI_Comm comm = MPI_COMM_NULL;
    check(MPI_Comm_split(MPI_COMM_WORLD, color, key, &comm), "MPI_Comm_split");
    auto g = std::make_unique<MpiCommunicator>(comm, tags);
    assert(g->rank() == key);
    return g;
  };
  Groups g;
  g.world = make_mpi_world();
  g.pipeline = split(c.dp_idx * topo.tp + c.tp_idx, c.pp_idx, pipeline_tags);
  g.data = split(c.pp_idx * topo.tp + c.tp_idx, c.dp_idx, TagSpace{});
  g.tensor = split(c.pp_idx * topo.dp + c.dp_idx, c.tp_idx, TagSpace{});
  if (topo.tp > 1) {
    MPI_Comm comm = MPI_COMM_NULL;
    check(MPI_Comm_split(MPI_COMM_WORLD, c.pp_idx * topo.dp + c.dp_idx, c.tp_idx, &comm), "MPI_Comm_split");
    g.tensor_collectives = std::make_unique<MpiTensorGroup>(comm);
  }
  assert(g.pipeline->size() == topo.pp && g.data->size() == topo.dp && g.tensor->size() == topo.tp);
  return g;
}

}  // namespace attnres
