// Token files, the deterministic sampler and `data prepare`.
#include "runtime/data.h"

#include <fnmatch.h>
#include <xxhash.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "runtime/durable_file.h"

namespace fs = std::filesystem;

namespace attnres {

namespace {

void put_le(uint8_t* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) p[i] = uint8_t(v >> (8 * i));
}

uint64_t get_le(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++) v |= uint64_t(p[i]) << (8 * i);
  return v;
}

std::vector<uint8_t> read_file(const std::string& path) {
  if (std::filesystem::is_directory(path)) throw std::runtime_error(path + ": is a directory, not a file");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
  const std::streamoff size = in.tellg();
  if (size < 0) throw std::runtime_error(path + ": cannot tell its size");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (!in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(bytes.size())))
    throw std::runtime_error(path + ": read error");
  return bytes;
}

uint64_t hash_path(const std::string& rel) { return XXH64(rel.data(), rel.size(), 0); }

}  // namespace

void write_token_file(const std::string& path, const std::vector<uint8_t>& tokens) {
  uint8_t header[kTokenHeaderSize] = {};
  std::memcpy(header, kTokenMagic, 8);
  put_le(header + 8, kTokenVersion, 4);
  put_le(header + 12, kTokenDtypeU8, 4);
  put_le(header + 16, tokens.size(), 8);
  put_le(header + 24, XXH64(tokens.data(), tokens.size(), 0), 8);
  DurableFile f(path);
  f.write(header, sizeof header);
  f.write(tokens.data(), tokens.size());
  f.commit();
}

TokenFile::TokenFile(const std::string& p) : path(p) {
  std::vector<uint8_t> bytes = read_file(path);
  auto bad = [&](const std::string& what) { return std::runtime_error(path + ": " + what); };
  if (bytes.size() < kTokenHeaderSize)
    throw bad("not a token file: " + std::to_string(bytes.size()) +
              " bytes, shorter than the 64-byte header");
  const uint8_t* h = bytes.data();
  if (std::memcmp(h, kTokenMagic, 8) != 0)
    throw bad("bad magic: not an attnres token file (expected \"ATRNTOK\\0\")");
  const uint64_t version = get_le(h + 8, 4), dtype = get_le(h + 12, 4);
  if (version != kTokenVersion)
    throw bad("unsupported version " + std::to_string(version) + " (expected " +
              std::to_string(kTokenVersion) + ")");
  if (dtype != kTokenDtypeU8)
    throw bad("unknown dtype " + std::to_string(dtype) + " (expected 1 = uint8)");
  for (size_t i = 32; i < kTokenHeaderSize; i++)
    if (h[i] != 0) throw bad("reserved header byte " + std::to_string(i) + " is not zero");
  const uint64_t count = get_le(h + 16, 8), checksum = get_le(h + 24, 8);
  const uint64_t payload = bytes.size() - kTokenHeaderSize;
  if (payload != count)
    throw bad(std::string(payload < count ? "truncated" : "trailing bytes") +
              ": header says " + std::to_string(count) + " tokens, payload has " +
              std::to_string(payload) + " bytes");
  if (XXH64(h + kTokenHeaderSize, payload, 0) != checksum)
    throw bad("checksum mismatch: payload XXH64 differs from the header (corrupted file)");
  // In place: a second copy of the corpus would stay resident (glibc keeps freed large blocks).
  bytes.erase(bytes.begin(), bytes.begin() + kTokenHeaderSize);
  tokens = std::move(bytes);
}

DataLoader::DataLoader(const TokenFile& file, int B, int T, uint64_t seed)
    : file_(&file), B_(B), T_(T), seed_(seed) {
  assert(B > 0 && T > 0);
  if (file.size() < uint64_t(T) + 1)
    throw std::runtime_error(file.path + ": " + std::to_string(file.size()) +
                             " tokens, fewer than seq_len + 1 = " + std::to_string(T + 1));
}

uint64_t DataLoader::window_start(uint64_t sequence) const {
  uint8_t key[16];
  put_le(key, seed_, 8);
  put_le(key + 8, sequence, 8);
  // count - T start positions keep the T + 1 token window inside the file.
  return XXH64(key, sizeof key, 0) % (file_->size() - uint64_t(T_));
}

void DataLoader::fill(Batch& batch, uint64_t first_sequence) const {
  batch.B = B_;
  batch.T = T_;
  batch.inputs.resize(size_t(B_) * T_);
  batch.targets.resize(size_t(B_) * T_);
  const uint8_t* tok = file_->tokens.data();
  for (int b = 0; b < B_; b++) {
    const uint8_t* w = tok + window_start(first_sequence + uint64_t(b));
    int32_t* in = batch.inputs.data() + size_t(b) * T_;
    int32_t* tg = batch.targets.data() + size_t(b) * T_;
    for (int t = 0; t < T_; t++) {
      in[t] = w[t];
      tg[t] = w[t + 1];
    }
  }
}

void DataLoader::next(Batch& batch) {
  fill(batch, counter_);
  counter_ += uint64_t(B_);
}

std::vector<Batch> validation_batches(const TokenFile& file, int B, int T, int max_batches) {
  assert(B > 0 && T > 0 && max_batches > 0);
  if (file.size() < uint64_t(T) + 1)
    throw std::runtime_error(file.path + ": " + std::to_string(file.size()) +
                             " tokens, fewer than seq_len + 1 = " + std::to_string(T + 1) +
                             " needed for one validation window");
  const uint64_t windows = std::min<uint64_t>(uint64_t(max_batches) * B, (file.size() - 1) / T);
  std::vector<Batch> out;
  for (uint64_t w0 = 0; w0 < windows; w0 += B) {
    Batch b;
    b.B = int(std::min<uint64_t>(B, windows - w0));
    b.T = T;
    b.inputs.resize(size_t(b.B) * T);
    b.targets.resize(size_t(b.B) * T);
    for (int i = 0; i < b.B; i++) {
      const uint8_t* w = file.tokens.data() + (w0 + i) * T;
      for (int t = 0; t < T; t++) {
        b.inputs[size_t(i) * T + t] = w[t];
        b.targets[size_t(i) * T + t] = w[t + 1];
      }
    }
    out.push_back(std::move(b));
  }
  return out;
}

void pad_batch(Batch& b, int B) {
  assert(b.B <= B);
  b.inputs.resize(size_t(B) * b.T, 0);
  b.targets.resize(size_t(B) * b.T, kMaskedTarget);
  b.B = B;
}

double unigram_entropy(const std::vector<uint8_t>& tokens) {
  uint64_t counts[256] = {};
  for (uint8_t t : tokens) counts[t]++;
  double h = 0;
  for (uint64_t c : counts)
    if (c > 0) {
      const double p = double(c) / double(tokens.size());
      h -= p * std::log(p);
    }
  return h;
}

PrepareStats prepare_data(const std::string& input_dir, const std::string& glob_pattern,
                          const std::string& out_dir, double val_fraction) {
  if (!(val_fraction > 0 && val_fraction < 1))
    throw std::runtime_error("val_fraction " + (std::ostringstream() << val_fraction).str() +
                             " must be in (0, 1)");
  std::error_code ec;
  if (!fs::is_directory(input_dir, ec))
    throw std::runtime_error(input_dir + ": input directory does not exist");

  struct Source {
    std::string rel;
    uint64_t hash;
    bool val;
  };
  std::vector<Source> files;
  PrepareStats stats;
  const auto opts = fs::directory_options::skip_permission_denied;
  for (auto it = fs::recursive_directory_iterator(input_dir, opts, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const std::string name = it->path().filename().string();
    if (::fnmatch(glob_pattern.c_str(), name.c_str(), 0) != 0) continue;
    if (it->file_size(ec) == 0) {
      stats.skipped_empty++;
      continue;
    }
    const std::string rel = fs::relative(it->path(), input_dir).generic_string();
    files.push_back({rel, hash_path(rel), false});
  }
  if (ec) throw std::runtime_error(input_dir + ": cannot list: " + ec.message());
  if (files.empty())
    throw std::runtime_error(input_dir + ": no non-empty file matches '" + glob_pattern + "'");
  if (files.size() < 2)
    throw std::runtime_error(input_dir + ": only 1 non-empty file matches '" + glob_pattern +
                             "'; the train/val split is by file and needs at least 2");
  std::sort(files.begin(), files.end(), [](const Source& a, const Source& b) { return a.rel < b.rel; });

  const uint64_t threshold = uint64_t(std::llround(val_fraction * 1000));
  size_t n_val = 0;
  for (Source& f : files) n_val += (f.val = f.hash % 1000 < threshold);
  auto by_hash = [](const Source* a, const Source* b) { return a->hash < b->hash; };
  if (n_val == 0 || n_val == files.size()) {
    std::vector<Source*> ptrs;
    for (Source& f : files) ptrs.push_back(&f);
    if (n_val == 0) (*std::min_element(ptrs.begin(), ptrs.end(), by_hash))->val = true;
    else (*std::max_element(ptrs.begin(), ptrs.end(), by_hash))->val = false;
  }

  std::vector<uint8_t> train, val;
  for (const Source& f : files) {
    std::vector<uint8_t> bytes = read_file((fs::path(input_dir) / f.rel).string());
    std::vector<uint8_t>& dst = f.val ? val : train;
    dst.insert(dst.end(), bytes.begin(), bytes.end());
    (f.val ? stats.val : stats.train).files++;
  }
  stats.train.tokens = train.size();
  stats.val.tokens = val.size();
  stats.train_unigram_entropy = unigram_entropy(train);

  fs::create_directories(out_dir, ec);
  if (ec) throw std::runtime_error(out_dir + ": cannot create output directory: " + ec.message());
  write_token_file((fs::path(out_dir) / "train.bin").string(), train);
  write_token_file((fs::path(out_dir) / "val.bin").string(), val);

  nlohmann::ordered_json meta = {
      {"format_version", kTokenVersion},
      {"tokenizer", "bytes"},
      {"vocab_size", kByteVocab},
      {"input_dir", input_dir},
      {"glob", glob_pattern},
      {"val_fraction", val_fraction},
      {"skipped_empty_files", stats.skipped_empty},
      {"train", {{"files", stats.train.files}, {"tokens", stats.train.tokens}}},
      {"val", {{"files", stats.val.files}, {"tokens", stats.val.tokens}}},
      {"train_unigram_entropy_nats", stats.train_unigram_entropy},
  };
  write_file_durably((fs::path(out_dir) / "meta.json").string(), meta.dump(2) + "\n");
  return stats;
}

}  // namespace attnres
