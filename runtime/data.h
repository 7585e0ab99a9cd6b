// Byte-level token data: preparing token files from a source tree, loading and
// validating them, and deterministic batching. Format in docs/DATA.md.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace attnres {

// The tokenizer is the identity on bytes: token = byte value, vocabulary 256.
constexpr int kByteVocab = 256;

// Token file header (64 bytes, little-endian), then `count` payload bytes.
constexpr char kTokenMagic[8] = {'A', 'T', 'R', 'N', 'T', 'O', 'K', '\0'};
constexpr uint32_t kTokenVersion = 1;
constexpr uint32_t kTokenDtypeU8 = 1;  // one byte per token; the only dtype so far
constexpr size_t kTokenHeaderSize = 64;

// Writes a token file durably (runtime/durable_file.h). Throws
// std::runtime_error naming the path.
void write_token_file(const std::string& path, const std::vector<uint8_t>& tokens);

// A validated token file held in memory.
struct TokenFile {
  std::string path;
  std::vector<uint8_t> tokens;

  // Reads and validates magic, version, dtype, reserved bytes, length and
  // checksum; throws std::runtime_error naming the file and the problem.
  explicit TokenFile(const std::string& path);
  uint64_t size() const { return tokens.size(); }
};

// B sequences of T tokens; targets[i] is the token after inputs[i].
struct Batch {
  int B = 0, T = 0;
  std::vector<int32_t> inputs, targets;  // [B, T] row-major
};

// A target that masks its position: the cross-entropy there is 0 (padding).
constexpr int32_t kMaskedTarget = -1;

// Pads `b` to B sequences (b.B <= B) with masked rows: inputs 0, targets
// kMaskedTarget. They add nothing to the loss sum, and the batch has the
// shape every pipeline hop expects.
void pad_batch(Batch& b, int B);

// Training sampler. Sequence i (a global index, counted across steps,
// microbatches and dp ranks) is the window of T + 1 tokens starting at
// XXH64(le64(seed) || le64(i)) mod (count - T). Content therefore depends only
// on (file, T, seed, i): microbatch m of step s holds sequences
// [(s * grad_accum + m) * B, ... + B), whatever the parallel layout.
class DataLoader {
 public:
  // Throws std::runtime_error if the file has fewer than T + 1 tokens.
  DataLoader(const TokenFile& file, int B, int T, uint64_t seed);

  // Fills B sequences starting at global index first_sequence. Stateless.
  void fill(Batch& batch, uint64_t first_sequence) const;
  // fill() at the counter, then advance the counter by B.
  void next(Batch& batch);

  // The loader's whole state, for checkpoints.
  uint64_t position() const { return counter_; }
  void seek(uint64_t sequence) { counter_ = sequence; }

  // Start offset of sequence i in the file.
  uint64_t window_start(uint64_t sequence) const;

 private:
  const TokenFile* file_;
  int B_, T_;
  uint64_t seed_;
  uint64_t counter_ = 0;
};

// The fixed validation set: consecutive non-overlapping windows from the start
// of the file (window w covers tokens [w*T, w*T + T]), min(max_batches * B,
// (count - 1) / T) of them, grouped into batches of B; the last batch may be
// shorter (its Batch::B says how many). Throws if count < T + 1.
std::vector<Batch> validation_batches(const TokenFile& file, int B, int T, int max_batches);

struct SplitStats {
  uint64_t files = 0;
  uint64_t tokens = 0;
};

struct PrepareStats {
  SplitStats train, val;
  uint64_t skipped_empty = 0;         // matching files with no bytes
  double train_unigram_entropy = 0;   // nats per byte of the train split
};

// Lists regular files under input_dir (recursively) whose file NAME matches
// glob_pattern (fnmatch), sorted by relative path. A file goes to val iff
// XXH64(relative path) % 1000 < val_fraction * 1000; if that leaves a split
// empty, the file with the smallest (for val) or largest (for train) hash
// moves over. Writes out_dir/{train.bin,val.bin,meta.json}. Throws
// std::runtime_error on a missing input dir, no matching files, fewer than 2
// non-empty files, val_fraction outside (0, 1) or an unwritable output.
PrepareStats prepare_data(const std::string& input_dir, const std::string& glob_pattern,
                          const std::string& out_dir, double val_fraction);

// Entropy in nats of the byte distribution of `tokens`.
double unigram_entropy(const std::vector<uint8_t>& tokens);

}  // namespace attnres
