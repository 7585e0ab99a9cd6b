// Releasing a resource from a destructor (device memory, an event, a
// stream, a communicator). After a sticky CUDA error every release call
// fails too; thrown out of a destructor that would end the process
// (std::terminate) and hide the error that caused it. So a failed release
// is reported on stderr, naming what was released, and never thrown.
#pragma once
#include <exception>

namespace attnres::kernels {

void report_release_failure(const char* what, const char* error) noexcept;

template <class Release>
void release_quietly(const char* what, Release release) noexcept {
  try {
    release();
  } catch (const std::exception& e) {
    report_release_failure(what, e.what());
  }
}

}  // namespace attnres::kernels
