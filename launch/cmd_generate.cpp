// `attnres generate`: text from an exported model, decoded with a KV cache.
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "launch/commands.h"
#include "models/chunk.h"
#include "models/decode.h"
#include "runtime/config.h"
#include "runtime/evaluate.h"
#include "runtime/generate.h"

namespace attnres::cli {

void add_generate_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("generate", "Continue a prompt with text sampled from an exported model");
  struct Opts {
    std::string weights, prompt;
    SampleOptions sample;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--weights", o->weights, "model.safetensors written by train --export (config.json beside it)")
      ->required();
  cmd->add_option("--prompt", o->prompt, "Text to continue (bytes; at least one)")->required();
  cmd->add_option("--tokens", o->sample.tokens, "Tokens (bytes) to generate")
      ->capture_default_str()->check(number_in(1, false, 1 << 24));
  cmd->add_option("--temperature", o->sample.temperature, "Softmax temperature; 0 = greedy")
      ->capture_default_str()->check(number_in(0, false, 100));
  cmd->add_option("--top-k", o->sample.top_k, "Sample among the k most likely tokens; 0 = all")
      ->capture_default_str()->check(number_in(0, false, 1 << 24));
  cmd->add_option("--seed", o->sample.seed, "Random seed of the sampler")->capture_default_str()->check(uint64_decimal());
  cmd->add_option("--threads", o->threads, "OpenMP and OpenBLAS threads (0: every core)")
      ->capture_default_str()->check(number_in(0, false, kMaxThreads));
  cmd->callback([o] {
    require_input_file("--weights", o->weights);
    kernels::set_num_threads(o->threads);
    Chunk model;
    load_export(model, o->weights, 1);
    Decoder dec;
    decoder_init(dec, model);
    std::vector<int32_t> prompt;
    for (unsigned char ch : o->prompt) prompt.push_back(ch);
    std::fwrite(o->prompt.data(), 1, o->prompt.size(), stdout);
    generate(dec, prompt, o->sample, [](int32_t t) {
      std::fputc(t, stdout);
      std::fflush(stdout);
    });
    std::fputc('\n', stdout);
  });
}

}  // namespace attnres::cli
