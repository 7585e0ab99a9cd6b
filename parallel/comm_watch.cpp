#include "parallel/comm_watch.h"

#include <algorithm>
#include <mutex>
#include <vector>

namespace attnres {

namespace {

struct Watched {
  std::mutex mu;  // held while a poll or an abort runs, so no communicator dies under it
  std::vector<AsyncComm*> comms;
};
Watched& watched() {
  static Watched w;
  return w;
}

}  // namespace

void watch_comm(AsyncComm* c) {
  Watched& w = watched();
  std::lock_guard<std::mutex> lock(w.mu);
  w.comms.push_back(c);
}

void unwatch_comm(AsyncComm* c) {
  Watched& w = watched();
  std::lock_guard<std::mutex> lock(w.mu);
  w.comms.erase(std::remove(w.comms.begin(), w.comms.end(), c), w.comms.end());
}

std::string poll_async_errors() {
  Watched& w = watched();
  std::lock_guard<std::mutex> lock(w.mu);
  for (AsyncComm* c : w.comms)
    if (std::string e = c->async_error(); !e.empty()) return e;
  return "";
}

void abort_watched_comms() {
  Watched& w = watched();
  std::lock_guard<std::mutex> lock(w.mu);
  for (AsyncComm* c : w.comms) c->abort();
}

}  // namespace attnres
