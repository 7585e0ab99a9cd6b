// An NCCL group (ncclGroupStart ... ncclGroupEnd) that is always closed.
// Left open by a call inside it that threw, it would take in every later
// NCCL call of the thread, and the next ncclGroupEnd would launch them
// together with the failed group's. close() ends the group and throws
// end's error; leaving the scope without close() (an exception in flight)
// ends it quietly, so that exception is the one that propagates.
// Plain C++ over a start and an end call, so the CPU tests drive it with fakes.
#pragma once
#include <functional>
#include <utility>

#include "kernels/release.h"

namespace attnres {

class GroupGuard {
 public:
  GroupGuard(const std::function<void()>& start, std::function<void()> end) : end_(std::move(end)) { start(); }
  ~GroupGuard() {
    if (open_) kernels::release_quietly("closing an NCCL group after an error in it", end_);
  }
  GroupGuard(const GroupGuard&) = delete;
  GroupGuard& operator=(const GroupGuard&) = delete;

  void close() {
    open_ = false;
    end_();
  }

 private:
  std::function<void()> end_;
  bool open_ = true;
};

}  // namespace attnres
