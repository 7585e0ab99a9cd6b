#include "runtime/path_clash.h"

#include <filesystem>
#include <map>
#include <stdexcept>

namespace attnres {

namespace fs = std::filesystem;

namespace {

// Absolute, with symlinks of the part that exists resolved and . and .. gone.
fs::path canonical_path(const std::string& p) {
  std::error_code ec;
  fs::path c = fs::weakly_canonical(fs::absolute(p), ec);
  if (ec) c = fs::absolute(p).lexically_normal();
  if (!c.has_filename()) c = c.parent_path();  // "dir/" is "dir"
  return c;
}

std::string said(const PathUse& u) { return u.name + " " + u.path; }

}  // namespace

void refuse_path_clashes(const std::vector<PathUse>& uses) {
  // A map, not all pairs: a trace names one file per rank, and there may be many.
  std::map<fs::path, size_t> seen, trees;
  for (size_t i = 0; i < uses.size(); ++i) {
    const fs::path c = canonical_path(uses[i].path);
    const auto [it, fresh] = seen.emplace(c, i);
    const PathUse& other = uses[it->second];
    // Two trees at one path (--resume naming checkpoint.dir itself) are the
    // resume's to refuse, with a message that says what to give instead.
    if (!fresh && (uses[i].output || other.output) && !(uses[i].tree && other.tree))
      throw std::invalid_argument(said(other) + " and " + said(uses[i]) +
                                  " are the same path; an output would overwrite the other");
    if (uses[i].tree) trees.emplace(c, i);
  }
  for (const auto& [c, i] : seen) {
    if (!uses[i].output) continue;
    for (fs::path up = c.parent_path(); up != up.parent_path(); up = up.parent_path())
      if (const auto t = trees.find(up); t != trees.end())
        throw std::invalid_argument(said(uses[i]) + " is inside " + said(uses[t->second]) +
                                    ", whose contents are not this output's to write; write it elsewhere");
  }
}

}  // namespace attnres
