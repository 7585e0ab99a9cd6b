// n floats uniform in [-1, 1) from a seeded generator: inputs of the kernel
// and backend tests.
#pragma once
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

inline std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}
