// Per-rank hang detection. A thread watches for heartbeats from the training
// loop, and polls the asynchronous errors of the device communicators
// (parallel/comm_watch.h). If no heartbeat arrives within the timeout, or a
// communicator reports an error, it prints which rank and why (the step of
// the last heartbeat), aborts the watched communicators so that no peer's
// call is left waiting on this one, and ends the process with
// _exit(kWatchdogExitCode). mpirun then tears the job down and the
// supervisor (launch/supervise.sh) restarts it. _exit, not MPI_Abort: under
// MPI_THREAD_FUNNELED only the main thread may call MPI, and the main thread
// is the one that is stuck. The trainer starts it before any communicator
// is set up, since set-up waits on every peer.
#pragma once
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace attnres {

constexpr int kWatchdogExitCode = 124;  // as timeout(1)

class Watchdog {
 public:
  // timeout_s = 0: no thread, heartbeats cost nothing. The clock starts now.
  Watchdog(int timeout_s, int world_rank);
  ~Watchdog();  // stops the thread
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  void watch();
  [[noreturn]] void fail(const std::string& why);
  int timeout_s_, rank_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// Progress: restarts the running watchdog's clock (no-op without one). Any
// thread may call it. The step form also records the last completed step
// (1-based) for the message; call it after every step. The plain form is for
// long phases inside a step: evaluation, checkpoint writes, resume.
void heartbeat(int step);
void heartbeat();

}  // namespace attnres
