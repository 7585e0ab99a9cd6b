// End-to-end properties of the training loop: determinism, falling loss, and
// export -> eval giving the in-memory loss.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "kernels/memory.h"
#include "models/chunk.h"
#include "tests/test_corpus.h"
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

}  // namespace

TEST(Training, SameConfigTwiceIsBitwiseIdentical) {
  for (const char* mode : {"residual.mode=attnres", "residual.mode=standard"}) {
    const Config cfg = tiny_config({mode});
    const TrainResult a = train(cfg, quiet()), b = train(cfg, quiet());
    ASSERT_EQ(a.losses.size(), 6u);
    for (size_t i = 0; i < a.losses.size(); ++i) EXPECT_EQ(a.losses[i], b.losses[i]) << mode << " step " << i;
    EXPECT_EQ(a.params, b.params) << mode;
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

TEST(Training, ExportThenEvalGivesTheInMemoryLoss) {
  const fs::path dir = fs::temp_directory_path() / "attnres_test_export";
  fs::create_directories(dir);
  const std::string weights = (dir / "model.safetensors").string();
  TrainOptions o = quiet();
  o.export_path = weights;
  const Config cfg = tiny_config();
  const TrainResult r = train(cfg, o);

  // The trained model, in memory.
  Chunk mem;
  chunk_init(mem, cfg.model, 0, cfg.model.num_sublayers(), 3, 0);
  kernels::from_host(mem.dev, mem.params.data(), r.params.data(), r.params.size());
  ChunkActs mem_acts;
  acts_init(mem_acts, mem);
  const std::string text = std::string(ATTNRES_SOURCE_DIR) + "/models/chunk.cpp";
  const double in_memory = eval_file_loss(mem, mem_acts, text);

  // The same model loaded back from the export, as `attnres eval` does.
  const ModelConfig m = read_export_config(export_config_path(weights));
  EXPECT_EQ(m.block_size, cfg.model.block_size);
  Chunk loaded;
  chunk_init(loaded, m, 0, m.num_sublayers(), 3, 12345);
  ChunkActs loaded_acts;
  acts_init(loaded_acts, loaded);
  load_named_tensors(loaded, read_safetensors(weights), weights);
  EXPECT_EQ(in_memory, eval_file_loss(loaded, loaded_acts, text));
  EXPECT_LT(in_memory, std::log(256.0));

  // Names and shapes of DESIGN §1.2.
  const auto tensors = read_safetensors(weights);
  bool saw_query = false;
  for (const auto& t : tensors) {
    if (t.name == "layers.1.mlp.gate.weight") {
      EXPECT_EQ(t.shape, (std::vector<int64_t>{cfg.model.d_ff, cfg.model.d_model}));
    }
    if (t.name == "output_res.query") saw_query = true;
  }
  EXPECT_TRUE(saw_query);
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
