// `attnres checkpoint inspect PATH`: the manifest's summary, every checksum verified.
// `attnres export --checkpoint PATH --out FILE.safetensors`: the safetensors export
// (and config.json beside it) of a checkpoint's parameters.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <set>
#include <stdexcept>

#include "launch/commands.h"
#include "runtime/checkpoint_format.h"
#include "runtime/evaluate.h"
#include "runtime/path_clash.h"
#include "runtime/safetensors.h"

namespace attnres::cli {

namespace {

void inspect(const std::string& path) {
  const Manifest m = read_manifest(path);
  const Config cfg = manifest_config(m, path);
  const CheckpointLayout& l = m.layout;
  const bool committed = std::filesystem::exists(std::filesystem::path(path) / kCheckpointMarker);
  std::printf("checkpoint %s\n", path.c_str());
  std::printf("  format version %d, %s\n", m.format_version,
              committed ? "committed" : "NOT committed (an incomplete write: never loaded)");
  std::printf("  run %s\n", m.run_id.empty() ? "unknown (written before run ids)" : m.run_id.c_str());
  std::printf("  step %d, optimizer step %d, tokens seen %llu, next sequence %llu, seed %llu\n", m.step,
              m.optimizer_step, (unsigned long long)m.tokens_seen, (unsigned long long)m.next_sequence,
              (unsigned long long)m.seed);
  std::printf("  model: %s residual, d_model %d, %d layers, %d heads, d_ff %d, seq_len %d, vocab %d\n",
              residual_mode_name(cfg.model.mode), cfg.model.d_model, cfg.model.n_layers, cfg.model.n_heads,
              cfg.model.d_ff, cfg.model.seq_len, cfg.model.vocab_size);
  std::printf("  written by dp %d x pp %d x tp %d, %s, %d virtual stages; chunks:", l.dp, l.pp, l.tp,
              l.schedule.c_str(), l.virtual_stages);
  for (const ChunkRange& c : l.chunks) std::printf(" %d:[%d,%d)", c.index, c.first, c.last);
  std::printf("\n");
  uint64_t bytes = 0;
  std::set<std::string> files;
  int bad = 0;
  std::string first_bad;
  for (const TensorRecord& r : m.tensors) {
    bytes += r.nbytes;
    files.insert(r.file);
    try {
      read_tensor(path, r);
    } catch (const CheckpointError& e) {
      std::fprintf(stderr, "  BAD: %s\n", e.what());
      if (bad++ == 0) first_bad = e.what();
    }
  }
  std::printf("  tensors: %zu records in %zu files, %.3f MB\n", m.tensors.size(), files.size(), bytes / 1e6);
  if (bad) throw CheckpointError(std::to_string(bad) + " of " + std::to_string(m.tensors.size()) +
                                 " tensors failed verification; first: " + first_bad);
  std::printf("  checksums: all %zu verified\n", m.tensors.size());
  // What resume checks besides: the manifest's own fields, and that every
  // tensor of the model is there, whole, with its moments.
  check_manifest(m, path);
  const RecordIndex idx = index_records(m);
  for (const TensorSpec& t : make_param_layout(cfg.model, 0, cfg.model.num_sublayers()).tensors)
    for (TensorKind k : {TensorKind::Param, TensorKind::AdamM, TensorKind::AdamV}) read_tensor_part(path, idx, t, k);
  std::printf("  every tensor of the model present and whole\n");
  if (!committed) throw CheckpointError(path + ": no " + std::string(kCheckpointMarker) + " marker");
}

void export_checkpoint(const std::string& path, const std::string& out, const std::string& dtype) {
  if (!std::filesystem::exists(std::filesystem::path(path) / kCheckpointMarker))
    throw CheckpointError(path + ": no " + std::string(kCheckpointMarker) +
                          " marker (the write did not complete); it is never loaded");
  const Manifest m = read_manifest(path);
  const ModelConfig model = manifest_config(m, path).model;
  const std::vector<float> params = read_full_params(path, m, model);
  write_safetensors(out, named_tensors(make_param_layout(model, 0, model.num_sublayers()), params.data()), model,
                    export_dtype(dtype));
  std::printf("exported step %d of %s to %s and %s\n", m.step, path.c_str(), out.c_str(),
              export_config_path(out).c_str());
}

}  // namespace

void add_checkpoint_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("checkpoint", "Work with checkpoints (docs/CHECKPOINT.md)");
  cmd->require_subcommand(1);
  CLI::App* ins = cmd->add_subcommand("inspect", "Print a checkpoint's manifest summary and verify every checksum");
  auto path = std::make_shared<std::string>();
  ins->add_option("path", *path, "Checkpoint directory (.../step_<N>)")->required();
  ins->callback([path] { inspect(*path); });
}

void add_export_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("export", "Write a checkpoint's parameters as safetensors (+ config.json)");
  auto path = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  cmd->add_option("--checkpoint", *path, "Checkpoint directory (.../step_<N>)")->required();
  cmd->add_option("--out", *out, "Output .safetensors file; config.json is written beside it")->required();
  auto dtype = std::make_shared<std::string>("fp32");
  cmd->add_option("--export-dtype", *dtype, "Element type of the file: fp32 or bf16")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->callback([path, out, dtype] {
    refuse_path_clashes({{"--checkpoint", *path, false, true},
                         {"--out", *out, true},
                         {"config.json of --out", export_config_path(*out), true}});
    check_export_writable(*out);  // before reading the checkpoint
    export_checkpoint(*path, *out, *dtype);
  });
}

}  // namespace attnres::cli
