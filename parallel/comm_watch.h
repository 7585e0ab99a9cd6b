// What the watchdog (runtime/watchdog.h) watches besides heartbeats: the
// communicators whose calls run on the device, where an error is only
// reported asynchronously (NCCL's: ncclCommGetAsyncError). Each registers
// itself while it lives. The watchdog polls their errors and, on an error or
// a hang, aborts them all (ncclCommAbort), so that no call waits forever on a
// peer that is gone, before it ends the process. The CPU tests register fakes.
#pragma once
#include <string>

namespace attnres {

class AsyncComm {
 public:
  virtual ~AsyncComm() = default;
  // The communicator's asynchronous error, or empty while it has none.
  virtual std::string async_error() = 0;
  // Ends every call in flight on it; nothing may use it afterwards.
  virtual void abort() = 0;
};

// Registration, from any thread. A communicator unwatches itself before it
// is destroyed; the polls below hold it alive while they run.
void watch_comm(AsyncComm* c);
void unwatch_comm(AsyncComm* c);
// The first asynchronous error of a watched communicator, or empty.
std::string poll_async_errors();
// Aborts every watched communicator.
void abort_watched_comms();

}  // namespace attnres
