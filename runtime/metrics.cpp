#include "runtime/metrics.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace attnres {

double model_flops_per_token(const ModelConfig& m) {
  const double d = m.d_model, F = m.d_ff, V = m.vocab_size;
  const double matmul_params = m.n_layers * (4.0 * d * d + 3.0 * d * F) + V * d;
  return 6.0 * matmul_params + 6.0 * m.n_layers * double(m.seq_len) * d;
}

std::string format_duration(double seconds) {
  const long t = std::lround(std::max(0.0, seconds));
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

std::string format_log_line(const StepMetrics& s, int total_steps) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "step %5d/%d | loss %.4f | lr %.2e | gnorm %.3f | %8.0f tok/s | mfu %5.1f%%",
                s.step, total_steps, printable(s.loss), s.lr, printable(s.grad_norm), s.tokens_per_s, 100.0 * s.mfu);
  std::string line = buf;
  if (s.val_loss) {
    std::snprintf(buf, sizeof buf, " | val_loss %.4f", printable(*s.val_loss));
    line += buf;
  }
  line += " | " + format_duration(s.elapsed_s) + " elapsed";
  if (s.step < total_steps) line += ", ETA " + format_duration(s.eta_s);
  if (s.skipped) line += " | SKIPPED: non-finite, update not applied";
  return line + s.extra_log;
}

MetricsWriter::MetricsWriter(const std::string& path, int resumed_step) {
  std::string kept;
  if (std::FILE* old = resumed_step > 0 ? std::fopen(path.c_str(), "r") : nullptr) {
    char line[4096];
    while (std::fgets(line, sizeof line, old)) {
      const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("step") && j["step"].is_number() && j["step"].get<int>() <= resumed_step)
        kept += line;
    }
    std::fclose(old);
  }
  std::error_code ec;  // its directory is made as for --export and --trace
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  f_ = std::fopen(path.c_str(), "w");
  if (!f_) throw std::runtime_error(path + ": cannot open metrics file for writing");
  std::fputs(kept.c_str(), f_);
}

MetricsWriter::~MetricsWriter() {
  if (f_) std::fclose(f_);
}

void MetricsWriter::write(const StepMetrics& s) {
  if (!f_) return;
  nlohmann::json j = {{"step", s.step}, {"loss", s.loss}, {"lr", s.lr}, {"grad_norm", s.grad_norm},
                      {"tokens_per_s", s.tokens_per_s}, {"mfu", s.mfu}, {"elapsed_s", s.elapsed_s},
                      {"eta_s", s.eta_s}};
  if (s.val_loss) j["val_loss"] = *s.val_loss;
  if (s.skipped) j["skipped"] = true;
  std::string line = j.dump();
  if (!s.extra_json.empty()) line = line.substr(0, line.size() - 1) + "," + s.extra_json + "}";
  std::fprintf(f_, "%s\n", line.c_str());
  std::fflush(f_);
}

}  // namespace attnres
