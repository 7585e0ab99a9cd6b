// Pipelines in one process, for the executor's tests: the ranks of a pipeline
// (and of its data-parallel replicas) are threads joined by FakeNetworks, or
// by NCCL's rules over them (fake_nccl_communicator.h), and what they compute
// is compared with the one-rank executor bit for bit.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "models/model_config.h"
#include "parallel/executor.h"
#include "parallel/hop_payload.h"
#include "parallel/schedule.h"
#include "tests/parallel/fake_nccl_communicator.h"

namespace attnres {

constexpr int kBatch = 2;  // sequences per microbatch
constexpr uint64_t kSeed = 5;

// d_model 16, 2 layers (L = 4 sublayers: up to 4 chunks), T = 8.
ModelConfig tiny(ResidualMode mode, int S);

struct Case {
  std::string name;
  ModelConfig model;
};
// Standard, Full AttnRes and Block AttnRes (S = 2).
std::vector<Case> modes();

// Block AttnRes (S = 3) on 4 layers (L = 8: up to 8 chunks), and every
// generator's schedule for it over P ∈ {2, 3, 4}, V ∈ {1, 2} and
// M ∈ {P, 2P, 2P + 1}: the layouts on which the order of messages is checked.
ModelConfig order_model();
std::vector<Schedule> order_layouts(const ModelConfig& m);
// "interleaved P=2 V=2 M=4"
std::string layout_name(const Schedule& s);

// Token and target ids of M microbatches.
struct Batches {
  std::vector<std::vector<int32_t>> tokens, targets;
  std::vector<const int32_t*> pointers(const std::vector<std::vector<int32_t>>& ids) const;
};
Batches make_batches(const ModelConfig& m, int M, uint32_t seed);

// What one pipeline produced: each microbatch's loss sum (from the rank of the
// last chunk) and every gradient, by global tensor name.
struct Result {
  std::vector<double> losses;
  std::map<std::string, std::vector<float>> grads;
};

struct Outcome {
  std::vector<Result> replicas;  // per dp replica
  std::vector<std::string> problems;
  std::vector<std::string> p2p_order;  // sends and receives issued in different orders (NCCL would hang)
  std::string deadlock;                // NCCL's rules: the model's report, if it found one
  int messages = 0;                    // received whole, over every pipeline
  bool reductions_in_list_order = true;
  std::vector<std::vector<TraceEvent>> traces;  // RunOptions::trace: per thread (dp index × P + pp rank)
};

struct RunOptions {
  HopCaching cache = {};
  // ZeRO-1 (DESIGN §8): gradients reduce-scattered over dp, and all-gathered
  // back after the last step so that every replica reports all of them.
  bool zero1 = false;
  // NCCL's rules with this arrangement; null: the fake network's.
  QueueOf nccl = nullptr;
  bool trace = false;  // every rank's trace in Outcome::traces
};

// Runs `steps` steps of `sched` on dp × P threads: replica d feeds batches[d]
// through its own pipeline; the ranks of one pipeline stage form a dp group.
Outcome run_threads(const ModelConfig& m, const Schedule& sched, const std::vector<Batches>& batches, int steps,
                    const RunOptions& opt = {});

// The whole model on one rank.
Result one_rank(const ModelConfig& m, const Batches& b, int steps);

int sends_per_step(const Schedule& s);
std::string joined(const std::vector<std::string>& v);
void expect_equal(const Result& want, const Result& got, const std::string& what);

}  // namespace attnres
