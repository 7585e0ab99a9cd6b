#!/usr/bin/env bash
# The first run on a GPU machine (issue #28, point 9; docs/CUDA.md, "The smoke
# script"). In about ten minutes with a built binary:
#   1. prints the NVIDIA driver and the CUDA runtime the build links, and
#      refuses a driver too old for that runtime, saying how to fix it;
#   2. builds with CUDA (or takes --build-dir DIR as it is);
#   3. runs the CUDA tests (ctest -R 'Cuda|cuda|nccl');
#   4. trains 20 steps of configs/tiny.yaml and configs/small.yaml on the CPU
#      and on the GPU and compares every step's loss;
#   5. runs tiny at pp = 2 on shared GPUs (ATTNRES_SHARE_GPU=1) under 1f1b,
#      interleaved with caching, and zb-h1 against one CPU process;
#   6. benchmarks configs/gpu-350m.yaml (~347 M parameters, bf16): tokens/s
#      and MFU against the device's bf16 peak.
# Each check's log and a summary.txt (PASS/FAIL/SKIP per check) go to the
# report directory. Without a GPU it runs what it can (build, the CPU half of
# the comparisons, the configs parse), says so, and exits 2.
# Exit status: 0 every check passed on a GPU; 1 a check failed or the driver
# is too old; 2 no GPU (nothing failed); 64 bad arguments.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
readonly ROOT
readonly STEPS=20

BUILD_DIR=""          # --build-dir: use as it is, never build
BUILD_GIVEN=0
OUT=""                # --out
DATA_DIR="$ROOT/data/pystdlib"
RTOL="1e-3"           # --rtol: per-step loss, relative (docs/CUDA.md says why)
QUICK=0               # --quick: configs/tiny.yaml only (small's CPU half takes minutes on a few cores)
NO_CTEST=0            # --no-ctest: for tests/launch/test_gpu_smoke.sh, itself run by ctest
PEAK_TFLOPS=""        # --peak-tflops: the device's dense bf16 peak, if the table does not know it
STEP_TIMEOUT=300      # seconds for any one command

GPU_COUNT=0
GPU_NAME=""
BIN=""
SUMMARY=""

usage() {
  cat <<EOF
usage: launch/gpu_smoke.sh [--build-dir DIR] [--out DIR] [--data-dir DIR] [--rtol X]
                           [--quick] [--no-ctest] [--peak-tflops X] [--timeout SECONDS]
  --build-dir DIR   use this build as it is (DIR/attnres); default: configure and
                    build $ROOT/build (with -DATTNRES_CUDA=ON where there is a GPU)
  --out DIR         report directory (default: runs/gpu_smoke-<date>)
  --data-dir DIR    token directory (default: data/pystdlib, prepared if missing)
  --rtol X          largest relative difference of a step's loss between CPU and GPU
                    (default 1e-3)
  --quick           train configs/tiny.yaml only; configs/small.yaml's checks are SKIP
                    (its CPU half is 20 steps of 4096 tokens: minutes on two cores)
  --no-ctest        do not run the CUDA tests (their check is SKIP)
  --peak-tflops X   the GPU's dense bf16 peak in TFLOP/s for the benchmark's MFU
                    (default: a table of known devices, else the trainer's measured peak)
  --timeout S       limit of any one command (default 300)
Exit status: 0 all passed on a GPU, 1 a check failed, 2 no GPU (nothing failed).
EOF
}

die_usage() { echo "gpu_smoke: $*" >&2; usage >&2; exit 64; }

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --build-dir) [ $# -ge 2 ] || die_usage "--build-dir needs a directory"; BUILD_DIR="$2"; BUILD_GIVEN=1; shift 2 ;;
      --out) [ $# -ge 2 ] || die_usage "--out needs a directory"; OUT="$2"; shift 2 ;;
      --data-dir) [ $# -ge 2 ] || die_usage "--data-dir needs a directory"; DATA_DIR="$2"; shift 2 ;;
      --rtol) [ $# -ge 2 ] || die_usage "--rtol needs a number"; RTOL="$2"; shift 2 ;;
      --quick) QUICK=1; shift ;;
      --no-ctest) NO_CTEST=1; shift ;;
      --peak-tflops) [ $# -ge 2 ] || die_usage "--peak-tflops needs a number"; PEAK_TFLOPS="$2"; shift 2 ;;
      --timeout) [ $# -ge 2 ] || die_usage "--timeout needs seconds"; STEP_TIMEOUT="$2"; shift 2 ;;
      -h|--help) usage; exit 0 ;;
      *) die_usage "unknown argument: $1" ;;
    esac
  done
}

say() { echo "gpu_smoke: $*"; }

# One line per check in summary.txt: STATUS name: detail.
record() {
  local status="$1" name="$2" detail="$3"
  printf '%-4s %s: %s\n' "$status" "$name" "$detail" | tee -a "$SUMMARY"
}

# Runs a command with its output in LOG, within the time limit; the exit
# status is the command's (124 on a timeout).
run_logged() {
  local log="$1"; shift
  { echo "\$ $*"; echo; } > "$log"
  local rc=0
  # Through bash -c, so that the command may be one of this script's exported
  # functions (timeout runs programs only).
  timeout "$STEP_TIMEOUT" bash -c '"$@"' bash "$@" >> "$log" 2>&1 || rc=$?
  [ "$rc" -ne 124 ] || echo "gpu_smoke: timed out after ${STEP_TIMEOUT}s" >> "$log"
  return "$rc"
}

# What a log says went wrong, for the summary: its first error line, else its
# last line that is not blank or a rule (mpirun ends with rules).
last_words() {
  local line
  line=$(grep -m 1 -E '^(attnres: )?error|: error:' "$1" || true)
  [ -n "$line" ] || line=$(grep -v -E '^[[:space:]-]*$' "$1" | tail -n 1 || true)
  echo "${line:0:200}"
}

make_report_dir() {
  [ -n "$OUT" ] || OUT="$ROOT/runs/gpu_smoke-$(date +%Y%m%d-%H%M%S)"
  mkdir -p "$OUT"
  SUMMARY="$OUT/summary.txt"
  : > "$SUMMARY"
  say "report in $OUT"
}

# --- 1. driver and runtime ---------------------------------------------------

# GPUs as nvidia-smi lists them; none when there is no nvidia-smi or it fails
# (no driver loaded, or no device).
detect_gpus() {
  local log="$OUT/01-nvidia-smi.log"
  if ! command -v nvidia-smi > /dev/null; then
    echo "nvidia-smi: not found (no NVIDIA driver installed)" > "$log"
    return
  fi
  if ! run_logged "$log" nvidia-smi; then return; fi
  nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv >> "$log" 2>&1 || true
  GPU_COUNT=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | grep -c . || true)
  GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || true)
}

driver_version() { nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1; }

# The highest CUDA version the driver supports, from nvidia-smi's banner.
driver_cuda_version() { nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -n 1; }

# The nvcc the build was configured with (its CMakeCache), else PATH's, else
# /usr/local/cuda's.
build_nvcc() {
  local cached=""
  if [ -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cached=$(sed -n 's/^CMAKE_CUDA_COMPILER:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt")
  fi
  if [ -n "$cached" ] && [ -x "$cached" ]; then echo "$cached"
  elif command -v nvcc > /dev/null; then command -v nvcc
  elif [ -x /usr/local/cuda/bin/nvcc ]; then echo /usr/local/cuda/bin/nvcc
  fi
}

# The CUDA runtime version X.Y: the toolkit's version.json where it has one
# (CUDA 11.1+), else nvcc's release line.
runtime_version() {
  local nvcc="$1" json
  json="$(dirname "$(dirname "$nvcc")")/version.json"
  if [ -f "$json" ] && command -v jq > /dev/null; then
    jq -r '.cuda_cudart.version // empty' "$json" | cut -d. -f1,2
  else
    "$nvcc" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p'
  fi
}

# The oldest Linux driver each CUDA major runs on (NVIDIA's CUDA Toolkit release
# notes, "CUDA minor version compatibility": 11.x >= 450.80.02, 12.x >=
# 525.60.13, 13.x >= 580.65.06).
min_driver_for() {
  case "$1" in
    11) echo 450.80.02 ;;
    12) echo 525.60.13 ;;
    13) echo 580.65.06 ;;
    *) echo "" ;;
  esac
}

# 0 when dotted version $1 >= $2.
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]; }

# Prints the driver and the runtime; returns 1 (after recording the fix) when
# the driver is older than the runtime needs.
check_versions() {
  local log="$OUT/01-versions.log" nvcc rt="" drv drv_cuda need
  nvcc=$(build_nvcc)
  {
    echo "build: $BUILD_DIR"
    if [ -x "$BUILD_DIR/attnres" ]; then
      echo "libcudart the binary links: $(ldd "$BUILD_DIR/attnres" | grep -o 'libcudart[^ ]*' | head -n 1 || true)"
    fi
    if [ -n "$nvcc" ]; then
      echo "nvcc: $nvcc"; "$nvcc" --version
      rt=$(runtime_version "$nvcc")
    else
      echo "nvcc: not found"
    fi
  } > "$log" 2>&1
  say "CUDA runtime (toolkit of the build): ${rt:-none}"
  if [ "$GPU_COUNT" -eq 0 ]; then
    say "NVIDIA driver: none usable ($(last_words "$OUT/01-nvidia-smi.log"))"
    record SKIP "driver/runtime" "no GPU: runtime ${rt:-none}, no usable driver"
    return 0
  fi
  drv=$(driver_version); drv_cuda=$(driver_cuda_version)
  say "NVIDIA driver: $drv (supports CUDA up to $drv_cuda); $GPU_COUNT GPU(s), $GPU_NAME"
  if [ -z "$rt" ]; then
    record FAIL "driver/runtime" "no nvcc for the build's CUDA runtime; install the CUDA toolkit or give --build-dir of a CUDA build"
    return 1
  fi
  need=$(min_driver_for "${rt%%.*}")
  if [ -n "$need" ] && ! version_ge "$drv" "$need"; then
    record FAIL "driver/runtime" "CUDA runtime $rt needs NVIDIA driver >= $need, this machine has $drv (CUDA <= $drv_cuda). Fix: upgrade the driver to >= $need, or build with a CUDA toolkit of at most $drv_cuda (cmake -S . -B build-cu -DATTNRES_CUDA=ON -DCMAKE_CUDA_COMPILER=/usr/local/cuda-$drv_cuda/bin/nvcc) and pass --build-dir build-cu"
    return 1
  fi
  if ! version_ge "$drv_cuda" "$rt"; then
    # Same major: CUDA's minor version compatibility runs it (PTX built for a
    # newer minor cannot JIT, but the build carries SASS for its architectures).
    record PASS "driver/runtime" "driver $drv (CUDA $drv_cuda) runs runtime $rt by minor version compatibility"
  else
    record PASS "driver/runtime" "driver $drv (CUDA $drv_cuda), runtime $rt"
  fi
}

# --- 2. build ----------------------------------------------------------------

# 0 when the binary links the CUDA runtime (built with the CUDA backend).
has_cuda_backend() { ldd "$BIN" 2>/dev/null | grep -q libcudart; }

build_or_take() {
  if [ "$BUILD_GIVEN" -eq 1 ]; then
    BUILD_DIR=$(cd "$BUILD_DIR" 2>/dev/null && pwd) || { record FAIL build "--build-dir: no such directory"; return 1; }
    BIN="$BUILD_DIR/attnres"
    if [ ! -x "$BIN" ]; then record FAIL build "$BIN does not exist (build it, or leave out --build-dir)"; return 1; fi
    record PASS build "given: $BIN ($("$BIN" --version 2>&1))"
  else
    BUILD_DIR="$ROOT/build"; BIN="$BUILD_DIR/attnres"
    local cuda=AUTO log="$OUT/02-build.log"
    [ "$GPU_COUNT" -eq 0 ] || cuda=ON
    say "building in $BUILD_DIR (ATTNRES_CUDA=$cuda)"
    # No time limit: a first CUDA build takes longer than a check.
    if ! { cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DATTNRES_TESTS=ON -DATTNRES_CUDA="$cuda" \
           && cmake --build "$BUILD_DIR" -j"$(nproc)"; } > "$log" 2>&1; then
      record FAIL build "$(last_words "$log") (log: $log)"; return 1
    fi
    record PASS build "$BIN ($("$BIN" --version 2>&1))"
  fi
  if has_cuda_backend; then
    say "the binary has the CUDA backend"
  elif [ "$GPU_COUNT" -gt 0 ]; then
    record FAIL "cuda backend" "$BIN was built without CUDA (no libcudart): configure with -DATTNRES_CUDA=ON"
    return 1
  else
    say "the binary has no CUDA backend (and there is no GPU)"
  fi
}

# --- data and configs ---------------------------------------------------------

# The Python standard library, tokenised, as launch/quickstart.sh prepares it.
ensure_data() {
  if [ -f "$DATA_DIR/train.bin" ] && [ -f "$DATA_DIR/val.bin" ]; then
    record PASS data "$DATA_DIR"; return 0
  fi
  local stdlib log="$OUT/02-data.log"
  stdlib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])' 2>/dev/null || true)
  if [ -z "$stdlib" ]; then record FAIL data "$DATA_DIR is missing and python3 is not there to find its stdlib"; return 1; fi
  if run_logged "$log" "$BIN" data prepare --input "$stdlib" --glob '*.py' --out "$DATA_DIR"; then
    record PASS data "prepared $DATA_DIR from $stdlib"
  else
    record FAIL data "$(last_words "$log")"; return 1
  fi
}

# Every config resolves, and the benchmark's plan says ~350 M parameters.
check_configs() {
  local cfg name log params
  for cfg in tiny small gpu-350m; do
    log="$OUT/03-config-$cfg.log"
    if run_logged "$log" "$BIN" config --config "$ROOT/configs/$cfg.yaml" --set "data.dir=$DATA_DIR"; then
      record PASS "config $cfg" "resolves"
    else
      record FAIL "config $cfg" "$(last_words "$log")"
    fi
  done
  log="$OUT/03-plan-gpu-350m.log"
  if ! run_logged "$log" "$BIN" plan --config "$ROOT/configs/gpu-350m.yaml" --set "data.dir=$DATA_DIR"; then
    record FAIL "plan gpu-350m" "$(last_words "$log")"; return 0
  fi
  # The chunk row: "0 0 [0,48) 0-7 yes yes 346.70 M ..."
  params=$(awk '$1 == "0" && $5 == "yes" && $6 == "yes" { print $7, $8; exit }' "$log")
  name="plan gpu-350m"
  case "$params" in
    3[0-9][0-9].*" M") record PASS "$name" "$params parameters" ;;
    *) record FAIL "$name" "expected ~350 M parameters, the plan says '${params:-nothing}'" ;;
  esac
}

# --- 3. CUDA tests -------------------------------------------------------------

run_cuda_tests() {
  local log="$OUT/04-ctest.log" rc=0
  if [ "$NO_CTEST" -eq 1 ]; then record SKIP ctest "--no-ctest"; return 0; fi
  if [ ! -f "$BUILD_DIR/CTestTestfile.cmake" ]; then
    record SKIP ctest "$BUILD_DIR has no tests (not a CMake build directory)"; return 0
  fi
  # Shared devices let the two-rank tests run on one GPU (docs/CUDA.md).
  ATTNRES_SHARE_GPU=1 run_logged "$log" ctest --test-dir "$BUILD_DIR" -R 'Cuda|cuda|nccl' --output-on-failure || rc=$?
  local tally skipped
  tally=$(grep -E 'tests passed' "$log" | tail -n 1)
  skipped=$(grep -c -E '\*\*\*Skipped|Not Run' "$log" || true)
  if [ "$rc" -ne 0 ]; then
    record FAIL ctest "${tally:-exit $rc} (log: $log)"
  elif [ "$GPU_COUNT" -eq 0 ]; then
    record PASS "ctest (no GPU)" "$tally; $skipped skipped for want of a device: the device tests did not run"
  elif [ "$skipped" -gt 0 ]; then
    record FAIL ctest "$tally, but $skipped skipped on a machine with a GPU (log: $log)"
  else
    record PASS ctest "$tally"
  fi
}

# --- 4 and 5. training comparisons ---------------------------------------------

# attnres train with the smoke's settings; extra arguments are --set overrides.
# (Called through run_logged, which shellcheck does not follow.)
# shellcheck disable=SC2317
train() {
  local cfg="$1" metrics="$2"; shift 2
  "$BIN" train --config "$ROOT/configs/$cfg.yaml" --set "data.dir=$DATA_DIR" \
    --set train.steps="$STEPS" --metrics "$metrics" "$@"
}

# Two ranks of one pipeline on the GPUs there are, sharing them if fewer.
# shellcheck disable=SC2317
train_pp2_cuda() {
  local cfg="$1" metrics="$2"; shift 2
  # mpirun refuses root unless told; the ranks may outnumber the cores.
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ATTNRES_SHARE_GPU=1 \
    mpirun -np 2 --oversubscribe -x ATTNRES_SHARE_GPU \
    "$BIN" train --config "$ROOT/configs/$cfg.yaml" --set "data.dir=$DATA_DIR" \
    --set train.steps="$STEPS" --set train.threads=1 --set train.device=cuda \
    --set parallel.pp=2 --metrics "$metrics" "$@"
}

# Compares two metrics files step by step; prints the verdict line and
# returns 1 when a step's loss differs by more than RTOL (relative).
compare_losses() {
  python3 - "$1" "$2" "$RTOL" <<'EOF'
import json, sys
def losses(path):
    with open(path) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}
ref, got, rtol = losses(sys.argv[1]), losses(sys.argv[2]), float(sys.argv[3])
if sorted(ref) != sorted(got) or not ref:
    print(f"steps differ: {len(ref)} reference, {len(got)} compared"); sys.exit(1)
worst = max(ref, key=lambda s: abs(got[s] - ref[s]) / abs(ref[s]))
rel = abs(got[worst] - ref[worst]) / abs(ref[worst])
last = max(ref)
print(f"max rel diff {rel:.2e} at step {worst} (tolerance {rtol:g}); step {last} loss {ref[last]:.6f} vs {got[last]:.6f}")
sys.exit(0 if rel <= rtol else 1)
EOF
}

# Runs one GPU run against the CPU reference and records the comparison.
gpu_against_cpu() {
  local name="$1" ref="$2" metrics="$3" log="$4"; shift 4
  if [ "$GPU_COUNT" -eq 0 ]; then record SKIP "$name" "no GPU"; return 0; fi
  if [ ! -s "$ref" ]; then record SKIP "$name" "no CPU reference (its run failed)"; return 0; fi
  if ! run_logged "$log" "$@"; then record FAIL "$name" "$(last_words "$log")"; return 0; fi
  local verdict
  if verdict=$(compare_losses "$ref" "$metrics"); then
    record PASS "$name" "$verdict"
  else
    record FAIL "$name" "$verdict"
  fi
}

# One CPU process, the reference of every GPU run of this config.
cpu_reference() {
  local cfg="$1"
  local log="$OUT/05-train-$cfg-cpu.log" metrics="$OUT/05-train-$cfg-cpu.jsonl"
  if run_logged "$log" train "$cfg" "$metrics" --set train.device=cpu; then
    record PASS "train $cfg cpu" "$(grep '^summary:' "$log" | cut -c10-)"
  else
    record FAIL "train $cfg cpu" "$(last_words "$log")"; rm -f "$metrics"
  fi
}

compare_config() {
  local cfg="$1"
  if [ "$cfg" = small ] && [ "$QUICK" -eq 1 ]; then
    record SKIP "train small cpu" "--quick"; record SKIP "small cuda vs cpu" "--quick"; return 0
  fi
  cpu_reference "$cfg"
  gpu_against_cpu "$cfg cuda vs cpu" "$OUT/05-train-$cfg-cpu.jsonl" "$OUT/05-train-$cfg-cuda.jsonl" \
    "$OUT/05-train-$cfg-cuda.log" train "$cfg" "$OUT/05-train-$cfg-cuda.jsonl" --set train.device=cuda
}

# pp = 2 on the GPU(s) under three schedules against tiny's one CPU process.
compare_pipelines() {
  local ref="$OUT/05-train-tiny-cpu.jsonl" sched m log
  local -A extra=(
    [1f1b]="--set parallel.schedule=1f1b"
    [interleaved-cache]="--set parallel.schedule=interleaved --set parallel.virtual_stages=2 --set parallel.cross_stage_cache=true"
    [zb-h1]="--set parallel.schedule=zb-h1"
  )
  for sched in 1f1b interleaved-cache zb-h1; do
    m="$OUT/06-pp2-$sched.jsonl"; log="$OUT/06-pp2-$sched.log"
    # shellcheck disable=SC2086  # the overrides are words
    gpu_against_cpu "pp2 $sched cuda vs cpu" "$ref" "$m" "$log" train_pp2_cuda tiny "$m" ${extra[$sched]}
  done
}

# --- 6. benchmark --------------------------------------------------------------

# Dense bf16 tensor-core peak of one device, TFLOP/s (NVIDIA's datasheets);
# empty for a device not listed.
bf16_peak_tflops() {
  case "$1" in
    *H100*PCIe*) echo 756 ;;
    *H100*NVL*) echo 835 ;;
    *H100*|*H200*) echo 989 ;;   # H200 and GH200 too
    *B200*) echo 2250 ;;
    *A100*) echo 312 ;;
    *L40S*) echo 362 ;;
    *A10G*) echo 70 ;;
    *A10*) echo 125 ;;
    *L4*) echo 121 ;;
    *"RTX 4090"*) echo 165 ;;
    *) echo "" ;;
  esac
}

benchmark() {
  local name="bench gpu-350m bf16"
  if [ "$GPU_COUNT" -eq 0 ]; then record SKIP "$name" "no GPU"; return 0; fi
  local log="$OUT/07-bench-gpu-350m.log" peak="${PEAK_TFLOPS:-$(bf16_peak_tflops "$GPU_NAME")}" args=()
  # One rank on one device: the node's peak is the device's.
  if [ -n "$peak" ]; then
    args=(--peak-gflops "$(awk -v t="$peak" 'BEGIN { print t * 1000 }')")
  fi
  if ! run_logged "$log" train gpu-350m "$OUT/07-bench-gpu-350m.jsonl" --set train.device=cuda \
       --set train.precision=bf16 "${args[@]}"; then
    record FAIL "$name" "$(last_words "$log")"; return 0
  fi
  local against="the trainer's measured cuBLASLt bf16 rate (a device not in the table: give --peak-tflops)"
  [ -z "$peak" ] || against="$GPU_NAME's dense bf16 peak, $peak TFLOP/s"
  record PASS "$name" "$(grep '^summary:' "$log" | cut -c10-); MFU against $against"
}

# --- the end -------------------------------------------------------------------

finish() {
  local fails passes skips
  fails=$(grep -c '^FAIL' "$SUMMARY" || true)
  passes=$(grep -c '^PASS' "$SUMMARY" || true)
  skips=$(grep -c '^SKIP' "$SUMMARY" || true)
  echo
  say "$passes passed, $fails failed, $skips skipped; summary: $SUMMARY"
  if [ "$fails" -gt 0 ]; then exit 1; fi
  if [ "$GPU_COUNT" -eq 0 ]; then
    say "no GPU on this machine: the device checks were skipped; only the CPU half ran"
    exit 2
  fi
  exit 0
}

main() {
  parse_args "$@"
  make_report_dir
  detect_gpus
  [ "$GPU_COUNT" -gt 0 ] || say "no GPU found ($(last_words "$OUT/01-nvidia-smi.log")): checking what runs without one"
  # The build dir first: the runtime version is the build's.
  [ -n "$BUILD_DIR" ] || BUILD_DIR="$ROOT/build"
  check_versions || finish
  build_or_take || finish
  ensure_data || finish
  # The training functions run in the child shells of run_logged.
  export BIN ROOT DATA_DIR STEPS
  export -f train train_pp2_cuda
  check_configs
  run_cuda_tests
  compare_config tiny
  compare_config small
  compare_pipelines
  benchmark
  finish
}

main "$@"
