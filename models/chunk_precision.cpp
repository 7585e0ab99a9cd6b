// A chunk's precision (DESIGN §11): the weights it reads (fp32, or bf16 with
// the vectors widened), their writing from fp32 masters, the bf16 twins of
// GEMM operands, its GEMMs (an fp32 run multiplies the float tensors, a bf16
// run the twins and bf16 weights, accumulating in fp32), and the rounding of
// a bf16 run's stream.
#include <cassert>

#include "kernels/ops.h"
#include "models/chunk_parts.h"

namespace attnres {

namespace k = kernels;

std::vector<size_t> widened_offsets(const ParamLayout& layout) {
  std::vector<size_t> at(layout.tensors.size() + 1, 0);
  for (size_t t = 0; t < layout.tensors.size(); ++t)
    at[t + 1] = at[t] + (layout.tensors[t].decay ? 0 : layout.tensors[t].numel);
  return at;
}

void chunk_write_weights(Chunk& c, const float* masters, size_t begin, size_t count) {
  assert(begin + count <= c.layout.total);
  if (c.cfg.bf16()) k::convert(c.dev, c.compute.data() + begin, masters, count);
  else if (masters != c.params.data() + begin) k::copy(c.dev, c.params.data() + begin, masters, count, k::CopyKind::DeviceToDevice);
}

void chunk_widen_vectors(Chunk& c) {
  if (!c.cfg.bf16()) return;
  const std::vector<size_t> at = widened_offsets(c.layout);
  for (size_t t = 0; t < c.layout.tensors.size(); ++t) {
    const TensorSpec& s = c.layout.tensors[t];
    if (!s.decay) k::convert(c.dev, c.widened.data() + at[t], c.compute.data() + s.offset, s.numel);
  }
}

void chunk_load_weights(Chunk& c, const float* host) {
  if (!c.cfg.bf16()) return k::from_host(c.dev, c.params.data(), host, c.layout.total);
  std::vector<k::bf16> h(c.layout.total);
  for (size_t i = 0; i < h.size(); ++i) h[i] = k::to_bf16(host[i]);
  k::from_host(c.dev, c.compute.data(), h.data(), h.size());
  chunk_widen_vectors(c);
}

std::vector<float> chunk_weights_to_host(const Chunk& c) {
  if (!c.cfg.bf16()) return k::to_host(c.dev, c.params.data(), c.layout.total);
  const std::vector<k::bf16> h = k::to_host(c.dev, c.compute.data(), c.layout.total);
  std::vector<float> out(h.size());
  for (size_t i = 0; i < h.size(); ++i) out[i] = k::to_float(h[i]);
  return out;
}

void keep_bf16(const Chunk& c, k::bf16* x_h, const float* x, size_t n) {
  if (x_h) k::convert(c.dev, x_h, x, n);
}

void matmul_forward(const Chunk& c, float* y, const float* x, const k::bf16* x_h, Weight W, int N, int in, int out) {
  if (c.cfg.bf16()) k::linear_forward(c.dev, y, x_h, W.h, N, in, out);
  else k::linear_forward(c.dev, y, x, W.f, N, in, out);
}

void matmul_backward_input(const Chunk& c, float* dx, const float* dy, const k::bf16* dy_h, Weight W, int N, int in,
                           int out, bool accumulate) {
  if (c.cfg.bf16()) k::linear_backward(c.dev, dx, nullptr, dy_h, nullptr, W.h, N, in, out, accumulate);
  else k::linear_backward(c.dev, dx, nullptr, dy, nullptr, W.f, N, in, out, accumulate);
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
