#include "tests/parallel/executor_harness.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <stdexcept>
#include <thread>

#include "kernels/memory.h"
#include "parallel/executor.h"
#include "parallel/partition.h"
#include "tests/parallel/fake_communicator.h"

namespace attnres {

ModelConfig tiny(ResidualMode mode, int S) {
  ModelConfig m;
  m.vocab_size = 64;
  m.d_model = 16;
  m.n_layers = 2;
  m.n_heads = 2;
  m.d_ff = 24;
  m.seq_len = 8;
  m.mode = mode;
  m.block_size = S;
  return m;
}

std::vector<Case> modes() {
  return {{"standard", tiny(ResidualMode::Standard, 1)},
          {"full attnres", tiny(ResidualMode::AttnRes, 1)},
          {"block attnres S=2", tiny(ResidualMode::AttnRes, 2)}};
}

ModelConfig order_model() {
  ModelConfig m = tiny(ResidualMode::AttnRes, 3);
  m.n_layers = 4;
  return m;
}

std::vector<Schedule> order_layouts(const ModelConfig& m) {
  std::vector<Schedule> out;
  for (const std::string& name : schedule_names())
    for (int P : {2, 3, 4})
      for (int V : {1, 2})
        for (int M : {P, 2 * P, 2 * P + 1}) {
          if (P * V > m.num_sublayers()) continue;
          try {
            out.push_back(make_schedule(name, P, M, V));
          } catch (const std::invalid_argument&) {
            // not a layout this generator makes
          }
        }
  return out;
}

std::string layout_name(const Schedule& s) {
  return s.name + " P=" + std::to_string(s.P) + " V=" + std::to_string(s.V) + " M=" + std::to_string(s.M);
}

std::vector<const int32_t*> Batches::pointers(const std::vector<std::vector<int32_t>>& ids) const {
  std::vector<const int32_t*> p;
  for (const auto& v : ids) p.push_back(v.data());
  return p;
}

Batches make_batches(const ModelConfig& m, int M, uint32_t seed) {
  std::mt19937 rng(seed);
  auto ids = [&] {
    std::vector<int32_t> v(size_t(kBatch) * m.seq_len);
    for (int32_t& x : v) x = int32_t(rng() % uint32_t(m.vocab_size));
    return v;
  };
  Batches b;
  for (int i = 0; i < M; ++i) b.tokens.push_back(ids()), b.targets.push_back(ids());
  return b;
}

namespace {

// ZeRO-1: this rank's part of each chunk's summed gradients back into its
// buffer, and every other rank's part from its owner.
void gather_gradients(PipelineExecutor& e, Communicator& data) {
  for (size_t i = 0; i < e.chunks().size(); ++i) {
    Chunk& c = e.chunks()[i];
    const GradPart part = e.data_parallel().part(i);
    kernels::copy(c.dev, c.grads.data() + part.begin, part.grads, part.count, kernels::CopyKind::DeviceToDevice);
    data.allgather_parts({c.grads.data(), c.layout.total}, split_evenly(c.layout.total, data.size()));
  }
}

}  // namespace

Outcome run_threads(const ModelConfig& m, const Schedule& sched, const std::vector<Batches>& batches, int steps,
                    const RunOptions& opt) {
  const int P = sched.P, dp = int(batches.size());
  const Partition part = make_partition(m, P, sched.V, "");
  std::vector<std::unique_ptr<FakeNetwork>> pipes, groups;
  for (int d = 0; d < dp; ++d) pipes.push_back(std::make_unique<FakeNetwork>(P));
  for (int p = 0; p < P; ++p) groups.push_back(std::make_unique<FakeNetwork>(dp));
  NcclModel model(dp * P);
  auto fail_all = [&] {
    for (auto& n : pipes) n->fail();
    for (auto& n : groups) n->fail();
    model.fail();
  };

  std::vector<Result> per_thread(size_t(dp * P));
  std::vector<std::vector<const float*>> reduce_order(size_t(dp * P));  // grads, by REDUCE_GRADS in the list
  std::vector<std::string> errors(size_t(dp * P));
  std::vector<std::vector<TraceEvent>> traces(size_t(dp * P));
  std::vector<std::thread> threads;
  for (int d = 0; d < dp; ++d)
    for (int p = 0; p < P; ++p)
      threads.emplace_back([&, d, p] {
        const size_t me = size_t(d * P + p);
        try {
          FakeCommunicator pipe(*pipes[size_t(d)], p), data(*groups[size_t(p)], d);
          FakeNcclCommunicator nccl_pipe(model, "pipeline " + std::to_string(d), pipe, opt.nccl),
              nccl_data(model, "data " + std::to_string(p), data, opt.nccl);
          Communicator& pc = opt.nccl ? static_cast<Communicator&>(nccl_pipe) : pipe;
          Communicator& dc = opt.nccl ? static_cast<Communicator&>(nccl_data) : data;
          PipelineExecutor e(m, part, sched, p, P > 1 ? &pc : nullptr, dp > 1 ? &dc : nullptr, kBatch, kSeed,
                             opt.cache);
          if (opt.zero1) e.data_parallel().shard();
          e.enable_trace(opt.trace);
          const float scale = 1.0f / float(sched.M * kBatch * m.seq_len);
          const Batches& feed = batches[size_t(d)];
          const std::vector<const int32_t*> tokens = feed.pointers(feed.tokens), targets = feed.pointers(feed.targets);
          for (int s = 0; s < steps; ++s) {
            std::vector<double> l = e.run(tokens, targets, scale);
            if (e.holds_last_chunk()) per_thread[me].losses.insert(per_thread[me].losses.end(), l.begin(), l.end());
          }
          if (opt.zero1) gather_gradients(e, dc);
          traces[me] = e.trace();
          for (const Chunk& c : e.chunks())
            for (const TensorSpec& t : c.layout.tensors)
              per_thread[me].grads[t.name] = kernels::to_host(c.dev, c.grads.data() + t.offset, t.numel);
          const std::vector<int> mine = sched.chunks_of(p);  // e.chunks() is in this order
          for (const Action& a : sched.ranks[size_t(p)])
            if (a.op == Op::REDUCE_GRADS)
              reduce_order[me].push_back(e.chunks()[size_t(std::find(mine.begin(), mine.end(), a.chunk) - mine.begin())].grads.data());
        } catch (const std::exception& ex) {
          errors[me] = "rank (dp " + std::to_string(d) + ", pp " + std::to_string(p) + "): " + ex.what();
          fail_all();
        }
        model.leave();
      });
  for (std::thread& t : threads) t.join();

  Outcome out;
  out.traces = std::move(traces);
  out.deadlock = model.deadlock();
  for (const std::string& e : errors)
    if (!e.empty()) out.problems.push_back(e);
  out.replicas.resize(size_t(dp));
  for (int d = 0; d < dp; ++d) {
    for (int p = 0; p < P; ++p) {
      Result& r = per_thread[size_t(d * P + p)];
      if (!r.losses.empty()) out.replicas[size_t(d)].losses = r.losses;
      out.replicas[size_t(d)].grads.merge(r.grads);
      // Each rank started its chunks' reductions in the order of its list.
      if (dp > 1) out.reductions_in_list_order &= groups[size_t(p)]->reductions_of(d) == reduce_order[size_t(d * P + p)];
    }
    out.messages += pipes[size_t(d)]->messages_received();
    for (const std::string& s : pipes[size_t(d)]->p2p_order_mismatches()) out.p2p_order.push_back(s);
    for (const std::string& s : pipes[size_t(d)]->problems()) out.problems.push_back(s);
  }
  for (auto& g : groups)
    for (const std::string& s : g->problems()) out.problems.push_back(s);
  for (const std::string& s : model.problems()) out.problems.push_back(s);
  return out;
}

Result one_rank(const ModelConfig& m, const Batches& b, int steps) {
  const Outcome r = run_threads(m, make_schedule("1f1b", 1, int(b.tokens.size())), {b}, steps);
  EXPECT_TRUE(r.problems.empty());
  return r.replicas[0];
}

int sends_per_step(const Schedule& s) {
  int n = 0;
  for (const auto& l : s.ranks)
    for (const Action& a : l) n += a.op == Op::SEND_F || a.op == Op::SEND_B;
  return n;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += x + "\n";
  return s;
}

void expect_equal(const Result& want, const Result& got, const std::string& what) {
  ASSERT_EQ(got.losses.size(), want.losses.size()) << what;
  for (size_t i = 0; i < want.losses.size(); ++i) EXPECT_EQ(got.losses[i], want.losses[i]) << what << " loss " << i;
  ASSERT_EQ(got.grads.size(), want.grads.size()) << what;
  for (const auto& [name, g] : want.grads) {
    ASSERT_TRUE(got.grads.count(name)) << what << " lacks " << name;
    const std::vector<float>& h = got.grads.at(name);
    ASSERT_EQ(h.size(), g.size()) << what << " " << name;
    for (size_t i = 0; i < g.size(); ++i)
      ASSERT_EQ(h[i], g[i]) << what << " " << name << "[" << i << "]";
  }
}

}  // namespace attnres
