#include "tests/parallel/fake_nccl_communicator.h"

#include <algorithm>
#include <exception>
#include <stdexcept>

#include "parallel/cuda/nccl_arrangement.h"

namespace attnres {

namespace {

struct PendingCall final : Request::State {
  std::shared_ptr<NcclModel::Call> call;
  Request inner;  // the FakeCommunicator's request that moves the data
  PendingCall(std::shared_ptr<NcclModel::Call> c, Request r) : call(std::move(c)), inner(std::move(r)) {}
};

std::string where(const NcclModel::Call& c) {
  return c.group + " rank " + std::to_string(c.rank) + " (queue " + std::to_string(c.queue) + ")";
}

}  // namespace

void NcclModel::leave() {
  std::lock_guard<std::mutex> lock(mu_);
  ++left_;
  cv_.notify_all();  // a waiting thread may now find every other one stuck
}

void NcclModel::fail() {
  std::lock_guard<std::mutex> lock(mu_);
  failed_ = true;
  cv_.notify_all();
}

std::string NcclModel::deadlock() {
  std::lock_guard<std::mutex> lock(mu_);
  return deadlock_;
}

std::vector<std::string> NcclModel::problems() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out = problems_;
  for (const auto& [key, q] : queues_)
    for (const auto& c : q) out.push_back(where(*c) + ": " + c->what + " never completed");
  return out;
}

void NcclModel::issue(std::shared_ptr<Call> c, int group_size) {
  std::lock_guard<std::mutex> lock(mu_);
  group_size_[c->group] = group_size;
  queues_[{c->group, c->rank, c->queue}].push_back(std::move(c));
  progress();
  cv_.notify_all();
}

bool NcclModel::wait(const Call& c) {
  std::unique_lock<std::mutex> lock(mu_);
  waiting_.push_back(&c);
  while (!c.done && !failed_ && deadlock_.empty()) {
    if (stuck()) {
      deadlock_ = report();
      cv_.notify_all();
    } else {
      cv_.wait(lock);
    }
  }
  waiting_.erase(std::find(waiting_.begin(), waiting_.end(), &c));
  if (c.done) return true;
  // Throwing from a destructor that runs during unwinding would terminate.
  if (std::uncaught_exceptions() > 0) return false;
  throw std::runtime_error(failed_ ? "NCCL model: another rank failed while " + where(c) + " waited for " + c.what
                                   : deadlock_);
}

void NcclModel::progress() {
  for (bool moved = true; moved;) {
    moved = false;
    for (auto& [key, q] : queues_) {
      if (q.empty()) continue;
      moved = q.front()->kind == Call::Collective ? complete_collective(*q.front()) : complete_message(q);
      if (moved) break;  // the queues changed: look again from the start
    }
  }
}

// The head of q and the head of the peer's side of the same queue (a queue
// names a whole communicator or one edge, the same on both sides).
bool NcclModel::complete_message(std::deque<std::shared_ptr<Call>>& q) {
  Call& c = *q.front();
  const auto it = queues_.find({c.group, c.peer, c.queue});
  if (it == queues_.end() || it->second.empty()) return false;
  Call& p = *it->second.front();
  if (p.kind == Call::Collective || p.kind == c.kind || p.peer != c.rank) return false;
  if (p.tag.mb != c.tag.mb || p.tag.chunk != c.tag.chunk || p.tag.dir != c.tag.dir)
    problems_.push_back(where(c) + ": " + c.what + " paired by order with " + where(p) + ": " + p.what);
  c.done = p.done = true;
  q.pop_front();
  it->second.pop_front();
  return true;
}

bool NcclModel::complete_collective(const Call& c) {
  std::vector<std::deque<std::shared_ptr<Call>>*> heads;
  for (int r = 0; r < group_size_.at(c.group); ++r) {
    const auto it = queues_.find({c.group, r, kGroupQueue});
    if (it == queues_.end() || it->second.empty() || it->second.front()->kind != Call::Collective) return false;
    heads.push_back(&it->second);
  }
  for (auto* q : heads) {
    q->front()->done = true;
    q->pop_front();
  }
  return true;
}

// Every thread has left or waits for a call that has not completed, and
// progress() left nothing that could.
bool NcclModel::stuck() const {
  const int blocked = int(std::count_if(waiting_.begin(), waiting_.end(), [](const Call* c) { return !c->done; }));
  return blocked > 0 && left_ + blocked == hosts_;
}

std::string NcclModel::report() const {
  std::string s = "NCCL model: deadlock: every rank waits, and no call at the head of a queue can complete";
  for (const Call* c : waiting_) s += "\n  " + where(*c) + " waits for " + c->what;
  for (const auto& [key, q] : queues_)
    if (!q.empty()) s += "\n  " + where(*q.front()) + " has at its head " + q.front()->what;
  return s;
}

Request FakeNcclCommunicator::message(NcclModel::Call::Kind kind, int peer, MessageTag tag, Request inner) {
  const bool send = kind == NcclModel::Call::Send;
  const int src = send ? rank() : peer, dst = send ? peer : rank();
  auto c = std::make_shared<NcclModel::Call>(NcclModel::Call{
      group_, rank(), queue_of_(src, dst, size()), kind, peer, tag,
      std::string(send ? "the send of " : "the receive of ") + tag_name(src, dst, tag)});
  model_.issue(c, size());
  return Request(std::make_unique<PendingCall>(std::move(c), std::move(inner)));
}

Request FakeNcclCommunicator::collective(const std::string& what, Request inner) {
  auto c = std::make_shared<NcclModel::Call>(
      NcclModel::Call{group_, rank(), kGroupQueue, NcclModel::Call::Collective, -1, {}, what});
  model_.issue(c, size());
  return Request(std::make_unique<PendingCall>(std::move(c), std::move(inner)));
}

Request FakeNcclCommunicator::isend(const std::vector<TensorRef>& tensors, int peer, MessageTag tag) {
  Request inner = inner_.isend(tensors, peer, tag);
  bytes_sent_ = inner_.bytes_sent();
  return message(NcclModel::Call::Send, peer, tag, std::move(inner));
}

Request FakeNcclCommunicator::irecv(const std::vector<TensorRef>& tensors, int peer, MessageTag tag) {
  return message(NcclModel::Call::Recv, peer, tag, inner_.irecv(tensors, peer, tag));
}

void FakeNcclCommunicator::wait(Request& r) {
  if (!r.pending()) return;
  auto& p = static_cast<PendingCall&>(*r.state);
  if (model_.wait(*p.call)) inner_.wait(p.inner);
  r.state.reset();
}

void FakeNcclCommunicator::allreduce_sum(float* data, size_t n) {
  Request r = iallreduce_sum(data, n);
  wait(r);
}

Request FakeNcclCommunicator::iallreduce_sum(float* data, size_t n) {
  return collective("an all-reduce of " + std::to_string(n) + " floats", inner_.iallreduce_sum(data, n));
}

Request FakeNcclCommunicator::ireduce_scatter_sum(float* in, float* out, const std::vector<size_t>& counts) {
  return collective("a reduce-scatter of " + std::to_string(part_offset(counts, size())) + " floats",
                    inner_.ireduce_scatter_sum(in, out, counts));
}

// Blocking on NCCL too: its place in the queue, then the data.
void FakeNcclCommunicator::allgather_parts(TensorRef data, const std::vector<size_t>& counts) {
  Request r = collective("an all-gather of " + std::to_string(part_offset(counts, size())) + " floats", Request());
  wait(r);
  inner_.allgather_parts(data, counts);
}

}  // namespace attnres
