#include "runtime/evaluate.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "kernels/memory.h"
#include "runtime/config.h"
#include "runtime/device_batch.h"
#include "runtime/safetensors.h"

namespace attnres {

namespace k = kernels;

namespace {
// The bytes of a text file, or the tokens of a token file (its magic says
// which), at most max_bytes of them: a read bounded by the windows asked for.
std::vector<uint8_t> eval_tokens(const std::string& path, size_t max_bytes) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path + ": cannot open input file");
  std::vector<uint8_t> bytes;
  char buf[1 << 16];
  while (bytes.size() < max_bytes) {
    f.read(buf, std::streamsize(std::min(sizeof buf, max_bytes - bytes.size())));
    if (f.gcount() <= 0) break;
    bytes.insert(bytes.end(), buf, buf + f.gcount());
  }
  if (bytes.size() >= sizeof kTokenMagic && std::equal(kTokenMagic, kTokenMagic + sizeof kTokenMagic, bytes.begin())) {
    std::vector<uint8_t> tokens = TokenFile(path).tokens;
    tokens.resize(std::min(tokens.size(), max_bytes));
    return tokens;
  }
  return bytes;
}

}  // namespace

double mean_loss(const Chunk& model, ChunkActs& acts, const std::vector<Batch>& batches) {
  double sum = 0.0;
  size_t tokens = 0;
  for (const Batch& b : batches) {
    if (b.B != model.batch) throw std::logic_error("mean_loss: batch size differs from the model's");
    const DeviceBatch db(model.dev, b, model.cfg.vocab_size);
    sum += chunk_forward(model, acts, db.inputs.data(), db.targets.data(), ResidualState{});
    tokens += b.inputs.size();
  }
  return tokens ? sum / double(tokens) : 0.0;
}

void accumulate_depth(DepthStats& stats, const Chunk& model, const ChunkActs& acts, size_t rows) {
  const ModelConfig& m = model.cfg;
  const int L = m.num_sublayers(), d = m.d_model;
  const ActsView& v = acts.v;
  auto add_rms = [&](size_t i, const float* h) {
    const std::vector<float> x = k::to_host(model.dev, h, rows * size_t(d));
    for (size_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int c = 0; c < d; ++c) ss += double(x[r * d + c]) * x[r * d + c];
      stats.rms[i] += std::sqrt(ss / d);
    }
  };
  auto add_alpha = [&](size_t site) {
    const int K = acts.site_k[site];
    const std::vector<float> a = chunk_site_weights(model, acts, int(site), int(rows));
    stats.alpha[site].resize(size_t(K));
    for (size_t r = 0; r < rows; ++r)
      for (int s = 0; s < K; ++s) stats.alpha[site][size_t(s)] += a[r * K + s];
  };
  stats.rms.resize(size_t(L) + 1);
  for (int j = 0; j < L; ++j) add_rms(size_t(j), v.sub[size_t(j)].h);
  add_rms(size_t(L), m.attnres() ? v.head.h : acts.out.hidden);
  if (m.attnres()) {
    stats.alpha.resize(size_t(L) + 1);
    for (int j = 0; j <= L; ++j) add_alpha(size_t(j));
  }
  stats.tokens += rows;
}

std::string depth_json(const DepthStats& stats, const ModelConfig& m) {
  const double n = double(std::max<size_t>(stats.tokens, 1));
  nlohmann::json j;
  j["mode"] = residual_mode_name(m.mode);
  j["sublayers"] = m.num_sublayers();
  if (m.attnres()) j["block_size"] = m.block_size, j["num_blocks"] = m.num_blocks();
  j["tokens"] = stats.tokens;
  std::vector<double> rms;
  for (double x : stats.rms) rms.push_back(x / n);
  j["rms"] = rms;  // sublayer inputs, then the final norm's input
  nlohmann::json alpha = nlohmann::json::array();
  for (const std::vector<double>& site : stats.alpha) {
    std::vector<double> mean;
    for (double x : site) mean.push_back(x / n);
    alpha.push_back(mean);
  }
  j["alpha"] = alpha;  // per site: mean weight per source (0 = embedding, b + 1 = block b)
  return j.dump(1) + "\n";
}

size_t eval_windows_bound(const std::string& path, int seq_len, size_t max_windows) {
  std::error_code ec;
  const bool regular = std::filesystem::is_regular_file(path, ec);
  if (!regular && max_windows == 0)
    throw std::runtime_error(path + ": not a regular file, so it may never end; give --windows N to read only "
                                    "its first N windows");
  const size_t in_file = regular ? size_t(std::filesystem::file_size(path)) / size_t(seq_len + 1) : max_windows;
  return max_windows > 0 ? std::min(max_windows, in_file) : in_file;
}

EvalResult eval_file(const Chunk& model, ChunkActs& acts, const std::string& text_path, DepthStats* depth,
                     size_t max_windows) {
  const int T = model.cfg.seq_len;
  const size_t bound = eval_windows_bound(text_path, T, max_windows);
  const std::vector<uint8_t> bytes = eval_tokens(text_path, max_windows > 0 ? bound * size_t(T + 1) : SIZE_MAX);
  const size_t all_windows = bytes.size() / size_t(T + 1);
  const size_t windows = max_windows > 0 ? std::min(max_windows, all_windows) : all_windows;
  if (windows == 0)
    throw std::runtime_error(text_path + ": " + std::to_string(bytes.size()) +
                             " bytes is shorter than one window of seq_len + 1 = " + std::to_string(T + 1));
  const int B = model.batch;
  double sum = 0.0;
  EvalResult r;
  for (size_t w0 = 0; w0 < windows; w0 += size_t(B)) {
    // The last batch is padded by repeating its first window; padding is not counted.
    Batch b;
    b.B = B, b.T = T;
    const size_t used = std::min(size_t(B), windows - w0);
    for (int i = 0; i < B; ++i) {
      const size_t w = w0 + (size_t(i) < used ? size_t(i) : 0);
      for (int t = 0; t < T; ++t) {
        b.inputs.push_back(bytes[w * (T + 1) + t]);
        b.targets.push_back(bytes[w * (T + 1) + t + 1]);
      }
    }
    const DeviceBatch db(model.dev, b, model.cfg.vocab_size);
    chunk_forward(model, acts, db.inputs.data(), db.targets.data(), ResidualState{}, nullptr);
    const std::vector<float> losses = k::to_host(model.dev, chunk_token_losses(model, acts), used * size_t(T));
    for (float l : losses) sum += l;
    r.tokens += used * size_t(T);
    if (depth) accumulate_depth(*depth, model, acts, used * size_t(T));
  }
  r.loss = sum / double(r.tokens);
  return r;
}

void load_export(Chunk& model, const std::string& weights_path, int batch) {
  const std::string config_path = export_config_path(weights_path);
  const ModelConfig m = read_export_config(config_path);
  check_microbatch(m, batch, "--batch");
  std::string carried;
  const auto tensors = read_safetensors(weights_path, &carried);
  check_export_config(config_path, carried);
  chunk_init(model, m, 0, m.num_sublayers(), batch, 0);
  load_named_tensors(model, tensors, weights_path);
}

void load_named_tensors(Chunk& model, const std::vector<NamedTensor>& tensors, const std::string& source) {
  for (const auto& t : tensors)
    if (!model.layout.find(t.name))
      throw std::runtime_error(source + ": tensor " + t.name + " is not part of this model");
  std::vector<float> whole(model.layout.total);
  for (const auto& spec : model.layout.tensors) {
    const NamedTensor* found = nullptr;
    for (const auto& t : tensors)
      if (t.name == spec.name) found = &t;
    if (!found) throw std::runtime_error(source + ": tensor " + spec.name + " is missing");
    if (found->shape != spec.shape) throw std::runtime_error(source + ": tensor " + spec.name + " has the wrong shape");
    std::copy(found->data.begin(), found->data.end(), whole.begin() + long(spec.offset));
  }
  chunk_load_weights(model, whole.data());
}

std::vector<NamedTensor> named_tensors(const ParamLayout& layout, const float* host_params) {
  std::vector<NamedTensor> out;
  for (const auto& spec : layout.tensors)
    out.push_back({spec.name, spec.shape,
                   std::vector<float>(host_params + spec.offset, host_params + spec.offset + spec.numel)});
  return out;
}

}  // namespace attnres
