// The safetensors export (F32 or BF16, names and shapes of DESIGN §1.2) and
// its config.json, and loading them back.
#pragma once
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "models/model_config.h"

namespace attnres {

struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// Writes tensors in the given order to `path` as F32 or as BF16 (rounded to
// nearest even), and the model + residual settings as config.json in the
// same directory, both durably (runtime/durable_file.h). Both are written
// before either is committed, so a full disk leaves neither half.
void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors, const ModelConfig& cfg,
                       kernels::DType dtype = kernels::DType::F32);
// Checks at the start that both files of an export can be written (runtime/durable_file.h).
void check_export_writable(const std::string& path);
// --export-dtype's value: fp32 or bf16; throws naming the value otherwise.
kernels::DType export_dtype(const std::string& name);
// Reads a safetensors file (F32 or BF16, widened to float); throws
// std::runtime_error naming the file and tensor on a malformed header, other
// dtypes or out-of-range offsets.
// With `config`, also the config.json text the weights carry in their
// metadata ("" for an export written before they did).
std::vector<NamedTensor> read_safetensors(const std::string& path, std::string* config = nullptr);
// Reads the config.json written beside an export, validated as a training
// config is; a key it does not know is an error.
ModelConfig read_export_config(const std::string& config_json_path);
// Throws naming the first model.* or residual.* key whose value in the
// config.json at `config_json_path` differs from `carried`, the config the
// weights carry (read_safetensors); nothing when they carry none.
void check_export_config(const std::string& config_json_path, const std::string& carried);
std::string export_config_path(const std::string& safetensors_path);

}  // namespace attnres
