// A chunk's precision (DESIGN §11): the bf16 compute copy of its weights,
// the bf16 twins of GEMM operands, its GEMMs (an fp32 run multiplies the
// float tensors, a bf16 run the twins and the compute copy, accumulating in
// fp32), and the rounding of a bf16 run's stream.
#include "kernels/ops.h"
#include "models/chunk_parts.h"

namespace attnres {

namespace k = kernels;

void chunk_sync_compute_weights(Chunk& c) {
  if (c.cfg.bf16()) k::convert(c.dev, c.compute.data(), c.params.data(), c.params.size());
}

// W's bf16 copy: the same offset in the compute buffer as in the masters.
static const k::bf16* compute_weight(const Chunk& c, const float* W) {
  return c.compute_base + (W - c.params_base);
}

void keep_bf16(const Chunk& c, k::bf16* x_h, const float* x, size_t n) {
  if (x_h) k::convert(c.dev, x_h, x, n);
}

void matmul_forward(const Chunk& c, float* y, const float* x, const k::bf16* x_h, const float* W, int N, int in,
                    int out) {
  if (c.cfg.bf16()) k::linear_forward(c.dev, y, x_h, compute_weight(c, W), N, in, out);
  else k::linear_forward(c.dev, y, x, W, N, in, out);
}

void matmul_backward_input(const Chunk& c, float* dx, const float* dy, const k::bf16* dy_h, const float* W, int N,
                           int in, int out, bool accumulate) {
  if (c.cfg.bf16()) k::linear_backward(c.dev, dx, nullptr, dy_h, nullptr, compute_weight(c, W), N, in, out, accumulate);
  else k::linear_backward(c.dev, dx, nullptr, dy, nullptr, W, N, in, out, accumulate);
}

void matmul_backward_weight(const Chunk& c, float* dW, const float* dy, const k::bf16* dy_h, const float* x,
                            const k::bf16* x_h, int N, int in, int out) {
  if (c.cfg.bf16()) k::linear_backward(c.dev, nullptr, dW, dy_h, x_h, nullptr, N, in, out, false);
  else k::linear_backward(c.dev, nullptr, dW, dy, x, nullptr, N, in, out, false);
}

void round_stream(const Chunk& c, float* x) {
  if (c.cfg.bf16()) k::round_bf16_inplace(c.dev, x, size_t(c.dims.Nr) * c.dims.d);
}

}  // namespace attnres
