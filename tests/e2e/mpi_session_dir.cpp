// Open MPI 4 keeps its session directory under /tmp/ompi.<host>.<uid>, shared
// by every mpirun on the machine; the last job to end removes it, and a job
// starting at that moment fails in orte_init ("unable to create the desired
// directory"). CTest runs tests in parallel, so each test process gives its
// mpirun children a session base of their own, removed at exit.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace {

// Under the build directory, so a process that dies before its destructor
// leaves nothing in /tmp.
struct PrivateMpiSessionDir {
  std::string dir = std::string(ATTNRES_BINARY_DIR "/ompi_sessions/") + std::to_string(::getpid());
  PrivateMpiSessionDir() {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (!ec) ::setenv("OMPI_MCA_orte_tmpdir_base", dir.c_str(), 1);
  }
  ~PrivateMpiSessionDir() {
    std::error_code ec;
    if (!dir.empty()) std::filesystem::remove_all(dir, ec);
  }
};
const PrivateMpiSessionDir session_dir;

}  // namespace
