#!/usr/bin/env bash
# Builds attnres and runs the whole CTest suite (unit tests and the
# multi-process tests under mpirun); then the same suite built with
# AddressSanitizer + UndefinedBehaviorSanitizer, and the threaded parts
# (executor, watchdog, asynchronous checkpoint writer) with ThreadSanitizer
# (docs/DESIGN.md §10). Installs missing packages first. Arguments go to the
# first ctest (e.g. -R Executor); ATTNRES_SANITIZERS=0 skips the sanitizer builds.
# `--quick`: the inner loop, a representative subset of the first suite (every
# layer's core tests, one pipeline, tp, dp, recompute, resume and supervisor
# run against one process), no sanitizers.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
bash launch/install_deps.sh test
jobs="$(nproc)"
# mpirun refuses to run as root unless told; the tests oversubscribe 2 cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# The CUDA backend is built where nvcc is (ATTNRES_CUDA=AUTO), with warnings
# as errors; its device tests skip, with the reason, where no GPU is usable.
# Tests and benchmarks are named on: quickstart.sh configures the same
# directory without them.
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DATTNRES_TESTS=ON -DATTNRES_BENCH=ON
cmake --build build -j"$jobs"
if [ "$quick" = 1 ]; then
  (cd build && ctest --output-on-failure -j"$jobs" -R '^(Ops|ModelGrad|ChunkSplit|ChunkMemory|Decode|Flash|Schedule\.|Executor\.|nccl_semantics|Config\.|Optimizer|PipelineEquivalence\.BlockAttnRes|Recompute\.EqualsKeepingBitForBit|CheckpointResume\.Bf16AndBackToFp32|Supervisor\.KilledAtAStep|DataParallel\.MatchesSingleProcess|TensorParallel\.BlockAttnRes|mpi_test_communicator)' "$@")
  exit 0
fi
(cd build && ctest --output-on-failure -j"$jobs" "$@")
[ "${ATTNRES_SANITIZERS:-1}" = 0 ] && exit 0

# ASan + UBSan: every test but the namespace and SLURM clusters (they test
# the network; their ranks start in other namespaces, where the sanitizer's
# options do not follow). Leak checking is off: Open MPI keeps what it
# allocates at init until exit, and its stacks are too shallow to suppress.
# Both sanitizer builds leave the CUDA backend out: the first build compiles
# it, and no device code runs here.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DATTNRES_SANITIZE=address,undefined -DATTNRES_CUDA=OFF
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   ctest --output-on-failure -j"$jobs" -E '^(multihost|slurm)')

# TSan: the tests of the threaded parts, one OpenMP thread (libgomp is not
# instrumented, so its workers would be reported falsely).
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Release -DATTNRES_SANITIZE=thread -DATTNRES_CUDA=OFF
cmake --build build-tsan -j"$jobs" --target test_parallel test_runtime attnres
(cd build-tsan && OMP_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
   ctest --output-on-failure -j"$jobs" -R '^(Executor\.|Watchdog\.|FaultDeathTest\.Watchdog|tsan_)')
