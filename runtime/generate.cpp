#include "runtime/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace attnres {

int32_t sample_token(const std::vector<float>& logits, const SampleOptions& o, std::mt19937_64& rng) {
  const int n = std::min<int>(int(logits.size()), 256);
  std::vector<int> ids(static_cast<size_t>(n));
  std::iota(ids.begin(), ids.end(), 0);
  // Most likely first, the lower id first on a tie: greedy and top-k are deterministic.
  auto more_likely = [&](int a, int b) { return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b); };
  const int keep = o.temperature == 0.0f ? 1 : o.top_k > 0 ? std::min(o.top_k, n) : n;
  std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), more_likely);
  if (keep == 1) return ids[0];
  std::vector<double> p(static_cast<size_t>(keep));
  const double top = logits[size_t(ids[0])];
  double total = 0;
  for (int i = 0; i < keep; ++i) total += p[size_t(i)] = std::exp((logits[size_t(ids[size_t(i)])] - top) / o.temperature);
  // A uniform double in [0, total) from 53 random bits: the same on every platform.
  double u = double(rng() >> 11) * 0x1.0p-53 * total;
  for (int i = 0; i < keep; ++i) {
    if (u < p[size_t(i)]) return ids[size_t(i)];
    u -= p[size_t(i)];
  }
  return ids[size_t(keep - 1)];  // u rounded past the last bin
}

std::vector<int32_t> generate(Decoder& dec, const std::vector<int32_t>& prompt, const SampleOptions& o,
                              const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) throw std::invalid_argument("the prompt is empty: generation needs at least one token");
  const int T = dec.model->cfg.seq_len;
  std::vector<int32_t> context(prompt.end() - std::min<ptrdiff_t>(ptrdiff_t(prompt.size()), T), prompt.end());
  decoder_reset(dec);
  std::vector<float> logits;
  for (int32_t t : context) logits = decoder_step(dec, t);
  std::mt19937_64 rng(o.seed);
  std::vector<int32_t> out;
  for (int i = 0; i < o.tokens; ++i) {
    const int32_t next = sample_token(logits, o, rng);
    out.push_back(next);
    on_token(next);
    if (i + 1 == o.tokens) break;
    context.push_back(next);
    if (dec.pos == T) {  // slide: refill an empty cache with the newest half of the window
      context.erase(context.begin(), context.end() - T / 2 - 1);
      decoder_reset(dec);
      for (size_t k = 0; k + 1 < context.size(); ++k) decoder_step(dec, context[k]);
    }
    logits = decoder_step(dec, next);
  }
  return out;
}

}  // namespace attnres
