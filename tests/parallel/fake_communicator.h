// An in-process Communicator for tests: the ranks of a FakeNetwork are
// threads of one process. A send is copied into a queue named by (source,
// destination, tag) and a receive takes the oldest message of its queue, so
// messages match exactly as the MPI implementation's tags make them match.
// Collectives match by call order, as in MPI, and sum in rank order. The
// network records what a real backend would reject or hang on: a receive
// whose tensor sizes differ from its send, collectives that disagree between
// ranks, and messages nobody received.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "parallel/communicator.h"

namespace attnres {

// "forward message 0->1 (mb 2, chunk 1)": a message in problem reports.
std::string tag_name(int src, int dst, MessageTag t);

class FakeNetwork {
 public:
  explicit FakeNetwork(int size);
  int size() const { return size_; }

  // After every rank is done: the problems seen, plus one line per message
  // that was sent but never received.
  std::vector<std::string> problems();
  // Messages received whole, and the data pointer of every iallreduce_sum
  // rank `rank` started, in call order.
  int messages_received();
  std::vector<const float*> reductions_of(int rank);
  // NCCL matches point-to-point calls by issue order, not by tag: the k-th
  // send from a to b meets the k-th receive b posts from a. One line per pair
  // of ranks whose send and receive orders differ (MPI's tags hide this).
  std::vector<std::string> p2p_order_mismatches();
  // Makes every waiting or later wait throw: another rank's thread failed, so
  // what it would have sent never comes.
  void fail();

 private:
  friend class FakeCommunicator;
  using Key = std::tuple<int, int, int, int, int>;  // source, destination, mb, chunk, dir
  struct Collective {
    std::string kind;
    std::vector<std::vector<char>> parts;  // per rank
    int posted = 0, taken = 0;
  };
  // Waits (with a deadline, so a broken test fails instead of hanging) until
  // ready() holds; returns false at once if !block and it does not.
  bool await(std::unique_lock<std::mutex>& lock, const std::function<bool()>& ready, bool block,
             const std::string& what);

  const int size_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool failed_ = false;
  std::map<Key, std::vector<std::vector<std::vector<char>>>> queues_;  // FIFO per key
  std::vector<uint64_t> next_collective_;                              // per rank
  std::map<uint64_t, Collective> collectives_;
  std::vector<std::vector<const float*>> reductions_;
  std::vector<std::string> problems_;
  // Tags in issue order, by (source, destination): of the sends, of the receives.
  std::map<std::pair<int, int>, std::vector<MessageTag>> sends_issued_, recvs_issued_;
  int received_ = 0;
};

class FakeCommunicator final : public Communicator {
 public:
  FakeCommunicator(FakeNetwork& net, int rank) : net_(net), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return net_.size(); }
  Request isend(const std::vector<TensorRef>& tensors, int peer, MessageTag tag) override;
  Request irecv(const std::vector<TensorRef>& tensors, int peer, MessageTag tag) override;
  void wait(Request& r) override { complete(r, true); }
  bool test(Request& r) override { return complete(r, false); }
  void allreduce_sum(float* data, size_t n) override;
  Request iallreduce_sum(float* data, size_t n) override;
  void allreduce_sum(double* data, size_t n) override;
  Request ireduce_scatter_sum(float* in, float* out, const std::vector<size_t>& counts) override;
  void allgather_parts(TensorRef data, const std::vector<size_t>& counts) override;
  void broadcast(void* data, size_t bytes, int root) override;
  std::vector<std::string> gather(const void* data, size_t bytes, int root) override;
  std::vector<std::string> allgather(const void* data, size_t bytes) override;
  void barrier() override;

 private:
  bool complete(Request& r, bool block);
  uint64_t post_collective(const std::string& kind, const void* data, size_t bytes);
  // Waits for collective `seq` on every rank and hands its parts to `combine`.
  bool take_collective(uint64_t seq, const std::function<void(const std::vector<std::vector<char>>&)>& combine,
                       bool block);

  FakeNetwork& net_;
  int rank_;
};

}  // namespace attnres
