// The whole run configuration: YAML file + --set overrides, validated.
// Every key is documented in docs/CONFIG.md.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/model_config.h"

namespace attnres {

struct TrainConfig {
  int steps = 100;
  int micro_batch_size = 4;   // sequences per microbatch
  int grad_accum = 1;         // microbatches per optimizer step (global)
  float lr = 1e-3f;           // peak learning rate
  float min_lr = 1e-4f;       // floor of the cosine decay
  int warmup_steps = 10;
  float weight_decay = 0.1f;
  float beta1 = 0.9f, beta2 = 0.95f, adam_eps = 1e-8f;
  float grad_clip = 1.0f;     // global grad-norm clip; 0 disables
  int eval_every = 50;        // validation every K steps (and at the last step); 0 = never
  int eval_batches = 8;       // microbatches of validation data per evaluation
  int log_every = 1;
  unsigned long long seed = 1234;
  int threads = 0;            // OpenMP + OpenBLAS threads; 0 = cores / ranks on the node
  int watchdog_timeout = 600; // seconds without progress before a rank aborts; 0 = off
  std::string device = "cpu";          // cpu | cuda (one rank per GPU; docs/CUDA.md)
  bool tf32 = false;                   // cuda, fp32: GEMMs on TF32 tensor cores (fp32 accumulation)
  std::string on_nonfinite = "stop";  // a NaN/Inf loss or grad norm: stop the run | skip the update
  int max_skipped_steps = 5;          // under skip: consecutive skipped steps before the run stops
  int zero = 0;  // 1: ZeRO-1, AdamW moments and the update sharded over parallel.dp (DESIGN §8)
};

struct DataConfig {
  std::string dir = "data/pystdlib";  // holds train.bin and val.bin
};

struct ParallelConfig {
  int dp = 1, pp = 1, tp = 1;
  std::string schedule = "1f1b";  // gpipe | 1f1b | interleaved | zb-h1
  int virtual_stages = 1;
  int microbatches = 0;           // 0 = derived (grad_accum / dp); else must equal it
  std::string layout;             // explicit partition; empty = balanced on block boundaries
  bool cross_stage_cache = true;  // only meaningful for interleaved
  // Under caching, how cached sources' gradients are summed: exact = their
  // running sums travel back on every hop (pp = 1 bit for bit); local = they
  // sum on the rank and skip the hops they skipped forward (fewer bytes).
  std::string cached_grads = "exact";  // exact | local
  bool sequence_parallel = false; // tp > 1: shard the residual region by tokens (DESIGN §6)
  // Element type of the hop payloads: auto = the training precision. A bf16
  // run's stream holds bf16 values, so bf16 hops move them exactly.
  std::string hop_dtype = "auto";  // auto | fp32 | bf16
  int sends_in_flight = 2;         // per chunk and direction; each holds a staging buffer

  // Which hop payloads leave out what the receiving rank holds (hop_payload.h).
  bool caches_forward() const { return cross_stage_cache && virtual_stages >= 2; }
  bool caches_backward() const { return caches_forward() && cached_grads == "local"; }
};

struct CheckpointConfig {
  std::string dir;  // empty = no checkpoints
  int every = 0;
  int keep_last = 3;
  bool async = false;
};

struct Config {
  ModelConfig model;
  // The residual keys as written: exactly one of block_size / num_blocks may
  // be set (0 = unset); model.block_size holds the resolved S.
  int residual_block_size = 0;
  int residual_num_blocks = 0;
  std::string attention = "auto";  // model.attention: auto | flash | materialized; resolved into model.attention
  TrainConfig train;
  DataConfig data;
  ParallelConfig parallel;
  CheckpointConfig checkpoint;
};

// Thrown for any bad input; what() names the file/key/value and what was expected.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
  ConfigError(const std::string& what, std::string key_) : std::runtime_error(what), key(std::move(key_)) {}
  std::string key;  // the key a range or combination error is about ("" if none)
};

// Limits of one microbatch (train.micro_batch_size, eval --batch) that keep
// every size derived from it within its type: its tokens are int row counts,
// and its attention probabilities, times sublayers and live microbatches in a
// memory plan, must stay far below 2^64 bytes.
constexpr int64_t kMaxMicrobatchTokens = int64_t(1) << 24;
constexpr int64_t kMaxAttentionFloats = int64_t(1) << 40;  // batch x n_heads x seq_len^2
// OpenMP and OpenBLAS threads of a process (train.threads, eval and
// generate --threads): more only oversubscribes the cores.
constexpr int kMaxThreads = 4096;
// Ranks of a run (parallel.dp x pp x tp): a world size that fits an int.
constexpr int64_t kMaxRanks = int64_t(1) << 20;

// Throws ConfigError naming `key` when `batch` sequences of the (validated)
// model exceed a microbatch limit above.
void check_microbatch(const ModelConfig& m, int64_t batch, const std::string& key);

// Loads a YAML file, applies "key=value" overrides (dotted keys, YAML-typed
// values), validates, and resolves derived fields. Throws ConfigError.
Config load_config(const std::string& path, const std::vector<std::string>& overrides);
// Same, from YAML text (tests; `source` names it in messages).
Config parse_config(const std::string& yaml_text, const std::string& source,
                    const std::vector<std::string>& overrides);
// Checks ranges and combinations; throws ConfigError naming the key.
void validate_config(Config& cfg);
// The config as YAML text (round-trips through parse_config).
std::string config_to_yaml(const Config& cfg);

}  // namespace attnres
