// A model config with only the fields the partition and payload tests vary.
#pragma once
#include "models/model_config.h"

inline attnres::ModelConfig model(int n_layers, int S,
                                  attnres::ResidualMode mode = attnres::ResidualMode::AttnRes) {
  attnres::ModelConfig m;
  m.n_layers = n_layers;
  m.block_size = S;
  m.mode = mode;
  return m;
}
