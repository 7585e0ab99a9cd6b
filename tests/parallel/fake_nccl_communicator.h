// NCCL's rules on the CPU (issue #28). A FakeNcclCommunicator puts each call
// on a queue, as NCCL puts a communicator's calls on its CUDA stream, and an
// NcclModel shared by every rank's communicators runs the queues: in issue
// order, one call at a time. A message completes only when the sender's send
// and the receiver's receive are both at the heads of their queues (NCCL
// pairs them by order, not by tag); a collective when every rank of its group
// has it at the head. The calls of one NCCL group (a message's tensors, a
// ZeRO-1 reduction's parts) are one queue entry and complete together. Which
// queue a call goes on is the arrangement under test
// (parallel/cuda/nccl_arrangement.h).
//
// wait() blocks the rank's thread where NcclCommunicator::wait makes the
// compute stream wait (its test() waits too); every later call there waits
// for the compute stream, so blocking the thread is exact. When every rank
// waits and no queue head can complete, the model reports a deadlock to all
// of them, naming the calls at the heads, instead of hanging.
//
// The data moves through a FakeCommunicator beneath each one (so tags,
// sizes and messages never received are checked there); the model decides
// only when a call may complete. Host-side collectives go straight to it, as
// NcclCommunicator's go to MPI.
#pragma once
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "parallel/communicator.h"
#include "tests/parallel/fake_communicator.h"

namespace attnres {

// The arrangement: the queue of a message from src to dst among `size`
// ranks (collectives always take kGroupQueue).
using QueueOf = int (*)(int src, int dst, int size);

class NcclModel {
 public:
  // `hosts`: the threads that use the model; each calls leave() when done.
  explicit NcclModel(int hosts) : hosts_(hosts) {}
  // This thread issues and waits no more.
  void leave();
  // Another thread failed: every waiting or later wait throws.
  void fail();
  // The deadlock report ("" if none).
  std::string deadlock();
  // After every thread left: messages paired by order whose tags differ, and
  // calls that never completed.
  std::vector<std::string> problems();

  // One queue entry: a message's send or receive, or a collective.
  struct Call {
    std::string group;
    int rank, queue;
    enum Kind { Send, Recv, Collective } kind;
    int peer;        // messages
    MessageTag tag;  // messages
    std::string what;
    bool done = false;
  };

 private:
  friend class FakeNcclCommunicator;
  using Queue = std::tuple<std::string, int, int>;  // group, rank, queue

  void issue(std::shared_ptr<Call> c, int group_size);
  // Blocks until c completes; false if it never will and the thread is
  // already unwinding (an executor's destructor after a deadlock).
  bool wait(const Call& c);
  // Completes every call that can, until none can.
  void progress();
  bool complete_message(std::deque<std::shared_ptr<Call>>& q);
  bool complete_collective(const Call& c);
  bool stuck() const;
  std::string report() const;

  const int hosts_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<Queue, std::deque<std::shared_ptr<Call>>> queues_;
  std::map<std::string, int> group_size_;
  std::vector<const Call*> waiting_;  // one per blocked thread
  int left_ = 0;
  bool failed_ = false;
  std::string deadlock_;
  std::vector<std::string> problems_;
};

class FakeNcclCommunicator final : public Communicator {
 public:
  // `group` names the NCCL communicator: the same on every rank of it.
  FakeNcclCommunicator(NcclModel& model, std::string group, FakeCommunicator& inner, QueueOf queue_of)
      : model_(model), group_(std::move(group)), inner_(inner), queue_of_(queue_of) {}
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  Request isend(const std::vector<TensorRef>& tensors, int peer, MessageTag tag) override;
  Request irecv(const std::vector<TensorRef>& tensors, int peer, MessageTag tag) override;
  void wait(Request& r) override;
  bool test(Request& r) override {
    wait(r);
    return true;
  }
  void allreduce_sum(float* data, size_t n) override;
  Request iallreduce_sum(float* data, size_t n) override;
  Request ireduce_scatter_sum(float* in, float* out, const std::vector<size_t>& counts) override;
  void allgather_parts(TensorRef data, const std::vector<size_t>& counts) override;
  void allreduce_sum(double* data, size_t n) override { inner_.allreduce_sum(data, n); }
  void broadcast(void* data, size_t bytes, int root) override { inner_.broadcast(data, bytes, root); }
  std::vector<std::string> gather(const void* data, size_t bytes, int root) override {
    return inner_.gather(data, bytes, root);
  }
  std::vector<std::string> allgather(const void* data, size_t bytes) override {
    return inner_.allgather(data, bytes);
  }
  void barrier() override { inner_.barrier(); }

 private:
  Request message(NcclModel::Call::Kind kind, int peer, MessageTag tag, Request inner);
  Request collective(const std::string& what, Request inner);

  NcclModel& model_;
  std::string group_;
  FakeCommunicator& inner_;
  QueueOf queue_of_;
};

}  // namespace attnres
