// Config loading: every rejection names the offending key (and value), good
// configs resolve S as documented, and config_to_yaml round-trips.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "runtime/config.h"

using namespace attnres;

namespace {

// A valid base config; each bad case appends/overrides one thing.
const char* kBase = R"(
model:
  d_model: 32
  n_layers: 2
  n_heads: 4
  d_ff: 64
  seq_len: 16
residual:
  mode: attnres
  block_size: 2
train:
  steps: 20
  grad_accum: 2
data:
  dir: data/x
)";

// Parses kBase with overrides, expects a ConfigError whose message holds every
// needle. Returns the message.
std::string expect_error(const std::string& yaml, const std::vector<std::string>& overrides,
                         const std::vector<std::string>& needles) {
  try {
    parse_config(yaml, "test.yaml", overrides);
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    for (const auto& n : needles)
      EXPECT_NE(msg.find(n), std::string::npos) << "message '" << msg << "' lacks '" << n << "'";
    return msg;
  }
  ADD_FAILURE() << "no ConfigError for overrides/yaml; expected mention of " << needles[0];
  return "";
}

std::string bad_set(const std::vector<std::string>& overrides,
                    const std::vector<std::string>& needles) {
  return expect_error(kBase, overrides, needles);
}

}  // namespace

TEST(Config, BaseIsValid) {
  Config c = parse_config(kBase, "test.yaml", {});
  EXPECT_EQ(c.model.d_model, 32);
  EXPECT_EQ(c.model.block_size, 2);
  EXPECT_EQ(c.model.num_blocks(), 2);
  EXPECT_EQ(c.data.dir, "data/x");
}

TEST(Config, DefaultsFromEmptyFile) {
  Config c = parse_config("", "empty.yaml", {});
  const Config d;
  EXPECT_EQ(c.model.vocab_size, 256);
  EXPECT_EQ(c.model.d_model, d.model.d_model);
  EXPECT_EQ(c.train.steps, d.train.steps);
  EXPECT_FLOAT_EQ(c.train.lr, d.train.lr);
  EXPECT_EQ(c.parallel.schedule, "1f1b");
  EXPECT_TRUE(c.model.attnres());
  // Default N = min(8, L): L = 4 -> N = 4, S = 1.
  EXPECT_EQ(c.model.num_sublayers(), 4);
  EXPECT_EQ(c.model.block_size, 1);
}

TEST(Config, DefaultNumBlocksIsEightClippedToL) {
  // L = 24, N = 8 -> S = 3.
  Config c = parse_config("model: {n_layers: 12}\n", "t.yaml", {});
  EXPECT_EQ(c.model.block_size, 3);
  EXPECT_EQ(c.model.num_blocks(), 8);
  // L = 6 -> N = 6 -> S = 1 (Full AttnRes).
  c = parse_config("model: {n_layers: 3}\n", "t.yaml", {});
  EXPECT_EQ(c.model.block_size, 1);
  // L = 20, N = 8 -> S = ceil(20/8) = 3 -> 7 blocks (default may give fewer than 8).
  c = parse_config("model: {n_layers: 10}\n", "t.yaml", {});
  EXPECT_EQ(c.model.block_size, 3);
  EXPECT_EQ(c.model.num_blocks(), 7);
}

TEST(Config, NumBlocksResolution) {
  // L = 16, N = 8 -> S = 2, exact.
  Config c = parse_config("model: {n_layers: 8}\nresidual: {num_blocks: 8}\n", "t.yaml", {});
  EXPECT_EQ(c.model.block_size, 2);
  EXPECT_EQ(c.residual_num_blocks, 8);
  EXPECT_EQ(c.residual_block_size, 0);
  // L = 10, N = 4 -> S = 3, blocks 3,3,3,1: remainder in the last block.
  c = parse_config("model: {n_layers: 5}\nresidual: {num_blocks: 4}\n", "t.yaml", {});
  EXPECT_EQ(c.model.block_size, 3);
  EXPECT_EQ(c.model.num_blocks(), 4);
  EXPECT_EQ(c.model.block_of(9), 3);
  // N = L -> Full AttnRes; N = 1 -> one block.
  c = parse_config("model: {n_layers: 5}\nresidual: {num_blocks: 10}\n", "t.yaml", {});
  EXPECT_EQ(c.model.block_size, 1);
  c = parse_config("model: {n_layers: 5}\nresidual: {num_blocks: 1}\n", "t.yaml", {});
  EXPECT_EQ(c.model.block_size, 10);
}

TEST(Config, StandardModeKeepsButIgnoresBlockKeys) {
  Config c = parse_config("residual: {mode: standard}\n", "t.yaml", {});
  EXPECT_FALSE(c.model.attnres());
  // residual.mode alone switches a config: the block keys stay as written.
  c = parse_config(kBase, "test.yaml", {"residual.mode=standard"});
  EXPECT_FALSE(c.model.attnres());
  EXPECT_EQ(c.residual_block_size, 2);
  Config back = parse_config(config_to_yaml(c), "rt.yaml", {"residual.mode=attnres"});
  EXPECT_TRUE(back.model.attnres());
  EXPECT_EQ(back.model.block_size, 2);
}

TEST(Config, OverridesApplyAfterFileAndAreTyped) {
  Config c = parse_config(kBase, "test.yaml",
                          {"train.lr=3e-4", "model.n_layers=4", "residual.block_size=3",
                           "parallel.cross_stage_cache=false", "checkpoint.dir=/tmp/ck",
                           "checkpoint.every=5", "train.seed=18446744073709551615"});
  EXPECT_FLOAT_EQ(c.train.lr, 3e-4f);
  EXPECT_EQ(c.model.n_layers, 4);
  EXPECT_EQ(c.model.block_size, 3);
  EXPECT_EQ(c.model.num_blocks(), 3);  // L = 8: 3, 3, 2
  EXPECT_FALSE(c.parallel.cross_stage_cache);
  EXPECT_EQ(c.checkpoint.dir, "/tmp/ck");
  EXPECT_EQ(c.checkpoint.every, 5);
  EXPECT_EQ(c.train.seed, 18446744073709551615ull);
  // The last override of a key wins.
  c = parse_config(kBase, "test.yaml", {"train.steps=70", "train.steps=90"});
  EXPECT_EQ(c.train.steps, 90);
  // block_size and num_blocks are one setting: a later one replaces the other.
  c = parse_config(kBase, "test.yaml", {"residual.num_blocks=1"});  // the file has block_size: 2
  EXPECT_EQ(c.model.block_size, 4);
  EXPECT_EQ(c.residual_block_size, 0);
  c = parse_config("model: {n_layers: 4}\nresidual: {num_blocks: 4}\n", "t.yaml",
                   {"residual.num_blocks=2", "residual.block_size=1"});
  EXPECT_EQ(c.model.block_size, 1);
  EXPECT_EQ(c.residual_num_blocks, 0);
  // A warm-up longer than a short run is allowed: the whole run is warm-up.
  c = parse_config(kBase, "test.yaml", {"train.steps=3", "train.warmup_steps=10"});
  EXPECT_EQ(c.train.warmup_steps, 10);
}

TEST(Config, RoundTrip) {
  Config a = parse_config(kBase, "test.yaml",
                          {"train.lr=0.0003", "train.min_lr=1e-05", "train.beta2=0.999",
                           "parallel.schedule=interleaved", "parallel.virtual_stages=2",
                           "parallel.layout='3, 1'", "checkpoint.dir='ck dir: x'",
                           "checkpoint.every=10", "checkpoint.async=true",
                           "model.norm_eps=1e-5", "train.seed=42", "data.dir=true"});
  const std::string y = config_to_yaml(a);
  Config b = parse_config(y, "roundtrip.yaml", {});
  EXPECT_EQ(config_to_yaml(b), y);
  EXPECT_EQ(b.train.lr, a.train.lr);  // bitwise: shortest float text round-trips
  EXPECT_EQ(b.train.min_lr, a.train.min_lr);
  EXPECT_EQ(b.model.norm_eps, a.model.norm_eps);
  EXPECT_EQ(b.train.beta2, a.train.beta2);
  EXPECT_EQ(b.parallel.layout, "3, 1");
  EXPECT_EQ(b.checkpoint.dir, "ck dir: x");
  EXPECT_EQ(b.data.dir, "true");
  EXPECT_TRUE(b.checkpoint.async);
  EXPECT_EQ(b.parallel.virtual_stages, 2);
  EXPECT_EQ(b.train.seed, 42ull);
  EXPECT_EQ(b.residual_block_size, 2);
  EXPECT_EQ(b.residual_num_blocks, 0);

  // num_blocks and standard mode round-trip as written.
  Config n = parse_config("model: {n_layers: 5}\nresidual: {num_blocks: 4}\n", "t.yaml", {});
  Config n2 = parse_config(config_to_yaml(n), "rt.yaml", {});
  EXPECT_EQ(n2.residual_num_blocks, 4);
  EXPECT_EQ(n2.model.block_size, 3);
  Config s = parse_config("residual: {mode: standard}\n", "t.yaml", {});
  EXPECT_FALSE(parse_config(config_to_yaml(s), "rt.yaml", {}).model.attnres());
}

TEST(Config, LoadFromFile) {
  const std::string path = ::testing::TempDir() + "attnres_cfg_test.yaml";
  {
    std::ofstream(path) << kBase;
  }
  Config c = load_config(path, {"train.steps=30"});
  EXPECT_EQ(c.train.steps, 30);
  EXPECT_EQ(c.model.d_model, 32);
  std::remove(path.c_str());
}

TEST(Config, ShippedConfigsAreValid) {
  for (const char* name : {"tiny.yaml", "small.yaml"}) {
    const std::string path = std::string(ATTNRES_SOURCE_DIR) + "/configs/" + name;
    Config c = load_config(path, {});
    EXPECT_TRUE(c.model.attnres()) << name;
  }
  Config small = load_config(std::string(ATTNRES_SOURCE_DIR) + "/configs/small.yaml", {});
  EXPECT_EQ(small.model.num_blocks(), 8);
  EXPECT_EQ(small.data.dir, "data/pystdlib");
  // 5-20 M parameters (DESIGN §1.2 tensors).
  const long long V = small.model.vocab_size, d = small.model.d_model,
                  F = small.model.d_ff, L = small.model.num_sublayers();
  const long long params = 2 * V * d + (L / 2) * (4 * d * d + 3 * d * F) + L * 3 * d + 3 * d;
  EXPECT_GE(params, 5'000'000);
  EXPECT_LE(params, 20'000'000);
}

// ---- Rejections: each names the key, and the value where there is one. ----

TEST(ConfigErrors, MissingFile) {
  try {
    load_config("/nonexistent/dir/cfg.yaml", {});
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/cfg.yaml"), std::string::npos);
  }
}

// yaml-cpp keeps the last of two equal keys and reads a quote left open to the
// end of the file; both are errors here, naming the line.
TEST(ConfigErrors, DuplicateKeysAndUnclosedQuotes) {
  expect_error("train:\n  steps: 5\n  steps: 7\n", {}, {"test.yaml:3", "train.steps", "given twice", "test.yaml:2"});
  expect_error("model:\n  d_model: 64\nmodel:\n  n_layers: 2\n", {}, {"test.yaml:3", "model", "section given twice"});
  expect_error("train:\n  lr: \"3e-4\n", {}, {"test.yaml:2", "unclosed double quote"});
  expect_error("data:\n  dir: 'data/x\n", {}, {"test.yaml:2", "unclosed single quote"});
  // Not quotes: an apostrophe inside a plain value, quotes in a comment, escapes.
  const Config c = parse_config("data:\n  dir: runs/bob's data  # it's \"here\"\ntrain:\n  lr: \"3e-4\"\n"
                                "checkpoint:\n  dir: 'it''s'\n",
                                "test.yaml", {});
  EXPECT_EQ(c.data.dir, "runs/bob's data");
  EXPECT_EQ(c.checkpoint.dir, "it's");
  EXPECT_FLOAT_EQ(c.train.lr, 3e-4f);
}

// A range error names where the key was set: its --set, or its file line.
TEST(ConfigErrors, RangeErrorsBlameWhereTheKeyWasSet) {
  const std::string from_set = expect_error(kBase, {"train.steps=0"}, {"--set train.steps=0: train.steps"});
  EXPECT_EQ(from_set.find("test.yaml"), std::string::npos) << from_set;
  expect_error("train:\n  lr: 1e-3\n  steps: 0\n", {}, {"test.yaml:3: train.steps: 0 must be >= 1"});
  expect_error(kBase, {"data.dir=\"runs"}, {"--set data.dir=\"runs", "unclosed double quote"});
}

// The depth attention carries its source pointers by value (kernels/ops.h):
// at most 1024 blocks, whichever key set them.
TEST(ConfigErrors, TooManyBlocksForTheDepthAttention) {
  bad_set({"model.n_layers=600", "residual.block_size=1"}, {"residual.block_size", "1200 blocks", "at most 1024"});
  bad_set({"model.n_layers=1200", "residual.num_blocks=1200"}, {"residual.num_blocks", "1200 blocks", "at most 1024"});
  EXPECT_EQ(parse_config(kBase, "test.yaml", {"model.n_layers=600", "residual.block_size=2"}).model.num_blocks(), 600);
}

TEST(ConfigErrors, DirectoryIsNotAConfig) {
  try {
    load_config(ATTNRES_SOURCE_DIR "/configs", {});
    FAIL() << "a directory loaded as a config";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("/configs: is a directory, not a config file"), std::string::npos) << e.what();
  }
}

TEST(ConfigErrors, YamlSyntaxNamesFileAndLine) {
  expect_error("model:\n  d_model: 32\n  n_heads: [4\n", {}, {"test.yaml:", "syntax"});
  const std::string m = expect_error("model:\n  d_model: 32\n n_heads: 4\n", {}, {"test.yaml:3"});
  EXPECT_FALSE(m.empty());
}

TEST(ConfigErrors, UnknownKeysAndSections) {
  expect_error(std::string(kBase) + "optimizer:\n  lr: 1\n", {}, {"optimizer", "unknown section"});
  expect_error("model:\n  d_modle: 32\n", {}, {"model.d_modle", "unknown key", "test.yaml:2"});
  expect_error("train:\n  lr: 1e-3\n  lr_decay: 0.5\n", {}, {"train.lr_decay", "unknown key"});
  bad_set({"model.nope=3"}, {"model.nope", "unknown key"});
  bad_set({"nosection.x=3"}, {"nosection.x", "unknown key"});
  bad_set({"train.lr"}, {"train.lr", "key=value"});
  expect_error("- 1\n- 2\n", {}, {"top level"});
  expect_error("model: 3\n", {}, {"model", "mapping"});
}

TEST(ConfigErrors, WrongTypes) {
  bad_set({"model.d_model=abc"}, {"model.d_model", "integer", "'abc'"});
  bad_set({"model.n_layers=2.5"}, {"model.n_layers", "integer", "'2.5'"});
  bad_set({"train.steps=3.0"}, {"train.steps", "integer"});
  bad_set({"train.lr=fast"}, {"train.lr", "number", "'fast'"});
  bad_set({"train.lr=.nan"}, {"train.lr", "finite"});
  bad_set({"parallel.cross_stage_cache=2"}, {"parallel.cross_stage_cache", "true or false", "'2'"});
  bad_set({"checkpoint.async=maybe"}, {"checkpoint.async", "true or false"});
  bad_set({"train.seed=-1"}, {"train.seed", "non-negative integer", "'-1'"});
  bad_set({"model.d_model=99999999999"}, {"model.d_model", "integer"});
  bad_set({"model.d_model="}, {"model.d_model", "integer", "null"});
  bad_set({"residual.mode=hybrid"}, {"residual.mode", "standard or attnres", "'hybrid'"});
  expect_error("model:\n  d_model: [32]\n", {}, {"model.d_model", "a list", "test.yaml:2"});
  expect_error("data:\n  dir: {a: 1}\n", {}, {"data.dir", "string"});
}

TEST(ConfigErrors, OutOfRange) {
  bad_set({"model.vocab_size=255"}, {"model.vocab_size", "255", "256"});
  bad_set({"model.d_model=0"}, {"model.d_model", "0", ">= 1"});
  bad_set({"model.n_layers=-2"}, {"model.n_layers", "-2"});
  // Sizes whose products would overflow are rejected, not wrapped (was "L = -2").
  bad_set({"model.n_layers=2147483647"}, {"model.n_layers", "2147483647", "exceeds 4096"});
  bad_set({"model.d_model=1048576"}, {"model.d_model", "exceeds 65536"});
  bad_set({"model.vocab_size=2000000000"}, {"model.vocab_size", "exceeds"});
  bad_set({"train.device=gpu"}, {"train.device", "'gpu'", "cpu or cuda"});
  bad_set({"train.on_nonfinite=ignore"}, {"train.on_nonfinite", "'ignore'", "stop or skip"});
  bad_set({"train.max_skipped_steps=-1"}, {"train.max_skipped_steps", "-1"});
  bad_set({"model.n_heads=0"}, {"model.n_heads", "0"});
  bad_set({"model.d_ff=0"}, {"model.d_ff", "0"});
  bad_set({"model.seq_len=0"}, {"model.seq_len", "0"});
  bad_set({"model.rope_theta=0"}, {"model.rope_theta", "0"});
  bad_set({"model.norm_eps=0"}, {"model.norm_eps", "0", "> 0"});
  bad_set({"model.norm_eps=-1e-6"}, {"model.norm_eps", "-1e-06"});
  bad_set({"train.steps=0"}, {"train.steps", "0"});
  bad_set({"train.micro_batch_size=0"}, {"train.micro_batch_size", "0"});
  bad_set({"train.grad_accum=0"}, {"train.grad_accum", "0"});
  bad_set({"train.lr=-0.001"}, {"train.lr", "-0.001"});
  bad_set({"train.min_lr=-1"}, {"train.min_lr", "-1"});
  bad_set({"train.lr=1e-4", "train.min_lr=1e-3"}, {"train.min_lr", "0.001", "train.lr"});
  bad_set({"train.warmup_steps=-1"}, {"train.warmup_steps", "-1"});
  bad_set({"train.weight_decay=-0.1"}, {"train.weight_decay", "-0.1"});
  bad_set({"train.beta1=1"}, {"train.beta1", "1", "[0, 1)"});
  bad_set({"train.beta2=-0.5"}, {"train.beta2", "-0.5"});
  bad_set({"train.adam_eps=0"}, {"train.adam_eps", "0"});
  bad_set({"train.grad_clip=-1"}, {"train.grad_clip", "-1"});
  bad_set({"train.eval_every=-1"}, {"train.eval_every", "-1"});
  bad_set({"train.eval_batches=0"}, {"train.eval_batches", "0"});
  bad_set({"train.log_every=0"}, {"train.log_every", "0"});
  bad_set({"train.threads=-1"}, {"train.threads", "-1"});
  bad_set({"data.dir="}, {"data.dir", "empty"});
  bad_set({"parallel.dp=0"}, {"parallel.dp", "0"});
  bad_set({"parallel.pp=0"}, {"parallel.pp", "0"});
  bad_set({"parallel.microbatches=-1"}, {"parallel.microbatches", "-1"});
  bad_set({"checkpoint.every=-1"}, {"checkpoint.every", "-1"});
  bad_set({"checkpoint.keep_last=0"}, {"checkpoint.keep_last", "0"});
}

// Sizes from the config whose products would wrap a 32- or 64-bit integer
// are refused by name (a wrapped layout sum once passed and aborted `plan`).
TEST(ConfigErrors, ProductsThatWouldOverflow) {
  bad_set({"parallel.pp=3", "parallel.layout=2147483647,2147483647,6"}, {"parallel.layout", "covers 4294967300"});
  bad_set({"parallel.pp=65536", "parallel.virtual_stages=65536", "parallel.schedule=interleaved"},
          {"parallel.pp", "4294967296 chunks"});
  bad_set({"train.micro_batch_size=2147483647"}, {"train.micro_batch_size", "16777216 tokens per microbatch"});
  bad_set({"train.micro_batch_size=1048577", "model.seq_len=16"}, {"train.micro_batch_size", "tokens per microbatch"});
  bad_set({"model.seq_len=1048576", "model.n_heads=4", "train.micro_batch_size=16"},
          {"train.micro_batch_size", "attention probabilities"});
  bad_set({"parallel.dp=2097152", "train.grad_accum=2097152"}, {"parallel.dp", "2097152 ranks exceed"});
}

TEST(ConfigErrors, ModelCombinations) {
  // Where the key was set (its --set, or its line in the file), the key, the value and why.
  bad_set({"model.d_model=100", "model.n_heads=3"},
          {"--set model.d_model=100: model.d_model: 100 is not divisible by model.n_heads (3)"});
  expect_error("model:\n  n_heads: 3\n  d_model: 100\n", {},
               {"test.yaml:3: model.d_model: 100 is not divisible by model.n_heads (3)"});
  bad_set({"model.d_model=24", "model.n_heads=8"}, {"model.n_heads", "head_dim", "3", "odd"});
}

// The layout is checked when the config loads (parallel/ reports it, the
// loader adds the file), so `train` and `plan` fail before any work.
// A layout error names where the layout was set (it named the file for a --set).
TEST(ConfigErrors, PipelineLayout) {
  bad_set({"parallel.layout=2,1,1"}, {"--set parallel.layout=2,1,1: parallel.layout", "3 chunks"});
  bad_set({"parallel.pp=2", "parallel.layout=4,0"}, {"--set parallel.layout=4,0: parallel.layout", "chunk 1"});
  expect_error(std::string(kBase) + "parallel:\n  pp: 2\n  layout: 4,0\n", {}, {"test.yaml:18: parallel.layout"});
}

// Validation microbatches fewer than the dp replicas: named as such, not as short data.
TEST(ConfigErrors, EvalBatchesBelowDp) {
  bad_set({"parallel.dp=2", "train.eval_batches=1"}, {"train.eval_batches", "raise train.eval_batches"});
}

TEST(ConfigErrors, ResidualCombinations) {
  bad_set({"residual.block_size=5"}, {"residual.block_size", "5", "L = 2 * model.n_layers = 4"});
  bad_set({"residual.block_size=0"}, {"residual.block_size", "0", ">= 1"});
  expect_error("model: {n_layers: 2}\nresidual: {num_blocks: 5}\n", {},
               {"residual.num_blocks", "5", "exceeds"});
  expect_error("model: {n_layers: 2}\nresidual: {num_blocks: 0}\n", {},
               {"residual.num_blocks", "0", ">= 1"});
  expect_error("model: {n_layers: 2}\nresidual: {block_size: 2, num_blocks: 2}\n", {},
               {"residual.block_size", "residual.num_blocks", "not both"});
  // L = 8, N = 5: S = 2 gives 4 blocks, not 5.
  expect_error("model: {n_layers: 4}\nresidual: {num_blocks: 5}\n", {},
               {"residual.num_blocks", "5", "gives 4 blocks"});
}

TEST(ConfigErrors, ParallelCombinations) {
  bad_set({"parallel.tp=8"}, {"parallel.tp", "8", "model.n_heads (4)", "whole heads"});
  bad_set({"parallel.tp=4", "model.d_ff=66"}, {"parallel.tp", "model.d_ff (66)"});
  bad_set({"parallel.tp=4", "model.vocab_size=258"}, {"parallel.tp", "model.vocab_size (258)", "pad"});
  bad_set({"parallel.tp=4", "model.seq_len=18", "parallel.sequence_parallel=true"},
          {"parallel.sequence_parallel", "model.seq_len (18)", "parallel.tp (4)"});
  EXPECT_NO_THROW(parse_config(kBase, "test.yaml", {"parallel.tp=4", "parallel.sequence_parallel=true"}));
  bad_set({"parallel.schedule=pipedream"}, {"parallel.schedule", "'pipedream'"});
  bad_set({"train.recompute=checkpoint"}, {"train.recompute", "none, selective, block or full", "'checkpoint'"});
  bad_set({"train.recompute=block", "residual.mode=standard"}, {"train.recompute", "standard residual has no blocks"});
  bad_set({"parallel.cached_grads=fast"}, {"parallel.cached_grads", "'fast'", "exact or local"});
  bad_set({"train.zero=2"}, {"train.zero", "2 is not a ZeRO stage", "expected 0, or 1"});
  bad_set({"parallel.virtual_stages=2"}, {"parallel.virtual_stages", "2", "interleaved"});
  bad_set({"parallel.schedule=interleaved"}, {"parallel.virtual_stages", "1", ">= 2"});
  bad_set({"parallel.virtual_stages=0"}, {"parallel.virtual_stages", "0"});
  bad_set({"parallel.pp=5"}, {"parallel.pp", "5", "L = 4"});
  bad_set({"parallel.pp=2", "parallel.schedule=interleaved", "parallel.virtual_stages=3"},
          {"parallel.pp", "6 chunks"});
  bad_set({"parallel.dp=3"}, {"train.grad_accum", "2", "parallel.dp (3)"});
  bad_set({"parallel.microbatches=2", "parallel.dp=2"},
          {"parallel.microbatches", "2", "train.grad_accum / parallel.dp = 1"});
}

// train.precision, parallel.hop_dtype (auto follows the precision) and train.tf32.
TEST(Config, PrecisionAndHopDtype) {
  EXPECT_EQ(parse_config(kBase, "test.yaml", {}).model.precision, kernels::DType::F32);
  const Config bf16 = parse_config(kBase, "test.yaml", {"train.precision=bf16"});
  EXPECT_EQ(bf16.model.precision, kernels::DType::BF16);
  EXPECT_EQ(bf16.model.hop_dtype, kernels::DType::BF16);
  EXPECT_EQ(kernels::dtype_size(bf16.model.hop_dtype), 2u);
  const Config wide = parse_config(kBase, "test.yaml", {"train.precision=bf16", "parallel.hop_dtype=fp32"});
  EXPECT_EQ(wide.model.hop_dtype, kernels::DType::F32);
  EXPECT_EQ(kernels::dtype_size(wide.model.hop_dtype), 4u);
  EXPECT_EQ(parse_config(config_to_yaml(bf16), "round trip", {}).model.precision, kernels::DType::BF16);
  bad_set({"train.precision=fp16"}, {"train.precision", "fp32 or bf16", "'fp16'"});
  bad_set({"parallel.hop_dtype=fp8"}, {"parallel.hop_dtype", "'fp8'", "auto, fp32 or bf16"});
  bad_set({"parallel.hop_dtype=bf16"}, {"parallel.hop_dtype", "train.precision: bf16"});
  bad_set({"train.tf32=true"}, {"train.tf32", "train.device: cuda", "this run is cpu, fp32"});
  bad_set({"train.tf32=true", "train.device=cuda", "train.precision=bf16"}, {"train.tf32", "cuda, bf16"});
  EXPECT_NO_THROW(parse_config(kBase, "test.yaml", {"train.tf32=true", "train.device=cuda"}));
}

// model.attention: auto is flash on CUDA and materialized on the CPU.
TEST(Config, AttentionFollowsTheDevice) {
  EXPECT_EQ(parse_config(kBase, "test.yaml", {}).model.attention, Attention::Materialized);
  EXPECT_EQ(parse_config(kBase, "test.yaml", {"train.device=cuda"}).model.attention, Attention::Flash);
  EXPECT_EQ(parse_config(kBase, "test.yaml", {"model.attention=flash"}).model.attention, Attention::Flash);
  EXPECT_EQ(parse_config(kBase, "test.yaml", {"train.device=cuda", "model.attention=materialized"}).model.attention,
            Attention::Materialized);
  const Config flash = parse_config(kBase, "test.yaml", {"model.attention=flash"});
  EXPECT_EQ(parse_config(config_to_yaml(flash), "round trip", {}).model.attention, Attention::Flash);
  bad_set({"model.attention=sparse"}, {"model.attention", "'sparse'", "auto, flash or materialized"});
  bad_set({"model.attention=flash", "model.d_model=1024", "model.n_heads=2"},
          {"model.attention", "512 exceeds 256"});
}

TEST(ConfigErrors, CheckpointCombinations) {
  bad_set({"checkpoint.every=10"}, {"checkpoint.every", "10", "checkpoint.dir"});
}

TEST(ConfigErrors, OverrideErrorsNameTheOverride) {
  bad_set({"train.steps=ten"}, {"--set train.steps=ten", "train.steps"});
}

TEST(ConfigErrors, FileErrorsNameTheLine) {
  expect_error("model:\n  d_model: 32\n  n_heads: four\n", {}, {"test.yaml:3", "model.n_heads"});
}
