// Config loading: YAML file -> flat (key -> node) map -> --set overrides ->
// typed fields -> validation. Every key lives in one table (visit_fields), so
// parsing, unknown-key detection and emission cannot drift apart.
#include "runtime/config.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "kernels/limits.h"
#include "parallel/partition.h"

namespace attnres {

namespace {

// The single table of keys. F is called as f(key, field&) for every key, in
// the order they are written out. residual.block_size/num_blocks map to the
// "as written" fields; 0 there means "not given".
template <class C, class F>
void visit_fields(C& c, F&& f) {
  f("model.vocab_size", c.model.vocab_size);
  f("model.d_model", c.model.d_model);
  f("model.n_layers", c.model.n_layers);
  f("model.n_heads", c.model.n_heads);
  f("model.d_ff", c.model.d_ff);
  f("model.seq_len", c.model.seq_len);
  f("model.rope_theta", c.model.rope_theta);
  f("model.norm_eps", c.model.norm_eps);
  f("model.attention", c.attention);
  f("residual.mode", c.model.mode);
  f("residual.block_size", c.residual_block_size);
  f("residual.num_blocks", c.residual_num_blocks);
  f("train.steps", c.train.steps);
  f("train.micro_batch_size", c.train.micro_batch_size);
  f("train.grad_accum", c.train.grad_accum);
  f("train.lr", c.train.lr);
  f("train.min_lr", c.train.min_lr);
  f("train.warmup_steps", c.train.warmup_steps);
  f("train.weight_decay", c.train.weight_decay);
  f("train.beta1", c.train.beta1);
  f("train.beta2", c.train.beta2);
  f("train.adam_eps", c.train.adam_eps);
  f("train.grad_clip", c.train.grad_clip);
  f("train.eval_every", c.train.eval_every);
  f("train.eval_batches", c.train.eval_batches);
  f("train.log_every", c.train.log_every);
  f("train.seed", c.train.seed);
  f("train.threads", c.train.threads);
  f("train.watchdog_timeout", c.train.watchdog_timeout);
  f("train.device", c.train.device);
  f("train.on_nonfinite", c.train.on_nonfinite);
  f("train.recompute", c.model.recompute);
  f("train.precision", c.model.precision);
  f("train.tf32", c.train.tf32);
  f("train.max_skipped_steps", c.train.max_skipped_steps);
  f("train.zero", c.train.zero);
  f("data.dir", c.data.dir);
  f("parallel.dp", c.parallel.dp);
  f("parallel.pp", c.parallel.pp);
  f("parallel.tp", c.parallel.tp);
  f("parallel.schedule", c.parallel.schedule);
  f("parallel.virtual_stages", c.parallel.virtual_stages);
  f("parallel.microbatches", c.parallel.microbatches);
  f("parallel.layout", c.parallel.layout);
  f("parallel.cross_stage_cache", c.parallel.cross_stage_cache);
  f("parallel.cached_grads", c.parallel.cached_grads);
  f("parallel.sequence_parallel", c.parallel.sequence_parallel);
  f("parallel.hop_dtype", c.parallel.hop_dtype);
  f("parallel.sends_in_flight", c.parallel.sends_in_flight);
  f("checkpoint.dir", c.checkpoint.dir);
  f("checkpoint.every", c.checkpoint.every);
  f("checkpoint.keep_last", c.checkpoint.keep_last);
  f("checkpoint.async", c.checkpoint.async);
}

bool is_known_key(const std::string& key) {
  Config c;
  bool found = false;
  visit_fields(c, [&](const char* k, auto&) { found = found || key == k; });
  return found;
}

bool is_known_section(const std::string& section) {
  Config c;
  bool found = false;
  visit_fields(c, [&](const char* k, auto&) {
    std::string s(k);
    found = found || s.substr(0, s.find('.')) == section;
  });
  return found;
}

// A raw value and where it came from ("file.yaml:12" or "--set k=v").
struct RawValue {
  YAML::Node node;
  std::string origin;
};

std::string scalar_text(const YAML::Node& n) {
  if (n.IsNull()) return "null";
  if (n.IsScalar()) return "'" + n.Scalar() + "'";
  return n.IsSequence() ? "a list" : "a mapping";
}

[[noreturn]] void bad_type(const RawValue& v, const std::string& key, const char* expected) {
  throw ConfigError(v.origin + ": " + key + ": expected " + expected + ", got " +
                    scalar_text(v.node));
}

// YAML 1.1, which yaml-cpp follows, reads 010 as octal 8 and 0x0A as 10; a
// config means decimal: digits after an optional sign, no leading zero.
bool is_decimal_integer(const std::string& s) {
  const size_t i = !s.empty() && (s[0] == '+' || s[0] == '-') ? 1 : 0;
  return i < s.size() && s.find_first_not_of("0123456789", i) == std::string::npos &&
         (s.size() - i == 1 || s[i] != '0');
}

// Typed conversion of one raw value into its field; throws naming origin and key.
struct Assign {
  const RawValue& v;
  const std::string& key;

  void operator()(int& out) const {
    if (!v.node.IsScalar() || !is_decimal_integer(v.node.Scalar()))
      bad_type(v, key, "a decimal integer (no leading zero, no 0x)");
    int x;
    if (!YAML::convert<int>::decode(v.node, x)) bad_type(v, key, "an integer");
    out = x;
  }
  void operator()(unsigned long long& out) const {
    if (!v.node.IsScalar() || !is_decimal_integer(v.node.Scalar()))
      bad_type(v, key, "a non-negative decimal integer (no leading zero, no 0x)");
    unsigned long long x;
    if (!YAML::convert<unsigned long long>::decode(v.node, x))
      bad_type(v, key, "a non-negative integer");
    out = x;
  }
  void operator()(float& out) const {
    if (!v.node.IsScalar()) bad_type(v, key, "a number");
    float x;
    double wide;
    if (YAML::convert<double>::decode(v.node, wide) && std::isfinite(wide) && std::fabs(wide) > 3.4e38)
      bad_type(v, key, "a number within the 32-bit float range (magnitude below 3.4e38)");
    if (!YAML::convert<float>::decode(v.node, x) || !std::isfinite(x))
      bad_type(v, key, "a finite number");
    out = x;
  }
  void operator()(bool& out) const {
    if (!v.node.IsScalar()) bad_type(v, key, "true or false");
    bool x;
    if (!YAML::convert<bool>::decode(v.node, x)) bad_type(v, key, "true or false");
    out = x;
  }
  void operator()(std::string& out) const {
    if (v.node.IsNull()) {  // `key:` or `key: ~` means the empty string
      out.clear();
      return;
    }
    if (!v.node.IsScalar()) bad_type(v, key, "a string");
    out = v.node.Scalar();
  }
  void operator()(ResidualMode& out) const {
    if (!v.node.IsScalar()) bad_type(v, key, "standard or attnres");
    const std::string& s = v.node.Scalar();
    if (s == "standard") out = ResidualMode::Standard;
    else if (s == "attnres") out = ResidualMode::AttnRes;
    else bad_type(v, key, "standard or attnres");
  }
  void operator()(kernels::DType& out) const {  // a precision: fp32 or bf16
    if (!v.node.IsScalar()) bad_type(v, key, "fp32 or bf16");
    const std::string& s = v.node.Scalar();
    if (s == "fp32") out = kernels::DType::F32;
    else if (s == "bf16") out = kernels::DType::BF16;
    else bad_type(v, key, "fp32 or bf16");
  }
  void operator()(Recompute& out) const {
    if (!v.node.IsScalar()) bad_type(v, key, "none, selective, block or full");
    const std::string& s = v.node.Scalar();
    if (s == "none") out = Recompute::None;
    else if (s == "selective") out = Recompute::Selective;
    else if (s == "block") out = Recompute::Block;
    else if (s == "full") out = Recompute::Full;
    else bad_type(v, key, "none, selective, block or full");
  }
};

// yaml-cpp's Load reads the first document and drops the rest silently: a
// config, and a --set value, is one document.
YAML::Node one_document(const std::string& text, const std::string& origin) {
  const std::vector<YAML::Node> docs = YAML::LoadAll(text);
  if (docs.size() > 1)
    throw ConfigError(origin + ": holds " + std::to_string(docs.size()) +
                      " YAML documents (--- or ... separates them); a config is one");
  return docs.empty() ? YAML::Node() : docs.front();
}

std::string line_origin(const std::string& source, const YAML::Node& n) {
  return n.Mark().is_null() ? source : source + ":" + std::to_string(n.Mark().line + 1);
}

// yaml-cpp reads a quote left open up to the end of the file as a string
// (`lr: "3e-4` becomes 3e-4). No value here spans lines, so a quoted scalar
// must close on its own line. A quote opens a scalar only where one starts
// (after `key:`, `-`, `[`, `{`, `,` or at the line's start), so `Bob's` is no quote.
void reject_unclosed_quotes(const std::string& text, const std::string& source) {
  std::istringstream lines(text);
  int n = 0;
  for (std::string line; std::getline(lines, line);) {
    ++n;
    char quote = 0, prev = ' ';  // prev: the last non-blank character outside quotes
    for (size_t i = 0; i < line.size(); ++i) {
      const char c = line[i];
      if (quote == '"' && c == '\\') ++i;  // an escape inside double quotes
      else if (quote && c == quote) {
        if (quote == '\'' && i + 1 < line.size() && line[i + 1] == '\'') ++i;  // '' inside single quotes
        else quote = 0, prev = c;
      } else if (!quote && c == '#' && (i == 0 || line[i - 1] == ' ' || line[i - 1] == '\t')) break;
      else if (!quote && (c == '"' || c == '\'') && std::string(" :-[{,").find(prev) != std::string::npos)
        quote = c;
      else if (!quote && c != ' ' && c != '\t') prev = c;
    }
    if (quote)
      throw ConfigError(source + ":" + std::to_string(n) + ": unclosed " + (quote == '"' ? "double" : "single") +
                        " quote");
  }
}

// Flattens the two-level document into dotted keys, rejecting unknown
// sections and keys, and sections or keys given twice.
std::map<std::string, RawValue> flatten(const YAML::Node& root, const std::string& source) {
  std::map<std::string, RawValue> out;
  std::map<std::string, std::string> sections;  // section -> where
  if (root.IsNull()) return out;  // empty file: all defaults
  if (!root.IsMap())
    throw ConfigError(source + ": expected a mapping of sections (model, residual, train, "
                      "data, parallel, checkpoint) at the top level");
  for (const auto& sec : root) {
    const std::string section = sec.first.Scalar();
    const std::string where = line_origin(source, sec.first);
    if (!is_known_section(section))
      throw ConfigError(where + ": " + section +
                        ": unknown section (expected model, residual, train, data, parallel "
                        "or checkpoint)");
    if (const auto [it, fresh] = sections.emplace(section, where); !fresh)
      throw ConfigError(where + ": " + section + ": section given twice (first at " + it->second + ")");
    if (sec.second.IsNull()) continue;  // `checkpoint:` with nothing under it
    if (!sec.second.IsMap())
      throw ConfigError(where + ": " + section + ": expected a mapping of keys, got " +
                        scalar_text(sec.second));
    for (const auto& kv : sec.second) {
      const std::string key = section + "." + kv.first.Scalar();
      const std::string kwhere = line_origin(source, kv.first);
      if (!is_known_key(key)) throw ConfigError(kwhere + ": " + key + ": unknown key");
      if (const auto [it, fresh] = out.emplace(key, RawValue{kv.second, kwhere}); !fresh)
        throw ConfigError(kwhere + ": " + key + ": key given twice (first at " + it->second.origin + ")");
    }
  }
  return out;
}

std::string fmt_float(float x) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, x);  // shortest text that round-trips
  return std::string(buf, r.ptr);
}

[[noreturn]] void fail(const std::string& key, const std::string& what) {
  throw ConfigError(key + ": " + what, key);
}

template <class T>
std::string str(T x) {
  if constexpr (std::is_same_v<T, float>) return fmt_float(x);
  else if constexpr (std::is_floating_point_v<T>) return (std::ostringstream() << x).str();  // never 300 digits
  else return std::to_string(x);
}

void require_positive(const char* key, int v) {
  if (v < 1) fail(key, str(v) + " must be >= 1");
}
// Sizes: positive and at most `max`, so that every count derived from them
// (sublayers, parameters, activations) fits in 64 bits.
void require_size(const char* key, int v, int max) {
  require_positive(key, v);
  if (v > max) fail(key, str(v) + " exceeds " + str(max) + ", the largest this runtime accepts");
}
void require_non_negative(const char* key, int v) {
  if (v < 0) fail(key, str(v) + " must be >= 0");
}
void require_non_negative(const char* key, float v) {
  if (!(v >= 0)) fail(key, str(v) + " must be >= 0");
}
void require_positive(const char* key, float v) {
  if (!(v > 0)) fail(key, str(v) + " must be > 0");
}
void require_unit(const char* key, float v) {
  if (!(v >= 0 && v < 1)) fail(key, str(v) + " must be in [0, 1)");
}

}  // namespace

void check_microbatch(const ModelConfig& m, int64_t batch, const std::string& key) {
  // batch <= 2^24 and seq_len <= 2^20, n_heads <= 2^10: no product below wraps.
  const int64_t tokens = batch * m.seq_len;
  if (batch > kMaxMicrobatchTokens || tokens > kMaxMicrobatchTokens)
    fail(key, str(batch) + " sequences of model.seq_len " + str(m.seq_len) + " tokens exceed " +
                  str(kMaxMicrobatchTokens) + " tokens per microbatch, the most this runtime accepts");
  const int64_t att = tokens * m.seq_len * m.n_heads;
  if (att > kMaxAttentionFloats)
    fail(key, str(batch) + " sequences give " + str(att) + " attention probabilities per sublayer (x model.n_heads " +
                  str(m.n_heads) + " x model.seq_len^2), above " + str(kMaxAttentionFloats) +
                  ", the most this runtime accepts");
}

void validate_config(Config& cfg) {
  ModelConfig& m = cfg.model;
  // The tokenizer is bytes: ids 0..255 must exist; a larger vocabulary only
  // adds unused rows (allowed, e.g. to pad V to a multiple of 64).
  if (m.vocab_size < 256)
    fail("model.vocab_size", str(m.vocab_size) + " must be >= 256 (the tokenizer is byte-level)");
  if (m.vocab_size > (1 << 24))
    fail("model.vocab_size", str(m.vocab_size) + " exceeds " + str(1 << 24) + ", the largest this runtime accepts");
  require_size("model.d_model", m.d_model, 1 << 16);
  require_size("model.n_layers", m.n_layers, 1 << 12);
  require_size("model.n_heads", m.n_heads, 1 << 10);
  require_size("model.d_ff", m.d_ff, 1 << 18);
  require_size("model.seq_len", m.seq_len, 1 << 20);
  require_positive("model.rope_theta", m.rope_theta);
  require_positive("model.norm_eps", m.norm_eps);
  if (m.d_model % m.n_heads != 0)
    fail("model.d_model", str(m.d_model) + " is not divisible by model.n_heads (" +
                              str(m.n_heads) + ")");
  if (m.head_dim() % 2 != 0)
    fail("model.n_heads", "head_dim = model.d_model / model.n_heads = " + str(m.head_dim()) +
                              " is odd; RoPE rotates pairs of dimensions and needs it even");

  // Residual: resolve S into model.block_size.
  const int L = m.num_sublayers();
  const int bs = cfg.residual_block_size, nb = cfg.residual_num_blocks;
  if (bs < 0) fail("residual.block_size", str(bs) + " must be >= 1");
  if (nb < 0) fail("residual.num_blocks", str(nb) + " must be >= 1");
  if (m.mode == ResidualMode::Standard) {
    // The block keys are kept but unused, so residual.mode alone switches a
    // config between the standard residual and AttnRes (issue #2).
    m.block_size = 1;
  } else {
    if (bs != 0 && nb != 0)
      fail("residual.block_size",
           "give either residual.block_size or residual.num_blocks, not both (a --set of one "
           "replaces the other)");
    if (bs > L)
      fail("residual.block_size", str(bs) + " exceeds the number of sublayers L = 2 * " +
                                      "model.n_layers = " + str(L));
    if (nb > L)
      fail("residual.num_blocks", str(nb) + " exceeds the number of sublayers L = 2 * " +
                                      "model.n_layers = " + str(L));
    if (bs != 0) {
      m.block_size = bs;
    } else {
      // N given, or the default N = min(8, L); S = ceil(L / N).
      const int n = nb != 0 ? nb : std::min(8, L);
      m.block_size = (L + n - 1) / n;
      // With equal blocks of S and a shorter last one, some N cannot be
      // reached (L = 8, N = 5 gives S = 2 and 4 blocks). An explicit N that
      // would silently become another N is an error.
      if (nb != 0 && m.num_blocks() != nb)
        fail("residual.num_blocks",
             str(nb) + " blocks cannot split L = " + str(L) + " sublayers: block size ceil(" +
                 str(L) + "/" + str(nb) + ") = " + str(m.block_size) + " gives " +
                 str(m.num_blocks()) + " blocks; choose another num_blocks or set "
                 "residual.block_size");
    }
    if (m.num_blocks() + 1 > kernels::kMaxSources)
      fail(bs != 0 ? "residual.block_size" : "residual.num_blocks",
           "gives " + str(m.num_blocks()) + " blocks; the depth attention supports at most " +
               str(kernels::kMaxSources - 1) + " (make the blocks larger)");
  }

  if (m.recompute == Recompute::Block && !m.attnres())
    fail("train.recompute", "block recomputes one AttnRes block at a time; the standard residual has no "
                            "blocks (use full or selective, or residual.mode: attnres)");

  TrainConfig& t = cfg.train;
  require_positive("train.steps", t.steps);
  require_positive("train.micro_batch_size", t.micro_batch_size);
  check_microbatch(m, t.micro_batch_size, "train.micro_batch_size");
  require_positive("train.grad_accum", t.grad_accum);
  require_non_negative("train.lr", t.lr);
  require_non_negative("train.min_lr", t.min_lr);
  if (t.min_lr > t.lr)
    fail("train.min_lr", str(t.min_lr) + " exceeds train.lr (" + str(t.lr) + ")");
  require_non_negative("train.warmup_steps", t.warmup_steps);
  require_non_negative("train.weight_decay", t.weight_decay);
  require_unit("train.beta1", t.beta1);
  require_unit("train.beta2", t.beta2);
  require_positive("train.adam_eps", t.adam_eps);
  require_non_negative("train.grad_clip", t.grad_clip);
  require_non_negative("train.eval_every", t.eval_every);
  require_positive("train.eval_batches", t.eval_batches);
  require_positive("train.log_every", t.log_every);
  require_non_negative("train.threads", t.threads);
  if (t.threads > kMaxThreads) fail("train.threads", str(t.threads) + " exceeds " + str(kMaxThreads) + ", the most this runtime accepts");
  require_non_negative("train.watchdog_timeout", t.watchdog_timeout);
  if (t.device != "cpu" && t.device != "cuda")
    fail("train.device", "'" + t.device + "' is not a device (expected cpu or cuda)");
  if (t.tf32 && (t.device != "cuda" || m.bf16()))
    fail("train.tf32", "TF32 is for the fp32 GEMMs of a CUDA run (train.device: cuda, train.precision: fp32); this "
                       "run is " + t.device + ", " + kernels::dtype_name(m.precision));
  if (t.on_nonfinite != "stop" && t.on_nonfinite != "skip")
    fail("train.on_nonfinite", "'" + t.on_nonfinite + "' is not a policy (expected stop or skip)");
  require_non_negative("train.max_skipped_steps", t.max_skipped_steps);
  if (t.zero != 0 && t.zero != 1)
    fail("train.zero", str(t.zero) + " is not a ZeRO stage this runtime has (expected 0, or 1: shard the "
                       "optimizer state over parallel.dp)");

  // auto: flash on a GPU, where the probabilities would not fit at length;
  // materialized on the CPU, whose sgemm tiles are faster.
  if (cfg.attention != "auto" && cfg.attention != "flash" && cfg.attention != "materialized")
    fail("model.attention", "'" + cfg.attention + "' is not an attention (expected auto, flash or materialized)");
  m.attention = cfg.attention == "flash" || (cfg.attention == "auto" && t.device == "cuda") ? Attention::Flash
                                                                                              : Attention::Materialized;
  if (m.flash() && m.head_dim() > kernels::kMaxHeadDim)
    fail("model.attention", "flash attention keeps a head's row in registers: model.d_model / model.n_heads = " +
                                str(m.head_dim()) + " exceeds " + str(kernels::kMaxHeadDim) +
                                " (use materialized, or more heads)");

  if (cfg.data.dir.empty()) fail("data.dir", "must not be empty");

  ParallelConfig& p = cfg.parallel;
  require_positive("parallel.dp", p.dp);
  require_positive("parallel.pp", p.pp);
  require_positive("parallel.tp", p.tp);
  if (const int64_t ranks = int64_t(p.dp) * p.pp * p.tp; ranks > kMaxRanks)
    fail("parallel.dp", "parallel.dp x parallel.pp x parallel.tp = " + str(ranks) + " ranks exceed " + str(kMaxRanks) +
                            ", the most this runtime accepts");
  // Megatron's splits need whole heads, rows of F and vocabulary rows per tp rank.
  if (m.n_heads % p.tp != 0)
    fail("parallel.tp", str(p.tp) + " does not divide model.n_heads (" + str(m.n_heads) +
                            "); q, k and v are split by whole heads");
  if (m.d_ff % p.tp != 0)
    fail("parallel.tp", str(p.tp) + " does not divide model.d_ff (" + str(m.d_ff) +
                            "); gate and up are split by rows of d_ff");
  if (m.vocab_size % p.tp != 0)
    fail("parallel.tp", str(p.tp) + " does not divide model.vocab_size (" + str(m.vocab_size) +
                            "); the embedding and LM head are split by vocabulary rows (pad "
                            "model.vocab_size to a multiple of parallel.tp: the extra rows stay unused)");
  if (p.sequence_parallel && p.tp == 1)
    fail("parallel.sequence_parallel", "needs parallel.tp > 1: it shards the residual region over the tp ranks");
  if (p.sequence_parallel && m.seq_len % p.tp != 0)
    fail("parallel.sequence_parallel", "model.seq_len (" + str(m.seq_len) +
                                           ") is not divisible by parallel.tp (" + str(p.tp) +
                                           "); each tp rank holds seq_len / tp tokens of a sequence");
  if (p.schedule != "gpipe" && p.schedule != "1f1b" && p.schedule != "eager-1f1b" && p.schedule != "interleaved" &&
      p.schedule != "zb-h1")
    fail("parallel.schedule",
         "'" + p.schedule + "' is not a schedule (expected gpipe, 1f1b, eager-1f1b, interleaved or zb-h1)");
  if (p.hop_dtype != "auto" && p.hop_dtype != "fp32" && p.hop_dtype != "bf16")
    fail("parallel.hop_dtype", "'" + p.hop_dtype + "' is not a hop element type (expected auto, fp32 or bf16)");
  if (p.hop_dtype == "bf16" && !m.bf16())
    fail("parallel.hop_dtype", "bf16 hops need train.precision: bf16; an fp32 stream rounded at the hops only "
                               "would make a pipelined run differ from one process (use auto or fp32)");
  m.hop_dtype = p.hop_dtype == "bf16" || (p.hop_dtype == "auto" && m.bf16()) ? kernels::DType::BF16 : kernels::DType::F32;
  require_positive("parallel.sends_in_flight", p.sends_in_flight);
  m.sends_in_flight = p.sends_in_flight;
  if (p.cached_grads != "exact" && p.cached_grads != "local")
    fail("parallel.cached_grads", "'" + p.cached_grads + "' is not a way to sum cached gradients (expected exact or local)");
  require_positive("parallel.virtual_stages", p.virtual_stages);
  if (p.schedule == "interleaved" && p.virtual_stages < 2)
    fail("parallel.virtual_stages",
         str(p.virtual_stages) + ": the interleaved schedule needs virtual_stages >= 2");
  if (p.schedule != "interleaved" && p.virtual_stages != 1)
    fail("parallel.virtual_stages", str(p.virtual_stages) + ": only the interleaved schedule "
                                    "runs more than one chunk per rank (schedule is " +
                                        p.schedule + ")");
  if (const int64_t chunks = int64_t(p.pp) * p.virtual_stages; chunks > L)
    fail("parallel.pp", "parallel.pp * parallel.virtual_stages = " +
                            str(chunks) + " chunks exceed the L = " + str(L) +
                            " sublayers (every chunk needs at least one)");
  if (t.grad_accum % p.dp != 0)
    fail("train.grad_accum", str(t.grad_accum) + " is not divisible by parallel.dp (" +
                                 str(p.dp) + "); the dp ranks split the microbatches");
  if (t.eval_every > 0 && t.eval_batches < p.dp)
    fail("train.eval_batches", str(t.eval_batches) + " validation microbatches are fewer than the parallel.dp = " +
                                   str(p.dp) + " replicas that share them; raise train.eval_batches (or set "
                                   "train.eval_every: 0)");
  require_non_negative("parallel.microbatches", p.microbatches);
  if (p.microbatches != 0 && p.microbatches != t.grad_accum / p.dp)
    fail("parallel.microbatches",
         str(p.microbatches) + " must equal train.grad_accum / parallel.dp = " +
             str(t.grad_accum / p.dp) + " (or be omitted)");
  try {  // the layout; its message names the parallel.* key at fault
    make_partition(m, p.pp, p.virtual_stages, p.layout);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(e.what(), "parallel.layout");  // pp and virtual_stages were checked above
  }

  CheckpointConfig& c = cfg.checkpoint;
  require_non_negative("checkpoint.every", c.every);
  if (c.every > 0 && c.dir.empty())
    fail("checkpoint.every", str(c.every) + " needs checkpoint.dir to be set");
  require_positive("checkpoint.keep_last", c.keep_last);
}

Config parse_config(const std::string& yaml_text, const std::string& source,
                    const std::vector<std::string>& overrides) {
  reject_unclosed_quotes(yaml_text, source);
  YAML::Node root;
  try {
    root = one_document(yaml_text, source);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(source + ":" + std::to_string(e.mark.line + 1) + ":" +
                      std::to_string(e.mark.column + 1) + ": YAML syntax error: " + e.msg);
  }
  std::map<std::string, RawValue> raw = flatten(root, source);

  for (const std::string& ov : overrides) {
    const std::string origin = "--set " + ov;
    const auto eq = ov.find('=');
    if (eq == std::string::npos)
      throw ConfigError(origin + ": expected key=value (e.g. train.lr=3e-4)");
    const std::string key = ov.substr(0, eq);
    if (!is_known_key(key)) throw ConfigError(origin + ": " + key + ": unknown key");
    YAML::Node value;
    reject_unclosed_quotes(ov.substr(eq + 1), origin);
    try {
      value = one_document(ov.substr(eq + 1), origin);
    } catch (const YAML::ParserException& e) {
      throw ConfigError(origin + ": " + key + ": value is not a YAML scalar: " + e.msg);
    }
    raw[key] = RawValue{value, origin};
    // block_size and num_blocks are two spellings of one setting: the later replaces the earlier.
    if (key == "residual.block_size") raw.erase("residual.num_blocks");
    if (key == "residual.num_blocks") raw.erase("residual.block_size");
  }

  Config cfg;
  visit_fields(cfg, [&](const char* key, auto& field) {
    auto it = raw.find(key);
    if (it == raw.end()) return;
    Assign{it->second, it->first}(field);
  });
  // Given explicitly, 0 would read as "unset"; reject it here where we know.
  for (const char* key : {"residual.block_size", "residual.num_blocks"}) {
    auto it = raw.find(key);
    if (it != raw.end() && it->second.node.as<int>() < 1)
      throw ConfigError(it->second.origin + ": " + key + ": " + it->second.node.Scalar() +
                        " must be >= 1");
  }
  try {
    validate_config(cfg);
  } catch (const ConfigError& e) {
    // Blame where the key was set: its line in the file, or its --set.
    const auto it = raw.find(e.key);
    throw ConfigError((it != raw.end() ? it->second.origin : source) + ": " + e.what(), e.key);
  }
  return cfg;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw ConfigError(path + ": is a directory, not a config file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot open config file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError(path + ": cannot read config file");
  return parse_config(text.str(), path, overrides);
}

std::string config_to_yaml(const Config& cfg) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::string section;
  visit_fields(cfg, [&](const char* key, const auto& field) {
    using T = std::decay_t<decltype(field)>;
    const std::string k(key);
    const std::string sec = k.substr(0, k.find('.'));
    // residual.* block keys as written; 0 = not given.
    if constexpr (std::is_same_v<T, int>)
      if ((k == "residual.block_size" || k == "residual.num_blocks") && field == 0) return;
    if (sec != section) {
      if (!section.empty()) out << YAML::EndMap;
      section = sec;
      out << YAML::Key << sec << YAML::Value << YAML::BeginMap;
    }
    out << YAML::Key << k.substr(sec.size() + 1) << YAML::Value;
    if constexpr (std::is_same_v<T, std::string>) out << YAML::DoubleQuoted << field;
    else if constexpr (std::is_same_v<T, ResidualMode>) out << residual_mode_name(field);
    else if constexpr (std::is_same_v<T, Recompute>) out << recompute_name(field);
    else if constexpr (std::is_same_v<T, kernels::DType>) out << kernels::dtype_name(field);
    else if constexpr (std::is_same_v<T, float>) out << fmt_float(field);
    else out << field;
  });
  out << YAML::EndMap << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace attnres
