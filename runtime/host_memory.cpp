#include "runtime/host_memory.h"

#include <cstdio>
#include <fstream>
#include <sstream>

namespace attnres {
namespace {

uint64_t meminfo_available() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return 0;
}

// memory.max − memory.current of this process's cgroup (v2), 0 if unlimited or unknown.
uint64_t cgroup_available() {
  std::ifstream self("/proc/self/cgroup");
  std::string line, path;
  while (std::getline(self, line))
    if (line.rfind("0::", 0) == 0) path = "/sys/fs/cgroup" + line.substr(3);
  if (path.empty()) return 0;
  std::ifstream max_in(path + "/memory.max"), cur_in(path + "/memory.current");
  std::string max_s;
  uint64_t cur = 0;
  if (!(max_in >> max_s) || max_s == "max" || !(cur_in >> cur)) return 0;
  const uint64_t max = std::stoull(max_s);
  return max > cur ? max - cur : 1;
}

// A "Key:  N kB" line of /proc/self/status, in bytes; 0 if absent.
uint64_t self_status_bytes(const std::string& want) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(want, 0) == 0) return std::stoull(line.substr(want.size())) * 1024;
  return 0;
}

}  // namespace

uint64_t resident_bytes() { return self_status_bytes("VmRSS:"); }
uint64_t peak_resident_bytes() { return self_status_bytes("VmHWM:"); }

uint64_t available_host_bytes() {
  const uint64_t mem = meminfo_available(), cg = cgroup_available();
  if (mem == 0) return cg;
  return cg == 0 || mem < cg ? mem : cg;
}

std::string format_bytes(double b) {
  const char* prefix[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int i = 0;
  while (b >= 1024.0 && i < 6) b /= 1024.0, ++i;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f %s", b, prefix[i]);
  return buf;
}

}  // namespace attnres
