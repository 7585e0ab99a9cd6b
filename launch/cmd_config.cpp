// `attnres config`: the config a run would use, resolved (file, then --set
// overrides, defaults filled in, checked) and printed as YAML, or one key's
// value with --get. launch/supervise.sh asks it for checkpoint.dir, so the
// config is read by one parser only.
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "launch/commands.h"
#include "runtime/config.h"

namespace attnres::cli {

void add_config_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("config", "Print the resolved config (or one key of it) and exit");
  struct Opts {
    std::string config, get;
    std::vector<std::string> sets;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--config", o->config, "YAML config file (see docs/CONFIG.md)")->required();
  cmd->add_option("--set", o->sets, "Override a config key: --set train.steps=100 (repeatable)");
  cmd->add_option("--get", o->get, "Print only this key's value, e.g. checkpoint.dir");
  cmd->callback([o] {
    const std::string yaml = config_to_yaml(load_config(o->config, o->sets));
    if (o->get.empty()) {
      std::printf("%s\n", yaml.c_str());
      return;
    }
    const size_t dot = o->get.find('.');
    const YAML::Node root = YAML::Load(yaml);
    const YAML::Node v = dot == std::string::npos ? YAML::Node() : root[o->get.substr(0, dot)][o->get.substr(dot + 1)];
    if (!v.IsDefined() || !v.IsScalar())
      throw std::invalid_argument("--get " + o->get + ": not a config key (section.key, docs/CONFIG.md)");
    std::printf("%s\n", v.Scalar().c_str());
  });
}

}  // namespace attnres::cli
