// `attnres eval`: the loss of an exported model on a text file.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <utility>

#include "launch/commands.h"
#include "models/chunk.h"
#include "runtime/evaluate.h"
#include "runtime/safetensors.h"

namespace attnres::cli {

void add_eval_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "eval", "Mean next-token cross-entropy of an exported model on a text file (byte tokens, "
              "consecutive windows of seq_len + 1, the rest dropped)");
  struct Opts {
    std::string weights, input;
    int batch = 8;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--weights", o->weights, "model.safetensors written by train --export (config.json beside it)")
      ->required();
  cmd->add_option("--input", o->input, "Text file to evaluate on")->required();
  cmd->add_option("--batch", o->batch, "Windows per forward pass")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->callback([o] {
    for (const auto& [opt, path] : {std::pair{"--weights", o->weights}, {"--input", o->input}})
      if (std::filesystem::is_directory(path))
        throw std::invalid_argument(std::string(opt) + " " + path + ": is a directory, not a file");
    const ModelConfig m = read_export_config(export_config_path(o->weights));
    const auto tensors = read_safetensors(o->weights);
    Chunk model;
    chunk_init(model, m, 0, m.num_sublayers(), o->batch, 0);
    ChunkActs acts;
    acts_init(acts, model);
    load_named_tensors(model, tensors, o->weights);
    const double loss = eval_file_loss(model, acts, o->input);
    std::printf("eval_loss: %.6f\n", loss);
  });
}

}  // namespace attnres::cli
