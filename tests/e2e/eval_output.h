// The first line `attnres eval` prints, parsed:
//   eval: 224 tokens | loss L nats | B bits/byte | perplexity P
#pragma once
#include <cstddef>
#include <cstdio>
#include <string>

struct EvalOutput {
  size_t tokens = 0;
  double loss = 0, bits_per_byte = 0, perplexity = 0;
  bool parsed = false;  // false if `log` holds no such line
};

inline EvalOutput parse_eval_output(const std::string& log) {
  EvalOutput e;
  const size_t at = log.find("eval: ");
  if (at == std::string::npos) return e;
  e.parsed = std::sscanf(log.c_str() + at, "eval: %zu tokens | loss %lf nats | %lf bits/byte | perplexity %lf",
                         &e.tokens, &e.loss, &e.bits_per_byte, &e.perplexity) == 4;
  return e;
}
