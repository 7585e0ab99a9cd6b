#include "tests/parallel/fake_communicator.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>

namespace attnres {

namespace {

struct PendingRecv final : Request::State {
  std::vector<TensorRef> into;
  int peer;
  MessageTag tag;
  PendingRecv(std::vector<TensorRef> t, int p, MessageTag g) : into(std::move(t)), peer(p), tag(g) {}
};

// The sum of the ranks' [from, from + n) into `out`.
struct PendingSum final : Request::State {
  uint64_t seq;
  float* out;
  size_t from, n;
  PendingSum(uint64_t s, float* o, size_t f, size_t k) : seq(s), out(o), from(f), n(k) {}
};

// Element-wise sum of the ranks' elements [from, from + n), in rank order.
template <class T>
void sum_parts(const std::vector<std::vector<char>>& parts, T* out, size_t n, size_t from = 0) {
  std::vector<T> acc(n), part(n);
  std::memcpy(acc.data(), parts[0].data() + from * sizeof(T), n * sizeof(T));
  for (size_t r = 1; r < parts.size(); ++r) {
    std::memcpy(part.data(), parts[r].data() + from * sizeof(T), n * sizeof(T));
    for (size_t i = 0; i < n; ++i) acc[i] += part[i];
  }
  std::memcpy(out, acc.data(), n * sizeof(T));
}

}  // namespace

std::string tag_name(int src, int dst, MessageTag t) {
  return std::string(t.dir == Direction::Forward ? "forward" : "backward") + " message " +
         std::to_string(src) + "->" + std::to_string(dst) + " (mb " + std::to_string(t.mb) + ", chunk " +
         std::to_string(t.chunk) + ")";
}

FakeNetwork::FakeNetwork(int size)
    : size_(size), next_collective_(size_t(size), 0), reductions_(size_t(size)) {}

bool FakeNetwork::await(std::unique_lock<std::mutex>& lock, const std::function<bool()>& ready, bool block,
                        const std::string& what) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!ready()) {
    if (failed_) throw std::runtime_error("fake network: another rank failed while waiting for " + what);
    if (!block) return false;
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && !ready())
      throw std::runtime_error("fake network: waited 60 s for " + what);
  }
  return true;
}

std::vector<std::string> FakeNetwork::problems() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out = problems_;
  for (const auto& [key, queue] : queues_)
    if (!queue.empty()) {
      const auto [src, dst, mb, chunk, dir] = key;
      out.push_back(std::to_string(queue.size()) + " " +
                    tag_name(src, dst, {mb, chunk, static_cast<Direction>(dir)}) + " never received");
    }
  return out;
}

std::vector<std::string> FakeNetwork::p2p_order_mismatches() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  auto same = [](const MessageTag& a, const MessageTag& b) { return a.mb == b.mb && a.chunk == b.chunk && a.dir == b.dir; };
  std::map<std::pair<int, int>, bool> pairs;
  for (const auto& [key, tags] : sends_issued_) pairs[key] = true;
  for (const auto& [key, tags] : recvs_issued_) pairs[key] = true;
  for (const auto& [key, unused] : pairs) {
    const std::vector<MessageTag>& s = sends_issued_[key];
    const std::vector<MessageTag>& r = recvs_issued_[key];
    for (size_t i = 0; i < std::max(s.size(), r.size()); ++i) {
      if (i < s.size() && i < r.size() && same(s[i], r[i])) continue;
      out.push_back("rank " + std::to_string(key.first) + " -> rank " + std::to_string(key.second) + ": call " +
                    std::to_string(i) + " is " +
                    (i < s.size() ? tag_name(key.first, key.second, s[i]) : std::string("no send")) +
                    " on the sender but " +
                    (i < r.size() ? tag_name(key.first, key.second, r[i]) : std::string("no receive")) +
                    " on the receiver");
      break;
    }
  }
  return out;
}

int FakeNetwork::messages_received() {
  std::lock_guard<std::mutex> lock(mu_);
  return received_;
}

std::vector<const float*> FakeNetwork::reductions_of(int rank) {
  std::lock_guard<std::mutex> lock(mu_);
  return reductions_[size_t(rank)];
}

void FakeNetwork::fail() {
  std::lock_guard<std::mutex> lock(mu_);
  failed_ = true;
  cv_.notify_all();
}

Request FakeCommunicator::isend(const std::vector<TensorRef>& tensors, int peer, MessageTag tag) {
  if (peer < 0 || peer >= size()) throw std::logic_error("fake isend to rank " + std::to_string(peer));
  std::vector<std::vector<char>> copy;
  for (const TensorRef& t : tensors) {
    const char* p = static_cast<const char*>(t.data);
    copy.emplace_back(p, p + t.bytes());
    bytes_sent_ += t.bytes();
  }
  std::lock_guard<std::mutex> lock(net_.mu_);
  net_.queues_[{rank_, peer, tag.mb, tag.chunk, int(tag.dir)}].push_back(std::move(copy));
  net_.sends_issued_[{rank_, peer}].push_back(tag);
  net_.cv_.notify_all();
  return Request();  // buffered: complete at once
}

Request FakeCommunicator::irecv(const std::vector<TensorRef>& tensors, int peer, MessageTag tag) {
  if (peer < 0 || peer >= size()) throw std::logic_error("fake irecv from rank " + std::to_string(peer));
  {
    std::lock_guard<std::mutex> lock(net_.mu_);
    net_.recvs_issued_[{peer, rank_}].push_back(tag);
  }
  return Request(std::make_unique<PendingRecv>(tensors, peer, tag));
}

bool FakeCommunicator::complete(Request& r, bool block) {
  if (!r.pending()) return true;
  if (auto* sum = dynamic_cast<PendingSum*>(r.state.get())) {
    const PendingSum& p = *sum;
    if (!take_collective(p.seq, [&](const auto& parts) { sum_parts(parts, p.out, p.n, p.from); }, block))
      return false;
    r.state.reset();
    return true;
  }
  auto& recv = dynamic_cast<PendingRecv&>(*r.state);
  std::unique_lock<std::mutex> lock(net_.mu_);
  auto& queue = net_.queues_[{recv.peer, rank_, recv.tag.mb, recv.tag.chunk, int(recv.tag.dir)}];
  const std::string what = tag_name(recv.peer, rank_, recv.tag);
  if (!net_.await(lock, [&] { return !queue.empty(); }, block, what)) return false;
  const std::vector<std::vector<char>> msg = std::move(queue.front());
  queue.erase(queue.begin());
  bool same = msg.size() == recv.into.size();
  for (size_t i = 0; same && i < msg.size(); ++i) same = msg[i].size() == recv.into[i].bytes();
  if (same) {
    for (size_t i = 0; i < msg.size(); ++i) std::memcpy(recv.into[i].data, msg[i].data(), msg[i].size());
    net_.received_++;
  } else {
    net_.problems_.push_back(what + ": the receive's tensor sizes differ from the send's");
  }
  r.state.reset();
  return true;
}

uint64_t FakeCommunicator::post_collective(const std::string& kind, const void* data, size_t bytes) {
  std::lock_guard<std::mutex> lock(net_.mu_);
  const uint64_t seq = net_.next_collective_[size_t(rank_)]++;
  FakeNetwork::Collective& c = net_.collectives_[seq];
  if (c.posted == 0) {
    c.kind = kind;
    c.parts.resize(size_t(size()));
  } else if (c.kind != kind) {
    net_.problems_.push_back("collective #" + std::to_string(seq) + ": rank " + std::to_string(rank_) +
                             " calls " + kind + ", another rank " + c.kind);
  }
  const char* p = static_cast<const char*>(data);
  c.parts[size_t(rank_)].assign(p, p + bytes);
  c.posted++;
  net_.cv_.notify_all();
  return seq;
}

bool FakeCommunicator::take_collective(
    uint64_t seq, const std::function<void(const std::vector<std::vector<char>>&)>& combine, bool block) {
  std::unique_lock<std::mutex> lock(net_.mu_);
  FakeNetwork::Collective& c = net_.collectives_.at(seq);
  if (!net_.await(lock, [&] { return c.posted == size(); }, block, "collective #" + std::to_string(seq)))
    return false;
  combine(c.parts);
  if (++c.taken == size()) net_.collectives_.erase(seq);
  return true;
}

Request FakeCommunicator::iallreduce_sum(float* data, size_t n) {
  const uint64_t seq = post_collective("allreduce_sum(float, " + std::to_string(n) + ")", data, n * sizeof(float));
  {
    std::lock_guard<std::mutex> lock(net_.mu_);
    net_.reductions_[size_t(rank_)].push_back(data);
  }
  return Request(std::make_unique<PendingSum>(seq, data, 0, n));
}

Request FakeCommunicator::ireduce_scatter_sum(float* in, float* out, const std::vector<size_t>& counts) {
  const size_t n = part_offset(counts, size());
  const uint64_t seq = post_collective("reduce_scatter_sum(" + std::to_string(n) + ")", in, n * sizeof(float));
  {
    std::lock_guard<std::mutex> lock(net_.mu_);
    net_.reductions_[size_t(rank_)].push_back(in);
  }
  return Request(std::make_unique<PendingSum>(seq, out, part_offset(counts, rank_), counts[size_t(rank_)]));
}

void FakeCommunicator::allgather_parts(TensorRef data, const std::vector<size_t>& counts) {
  const size_t n = part_offset(counts, size()), elem = kernels::dtype_size(data.dtype);
  const uint64_t seq = post_collective("allgather_parts(" + std::to_string(n) + ")", data.data, n * elem);
  take_collective(seq, [&](const auto& parts) {
    for (int r = 0; r < size(); ++r) {
      const size_t off = part_offset(counts, r) * elem;
      std::memcpy(static_cast<char*>(data.data) + off, parts[size_t(r)].data() + off, counts[size_t(r)] * elem);
    }
  }, true);
}

void FakeCommunicator::allreduce_sum(float* data, size_t n) {
  Request r = iallreduce_sum(data, n);
  wait(r);
}

void FakeCommunicator::allreduce_sum(double* data, size_t n) {
  const uint64_t seq = post_collective("allreduce_sum(double, " + std::to_string(n) + ")", data, n * sizeof(double));
  take_collective(seq, [&](const auto& parts) { sum_parts(parts, data, n); }, true);
}

void FakeCommunicator::broadcast(void* data, size_t bytes, int root) {
  const uint64_t seq = post_collective("broadcast(" + std::to_string(bytes) + ", root " + std::to_string(root) + ")",
                                       data, bytes);
  take_collective(seq, [&](const auto& parts) { std::memcpy(data, parts[size_t(root)].data(), bytes); }, true);
}

std::vector<std::string> FakeCommunicator::allgather(const void* data, size_t bytes) {
  std::vector<std::string> out;
  const uint64_t seq = post_collective("allgather", data, bytes);
  take_collective(seq, [&](const auto& parts) {
    for (const auto& p : parts) out.emplace_back(reinterpret_cast<const char*>(p.data()), p.size());
  }, true);
  return out;
}

std::vector<std::string> FakeCommunicator::gather(const void* data, size_t bytes, int root) {
  std::vector<std::string> all = allgather(data, bytes);
  if (rank_ != root) all.clear();
  return all;
}

void FakeCommunicator::barrier() {
  take_collective(post_collective("barrier", nullptr, 0), [](const auto&) {}, true);
}

}  // namespace attnres
