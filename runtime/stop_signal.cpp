#include "runtime/stop_signal.h"

#include <signal.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace attnres {
namespace {

volatile sig_atomic_t g_signal = 0;

// Async-signal-safe: one store. The first signal wins, so a later SIGTERM
// (mpirun ending the job) does not turn a user's SIGINT into a preemption.
void on_stop_signal(int sig) {
  if (g_signal == 0) g_signal = sig;
}

}  // namespace

void install_stop_signals() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // blocking calls (MPI, file I/O) go on; the loop checks at the boundary
  for (int sig : {SIGTERM, SIGUSR1, SIGHUP, SIGINT})
    if (sigaction(sig, &sa, nullptr) != 0)
      throw std::runtime_error("cannot install the handler of signal " + std::to_string(sig) + ": " +
                               std::strerror(errno));
  // SIGUSR2 means nothing to a run, but mpirun and the SLURM script pass it
  // on: ignored, so a stray one does not end hours of training unsaved.
  if (signal(SIGUSR2, SIG_IGN) == SIG_ERR)
    throw std::runtime_error(std::string("cannot ignore SIGUSR2: ") + std::strerror(errno));
}

int received_stop_signal() { return g_signal; }

}  // namespace attnres
