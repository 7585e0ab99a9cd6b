#!/usr/bin/env bash
# Builds attnres and runs the whole CTest suite (unit tests and the
# multi-process tests under mpirun). Installs missing packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
# mpirun refuses to run as root unless told; the tests oversubscribe 2 cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd build && ctest --output-on-failure -j"$(nproc)" "$@"
