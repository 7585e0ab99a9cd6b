// Durable file writes: a file appears under its name complete or not at all,
// and once the write returns it survives a crash. Write to `path`.tmp, fsync
// it, rename it over `path`, fsync the directory. The one way the runtime
// writes a file that must survive: prepared data, the safetensors export,
// checkpoints and fault-injection markers.
#pragma once
#include <cstddef>
#include <string>

namespace attnres {

// A file written in pieces. Errors throw std::runtime_error naming the file.
class DurableFile {
 public:
  // Creates (truncates) `path`.tmp.
  explicit DurableFile(const std::string& path);
  // Without commit(), the temporary file is removed: `path` is untouched.
  ~DurableFile();
  DurableFile(const DurableFile&) = delete;
  DurableFile& operator=(const DurableFile&) = delete;

  void write(const void* data, size_t n);
  // fsync, close, rename to `path`, fsync the directory.
  void commit();

 private:
  std::string path_, tmp_;
  int fd_ = -1;
};

// The whole file at once.
void write_file_durably(const std::string& path, const std::string& bytes);

// Creates the parent directories of `path` and its temporary file, then
// removes that file: a write of `path` that would fail after hours of
// training fails here, at the start (std::runtime_error naming the file,
// also when it is a directory).
void check_writable(const std::string& path);

// fsync of a directory: a new, renamed or removed entry is durable only then.
void fsync_directory(const std::string& dir);

}  // namespace attnres
