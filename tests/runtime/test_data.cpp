// Token files, data prepare and the sampler.
#include <gtest/gtest.h>
#include <unistd.h>
#include <xxhash.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "runtime/data.h"

namespace fs = std::filesystem;
using namespace attnres;

namespace {

// A fresh temp directory, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("attnres_data_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

void write_text(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const fs::path& p, const std::vector<uint8_t>& b) {
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), b.size());
}

// Distinct content per file so membership in a split can be recognised.
std::string content(int i) {
  std::string s = "# file " + std::to_string(i) + "\n";
  for (int k = 0; k < i % 5 + 1; k++) s += "x = " + std::to_string(i * 31 + k) + "\n";
  return s;
}

std::string as_string(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

std::string expect_load_error(const fs::path& p) {
  try {
    TokenFile f(p.string());
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
    return msg;
  }
  ADD_FAILURE() << "no error loading " << p;
  return "";
}

}  // namespace

TEST(TokenFile, HeaderLayoutAndRoundTrip) {
  TempDir d;
  std::vector<uint8_t> tok = {0, 1, 2, 255, 128, 7};
  const fs::path p = d.path / "t.bin";
  write_token_file(p.string(), tok);
  const std::vector<uint8_t> raw = read_bytes(p);
  ASSERT_EQ(raw.size(), 64u + tok.size());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(raw.data()), 8), std::string("ATRNTOK\0", 8));
  EXPECT_EQ(raw[8], 1);   // version, little-endian u32
  EXPECT_EQ(raw[12], 1);  // dtype
  EXPECT_EQ(raw[16], 6);  // count
  uint64_t h = 0;
  for (int i = 0; i < 8; i++) h |= uint64_t(raw[24 + i]) << (8 * i);
  EXPECT_EQ(h, XXH64(tok.data(), tok.size(), 0));
  for (int i = 32; i < 64; i++) EXPECT_EQ(raw[i], 0);
  EXPECT_FALSE(fs::exists(p.string() + ".tmp"));

  TokenFile f(p.string());
  EXPECT_EQ(f.tokens, tok);
  EXPECT_EQ(f.size(), 6u);
}

TEST(TokenFile, CorruptionsAreRejectedNamingTheProblem) {
  TempDir d;
  std::vector<uint8_t> tok(1000);
  for (size_t i = 0; i < tok.size(); i++) tok[i] = uint8_t(i * 7 + 3);
  const fs::path good = d.path / "good.bin";
  write_token_file(good.string(), tok);
  const std::vector<uint8_t> raw = read_bytes(good);

  auto corrupt = [&](const char* name, auto edit) {
    std::vector<uint8_t> b = raw;
    edit(b);
    const fs::path p = d.path / name;
    write_bytes(p, b);
    return expect_load_error(p);
  };
  EXPECT_NE(corrupt("magic.bin", [](auto& b) { b[3] = 'X'; }).find("magic"), std::string::npos);
  fs::create_directories(d.path / "dir.bin");  // was std::bad_alloc
  EXPECT_NE(expect_load_error(d.path / "dir.bin").find("dir.bin: is a directory, not a file"), std::string::npos);
  EXPECT_NE(corrupt("version.bin", [](auto& b) { b[8] = 2; }).find("version 2"), std::string::npos);
  EXPECT_NE(corrupt("dtype.bin", [](auto& b) { b[12] = 4; }).find("dtype 4"), std::string::npos);
  EXPECT_NE(corrupt("reserved.bin", [](auto& b) { b[40] = 1; }).find("reserved"), std::string::npos);
  EXPECT_NE(corrupt("trunc.bin", [](auto& b) { b.resize(b.size() - 10); }).find("truncated"),
            std::string::npos);
  EXPECT_NE(corrupt("extra.bin", [](auto& b) { b.push_back(0); }).find("trailing"), std::string::npos);
  EXPECT_NE(corrupt("short.bin", [](auto& b) { b.resize(20); }).find("header"), std::string::npos);
  EXPECT_NE(corrupt("flip.bin", [](auto& b) { b[64 + 500] ^= 0x10; }).find("checksum"),
            std::string::npos);
  EXPECT_NE(expect_load_error(d.path / "missing.bin").find("cannot open"), std::string::npos);
}

TEST(Prepare, RoundTripSplitByFileAndMeta) {
  TempDir d;
  const fs::path in = d.path / "src";
  std::map<std::string, std::string> files;  // relative path -> content
  for (int i = 0; i < 60; i++) {
    const std::string rel = (i % 3 == 0 ? "pkg/sub/" : i % 3 == 1 ? "pkg/" : "") +
                            std::string("m") + std::to_string(i) + ".py";
    files[rel] = content(i);
    write_text(in / rel, files[rel]);
  }
  write_text(in / "notes.txt", "not python\n");
  write_text(in / "pkg/empty.py", "");
  const fs::path out = d.path / "out";
  PrepareStats s = prepare_data(in.string(), "*.py", out.string(), 0.2);

  EXPECT_EQ(s.train.files + s.val.files, 60u);
  EXPECT_GE(s.val.files, 1u);
  EXPECT_GE(s.train.files, 1u);
  EXPECT_EQ(s.skipped_empty, 1u);

  // Expected split, computed independently from the documented rule, and the
  // expected concatenation in sorted path order.
  std::string want_train, want_val;
  uint64_t n_val = 0;
  for (const auto& [rel, text] : files) {  // std::map iterates in sorted order
    const bool val = XXH64(rel.data(), rel.size(), 0) % 1000 < 200;
    (val ? want_val : want_train) += text;
    n_val += val;
  }
  ASSERT_GT(n_val, 0u);  // with 60 files and 20% the rule itself gives a non-empty val
  EXPECT_EQ(s.val.files, n_val);

  TokenFile train((out / "train.bin").string()), val((out / "val.bin").string());
  EXPECT_EQ(as_string(train.tokens), want_train);
  EXPECT_EQ(as_string(val.tokens), want_val);
  EXPECT_EQ(s.train.tokens, want_train.size());
  EXPECT_EQ(as_string(val.tokens).find("not python"), std::string::npos);

  // No file in both splits: every file's text is found in exactly one of them.
  for (const auto& [rel, text] : files) {
    const bool in_train = want_train.find(text) != std::string::npos;
    const bool in_val = want_val.find(text) != std::string::npos;
    EXPECT_NE(in_train, in_val) << rel;
  }

  std::ifstream mf(out / "meta.json");
  nlohmann::json meta = nlohmann::json::parse(mf);
  EXPECT_EQ(meta["train"]["tokens"].get<uint64_t>(), want_train.size());
  EXPECT_EQ(meta["val"]["files"].get<uint64_t>(), n_val);
  EXPECT_EQ(meta["glob"], "*.py");
  EXPECT_DOUBLE_EQ(meta["train_unigram_entropy_nats"].get<double>(),
                   unigram_entropy(train.tokens));

  // Deterministic: a second run gives identical files.
  const fs::path out2 = d.path / "out2";
  prepare_data(in.string(), "*.py", out2.string(), 0.2);
  EXPECT_EQ(read_bytes(out / "train.bin"), read_bytes(out2 / "train.bin"));
  EXPECT_EQ(read_bytes(out / "val.bin"), read_bytes(out2 / "val.bin"));
}

TEST(Prepare, ValNeverEmpty) {
  TempDir d;
  const fs::path in = d.path / "src";
  write_text(in / "a.py", "aaaa");
  write_text(in / "b.py", "bbbb");
  // 0.001 * 1000 = 1: the rule alone would almost surely leave val empty.
  PrepareStats s = prepare_data(in.string(), "*.py", (d.path / "o").string(), 0.001);
  EXPECT_EQ(s.val.files, 1u);
  EXPECT_EQ(s.train.files, 1u);
  // The file with the smaller path hash is the one moved to val.
  const uint64_t ha = XXH64("a.py", 4, 0), hb = XXH64("b.py", 4, 0);
  TokenFile val((d.path / "o" / "val.bin").string());
  EXPECT_EQ(as_string(val.tokens), ha < hb ? "aaaa" : "bbbb");
}

TEST(Prepare, Errors) {
  TempDir d;
  auto expect_err = [](auto fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "no error, expected " << needle;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  const std::string missing = (d.path / "nope").string();
  expect_err([&] { prepare_data(missing, "*.py", (d.path / "o").string(), 0.05); }, missing);
  write_text(d.path / "src/a.txt", "text");
  const std::string src = (d.path / "src").string();
  expect_err([&] { prepare_data(src, "*.py", (d.path / "o").string(), 0.05); }, "no non-empty file");
  write_text(d.path / "src/b.txt", "more");
  expect_err([&] { prepare_data(src, "*.txt", (d.path / "o").string(), 1.5); }, "val_fraction");
  // Output path under a regular file cannot be created.
  const std::string blocked = (d.path / "src/a.txt/out").string();
  expect_err([&] { prepare_data(src, "*.txt", blocked, 0.05); }, blocked);
}

TEST(Prepare, EntropyOfKnownDistribution) {
  // Two equiprobable symbols: ln 2; one symbol: 0; four: ln 4.
  EXPECT_NEAR(unigram_entropy({1, 2, 1, 2}), std::log(2.0), 1e-12);
  EXPECT_EQ(unigram_entropy({9, 9, 9}), 0.0);
  EXPECT_NEAR(unigram_entropy({0, 1, 2, 3, 3, 2, 1, 0}), std::log(4.0), 1e-12);
}

namespace {
TokenFile make_file(const fs::path& p, size_t n) {
  std::vector<uint8_t> tok(n);
  uint64_t x = 88172645463325252ull;  // xorshift: content with no structure
  for (auto& t : tok) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    t = uint8_t(x);
  }
  write_token_file(p.string(), tok);
  return TokenFile(p.string());
}
}  // namespace

TEST(DataLoader, WindowsTargetsAndDeterminism) {
  TempDir d;
  TokenFile f = make_file(d.path / "t.bin", 5000);
  const int B = 3, T = 16;
  DataLoader dl(f, B, T, 42);
  Batch b;
  dl.fill(b, 10);
  ASSERT_EQ(b.B, B);
  ASSERT_EQ(b.inputs.size(), size_t(B * T));
  for (int i = 0; i < B; i++) {
    // The documented rule, recomputed here.
    uint8_t key[16];
    const uint64_t seed = 42, seq = 10 + i;
    for (int k = 0; k < 8; k++) key[k] = uint8_t(seed >> (8 * k)), key[8 + k] = uint8_t(seq >> (8 * k));
    const uint64_t start = XXH64(key, 16, 0) % (5000 - T);
    EXPECT_EQ(dl.window_start(seq), start);
    for (int t = 0; t < T; t++) {
      EXPECT_EQ(b.inputs[i * T + t], f.tokens[start + t]);
      EXPECT_EQ(b.targets[i * T + t], f.tokens[start + t + 1]);
      if (t + 1 < T) {
        EXPECT_EQ(b.targets[i * T + t], b.inputs[i * T + t + 1]);
      }
    }
  }
  // A different seed gives different windows.
  DataLoader other(f, B, T, 43);
  Batch c;
  other.fill(c, 10);
  EXPECT_NE(c.inputs, b.inputs);
}

TEST(DataLoader, IndependentOfCallOrderAndSeekable) {
  TempDir d;
  TokenFile f = make_file(d.path / "t.bin", 3000);
  const int B = 4, T = 8;
  DataLoader seq(f, B, T, 7);
  std::vector<Batch> in_order(6);
  for (auto& b : in_order) seq.next(b);
  EXPECT_EQ(seq.position(), 24u);

  // Reverse order via fill, fresh loader: same content per index.
  DataLoader fresh(f, B, T, 7);
  for (int k = 5; k >= 0; k--) {
    Batch b;
    fresh.fill(b, uint64_t(k) * B);
    EXPECT_EQ(b.inputs, in_order[k].inputs) << k;
    EXPECT_EQ(b.targets, in_order[k].targets) << k;
  }
  // Resume from a saved position.
  DataLoader resumed(f, B, T, 7);
  resumed.seek(12);
  Batch b;
  resumed.next(b);
  EXPECT_EQ(b.inputs, in_order[3].inputs);
  EXPECT_EQ(resumed.position(), 16u);
  // fill does not move the counter.
  resumed.fill(b, 0);
  EXPECT_EQ(resumed.position(), 16u);
}

TEST(DataLoader, CoversTheLastWindowAndRejectsShortFiles) {
  TempDir d;
  // count - T = 2 start positions: 0 and 1; both must appear, nothing beyond.
  TokenFile f = make_file(d.path / "t.bin", 10);
  DataLoader dl(f, 1, 8, 0);
  std::set<uint64_t> starts;
  for (uint64_t i = 0; i < 200; i++) starts.insert(dl.window_start(i));
  EXPECT_EQ(starts, (std::set<uint64_t>{0, 1}));
  try {
    DataLoader bad(f, 1, 10, 0);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(f.path), std::string::npos);
  }
}

TEST(Validation, ConsecutiveWindowsAndShortFiles) {
  TempDir d;
  TokenFile f = make_file(d.path / "v.bin", 100);
  const int T = 8;
  // (100 - 1) / 8 = 12 windows available; ask for 2 batches of 4 = 8.
  std::vector<Batch> v = validation_batches(f, 4, T, 2);
  ASSERT_EQ(v.size(), 2u);
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 4; i++)
      for (int t = 0; t < T; t++) {
        const size_t w = size_t(k * 4 + i) * T;
        EXPECT_EQ(v[k].inputs[i * T + t], f.tokens[w + t]);
        EXPECT_EQ(v[k].targets[i * T + t], f.tokens[w + t + 1]);
      }
  // Ask for more than the file holds: 12 windows -> batches of 5, 5, 2.
  v = validation_batches(f, 5, T, 10);
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[2].B, 2);
  EXPECT_EQ(v[2].inputs.size(), size_t(2 * T));
  EXPECT_EQ(v[2].targets.back(), f.tokens[12 * T]);
  // Fewer than T + 1 tokens: error naming the file.
  TokenFile tiny = make_file(d.path / "tiny.bin", 8);
  try {
    validation_batches(tiny, 1, 8, 1);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(tiny.path), std::string::npos);
  }
}

TEST(Validation, PadBatchAddsMaskedRows) {
  TempDir d;
  TokenFile f = make_file(d.path / "v.bin", 100);
  const int T = 8;
  std::vector<Batch> v = validation_batches(f, 5, T, 10);  // 12 windows: 5, 5, 2
  Batch last = v[2];
  pad_batch(last, 5);
  EXPECT_EQ(last.B, 5);
  ASSERT_EQ(last.inputs.size(), size_t(5 * T));
  ASSERT_EQ(last.targets.size(), size_t(5 * T));
  for (size_t i = 0; i < size_t(2 * T); ++i) {  // the real rows are untouched
    EXPECT_EQ(last.inputs[i], v[2].inputs[i]);
    EXPECT_EQ(last.targets[i], v[2].targets[i]);
  }
  for (size_t i = size_t(2 * T); i < last.inputs.size(); ++i) {
    EXPECT_EQ(last.inputs[i], 0);
    EXPECT_EQ(last.targets[i], kMaskedTarget);
  }
}
