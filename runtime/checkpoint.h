// Checkpoints (docs/CHECKPOINT.md): one directory per step holding a JSON
// manifest and one shard file per writing rank; committed atomically (temp
// directory, fsync, rename, COMMITTED marker); saved synchronously or from a
// background thread; loaded into any dp × pp layout by global tensor name.
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "models/chunk.h"
#include "parallel/communicator.h"
#include "parallel/partition.h"
#include "parallel/topology.h"
#include "runtime/config.h"
#include "runtime/optimizer.h"

namespace attnres {

constexpr int kCheckpointFormatVersion = 1;
constexpr const char* kCheckpointMarker = "COMMITTED";

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
// Complete checkpoints (step_<8 digits> directories holding COMMITTED) in
// `dir`, newest first. A missing `dir` has none.
std::vector<std::string> list_complete_checkpoints(const std::string& dir);

// Reads and validates <ckpt>/manifest.json. Throws CheckpointError naming the
// file and the problem (unreadable, not JSON, another format version, a
// missing or malformed field).
Manifest read_manifest(const std::string& ckpt);
// The run config stored in the manifest.
Config manifest_config(const Manifest& m, const std::string& ckpt);
// Throws CheckpointError naming the first model.* / residual.* key whose
// value differs between the checkpoint's config and `cfg`.
void check_model_matches(const Manifest& m, const Config& cfg, const std::string& ckpt);
// Reads one record's bytes from its shard file and verifies length and
// checksum. Throws CheckpointError naming the file and tensor.
std::vector<float> read_tensor(const std::string& ckpt, const TensorRecord& r);
// The full model's parameters in global order (make_param_layout of the whole
// model), read and verified from a checkpoint.
std::vector<float> read_full_params(const std::string& ckpt, const Manifest& m, const ModelConfig& model);

// This rank's part of a training run, as the checkpointer sees it.
struct TrainState {
  const Config* cfg;
  const Topology* topo;
  const Partition* part;
  Communicator* world;          // every rank
  std::vector<Chunk>* chunks;   // local chunks, chunk order
  std::vector<AdamW>* adam;     // one per local chunk
};

// Saves and loads checkpoints of one run. Every method is collective: all
// ranks call it at the same point. MPI is only ever called from the calling
// (main) thread; an async save's background thread only writes and fsyncs
// this rank's shard, and the main thread commits it later.
class Checkpointer {
 public:
  explicit Checkpointer(TrainState s);
  ~Checkpointer();  // joins a running writer (without committing) and pruner
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // spec "" = start fresh; "auto" = the newest complete checkpoint in
  // checkpoint.dir that loads, falling back to older ones (each rejection
  // is reported on stderr), or fresh if there are none; otherwise the path of
  // one checkpoint, which must load. Restores parameters, AdamW state and
  // step. Returns the optimizer steps already done (0 when fresh).
  int resume(const std::string& spec);

  // At the end of step `step` (1-based): commits a finished async write, and
  // saves when checkpoint.every divides step or step == train.steps. When it
  // does either, rank 0 logs the time the training thread spent in it.
  void after_step(int step);
  // Waits for and commits a pending async write (call before returning).
  void finish();

 private:
  struct Pending;
  void start_save(int step);
  void commit();
  TrainState s_;
  std::unique_ptr<Pending> pending_;
  // Async: host copies of params, m, v per local chunk, reused by every save
  // (a save starts only after the previous one committed).
  std::vector<std::vector<float>> snapshot_;
  // Async, rank 0: deletes checkpoints beyond keep_last off the training thread.
  std::thread pruner_;
};

}  // namespace attnres
