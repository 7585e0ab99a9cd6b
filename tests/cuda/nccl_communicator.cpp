// The NCCL communicator on two ranks, one GPU each or both on one under
// ATTNRES_SHARE_GPU=1 (under mpirun): a hop of two tensors each way, an
// allreduce, host-side collectives through MPI, and the tensor group's
// collectives, against values known on the host. Without usable devices
// every rank skips, naming why.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/device.h"
#include "kernels/memory.h"
#include "parallel/cuda/nccl_communicator.h"
#include "parallel/mpi_communicator.h"
#include "parallel/topology.h"
#include "tests/cuda/require_device.h"

using namespace attnres;
namespace k = attnres::kernels;

TEST(NcclCommunicator, HopsAndAllreduceOnDeviceBuffers) {
  auto world = make_mpi_world({4, 2, 2});
  ASSERT_EQ(world->size(), 2);
  std::string why;
  const int ordinal = test_rank_device(world->rank(), 2, &why);
  if (ordinal < 0) GTEST_SKIP() << why;
  k::Device dev = k::open_device(k::Backend::CUDA, ordinal);
  {
    auto nccl = make_nccl_communicator(std::move(world), dev, {4, 2, 2});
    const int me = nccl->rank(), peer = 1 - me;
    const size_t len = 1000;
    std::vector<float> a(len, float(me + 1)), b(len, float(10 * (me + 1)));
    k::DeviceBuffer<float> sa(dev, len), sb(dev, len), ra(dev, len), rb(dev, len), sum(dev, len);
    k::from_host(dev, sa.data(), a.data(), len);
    k::from_host(dev, sb.data(), b.data(), len);
    k::from_host(dev, sum.data(), a.data(), len);
    // Both ranks send, then receive: each issues its calls in the order the peer does.
    std::vector<Request> reqs;
    if (me == 0) {
      reqs.push_back(nccl->isend({{sa.data(), len}, {sb.data(), len}}, peer, {1, 1, Direction::Forward}));
      reqs.push_back(nccl->irecv({{ra.data(), len}, {rb.data(), len}}, peer, {1, 1, Direction::Backward}));
    } else {
      reqs.push_back(nccl->irecv({{ra.data(), len}, {rb.data(), len}}, peer, {1, 1, Direction::Forward}));
      reqs.push_back(nccl->isend({{sa.data(), len}, {sb.data(), len}}, peer, {1, 1, Direction::Backward}));
    }
    nccl->wait_all(reqs);
    nccl->allreduce_sum(sum.data(), len);
    EXPECT_EQ(k::to_host(dev, ra.data(), len), std::vector<float>(len, float(peer + 1)));
    EXPECT_EQ(k::to_host(dev, rb.data(), len), std::vector<float>(len, float(10 * (peer + 1))));
    EXPECT_EQ(k::to_host(dev, sum.data(), len), std::vector<float>(len, 3.0f));
    double x = me + 1.0;
    nccl->allreduce_sum(&x, 1);  // host memory: through MPI
    EXPECT_EQ(x, 3.0);
  }
  k::close_device(dev);
}

// A tp = 2 rank's groups on its device (make_nccl_groups): the tensor
// collectives run over NCCL on the device's stream.
TEST(NcclCommunicator, TensorCollectivesOfTheGroups) {
  const std::unique_ptr<Communicator> world = make_mpi_world();
  ASSERT_EQ(world->size(), 2);
  const int me = world->rank();
  std::string why;
  const int ordinal = test_rank_device(me, 2, &why);
  if (ordinal < 0) GTEST_SKIP() << why;
  k::Device dev = k::open_device(k::Backend::CUDA, ordinal);
  {
    const Topology topo = make_topology(2, me, 1, 1, 2);
    Groups g = make_nccl_groups(make_mpi_groups(topo, TagSpace{}), dev, TagSpace{});
    ASSERT_TRUE(g.tensor_collectives);
    TensorCollectives& tc = *g.tensor_collectives;
    const size_t len = 4;
    const std::vector<float> mine = {float(me), float(me + 1), float(10 * me), -float(me)};
    k::DeviceBuffer<float> x(dev, len), full(dev, 2 * len), part(dev, len);
    k::from_host(dev, x.data(), mine.data(), len);
    tc.allreduce_sum(x.data(), len);
    EXPECT_EQ(k::to_host(dev, x.data(), len), (std::vector<float>{1, 3, 10, -1}));
    k::from_host(dev, x.data(), mine.data(), len);
    tc.allreduce_max(x.data(), len);
    EXPECT_EQ(k::to_host(dev, x.data(), len), (std::vector<float>{1, 2, 10, 0}));
    k::from_host(dev, x.data(), mine.data(), len);
    tc.allgather(full.data(), x.data(), len);
    EXPECT_EQ(k::to_host(dev, full.data(), 2 * len), (std::vector<float>{0, 1, 0, 0, 1, 2, 10, -1}));
    // Each rank's 2 x len input; rank r gets the sum of row r.
    const std::vector<float> both = {float(me), 1, 2, 3, 4, 5, 6, float(me)};
    k::from_host(dev, full.data(), both.data(), 2 * len);
    tc.reduce_scatter_sum(part.data(), full.data(), len);
    EXPECT_EQ(k::to_host(dev, part.data(), len),
              me == 0 ? (std::vector<float>{1, 2, 4, 6}) : (std::vector<float>{8, 10, 12, 1}));
  }
  k::close_device(dev);
}
