// The checkpointer (docs/CHECKPOINT.md): saves a run's state as one directory
// per step holding a JSON manifest and one shard file per writing rank
// (runtime/checkpoint_format.h), committed atomically (temp directory, fsync,
// rename, COMMITTED marker), synchronously or from a background thread; loads
// it into any dp × pp layout by global tensor name; prunes old ones.
#pragma once
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "models/chunk.h"
#include "parallel/communicator.h"
#include "parallel/partition.h"
#include "parallel/data_parallel.h"
#include "parallel/topology.h"
#include "runtime/checkpoint_format.h"
#include "runtime/config.h"
#include "runtime/optimizer.h"

namespace attnres {

// This rank's part of a training run, as the checkpointer sees it.
struct TrainState {
  const Config* cfg;
  const Topology* topo;
  const Partition* part;
  Communicator* world;          // every rank
  std::vector<Chunk>* chunks;   // local chunks, chunk order
  std::vector<AdamW>* adam;     // one per local chunk
  // ZeRO-1 with dp > 1: the dp group, over which the optimizer's state is
  // in parts (each AdamW holds its rank's); null when every rank holds all of it.
  Communicator* data = nullptr;
};

// Saves and loads checkpoints of one run. Every method is collective: all
// ranks call it at the same point. MPI is only ever called from the calling
// (main) thread; an async save's background thread only writes and fsyncs
// this rank's shard, and the main thread commits it later.
class Checkpointer {
 public:
  // Collective. With checkpoint.dir set, rank 0 creates it and locks it for
  // this run; CheckpointError on every rank if another run holds it (naming
  // that run) or it cannot be created.
  explicit Checkpointer(TrainState s);
  ~Checkpointer();  // joins a running writer (without committing) and pruner; unlocks
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // spec "" = start fresh; "auto" = the newest complete checkpoint in
  // checkpoint.dir that loads, falling back to older ones (each rejection
  // is reported on stderr), or fresh if there are none; otherwise the path of
  // one checkpoint, which must load. Restores parameters, AdamW state and
  // step. Returns the optimizer steps already done (0 when fresh).
  // checkpoint.dir then belongs to this run (a fresh one gets a new id, a
  // resumed one keeps its checkpoint's): CheckpointError if it holds another
  // run's checkpoints, unless `new_run`, which moves them to
  // <dir>/previous_runs/<their run id>/ (docs/CHECKPOINT.md).
  int resume(const std::string& spec, bool new_run = false);

  // At the end of step `step` (1-based): commits a finished async write, and
  // saves when checkpoint.every divides step or step == train.steps. When it
  // does either, rank 0 logs the time the training thread spent in it, and
  // it returns true.
  bool after_step(int step);
  // Saves step `step` now, even when not due, and commits it before
  // returning: the process is about to exit (save on signal). Does nothing
  // without checkpoint.dir.
  void save_now(int step);
  // Waits for and commits a pending async write (call before returning).
  void finish();

 private:
  struct Pending;
  int load(const std::string& spec);
  void start_save(int step);
  void commit();
  void snapshot_to_host();
  void gather_optimizer();
  float* snapshot_of(size_t chunk, TensorKind k);
  TrainState s_;
  std::string run_id_;  // written into every manifest
  std::unique_ptr<Pending> pending_;
  // Host copies of params, m, v per local chunk (3 per chunk), taken at the
  // step boundary and written from; reused by every save (a save starts only
  // after the previous one committed). Page-locked on CUDA, so the device
  // copies into them at full speed.
  std::vector<kernels::PinnedBuffer<float>> snapshot_;
  // Async, rank 0: deletes checkpoints beyond keep_last off the training thread.
  std::thread pruner_;
  // Rank 0: the open, flock'ed checkpoint.dir/LOCK (-1 = none), held for the
  // Checkpointer's life, so two runs cannot share one directory.
  int lock_fd_ = -1;
};

}  // namespace attnres
