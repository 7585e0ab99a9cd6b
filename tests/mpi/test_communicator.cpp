// The MPI communicators and group splitting, run under mpirun with 4 ranks.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "parallel/mpi_communicator.h"
#include "parallel/topology.h"

namespace attnres {
namespace {

// One message of the p2p test: src → dst with tag {mb, chunk, dir}.
struct Msg {
  int src, dst;
  MessageTag tag;
  // List length 1..3 and tensor sizes vary with the tag; several messages have
  // equal shapes, so only the tag can tell them apart.
  int num_tensors() const { return 1 + (tag.mb + tag.chunk) % 3; }
  size_t count(int i) const {
    return 1 + static_cast<size_t>((tag.mb + 2 * i + static_cast<int>(tag.dir)) % 4) * 3;
  }
  // A value no other (message, tensor, element) has.
  float value(int i, size_t k) const {
    return static_cast<float>(
        ((((src * 4 + dst) * 8 + tag.mb) * 4 + tag.chunk) * 2 + static_cast<int>(tag.dir)) *
            1000 +
        i * 100 + static_cast<int>(k));
  }
};

constexpr TagSpace kSpace{8, 4, 3};

// Every ordered pair of distinct ranks exchanges a message for each tag of a
// sub-grid of the space.
std::vector<Msg> all_messages(int size) {
  std::vector<Msg> out;
  for (int src = 0; src < size; ++src)
    for (int dst = 0; dst < size; ++dst)
      if (src != dst)
        for (int mb : {0, 3, 7})
          for (int chunk = 0; chunk < kSpace.chunks; ++chunk)
            for (Direction dir : {Direction::Forward, Direction::Backward})
              out.push_back({src, dst, {mb, chunk, dir}});
  return out;
}

struct Buffers {
  std::vector<std::vector<float>> data;
  std::vector<TensorRef> refs;
};

Buffers make_buffers(const Msg& m, bool fill) {
  Buffers b;
  for (int i = 0; i < m.num_tensors(); ++i) {
    std::vector<float> v(m.count(i), std::numeric_limits<float>::quiet_NaN());
    if (fill)
      for (size_t k = 0; k < v.size(); ++k) v[k] = m.value(i, k);
    b.data.push_back(std::move(v));
  }
  for (auto& v : b.data) b.refs.push_back({v.data(), v.size()});
  return b;
}

void expect_received(const Msg& m, const Buffers& b) {
  for (int i = 0; i < m.num_tensors(); ++i)
    for (size_t k = 0; k < b.data[i].size(); ++k)
      ASSERT_EQ(b.data[i][k], m.value(i, k))
          << "from " << m.src << " mb " << m.tag.mb << " chunk " << m.tag.chunk << " dir "
          << static_cast<int>(m.tag.dir) << " tensor " << i << " element " << k;
}

// mode 0: all receives posted first (shuffled), sends in reverse order.
// mode 1: sends first, then receives posted in shuffled order (they match
//         messages that already arrived unexpectedly).
void run_exchange(int mode) {
  auto comm = make_mpi_world(kSpace);
  const int me = comm->rank();
  std::vector<Msg> to_me, from_me;
  for (const Msg& m : all_messages(comm->size())) {
    if (m.dst == me) to_me.push_back(m);
    if (m.src == me) from_me.push_back(m);
  }
  std::mt19937 rng(1234 + me);
  std::shuffle(to_me.begin(), to_me.end(), rng);
  std::reverse(from_me.begin(), from_me.end());

  std::vector<Buffers> recv_bufs, send_bufs;
  for (const Msg& m : to_me) recv_bufs.push_back(make_buffers(m, false));
  for (const Msg& m : from_me) send_bufs.push_back(make_buffers(m, true));
  std::vector<Request> recvs, sends;
  auto post_recvs = [&] {
    for (size_t i = 0; i < to_me.size(); ++i)
      recvs.push_back(comm->irecv(recv_bufs[i].refs, to_me[i].src, to_me[i].tag));
  };
  uint64_t expected_bytes = 0;
  auto post_sends = [&] {
    for (size_t i = 0; i < from_me.size(); ++i) {
      sends.push_back(comm->isend(send_bufs[i].refs, from_me[i].dst, from_me[i].tag));
      for (const TensorRef& t : send_bufs[i].refs) expected_bytes += t.bytes();
    }
  };
  if (mode == 0) {
    post_recvs();
    comm->barrier();  // every receive is posted before any send
    post_sends();
  } else {
    post_sends();
    comm->barrier();  // every send is posted before any receive
    post_recvs();
  }
  // Complete receives back to front, polling with test() for half of them.
  for (size_t i = recvs.size(); i-- > 0;) {
    if (i % 2 == 0) {
      comm->wait(recvs[i]);
    } else {
      while (!comm->test(recvs[i])) {
      }
    }
    EXPECT_FALSE(recvs[i].pending());
    expect_received(to_me[i], recv_bufs[i]);
  }
  comm->wait_all(sends);
  for (const Request& r : sends) EXPECT_FALSE(r.pending());
  EXPECT_EQ(comm->bytes_sent(), expected_bytes);
  EXPECT_GT(expected_bytes, 0u);
}

TEST(MpiCommunicator, ReceivesPostedFirstMatchScrambledSends) { run_exchange(0); }

TEST(MpiCommunicator, SendsFirstMatchScrambledReceives) { run_exchange(1); }

TEST(MpiCommunicator, TagsAreDistinctAndInRange) {
  const TagSpace s{5, 3, 4};
  std::set<int> tags;
  for (int mb = 0; mb < s.microbatches; ++mb)
    for (int c = 0; c < s.chunks; ++c)
      for (Direction d : {Direction::Forward, Direction::Backward})
        for (int i = 0; i < s.max_tensors; ++i) tags.insert(encode_tag(s, {mb, c, d}, i));
  EXPECT_EQ(tags.size(), 5u * 3 * 2 * 4);
  EXPECT_EQ(*tags.begin(), 0);
  EXPECT_EQ(*tags.rbegin(), 5 * 3 * 2 * 4 - 1);
  EXPECT_THROW(encode_tag(s, {5, 0, Direction::Forward}, 0), std::logic_error);
  EXPECT_THROW(encode_tag(s, {0, 3, Direction::Forward}, 0), std::logic_error);
  EXPECT_THROW(encode_tag(s, {0, 0, Direction::Forward}, 4), std::logic_error);
}

TEST(MpiCommunicator, RejectsTagSpaceBeyondTagUb) {
  // 2^20 · 2^10 · 2 · 4 = 2^33 tags > 2^31 (Open MPI's MPI_TAG_UB + 1).
  try {
    make_mpi_world(TagSpace{1 << 20, 1 << 10, 4});
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("MPI_TAG_UB"), std::string::npos) << msg;
    EXPECT_NE(msg.find("1048576 microbatches"), std::string::npos) << msg;
  }
  // The largest space that fits is accepted: 2^20 · 2^9 · 2 · 2 = 2^31 tags.
  EXPECT_NO_THROW(make_mpi_world(TagSpace{1 << 20, 1 << 9, 2}));
}

TEST(MpiCommunicator, MisuseIsRejected) {
  auto collectives_only = make_mpi_world();
  float x = 0;
  EXPECT_THROW(collectives_only->isend({{&x, 1}}, 0, {0, 0, Direction::Forward}),
               std::logic_error);
  auto comm = make_mpi_world(kSpace);
  EXPECT_THROW(comm->irecv({{&x, 1}}, comm->size(), {0, 0, Direction::Forward}),
               std::logic_error);
  EXPECT_THROW(comm->isend({{&x, 1}}, 0, {kSpace.microbatches, 0, Direction::Forward}),
               std::logic_error);
  EXPECT_EQ(comm->bytes_sent(), 0u);
}

TEST(MpiCommunicator, AllreduceFloatAndDouble) {
  auto comm = make_mpi_world();
  const int n = comm->size(), r = comm->rank();
  std::vector<float> f(1000);
  std::vector<double> d(1000);
  for (int i = 0; i < 1000; ++i) {
    f[i] = static_cast<float>(r * 1000 + i);  // exact in float
    d[i] = (r + 1) * 0.25 + i * 1e-3;
  }
  comm->allreduce_sum(f.data(), f.size());
  comm->allreduce_sum(d.data(), d.size());
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(f[i], static_cast<float>(1000 * n * (n - 1) / 2 + n * i));
    EXPECT_NEAR(d[i], 0.25 * n * (n + 1) / 2 + n * i * 1e-3, 1e-12);
  }
}

// Two reductions in flight at once, completed in the other order (one by
// polling test()). Values are integers, so every summation order is exact.
TEST(MpiCommunicator, NonBlockingAllreduceOverlaps) {
  auto comm = make_mpi_world();
  const int n = comm->size(), r = comm->rank();
  std::vector<float> a(1000), b(37);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(r * 1000 + int(i));
  for (size_t i = 0; i < b.size(); ++i) b[i] = float((r + 1) * int(i));
  Request ra = comm->iallreduce_sum(a.data(), a.size());
  Request rb = comm->iallreduce_sum(b.data(), b.size());
  EXPECT_TRUE(ra.pending());
  while (!comm->test(rb)) {
  }
  comm->wait(ra);
  EXPECT_FALSE(ra.pending());
  EXPECT_FALSE(rb.pending());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], float(1000 * n * (n - 1) / 2 + n * int(i)));
  for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(b[i], float(n * (n + 1) / 2 * int(i)));
  EXPECT_EQ(comm->bytes_sent(), 0u);  // bytes_sent counts point-to-point payloads only
}

// ZeRO-1's collectives: three reduce-scatters in flight at once (parts of
// unequal size, and of none: 3 floats over 4 ranks), completed out of order,
// one by polling test(); then each rank's part all-gathered in place.
// Integer values: every summation order is exact.
TEST(MpiCommunicator, ReduceScatterAndAllgatherParts) {
  auto comm = make_mpi_world();
  const int n = comm->size(), r = comm->rank();
  std::vector<std::vector<float>> data, out;
  std::vector<std::vector<size_t>> counts;
  std::vector<Request> reqs;
  for (size_t len : {size_t(1003), size_t(10), size_t(3)}) {
    counts.push_back(split_evenly(len, n));
    data.emplace_back(len);
    for (size_t i = 0; i < len; ++i) data.back()[i] = float((r + 1) * int(i));
    out.emplace_back(counts.back().front(), -1.0f);
  }
  for (size_t k = 0; k < data.size(); ++k)
    reqs.push_back(comm->ireduce_scatter_sum(data[k].data(), out[k].data(), counts[k]));
  while (!comm->test(reqs[2])) {
  }
  comm->wait(reqs[1]);
  comm->wait(reqs[0]);
  for (size_t k = 0; k < data.size(); ++k) {
    const size_t first = part_offset(counts[k], r);
    for (size_t i = 0; i < counts[k][size_t(r)]; ++i)
      EXPECT_EQ(out[k][i], float(n * (n + 1) / 2 * int(first + i))) << "reduction " << k << " element " << i;
  }
  std::vector<float> params(1003, -1.0f);
  const std::vector<size_t>& c = counts[0];
  for (size_t i = 0; i < c[size_t(r)]; ++i) params[part_offset(c, r) + i] = float(r * 10000 + int(i));
  comm->allgather_parts({params.data(), params.size()}, c);
  for (int owner = 0; owner < n; ++owner)
    for (size_t i = 0; i < c[size_t(owner)]; ++i)
      ASSERT_EQ(params[part_offset(c, owner) + i], float(owner * 10000 + int(i))) << "part " << owner;
}

TEST(MpiCommunicator, BroadcastFromEveryRoot) {
  auto comm = make_mpi_world();
  for (int root = 0; root < comm->size(); ++root) {
    std::vector<unsigned char> buf(37);
    for (size_t i = 0; i < buf.size(); ++i)
      buf[i] = static_cast<unsigned char>(comm->rank() == root ? root * 50 + i : 255);
    comm->broadcast(buf.data(), buf.size(), root);
    for (size_t i = 0; i < buf.size(); ++i)
      EXPECT_EQ(buf[i], static_cast<unsigned char>(root * 50 + i));
  }
}

// Rank r contributes `len(r, root)` bytes (zero for some ranks) with values
// unique to (rank, position, root); one rank sends megabytes.
size_t gather_len(int rank, int root) { return rank == 2 ? (3u << 20) + 5 : size_t((rank * 7 + root) % 4) * 13; }
std::string gather_bytes(int rank, int root) {
  std::string s(gather_len(rank, root), '\0');
  for (size_t i = 0; i < s.size(); ++i) s[i] = char((i * 31 + size_t(rank) * 7 + size_t(root)) % 251);
  return s;
}

TEST(MpiCommunicator, GatherVariableLengthsToEveryRoot) {
  auto comm = make_mpi_world();
  const int n = comm->size(), me = comm->rank();
  for (int root = 0; root < n; ++root) {
    const std::string mine = gather_bytes(me, root);
    const std::vector<std::string> all = comm->gather(mine.data(), mine.size(), root);
    if (me != root) {
      EXPECT_TRUE(all.empty()) << "root " << root;
      continue;
    }
    ASSERT_EQ(int(all.size()), n);
    for (int r = 0; r < n; ++r) EXPECT_EQ(all[size_t(r)], gather_bytes(r, root)) << "from rank " << r;
  }
  EXPECT_THROW(comm->gather(nullptr, 0, n), std::logic_error);
}

TEST(MpiCommunicator, AllgatherVariableLengths) {
  auto comm = make_mpi_world();
  const int n = comm->size();
  for (int round = 0; round < 2; ++round) {
    const std::string mine = gather_bytes(comm->rank(), round);
    const std::vector<std::string> all = comm->allgather(mine.data(), mine.size());
    ASSERT_EQ(int(all.size()), n);
    for (int r = 0; r < n; ++r) EXPECT_EQ(all[size_t(r)], gather_bytes(r, round)) << "from rank " << r;
  }
  // Nobody sends anything: every rank gets n empty strings.
  const std::vector<std::string> none = comm->allgather(nullptr, 0);
  EXPECT_EQ(none, std::vector<std::string>(size_t(n)));
}

// The test runs on one machine: the node group is the world, ranked as the world.
TEST(MpiCommunicator, NodeGroupIsTheWholeMachine) {
  auto world = make_mpi_world();
  auto node = make_mpi_node();
  EXPECT_EQ(node->size(), world->size());
  EXPECT_EQ(node->rank(), world->rank());
  double members = std::ldexp(1.0, world->rank());
  node->allreduce_sum(&members, 1);
  EXPECT_EQ(members, std::ldexp(1.0, world->size()) - 1);
}

// Rank 0 arrives late; the others wait in the barrier without spinning: they
// use far less CPU time than the wall time they wait.
TEST(MpiCommunicator, BarrierWaitsAsleep) {
  auto comm = make_mpi_world();
  constexpr double kLate = 0.3;  // seconds
  comm->barrier();
  const auto t0 = std::chrono::steady_clock::now();
  const std::clock_t c0 = std::clock();
  if (comm->rank() == 0) std::this_thread::sleep_for(std::chrono::duration<double>(kLate));
  comm->barrier();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu = double(std::clock() - c0) / CLOCKS_PER_SEC;
  EXPECT_GE(wall, 0.9 * kLate);  // nobody left before rank 0 arrived
  if (comm->rank() != 0) {
    EXPECT_LT(cpu, 0.3 * wall) << "CPU " << cpu << " s while waiting " << wall << " s";
  }
}

// Every factorisation of the 4-rank world: group sizes and ranks follow the
// topology, group-local allreduce sums exactly the group's members, and a ring
// over the pipeline group reaches the right world ranks.
TEST(MpiGroups, EveryFactorisationOfTheWorld) {
  const int world_size = make_mpi_world()->size(), world_rank = make_mpi_world()->rank();
  ASSERT_EQ(world_size, 4);
  struct D {
    int dp, pp, tp;
  };
  for (D d : {D{4, 1, 1}, D{1, 4, 1}, D{1, 1, 4}, D{2, 2, 1}, D{2, 1, 2}, D{1, 2, 2}}) {
    SCOPED_TRACE("dp=" + std::to_string(d.dp) + " pp=" + std::to_string(d.pp) +
                 " tp=" + std::to_string(d.tp));
    const Topology t = make_topology(world_size, world_rank, d.dp, d.pp, d.tp);
    Groups g = make_mpi_groups(t, TagSpace{1, d.pp, 1});
    EXPECT_EQ(g.world->rank(), world_rank);
    EXPECT_EQ(g.world->size(), 4);
    EXPECT_EQ(g.pipeline->rank(), t.coord.pp_idx);
    EXPECT_EQ(g.pipeline->size(), d.pp);
    EXPECT_EQ(g.data->rank(), t.coord.dp_idx);
    EXPECT_EQ(g.data->size(), d.dp);
    EXPECT_EQ(g.tensor->rank(), t.coord.tp_idx);
    EXPECT_EQ(g.tensor->size(), d.tp);

    // Sum of 2^world_rank over each group identifies its members exactly.
    auto members = [](const std::vector<int>& ranks) {
      double m = 0;
      for (int r : ranks) m += std::ldexp(1.0, r);
      return m;
    };
    double dsum = std::ldexp(1.0, world_rank), tsum = dsum, psum = dsum, wsum = dsum;
    g.data->allreduce_sum(&dsum, 1);
    g.tensor->allreduce_sum(&tsum, 1);
    g.pipeline->allreduce_sum(&psum, 1);
    g.world->allreduce_sum(&wsum, 1);
    EXPECT_EQ(dsum, members(t.data_ranks));
    EXPECT_EQ(tsum, members(t.tensor_ranks));
    EXPECT_EQ(psum, members(t.pipeline_ranks));
    EXPECT_EQ(wsum, 15.0);

    // Pipeline ring: stage s sends its world rank to stage s+1 as the hop into chunk s+1.
    const int pp = d.pp, s = t.coord.pp_idx;
    if (pp > 1) {
      float out = static_cast<float>(world_rank), in = -1;
      const int next = (s + 1) % pp, prev = (s + pp - 1) % pp;
      Request rr = g.pipeline->irecv({{&in, 1}}, prev, {0, s, Direction::Forward});
      Request sr = g.pipeline->isend({{&out, 1}}, next, {0, next, Direction::Forward});
      g.pipeline->wait(rr);
      g.pipeline->wait(sr);
      EXPECT_EQ(in, static_cast<float>(t.pipeline_ranks[prev]));
      EXPECT_EQ(g.pipeline->bytes_sent(), sizeof(float));
    }
  }
}

}  // namespace
}  // namespace attnres
