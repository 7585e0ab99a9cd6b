// TensorCollectives between threads of one process, for tests: tp ranks run
// as threads and meet at a barrier. Sums add the ranks in rank order.
#pragma once
#include <algorithm>
#include <barrier>
#include <vector>

#include "models/tensor_collectives.h"

namespace attnres::testing {

class ThreadGroup {
 public:
  explicit ThreadGroup(int size) : size_(size), sync_(size), in_(size_t(size)) {}
  int size() const { return size_; }
  void publish(int rank, const void* p) { in_[size_t(rank)] = p; }
  template <class T = float>
  const T* input(int rank) const { return static_cast<const T*>(in_[size_t(rank)]); }
  void wait() { sync_.arrive_and_wait(); }

 private:
  int size_;
  std::barrier<> sync_;
  std::vector<const void*> in_;
};

class ThreadCollectives final : public TensorCollectives {
 public:
  ThreadCollectives(ThreadGroup& g, int rank) : g_(g), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return g_.size(); }

  void allreduce_sum(float* x, size_t n) override {
    combine(x, n, [](float a, float b) { return a + b; });
  }
  void allreduce_max(float* x, size_t n) override {
    combine(x, n, [](float a, float b) { return std::max(a, b); });
  }
  void allgather(float* out, const float* in, size_t n) override { gather(out, in, n); }
  void allgather(kernels::bf16* out, const kernels::bf16* in, size_t n) override { gather(out, in, n); }
  void reduce_scatter_sum(float* out, const float* in, size_t n) override {
    g_.publish(rank_, in);
    g_.wait();
    for (size_t i = 0; i < n; ++i) {
      float s = g_.input(0)[size_t(rank_) * n + i];
      for (int r = 1; r < size(); ++r) s += g_.input(r)[size_t(rank_) * n + i];
      out[i] = s;
    }
    g_.wait();
  }

 private:
  template <class T>
  void gather(T* out, const T* in, size_t n) {
    g_.publish(rank_, in);
    g_.wait();
    for (int r = 0; r < size(); ++r) std::copy_n(g_.input<T>(r), n, out + size_t(r) * n);
    g_.wait();
  }
  template <class Op>
  void combine(float* x, size_t n, Op op) {
    g_.publish(rank_, x);
    g_.wait();
    std::vector<float> acc(g_.input(0), g_.input(0) + n);
    for (int r = 1; r < size(); ++r)
      for (size_t i = 0; i < n; ++i) acc[i] = op(acc[i], g_.input(r)[i]);
    g_.wait();  // every rank has read every input before any is overwritten
    std::copy(acc.begin(), acc.end(), x);
  }

  ThreadGroup& g_;
  int rank_;
};

}  // namespace attnres::testing
