// The CPU-reachable parts of the NCCL communicator's fault handling
// (docs/CUDA.md): the group guard with a fake start and end, and the
// registry the watchdog polls with fake communicators.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "parallel/comm_watch.h"
#include "parallel/group_guard.h"

using namespace attnres;

namespace {

// ncclGroupStart/End as a depth counter; end can be made to fail.
struct FakeGroups {
  int depth = 0, ends = 0;
  bool end_fails = false;
  GroupGuard open() {
    return GroupGuard([this] { ++depth; }, [this] {
      --depth, ++ends;
      if (end_fails) throw std::runtime_error("NCCL: ncclGroupEnd: unhandled cuda error");
    });
  }
};

TEST(GroupGuard, ClosedWhenACallInsideThrows) {
  FakeGroups g;
  EXPECT_THROW(
      {
        GroupGuard group = g.open();
        throw std::runtime_error("NCCL: ncclSend: invalid argument");
      },
      std::runtime_error);
  EXPECT_EQ(g.depth, 0);
  EXPECT_EQ(g.ends, 1);
}

TEST(GroupGuard, CloseEndsOnceAndThrowsEndsError) {
  FakeGroups g;
  {
    GroupGuard group = g.open();
    EXPECT_EQ(g.depth, 1);
    group.close();
  }
  EXPECT_EQ(g.ends, 1);  // not again on leaving the scope
  g.end_fails = true;
  EXPECT_THROW(
      {
        GroupGuard group = g.open();
        group.close();
      },
      std::runtime_error);
  EXPECT_EQ(g.ends, 2);
  EXPECT_EQ(g.depth, 0);
}

// An error in the group and a failing end: the call's error propagates, the
// end's is reported (it is the consequence), nothing terminates.
TEST(GroupGuard, TheCallsErrorWinsOverAFailingEnd) {
  FakeGroups g;
  g.end_fails = true;
  testing::internal::CaptureStderr();
  try {
    GroupGuard group = g.open();
    throw std::runtime_error("NCCL: ncclRecv: invalid argument");
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "NCCL: ncclRecv: invalid argument");
  }
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("ncclGroupEnd: unhandled cuda error"), std::string::npos) << err;
  EXPECT_EQ(g.depth, 0);
}

struct FakeComm : AsyncComm {
  std::string error;
  int aborts = 0;
  explicit FakeComm(std::string e = "") : error(std::move(e)) { watch_comm(this); }
  ~FakeComm() override { unwatch_comm(this); }
  std::string async_error() override { return error; }
  void abort() override { ++aborts; }
};

TEST(CommWatch, PollsAndAbortsTheCommunicatorsAlive) {
  EXPECT_EQ(poll_async_errors(), "");
  {
    FakeComm healthy, broken("NCCL: asynchronous error: remote process exited");
    EXPECT_EQ(poll_async_errors(), "NCCL: asynchronous error: remote process exited");
    abort_watched_comms();
    EXPECT_EQ(healthy.aborts, 1);
    EXPECT_EQ(broken.aborts, 1);
  }
  EXPECT_EQ(poll_async_errors(), "");  // gone with their owners
  abort_watched_comms();               // nothing left to abort
}

}  // namespace
