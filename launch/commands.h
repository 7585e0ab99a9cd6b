// Each `attnres` subcommand lives in its own launch/cmd_<name>.cpp and
// registers itself on the CLI11 app here. A subcommand's callback throws
// (ConfigError, std::runtime_error) on bad input; main() prints the message
// and exits non-zero.
#pragma once
#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnres::cli {

// Thrown by a callback to end the program with this status after a message
// of its own (not an error: e.g. training stopped and saved on a signal).
struct ExitStatus {
  int code;
};

// An input file option names its own problem first: missing, or a directory
// (not a read error later about a file derived from it, such as config.json).
inline void require_input_file(const char* option, const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw std::invalid_argument(std::string(option) + " " + path + ": no such file");
  if (std::filesystem::is_directory(path, ec))
    throw std::invalid_argument(std::string(option) + " " + path + ": is a directory, not a file");
}

// A number option's check: lo <= x (lo < x when lo_strict) and x <= hi. Its
// message quotes the value as given and the bounds in short form (CLI11's own
// checks print DBL_MAX as a 309-digit number).
inline CLI::Validator number_in(double lo, bool lo_strict, double hi = HUGE_VAL) {
  auto bound = [](double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.12g", x);
    return std::string(buf);
  };
  const std::string want = std::string(lo_strict ? "> " : ">= ") + bound(lo) +
                           (std::isinf(hi) ? "" : " and <= " + bound(hi));
  return CLI::Validator(
      [=](std::string& v) {
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        if (end == v.c_str() || *end != '\0' || !std::isfinite(x)) return "'" + v + "' is not a finite number";
        if ((lo_strict ? x <= lo : x < lo) || x > hi) return "'" + v + "' must be " + want;
        return std::string();
      },
      "NUMBER " + want);
}

// An unsigned 64-bit option in decimal: CLI11 itself would turn -1, 2^64 or
// 1e23 into some other value without a word.
inline CLI::Validator uint64_decimal() {
  return CLI::Validator(
      [](std::string& v) {
        uint64_t x = 0;
        const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
        if (v.empty() || ec != std::errc() || end != v.data() + v.size())
          return "'" + v + "' is not a decimal integer in [0, 2^64 - 1]";
        return std::string();
      },
      "INTEGER in [0, 2^64 - 1]");
}

// What `attnres plan` prints for a config (train --dry-run prints it too).
void print_plan(const std::string& config_path, const std::vector<std::string>& sets);

// Registration functions, one per file. Each adds a subcommand with --help.
void add_data_command(CLI::App& app);      // attnres data prepare
void add_schedule_command(CLI::App& app);  // attnres schedule
void add_plan_command(CLI::App& app);      // attnres plan
void add_train_command(CLI::App& app);     // attnres train
void add_eval_command(CLI::App& app);      // attnres eval
void add_checkpoint_command(CLI::App& app);  // attnres checkpoint inspect
void add_export_command(CLI::App& app);      // attnres export --checkpoint
void add_config_command(CLI::App& app);      // attnres config [--get KEY]
void add_generate_command(CLI::App& app);    // attnres generate

}  // namespace attnres::cli
