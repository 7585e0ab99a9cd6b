// Pipelined and data-parallel runs of `attnres train` under mpirun against the
// single-process run (issue #3): every loss and the final parameters, bit for
// bit where the arithmetic is the same, within 1e-5 where it is reordered
// (cross-stage caching, dp all-reduce). Also checks that the bytes each hop
// really sent equal the analytic payloads and the paper's closed forms.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "parallel/hop_payload.h"
#include "parallel/partition.h"
#include "tests/e2e/param_compare.h"
#include "tests/test_corpus.h"
#include "runtime/config.h"
#include "runtime/data.h"
#include "runtime/safetensors.h"

using namespace attnres;
namespace fs = std::filesystem;

namespace {

// 8 sublayers, 4 microbatches of 2 x 16 tokens, 10 steps, one thread per rank.
std::vector<std::string> base_sets() {
  return {"data.dir=" + test_corpus_dir(), "model.n_layers=4", "model.seq_len=16", "train.micro_batch_size=2",
          "train.grad_accum=4", "train.steps=10", "train.warmup_steps=2", "train.eval_every=5",
          "train.eval_batches=2", "train.threads=1"};
}

struct RunOut {
  std::vector<double> losses, val_losses;
  std::vector<std::vector<uint64_t>> hop_bytes;  // per step, hops 1..C-1
  std::vector<NamedTensor> params;
  Config cfg;
};

RunOut run(const std::string& name, int np, std::vector<std::string> sets) {
  std::vector<std::string> all = base_sets();
  all.insert(all.end(), sets.begin(), sets.end());
  const fs::path dir = fs::temp_directory_path() / "attnres_equiv" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::string cmd = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np " + std::to_string(np) +
                    " --oversubscribe " ATTNRES_BINARY_DIR "/attnres train --config " ATTNRES_SOURCE_DIR
                    "/configs/tiny.yaml --peak-gflops 1";
  for (const auto& s : all) cmd += " --set '" + s + "'";
  cmd += " --metrics " + (dir / "metrics.jsonl").string() + " --export " + (dir / "model.safetensors").string() +
         " > " + (dir / "log.txt").string() + " 2>&1";
  RunOut out;
  out.cfg = load_config(ATTNRES_SOURCE_DIR "/configs/tiny.yaml", all);
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    std::ifstream log(dir / "log.txt");
    ADD_FAILURE() << name << ": exit " << rc << "\n" << std::string(std::istreambuf_iterator<char>(log), {});
    return out;
  }
  std::ifstream f(dir / "metrics.jsonl");
  for (std::string line; std::getline(f, line);) {
    const auto j = nlohmann::json::parse(line);
    out.losses.push_back(j.at("loss"));
    if (j.contains("val_loss")) out.val_losses.push_back(j.at("val_loss"));
    if (j.contains("hop_bytes")) out.hop_bytes.push_back(j.at("hop_bytes").get<std::vector<uint64_t>>());
  }
  out.params = read_safetensors((dir / "model.safetensors").string());
  return out;
}

// Every loss (and val loss) within rel (issue #3; 0 = bit for bit), and the
// final parameters by expect_params_match.
void expect_match(const RunOut& ref, const RunOut& got, const std::string& what, double rel) {
  ASSERT_EQ(ref.losses.size(), 10u);
  ASSERT_EQ(got.losses.size(), ref.losses.size()) << what;
  ASSERT_EQ(got.val_losses.size(), ref.val_losses.size()) << what;
  auto near = [&](double a, double b) { return rel == 0 ? a == b : std::fabs(a - b) <= rel * std::fabs(a); };
  for (size_t i = 0; i < ref.losses.size(); ++i)
    EXPECT_TRUE(near(ref.losses[i], got.losses[i])) << what << " step " << i + 1 << ": " << ref.losses[i] << " vs " << got.losses[i];
  for (size_t i = 0; i < ref.val_losses.size(); ++i)
    EXPECT_TRUE(near(ref.val_losses[i], got.val_losses[i])) << what << " val " << i;
  expect_params_match(ref.params, got.params, rel, what);
}

// Bytes the runtime counted on every hop equal the analytic payload:
// forward + backward, M microbatches, on every step.
void expect_hop_bytes(const RunOut& r, bool cache, const std::string& what) {
  const Config& c = r.cfg;
  const Partition part = make_partition(c.model, c.parallel.pp, c.parallel.virtual_stages, c.parallel.layout);
  const int M = c.train.grad_accum / c.parallel.dp;
  ASSERT_EQ(r.hop_bytes.size(), r.losses.size()) << what;
  for (const auto& step : r.hop_bytes) {
    ASSERT_EQ(int(step.size()), part.num_chunks() - 1) << what;
    for (int h = 1; h < part.num_chunks(); ++h) {
      const int64_t expect = 2 * M * hop_bytes(c.model, hop_payload(c.model, part, h, cache), c.train.micro_batch_size);
      EXPECT_EQ(int64_t(step[size_t(h - 1)]), expect) << what << " hop into chunk " << h;
    }
  }
}

uint64_t sum(const std::vector<uint64_t>& v) {
  uint64_t s = 0;
  for (auto x : v) s += x;
  return s;
}

void check_mode(const std::string& mode, const std::vector<std::string>& mode_sets) {
  const RunOut ref = run(mode + "_pp1", 1, mode_sets);
  for (int pp : {2, 4}) {
    for (const char* sched : {"gpipe", "1f1b", "zb-h1"}) {
      std::vector<std::string> s = mode_sets;
      s.insert(s.end(), {"parallel.pp=" + std::to_string(pp), std::string("parallel.schedule=") + sched});
      const std::string what = mode + " pp=" + std::to_string(pp) + " " + sched;
      const RunOut got = run(mode + "_pp" + std::to_string(pp) + "_" + sched, pp, s);
      expect_match(ref, got, what, 0.0);
      expect_hop_bytes(got, false, what);
    }
    for (bool cache : {false, true}) {
      std::vector<std::string> s = mode_sets;
      s.insert(s.end(), {"parallel.pp=" + std::to_string(pp), "parallel.schedule=interleaved",
                         "parallel.virtual_stages=2", std::string("parallel.cross_stage_cache=") + (cache ? "true" : "false")});
      const std::string what = mode + " pp=" + std::to_string(pp) + " interleaved cache=" + (cache ? "on" : "off");
      const RunOut got = run(mode + "_pp" + std::to_string(pp) + "_il" + (cache ? "c" : ""), pp, s);
      // A cached block's gradient is summed in another order: 1e-5 (issue #3).
      expect_match(ref, got, what, cache && mode != "standard" ? 1e-5 : 0.0);
      expect_hop_bytes(got, cache, what);
    }
  }
}

}  // namespace

TEST(PipelineEquivalence, Standard) { check_mode("standard", {"residual.mode=standard"}); }
TEST(PipelineEquivalence, FullAttnRes) { check_mode("full", {"residual.block_size=1"}); }
TEST(PipelineEquivalence, BlockAttnRes) { check_mode("block", {"residual.block_size=2"}); }

// An explicit layout whose boundaries cut blocks: the partial sum crosses.
TEST(PipelineEquivalence, LayoutCuttingBlocks) {
  const std::vector<std::string> block = {"residual.block_size=2"};
  const RunOut ref = run("cut_pp1", 1, block);
  const RunOut got = run("cut_pp3", 3, {"residual.block_size=2", "parallel.pp=3", "parallel.layout=3,2,3"});
  expect_match(ref, got, "pp=3 layout 3,2,3", 0.0);
  expect_hop_bytes(got, false, "pp=3 layout 3,2,3");
}

TEST(DataParallel, MatchesSingleProcess) {
  for (const char* mode : {"residual.mode=standard", "residual.block_size=2"}) {
    const RunOut ref = run(std::string("dp_ref_") + mode, 1, {mode});
    expect_match(ref, run(std::string("dp2_") + mode, 2, {mode, "parallel.dp=2"}), std::string("dp=2 ") + mode, 1e-5);
    expect_match(ref, run(std::string("dp2pp2_") + mode, 4, {mode, "parallel.dp=2", "parallel.pp=2"}),
                 std::string("dp=2 x pp=2 ") + mode, 1e-5);
  }
}

// Block AttnRes (1 block per chunk) on pp=2 x 2 virtual stages: the measured
// block bytes are the paper's Eq. 7 without caching and the exact Eq. 8 with
// it (docs/PARALLEL.md), plus the embedding on C-1 or P-1 hops.
TEST(HopBytes, MatchPaperClosedForms) {
  for (bool cache : {false, true}) {
    const RunOut r = run(std::string("closed_") + (cache ? "cache" : "nocache"), 2,
                         {"residual.block_size=2", "parallel.pp=2", "parallel.schedule=interleaved",
                          "parallel.virtual_stages=2", "parallel.layout=2,2,2,2",
                          std::string("parallel.cross_stage_cache=") + (cache ? "true" : "false")});
    ASSERT_FALSE(r.hop_bytes.empty());
    const int P = 2, V = 2, M = 4;
    const uint64_t tensor = uint64_t(r.cfg.train.micro_batch_size) * r.cfg.model.seq_len * r.cfg.model.d_model * 4;
    const double blocks = cache ? exact_eq8_blocks(P, V, 1) : paper_eq7_blocks(P, V, 1);
    const int embed_hops = cache ? P - 1 : P * V - 1;
    EXPECT_EQ(sum(r.hop_bytes.back()), uint64_t(blocks + embed_hops) * tensor * 2 * M) << (cache ? "Eq. 8" : "Eq. 7");
  }
}
