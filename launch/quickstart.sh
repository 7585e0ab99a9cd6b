#!/usr/bin/env bash
# The main job on the built-in default data: installs missing packages, builds a
# Release binary, prepares the Python-stdlib corpus, and trains configs/small.yaml
# (Block AttnRes, 8 blocks) as a 4-stage pipeline under mpirun, one thread per
# rank, in bf16 where the CPU multiplies bf16 itself (AVX-512 BF16 or AMX),
# else in fp32. It ends with the summary and the communication table, then evaluates
# the exported model on the validation tokens, samples a line of text from it,
# and writes the plots of the run (docs/PLOTS.md), printing their paths.
# Extra arguments go to `attnres train` (e.g. --set train.steps=40).
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/install_deps.sh main
# Only the binary: the tests and benchmarks (and their packages) are test.sh's.
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DATTNRES_TESTS=OFF -DATTNRES_BENCH=OFF > /dev/null
cmake --build build -j"$(nproc)" --target attnres
[ -f data/pystdlib/train.bin ] || build/attnres data prepare --input /usr/lib/python3.11 --glob '*.py' --out data/pystdlib
mkdir -p runs/quickstart
precision=fp32
if grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then precision=bf16; fi
echo "quickstart: training in $precision (train.precision; this CPU $([ $precision = bf16 ] && echo has || echo lacks) bf16 instructions)"
# mpirun refuses root unless told; 4 ranks share this machine's cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun -np 4 --oversubscribe build/attnres train --config configs/small.yaml \
  --set parallel.pp=4 --set train.threads=1 --set train.precision=$precision \
  --metrics runs/quickstart/metrics.jsonl --trace runs/quickstart/trace.json \
  --export runs/quickstart/model.safetensors "$@"

out=runs/quickstart
build/attnres eval --weights $out/model.safetensors --input data/pystdlib/val.bin --windows 512 --depth $out/depth.json
build/attnres generate --weights $out/model.safetensors --prompt "def " --tokens 120 --seed 1
# /usr/bin/python3: Debian's, which has matplotlib (another python3 may come first on PATH).
plot() { /usr/bin/python3 tools/plot.py "$@" | sed 's/^/plot: /'; }
plot loss $out/metrics.jsonl="Block AttnRes" -o $out/loss.png
plot hops $out/metrics.jsonl -o $out/hops.png
plot timeline $out/trace.rank*.json -o $out/timeline.png
plot depth $out/depth.json -o $out/depth.png
plot dilution $out/depth.json="Block AttnRes" -o $out/rms.png
