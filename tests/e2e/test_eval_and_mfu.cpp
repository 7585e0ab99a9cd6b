// Validation and MFU through the `attnres` binary under mpirun (issue #7):
// dp replicas that split the validation windows, with a short last batch
// padded through a pipeline hop, report the loss `attnres eval` gives on the
// same windows; MFU never exceeds 100 %, and --peak-gflops rejects
// non-positive values.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/data.h"
#include "tests/e2e/eval_output.h"
#include "tests/test_corpus.h"

using namespace attnres;
namespace fs = std::filesystem;

namespace {

const fs::path kRoot = fs::temp_directory_path() / "attnres_eval_mfu_test";

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

struct Outcome {
  int rc = -1;
  std::string log;                     // stdout and stderr
  std::vector<nlohmann::json> steps;   // the metrics lines
};

// `mpirun -np np attnres <args>` in kRoot/<name>; metrics in <name>/metrics.jsonl.
Outcome run_attnres(const std::string& name, int np, const std::string& args) {
  const fs::path dir = kRoot / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string cmd = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np " +
                          std::to_string(np) + " --oversubscribe " ATTNRES_BINARY_DIR "/attnres " + args +
                          " > " + (dir / "log.txt").string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  Outcome r;
  r.rc = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
  r.log = slurp(dir / "log.txt");
  std::ifstream f(dir / "metrics.jsonl");
  for (std::string line; std::getline(f, line);) r.steps.push_back(nlohmann::json::parse(line));
  return r;
}

std::string train_args(const std::string& name, const std::vector<std::string>& sets) {
  std::string a = "train --config " ATTNRES_SOURCE_DIR "/configs/tiny.yaml --metrics " +
                  (kRoot / name / "metrics.jsonl").string();
  for (const std::string& s : sets) a += " --set '" + s + "'";
  return a;
}

}  // namespace

// 7 validation windows of 32 tokens in batches of 4: batch 0 (4 windows) on dp
// replica 0, batch 1 (3 windows + 1 masked row) on replica 1, each through a
// 2-stage pipeline. The final val loss is the mean over the 7 windows, as
// `attnres eval` computes it from the export on those windows.
TEST(Evaluation, DpReplicasSplitTheWindowsAndEvalAgrees) {
  const fs::path data = kRoot / "data";
  fs::create_directories(data);
  const TokenFile train(test_corpus_dir() + "/train.bin"), val(test_corpus_dir() + "/val.bin");
  const int T = 32, windows = 7;
  write_token_file((data / "train.bin").string(), train.tokens);
  write_token_file((data / "val.bin").string(),
                   std::vector<uint8_t>(val.tokens.begin(), val.tokens.begin() + windows * T + 1));
  std::ofstream text(data / "windows.txt", std::ios::binary);  // window w = tokens [w*T, w*T + T]
  for (int w = 0; w < windows; ++w)
    text.write(reinterpret_cast<const char*>(val.tokens.data()) + w * T, T + 1);
  text.close();

  const fs::path model = kRoot / "dp2pp2.safetensors";
  const Outcome r = run_attnres("dp2pp2", 4,
                        train_args("dp2pp2", {"data.dir=" + data.string(), "train.steps=2", "train.eval_every=2",
                                              "train.eval_batches=3", "train.warmup_steps=1", "train.threads=1", "parallel.dp=2",
                                              "parallel.pp=2"}) +
                            " --peak-gflops 1 --export " + model.string());
  ASSERT_EQ(r.rc, 0) << r.log;
  ASSERT_EQ(r.steps.size(), 2u);
  const double val_loss = r.steps.back().at("val_loss");

  const Outcome e = run_attnres("eval", 1, "eval --batch 2 --weights " + model.string() + " --input " +
                                       (data / "windows.txt").string());
  ASSERT_EQ(e.rc, 0) << e.log;
  const EvalOutput out = parse_eval_output(e.log);
  ASSERT_TRUE(out.parsed) << e.log;
  EXPECT_EQ(out.tokens, size_t(windows * T));
  EXPECT_NEAR(out.loss, val_loss, 2e-6) << e.log;  // eval prints 6 decimals
  EXPECT_NEAR(out.bits_per_byte, out.loss / std::log(2.0), 1e-4);
  EXPECT_NEAR(out.perplexity, std::exp(out.loss), 1e-3 * out.perplexity);
  // --windows 3: the first three windows only.
  const Outcome first3 = run_attnres("eval3", 1, "eval --windows 3 --threads 1 --weights " + model.string() +
                                                    " --input " + (data / "windows.txt").string());
  EXPECT_EQ(parse_eval_output(first3.log).tokens, size_t(3 * T)) << first3.log;
}

// Fewer validation microbatches than dp replicas: an error at the start,
// naming the file (one replica would have nothing to evaluate: val loss nan).
TEST(Evaluation, TooFewValidationWindowsForTheReplicasIsAnError) {
  const fs::path data = kRoot / "data_few";
  fs::create_directories(data);
  const TokenFile train(test_corpus_dir() + "/train.bin"), val(test_corpus_dir() + "/val.bin");
  write_token_file((data / "train.bin").string(), train.tokens);
  write_token_file((data / "val.bin").string(), std::vector<uint8_t>(val.tokens.begin(), val.tokens.begin() + 3 * 32 + 1));
  const Outcome r = run_attnres("few", 2, train_args("few", {"data.dir=" + data.string(), "train.steps=2",
                                                            "train.eval_every=1", "train.warmup_steps=1",
                                                            "parallel.dp=2"}) + " --peak-gflops 1");
  EXPECT_EQ(r.rc, 1) << r.log;
  EXPECT_NE(r.log.find((data / "val.bin").string() + ": its windows fill 1 validation microbatch(es) of "
                       "train.micro_batch_size = 4, fewer than the parallel.dp = 2 replicas"),
            std::string::npos) << r.log;
  EXPECT_TRUE(r.steps.empty());
}

// A peak far below what a step achieves: MFU is reported as exactly 100 %,
// never above, and the run says why.
TEST(Mfu, NeverAboveOneHundredPercent) {
  const Outcome r = run_attnres("low_peak", 2,
                        train_args("low_peak", {"data.dir=" + test_corpus_dir(), "train.steps=3",
                                                "train.warmup_steps=1", "train.threads=1", "parallel.pp=2"}) +
                            " --peak-gflops 0.001");
  ASSERT_EQ(r.rc, 0) << r.log;
  ASSERT_EQ(r.steps.size(), 3u);
  for (const auto& s : r.steps) EXPECT_EQ(s.at("mfu").get<double>(), 1.0);
  EXPECT_NE(r.log.find("above the peak"), std::string::npos) << r.log;
}

// Measured: one measurement per node with the GEMM of the run's precision
// (named in the first line), and an MFU in (0, 1].
TEST(Mfu, MeasuredPeakPerNode) {
  for (const char* precision : {"fp32", "bf16"}) {
    const std::string name = std::string("measured_") + precision;
    const Outcome r = run_attnres(name, 2,
                                  train_args(name, {"data.dir=" + test_corpus_dir(), "train.steps=2",
                                                    "train.warmup_steps=1", "train.threads=1", "parallel.pp=2",
                                                    std::string("train.precision=") + precision}));
    ASSERT_EQ(r.rc, 0) << r.log;
    const std::string engine = precision == std::string("fp32") ? "fp32 sgemm, OpenBLAS" : "bf16 GEMM ";
    EXPECT_NE(r.log.find(engine), std::string::npos) << r.log;
    EXPECT_NE(r.log.find("measured per node"), std::string::npos) << r.log;
    for (const auto& s : r.steps) {
      EXPECT_GT(s.at("mfu").get<double>(), 0.0);
      EXPECT_LE(s.at("mfu").get<double>(), 1.0);
    }
  }
}

TEST(Mfu, PeakGflopsMustBePositive) {
  for (const char* bad : {"0", "-3"}) {
    const Outcome r = run_attnres(std::string("bad_peak") + bad, 1,
                          train_args(std::string("bad_peak") + bad, {"data.dir=" + test_corpus_dir()}) +
                              " --peak-gflops " + bad);
    EXPECT_NE(r.rc, 0) << bad;
    EXPECT_NE(r.log.find("--peak-gflops"), std::string::npos) << r.log;
    EXPECT_NE(r.log.find(std::string("'") + bad + "' must be > 0"), std::string::npos) << r.log;
    EXPECT_TRUE(r.steps.empty()) << bad;
  }
}
