#include "runtime/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "runtime/config.h"
#include "runtime/durable_file.h"
#include "runtime/json_integer.h"

namespace attnres {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kConfigMetadata = "attnres_config";  // __metadata__ key: the config.json text

std::string export_config_path(const std::string& safetensors_path) {
  return (fs::path(safetensors_path).parent_path() / "config.json").string();
}

kernels::DType export_dtype(const std::string& name) {
  if (name == "fp32") return kernels::DType::F32;
  if (name == "bf16") return kernels::DType::BF16;
  throw std::invalid_argument("--export-dtype '" + name + "': expected fp32 or bf16");
}

// A tensor's bytes in the file: its floats, or their bf16 roundings (little-endian).
static void append_data(std::string& out, const std::vector<float>& x, kernels::DType dtype) {
  if (dtype == kernels::DType::F32) {
    out.append(reinterpret_cast<const char*>(x.data()), x.size() * sizeof(float));
    return;
  }
  for (float v : x) {
    const uint16_t b = kernels::to_bf16(v).bits;
    out.push_back(char(b & 0xff)), out.push_back(char(b >> 8));
  }
}

void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors, const ModelConfig& cfg,
                       kernels::DType dtype) {
  if (dtype != kernels::DType::F32 && dtype != kernels::DType::BF16)
    throw std::logic_error("safetensors: exports are F32 or BF16");
  const char* name = dtype == kernels::DType::F32 ? "F32" : "BF16";
  json c = {{"model",
             {{"vocab_size", cfg.vocab_size}, {"d_model", cfg.d_model}, {"n_layers", cfg.n_layers},
              {"n_heads", cfg.n_heads}, {"d_ff", cfg.d_ff}, {"seq_len", cfg.seq_len},
              {"rope_theta", cfg.rope_theta}, {"norm_eps", cfg.norm_eps}}},
            {"residual", {{"mode", residual_mode_name(cfg.mode)}}}};
  if (cfg.attnres()) c["residual"]["block_size"] = cfg.block_size;
  const std::string config_text = c.dump(2) + "\n";
  json header = json::object();
  size_t offset = 0;
  for (const auto& t : tensors) {
    const size_t bytes = t.data.size() * kernels::dtype_size(dtype);
    header[t.name] = {{"dtype", name}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  // The weights carry their config too, so that an edited config.json is caught (check_export_config).
  header["__metadata__"] = {{"format", "pt"}, {"producer", "attnres"}, {kConfigMetadata, config_text}};
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  std::string out(8, '\0');
  const uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = char((n >> (8 * i)) & 0xff);  // little-endian
  out += h;
  out.reserve(out.size() + offset);
  for (const auto& t : tensors) append_data(out, t.data, dtype);

  if (!fs::path(path).parent_path().empty()) fs::create_directories(fs::path(path).parent_path());
  DurableFile weights(path), config(export_config_path(path));
  weights.write(out.data(), out.size());
  config.write(config_text.data(), config_text.size());
  weights.commit();
  config.commit();
}

void check_export_writable(const std::string& path) {
  check_writable(path);
  check_writable(export_config_path(path));
}

std::vector<NamedTensor> read_safetensors(const std::string& path, std::string* config) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path + ": cannot open safetensors file");
  const auto file_size = uint64_t(fs::file_size(path));
  unsigned char len[8];
  if (!f.read(reinterpret_cast<char*>(len), 8)) throw std::runtime_error(path + ": shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(len[i]) << (8 * i);
  if (n > file_size - 8) throw std::runtime_error(path + ": header length " + std::to_string(n) + " exceeds the file size");
  std::string h(n, '\0');
  f.read(h.data(), std::streamsize(n));
  json header;
  try {
    header = json::parse(h);
  } catch (const json::exception& e) {
    throw std::runtime_error(path + ": malformed header JSON: " + e.what());
  }
  if (!header.is_object()) throw std::runtime_error(path + ": the header is not a JSON object");
  const uint64_t data_size = file_size - 8 - n;
  std::vector<NamedTensor> out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (config && it->is_object() && it->contains(kConfigMetadata) && it->at(kConfigMetadata).is_string())
        *config = it->at(kConfigMetadata).get<std::string>();
      continue;
    }
    const json& t = it.value();
    const std::string where = path + ": tensor " + it.key();
    const std::string dtype = t.is_object() ? t.value("dtype", "") : "";
    if (dtype != "F32" && dtype != "BF16") throw std::runtime_error(where + ": dtype must be F32 or BF16");
    const uint64_t elem = kernels::dtype_size(dtype == "F32" ? kernels::DType::F32 : kernels::DType::BF16);
    NamedTensor nt;
    nt.name = it.key();
    try {
      for (const json& s : t.at("shape")) nt.shape.push_back(json_integer<int64_t>(s));
      std::vector<uint64_t> off;
      for (const json& o : t.at("data_offsets")) off.push_back(json_integer<uint64_t>(o));
      uint64_t numel = 1;
      for (int64_t s : nt.shape) {
        if (s < 0) throw std::runtime_error("negative dimension");
        numel *= uint64_t(s);
      }
      if (off.size() != 2 || off[0] > off[1] || off[1] > data_size || off[1] - off[0] != numel * elem)
        throw std::runtime_error("data_offsets do not fit the shape and the file");
      nt.data.resize(numel);
      f.seekg(std::streamoff(8 + n + off[0]));
      if (elem == 4) {
        f.read(reinterpret_cast<char*>(nt.data.data()), std::streamsize(numel * 4));
      } else {
        std::vector<unsigned char> raw(numel * 2);
        f.read(reinterpret_cast<char*>(raw.data()), std::streamsize(raw.size()));
        for (uint64_t i = 0; i < numel; ++i)
          nt.data[i] = kernels::to_float(kernels::bf16{uint16_t(raw[2 * i] | (raw[2 * i + 1] << 8))});
      }
      if (!f) throw std::runtime_error("truncated data");
    } catch (const json::exception& e) {
      throw std::runtime_error(where + ": " + e.what());
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(where + ": " + e.what());
    }
    out.push_back(std::move(nt));
  }
  return out;
}

namespace {

// The keys an export's config.json holds, by section: any other is refused,
// not ignored.
const std::map<std::string, std::vector<std::string>> kExportKeys = {
    {"model", {"vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "seq_len", "rope_theta", "norm_eps"}},
    {"residual", {"mode", "block_size"}}};

void refuse_unknown_keys(const json& c) {
  if (!c.is_object()) throw std::runtime_error("expected a JSON object");
  for (const auto& [section, value] : c.items()) {
    const auto known = kExportKeys.find(section);
    if (known == kExportKeys.end()) throw std::runtime_error(section + ": unknown key (expected model and residual)");
    if (!value.is_object()) throw std::runtime_error(section + ": expected an object");
    for (const auto& [key, v] : value.items())
      if (std::find(known->second.begin(), known->second.end(), key) == known->second.end())
        throw std::runtime_error(section + "." + key + ": unknown key");
  }
}

json read_json(const std::string& path, const char* what) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error(path + ": cannot open (" + what + ")");
  try {
    return json::parse(f);
  } catch (const json::exception& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
}

}  // namespace

void check_export_config(const std::string& config_path, const std::string& carried) {
  if (carried.empty()) return;  // an export written before the weights carried it
  const json file = read_json(config_path, "the config.json written beside the export");
  json weights;
  try {
    weights = json::parse(carried);
  } catch (const json::exception& e) {
    throw std::runtime_error(config_path + ": the config the weights carry is not JSON: " + e.what());
  }
  for (const auto& [section, keys] : kExportKeys)
    for (const std::string& key : keys) {
      const json::json_pointer at("/" + section + "/" + key);
      const json a = file.contains(at) ? file.at(at) : json(), b = weights.contains(at) ? weights.at(at) : json();
      if (a != b)
        throw std::runtime_error(config_path + ": " + section + "." + key + " is " + a.dump() +
                                 " but the weights beside it were exported with " + b.dump() +
                                 " (an edited config.json would load them into another model)");
    }
}

ModelConfig read_export_config(const std::string& path) {
  const json c = read_json(path, "the config.json written beside the export");
  try {
    refuse_unknown_keys(c);
    const json& m = c.at("model");
    // Checked by the code that checks a training config: sizes, vocabulary
    // (>= 256, so every byte token has a row), norm_eps, rope_theta, blocks.
    Config full;
    ModelConfig& cfg = full.model;
    auto integer = [&](const char* key) {
      try {
        return json_integer<int>(m.at(key));
      } catch (const std::runtime_error& e) {
        throw std::runtime_error(std::string("model.") + key + ": " + e.what());
      }
    };
    cfg.vocab_size = integer("vocab_size"), cfg.d_model = integer("d_model"), cfg.n_layers = integer("n_layers");
    cfg.n_heads = integer("n_heads"), cfg.d_ff = integer("d_ff"), cfg.seq_len = integer("seq_len");
    cfg.rope_theta = m.at("rope_theta"), cfg.norm_eps = m.at("norm_eps");
    const std::string mode = c.at("residual").at("mode");
    if (mode == "standard") {
      cfg.mode = ResidualMode::Standard;
    } else if (mode == "attnres") {
      cfg.mode = ResidualMode::AttnRes;
      full.residual_block_size = json_integer<int>(c.at("residual").at("block_size"));
      if (full.residual_block_size < 1) throw std::runtime_error("residual.block_size must be >= 1");
    } else {
      throw std::runtime_error("residual.mode must be standard or attnres, got " + mode);
    }
    validate_config(full);
    return cfg;
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + ": " + e.what());
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
}

}  // namespace attnres
