// `attnres schedule`: build a pipeline schedule, simulate it, and print the
// timeline, bubble and peak live activations per rank (DESIGN §3).
#include <cmath>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "launch/commands.h"
#include "parallel/schedule.h"
#include "parallel/schedule_print.h"
#include "parallel/simulator.h"

namespace attnres::cli {

void add_schedule_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "schedule",
      "Simulate a pipeline schedule: per-rank timeline, bubble next to the 1F1B theory "
      "(p-1)/(m+p-1), and peak live activations");

  struct Opts {
    int pp = 4;
    int microbatches = 8;
    std::string schedule = "1f1b";
    int virtual_stages = 1;
    SimCosts stage;  // costs of a whole stage; a chunk costs 1/V of it (not copy, latency)
    std::string trace;
    bool actions = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--pp", o->pp, "Pipeline ranks P")->capture_default_str();
  cmd->add_option("--microbatches", o->microbatches, "Microbatches per step M")->capture_default_str();
  cmd->add_option("--schedule", o->schedule, "gpipe | 1f1b | eager-1f1b | interleaved | zb-h1")->capture_default_str();
  cmd->add_option("--virtual-stages", o->virtual_stages, "Chunks per rank V (interleaved needs V >= 2)")
      ->capture_default_str();
  cmd->add_option("--cost-f", o->stage.F, "Forward time of one stage")->capture_default_str();
  cmd->add_option("--cost-b", o->stage.B, "Full backward time of one stage")->capture_default_str();
  cmd->add_option("--cost-bi", o->stage.BI, "Input-gradient time of one stage (zb-h1)")
      ->capture_default_str();
  cmd->add_option("--cost-bw", o->stage.BW, "Weight-gradient time of one stage (zb-h1)")
      ->capture_default_str();
  cmd->add_option("--latency", o->stage.latency, "Time from a send to its receive")
      ->capture_default_str();
  cmd->add_option("--cost-copy", o->stage.copy, "Time of one hand-off between chunks on the same rank")
      ->capture_default_str();
  cmd->add_option("--cost-reduce", o->stage.reduce,
                  "Data-parallel gradient all-reduce time of one stage (runs beside the compute)")
      ->capture_default_str();
  cmd->add_option("--trace", o->trace, "Write a Chrome trace JSON (Perfetto) to this file");
  cmd->add_flag("--actions", o->actions, "Also print the raw action list of every rank");

  cmd->callback([o] {
    if (const std::string e = simulation_limit_error(o->pp, o->virtual_stages, o->microbatches); !e.empty())
      throw std::invalid_argument(e);  // before making the schedule, which alone may take seconds
    const Schedule s = make_schedule(o->schedule, o->pp, o->microbatches, o->virtual_stages);
    for (auto [opt, v] : {std::pair{"--cost-f", o->stage.F}, {"--cost-b", o->stage.B},
                          {"--cost-bi", o->stage.BI}, {"--cost-bw", o->stage.BW},
                          {"--latency", o->stage.latency}, {"--cost-copy", o->stage.copy},
                          {"--cost-reduce", o->stage.reduce}})
      if (!std::isfinite(v) || v < 0)
        throw std::invalid_argument(std::string(opt) + " " + std::to_string(v) +
                                    ": expected a finite time >= 0");
    const double V = s.V;
    const SimCosts c{o->stage.F / V, o->stage.B / V,  o->stage.BI / V,    o->stage.BW / V,
                     o->stage.latency, o->stage.copy, o->stage.reduce / V};
    const SimResult r = simulate(s, c);
    if (!r.ok()) {
      std::string msg = "schedule '" + s.name + "' failed simulation:";
      for (const auto& e : r.errors) msg += "\n  " + e;
      throw std::runtime_error(msg);
    }

    if (!o->trace.empty()) write_chrome_trace(o->trace, s, r);  // fail before printing

    std::printf("schedule %s: P=%d ranks, M=%d microbatches, V=%d chunk(s) per rank\n", s.name.c_str(),
                s.P, s.M, s.V);
    std::printf("chunk costs: F=%g B=%g BI=%g BW=%g, local copy %g, dp reduce %g, message latency %g\n",
                c.F, c.B, c.BI, c.BW, c.copy, c.reduce, c.latency);
    std::printf("placement (chunk:rank)");
    for (int k = 0; k < s.num_chunks(); k++) std::printf(" %d:%d", k, s.placement[size_t(k)]);
    std::printf("\n\n");
    if (o->actions) std::printf("%s\n", format_actions(s).c_str());
    std::printf("timeline (a cell is the shortest compute; F forward, B backward, i input grad, "
                "w weight grad, c local copy,%s . idle)\n%s\n",
                s.V > 1 ? " letter = local chunk," : "", format_timeline(s, r).c_str());
    std::printf("rank     busy     idle  bubble  1F1B theory  peak live\n");
    const double theory = one_f_one_b_bubble(s.P, s.M);
    for (int k = 0; k < s.P; k++) {
      const RankStats& st = r.ranks[k];
      std::printf("%4d %8.3f %8.3f  %6.4f  %11.4f  %9d\n", k, st.busy, st.idle, st.bubble, theory,
                  st.peak_live);
    }
    std::printf("makespan %g\n", r.makespan);
    if (!o->trace.empty()) std::printf("trace written to %s\n", o->trace.c_str());
  });
}

}  // namespace attnres::cli
