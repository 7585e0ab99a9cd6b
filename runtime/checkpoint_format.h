// The checkpoint format (docs/CHECKPOINT.md): directory names, the JSON
// manifest and the shard files (raw F32 tensors, each with its XXH64), how
// they are encoded and how they are validated when read back.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "models/params.h"
#include "parallel/partition.h"
#include "runtime/config.h"

namespace attnres {

constexpr int kCheckpointFormatVersion = 1;
constexpr const char* kCheckpointMarker = "COMMITTED";
constexpr const char* kCheckpointTmpPrefix = ".tmp_step_";  // + step: a write in progress

// A checkpoint that cannot be written or loaded; what() names the file or tensor.
struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What a record holds: the parameter itself or one of its AdamW moments.
enum class TensorKind { Param, AdamM, AdamV };
const char* tensor_kind_name(TensorKind k);  // "param", "adam_m", "adam_v"

// One tensor (or, once tp exists, one shard of it) in one shard file.
struct TensorRecord {
  std::string name;  // global name (DESIGN §1.2)
  TensorKind kind = TensorKind::Param;
  std::string dtype = "F32";
  std::vector<int64_t> shape;         // global shape
  std::vector<int64_t> shard_offset;  // start of this shard in the global tensor
  std::vector<int64_t> shard_extent;  // its extent (== shape: the whole tensor)
  std::string file;                   // shard file, relative to the checkpoint directory
  uint64_t byte_offset = 0, nbytes = 0;
  uint64_t xxh64 = 0;                 // XXH64 (seed 0) of the nbytes bytes
};

struct CheckpointLayout {
  int dp = 1, pp = 1, tp = 1, virtual_stages = 1;
  std::string schedule;
  std::vector<ChunkRange> chunks;
};

struct Manifest {
  int format_version = kCheckpointFormatVersion;
  // The run that wrote it: a checkpoint.dir holds one run's checkpoints
  // (docs/CHECKPOINT.md). "" in checkpoints written before run ids existed.
  std::string run_id;
  std::string config_yaml;     // the whole run config (config_to_yaml)
  int step = 0;                // optimizer steps done
  uint64_t tokens_seen = 0;
  uint64_t next_sequence = 0;  // data loader: global index of the next training sequence
  uint64_t seed = 0;           // RNG: train.seed; the sampler is counter-based, its
                               // counter is next_sequence
  int optimizer_step = 0;      // AdamW t
  CheckpointLayout layout;
  std::vector<TensorRecord> tensors;
};

// "step_00000012".
std::string checkpoint_dir_name(int step);
// True (and `step` set) for "step_" followed by exactly 8 digits.
bool parse_checkpoint_dir_name(const std::string& name, int& step);
// Complete checkpoints (step_<8 digits> directories holding COMMITTED) in
// `dir`, newest first. A missing `dir` has none.
std::vector<std::string> list_complete_checkpoints(const std::string& dir);

// The text of manifest.json. Records are written in the order given.
std::string manifest_text(const Manifest& m);
// Tensor records as JSON text and back, as ranks send them to the committing
// rank. Parsing validates each record; errors name `where`.
std::string records_text(const std::vector<TensorRecord>& records);
std::vector<TensorRecord> parse_records(const std::string& text, const std::string& where);

// Reads and validates <ckpt>/manifest.json. Throws CheckpointError naming the
// file and the problem (unreadable, not JSON, another format version, a
// missing or malformed field).
Manifest read_manifest(const std::string& ckpt);
// The run config stored in the manifest.
Config manifest_config(const Manifest& m, const std::string& ckpt);
// Throws CheckpointError naming the first model.* / residual.* key whose
// value differs between the checkpoint's config and `cfg`.
void check_model_matches(const Manifest& m, const Config& cfg, const std::string& ckpt);

// What a manifest must say of itself to be loaded, checked alike by resume
// and `checkpoint inspect`: a step matching its step_<N> directory name, a
// non-negative optimizer step, and a data position (next_sequence,
// tokens_seen) that follows from the step and its own config. Throws
// CheckpointError naming the field.
void check_manifest(const Manifest& m, const std::string& ckpt);

// One tensor of a shard to write: its record (name, kind, shape, shard
// fields; write_shard fills the rest) and its host data.
struct ShardItem {
  TensorRecord rec;
  const float* data;
};
// Writes `dir`/`file` durably (runtime/durable_file.h), the items one after
// another, and returns their completed records. `after_each(i)` runs once item
// i is written (fault points, heartbeats). Throws std::runtime_error naming
// the file.
std::vector<TensorRecord> write_shard(const std::string& dir, const std::string& file,
                                      std::vector<ShardItem> items,
                                      const std::function<void(size_t)>& after_each);
// Reads one record's bytes from its shard file and verifies length and
// checksum. Throws CheckpointError naming the file and tensor.
std::vector<float> read_tensor(const std::string& ckpt, const TensorRecord& r);
// A manifest's records by (name, kind): the tensor's shards (one record when
// it was written whole).
using RecordIndex = std::map<std::pair<std::string, TensorKind>, std::vector<const TensorRecord*>>;
RecordIndex index_records(const Manifest& m);
// The part of tensor `spec` of `kind` that `spec` describes (a tensor-parallel
// shard, or all of it), read from whatever shards the writer's layout stored:
// the records are put together into the global tensor and verified to cover
// it exactly once, so any tp loads what any tp wrote. Throws CheckpointError
// if it is missing, has another global shape, or its shards do not tile it.
std::vector<float> read_tensor_part(const std::string& ckpt, const RecordIndex& idx, const TensorSpec& spec,
                                    TensorKind kind);
// The full model's parameters in global order (make_param_layout of the whole
// model), read and verified from a checkpoint.
std::vector<float> read_full_params(const std::string& ckpt, const Manifest& m, const ModelConfig& model);

}  // namespace attnres
