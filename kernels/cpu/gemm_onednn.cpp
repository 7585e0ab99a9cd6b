// GEMM on oneDNN's matmul: bf16 operands with fp32 accumulation into an fp32
// C (this CPU's AVX-512 bf16 / AMX units). Its fp32 overload is measured
// against OpenBLAS (bench_kernels) but not used in training: kernels/cpu/
// gemm_cpu.cpp says why. Like the OpenBLAS path,
// C is cut into fixed slices, each one single-threaded matmul, so no bit
// depends on the thread count. Primitives are made once per slice shape and
// kept per thread.
#include <omp.h>

#include <algorithm>
#include <cassert>
#include <map>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cpu/gemm_cpu.h"
#include "kernels/cpu/parallel_cpu.h"

namespace attnres::kernels::cpu {

namespace {

using dnnl::memory;

const dnnl::engine& cpu_engine() {
  static const dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// One slice's matmul: C[M,N] = alpha op(A) op(B) + beta C, row-major with
// leading dimensions, A and B of type `ab`; op(X) = X^T reads X with swapped
// strides.
struct SliceKey {
  bool ta, tb;
  int M, N, K, lda, ldb, ldc;
  memory::data_type ab;
  float alpha, beta;
  auto tie() const { return std::tie(ta, tb, M, N, K, lda, ldb, ldc, ab, alpha, beta); }
  bool operator<(const SliceKey& o) const { return tie() < o.tie(); }
};

struct SlicePrimitive {
  dnnl::matmul prim;
  memory a, b, c;
  memory scratch;  // this primitive's own: oneDNN's library scratchpad is shared, unsafe across threads
};

// oneDNN's implementation for the slice; throws dnnl::error where it has none.
dnnl::matmul::primitive_desc describe(const SliceKey& k) {
  const memory::desc ad({k.M, k.K}, k.ab, k.ta ? memory::dims{1, k.lda} : memory::dims{k.lda, 1});
  const memory::desc bd({k.K, k.N}, k.ab, k.tb ? memory::dims{1, k.ldb} : memory::dims{k.ldb, 1});
  const memory::desc cd({k.M, k.N}, memory::data_type::f32, memory::dims{k.ldc, 1});
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (k.alpha != 1.0f) attr.set_output_scales(0, {k.alpha});
  if (k.beta != 0.0f) {
    dnnl::post_ops po;
    po.append_sum(k.beta);
    attr.set_post_ops(po);
  }
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(ad, bd, cd), attr, cpu_engine());
}

SlicePrimitive make_primitive(const SliceKey& k) {
  const dnnl::matmul::primitive_desc pd = describe(k);
  const dnnl::engine& e = cpu_engine();
  return {dnnl::matmul(pd), memory(pd.src_desc(), e, DNNL_MEMORY_NONE), memory(pd.weights_desc(), e, DNNL_MEMORY_NONE),
          memory(pd.dst_desc(), e, DNNL_MEMORY_NONE), memory(pd.scratchpad_desc(), e)};
}

// Runs one slice on the calling thread alone. The primitive is made with
// one OpenMP thread in view, so oneDNN's blocking (and so its rounding) is
// the same whatever thread runs it and however many there are.
void run_slice(const SliceKey& k, const void* A, const void* B, float* C) {
  thread_local std::map<SliceKey, SlicePrimitive> cache;
  thread_local dnnl::stream stream(cpu_engine());
  omp_set_num_threads(1);
  auto it = cache.find(k);
  if (it == cache.end()) it = cache.emplace(k, make_primitive(k)).first;
  SlicePrimitive& p = it->second;
  p.a.set_data_handle(const_cast<void*>(A));
  p.b.set_data_handle(const_cast<void*>(B));
  p.c.set_data_handle(C);
  p.prim.execute(stream, {{DNNL_ARG_SRC, p.a}, {DNNL_ARG_WEIGHTS, p.b}, {DNNL_ARG_DST, p.c}, {DNNL_ARG_SCRATCHPAD, p.scratch}});
  stream.wait();
}

template <class T>
void onednn_gemm(memory::data_type ab, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const T* A,
                 int lda, const T* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  const bool by_rows = M >= N;
  const int len = by_rows ? M : N;
  blas_tasks((len + kGemmSlice - 1) / kGemmSlice, [&](int s) {
    const int o0 = s * kGemmSlice, w = std::min(kGemmSlice, len - o0);
    if (by_rows)
      run_slice({trans_a, trans_b, w, N, K, lda, ldb, ldc, ab, alpha, beta},
                trans_a ? A + o0 : A + size_t(o0) * lda, B, C + size_t(o0) * ldc);
    else
      run_slice({trans_a, trans_b, M, w, K, lda, ldb, ldc, ab, alpha, beta}, A,
                trans_b ? B + size_t(o0) * ldb : B + o0, C + o0);
  });
}

// A slice of small.yaml's shape, for what oneDNN would run.
constexpr SliceKey probe(memory::data_type ab) { return {false, false, 128, 128, 128, 128, 128, 128, ab, 1.0f, 0.0f}; }

// Where oneDNN has no bf16 matmul for this CPU (no AVX-512), the operands
// are widened to fp32 (exactly) and multiplied by OpenBLAS: the same
// products, slower, never wrong.
bool bf16_native() {
  static const bool ok = [] {
    try {
      describe(probe(memory::data_type::bf16));
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return ok;
}

// A dense fp32 copy of rows x cols entries at leading dimension ld. Reads
// nothing past the last row's cols: a caller's buffer may end there.
std::vector<float> widen(const bf16* x, int rows, int cols, int ld) {
  std::vector<float> out(size_t(rows) * cols);
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++) out[size_t(r) * cols + c] = to_float(x[size_t(r) * ld + c]);
  return out;
}

}  // namespace

std::string onednn_gemm_engine(DType operands) {
  if (operands == DType::F32) return std::string("oneDNN ") + describe(probe(memory::data_type::f32)).impl_info_str();
  if (!bf16_native()) return "bf16 widened to fp32 on OpenBLAS: this CPU has no bf16 GEMM, so bf16 is slow here";
  return std::string("oneDNN ") + describe(probe(memory::data_type::bf16)).impl_info_str();
}

void gemm_onednn(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const bf16* A, int lda,
                 const bf16* B, int ldb, float beta, float* C, int ldc) {
  if (bf16_native()) {
    onednn_gemm(memory::data_type::bf16, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const int a_cols = trans_a ? M : K, b_cols = trans_b ? K : N;
  const std::vector<float> a = widen(A, trans_a ? K : M, a_cols, lda), b = widen(B, trans_b ? N : K, b_cols, ldb);
  gemm_openblas(trans_a, trans_b, M, N, K, alpha, a.data(), std::max(1, a_cols), b.data(), std::max(1, b_cols), beta,
                C, ldc);
}

void gemm_onednn(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc) {
  onednn_gemm(memory::data_type::f32, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace attnres::kernels::cpu
