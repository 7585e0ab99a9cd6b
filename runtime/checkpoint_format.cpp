#include "runtime/checkpoint_format.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>
#include <type_traits>
#include <vector>
#include <sstream>

#include "runtime/durable_file.h"
#include "runtime/json_integer.h"

namespace attnres {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kFormatName = "attnres-checkpoint";

std::string errno_text(int e) { return std::strerror(e); }

// Owns a file descriptor; closes it on every path out.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

template <class T>
struct IsIntegerVector : std::false_type {};
template <class I>
struct IsIntegerVector<std::vector<I>> : std::bool_constant<std::is_integral_v<I>> {};

// Integers and lists of them through json_integer (no unchecked casts).
template <class T>
T field(const json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key))
    throw CheckpointError(where + ": missing field '" + key + "'");
  try {
    const json& v = j.at(key);
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      return json_integer<T>(v);
    } else if constexpr (IsIntegerVector<T>::value) {
      if (!v.is_array()) throw std::runtime_error("expected a list of integers, got " + v.dump());
      T out;
      for (const json& e : v) out.push_back(json_integer<typename T::value_type>(e));
      return out;
    } else {
      return v.get<T>();
    }
  } catch (const std::exception& e) {  // json::exception, or json_integer's range
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

std::string config_key_text(const YAML::Node& sec, const std::string& key) {
  const YAML::Node n = sec ? sec[key] : YAML::Node();
  return n ? n.Scalar() : "<not set>";
}

}  // namespace

bool parse_checkpoint_dir_name(const std::string& name, int& step) {
  if (name.size() != 13 || name.rfind("step_", 0) != 0) return false;
  for (size_t i = 5; i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return false;
  step = std::stoi(name.substr(5));
  return true;
}

RecordIndex index_records(const Manifest& m) {
  RecordIndex idx;
  for (const TensorRecord& r : m.tensors) idx[{r.name, r.kind}].push_back(&r);
  return idx;
}

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
    if (e.is_directory() && parse_checkpoint_dir_name(e.path().filename().string(), step) &&
        fs::exists(e.path() / kCheckpointMarker))
      found.emplace_back(step, e.path().string());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

std::string manifest_text(const Manifest& m) {
  json chunks = json::array();
  for (const ChunkRange& c : m.layout.chunks)
    chunks.push_back({{"index", c.index}, {"first", c.first}, {"last", c.last},
                      {"has_embed", c.has_embed}, {"has_head", c.has_head}});
  json tensors = json::array();
  for (const TensorRecord& r : m.tensors) tensors.push_back(record_json(r));
  const CheckpointLayout& l = m.layout;
  const json j = {
      {"format", kFormatName},
      {"format_version", m.format_version},
      {"run_id", m.run_id},
      {"step", m.step},
      {"tokens_seen", m.tokens_seen},
      {"data", {{"next_sequence", m.next_sequence}}},
      {"rng", {{"kind", "counter-based: sequence i starts at XXH64(seed, i); no other RNG state"},
               {"seed", m.seed},
               {"sampler_counter", m.next_sequence}}},
      {"optimizer", {{"name", "adamw"}, {"step", m.optimizer_step}}},
      {"layout", {{"dp", l.dp}, {"pp", l.pp}, {"tp", l.tp}, {"virtual_stages", l.virtual_stages},
                  {"schedule", l.schedule}, {"chunks", chunks}}},
      {"config", m.config_yaml},
      {"tensors", tensors}};
  return j.dump(1) + "\n";
}

std::string records_text(const std::vector<TensorRecord>& records) {
  json recs = json::array();
  for (const TensorRecord& r : records) recs.push_back(record_json(r));
  return recs.dump();
}

std::vector<TensorRecord> parse_records(const std::string& text, const std::string& where) {
  json recs;
  try {
    recs = json::parse(text);
  } catch (const json::parse_error& e) {
    throw CheckpointError(where + ": tensor records are not valid JSON: " + e.what());
  }
  if (!recs.is_array()) throw CheckpointError(where + ": tensor records are not a JSON array");
  std::vector<TensorRecord> out;
  for (const json& j : recs) out.push_back(record_from_json(j, where));
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
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number too large
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
  if (j.contains("run_id")) m.run_id = field<std::string>(j, "run_id", path);
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
  std::set<std::tuple<std::string, TensorKind, std::vector<int64_t>>> seen;
  for (size_t i = 0; i < tensors.size(); ++i) {
    m.tensors.push_back(record_from_json(tensors[i], path + ": tensors[" + std::to_string(i) + "]"));
    const TensorRecord& r = m.tensors.back();
    if (!seen.insert({r.name, r.kind, r.shard_offset}).second)
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

void check_manifest(const Manifest& m, const std::string& ckpt) {
  const std::string mpath = ckpt + "/manifest.json";
  int named_step = 0;
  if (parse_checkpoint_dir_name(fs::path(ckpt).lexically_normal().filename().string(), named_step) && named_step != m.step)
    throw CheckpointError(mpath + ": step " + std::to_string(m.step) + " but the directory is named for step " +
                          std::to_string(named_step));
  if (m.step < 0) throw CheckpointError(mpath + ": step is negative");
  if (m.optimizer_step < 0) throw CheckpointError(mpath + ": optimizer.step is negative");
  const Config cfg = manifest_config(m, ckpt);
  const TrainConfig& t = cfg.train;
  const uint64_t sequences = uint64_t(m.step) * uint64_t(t.grad_accum) * uint64_t(t.micro_batch_size);
  if (m.next_sequence != sequences)
    throw CheckpointError(mpath + ": data.next_sequence is " + std::to_string(m.next_sequence) + " but step " +
                          std::to_string(m.step) + " x train.grad_accum x train.micro_batch_size of its config is " +
                          std::to_string(sequences));
  if (m.tokens_seen != m.next_sequence * uint64_t(cfg.model.seq_len))
    throw CheckpointError(mpath + ": tokens_seen is " + std::to_string(m.tokens_seen) + " but data.next_sequence x " +
                          "model.seq_len is " + std::to_string(m.next_sequence * uint64_t(cfg.model.seq_len)));
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

std::vector<TensorRecord> write_shard(const std::string& dir, const std::string& file,
                                      std::vector<ShardItem> items,
                                      const std::function<void(size_t)>& after_each) {
  DurableFile f(dir + "/" + file);
  std::vector<TensorRecord> out;
  uint64_t offset = 0;
  for (ShardItem& it : items) {
    TensorRecord& r = it.rec;
    r.file = file;
    r.byte_offset = offset;
    uint64_t numel = 1;
    for (int64_t e : r.shard_extent) numel *= uint64_t(e);
    r.nbytes = numel * sizeof(float);
    r.xxh64 = XXH64(it.data, r.nbytes, 0);
    f.write(it.data, r.nbytes);
    offset += r.nbytes;
    out.push_back(r);
    after_each(out.size() - 1);
  }
  f.commit();
  return out;
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

// Calls row(src, dst, n) for each contiguous row of record `r`: n elements
// at index src of its data belong at index dst of the global tensor
// (row-major; the last dimension is contiguous).
template <class Row>
static void for_each_record_row(const TensorRecord& r, Row row) {
  const size_t rank = r.shape.size();
  std::vector<size_t> stride(rank, 1);
  for (size_t d = rank; d-- > 1;) stride[d - 1] = stride[d] * size_t(r.shape[d]);
  size_t numel = 1;
  for (int64_t e : r.shard_extent) numel *= size_t(e);
  const size_t n = rank ? size_t(r.shard_extent.back()) : 1;
  if (n == 0) return;
  std::vector<int64_t> at(rank, 0);  // index within the shard, last dimension fixed at 0
  for (size_t src = 0; src < numel; src += n) {
    size_t dst = 0;
    for (size_t d = 0; d < rank; ++d) dst += size_t(r.shard_offset[d] + at[d]) * stride[d];
    row(src, dst, n);
    for (size_t d = rank - 1; d-- > 0;) {  // next row: odometer over the leading dimensions
      if (++at[d] < r.shard_extent[d]) break;
      at[d] = 0;
    }
  }
}

std::vector<float> read_tensor_part(const std::string& ckpt, const RecordIndex& idx, const TensorSpec& spec,
                                    TensorKind kind) {
  const auto it = idx.find({spec.name, kind});
  const std::string what = spec.name + " (" + tensor_kind_name(kind) + ")";
  if (it == idx.end()) throw CheckpointError(ckpt + "/manifest.json: no tensor " + what);
  size_t numel = 1;
  for (int64_t e : spec.global_shape) numel *= size_t(e);
  std::vector<float> whole(numel);
  std::vector<char> covered(numel, 0);
  size_t placed = 0;
  for (const TensorRecord* r : it->second) {
    if (r->shape != spec.global_shape)
      throw CheckpointError(ckpt + "/manifest.json: tensor " + what + " has shape " + shape_text(r->shape) +
                            ", the model expects " + shape_text(spec.global_shape));
    const std::vector<float> data = read_tensor(ckpt, *r);
    for_each_record_row(*r, [&](size_t src, size_t dst, size_t n) {
      for (size_t e = dst; e < dst + n; ++e) {
        if (covered[e]) throw CheckpointError(ckpt + "/manifest.json: shards of tensor " + what + " overlap");
        covered[e] = 1;
      }
      std::copy_n(data.begin() + long(src), n, whole.begin() + long(dst));
      placed += n;
    });
  }
  if (placed != numel)
    throw CheckpointError(ckpt + "/manifest.json: the shards of tensor " + what + " hold " + std::to_string(placed) +
                          " of its " + std::to_string(numel) + " elements");
  if (!spec.sharded()) return whole;
  std::vector<float> part(spec.numel);
  whole_to_shard(part.data(), spec, whole.data());
  return part;
}

std::vector<float> read_full_params(const std::string& ckpt, const Manifest& m, const ModelConfig& model) {
  const ParamLayout full = make_param_layout(model, 0, model.num_sublayers());
  const RecordIndex idx = index_records(m);
  std::vector<float> out(full.total);
  for (const TensorSpec& t : full.tensors) {
    const std::vector<float> v = read_tensor_part(ckpt, idx, t, TensorKind::Param);
    std::copy(v.begin(), v.end(), out.begin() + long(t.offset));
  }
  return out;
}


}  // namespace attnres
