#include "runtime/durable_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace attnres {

namespace {

[[noreturn]] void fail(const std::string& path, const char* what) {
  throw std::runtime_error(path + ": " + what + ": " + std::strerror(errno));
}

std::string parent_dir(const std::string& path) {
  const std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

}  // namespace

DurableFile::DurableFile(const std::string& path) : path_(path), tmp_(path + ".tmp") {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd_ < 0) fail(tmp_, "cannot create");
}

DurableFile::~DurableFile() {
  if (fd_ < 0) return;
  ::close(fd_);
  ::unlink(tmp_.c_str());
}

void check_writable(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))  // the rename of a finished write would fail on it
    throw std::runtime_error(path + ": is a directory, not a file");
  std::filesystem::create_directories(parent_dir(path), ec);
  if (ec) throw std::runtime_error(parent_dir(path) + ": cannot create the directory: " + ec.message());
  const DurableFile probe(path);  // removed again, uncommitted
}

void DurableFile::write(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail(tmp_, "write failed");
    }
    p += w, n -= size_t(w);
  }
}

void DurableFile::commit() {
  if (::fsync(fd_) != 0) fail(tmp_, "fsync failed");
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0 || ::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp_.c_str());
    errno = e;
    fail(path_, rc != 0 ? "close of the temporary file failed" : "cannot rename the temporary file into place");
  }
  fsync_directory(parent_dir(path_));
}

void write_file_durably(const std::string& path, const std::string& bytes) {
  DurableFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) fail(dir, "cannot open the directory to fsync it");
  const int rc = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  errno = e;
  if (rc != 0) fail(dir, "fsync of the directory failed");
}

}  // namespace attnres
