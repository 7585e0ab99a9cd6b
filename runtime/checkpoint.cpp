#include "runtime/checkpoint.h"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "kernels/memory.h"
#include "runtime/durable_file.h"
#include "runtime/fault_injection.h"
#include "runtime/optimizer.h"
#include "runtime/watchdog.h"

namespace attnres {

namespace fs = std::filesystem;

namespace {

// A resumed run follows its own config's learning-rate schedule (so a run can
// be extended); when that is not the checkpoint's, say what changed and what
// the learning rate of the next step becomes.
std::string describe_schedule_change(const TrainConfig& saved, const TrainConfig& now, int step) {
  std::string changed;
  auto diff = [&](const char* key, const std::string& a, const std::string& b) {
    if (a != b) changed += std::string(changed.empty() ? "" : ", ") + key + " " + a + " -> " + b;
  };
  auto num = [](double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", x);
    return std::string(buf);
  };
  diff("train.steps", std::to_string(saved.steps), std::to_string(now.steps));
  diff("train.warmup_steps", std::to_string(saved.warmup_steps), std::to_string(now.warmup_steps));
  diff("train.lr", num(saved.lr), num(now.lr));
  diff("train.min_lr", num(saved.min_lr), num(now.min_lr));
  if (changed.empty()) return "";
  if (step >= now.steps)  // resumed at train.steps: no step is left to take a learning rate
    return "the learning-rate schedule changed (" + changed + "); no step is left to train";
  char was[64], buf[192];
  if (step < saved.steps) std::snprintf(was, sizeof was, "the checkpoint's schedule: %.3g", double(lr_at(saved, step)));
  else std::snprintf(was, sizeof was, "the checkpoint's schedule ended at step %d", saved.steps);
  std::snprintf(buf, sizeof buf, ": the learning rate of step %d is %.3g (%s); this run's schedule applies from here",
                step + 1, double(lr_at(now, step)), was);
  return "the learning-rate schedule changed (" + changed + ")" + buf;
}

// Deletes complete checkpoints beyond the newest `keep` (never `just_written`),
// superseded copies (step_<N>.superseded*) of steps older than every kept
// one, and temporary directories of crashed writes of steps up to `step`
// (later steps may be this run's next write). A failure is reported, not thrown: the
// new checkpoint is committed either way.
void prune(const std::string& dir, int keep, const std::string& just_written, int step) {
  try {
    const std::vector<std::string> complete = list_complete_checkpoints(dir);
    for (size_t i = size_t(keep); i < complete.size(); ++i)
      if (fs::path(complete[i]) != fs::path(just_written)) fs::remove_all(complete[i]);
    // The oldest step kept: superseded copies of older steps go with them.
    int oldest = step;
    for (size_t i = 0; i < complete.size() && i < size_t(keep); ++i)
      parse_checkpoint_dir_name(fs::path(complete[i]).filename().string(), oldest);
    const std::string prefix = kCheckpointTmpPrefix;
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      int superseded = 0;
      if (name.rfind(prefix, 0) == 0 && name.size() > prefix.size() &&
          name.find_first_not_of("0123456789", prefix.size()) == std::string::npos &&
          std::stoll(name.substr(prefix.size())) <= step)
        fs::remove_all(e.path());
      else if (const size_t dot = name.find(".superseded"); dot != std::string::npos &&
               parse_checkpoint_dir_name(name.substr(0, dot), superseded) && superseded < oldest)
        fs::remove_all(e.path());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "checkpoint: pruning %s failed: %s\n", dir.c_str(), e.what());
  }
}

// A new run's id: 16 hex digits of the system's entropy.
std::string new_run_id() {
  std::random_device rd;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08x%08x", unsigned(rd()), unsigned(rd()));
  return buf;
}

std::string run_name(const std::string& id) { return id.empty() ? "unknown (written before run ids)" : id; }

// The run id of each complete checkpoint in `ckpts` whose manifest reads (one
// that does not is never loaded, and resume says why).
std::vector<std::pair<std::string, std::string>> runs_of(const std::vector<std::string>& ckpts) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const std::string& c : ckpts) {
    try {
      out.emplace_back(c, read_manifest(c).run_id);
    } catch (const CheckpointError&) {
    }
  }
  return out;
}

// --resume auto continues one run: checkpoints of several (a directory shared
// before run ids existed) are not guessed between.
void require_one_run(const std::string& dir, const std::vector<std::string>& ckpts) {
  std::map<std::string, std::string> newest;  // run -> its newest checkpoint (ckpts are newest first)
  for (const auto& [c, id] : runs_of(ckpts)) newest.emplace(id, c);
  if (newest.size() < 2) return;
  std::string runs;
  for (const auto& [id, c] : newest) runs += (runs.empty() ? "" : "; ") + ("run " + run_name(id) + ", newest " + c);
  throw CheckpointError("checkpoint.dir " + dir + " holds checkpoints of " +
                        std::to_string(newest.size()) + " runs (" + runs +
                        "); give the checkpoint to continue with --resume DIR/step_N");
}

// A checkpoint.dir holds one run's checkpoints: with another run's beside
// them, keep_last would prune this run's and --resume auto pick theirs. They
// stop the run, or with --new-run move to <dir>/previous_runs/<run id>/,
// where they are kept and never resumed or pruned.
void claim_checkpoint_dir(const std::string& dir, const std::string& run_id, bool new_run) {
  std::vector<std::pair<std::string, std::string>> others;
  for (auto& [c, id] : runs_of(list_complete_checkpoints(dir)))
    if (id != run_id) others.emplace_back(c, id);
  if (others.empty()) return;
  const fs::path aside = fs::path(dir) / "previous_runs";
  if (!new_run)
    throw CheckpointError("checkpoint.dir " + dir + " holds " + std::to_string(others.size()) +
                          " checkpoint(s) of another run (run " + run_name(others.front().second) + ", newest " +
                          others.front().first + "); continue that run with --resume auto, or start a new run "
                          "here with --new-run (which moves them to " + aside.string() + "/)");
  for (const auto& [c, id] : others) {
    const fs::path to = aside / (id.empty() ? "unknown" : id) / fs::path(c).filename();
    if (fs::exists(to)) throw CheckpointError("cannot move " + c + " aside: " + to.string() + " exists");
    fs::create_directories(to.parent_path());
    fs::rename(c, to);
    std::printf("checkpoint: --new-run: moved %s of run %s to %s\n", c.c_str(), run_name(id).c_str(), to.c_str());
  }
  fsync_directory(dir);
}

}  // namespace

// --- Checkpointer -------------------------------------------------------------

struct Checkpointer::Pending {
  int step = 0, optimizer_step = 0;  // as of the step boundary (an async commit comes later)
  std::string tmp, final_dir;
  std::vector<TensorRecord> records;         // written by the writer
  std::string error;                         // writer failure
  std::atomic<bool> done{false};
  std::thread thread;
};

namespace {

// Locks dir/LOCK (creating dir) and writes who holds it; returns the open
// descriptor. The kernel drops the lock when the process ends, however it ends.
int lock_checkpoint_dir(const std::string& dir) {
  std::error_code ec;  // named by its key, not as a raw filesystem_error
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    throw CheckpointError("checkpoint.dir " + dir + ": exists and is not a directory");
  if (fs::create_directories(dir, ec); ec)
    throw CheckpointError("checkpoint.dir " + dir + ": cannot create it: " + ec.message());
  const std::string path = dir + "/LOCK";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw CheckpointError(path + ": cannot open: " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int why = errno;
    char holder[256] = {};
    const ssize_t n = ::pread(fd, holder, sizeof holder - 1, 0);
    ::close(fd);
    if (why != EWOULDBLOCK) throw CheckpointError(path + ": cannot lock: " + std::strerror(why));
    std::string h(holder, size_t(std::max<ssize_t>(n, 0)));
    while (!h.empty() && h.back() == '\n') h.pop_back();
    throw CheckpointError("checkpoint.dir " + dir + " is in use by another run (" + (h.empty() ? "unknown" : h) +
                          "); give this run its own checkpoint.dir");
  }
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::string me = "pid " + std::to_string(::getpid()) + " on " + host + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) != ssize_t(me.size())) {
    const int why = errno;
    ::close(fd);
    throw CheckpointError(path + ": cannot write: " + std::strerror(why));
  }
  return fd;
}

}  // namespace

Checkpointer::Checkpointer(TrainState s) : s_(s) {
  const std::string& dir = s_.cfg->checkpoint.dir;
  if (dir.empty()) return;
  const std::string err = error_on_root(*s_.world, 0, [&] { lock_fd_ = lock_checkpoint_dir(dir); });
  if (!err.empty()) throw CheckpointError(err);
}

Checkpointer::~Checkpointer() {
  if (pending_ && pending_->thread.joinable()) pending_->thread.join();
  if (pruner_.joinable()) pruner_.join();
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

namespace {

// Parameters, AdamW m and v of the local chunks, as staged by a load.
struct Staged {
  int step = 0, optimizer_step = 0;
  std::string run_id;
  std::string schedule_change;  // what changed in the learning-rate schedule; "" if nothing
  std::vector<std::vector<float>> params, m, v;  // per local chunk
};

Staged stage_load(const std::string& ckpt, const TrainState& s) {
  if (!fs::exists(ckpt)) throw CheckpointError(ckpt + ": no such checkpoint");
  if (!fs::is_directory(ckpt)) throw CheckpointError(ckpt + ": not a checkpoint directory");
  if (const std::vector<std::string> inside = list_complete_checkpoints(ckpt); !inside.empty())
    throw CheckpointError(ckpt + ": holds checkpoints (it is a checkpoint.dir), it is not one; give one of them, "
                          "e.g. " + inside.front() + ", or --resume auto with checkpoint.dir=" + ckpt);
  if (!fs::exists(fs::path(ckpt) / kCheckpointMarker))
    throw CheckpointError(ckpt + ": no " + std::string(kCheckpointMarker) +
                          " marker (the write did not complete); it is never loaded");
  const Manifest m = read_manifest(ckpt);
  const std::string mpath = ckpt + "/manifest.json";
  check_manifest(m, ckpt);
  check_model_matches(m, *s.cfg, ckpt);
  const TrainConfig& t = s.cfg->train;
  if (m.seed != t.seed)
    throw CheckpointError(mpath + ": train.seed is " + std::to_string(m.seed) + " in the checkpoint but " +
                          std::to_string(t.seed) + " in this run (the data order would differ)");
  const uint64_t expect = uint64_t(m.step) * uint64_t(t.grad_accum) * uint64_t(t.micro_batch_size);
  if (m.next_sequence != expect)
    throw CheckpointError(mpath + ": data.next_sequence is " + std::to_string(m.next_sequence) + " but step " +
                          std::to_string(m.step) + " x train.grad_accum x train.micro_batch_size of this run is " +
                          std::to_string(expect) + " (the global batch changed)");
  const RecordIndex idx = index_records(m);
  Staged st;
  st.step = m.step;
  st.optimizer_step = m.optimizer_step;
  st.run_id = m.run_id;
  st.schedule_change = describe_schedule_change(manifest_config(m, ckpt).train, t, m.step);
  for (const Chunk& c : *s.chunks) {
    std::vector<float>* dst[3] = {&st.params.emplace_back(c.layout.total), &st.m.emplace_back(c.layout.total),
                                  &st.v.emplace_back(c.layout.total)};
    for (const TensorSpec& spec : c.layout.tensors) {
      for (TensorKind k : {TensorKind::Param, TensorKind::AdamM, TensorKind::AdamV}) {
        const std::vector<float> data = read_tensor_part(ckpt, idx, spec, k);
        std::copy(data.begin(), data.end(), dst[int(k)]->begin() + long(spec.offset));
      }
      heartbeat();
    }
  }
  return st;
}

// The manifest of a save: `records` (every writer's) in global tensor order,
// then param, m, v, so that it does not depend on who wrote what.
Manifest make_manifest(const TrainState& s, const std::string& run_id, int step, int optimizer_step,
                       std::vector<TensorRecord> records) {
  const Config& cfg = *s.cfg;
  const ParamLayout full = make_param_layout(cfg.model, 0, cfg.model.num_sublayers());
  auto key = [&](const TensorRecord& r) {
    const TensorSpec* t = full.find(r.name);
    assert(t);
    return std::make_tuple(t - full.tensors.data(), int(r.kind), r.shard_offset);
  };
  std::sort(records.begin(), records.end(), [&](const auto& a, const auto& b) { return key(a) < key(b); });
  const TrainConfig& t = cfg.train;
  Manifest m;
  m.run_id = run_id;
  m.config_yaml = config_to_yaml(cfg);
  m.step = step;
  m.next_sequence = uint64_t(step) * uint64_t(t.grad_accum) * uint64_t(t.micro_batch_size);
  m.tokens_seen = m.next_sequence * uint64_t(cfg.model.seq_len);
  m.seed = t.seed;
  m.optimizer_step = optimizer_step;
  m.layout = {cfg.parallel.dp, cfg.parallel.pp, cfg.parallel.tp, cfg.parallel.virtual_stages,
              cfg.parallel.schedule, s.part->chunks};
  m.tensors = std::move(records);
  return m;
}

// The one host -> device copy of the checkpointer: a staged load into local
// chunk c and its optimizer (under ZeRO-1 the masters and moments of this
// rank's part; the chunk's weights whole).
void restore_from_host(const Staged& st, size_t c, Chunk& ch, AdamW& a) {
  a.load(ch, st.params[c].data());
  kernels::from_host(ch.dev, a.m.data(), st.m[c].data() + a.begin, a.m.size());
  kernels::from_host(ch.dev, a.v.data(), st.v[c].data() + a.begin, a.v.size());
  a.t = st.optimizer_step;
}

}  // namespace

int Checkpointer::resume(const std::string& spec, bool new_run) {
  const int step = load(spec);
  const std::string& dir = s_.cfg->checkpoint.dir;
  if (dir.empty()) return step;
  const std::string err = error_on_root(*s_.world, 0, [&] { claim_checkpoint_dir(dir, run_id_, new_run); });
  if (!err.empty()) throw CheckpointError(err);
  return step;
}

// resume() without the claim: loads and sets run_id_.
int Checkpointer::load(const std::string& spec) {
  Communicator& world = *s_.world;
  run_id_ = broadcast_string(world, world.rank() == 0 ? new_run_id() : "", 0);  // unless a checkpoint loads
  if (spec.empty()) return 0;
  const bool is_auto = spec == "auto";
  const std::string& dir = s_.cfg->checkpoint.dir;
  std::string err, list;
  if (world.rank() == 0) {
    try {
      if (!is_auto) list = spec;
      else if (dir.empty()) err = "--resume auto: checkpoint.dir is not set";
      else {
        const std::vector<std::string> found = list_complete_checkpoints(dir);
        require_one_run(dir, found);
        for (const std::string& p : found) list += p + "\n";
      }
    } catch (const std::exception& e) {  // e.g. an unreadable directory
      err = "--resume auto: " + std::string(e.what());
    }
  }
  err = broadcast_string(world, err, 0);
  if (!err.empty()) throw CheckpointError(err);
  list = broadcast_string(world, list, 0);
  std::vector<std::string> candidates;
  std::istringstream lines(list);
  for (std::string l; std::getline(lines, l);) candidates.push_back(l);
  if (candidates.empty()) {
    if (world.rank() == 0) std::printf("resume: no complete checkpoint in %s; starting fresh\n", dir.c_str());
    return 0;
  }
  for (size_t i = 0; i < candidates.size(); ++i) {
    const std::string& ckpt = candidates[i];
    Staged st;
    std::string mine;
    try {
      st = stage_load(ckpt, s_);
    } catch (const std::exception& e) {
      mine = e.what();
    }
    const std::string why = agree_on_error(world, mine);
    if (why.empty()) {
      for (size_t c = 0; c < s_.chunks->size(); ++c) restore_from_host(st, c, (*s_.chunks)[c], (*s_.adam)[c]);
      run_id_ = st.run_id;
      if (world.rank() == 0) {
        std::printf("resume: loaded %s (step %d)\n", ckpt.c_str(), st.step);
        if (!st.schedule_change.empty()) std::printf("resume: %s\n", st.schedule_change.c_str());
      }
      return st.step;
    }
    if (!is_auto) throw CheckpointError("--resume " + ckpt + ": " + why);
    if (world.rank() == 0) {
      std::fprintf(stderr, "resume: rejected %s: %s\n", ckpt.c_str(), why.c_str());
      if (i + 1 < candidates.size())
        std::fprintf(stderr, "resume: falling back to the previous complete checkpoint %s\n", candidates[i + 1].c_str());
    }
  }
  throw CheckpointError("--resume auto: none of the " + std::to_string(candidates.size()) +
                        " complete checkpoints in " + dir +
                        " loads (reasons above); not starting fresh beside them");
}

bool Checkpointer::after_step(int step) {
  const CheckpointConfig& cc = s_.cfg->checkpoint;
  if (cc.every <= 0) return false;
  const auto t0 = std::chrono::steady_clock::now();
  const bool due = step % cc.every == 0 || step == s_.cfg->train.steps;
  bool acted = due;
  if (pending_ && !due) {
    // Commit as soon as every rank's writer is done; all ranks see the same sum.
    double busy = pending_->done ? 0.0 : 1.0;
    s_.world->allreduce_sum(&busy, 1);
    if (busy == 0.0) commit(), acted = true;
  }
  if (due) {
    if (pending_) commit();  // a new checkpoint waits for the previous one
    start_save(step);
  }
  if (acted && s_.world->rank() == 0)
    std::printf("checkpoint: step %d: %.2f ms on the training thread (%s)\n", step,
                1e3 * std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                cc.async ? "async" : "sync");
  return acted;
}

void Checkpointer::save_now(int step) {
  if (s_.cfg->checkpoint.dir.empty()) return;
  if (pending_ && pending_->step != step) commit();
  if (!pending_) start_save(step);
  if (pending_) commit();  // a sync save has committed already
}

void Checkpointer::finish() {
  if (pending_) commit();
  if (pruner_.joinable()) pruner_.join();
}

void Checkpointer::start_save(int step) {
  const CheckpointConfig& cc = s_.cfg->checkpoint;
  Communicator& world = *s_.world;
  auto p = std::make_unique<Pending>();
  p->step = step;
  p->optimizer_step = (*s_.adam)[0].t;
  p->tmp = cc.dir + "/" + kCheckpointTmpPrefix + std::to_string(step);
  p->final_dir = cc.dir + "/" + checkpoint_dir_name(step);
  // Also orders every rank's writes after the directory exists.
  const std::string err = error_on_root(world, 0, [&] {
    fs::create_directories(cc.dir);
    fs::remove_all(p->tmp);  // left by a crashed write of this step
    fs::create_directory(p->tmp);
    fsync_directory(cc.dir);
  });
  if (!err.empty()) throw CheckpointError("checkpoint of step " + std::to_string(step) + ": " + err);

  // ZeRO-1: the optimizer's parts come to dp rank 0, which writes them whole,
  // so a checkpoint does not depend on train.zero or parallel.dp.
  if (s_.data) gather_optimizer();
  const Coord& co = s_.topo->coord;
  if (co.dp_idx != 0) {  // dp replicas hold the same state: one writes
    p->done = true;
    pending_ = std::move(p);
    if (!cc.async) commit();
    return;
  }
  snapshot_to_host();
  std::vector<ShardItem> items;
  for (size_t c = 0; c < s_.chunks->size(); ++c) {
    for (const TensorSpec& t : (*s_.chunks)[c].layout.tensors) {
      if (!t.sharded() && co.tp_idx != 0) continue;  // replicated over tp: tp rank 0 writes it
      for (TensorKind k : {TensorKind::Param, TensorKind::AdamM, TensorKind::AdamV}) {
        ShardItem it{{}, snapshot_[3 * c + size_t(k)].data() + t.offset};
        it.rec.name = t.name;
        it.rec.kind = k;
        it.rec.shape = t.global_shape;
        it.rec.shard_offset.assign(t.shape.size(), 0);
        if (t.sharded()) it.rec.shard_offset[size_t(t.shard_dim)] = t.shard_offset;
        it.rec.shard_extent = t.shape;
        items.push_back(std::move(it));
      }
    }
  }
  const std::string file = "rank" + std::to_string(s_.topo->world_rank) + ".bin";
  Pending* raw = p.get();
  auto write = [raw, file, items = std::move(items), step](bool main) mutable {
    // The fault point sits after the first tensor, before anything is durable.
    // The watchdog watches the main thread; a background writer must not feed it.
    auto after_each = [step, main](size_t i) {
      if (i == 0) fault_point("checkpoint_write", step);
      if (main) heartbeat();
    };
    try {
      raw->records = write_shard(raw->tmp, file, std::move(items), after_each);
    } catch (const std::exception& e) {
      raw->error = e.what();
    }
    raw->done = true;
  };
  if (cc.async) {
    p->thread = std::thread([write]() mutable { write(false); });
    pending_ = std::move(p);
  } else {
    write(true);
    pending_ = std::move(p);
    commit();
  }
}

// The optimizer's buffer of kind k: the fp32 master weights, or a moment.
static const float* optimizer_part(const AdamW& a, TensorKind k) {
  return k == TensorKind::Param ? a.master : k == TensorKind::AdamM ? a.m.data() : a.v.data();
}

// The device -> host copy of the checkpointer: the master weights, AdamW m
// and v of every local chunk into snapshot_, at the step boundary (training
// changes the originals from the next step on, while an async writer still
// reads). Under ZeRO-1, gather_optimizer has brought them already.
void Checkpointer::snapshot_to_host() {
  if (s_.data) return;
  for (size_t c = 0; c < s_.chunks->size(); ++c)
    for (TensorKind k : {TensorKind::Param, TensorKind::AdamM, TensorKind::AdamV})
      kernels::copy((*s_.chunks)[c].dev, snapshot_of(c, k), optimizer_part((*s_.adam)[c], k),
                    (*s_.chunks)[c].layout.total, kernels::CopyKind::DeviceToHost);
  for (const Chunk& ch : *s_.chunks) kernels::synchronize(ch.dev);
}

// ZeRO-1: every dp rank's part of the master weights and AdamW moments,
// whole in dp rank 0's snapshot.
void Checkpointer::gather_optimizer() {
  for (size_t c = 0; c < s_.chunks->size(); ++c) {
    const Chunk& ch = (*s_.chunks)[c];
    const AdamW& a = (*s_.adam)[c];
    for (TensorKind k : {TensorKind::Param, TensorKind::AdamM, TensorKind::AdamV})
      gather_parts_to_root(*s_.data, ch.dev, optimizer_part(a, k), a.count(),
                           s_.data->rank() == 0 ? snapshot_of(c, k) : nullptr, ch.layout.total);
  }
}

// Local chunk c's host copy of kind k, allocated once and reused by every save.
float* Checkpointer::snapshot_of(size_t c, TensorKind k) {
  snapshot_.resize(3 * s_.chunks->size());
  kernels::PinnedBuffer<float>& b = snapshot_[3 * c + size_t(k)];
  const Chunk& ch = (*s_.chunks)[c];
  if (b.size() != ch.layout.total) b = kernels::PinnedBuffer<float>(ch.dev, ch.layout.total);
  return b.data();
}

void Checkpointer::commit() {
  Pending& p = *pending_;
  if (p.thread.joinable()) p.thread.join();
  if (pruner_.joinable()) pruner_.join();  // one pruner at a time
  Communicator& world = *s_.world;
  const std::string mine = p.error.empty() ? records_text(p.records) : "!" + p.error;
  const std::vector<std::string> all = world.gather(mine.data(), mine.size(), 0);
  std::string status;
  if (world.rank() == 0) {
    bool renamed = false;  // p.tmp is p.final_dir now
    try {
      const Config& cfg = *s_.cfg;
      std::vector<TensorRecord> records;
      for (size_t r = 0; r < all.size(); ++r) {
        if (all[r].rfind("!", 0) == 0) throw CheckpointError("rank " + std::to_string(r) + ": " + all[r].substr(1));
        for (TensorRecord& rec : parse_records(all[r], "rank " + std::to_string(r))) records.push_back(std::move(rec));
      }
      write_file_durably(p.tmp + "/manifest.json",
                         manifest_text(make_manifest(s_, run_id_, p.step, p.optimizer_step, std::move(records))));
      if (fs::exists(p.final_dir)) {  // e.g. a rejected checkpoint of this step: keep it, aside
        std::string aside = p.final_dir + ".superseded";
        for (int k = 1; fs::exists(aside); ++k) aside = p.final_dir + ".superseded." + std::to_string(k);
        fs::rename(p.final_dir, aside);
        std::fprintf(stderr, "checkpoint: moved the existing %s aside to %s\n", p.final_dir.c_str(), aside.c_str());
      }
      fs::rename(p.tmp, p.final_dir);
      renamed = true;
      fsync_directory(cfg.checkpoint.dir);
      write_file_durably(p.final_dir + "/" + kCheckpointMarker, "step " + std::to_string(p.step) + "\n");
      renamed = false;  // committed: it stays
      std::printf("checkpoint: committed %s\n", p.final_dir.c_str());
      // Prune only now that the new one is committed. Deleting tens of MB
      // takes a while, so async runs do it beside training.
      auto job = [dir = cfg.checkpoint.dir, keep = cfg.checkpoint.keep_last, just = p.final_dir, step = p.step] {
        prune(dir, keep, just, step);
      };
      if (cfg.checkpoint.async) pruner_ = std::thread(job);
      else job();
    } catch (const std::exception& e) {
      // A save that failed leaves nothing behind (disk full: no half
      // directory; never a loadable one reported as failed). Earlier
      // checkpoints are untouched.
      status = e.what();
      std::error_code ec;
      fs::remove_all(renamed ? p.final_dir : p.tmp, ec);
    }
  }
  status = broadcast_string(world, status, 0);
  const int step = p.step;
  pending_.reset();
  if (!status.empty()) throw CheckpointError("checkpoint of step " + std::to_string(step) + " failed: " + status);
}

}  // namespace attnres
