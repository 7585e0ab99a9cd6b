// End-to-end properties of the training loop: determinism, falling loss,
// export -> eval giving the loss of the model the run ended with, and
// validation over every window.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/memory.h"
#include "models/chunk.h"
#include "tests/test_corpus.h"
#include "runtime/checkpoint_format.h"
#include "runtime/config.h"
#include "runtime/data.h"
#include "runtime/evaluate.h"
#include "runtime/safetensors.h"
#include "runtime/trainer.h"

using namespace attnres;
namespace fs = std::filesystem;

namespace {

Config tiny_config(const std::vector<std::string>& extra = {}) {
  std::vector<std::string> sets = {"data.dir=" + test_corpus_dir(), "train.steps=6", "train.eval_every=3",
                                   "train.threads=1"};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return load_config(std::string(ATTNRES_SOURCE_DIR) + "/configs/tiny.yaml", sets);
}

TrainOptions quiet() {
  TrainOptions o;
  o.quiet = true;
  return o;
}

fs::path scratch_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("attnres_test_training_" + std::to_string(getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// train() with --export to `dir`/model.safetensors; the exported tensors.
std::vector<NamedTensor> train_and_export(const Config& cfg, const fs::path& dir, TrainResult* result = nullptr) {
  TrainOptions o = quiet();
  o.export_path = (dir / "model.safetensors").string();
  const TrainResult r = train(cfg, o);
  if (result) *result = r;
  return read_safetensors(o.export_path);
}

// A whole-model chunk of batch B holding `params` (global order).
struct Model {
  Chunk chunk;
  ChunkActs acts;
  Model(const ModelConfig& m, int B, const std::vector<NamedTensor>& params) {
    chunk_init(chunk, m, 0, m.num_sublayers(), B, 12345);
    acts_init(acts, chunk);
    load_named_tensors(chunk, params, "test");
  }
};

}  // namespace

TEST(Training, SameConfigTwiceIsBitwiseIdentical) {
  for (const char* mode : {"residual.mode=attnres", "residual.mode=standard"}) {
    const Config cfg = tiny_config({mode});
    TrainResult a, b;
    const std::vector<NamedTensor> pa = train_and_export(cfg, scratch_dir("a"), &a);
    const std::vector<NamedTensor> pb = train_and_export(cfg, scratch_dir("b"), &b);
    ASSERT_EQ(a.losses.size(), 6u);
    for (size_t i = 0; i < a.losses.size(); ++i) EXPECT_EQ(a.losses[i], b.losses[i]) << mode << " step " << i;
    ASSERT_EQ(pa.size(), pb.size());
    for (size_t t = 0; t < pa.size(); ++t) {
      EXPECT_EQ(pa[t].name, pb[t].name);
      EXPECT_EQ(pa[t].data, pb[t].data) << mode << " " << pa[t].name;
    }
    EXPECT_EQ(a.final_val_loss, b.final_val_loss);
  }
}

TEST(Training, SeedChangesTheRun) {
  const TrainResult a = train(tiny_config(), quiet());
  const TrainResult b = train(tiny_config({"train.seed=99"}), quiet());
  EXPECT_NE(a.losses[0], b.losses[0]);
}

TEST(Training, LossFallsBelowUniform) {
  const TrainResult r = train(tiny_config({"train.steps=30", "train.eval_every=30"}), quiet());
  EXPECT_LT(r.losses.back(), r.losses.front() - 0.5);
  EXPECT_LT(r.final_val_loss, std::log(256.0) - 0.5);
}

// The export is the model the run ended with: the parameters of the final
// checkpoint (written by each rank from its own memory, not by the export's
// gather), and `attnres eval` of it gives that model's loss.
TEST(Training, ExportIsTheFinalModelAndEvalLoadsIt) {
  const fs::path dir = scratch_dir("export");
  const Config cfg = tiny_config({"checkpoint.dir=" + (dir / "ckpt").string(), "checkpoint.every=6",
                                  "checkpoint.async=false"});
  const std::vector<NamedTensor> exported = train_and_export(cfg, dir);

  // The final model, from the checkpoint of the last step.
  const std::vector<std::string> ckpts = list_complete_checkpoints((dir / "ckpt").string());
  ASSERT_EQ(ckpts.size(), 1u);
  const std::vector<float> final_params = read_full_params(ckpts[0], read_manifest(ckpts[0]), cfg.model);
  const ParamLayout full = make_param_layout(cfg.model, 0, cfg.model.num_sublayers());
  ASSERT_EQ(exported.size(), full.tensors.size());
  for (const NamedTensor& t : exported) {
    const TensorSpec* spec = full.find(t.name);  // names and shapes of DESIGN §1.2
    ASSERT_NE(spec, nullptr) << t.name;
    EXPECT_EQ(t.shape, spec->shape) << t.name;
    const std::vector<float> want(final_params.begin() + long(spec->offset),
                                  final_params.begin() + long(spec->offset + spec->numel));
    EXPECT_EQ(t.data, want) << t.name;
  }

  // The same model loaded back from the export, as `attnres eval` does.
  const std::string weights = (dir / "model.safetensors").string();
  const ModelConfig m = read_export_config(export_config_path(weights));
  EXPECT_EQ(m.block_size, cfg.model.block_size);
  Model loaded(m, 3, read_safetensors(weights));
  Model from_ckpt(cfg.model, 3, named_tensors(full, final_params.data()));
  const std::string text = std::string(ATTNRES_SOURCE_DIR) + "/models/chunk.cpp";
  const double loss = eval_file(loaded.chunk, loaded.acts, text).loss;
  EXPECT_EQ(loss, eval_file(from_ckpt.chunk, from_ckpt.acts, text).loss);
  EXPECT_LT(loss, std::log(256.0));
}

// --export-dtype bf16: every value is the fp32 export's rounded to nearest
// even, eval reads it like the fp32 file, and its loss stays within 1 %.
TEST(Training, Bf16ExportIsTheRoundedModelAndEvalLoadsIt) {
  const fs::path dir = scratch_dir("export_bf16");
  const Config cfg = tiny_config({});
  const std::vector<NamedTensor> exported = train_and_export(cfg, dir);
  const std::string weights = (dir / "model_bf16.safetensors").string();
  write_safetensors(weights, exported, cfg.model, kernels::DType::BF16);
  {  // 2 bytes an element after the header (its length: the first 8 bytes, little-endian)
    std::ifstream f(weights, std::ios::binary);
    unsigned char len[8];
    f.read(reinterpret_cast<char*>(len), 8);
    uint64_t header = 0;
    for (int b = 0; b < 8; ++b) header |= uint64_t(len[b]) << (8 * b);
    uint64_t elements = 0;
    for (const NamedTensor& t : exported) elements += t.data.size();
    EXPECT_EQ(fs::file_size(weights) - 8 - header, 2 * elements);
  }
  const std::vector<NamedTensor> back = read_safetensors(weights);
  ASSERT_EQ(back.size(), exported.size());
  bool rounded = false;
  for (size_t i = 0; i < back.size(); ++i) {
    ASSERT_EQ(back[i].name, exported[i].name);
    ASSERT_EQ(back[i].shape, exported[i].shape);
    for (size_t j = 0; j < back[i].data.size(); ++j) {
      ASSERT_EQ(back[i].data[j], kernels::round_bf16(exported[i].data[j])) << back[i].name << " " << j;
      rounded = rounded || back[i].data[j] != exported[i].data[j];
    }
  }
  EXPECT_TRUE(rounded);
  Model fp32(cfg.model, 3, exported), bf16(cfg.model, 3, back);
  const std::string text = std::string(ATTNRES_SOURCE_DIR) + "/models/chunk_depth.cpp";
  const double want = eval_file(fp32.chunk, fp32.acts, text).loss;
  EXPECT_NEAR(eval_file(bf16.chunk, bf16.acts, text).loss, want, 0.01 * want);
}

// A validation file whose 7 windows make batches of 4 and 3: the short last
// batch is evaluated too, and the val loss is the mean over all 7 windows
// computed directly, one window at a time, from the exported model. `attnres
// eval` of the windows as a text file agrees.
TEST(Training, ValidationCoversEveryWindowIncludingAShortLastBatch) {
  const fs::path dir = scratch_dir("val");
  const TokenFile train_tokens(test_corpus_dir() + "/train.bin"), val_tokens(test_corpus_dir() + "/val.bin");
  const int T = 32, windows = 7;  // configs/tiny.yaml: seq_len 32, micro_batch_size 4
  const std::vector<uint8_t> val(val_tokens.tokens.begin(), val_tokens.tokens.begin() + windows * T + 1);
  write_token_file((dir / "train.bin").string(), train_tokens.tokens);
  write_token_file((dir / "val.bin").string(), val);
  const Config cfg = tiny_config({"data.dir=" + dir.string(), "train.eval_batches=3"});
  ASSERT_EQ(cfg.model.seq_len, T);
  ASSERT_EQ(cfg.train.micro_batch_size, 4);
  TrainResult r;
  const std::vector<NamedTensor> params = train_and_export(cfg, dir, &r);

  std::vector<Batch> one_window_each;
  std::string text;  // window w = tokens [w*T, w*T + T], as eval reads windows of T + 1
  for (int w = 0; w < windows; ++w) {
    Batch& b = one_window_each.emplace_back();
    b.B = 1, b.T = T;
    for (int t = 0; t < T; ++t) b.inputs.push_back(val[size_t(w * T + t)]), b.targets.push_back(val[size_t(w * T + t + 1)]);
    text.append(val.begin() + w * T, val.begin() + w * T + T + 1);
  }
  Model one(cfg.model, 1, params);
  const double direct = mean_loss(one.chunk, one.acts, one_window_each);
  EXPECT_NEAR(r.final_val_loss, direct, 1e-6 * direct);

  const fs::path text_path = dir / "val_windows.txt";
  std::ofstream(text_path, std::ios::binary) << text;
  Model three(cfg.model, 3, params);
  EXPECT_NEAR(eval_file(three.chunk, three.acts, text_path.string()).loss, r.final_val_loss, 1e-6 * direct);
}

TEST(Training, CorruptExportIsRejectedNamingTheFile) {
  const fs::path p = fs::temp_directory_path() / "attnres_bad.safetensors";
  std::ofstream(p) << "garbage";
  EXPECT_THROW(
      {
        try {
          read_safetensors(p.string());
        } catch (const std::runtime_error& e) {
          EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos);
          throw;
        }
      },
      std::runtime_error);
}

// `eval` checks an export's config.json with the training config's checks:
// a vocabulary without a row per byte, or norm_eps / rope_theta <= 0, is an
// error naming the file and the key (it used to print a loss, or nan).
TEST(ExportConfig, ValidatedLikeATrainingConfig) {
  const fs::path dir = fs::temp_directory_path() / ("attnres_export_config_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "config.json").string();
  auto write = [&](const std::string& vocab, const std::string& eps, const std::string& theta) {
    std::ofstream(path) << R"({"model": {"vocab_size": )" << vocab << R"(, "d_model": 32, "n_layers": 2, "n_heads": 4,
      "d_ff": 64, "seq_len": 16, "rope_theta": )" << theta << R"(, "norm_eps": )" << eps
                        << R"(}, "residual": {"mode": "attnres", "block_size": 2}})";
  };
  write("256", "1e-5", "10000");
  EXPECT_EQ(read_export_config(path).block_size, 2);
  for (const auto& [vocab, eps, theta, key] :
       {std::tuple{"2", "1e-5", "10000", "model.vocab_size"}, {"256", "0", "10000", "model.norm_eps"},
        {"256", "1e-5", "-1", "model.rope_theta"}}) {
    write(vocab, eps, theta);
    try {
      read_export_config(path);
      ADD_FAILURE() << key << " accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(path + ": " + key), std::string::npos) << e.what();
    }
  }
  fs::remove_all(dir);
}
