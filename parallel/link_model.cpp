#include "parallel/link_model.h"

#include <cmath>
#include <stdexcept>
#include <sstream>
#include <string>

namespace attnres {

double hop_seconds(const LinkModel& link, int64_t bytes) {
  if (!(link.gbps > 0) || !std::isfinite(link.gbps))
    throw std::invalid_argument("link bandwidth " + (std::ostringstream() << link.gbps).str() +
                                " Gbit/s must be finite and > 0");
  if (!(link.latency_us >= 0) || !std::isfinite(link.latency_us))
    throw std::invalid_argument("link latency " + (std::ostringstream() << link.latency_us).str() +
                                " us must be finite and >= 0");
  if (bytes < 0) throw std::invalid_argument("hop of " + std::to_string(bytes) + " bytes");
  if (bytes == 0) return 0;
  return link.latency_us * 1e-6 + double(bytes) * 8.0 / (link.gbps * 1e9);
}

}  // namespace attnres
