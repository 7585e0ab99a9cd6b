#!/usr/bin/env bash
# tools/plot.py end to end: a 2-stage Block AttnRes run and a standard one
# with metrics, traces and exports; `attnres eval --depth` on each; then every
# plot. Each must write a PNG, and the inputs the plots read must hold what
# they claim: hop bytes beside the standard and Full AttnRes numbers, step
# marks in every rank's trace, one depth-weight row per AttnRes site that sums
# to 1. A hop plot of a run without hops fails with a message.
#
#   test_plots.sh ATTNRES_BINARY SOURCE_DIR WORK_DIR
# Exit 77 (CTest: skipped) with the reason when matplotlib is missing.
set -euo pipefail
[ $# = 3 ] || { echo "usage: $0 ATTNRES_BINARY SOURCE_DIR WORK_DIR" >&2; exit 2; }
attnres="$1" src="$2" work="$3"
py=/usr/bin/python3
"$py" -c "import matplotlib" 2> /dev/null || { echo "SKIPPED: $py has no matplotlib (launch/install_deps.sh installs it)"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
rm -rf "$work"
mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$work/ompi"  # a session directory of its own (tests/e2e/mpi_session_dir.cpp)
export OMPI_MCA_orte_tmpdir_base="$work/ompi"

"$attnres" data prepare --input "$src/tests" --glob '*.cpp' --out "$work/corpus" --val-fraction 0.2 > /dev/null
for mode in attnres standard; do
  mpirun -np 2 --oversubscribe "$attnres" train --config "$src/configs/tiny.yaml" --peak-gflops 1 \
    --set "data.dir=$work/corpus" --set parallel.pp=2 --set train.threads=1 --set train.steps=6 \
    --set train.eval_every=3 --set residual.mode=$mode --metrics "$work/$mode/metrics.jsonl" \
    --trace "$work/$mode/trace.json" --export "$work/$mode/model.safetensors" > "$work/$mode.log" 2>&1 ||
    { cat "$work/$mode.log"; fail "the $mode run failed"; }
  "$attnres" eval --weights "$work/$mode/model.safetensors" --input "$work/corpus/val.bin" \
    --depth "$work/$mode/depth.json" > "$work/$mode.eval" || fail "eval --depth of the $mode run failed"
done

"$py" - "$work" <<'PY'
import json, sys
w = sys.argv[1]
last = [json.loads(l) for l in open(f"{w}/attnres/metrics.jsonl")][-1]
assert last["hop_bytes"][0] > 0 and last["hop_bytes_standard"][0] < last["hop_bytes"][0] < last["hop_bytes_full"][0], last
for r in (0, 1):
    ev = json.load(open(f"{w}/attnres/trace.rank{r}.json"))["traceEvents"]
    cats = {e.get("cat") for e in ev}
    assert {"step", "optimizer", "eval", "compute"} <= cats, (r, cats)
    assert sum(e.get("cat") == "step" for e in ev) == 6, r
d = json.load(open(f"{w}/attnres/depth.json"))
assert len(d["alpha"]) == d["sublayers"] + 1 and len(d["rms"]) == d["sublayers"] + 1, d
for row in d["alpha"]:
    assert abs(sum(row) - 1) < 1e-5, row
s = json.load(open(f"{w}/standard/depth.json"))
assert s["mode"] == "standard" and s["alpha"] == [] and all(x > 0 for x in s["rms"]), s
PY

plot() { "$py" "$src/tools/plot.py" "$@" > /dev/null; }
plot loss "$work/attnres/metrics.jsonl=Block AttnRes" "$work/standard/metrics.jsonl=standard" -o "$work/loss.png"
plot hops "$work/attnres/metrics.jsonl" -o "$work/hops.png"
plot timeline "$work"/attnres/trace.rank*.json -o "$work/timeline.png"
plot depth "$work/attnres/depth.json" -o "$work/depth.png"
plot dilution "$work/standard/depth.json=standard" "$work/attnres/depth.json=Block AttnRes" -o "$work/rms.png"
for p in loss hops timeline depth rms; do
  [ "$(head -c 8 "$work/$p.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$p.png is not a PNG"
done

"$attnres" train --config "$src/configs/tiny.yaml" --peak-gflops 1 --set "data.dir=$work/corpus" \
  --set train.steps=1 --set train.warmup_steps=0 --metrics "$work/pp1.jsonl" > /dev/null 2>&1
if "$py" "$src/tools/plot.py" hops "$work/pp1.jsonl" -o "$work/none.png" 2> "$work/pp1.err"; then
  fail "a hop plot of a run without hops succeeded"
fi
grep -q "no hop_bytes (a run with parallel.pp = 1 has no hops)" "$work/pp1.err" || { cat "$work/pp1.err"; fail "no clear message"; }
if "$py" "$src/tools/plot.py" depth "$work/standard/depth.json" -o "$work/none.png" 2> "$work/std.err"; then
  fail "a depth plot of a standard model succeeded"
fi
echo PASS
