#include "runtime/checkpoint.h"

#include <fcntl.h>
#include <mpi.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "runtime/fault_injection.h"
#include "runtime/watchdog.h"

namespace attnres {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kFormatName = "attnres-checkpoint";
constexpr const char* kTmpPrefix = ".tmp_step_";

std::string errno_text(int e) { return std::strerror(e); }

// fsync of a file or a directory (a rename or a new file is durable only once
// its directory is synced).
void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw CheckpointError(path + ": cannot open to fsync: " + errno_text(errno));
  const int rc = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  if (rc != 0) throw CheckpointError(path + ": fsync failed: " + errno_text(e));
}

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw CheckpointError(path + ": write failed: " + errno_text(errno));
    }
    p += w, n -= size_t(w);
  }
}

// Owns a file descriptor; closes it on every path out.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void write_file_synced(const std::string& path, const std::string& text) {
  Fd f{::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644)};
  if (f.fd < 0) throw CheckpointError(path + ": cannot create: " + errno_text(errno));
  write_all(f.fd, text.data(), text.size(), path);
  if (::fsync(f.fd) != 0) throw CheckpointError(path + ": fsync failed: " + errno_text(errno));
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// "step_" followed by exactly 8 digits.
bool parse_step_name(const std::string& name, int& step) {
  if (name.size() != 13 || name.rfind("step_", 0) != 0) return false;
  for (size_t i = 5; i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return false;
  step = std::stoi(name.substr(5));
  return true;
}

template <class T>
T field(const json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key))
    throw CheckpointError(where + ": missing field '" + key + "'");
  try {
    return j.at(key).get<T>();
  } catch (const json::exception& e) {
    throw CheckpointError(where + ": field '" + key + "' is malformed: " + e.what());
  }
}

TensorKind parse_kind(const std::string& s, const std::string& where) {
  for (TensorKind k : {TensorKind::Param, TensorKind::AdamM, TensorKind::AdamV})
    if (s == tensor_kind_name(k)) return k;
  throw CheckpointError(where + ": kind '" + s + "' is not param, adam_m or adam_v");
}

json record_json(const TensorRecord& r) {
  return {{"name", r.name},          {"kind", tensor_kind_name(r.kind)}, {"dtype", r.dtype},
          {"shape", r.shape},        {"shard_offset", r.shard_offset},   {"shard_extent", r.shard_extent},
          {"file", r.file},          {"byte_offset", r.byte_offset},     {"nbytes", r.nbytes},
          {"xxh64", hex64(r.xxh64)}};
}

TensorRecord record_from_json(const json& j, const std::string& where0) {
  TensorRecord r;
  r.name = field<std::string>(j, "name", where0);
  const std::string where = where0 + " (" + r.name + ")";
  r.kind = parse_kind(field<std::string>(j, "kind", where), where);
  r.dtype = field<std::string>(j, "dtype", where);
  r.shape = field<std::vector<int64_t>>(j, "shape", where);
  r.shard_offset = field<std::vector<int64_t>>(j, "shard_offset", where);
  r.shard_extent = field<std::vector<int64_t>>(j, "shard_extent", where);
  r.file = field<std::string>(j, "file", where);
  r.byte_offset = field<uint64_t>(j, "byte_offset", where);
  r.nbytes = field<uint64_t>(j, "nbytes", where);
  const std::string h = field<std::string>(j, "xxh64", where);
  if (h.size() != 16 || h.find_first_not_of("0123456789abcdef") != std::string::npos)
    throw CheckpointError(where + ": xxh64 '" + h + "' is not 16 lowercase hex digits");
  r.xxh64 = std::stoull(h, nullptr, 16);
  if (r.dtype != "F32") throw CheckpointError(where + ": dtype " + r.dtype + " (this build reads F32)");
  if (r.shard_offset.size() != r.shape.size() || r.shard_extent.size() != r.shape.size())
    throw CheckpointError(where + ": shard_offset/shard_extent do not have the rank of shape");
  uint64_t numel = 1;
  for (size_t d = 0; d < r.shape.size(); ++d) {
    if (r.shard_offset[d] < 0 || r.shard_extent[d] < 0 || r.shard_offset[d] + r.shard_extent[d] > r.shape[d])
      throw CheckpointError(where + ": shard lies outside the tensor's shape");
    numel *= uint64_t(r.shard_extent[d]);
  }
  if (r.nbytes != numel * sizeof(float))
    throw CheckpointError(where + ": nbytes " + std::to_string(r.nbytes) + " but the extent holds " +
                          std::to_string(numel * sizeof(float)) + " bytes of F32");
  if (r.file.empty() || r.file.find('/') != std::string::npos || r.file == "." || r.file == "..")
    throw CheckpointError(where + ": file '" + r.file + "' is not a file name in the checkpoint directory");
  return r;
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

using RecordIndex = std::map<std::pair<std::string, TensorKind>, const TensorRecord*>;

RecordIndex index_records(const Manifest& m) {
  RecordIndex idx;
  for (const TensorRecord& r : m.tensors) idx[{r.name, r.kind}] = &r;
  return idx;
}

// The record holding all of tensor `spec` of `kind`; this build loads whole tensors.
const TensorRecord& whole_record(const RecordIndex& idx, const TensorSpec& spec, TensorKind kind,
                                 const std::string& ckpt) {
  const auto it = idx.find({spec.name, kind});
  const std::string what = spec.name + " (" + tensor_kind_name(kind) + ")";
  if (it == idx.end()) throw CheckpointError(ckpt + "/manifest.json: no tensor " + what);
  const TensorRecord& r = *it->second;
  if (r.shape != spec.shape)
    throw CheckpointError(ckpt + "/manifest.json: tensor " + what + " has shape " + shape_text(r.shape) +
                          ", the model expects " + shape_text(spec.shape));
  if (r.shard_extent != r.shape)
    throw CheckpointError(ckpt + "/manifest.json: tensor " + what +
                          " is stored in shards; this build loads whole tensors only");
  return r;
}

// --- collectives (main thread only) ---------------------------------------

std::string broadcast_string(Communicator& c, std::string s, int root) {
  uint64_t n = s.size();
  c.broadcast(&n, sizeof n, root);
  s.resize(n);
  if (n) c.broadcast(s.data(), n, root);
  return s;
}

// Every rank learns the error of the lowest rank that has one, or "".
std::string agree_on_error(Communicator& c, const std::string& mine) {
  std::vector<double> failed(size_t(c.size()), 0.0);
  if (!mine.empty()) failed[size_t(c.rank())] = 1.0;
  c.allreduce_sum(failed.data(), failed.size());
  for (int r = 0; r < c.size(); ++r)
    if (failed[size_t(r)] != 0.0) return broadcast_string(c, r == c.rank() ? mine : "", r);
  return "";
}

// Rank 0 receives every world rank's string (in rank order); the others get {}.
// The Communicator has no gather, so this one is plain MPI on MPI_COMM_WORLD.
std::vector<std::string> gather_strings(const std::string& mine) {
  int size = 1, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const int n = int(mine.size());
  std::vector<int> lens(static_cast<size_t>(size)), displs(static_cast<size_t>(size));
  MPI_Gather(&n, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::string all;
  if (rank == 0) {
    int total = 0;
    for (int r = 0; r < size; ++r) displs[size_t(r)] = total, total += lens[size_t(r)];
    all.resize(size_t(total));
  }
  MPI_Gatherv(mine.data(), n, MPI_CHAR, all.data(), lens.data(), displs.data(), MPI_CHAR, 0, MPI_COMM_WORLD);
  std::vector<std::string> out;
  if (rank == 0)
    for (int r = 0; r < size; ++r) out.push_back(all.substr(size_t(displs[size_t(r)]), size_t(lens[size_t(r)])));
  return out;
}

// --- writing ----------------------------------------------------------------

struct WriteItem {
  TensorRecord rec;  // name, kind, shape, shard fields; the writer fills the rest
  const float* data;
};

// Writes this rank's shard file and fsyncs it and the directory. The fault
// point sits after the first tensor, before anything is durable.
std::vector<TensorRecord> write_shard(const std::string& dir, const std::string& file,
                                      std::vector<WriteItem> items, int step, bool on_main_thread) {
  const std::string path = dir + "/" + file;
  Fd f{::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644)};
  if (f.fd < 0) throw CheckpointError(path + ": cannot create: " + errno_text(errno));
  std::vector<TensorRecord> out;
  uint64_t offset = 0;
  for (WriteItem& it : items) {
    TensorRecord& r = it.rec;
    r.file = file;
    r.byte_offset = offset;
    uint64_t numel = 1;
    for (int64_t e : r.shard_extent) numel *= uint64_t(e);
    r.nbytes = numel * sizeof(float);
    r.xxh64 = XXH64(it.data, r.nbytes, 0);
    write_all(f.fd, it.data, r.nbytes, path);
    offset += r.nbytes;
    out.push_back(r);
    if (out.size() == 1) fault_point("checkpoint_write", step);
    // The watchdog watches the main thread; a background writer must not feed it.
    if (on_main_thread) heartbeat();
  }
  if (::fsync(f.fd) != 0) throw CheckpointError(path + ": fsync failed: " + errno_text(errno));
  fsync_path(dir);
  return out;
}

// Deletes complete checkpoints beyond the newest `keep` (never `just_written`)
// and temporary directories of crashed writes of steps up to `step` (later
// steps may be this run's next write). A failure is reported, not thrown: the
// new checkpoint is committed either way.
void prune(const std::string& dir, int keep, const std::string& just_written, int step) {
  try {
    const std::vector<std::string> complete = list_complete_checkpoints(dir);
    for (size_t i = size_t(keep); i < complete.size(); ++i)
      if (fs::path(complete[i]) != fs::path(just_written)) fs::remove_all(complete[i]);
    const std::string prefix = kTmpPrefix;
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      if (name.rfind(prefix, 0) == 0 && name.size() > prefix.size() &&
          name.find_first_not_of("0123456789", prefix.size()) == std::string::npos &&
          std::stoll(name.substr(prefix.size())) <= step)
        fs::remove_all(e.path());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "checkpoint: pruning %s failed: %s\n", dir.c_str(), e.what());
  }
}

std::string config_key_text(const YAML::Node& sec, const std::string& key) {
  const YAML::Node n = sec ? sec[key] : YAML::Node();
  return n ? n.Scalar() : "<not set>";
}

}  // namespace

const char* tensor_kind_name(TensorKind k) {
  switch (k) {
    case TensorKind::Param: return "param";
    case TensorKind::AdamM: return "adam_m";
    case TensorKind::AdamV: return "adam_v";
  }
  return "?";
}

std::string checkpoint_dir_name(int step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08d", step);
  return buf;
}

std::vector<std::string> list_complete_checkpoints(const std::string& dir) {
  std::vector<std::pair<int, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return {};
  for (const auto& e : fs::directory_iterator(dir)) {
    int step = 0;
    if (e.is_directory() && parse_step_name(e.path().filename().string(), step) &&
        fs::exists(e.path() / kCheckpointMarker))
      found.emplace_back(step, e.path().string());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

Manifest read_manifest(const std::string& ckpt) {
  const std::string path = ckpt + "/manifest.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CheckpointError(path + ": cannot open: " + errno_text(errno));
  std::ostringstream text;
  text << in.rdbuf();
  json j;
  try {
    j = json::parse(text.str());
  } catch (const json::parse_error& e) {
    throw CheckpointError(path + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw CheckpointError(path + ": expected a JSON object");
  if (field<std::string>(j, "format", path) != kFormatName)
    throw CheckpointError(path + ": format is not '" + std::string(kFormatName) + "'");
  Manifest m;
  m.format_version = field<int>(j, "format_version", path);
  if (m.format_version != kCheckpointFormatVersion)
    throw CheckpointError(path + ": format version " + std::to_string(m.format_version) +
                          ", but this build reads version " + std::to_string(kCheckpointFormatVersion));
  m.config_yaml = field<std::string>(j, "config", path);
  m.step = field<int>(j, "step", path);
  m.tokens_seen = field<uint64_t>(j, "tokens_seen", path);
  m.next_sequence = field<uint64_t>(field<json>(j, "data", path), "next_sequence", path + ": data");
  const json rng = field<json>(j, "rng", path);
  m.seed = field<uint64_t>(rng, "seed", path + ": rng");
  if (field<uint64_t>(rng, "sampler_counter", path + ": rng") != m.next_sequence)
    throw CheckpointError(path + ": rng.sampler_counter differs from data.next_sequence");
  m.optimizer_step = field<int>(field<json>(j, "optimizer", path), "step", path + ": optimizer");
  const json lay = field<json>(j, "layout", path);
  const std::string lw = path + ": layout";
  m.layout.dp = field<int>(lay, "dp", lw);
  m.layout.pp = field<int>(lay, "pp", lw);
  m.layout.tp = field<int>(lay, "tp", lw);
  m.layout.virtual_stages = field<int>(lay, "virtual_stages", lw);
  m.layout.schedule = field<std::string>(lay, "schedule", lw);
  for (const json& c : field<json>(lay, "chunks", lw)) {
    ChunkRange r;
    r.index = field<int>(c, "index", lw + ".chunks");
    r.first = field<int>(c, "first", lw + ".chunks");
    r.last = field<int>(c, "last", lw + ".chunks");
    r.has_embed = field<bool>(c, "has_embed", lw + ".chunks");
    r.has_head = field<bool>(c, "has_head", lw + ".chunks");
    m.layout.chunks.push_back(r);
  }
  const json tensors = field<json>(j, "tensors", path);
  if (!tensors.is_array()) throw CheckpointError(path + ": field 'tensors' is not an array");
  std::set<std::pair<std::string, TensorKind>> seen;
  for (size_t i = 0; i < tensors.size(); ++i) {
    m.tensors.push_back(record_from_json(tensors[i], path + ": tensors[" + std::to_string(i) + "]"));
    const TensorRecord& r = m.tensors.back();
    if (!seen.insert({r.name, r.kind}).second)
      throw CheckpointError(path + ": tensor " + r.name + " (" + tensor_kind_name(r.kind) + ") is listed twice");
  }
  return m;
}

Config manifest_config(const Manifest& m, const std::string& ckpt) {
  try {
    return parse_config(m.config_yaml, ckpt + "/manifest.json (config)", {});
  } catch (const ConfigError& e) {
    throw CheckpointError(e.what());
  }
}

void check_model_matches(const Manifest& m, const Config& cfg, const std::string& ckpt) {
  const YAML::Node saved = YAML::Load(config_to_yaml(manifest_config(m, ckpt)));
  const YAML::Node now = YAML::Load(config_to_yaml(cfg));
  for (const char* sec : {"model", "residual"}) {
    std::set<std::string> keys;
    for (const YAML::Node& n : {saved[sec], now[sec]})
      if (n)
        for (const auto& kv : n) keys.insert(kv.first.Scalar());
    for (const std::string& k : keys) {
      const std::string a = config_key_text(saved[sec], k), b = config_key_text(now[sec], k);
      if (a != b)
        throw CheckpointError(ckpt + "/manifest.json: model config differs: " + sec + "." + k + " is " + a +
                              " in the checkpoint but " + b + " in this run");
    }
  }
}

std::vector<float> read_tensor(const std::string& ckpt, const TensorRecord& r) {
  const std::string path = ckpt + "/" + r.file;
  const std::string what = "tensor " + r.name + " (" + tensor_kind_name(r.kind) + ")";
  Fd f{::open(path.c_str(), O_RDONLY)};
  if (f.fd < 0) throw CheckpointError(path + ": cannot open shard holding " + what + ": " + errno_text(errno));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) throw CheckpointError(path + ": cannot stat: " + errno_text(errno));
  if (uint64_t(st.st_size) < r.byte_offset + r.nbytes)
    throw CheckpointError(path + ": truncated: the file has " + std::to_string(st.st_size) + " bytes but " + what +
                          " needs bytes [" + std::to_string(r.byte_offset) + ", " +
                          std::to_string(r.byte_offset + r.nbytes) + ")");
  std::vector<float> out(r.nbytes / sizeof(float));
  char* p = reinterpret_cast<char*>(out.data());
  uint64_t done = 0;
  while (done < r.nbytes) {
    const ssize_t n = ::pread(f.fd, p + done, r.nbytes - done, off_t(r.byte_offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw CheckpointError(path + ": read of " + what + " failed: " + (n < 0 ? errno_text(errno) : "end of file"));
    done += uint64_t(n);
  }
  const uint64_t h = XXH64(out.data(), r.nbytes, 0);
  if (h != r.xxh64)
    throw CheckpointError(path + ": checksum mismatch in " + what + ": the manifest says xxh64 " + hex64(r.xxh64) +
                          ", the bytes hash to " + hex64(h));
  return out;
}

std::vector<float> read_full_params(const std::string& ckpt, const Manifest& m, const ModelConfig& model) {
  const ParamLayout full = make_param_layout(model, 0, model.num_sublayers());
  const RecordIndex idx = index_records(m);
  std::vector<float> out(full.total);
  for (const TensorSpec& t : full.tensors) {
    const std::vector<float> v = read_tensor(ckpt, whole_record(idx, t, TensorKind::Param, ckpt));
    std::copy(v.begin(), v.end(), out.begin() + long(t.offset));
  }
  return out;
}

// --- Checkpointer -------------------------------------------------------------

struct Checkpointer::Pending {
  int step = 0, optimizer_step = 0;  // as of the step boundary (an async commit comes later)
  std::string tmp, final_dir;
  std::vector<TensorRecord> records;         // written by the writer
  std::string error;                         // writer failure
  std::atomic<bool> done{false};
  std::thread thread;
};

Checkpointer::Checkpointer(TrainState s) : s_(s) {}

Checkpointer::~Checkpointer() {
  if (pending_ && pending_->thread.joinable()) pending_->thread.join();
  if (pruner_.joinable()) pruner_.join();
}

namespace {

// Parameters, AdamW m and v of the local chunks, as staged by a load.
struct Staged {
  int step = 0, optimizer_step = 0;
  std::vector<std::vector<float>> params, m, v;  // per local chunk
};

Staged stage_load(const std::string& ckpt, const TrainState& s) {
  if (!fs::is_directory(ckpt)) throw CheckpointError(ckpt + ": not a checkpoint directory");
  if (!fs::exists(fs::path(ckpt) / kCheckpointMarker))
    throw CheckpointError(ckpt + ": no " + std::string(kCheckpointMarker) +
                          " marker (the write did not complete); it is never loaded");
  const Manifest m = read_manifest(ckpt);
  const std::string mpath = ckpt + "/manifest.json";
  int named_step = 0;
  if (parse_step_name(fs::path(ckpt).lexically_normal().filename().string(), named_step) && named_step != m.step)
    throw CheckpointError(mpath + ": step " + std::to_string(m.step) + " but the directory is named for step " +
                          std::to_string(named_step));
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
  if (m.optimizer_step < 0) throw CheckpointError(mpath + ": optimizer.step is negative");
  const RecordIndex idx = index_records(m);
  Staged st;
  st.step = m.step;
  st.optimizer_step = m.optimizer_step;
  for (const Chunk& c : *s.chunks) {
    std::vector<float>* dst[3] = {&st.params.emplace_back(c.layout.total), &st.m.emplace_back(c.layout.total),
                                  &st.v.emplace_back(c.layout.total)};
    for (const TensorSpec& spec : c.layout.tensors) {
      for (TensorKind k : {TensorKind::Param, TensorKind::AdamM, TensorKind::AdamV}) {
        const std::vector<float> data = read_tensor(ckpt, whole_record(idx, spec, k, ckpt));
        std::copy(data.begin(), data.end(), dst[int(k)]->begin() + long(spec.offset));
      }
      heartbeat();
    }
  }
  return st;
}

}  // namespace

int Checkpointer::resume(const std::string& spec) {
  if (spec.empty()) return 0;
  Communicator& world = *s_.world;
  const bool is_auto = spec == "auto";
  const std::string& dir = s_.cfg->checkpoint.dir;
  std::string err, list;
  if (world.rank() == 0) {
    try {
      if (!is_auto) list = spec;
      else if (dir.empty()) err = "--resume auto: checkpoint.dir is not set";
      else
        for (const std::string& p : list_complete_checkpoints(dir)) list += p + "\n";
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
      for (size_t c = 0; c < s_.chunks->size(); ++c) {
        Chunk& ch = (*s_.chunks)[c];
        AdamW& a = (*s_.adam)[c];
        std::copy(st.params[c].begin(), st.params[c].end(), ch.params);
        a.m = std::move(st.m[c]);
        a.v = std::move(st.v[c]);
        a.t = st.optimizer_step;
      }
      if (world.rank() == 0) std::printf("resume: loaded %s (step %d)\n", ckpt.c_str(), st.step);
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

void Checkpointer::after_step(int step) {
  const CheckpointConfig& cc = s_.cfg->checkpoint;
  if (cc.every <= 0) return;
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
  p->tmp = cc.dir + "/" + kTmpPrefix + std::to_string(step);
  p->final_dir = cc.dir + "/" + checkpoint_dir_name(step);
  std::string err;
  if (world.rank() == 0) {
    try {
      fs::create_directories(cc.dir);
      fs::remove_all(p->tmp);  // left by a crashed write of this step
      fs::create_directory(p->tmp);
      fsync_path(cc.dir);
    } catch (const std::exception& e) {
      err = e.what();
    }
  }
  // Also orders every rank's writes after the directory exists.
  err = broadcast_string(world, err, 0);
  if (!err.empty()) throw CheckpointError("checkpoint of step " + std::to_string(step) + ": " + err);

  const Coord& co = s_.topo->coord;
  if (co.dp_idx != 0 || co.tp_idx != 0) {  // replicas hold the same state: one writes
    p->done = true;
    pending_ = std::move(p);
    if (!cc.async) commit();
    return;
  }
  std::vector<WriteItem> items;
  for (size_t c = 0; c < s_.chunks->size(); ++c) {
    const Chunk& ch = (*s_.chunks)[c];
    const AdamW& a = (*s_.adam)[c];
    assert(ch.dev.backend == kernels::Backend::CPU && "checkpoint reads parameters as host memory");
    const float* src[3] = {ch.params, a.m.data(), a.v.data()};
    if (cc.async) {  // the step-boundary copy: training changes the originals from the next step on
      snapshot_.resize(3 * s_.chunks->size());
      for (int k = 0; k < 3; ++k) {
        std::vector<float>& buf = snapshot_[3 * c + size_t(k)];
        buf.assign(src[k], src[k] + ch.layout.total);
        src[k] = buf.data();
      }
    }
    for (const TensorSpec& t : ch.layout.tensors)
      for (TensorKind k : {TensorKind::Param, TensorKind::AdamM, TensorKind::AdamV}) {
        WriteItem it{{}, src[int(k)] + t.offset};
        it.rec.name = t.name;
        it.rec.kind = k;
        it.rec.shape = t.shape;
        it.rec.shard_offset.assign(t.shape.size(), 0);
        it.rec.shard_extent = t.shape;
        items.push_back(std::move(it));
      }
  }
  const std::string file = "rank" + std::to_string(s_.topo->world_rank) + ".bin";
  Pending* raw = p.get();
  auto write = [raw, file, items = std::move(items), step](bool main) mutable {
    try {
      raw->records = write_shard(raw->tmp, file, std::move(items), step, main);
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

void Checkpointer::commit() {
  Pending& p = *pending_;
  if (p.thread.joinable()) p.thread.join();
  if (pruner_.joinable()) pruner_.join();  // one pruner at a time
  Communicator& world = *s_.world;
  std::string mine = "!" + p.error;
  if (p.error.empty()) {
    json recs = json::array();
    for (const TensorRecord& r : p.records) recs.push_back(record_json(r));
    mine = recs.dump();
  }
  const std::vector<std::string> all = gather_strings(mine);
  std::string status;
  if (world.rank() == 0) {
    try {
      const Config& cfg = *s_.cfg;
      std::vector<TensorRecord> records;
      for (size_t r = 0; r < all.size(); ++r) {
        if (all[r].rfind("!", 0) == 0) throw CheckpointError("rank " + std::to_string(r) + ": " + all[r].substr(1));
        for (const json& j : json::parse(all[r])) records.push_back(record_from_json(j, "rank " + std::to_string(r)));
      }
      // Global tensor order, then param, m, v: the manifest does not depend on who wrote what.
      const ParamLayout full = make_param_layout(cfg.model, 0, cfg.model.num_sublayers());
      auto key = [&](const TensorRecord& r) {
        const TensorSpec* t = full.find(r.name);
        assert(t);
        return std::make_pair(t - full.tensors.data(), int(r.kind));
      };
      std::sort(records.begin(), records.end(), [&](const auto& a, const auto& b) { return key(a) < key(b); });
      assert(records.size() == 3 * full.tensors.size());
      const TrainConfig& t = cfg.train;
      const uint64_t next_seq = uint64_t(p.step) * uint64_t(t.grad_accum) * uint64_t(t.micro_batch_size);
      json chunks = json::array();
      for (const ChunkRange& c : s_.part->chunks)
        chunks.push_back({{"index", c.index}, {"first", c.first}, {"last", c.last},
                          {"has_embed", c.has_embed}, {"has_head", c.has_head}});
      json tensors = json::array();
      for (const TensorRecord& r : records) tensors.push_back(record_json(r));
      const json manifest = {
          {"format", kFormatName},
          {"format_version", kCheckpointFormatVersion},
          {"step", p.step},
          {"tokens_seen", next_seq * uint64_t(cfg.model.seq_len)},
          {"data", {{"next_sequence", next_seq}}},
          {"rng", {{"kind", "counter-based: sequence i starts at XXH64(seed, i); no other RNG state"},
                   {"seed", t.seed},
                   {"sampler_counter", next_seq}}},
          {"optimizer", {{"name", "adamw"}, {"step", p.optimizer_step}}},
          {"layout", {{"dp", cfg.parallel.dp}, {"pp", cfg.parallel.pp}, {"tp", cfg.parallel.tp},
                      {"virtual_stages", cfg.parallel.virtual_stages}, {"schedule", cfg.parallel.schedule},
                      {"chunks", chunks}}},
          {"config", config_to_yaml(cfg)},
          {"tensors", tensors}};
      write_file_synced(p.tmp + "/manifest.json", manifest.dump(1) + "\n");
      fsync_path(p.tmp);
      if (fs::exists(p.final_dir)) {  // e.g. a rejected checkpoint of this step: keep it, aside
        std::string aside = p.final_dir + ".superseded";
        for (int k = 1; fs::exists(aside); ++k) aside = p.final_dir + ".superseded." + std::to_string(k);
        fs::rename(p.final_dir, aside);
        std::fprintf(stderr, "checkpoint: moved the existing %s aside to %s\n", p.final_dir.c_str(), aside.c_str());
      }
      fs::rename(p.tmp, p.final_dir);
      fsync_path(cfg.checkpoint.dir);
      write_file_synced(p.final_dir + "/" + kCheckpointMarker, "step " + std::to_string(p.step) + "\n");
      fsync_path(p.final_dir);
      std::printf("checkpoint: committed %s\n", p.final_dir.c_str());
      // Prune only now that the new one is committed. Deleting tens of MB
      // takes a while, so async runs do it beside training.
      auto job = [dir = cfg.checkpoint.dir, keep = cfg.checkpoint.keep_last, just = p.final_dir, step = p.step] {
        prune(dir, keep, just, step);
      };
      if (cfg.checkpoint.async) pruner_ = std::thread(job);
      else job();
    } catch (const std::exception& e) {
      status = e.what();
    }
  }
  status = broadcast_string(world, status, 0);
  const int step = p.step;
  pending_.reset();
  if (!status.empty()) throw CheckpointError("checkpoint of step " + std::to_string(step) + " failed: " + status);
}

}  // namespace attnres
