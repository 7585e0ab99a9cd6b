#include "parallel/tensor_group.h"

#include <climits>
#include <stdexcept>
#include <string>

namespace attnres {

namespace {
int count_arg(size_t n) {
  if (n > size_t(INT_MAX)) throw std::length_error("tensor group: " + std::to_string(n) + " floats exceed one MPI call");
  return int(n);
}
void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) throw std::runtime_error(std::string("tensor group: ") + what + " failed");
}
}  // namespace

double ring_allreduce_bytes(size_t floats, int ranks) {
  return 2.0 * double(ranks - 1) / double(ranks) * 4.0 * double(floats);
}
double ring_allgather_bytes(size_t floats_per_rank, int ranks) {
  return double(ranks - 1) * 4.0 * double(floats_per_rank);
}

MpiTensorGroup::MpiTensorGroup(MPI_Comm comm) : comm_(comm) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

void MpiTensorGroup::allreduce_sum(float* x, size_t n) {
  check(MPI_Allreduce(MPI_IN_PLACE, x, count_arg(n), MPI_FLOAT, MPI_SUM, comm_), "all-reduce");
  bytes_ += ring_allreduce_bytes(n, size_);
}

void MpiTensorGroup::allreduce_max(float* x, size_t n) {
  check(MPI_Allreduce(MPI_IN_PLACE, x, count_arg(n), MPI_FLOAT, MPI_MAX, comm_), "all-reduce (max)");
  bytes_ += ring_allreduce_bytes(n, size_);
}

void MpiTensorGroup::allgather(float* out, const float* in, size_t n) {
  check(MPI_Allgather(in, count_arg(n), MPI_FLOAT, out, count_arg(n), MPI_FLOAT, comm_), "all-gather");
  bytes_ += ring_allgather_bytes(n, size_);
}

void MpiTensorGroup::reduce_scatter_sum(float* out, const float* in, size_t n) {
  check(MPI_Reduce_scatter_block(in, out, count_arg(n), MPI_FLOAT, MPI_SUM, comm_), "reduce-scatter");
  bytes_ += ring_allgather_bytes(n, size_);
}

}  // namespace attnres
