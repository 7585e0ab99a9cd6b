// What a command reads and writes, checked before it does anything: no output
// may overwrite an input, another output, or anything inside a directory
// whose whole contents are read or owned (checkpoint.dir, data prepare's --input).
#pragma once
#include <string>
#include <vector>

namespace attnres {

struct PathUse {
  std::string name;     // as the user knows it: "--metrics", "data.dir train.bin", "config.json of --export"
  std::string path;
  bool output = false;  // the command writes it
  bool tree = false;    // a directory whose whole contents are the command's (checkpoint.dir, a checkpoint read, --input)
};

// Throws std::invalid_argument naming both uses when two of them, at least one
// an output, are the same path, or an output lies inside a tree. Paths are
// compared canonically (./a, a, dir/../a and a symlink to a are one file).
void refuse_path_clashes(const std::vector<PathUse>& uses);

}  // namespace attnres
