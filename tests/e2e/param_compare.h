// Final parameters of two runs, as the end-to-end tests compare them.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "runtime/safetensors.h"

// rel = 0: bit for bit. Otherwise each tensor within factor * rel in
// relative L2 norm: AdamW divides by sqrt(v), so a reordered sum in an
// element whose gradient is near zero moves that one element further than the
// loss (measured: 1.2e-5 on one element of a tensor of scale 0.06 after 10
// steps), while the tensor as a whole stays put. Losses are compared at rel
// itself.
inline void expect_params_match(const std::vector<attnres::NamedTensor>& ref,
                                const std::vector<attnres::NamedTensor>& got, double rel,
                                const std::string& what, double factor = 10) {
  ASSERT_EQ(ref.size(), got.size()) << what;
  for (size_t t = 0; t < ref.size(); ++t) {
    ASSERT_EQ(ref[t].name, got[t].name) << what;
    const auto &a = ref[t].data, &b = got[t].data;
    ASSERT_EQ(a.size(), b.size()) << what << ": " << ref[t].name;
    if (rel == 0) {
      size_t bad = 0;
      for (size_t i = 0; i < a.size(); ++i) bad += a[i] != b[i];
      EXPECT_EQ(bad, 0u) << what << ": " << ref[t].name << " differs in " << bad << " of " << a.size();
      continue;
    }
    double diff = 0, norm = 0;
    for (size_t i = 0; i < a.size(); ++i)
      diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]), norm += double(a[i]) * a[i];
    EXPECT_LE(std::sqrt(diff), factor * rel * std::sqrt(norm)) << what << ": " << ref[t].name;
  }
}
