// `attnres eval`: the loss of an exported model on a text file, and with
// --depth what the depth-attention and PreNorm-dilution plots need.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <utility>

#include "kernels/device.h"
#include "launch/commands.h"
#include "runtime/config.h"
#include "models/chunk.h"
#include "runtime/durable_file.h"
#include "runtime/evaluate.h"
#include "runtime/path_clash.h"
#include "runtime/safetensors.h"

namespace attnres::cli {

void add_eval_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "eval", "Mean next-token cross-entropy of an exported model on a text file (byte tokens, "
              "consecutive windows of seq_len + 1, the rest dropped)");
  struct Opts {
    std::string weights, input, depth;
    int batch = 8, threads = 0;
    size_t windows = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--weights", o->weights, "model.safetensors written by train --export (config.json beside it)")
      ->required();
  cmd->add_option("--input", o->input, "Text file to evaluate on, or a token file from `attnres data prepare` (e.g. val.bin)")->required();
  cmd->add_option("--batch", o->batch, "Windows per forward pass (at most the windows the input holds)")->capture_default_str()->check(number_in(1, false, 1 << 20));
  cmd->add_option("--windows", o->windows, "Evaluate only the first N windows (0: all); needed for an input that is not a regular file")
      ->capture_default_str()->check(number_in(0, false, 1e12));
  cmd->add_option("--threads", o->threads, "OpenMP and OpenBLAS threads (0: every core)")
      ->capture_default_str()->check(number_in(0, false, kMaxThreads));
  cmd->add_option("--depth", o->depth,
                  "Also write the mean depth-attention weights per site and the RMS of each sublayer's input "
                  "(JSON, for tools/plot.py)");
  cmd->callback([o] {
    require_input_file("--weights", o->weights);
    require_input_file("--input", o->input);
    if (!o->depth.empty()) {
      refuse_path_clashes({{"--weights", o->weights},
                           {"config.json of --weights", export_config_path(o->weights)},
                           {"--input", o->input},
                           {"--depth", o->depth, true}});
      check_writable(o->depth);  // before the evaluation, not after it
    }
    kernels::set_num_threads(o->threads);
    // A batch wider than the input holds only allocates: at most one sequence per window in it.
    const int T = read_export_config(export_config_path(o->weights)).seq_len;
    const size_t windows = eval_windows_bound(o->input, T, o->windows);
    Chunk model;
    load_export(model, o->weights, int(std::clamp<size_t>(windows, 1, size_t(o->batch))));
    ChunkActs acts;
    acts_init(acts, model);
    DepthStats depth;
    const EvalResult r = eval_file(model, acts, o->input, o->depth.empty() ? nullptr : &depth, o->windows);
    // One token is one byte: bits per byte is the loss in bits.
    std::printf("eval: %zu tokens | loss %.6f nats | %.4f bits/byte | perplexity %.3f\n", r.tokens, r.loss,
                r.loss / std::log(2.0), std::exp(r.loss));
    if (!o->depth.empty()) {
      write_file_durably(o->depth, depth_json(depth, model.cfg));
      std::printf("depth statistics: %s\n", o->depth.c_str());
    }
  });
}

}  // namespace attnres::cli
