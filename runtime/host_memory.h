// How much memory this machine can still give, and bytes as people read them.
#pragma once
#include <cstdint>
#include <string>

namespace attnres {

// Bytes a process may still allocate on this machine: MemAvailable from
// /proc/meminfo, or less if a cgroup v2 memory.max (a SLURM job's limit, a
// container's) leaves less. 0 if neither can be read.
uint64_t available_host_bytes();

// This process's resident set now (VmRSS) and at its largest so far (VmHWM),
// from /proc/self/status; 0 if it cannot be read.
uint64_t resident_bytes();
uint64_t peak_resident_bytes();

// "1.50 GiB", "812.00 MiB": binary prefixes, two decimals.
std::string format_bytes(double bytes);

}  // namespace attnres
