#!/usr/bin/env bash
# The main job on the built-in default data: installs missing packages, builds a
# Release binary, prepares the Python-stdlib corpus, trains configs/small.yaml
# and prints a summary. Extra arguments go to `attnres train` (e.g. --set k=v).
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)" --target attnres
[ -f data/pystdlib/train.bin ] || build/attnres data prepare --input /usr/lib/python3.11 --glob '*.py' --out data/pystdlib
mkdir -p runs/quickstart
build/attnres train --config configs/small.yaml \
  --metrics runs/quickstart/metrics.jsonl --export runs/quickstart/model.safetensors "$@"
