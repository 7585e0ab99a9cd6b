#!/usr/bin/env bash
# launch/gpu_smoke.sh on a machine without a GPU: it says so and exits 2,
# having run what runs without one (the build, the data, the configs and the
# 350 M plan, tiny's CPU half), each PASS in summary.txt, the device checks
# SKIP and nothing FAIL. On a machine with a GPU the script is the test:
# exit 77 (skipped).
#
#   test_gpu_smoke.sh BUILD_DIR SOURCE_DIR WORK_DIR
set -euo pipefail
[ $# = 3 ] || { echo "usage: $0 BUILD_DIR SOURCE_DIR WORK_DIR" >&2; exit 2; }
build="$1" src="$2" work="$3"
if nvidia-smi -L > /dev/null 2>&1; then echo "SKIPPED: this machine has a GPU: run launch/gpu_smoke.sh"; exit 77; fi
rm -rf "$work"
mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }

"$build/attnres" data prepare --input "$src/tests" --glob '*.cpp' --out "$work/corpus" --val-fraction 0.2 > /dev/null
rc=0
# --no-ctest: this test runs under ctest already.
bash "$src/launch/gpu_smoke.sh" --build-dir "$build" --data-dir "$work/corpus" --quick --no-ctest \
  --out "$work/report" > "$work/out.log" 2>&1 || rc=$?
cat "$work/out.log"
summary="$work/report/summary.txt"
[ "$rc" = 2 ] || fail "exit status $rc, expected 2 (no GPU)"
grep -q 'no GPU on this machine' "$work/out.log" || fail "no 'no GPU on this machine' message"
[ -f "$summary" ] || fail "no $summary"
! grep -q '^FAIL' "$summary" || fail "a check failed: $(grep '^FAIL' "$summary")"
for check in build data 'config tiny' 'config small' 'config gpu-350m' 'plan gpu-350m' 'train tiny cpu'; do
  grep -q "^PASS $check:" "$summary" || fail "'$check' is not PASS in $summary"
done
for check in 'tiny cuda vs cpu' 'pp2 1f1b cuda vs cpu' 'pp2 interleaved-cache cuda vs cpu' \
             'pp2 zb-h1 cuda vs cpu' 'bench gpu-350m bf16'; do
  grep -q "^SKIP $check: no GPU" "$summary" || fail "'$check' is not 'SKIP ...: no GPU' in $summary"
done
[ -s "$work/report/05-train-tiny-cpu.jsonl" ] || fail "tiny's CPU run wrote no metrics"
echo "gpu_smoke without a GPU: exit 2, CPU checks PASS, device checks SKIP"
