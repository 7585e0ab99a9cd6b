// Checkpoints (issue #4) through the `attnres` binary under mpirun: resumed
// runs against uninterrupted ones (bitwise on the same layout, 1e-5 after
// resharding pp=4 -> pp=2 x dp=2 and -> pp=1), every validation error with
// its message and the --resume auto fallback, keep_last pruning, the
// COMMITTED marker, and the inspect / export tools.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/e2e/eval_output.h"
#include "tests/e2e/param_compare.h"
#include "tests/test_corpus.h"
#include "runtime/data.h"
#include "runtime/safetensors.h"

using namespace attnres;
namespace fs = std::filesystem;

namespace {

const fs::path kRoot = fs::temp_directory_path() / "attnres_ckpt_test";
constexpr int kSteps = 8;

// 8 sublayers, 4 microbatches of 2 x 16 tokens, one thread per rank.
std::vector<std::string> base_sets() {
  return {"data.dir=" + test_corpus_dir(), "model.n_layers=4", "model.seq_len=16", "train.micro_batch_size=2",
          "train.grad_accum=4", "train.steps=" + std::to_string(kSteps), "train.warmup_steps=2",
          "train.eval_every=4", "train.eval_batches=2", "train.threads=1", "checkpoint.keep_last=10"};
}

struct Out {
  int rc = -1;
  std::string log;
  std::vector<int> steps;
  std::vector<double> losses;
  std::vector<NamedTensor> params;  // the --export of the run
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

int shell(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

// `attnres train` in kRoot/<name> (created if absent; `out` is overwritten).
Out train(const std::string& name, const std::string& out, int np, std::vector<std::string> sets,
          const std::string& extra = "") {
  const fs::path dir = kRoot / name;
  fs::create_directories(dir);
  std::vector<std::string> all = base_sets();
  all.insert(all.end(), sets.begin(), sets.end());
  std::string cmd = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np " + std::to_string(np) +
                    " --oversubscribe " ATTNRES_BINARY_DIR "/attnres train --config " ATTNRES_SOURCE_DIR
                    "/configs/tiny.yaml --peak-gflops 1 --set checkpoint.dir=" + (dir / "ckpt").string();
  for (const auto& s : all) cmd += " --set '" + s + "'";
  const fs::path metrics = dir / (out + ".jsonl"), model = dir / (out + ".safetensors"), log = dir / (out + ".log");
  fs::remove(metrics), fs::remove(model);
  cmd += " --metrics " + metrics.string() + " --export " + model.string() + " " + extra + " > " + log.string() + " 2>&1";
  Out o;
  o.rc = shell(cmd);
  o.log = slurp(log);
  if (o.rc != 0) return o;
  std::ifstream f(metrics);
  for (std::string line; std::getline(f, line);) {
    const auto j = nlohmann::json::parse(line);
    o.steps.push_back(j.at("step"));
    o.losses.push_back(j.at("loss"));
  }
  o.params = read_safetensors(model.string());
  return o;
}

Out train_ok(const std::string& name, const std::string& out, int np, std::vector<std::string> sets,
             const std::string& extra = "") {
  Out o = train(name, out, np, std::move(sets), extra);
  EXPECT_EQ(o.rc, 0) << name << "/" << out << ":\n" << o.log;
  return o;
}

// `attnres <args>`, one process; returns exit code, output in *log.
int tool(const std::string& name, const std::string& args, std::string* log) {
  fs::create_directories(kRoot / name);
  const fs::path out = kRoot / name / "tool.log";
  const int rc = shell(ATTNRES_BINARY_DIR "/attnres " + args + " > " + out.string() + " 2>&1");
  *log = slurp(out);
  return rc;
}

fs::path ckpt(const std::string& name, int step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08d", step);
  return kRoot / name / "ckpt" / buf;
}

// The resumed run's steps (first+1 .. kSteps) against the reference: losses
// within rel (0 = bit for bit), and final parameters by expect_params_match.
void expect_continues(const Out& ref, const Out& got, int first, double rel, const std::string& what) {
  ASSERT_EQ(ref.losses.size(), size_t(kSteps)) << what;
  ASSERT_EQ(got.losses.size(), size_t(kSteps - first)) << what << "\n" << got.log;
  for (size_t i = 0; i < got.losses.size(); ++i) {
    EXPECT_EQ(got.steps[i], first + 1 + int(i)) << what;
    const double a = ref.losses[size_t(first) + i], b = got.losses[i];
    EXPECT_TRUE(rel == 0 ? a == b : std::fabs(a - b) <= rel * std::fabs(a))
        << what << " step " << first + 1 + int(i) << ": " << a << " vs " << b;
  }
  expect_params_match(ref.params, got.params, rel, what);
}

// Uninterrupted without checkpoints; the same with checkpoints every 3 steps
// (3, 6 and the last, 8); then, with the checkpoints after step 3 removed as
// if the job had died after writing step 3, `--resume auto` to the end.
void check_resume(const std::string& name, int np, const std::vector<std::string>& sets, bool async) {
  fs::remove_all(kRoot / name / "ckpt");  // an earlier run's: a fresh run refuses them
  const Out ref = train_ok(name, "ref", np, sets);
  fs::remove_all(kRoot / name / "ckpt");
  std::vector<std::string> ck = sets;
  ck.insert(ck.end(), {"checkpoint.every=3", std::string("checkpoint.async=") + (async ? "true" : "false")});
  const Out saved = train_ok(name, "saved", np, ck);
  expect_continues(ref, saved, 0, 0.0, name + ": run with checkpoints");
  for (int s : {3, 6, 8}) EXPECT_TRUE(fs::exists(ckpt(name, s) / "COMMITTED")) << name << " step " << s;
  fs::remove_all(ckpt(name, 6)), fs::remove_all(ckpt(name, 8));
  const Out resumed = train_ok(name, "resumed", np, ck, "--resume auto");
  EXPECT_NE(resumed.log.find("(step 3)"), std::string::npos) << resumed.log;
  expect_continues(ref, resumed, 3, 0.0, name + ": resumed at step 3");
}

const std::vector<std::string> kGoodSets = {"residual.block_size=2", "checkpoint.every=2"};

// Checkpoints of steps 2, 4, 6, 8 of one process, and its uninterrupted
// losses; copied for each test that damages them. One per test process
// (CTest may run the tests of this file in parallel).
struct Good {
  Out ref;
  std::string name = "good_" + std::to_string(::getpid());
  fs::path dir = kRoot / name / "ckpt";
  ~Good() { fs::remove_all(kRoot / name); }
};
const Good& good() {
  static Good g;
  static const bool trained = (g.ref = train_ok(g.name, "ref", 1, kGoodSets), true);
  assert(trained);
  return g;
}

// A fresh copy of the good checkpoints in kRoot/<name>/ckpt.
void copy_good(const std::string& name) {
  fs::remove_all(kRoot / name);
  fs::create_directories(kRoot / name);
  fs::copy(good().dir, kRoot / name / "ckpt", fs::copy_options::recursive);
}

void flip_byte(const fs::path& p, size_t at) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(long(at));
  char c = 0;
  f.read(&c, 1);
  c = char(c ^ 0x40);
  f.seekp(long(at));
  f.write(&c, 1);
}

void replace_in_file(const fs::path& p, const std::string& from, const std::string& to) {
  std::string s = slurp(p);
  const size_t at = s.find(from);
  ASSERT_NE(at, std::string::npos) << from << " not in " << p;
  s.replace(at, from.size(), to);
  std::ofstream(p, std::ios::binary | std::ios::trunc) << s;
}

// Damages step 8 with `damage`; then an explicit --resume of it fails naming
// `message`, and --resume auto reports the rejection, falls back to step 6
// and finishes with the uninterrupted run's last two losses, bit for bit.
// Nothing on disk is deleted by the failed load.
void check_rejected(const std::string& name, const std::function<void(const fs::path&)>& damage,
                    const std::string& message) {
  copy_good(name);
  const fs::path bad = ckpt(name, 8);
  damage(bad);
  const Out explicit_run = train(name, "explicit", 1, kGoodSets, "--resume " + bad.string());
  EXPECT_NE(explicit_run.rc, 0) << name;
  EXPECT_NE(explicit_run.log.find(message), std::string::npos) << name << ": expected '" << message << "' in\n"
                                                               << explicit_run.log;
  EXPECT_TRUE(fs::exists(bad)) << name << ": a failed load must not delete the checkpoint";
  // With auto, the run also writes step 8 again: the damaged one is moved aside, not lost.
  const Out auto_run = train_ok(name, "auto", 1, kGoodSets, "--resume auto");
  EXPECT_NE(auto_run.log.find("rejected " + bad.string() + ": "), std::string::npos) << auto_run.log;
  EXPECT_NE(auto_run.log.find(message), std::string::npos) << auto_run.log;
  EXPECT_NE(auto_run.log.find("falling back to the previous complete checkpoint " + ckpt(name, 6).string()),
            std::string::npos)
      << auto_run.log;
  expect_continues(good().ref, auto_run, 6, 0.0, name + ": auto fallback");
  EXPECT_TRUE(fs::exists(bad.string() + ".superseded")) << name;
}

size_t size_of(const fs::path& p) { return size_t(fs::file_size(p)); }

}  // namespace

TEST(CheckpointResume, StandardOneF1B) {
  check_resume("std_1f1b", 2, {"residual.mode=standard", "parallel.pp=2"}, false);
}
TEST(CheckpointResume, BlockAttnResOneF1BAsync) {
  check_resume("block_1f1b", 2, {"residual.block_size=2", "parallel.pp=2"}, true);
}
TEST(CheckpointResume, StandardInterleavedAsync) {
  check_resume("std_il", 2, {"residual.mode=standard", "parallel.pp=2", "parallel.schedule=interleaved",
                             "parallel.virtual_stages=2"}, true);
}
TEST(CheckpointResume, BlockAttnResInterleaved) {
  check_resume("block_il", 2, {"residual.block_size=2", "parallel.pp=2", "parallel.schedule=interleaved",
                               "parallel.virtual_stages=2"}, false);
}

// Saved at pp=4 (step 4), loaded at pp=2 x dp=2 and at pp=1, against the
// uninterrupted single process run.
TEST(CheckpointReshard, Pp4ToPp2Dp2AndPp1) {
  const std::vector<std::string> block = {"residual.block_size=2", "checkpoint.every=4"};
  for (const char* d : {"reshard", "reshard_a", "reshard_b"}) fs::remove_all(kRoot / d);
  const Out ref = train_ok("reshard_ref", "ref", 1, {"residual.block_size=2"});
  std::vector<std::string> pp4 = block;
  pp4.push_back("parallel.pp=4");
  train_ok("reshard", "pp4", 4, pp4);
  const fs::path step4 = ckpt("reshard", 4);
  ASSERT_TRUE(fs::exists(step4 / "rank3.bin"));
  std::vector<std::string> pp2dp2 = block;
  pp2dp2.insert(pp2dp2.end(), {"parallel.pp=2", "parallel.dp=2", "checkpoint.dir=" + (kRoot / "reshard_a").string()});
  expect_continues(ref, train_ok("reshard", "pp2dp2", 4, pp2dp2, "--resume " + step4.string()), 4, 1e-5,
                   "pp=4 -> pp=2 x dp=2");
  std::vector<std::string> pp1 = block;
  pp1.push_back("checkpoint.dir=" + (kRoot / "reshard_b").string());
  expect_continues(ref, train_ok("reshard", "pp1", 1, pp1, "--resume " + step4.string()), 4, 1e-5, "pp=4 -> pp=1");
}

// Checkpoints hold the fp32 master weights (DESIGN §11): a bf16 run resumes
// bit for bit on its layout, and the same checkpoint resumes in fp32 (the
// steps then follow the bf16 run within 2 %).
TEST(CheckpointResume, Bf16AndBackToFp32) {
  const std::vector<std::string> bf16 = {"residual.block_size=2", "parallel.pp=2", "train.precision=bf16"};
  check_resume("bf16", 2, bf16, false);
  fs::remove_all(kRoot / "bf16_ref");
  const Out ref = train_ok("bf16_ref", "ref", 2, bf16);  // beside bf16/ckpt, which holds another run's checkpoints
  ASSERT_EQ(ref.losses.size(), size_t(kSteps)) << ref.log;
  std::vector<std::string> fp32 = bf16;
  fp32.back() = "train.precision=fp32";
  const Out resumed = train_ok("bf16", "fp32", 2, fp32, "--resume " + ckpt("bf16", 3).string());
  ASSERT_EQ(resumed.losses.size(), size_t(kSteps - 3)) << resumed.log;
  bool differ = false;
  for (size_t i = 0; i < resumed.losses.size(); ++i) {
    EXPECT_NEAR(resumed.losses[i], ref.losses[3 + i], 0.02 * ref.losses[3 + i]) << "step " << 4 + i;
    differ = differ || resumed.losses[i] != ref.losses[3 + i];
  }
  EXPECT_TRUE(differ) << "the fp32 resume gave the bf16 run's bits";
}

// Tensor parallelism (DESIGN §6): each rank writes its own shards; the same
// layout resumes bit for bit, and any other tp (and dp) loads them.
TEST(CheckpointResume, TensorParallelSequenceParallel) {
  check_resume("tp2pp2", 4, {"residual.block_size=2", "parallel.tp=2", "parallel.pp=2",
                             "parallel.sequence_parallel=true"}, false);
}

TEST(CheckpointReshard, Tp2Pp2ToTp1Tp4AndDp2Tp2) {
  const std::vector<std::string> block = {"residual.block_size=2", "checkpoint.every=4"};
  for (const char* d : {"tpshard", "tpshard_a", "tpshard_b", "tpshard_c"}) fs::remove_all(kRoot / d);
  const Out ref = train_ok("tpshard_ref", "ref", 1, {"residual.block_size=2"});
  std::vector<std::string> saved = block;
  saved.insert(saved.end(), {"parallel.tp=2", "parallel.pp=2", "parallel.sequence_parallel=true"});
  train_ok("tpshard", "tp2pp2", 4, saved);
  const fs::path step4 = ckpt("tpshard", 4);
  ASSERT_TRUE(fs::exists(step4 / "rank3.bin"));
  const std::vector<std::pair<int, std::vector<std::string>>> targets = {
      {1, {"checkpoint.dir=" + (kRoot / "tpshard_a").string()}},
      {4, {"parallel.tp=4", "checkpoint.dir=" + (kRoot / "tpshard_b").string()}},
      {4, {"parallel.tp=2", "parallel.dp=2", "checkpoint.dir=" + (kRoot / "tpshard_c").string()}}};
  for (const auto& [np, sets] : targets) {
    std::vector<std::string> all = block;
    all.insert(all.end(), sets.begin(), sets.end());
    expect_continues(ref, train_ok("tpshard", "np" + std::to_string(np) + "_" + std::to_string(all.size()), np, all,
                                   "--resume " + step4.string()),
                     4, 1e-5, "tp=2 x pp=2 -> " + sets.front());
  }
}

// ZeRO-1 (train.zero: 1): dp rank 0 writes the AdamW state whole, so the same
// layout resumes bit for bit (async, the parts gathered at the snapshot) ...
TEST(CheckpointResume, ZeroOneAsync) {
  check_resume("zero1", 4, {"residual.block_size=2", "parallel.dp=2", "parallel.pp=2", "train.zero=1"}, true);
}

// ... and a checkpoint of zero: 1 loads with zero: 0 and at another dp, and
// the reverse, against the uninterrupted single process run (1e-5: the dp
// sums are reordered).
TEST(CheckpointReshard, ZeroOneToZeroZeroAndBack) {
  const std::vector<std::string> block = {"residual.block_size=2", "checkpoint.every=4"};
  for (const char* d : {"zshard", "zshard_a", "zshard_b", "zshard_c", "zshard_d", "zshard_ref"}) fs::remove_all(kRoot / d);
  const Out ref = train_ok("zshard_ref", "ref", 1, block);  // zero: 0, dp = 1; its step 4 is the reverse's start
  std::vector<std::string> saved = block;
  saved.insert(saved.end(), {"parallel.dp=2", "train.zero=1"});
  train_ok("zshard", "zero1_dp2", 2, saved);
  const fs::path zero1 = ckpt("zshard", 4), zero0 = ckpt("zshard_ref", 4);
  ASSERT_TRUE(fs::exists(zero1 / "COMMITTED") && fs::exists(zero0 / "COMMITTED"));
  struct Target {
    int np;
    std::vector<std::string> sets;
    fs::path from;
    std::string what;
  };
  const std::vector<Target> targets = {
      {2, {"parallel.dp=2", "train.zero=0", "checkpoint.dir=" + (kRoot / "zshard_a").string()}, zero1,
       "zero 1 dp=2 -> zero 0 dp=2"},
      {1, {"checkpoint.dir=" + (kRoot / "zshard_b").string()}, zero1, "zero 1 dp=2 -> zero 0 dp=1"},
      {2, {"parallel.dp=2", "train.zero=1", "checkpoint.dir=" + (kRoot / "zshard_c").string()}, zero0,
       "zero 0 dp=1 -> zero 1 dp=2"},
      {4, {"parallel.dp=2", "parallel.pp=2", "train.zero=1", "checkpoint.dir=" + (kRoot / "zshard_d").string()},
       zero0, "zero 0 dp=1 -> zero 1 dp=2 x pp=2"}};
  for (const Target& t : targets) {
    std::vector<std::string> all = block;
    all.insert(all.end(), t.sets.begin(), t.sets.end());
    expect_continues(ref, train_ok("zshard", "to_" + std::to_string(&t - targets.data()), t.np, all,
                                   "--resume " + t.from.string()),
                     4, 1e-5, t.what);
  }
}

// The export of a tp run is the whole model, as at tp = 1: the same names and
// shapes, the tp = 1 run's values within the rule for reordered sums, and
// `attnres eval` of it gives the tp = 1 export's loss.
TEST(CheckpointTools, ExportOfTensorParallelRunIsTheWholeModel) {
  const Out ref = train_ok("tpexport", "tp1", 1, {"residual.block_size=2"});
  const Out tp = train_ok("tpexport", "tp2", 2, {"residual.block_size=2", "parallel.tp=2"});
  expect_params_match(ref.params, tp.params, 1e-5, "tp=2 export");
  std::string a, b;
  const std::string input = "--input " ATTNRES_SOURCE_DIR "/models/chunk.cpp";
  ASSERT_EQ(tool("tpexport", "eval --weights " + (kRoot / "tpexport" / "tp1.safetensors").string() + " " + input, &a), 0) << a;
  ASSERT_EQ(tool("tpexport", "eval --weights " + (kRoot / "tpexport" / "tp2.safetensors").string() + " " + input, &b), 0) << b;
  const EvalOutput la = parse_eval_output(a), lb = parse_eval_output(b);
  ASSERT_TRUE(la.parsed && lb.parsed) << a << b;
  EXPECT_NEAR(la.loss, lb.loss, 1e-5 * la.loss);
}

TEST(CheckpointValidation, ManifestNotJson) {
  check_rejected("v_json", [](const fs::path& c) { std::ofstream(c / "manifest.json") << "{\"format\": "; },
                 "manifest.json: not valid JSON");
}
TEST(CheckpointValidation, ShardMissing) {
  check_rejected("v_missing", [](const fs::path& c) { fs::remove(c / "rank0.bin"); },
                 "rank0.bin: cannot open shard holding tensor embed.weight (param)");
}
TEST(CheckpointValidation, ChecksumMismatch) {
  // The first record is embed.weight (param) at byte 0.
  check_rejected("v_flip", [](const fs::path& c) { flip_byte(c / "rank0.bin", 100); },
                 "rank0.bin: checksum mismatch in tensor embed.weight (param)");
}
TEST(CheckpointValidation, TruncatedShard) {
  check_rejected("v_trunc", [](const fs::path& c) { fs::resize_file(c / "rank0.bin", size_of(c / "rank0.bin") / 2); },
                 "rank0.bin: truncated: the file has");
}
TEST(CheckpointValidation, OtherFormatVersion) {
  check_rejected("v_version",
                 [](const fs::path& c) { replace_in_file(c / "manifest.json", "\"format_version\": 1", "\"format_version\": 2"); },
                 "manifest.json: format version 2, but this build reads version 1");
}
TEST(CheckpointValidation, ModelConfigDiffers) {
  check_rejected("v_model", [](const fs::path& c) { replace_in_file(c / "manifest.json", "d_ff: 64", "d_ff: 48"); },
                 "model config differs: model.d_ff is 48 in the checkpoint but 64 in this run");
  // And the other way round: this run's model differs from every checkpoint.
  std::vector<std::string> sets = kGoodSets;
  sets.push_back("model.n_heads=2");
  const Out o = train("v_model", "heads", 1, sets, "--resume " + ckpt("v_model", 6).string());
  EXPECT_NE(o.rc, 0);
  EXPECT_NE(o.log.find("model.n_heads is 4 in the checkpoint but 2 in this run"), std::string::npos) << o.log;
  const Out a = train("v_model", "heads_auto", 1, sets, "--resume auto");
  EXPECT_NE(a.rc, 0) << "auto must not start fresh beside checkpoints it cannot load";
  EXPECT_NE(a.log.find("complete checkpoints in"), std::string::npos) << a.log;
  EXPECT_TRUE(fs::exists(ckpt("v_model", 2) / "COMMITTED"));
}

// A directory without the marker is never loaded: auto skips it, a path is an error.
TEST(CheckpointCommit, WithoutMarkerIgnored) {
  copy_good("nomarker");
  fs::remove(ckpt("nomarker", 8) / "COMMITTED");
  const Out e = train("nomarker", "explicit", 1, kGoodSets, "--resume " + ckpt("nomarker", 8).string());
  EXPECT_NE(e.rc, 0);
  EXPECT_NE(e.log.find("no COMMITTED marker"), std::string::npos) << e.log;
  const Out a = train_ok("nomarker", "auto", 1, kGoodSets, "--resume auto");
  EXPECT_NE(a.log.find("(step 6)"), std::string::npos) << a.log;
  expect_continues(good().ref, a, 6, 0.0, "auto skips the uncommitted step 8");
}

// keep_last = 2 keeps the newest two complete checkpoints and removes the
// leftover temporary directory of a crashed write of step 3; async commits
// (and prunes, off the training thread) the same way.
TEST(CheckpointCommit, KeepLastPrunes) {
  for (bool async : {false, true}) {
    const std::string name = async ? "keep_async" : "keep_sync";
    fs::remove_all(kRoot / name);
    fs::create_directories(kRoot / name / "ckpt" / ".tmp_step_3");
    std::ofstream(kRoot / name / "ckpt" / ".tmp_step_3" / "rank0.bin") << "partial";
    const Out o = train_ok(name, "run", 1,
                           {"residual.block_size=2", "checkpoint.every=2", "checkpoint.keep_last=2",
                            std::string("checkpoint.async=") + (async ? "true" : "false")});
    std::vector<std::string> left;
    for (const auto& e : fs::directory_iterator(kRoot / name / "ckpt")) left.push_back(e.path().filename().string());
    std::sort(left.begin(), left.end());
    EXPECT_EQ(left, (std::vector<std::string>{"LOCK", "step_00000006", "step_00000008"})) << name;
    expect_continues(good().ref, o, 0, 0.0, name + ": checkpointing changes nothing");
  }
}

TEST(CheckpointTools, InspectVerifiesChecksums) {
  copy_good("inspect");
  std::string log;
  EXPECT_EQ(tool("inspect", "checkpoint inspect " + ckpt("inspect", 8).string(), &log), 0) << log;
  // Three records (param, m, v) per tensor of the export.
  const size_t n_tensors = good().ref.params.size();
  EXPECT_NE(log.find("checksums: all " + std::to_string(3 * n_tensors) + " verified"), std::string::npos) << log;
  EXPECT_NE(log.find("step 8, optimizer step 8"), std::string::npos) << log;
  flip_byte(ckpt("inspect", 8) / "rank0.bin", size_of(ckpt("inspect", 8) / "rank0.bin") - 3);
  EXPECT_NE(tool("inspect", "checkpoint inspect " + ckpt("inspect", 8).string(), &log), 0) << log;
  EXPECT_NE(log.find("checksum mismatch in tensor lm_head.weight (adam_v)"), std::string::npos) << log;
  EXPECT_NE(log.find("1 of " + std::to_string(3 * n_tensors) + " tensors failed"), std::string::npos) << log;
}

// The export of the last checkpoint equals the run's own --export, bit for bit.
TEST(CheckpointTools, ExportMatchesTrainedWeights) {
  const fs::path out = kRoot / "export" / "model.safetensors";
  fs::create_directories(out.parent_path());
  std::string log;
  ASSERT_EQ(tool("export", "export --checkpoint " + (good().dir / "step_00000008").string() + " --out " + out.string(), &log), 0)
      << log;
  const std::vector<NamedTensor> got = read_safetensors(out.string());
  const std::vector<NamedTensor>& want = good().ref.params;
  ASSERT_EQ(got.size(), want.size());
  for (size_t t = 0; t < got.size(); ++t) {
    EXPECT_EQ(got[t].name, want[t].name);
    EXPECT_EQ(got[t].shape, want[t].shape);
    EXPECT_TRUE(got[t].data == want[t].data) << got[t].name;
  }
  EXPECT_TRUE(fs::exists(export_config_path(out.string())));
  // An uncommitted checkpoint is not exported either.
  copy_good("export_nomarker");
  fs::remove(ckpt("export_nomarker", 8) / "COMMITTED");
  EXPECT_NE(tool("export_nomarker", "export --checkpoint " + ckpt("export_nomarker", 8).string() + " --out " +
                                        (kRoot / "export_nomarker" / "m.safetensors").string(), &log), 0);
  EXPECT_NE(log.find("no COMMITTED marker"), std::string::npos) << log;
}
