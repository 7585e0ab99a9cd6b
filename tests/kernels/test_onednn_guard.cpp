// oneDNN's JIT kernels are invisible to ASan, so a memory descriptor larger
// than the buffer behind it would corrupt the heap silently. Every operand of
// cpu::gemm_onednn here is a buffer of the tightest legal size ((rows - 1) *
// ld + cols elements) between PROT_NONE pages, with canary bytes in the rest
// of its pages: a write outside it shows as a changed canary (or a fault),
// a read past its end as a fault. Entries are small integers, so every
// product is exact and C is compared bit for bit, padding columns included.
#include <cblas.h>
#include <gtest/gtest.h>
#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/cpu/gemm_cpu.h"

using namespace attnres::kernels;

namespace {

constexpr unsigned char kCanary = 0xA5;

// `bytes` of data between two PROT_NONE pages, ending at the second one
// (an overrun faults at once) or starting after the first (an underrun does).
class Guarded {
 public:
  Guarded(size_t bytes, bool end_at_page) : bytes_(bytes) {
    page_ = size_t(sysconf(_SC_PAGESIZE));
    inner_ = (bytes + 256 + page_ - 1) / page_ * page_;  // at least 256 canary bytes
    total_ = inner_ + 2 * page_;
    void* m = mmap(nullptr, total_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::runtime_error("mmap");
    base_ = static_cast<unsigned char*>(m);
    mprotect(base_, page_, PROT_NONE);
    mprotect(base_ + page_ + inner_, page_, PROT_NONE);
    std::memset(base_ + page_, kCanary, inner_);
    data_ = end_at_page ? base_ + page_ + inner_ - bytes : base_ + page_;
  }
  ~Guarded() { munmap(base_, total_); }
  Guarded(const Guarded&) = delete;
  Guarded& operator=(const Guarded&) = delete;
  unsigned char* data() const { return data_; }
  // Canary bytes changed outside the data.
  size_t damaged() const {
    size_t n = 0;
    for (unsigned char* p = base_ + page_; p < base_ + page_ + inner_; ++p)
      if ((p < data_ || p >= data_ + bytes_) && *p != kCanary) n++;
    return n;
  }

 private:
  size_t bytes_, page_ = 0, inner_ = 0, total_ = 0;
  unsigned char* base_ = nullptr;
  unsigned char* data_ = nullptr;
};

struct Case {
  bool ta, tb;
  int M, N, K, pad_a, pad_b, pad_c;  // pads: extra elements in each leading dimension
  float alpha, beta;
};

std::string describe(const Case& c, bool bf16_operands, bool end_at_page) {
  std::ostringstream s;
  s << (bf16_operands ? "bf16" : "fp32") << " ta=" << c.ta << " tb=" << c.tb << " M=" << c.M << " N=" << c.N
    << " K=" << c.K << " pads=" << c.pad_a << "," << c.pad_b << "," << c.pad_c << " alpha=" << c.alpha
    << " beta=" << c.beta << (end_at_page ? " (ends at a page)" : " (starts at a page)");
  return s.str();
}

// Runs one case; returns "" or what went wrong.
template <class T>
std::string run_case(const Case& c, bool end_at_page, uint32_t seed) {
  const int a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
  const int b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
  const int lda = a_cols + c.pad_a, ldb = b_cols + c.pad_b, ldc = c.N + c.pad_c;
  const size_t na = size_t(a_rows - 1) * lda + a_cols, nb = size_t(b_rows - 1) * ldb + b_cols,
               nc = size_t(c.M - 1) * ldc + c.N;
  Guarded ga(na * sizeof(T), end_at_page), gb(nb * sizeof(T), end_at_page), gc(nc * sizeof(float), end_at_page);
  T* A = reinterpret_cast<T*>(ga.data());
  T* B = reinterpret_cast<T*>(gb.data());
  float* C = reinterpret_cast<float*>(gc.data());
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> small(-2, 2);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto put = [](T* x, size_t i, float v) {
    if constexpr (std::is_same_v<T, float>) x[i] = v;
    else x[i] = to_bf16(v);
  };
  auto get = [](const T* x, size_t i) -> float {
    if constexpr (std::is_same_v<T, float>) return x[i];
    else return to_float(x[i]);
  };
  // Padding holds NaN: read into a product, it would show in C.
  for (size_t i = 0; i < na; i++) put(A, i, i % size_t(lda) < size_t(a_cols) ? float(small(rng)) : nan);
  for (size_t i = 0; i < nb; i++) put(B, i, i % size_t(ldb) < size_t(b_cols) ? float(small(rng)) : nan);
  for (size_t i = 0; i < nc; i++) C[i] = i % size_t(ldc) < size_t(c.N) ? float(small(rng)) : 777.0f;
  const std::vector<T> a0(A, A + na), b0(B, B + nb);
  const std::vector<float> c0(C, C + nc);

  // C exactly (small integers, alpha and beta powers of two), by OpenBLAS
  // on dense copies of op(A) and op(B).
  std::vector<float> opa(size_t(c.M) * c.K), opb(size_t(c.K) * c.N), prod(size_t(c.M) * c.N);
  for (int i = 0; i < c.M; i++)
    for (int p = 0; p < c.K; p++) opa[size_t(i) * c.K + p] = get(A, c.ta ? size_t(p) * lda + i : size_t(i) * lda + p);
  for (int p = 0; p < c.K; p++)
    for (int j = 0; j < c.N; j++) opb[size_t(p) * c.N + j] = get(B, c.tb ? size_t(j) * ldb + p : size_t(p) * ldb + j);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c.M, c.N, c.K, 1.0f, opa.data(), c.K, opb.data(), c.N, 0.0f,
              prod.data(), c.N);
  std::vector<float> want(c0);
  for (int i = 0; i < c.M; i++)
    for (int j = 0; j < c.N; j++) {
      float& w = want[size_t(i) * ldc + j];
      w = c.alpha * prod[size_t(i) * c.N + j] + (c.beta == 0.0f ? 0.0f : c.beta * w);
    }

  cpu::gemm_onednn(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A, lda, B, ldb, c.beta, C, ldc);

  std::ostringstream err;
  if (size_t n = ga.damaged()) err << n << " bytes written around A; ";
  if (size_t n = gb.damaged()) err << n << " bytes written around B; ";
  if (size_t n = gc.damaged()) err << n << " bytes written around C; ";
  if (std::memcmp(a0.data(), A, na * sizeof(T)) != 0) err << "A changed; ";
  if (std::memcmp(b0.data(), B, nb * sizeof(T)) != 0) err << "B changed; ";
  size_t wrong = 0, first = nc;
  for (size_t i = 0; i < nc; i++)
    if (std::memcmp(&C[i], &want[i], sizeof(float)) != 0 && wrong++ == 0) first = i;
  if (wrong)
    err << wrong << " elements of C wrong, first (" << first / ldc << ", " << first % ldc << "): " << C[first]
        << " for " << want[first] << "; ";
  return err.str();
}

// What the trainer multiplies (kernels/ops.cpp's linear_forward and
// linear_backward): forward x W^T, dx = dy W (beta 0 or 1), dW += dy^T x,
// for N tokens and a layer of `in` -> `out`, at dense leading dimensions.
void add_linear(std::vector<Case>& cases, int N, int in, int out) {
  cases.push_back({false, true, N, out, in, 0, 0, 0, 1.0f, 0.0f});
  cases.push_back({false, false, N, in, out, 0, 0, 0, 1.0f, 0.0f});
  cases.push_back({false, false, N, in, out, 0, 0, 0, 1.0f, 1.0f});
  cases.push_back({true, false, out, in, N, 0, 0, 0, 1.0f, 1.0f});
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  // configs/tiny.yaml (4 x 32 tokens, d 32, d_ff 64, vocab 256; also split
  // over tp = 2) and configs/small.yaml (4 x 128 tokens, d 256, d_ff 512,
  // vocab 256), and their decode steps (one token).
  for (int tp : {1, 2}) {
    add_linear(cases, 128, 32, 32 / tp);
    add_linear(cases, 128, 32 / tp, 32);
    add_linear(cases, 128, 32, 64 / tp);
    add_linear(cases, 128, 64 / tp, 32);
    add_linear(cases, 128, 32, 256 / tp);
  }
  add_linear(cases, 512, 256, 256);
  add_linear(cases, 512, 256, 512);
  add_linear(cases, 512, 512, 256);
  for (auto [in, out] : {std::pair{32, 64}, {64, 32}, {32, 256}, {256, 256}, {256, 512}, {512, 256}})
    cases.push_back({false, true, 1, out, in, 0, 0, 0, 1.0f, 0.0f});
  // Every transpose pair, beta 0 / 1 / a half, alpha 1 / a half, with wide
  // (odd) leading dimensions, ragged last slices by rows (M > N) and by
  // columns (N > M), and K off every vector width.
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (float beta : {0.0f, 1.0f, 0.5f}) {
        cases.push_back({ta, tb, 300, 40, 37, 3, 5, 7, 1.0f, beta});
        cases.push_back({ta, tb, 33, 260, 19, 1, 9, 2, beta == 0.5f ? 0.5f : 1.0f, beta});
        cases.push_back({ta, tb, 129, 129, 65, 16, 16, 16, 1.0f, beta});
        cases.push_back({ta, tb, 7, 3, 1, 1, 1, 1, 1.0f, beta});
      }
  return cases;
}

// All cases, each at both page ends, spread over `threads` OpenMP threads
// that call at once (each call again slices on the threads left to it).
template <class T>
void run_all(int threads, uint32_t seed) {
  const std::vector<Case> cases = all_cases();
  const int prev = omp_get_max_threads();
  omp_set_num_threads(threads);
  std::vector<std::string> errors(cases.size() * 2);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int i = 0; i < int(errors.size()); i++) {
    const Case& c = cases[size_t(i) / 2];
    const std::string e = run_case<T>(c, i % 2 == 0, seed + uint32_t(i));
    if (!e.empty()) errors[size_t(i)] = describe(c, std::is_same_v<T, bf16>, i % 2 == 0) + ": " + e;
  }
  omp_set_num_threads(prev);
  for (const std::string& e : errors) EXPECT_TRUE(e.empty()) << e;
}

}  // namespace

// One thread at a time: each call's slices run on 4 threads at once.
TEST(OneDnnGuard, Fp32SlicedCallsStayInsideTheirBuffers) {
  const std::vector<Case> cases = all_cases();
  const int prev = omp_get_max_threads();
  omp_set_num_threads(4);
  for (size_t i = 0; i < cases.size() * 2; i++) {
    const std::string e = run_case<float>(cases[i / 2], i % 2 == 0, uint32_t(i));
    EXPECT_TRUE(e.empty()) << describe(cases[i / 2], false, i % 2 == 0) << ": " << e;
  }
  omp_set_num_threads(prev);
}

TEST(OneDnnGuard, Bf16SlicedCallsStayInsideTheirBuffers) {
  const std::vector<Case> cases = all_cases();
  const int prev = omp_get_max_threads();
  omp_set_num_threads(4);
  for (size_t i = 0; i < cases.size() * 2; i++) {
    const std::string e = run_case<bf16>(cases[i / 2], i % 2 == 0, uint32_t(i));
    EXPECT_TRUE(e.empty()) << describe(cases[i / 2], true, i % 2 == 0) << ": " << e;
  }
  omp_set_num_threads(prev);
}

// Calls from several threads at once, each slicing again on a team of its
// own (nested, so of one thread): thread-local primitives, shared engine.
TEST(OneDnnGuard, Fp32ConcurrentCallsStayInsideTheirBuffers) { run_all<float>(4, 1000); }
TEST(OneDnnGuard, Bf16ConcurrentCallsStayInsideTheirBuffers) { run_all<bf16>(4, 2000); }
