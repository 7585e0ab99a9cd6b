// `attnres data prepare`: turn a source tree into byte-level train/val token files.
#include <cmath>
#include <cstdio>
#include <memory>
#include <filesystem>
#include <string>

#include "launch/commands.h"
#include "runtime/data.h"
#include "runtime/path_clash.h"

namespace attnres::cli {

void add_data_command(CLI::App& app) {
  CLI::App* data = app.add_subcommand("data", "Prepare training data");
  data->require_subcommand(1);
  CLI::App* prep = data->add_subcommand(
      "prepare",
      "Byte-tokenize every file under --input whose name matches --glob into "
      "OUT/train.bin and OUT/val.bin (split by file) and OUT/meta.json; see docs/DATA.md");

  struct Opts {
    std::string input = "/usr/lib/python3.11";
    std::string glob = "*.py";
    std::string out = "data/pystdlib";
    double val_fraction = 0.05;
  };
  auto opts = std::make_shared<Opts>();
  prep->add_option("--input", opts->input, "Directory searched recursively")->capture_default_str();
  prep->add_option("--glob", opts->glob, "fnmatch pattern on file names")->capture_default_str();
  prep->add_option("--out", opts->out, "Output directory")->capture_default_str();
  prep->add_option("--val-fraction", opts->val_fraction,
                   "Fraction of files (by path hash) held out for validation, in (0, 1)")
      ->capture_default_str();

  prep->callback([opts] {
    // An --out inside --input would be read back by the next prepare (val.bin into training).
    const std::filesystem::path out(opts->out);
    refuse_path_clashes({{"--input", opts->input, false, true},
                         {"--out", (out / "train.bin").string(), true},
                         {"--out", (out / "val.bin").string(), true},
                         {"--out", (out / "meta.json").string(), true}});
    const PrepareStats s = prepare_data(opts->input, opts->glob, opts->out, opts->val_fraction);
    const auto mib = [](uint64_t n) { return double(n) / (1024.0 * 1024.0); };
    const std::string train = (std::filesystem::path(opts->out) / "train.bin").string();
    const std::string val = (std::filesystem::path(opts->out) / "val.bin").string();
    std::printf("input   %s (%s), %llu files", opts->input.c_str(), opts->glob.c_str(),
                (unsigned long long)(s.train.files + s.val.files));
    if (s.skipped_empty > 0) std::printf(", %llu empty skipped", (unsigned long long)s.skipped_empty);
    std::printf("\ntrain   %llu files, %llu tokens (%.2f MiB) -> %s\n",
                (unsigned long long)s.train.files, (unsigned long long)s.train.tokens,
                mib(s.train.tokens), train.c_str());
    std::printf("val     %llu files, %llu tokens (%.2f MiB) -> %s\n",
                (unsigned long long)s.val.files, (unsigned long long)s.val.tokens,
                mib(s.val.tokens), val.c_str());
    std::printf("train byte-unigram entropy: %.4f nats (%.4f bits) per byte\n",
                s.train_unigram_entropy, s.train_unigram_entropy / std::log(2.0));
  });
}

}  // namespace attnres::cli
