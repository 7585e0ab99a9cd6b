// main() of every multi-process test: GoogleTest under MPI. Rank 0 prints the
// usual gtest output; other ranks print only their failures, tagged with the
// rank. Every rank exits non-zero if any rank failed, so mpirun (and CTest)
// report the failure whichever rank saw it.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>

#include "parallel/mpi_communicator.h"

namespace {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  // The name is kept here: UnitTest::current_test_info() takes a lock that
  // gtest holds while it reports a part result, so it cannot be called below.
  void OnTestStart(const ::testing::TestInfo& t) override {
    test_ = t.test_suite_name();
    test_ += '.';
    test_ += t.name();
  }
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s %s:%d: Failure\n%s\n", rank_, test_.c_str(),
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.message());
  }

 private:
  int rank_;
  std::string test_;
};

}  // namespace

int main(int argc, char** argv) {
  attnres::init_mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const std::unique_ptr<attnres::Communicator> world = attnres::make_mpi_world();
  const int rank = world->rank();
  if (rank != 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(rank));
  }
  double failed_ranks = RUN_ALL_TESTS() != 0 ? 1 : 0;
  world->allreduce_sum(&failed_ranks, 1);
  if (rank == 0 && failed_ranks > 0)
    std::fprintf(stderr, "%d of %d ranks failed\n", int(failed_ranks), world->size());
  return failed_ranks > 0 ? 1 : 0;
}
