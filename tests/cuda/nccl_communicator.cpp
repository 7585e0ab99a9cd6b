// The NCCL communicator on two ranks, one GPU each (under mpirun): a hop of
// two tensors each way, an allreduce, and host-side collectives through MPI,
// against values known on the host. Without two usable devices every rank
// skips, naming why.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "kernels/memory.h"
#include "parallel/cuda/nccl_communicator.h"
#include "parallel/mpi_communicator.h"

using namespace attnres;
namespace k = attnres::kernels;

TEST(NcclCommunicator, HopsAndAllreduceOnDeviceBuffers) {
  std::string why;
  const int n = k::cuda_device_count(&why);
  if (n < 2) GTEST_SKIP() << "needs two CUDA devices: " << (n == 0 ? why : "this node has one");
  auto world = make_mpi_world({4, 2, 2});
  ASSERT_EQ(world->size(), 2);
  k::Device dev = k::open_device(k::Backend::CUDA, world->rank());
  {
    auto nccl = make_nccl_communicator(*world, dev, {4, 2, 2});
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
