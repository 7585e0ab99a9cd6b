// Pipeline bubble benchmark (issue #3, point 10): pp = 2, one thread per rank.
// For each microbatch count M and schedule (1f1b, zb-h1) it runs `attnres
// train` under mpirun as a child process, reads the per-step metrics and the
// per-rank Chrome traces, and prints markdown tables: the measured bubble per
// rank beside the simulator's prediction (unit costs F=1 B=2 BI=1 BW=1, and
// the per-action costs measured in the same runs) and the 1F1B theory
// (p−1)/(m+p−1); the median step time with its spread; the zb-h1 / 1f1b
// step-time ratio beside the ratio of the simulated makespans.
//
// Runs are interleaved: every round runs each (M, schedule) once, the two
// schedules back to back, and alternates which goes first, so drift in the
// machine's load hits both schedules alike. Steps 1..skip of every run are
// dropped (allocation, first-touch, MPI connection setup).
//
// Bubble definitions. The executor measures idle / (idle + busy) over one
// step's action list: busy = time in F/B/BI/BW, idle = time waiting for
// receives and for send completion; a rank's list ends at its own last action,
// so the wait for the other rank's tail (in the gradient all-reduce) is not in
// it. F and B/BI wait for their receive first; that wait is idle only (since
// commit 57e2f53; before it, it was counted as busy too). The simulator's RankStats::bubble counts idle up to the global makespan;
// the comparable number is (finish − busy) / finish, idle up to the rank's own
// OPTIMIZER_STEP, and that is what the "sim" columns show.
//
// Usage (from the repository root, so the config's data.dir resolves):
//   build/bench/bench_pipeline [--attnres build/attnres] [--config configs/small.yaml]
//       [--microbatches 2,4,8,16] [--steps 12] [--skip 2] [--rounds 3]
//       [--work bench-pipeline] [--mpirun "mpirun -np 2 --oversubscribe"]
// --attnres defaults to the attnres binary one directory above this program
// (build/attnres for build/bench/bench_pipeline).
#include <algorithm>
#include <array>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "parallel/schedule.h"
#include "parallel/simulator.h"
#include "runtime/config.h"

namespace {

using namespace attnres;
namespace fs = std::filesystem;

constexpr int kP = 2;  // pipeline ranks
const std::array<std::string, 2> kSchedules = {"1f1b", "zb-h1"};

struct Options {
  std::string attnres, config = "configs/small.yaml", work = "bench-pipeline";
  std::string mpirun = "mpirun -np 2 --oversubscribe";
  std::vector<int> microbatches = {2, 4, 8, 16};
  int steps = 12, skip = 2, rounds = 3;
};

int parse_int(const std::string& flag, const std::string& v, int min) {
  size_t used = 0;
  int x = 0;
  try {
    x = std::stoi(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || x < min)
    throw std::runtime_error(flag + " " + v + ": expected an integer >= " + std::to_string(min));
  return x;
}

Options parse_args(int argc, char** argv) {
  Options o;
  o.attnres = (fs::canonical("/proc/self/exe").parent_path().parent_path() / "attnres").string();
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) throw std::runtime_error(flag + ": missing value");
    const std::string v = argv[i + 1];
    if (flag == "--attnres") o.attnres = v;
    else if (flag == "--config") o.config = v;
    else if (flag == "--work") o.work = v;
    else if (flag == "--mpirun") o.mpirun = v;
    else if (flag == "--steps") o.steps = parse_int(flag, v, 1);
    else if (flag == "--skip") o.skip = parse_int(flag, v, 0);
    else if (flag == "--rounds") o.rounds = parse_int(flag, v, 1);
    else if (flag == "--microbatches") {
      o.microbatches.clear();
      for (size_t a = 0; a <= v.size();) {
        const size_t b = std::min(v.find(',', a), v.size());
        o.microbatches.push_back(parse_int(flag, v.substr(a, b - a), 1));
        a = b + 1;
      }
    } else {
      throw std::runtime_error(flag + ": unknown option (expected --attnres, --config, --microbatches, "
                               "--steps, --skip, --rounds, --work or --mpirun)");
    }
  }
  if (o.skip >= o.steps)
    throw std::runtime_error("--skip " + std::to_string(o.skip) + ": must be below --steps " + std::to_string(o.steps));
  return o;
}

double quantile(std::vector<double> v, double q) {
  assert(!v.empty());
  std::sort(v.begin(), v.end());
  const double pos = q * double(v.size() - 1);
  const size_t lo = size_t(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - double(lo)) * (v[hi] - v[lo]);
}
double median(const std::vector<double>& v) { return quantile(v, 0.5); }

std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

// Everything measured for one (M, schedule), pooled over rounds.
struct Cell {
  std::vector<double> step_s;                              // per kept step
  std::vector<double> round_median_s;                      // per round
  std::array<std::vector<double>, kP> bubble;              // per kept step, per rank
  std::array<std::map<std::string, std::vector<double>>, kP> op_us;  // per rank: op -> compute µs
};

std::vector<std::string> train_overrides(const Options& o, const std::string& sched, int M) {
  return {"parallel.pp=" + std::to_string(kP), "parallel.schedule=" + sched, "train.threads=1",
          "train.grad_accum=" + std::to_string(M), "train.steps=" + std::to_string(o.steps),
          "train.eval_every=0", "train.log_every=" + std::to_string(o.steps),
          "train.warmup_steps=0"};  // the lr does not change the time of a step
}

// Runs one training under mpirun and adds its kept steps to `cell`.
void run_one(const Options& o, const std::string& sched, int M, int round, Cell& cell) {
  const std::vector<std::string> sets = train_overrides(o, sched, M);
  const Config cfg = load_config(o.config, sets);  // validates, and gives the tokens per step
  const double tokens_per_step = double(cfg.train.micro_batch_size) * cfg.model.seq_len * M;
  const std::string stem = (fs::path(o.work) / (sched + "-m" + std::to_string(M) + "-r" + std::to_string(round))).string();
  std::string cmd = o.mpirun + " " + o.attnres + " train --config " + o.config + " --peak-gflops 1";
  for (const std::string& s : sets) cmd += " --set " + s;
  cmd += " --metrics " + stem + ".jsonl --trace " + stem + ".json > " + stem + ".log 2>&1";
  std::fprintf(stderr, "[round %d] %s M=%d ... ", round + 1, sched.c_str(), M);
  std::fflush(stderr);
  fs::remove(stem + ".jsonl");
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("failed (see " + stem + ".log): " + cmd);

  std::ifstream mf(stem + ".jsonl");
  std::vector<double> kept;
  for (std::string line; std::getline(mf, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.at("step").get<int>() <= o.skip) continue;
    kept.push_back(tokens_per_step / j.at("tokens_per_s").get<double>());
    for (int r = 0; r < kP; ++r) cell.bubble[size_t(r)].push_back(j.at("bubble").at(size_t(r)).get<double>());
  }
  if (int(kept.size()) != o.steps - o.skip) throw std::runtime_error(stem + ".jsonl: expected " + std::to_string(o.steps) + " steps");
  cell.step_s.insert(cell.step_s.end(), kept.begin(), kept.end());
  cell.round_median_s.push_back(median(kept));
  std::fprintf(stderr, "median step %.1f ms\n", 1e3 * median(kept));

  // Per-action compute times from the traces: each step adds the rank's n
  // compute events in list order, so the first skip steps are the first skip·n.
  const Schedule s = make_schedule(sched, kP, M);
  for (int r = 0; r < kP; ++r) {
    const size_t n = size_t(std::count_if(s.ranks[size_t(r)].begin(), s.ranks[size_t(r)].end(),
                                          [](const Action& a) { return is_compute(a.op); }));
    const std::string path = stem + ".rank" + std::to_string(r) + ".json";
    std::ifstream tf(path);
    const nlohmann::json t = nlohmann::json::parse(tf);
    size_t seen = 0;
    for (const auto& e : t.at("traceEvents")) {
      if (e.value("cat", "") != "compute") continue;
      if (seen++ < size_t(o.skip) * n) continue;
      const std::string name = e.at("name").get<std::string>();
      cell.op_us[size_t(r)][name.substr(0, name.find('('))].push_back(e.at("dur").get<double>());
    }
    if (seen != size_t(o.steps) * n) throw std::runtime_error(path + ": unexpected number of compute events");
  }
}

// Median cost of `op` averaged over the ranks (the simulator takes one cost per op).
double op_cost(const Cell& c, const std::string& op) {
  double sum = 0;
  for (int r = 0; r < kP; ++r) sum += median(c.op_us[size_t(r)].at(op));
  return sum / kP;
}

// Per rank: idle up to the rank's own OPTIMIZER_STEP over that time (see top);
// and the makespan, for the predicted step-time ratio.
struct SimPoint {
  std::array<double, kP> bubble{};
  double makespan = 0;
};
SimPoint simulate_point(const std::string& sched, int M, const SimCosts& costs) {
  const SimResult res = simulate(make_schedule(sched, kP, M), costs);
  if (!res.ok()) throw std::runtime_error("simulator rejected " + sched + ": " + res.errors.front());
  SimPoint p;
  p.makespan = res.makespan;
  for (int r = 0; r < kP; ++r) {
    const RankStats& st = res.ranks[size_t(r)];
    p.bubble[size_t(r)] = st.finish > 0 ? (st.finish - st.busy) / st.finish : 0.0;
  }
  return p;
}

// The op costs measured in the runs of one cell; the simulator needs only the
// ops the schedule uses.
SimCosts measured_costs(const Cell& c, const std::string& sched) {
  SimCosts m{op_cost(c, "F"), 0, 0, 0, 0};
  if (sched == "zb-h1") m.BI = op_cost(c, "BI"), m.BW = op_cost(c, "BW");
  else m.B = op_cost(c, "B");
  return m;
}

std::string pair(const std::array<double, kP>& b) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f / %.3f", b[0], b[1]);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse_args(argc, argv);
    fs::create_directories(o.work);
    const std::string load_before = loadavg();
    std::map<std::pair<int, std::string>, Cell> cells;
    for (int round = 0; round < o.rounds; ++round)
      for (int M : o.microbatches)
        for (int k = 0; k < 2; ++k) {
          const std::string& sched = kSchedules[size_t((k + round) % 2)];
          run_one(o, sched, M, round, cells[{M, sched}]);
        }
    const std::string load_after = loadavg();

    std::printf("pp = %d, 1 thread per rank, config %s; %d rounds x %d steps per run, first %d dropped; "
                "medians over the %d kept steps of all rounds.\n",
                kP, o.config.c_str(), o.rounds, o.steps, o.skip, o.rounds * (o.steps - o.skip));
    std::printf("load average (1/5/15 min): before %s, after %s\n\n", load_before.c_str(), load_after.c_str());
    std::printf("| M | schedule | measured bubble r0 / r1 | sim, unit costs r0 / r1 | sim, measured costs r0 / r1 "
                "| (p-1)/(m+p-1) | step ms: median [p25, p75] | zb-h1 / 1f1b step time: median of per-round "
                "ratios (range) | predicted, unit / measured costs |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|\n");
    for (int M : o.microbatches) {
      const Cell& a = cells.at({M, "1f1b"});
      const Cell& z = cells.at({M, "zb-h1"});
      const double unit_ratio = simulate_point("zb-h1", M, SimCosts{}).makespan / simulate_point("1f1b", M, SimCosts{}).makespan;
      const double meas_ratio = simulate_point("zb-h1", M, measured_costs(z, "zb-h1")).makespan /
                                simulate_point("1f1b", M, measured_costs(a, "1f1b")).makespan;
      for (const std::string& sched : kSchedules) {
        const Cell& c = cells.at({M, sched});
        std::array<double, kP> meas{};
        for (int r = 0; r < kP; ++r) meas[size_t(r)] = median(c.bubble[size_t(r)]);
        std::string ratio = " | ";
        if (sched == "zb-h1") {
          std::vector<double> per_round;
          for (size_t i = 0; i < z.round_median_s.size(); ++i) per_round.push_back(z.round_median_s[i] / a.round_median_s[i]);
          char buf[128];
          // Each round runs the two back to back: the per-round ratio cancels drift.
          std::snprintf(buf, sizeof buf, "%.3f (%.3f - %.3f) | %.3f / %.3f", median(per_round),
                        *std::min_element(per_round.begin(), per_round.end()),
                        *std::max_element(per_round.begin(), per_round.end()), unit_ratio, meas_ratio);
          ratio = buf;
        }
        std::printf("| %d | %s | %s | %s | %s | %.3f | %.1f [%.1f, %.1f] | %s |\n", M, sched.c_str(),
                    pair(meas).c_str(), pair(simulate_point(sched, M, SimCosts{}).bubble).c_str(),
                    pair(simulate_point(sched, M, measured_costs(c, sched)).bubble).c_str(), one_f_one_b_bubble(kP, M),
                    1e3 * median(c.step_s), 1e3 * quantile(c.step_s, 0.25), 1e3 * quantile(c.step_s, 0.75),
                    ratio.c_str());
      }
    }
    std::printf("\nMeasured per-action compute times (ms; median over kept steps, rank 0 / rank 1):\n\n");
    std::printf("| M | schedule | F | B | BI | BW |\n|---|---|---|---|---|---|\n");
    for (int M : o.microbatches)
      for (const std::string& sched : kSchedules) {
        const Cell& c = cells.at({M, sched});
        std::printf("| %d | %s |", M, sched.c_str());
        for (const char* op : {"F", "B", "BI", "BW"}) {
          if (!c.op_us[0].contains(op)) {
            std::printf(" - |");
            continue;
          }
          std::printf(" %.1f / %.1f |", 1e-3 * median(c.op_us[0].at(op)), 1e-3 * median(c.op_us[1].at(op)));
        }
        std::printf("\n");
      }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_pipeline: %s\n", e.what());
    return 1;
  }
}
