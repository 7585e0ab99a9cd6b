#include "runtime/watchdog.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <cstdio>
#include <string>

#include "parallel/comm_watch.h"

namespace attnres {

namespace {

using Clock = std::chrono::steady_clock;

// Process-wide, so the checkpoint writer and other phases can beat without a handle.
std::atomic<int64_t> g_last_beat_ns{0};
std::atomic<int> g_last_step{0};
std::atomic<bool> g_running{false};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

}  // namespace

void heartbeat() { g_last_beat_ns.store(now_ns(), std::memory_order_relaxed); }

void heartbeat(int step) {
  g_last_step.store(step, std::memory_order_relaxed);
  heartbeat();
}

Watchdog::Watchdog(int timeout_s, int world_rank) : timeout_s_(timeout_s), rank_(world_rank) {
  assert(timeout_s >= 0);
  if (timeout_s_ == 0) return;
  const bool was_running = g_running.exchange(true);
  assert(!was_running && "one watchdog per process");
  (void)was_running;
  g_last_step.store(0);
  heartbeat();
  thread_ = std::thread([this] { watch(); });
}

Watchdog::~Watchdog() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  g_running.store(false);
}

void Watchdog::watch() {
  const int64_t timeout_ns = int64_t(timeout_s_) * 1'000'000'000;
  // Check a few times per timeout, so it fires at most ~25% late.
  const auto period = std::chrono::milliseconds(std::clamp<int64_t>(timeout_s_ * 250, 50, 5000));
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, period, [this] { return stop_; })) {
    if (const std::string err = poll_async_errors(); !err.empty())
      fail(err + " (last heartbeat at step " + std::to_string(g_last_step.load()) + ")");
    const int64_t idle = now_ns() - g_last_beat_ns.load(std::memory_order_relaxed);
    if (idle < timeout_ns) continue;
    fail("no progress for " + std::to_string(idle / 1'000'000'000) + " s (last heartbeat at step " +
         std::to_string(g_last_step.load()) + ")");
  }
}

void Watchdog::fail(const std::string& why) {
  std::fprintf(stderr, "attnres: rank %d: %s; aborting\n", rank_, why.c_str());
  std::fflush(stderr);
  abort_watched_comms();
  ::_exit(kWatchdogExitCode);
}

}  // namespace attnres
