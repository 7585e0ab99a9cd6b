#!/usr/bin/env bash
# Bad input as a new user types it (issue 31): each case ends within 60 s with
# a status in 1..123 (never a crash: >= 128, never a hang: 124), a message
# holding the expected words, and every file that was there before unchanged.
#
#   test_bad_input.sh ATTNRES SOURCE_DIR WORK_DIR
source "$(dirname "$0")/script_test.sh"

# A tiny config on a small corpus, an export and a checkpoint of it.
"$A" data prepare --input "$src/runtime" --glob '*.cpp' --out d > /dev/null || exit 1
sed "s#data/pystdlib#$work/d#" "$src/configs/tiny.yaml" > t.yaml
"$A" train --config t.yaml --set train.steps=2 --set train.eval_every=0 --set checkpoint.dir=ck0 \
  --set checkpoint.every=2 --export ex/model.safetensors > setup.log 2>&1 || { cat setup.log; exit 1; }

# refuse 'WORDS' CMD...: CMD is refused as above, its stderr holds WORDS.
refuse() {
  local words="$1" rc=0
  shift
  find . -type f ! -name '*.log' ! -name sums ! -name LOCK -print0 | xargs -0 md5sum > sums
  timeout $((60 * ${ATTNRES_TIME_FACTOR:-1})) "$@" > out.log 2> err.log || rc=$?
  if [ "$rc" = 0 ] || [ "$rc" -ge 124 ]; then bad "exit $rc: $*"; cat err.log; fi
  grep -qF -- "$words" err.log || { bad "no '$words' in the message of: $*"; cat err.log; }
  md5sum --quiet -c sums > /dev/null 2>&1 || bad "a file changed or went away: $*"
}

# accept CMD...: CMD succeeds (within 120 s).
accept() { quick 120 "$@"; }
# quick SECONDS CMD...: CMD succeeds within SECONDS (times ATTNRES_TIME_FACTOR:
# a sanitizer build's slowdown, set by CTest).
quick() {
  local s=$(($1 * ${ATTNRES_TIME_FACTOR:-1}))
  shift
  timeout "$s" "$@" > out.log 2> err.log || { bad "exit $? (124: over $s s): $*"; cat err.log; }
}

# 1. Sizes whose 32-bit products wrapped.
refuse 'covers 4294967300 sublayers' "$A" plan --config t.yaml --set parallel.pp=3 --set parallel.layout=2147483647,2147483647,6
refuse 'covers 4294967300 sublayers' "$A" train --config t.yaml --set parallel.pp=3 --set parallel.layout=2147483647,2147483647,6
refuse 'tokens per microbatch' "$A" plan --config t.yaml --set train.micro_batch_size=2147483647
refuse '4294967296 chunks' "$A" plan --config t.yaml --set parallel.pp=65536 --set parallel.virtual_stages=65536 \
  --set parallel.schedule=interleaved

# 2. An output over an input or another output.
refuse 'are the same path' "$A" train --config t.yaml --export ex1/config.json
refuse 'are the same path' "$A" export --checkpoint ck0/step_00000002 --out ex/config.json
refuse 'are the same path' "$A" train --config t.yaml --metrics d/train.bin
refuse 'are the same path' "$A" train --config t.yaml --metrics ./d/../t.yaml
ln -s d/val.bin link.bin
refuse 'are the same path' "$A" train --config t.yaml --metrics link.bin
refuse 'are the same path' "$A" train --config t.yaml --trace tr.json --metrics tr.rank0.json
refuse 'are the same path' "$A" train --config t.yaml --export ex/model.safetensors --metrics ex/config.json
refuse 'is inside checkpoint.dir' "$A" train --config t.yaml --set checkpoint.dir=ck0 --metrics ck0/step_00000002/m.jsonl
refuse 'is inside --checkpoint' "$A" export --checkpoint ck0/step_00000002 --out ck0/step_00000002/w.safetensors
refuse 'are the same path' "$A" eval --weights ex/model.safetensors --input d/val.bin --depth ex/config.json
refuse 'are the same path' "$A" eval --weights ex/model.safetensors --input d/val.bin --depth d/val.bin

# 3. A checkpoint.dir belongs to one run.
refuse 'checkpoint(s) of another run' "$A" train --config t.yaml --set train.steps=2 --set checkpoint.dir=ck0
refuse '--new-run starts a new run' "$A" train --config t.yaml --set checkpoint.dir=ck0 --new-run --resume auto
cp -r ck0 ck1
accept "$A" train --config t.yaml --set train.steps=4 --set train.eval_every=0 --set checkpoint.dir=ck1 \
  --set checkpoint.every=4 --new-run
old_run=$(sed -n 's/.*"run_id": "\(.*\)".*/\1/p' ck0/step_00000002/manifest.json)
[ -f "ck1/previous_runs/$old_run/step_00000002/COMMITTED" ] || bad "--new-run did not set run $old_run's checkpoint aside"
[ -f ck1/step_00000004/COMMITTED ] && [ ! -e ck1/step_00000002 ] || bad "--new-run: ck1 should hold step 4 only"
mkdir ck2 && cp -r ck0/step_00000002 ck1/step_00000004 ck2/
refuse 'holds checkpoints of 2 runs' "$A" train --config t.yaml --set checkpoint.dir=ck2 --resume auto

# 4. Outputs that cannot be written fail at the start, not after training.
refuse 'cannot create the directory' "$A" train --config t.yaml --trace t.yaml/tr.json --export ex4/model.safetensors
[ -z "$(find ex4 -type f 2>/dev/null)" ] || bad "a refused run wrote into ex4"
mkdir -p exdir ex3/config.json
refuse 'is a directory' "$A" train --config t.yaml --export exdir
refuse 'ex3/config.json: is a directory' "$A" train --config t.yaml --export ex3/model.safetensors
[ ! -e ex3/model.safetensors ] || bad "an export without its config.json"
refuse 'is a directory' "$A" export --checkpoint ck0/step_00000002 --out exdir
refuse 'ex3/config.json: is a directory' "$A" export --checkpoint ck0/step_00000002 --out ex3/model.safetensors
refuse 'is a directory' "$A" eval --weights ex/model.safetensors --input d/val.bin --depth exdir

# 6. Time and memory bounded by the work asked for, or a limit named.
refuse 'the simulator takes at most 1024 ranks' "$A" schedule --pp 10000 --microbatches 8
refuse 'the simulator takes at most 1024 ranks' "$A" schedule --pp 100000 --microbatches 8
quick 20 "$A" schedule --pp 1000 --microbatches 8
quick 20 "$A" plan --config t.yaml --set model.n_layers=4096 --set parallel.pp=64 --set residual.mode=standard
quick 20 "$A" train --dry-run --config t.yaml --set model.n_layers=4096 --set parallel.pp=64 --set residual.block_size=64
quick 20 "$A" plan --config t.yaml --set model.n_layers=4096 --set parallel.pp=2000 --set residual.mode=standard
grep -q 'bubble    not simulated' out.log || bad "plan at pp 2000: no note that the bubble was not simulated"
refuse 'not a regular file' "$A" eval --weights ex/model.safetensors --input /dev/zero
quick 20 "$A" eval --weights ex/model.safetensors --input /dev/zero --windows 4
quick 20 "$A" eval --weights ex/model.safetensors --input d/val.bin --batch 1048576

# 7. Numbers that came out silently wrong.
refuse 'more than 2^64 bytes' "$A" plan --config t.yaml --set model.d_model=65536 --set model.n_heads=1 \
  --set model.d_ff=262144 --set model.n_layers=4096 --set model.seq_len=65536 --set train.micro_batch_size=256 \
  --set train.grad_accum=64 --set parallel.schedule=gpipe --set residual.block_size=8
refuse 'is inside --input' "$A" data prepare --input d --glob '*' --out d/again
refuse 'is inside --input' "$A" data prepare --input d --glob '*' --out d
refuse 'a decimal integer' "$A" plan --config t.yaml --set train.steps=010
refuse 'a decimal integer' "$A" plan --config t.yaml --set train.steps=0x0A
refuse 'a non-negative decimal integer' "$A" plan --config t.yaml --set train.seed=010
{ cat t.yaml; printf -- '---\ntrain:\n  steps: 3\n'; } > two.yaml
refuse 'holds 2 YAML documents' "$A" plan --config two.yaml
refuse 'train.threads' "$A" plan --config t.yaml --set train.threads=100000
cp -r ex ex5 && sed -i 's/"n_heads": 4/"n_heads": 2/' ex5/config.json
refuse 'model.n_heads is 2 but the weights beside it were exported with 4' \
  "$A" eval --weights ex5/model.safetensors --input d/val.bin
cp -r ex ex6 && sed -i 's/"n_heads": 4,/"n_heads": 4, "n_kv_heads": 1,/' ex6/config.json
refuse 'model.n_kv_heads: unknown key' "$A" eval --weights ex6/model.safetensors --input d/val.bin
for seed in -1 18446744073709551616 1e23; do
  refuse 'is not a decimal integer' "$A" generate --weights ex/model.safetensors --prompt x --tokens 2 --seed "$seed"
done
quick 20 "$A" generate --weights ex/model.safetensors --prompt x --tokens 2 --seed 18446744073709551615

# 8. Errors that named the wrong thing.
quick 60 "$A" train --config t.yaml --set train.steps=1 --set train.eval_every=1 --set train.eval_batches=16384
refuse 'raise train.eval_batches' "$A" plan --config t.yaml --set parallel.dp=2 --set train.eval_batches=1
refuse '--weights nope/model.safetensors: no such file' "$A" eval --weights nope/model.safetensors --input d/val.bin
refuse '--weights nope/model.safetensors: no such file' "$A" generate --weights nope/model.safetensors --prompt x
refuse '--set parallel.layout=1,2: parallel.layout' "$A" plan --config t.yaml --set parallel.pp=2 --set parallel.layout=1,2
refuse 'checkpoint.dir d/meta.json: exists and is not a directory' "$A" train --config t.yaml --set checkpoint.dir=d/meta.json
refuse 'checkpoint.dir d/meta.json/ck: cannot create it' "$A" train --config t.yaml --set checkpoint.dir=d/meta.json/ck
refuse "unknown command 'checkpoint frob'" "$A" checkpoint frob
refuse "unknown command 'data frob'" "$A" data frob
mkdir ck7 && cp -r ck0/step_00000002 ck7/step_00000003
refuse 'but the directory is named for step 3' "$A" checkpoint inspect ck7/step_00000003
mkdir ck8 && cp -r ck0/step_00000002 ck8/
python3 - ck8/step_00000002/manifest.json <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m["tensors"] = [t for t in m["tensors"] if not (t["name"] == "lm_head.weight" and t["kind"] == "adam_v")]
json.dump(m, open(sys.argv[1], "w"))
PY
refuse 'lm_head.weight (adam_v)' "$A" checkpoint inspect ck8/step_00000002
bench="$(dirname "$A")/bench/bench_step"
if [ -x "$bench" ]; then
  quick 20 "$bench" --help
  refuse 'bench_step: error: nope.yaml: cannot open config file' "$bench" nope.yaml
  refuse "bench_step: error: THREADS 'x'" "$bench" t.yaml x
fi

# 9. Small ones.
refuse 'parallel.sequence_parallel: needs parallel.tp > 1' "$A" plan --config t.yaml --set parallel.sequence_parallel=true
# A diverging run's NaN (0 * inf on x86 has its sign bit set) reads "nan", not "-nan".
rc=0
timeout $((60 * ${ATTNRES_TIME_FACTOR:-1})) "$A" train --config t.yaml --set train.steps=6 --set train.lr=1e30 --set train.min_lr=0 \
  --set train.warmup_steps=0 --set train.grad_clip=0 > nan.log 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q 'gradient norm nan' nan.log && ! grep -q -- '-nan' nan.log || { bad "a NaN step: exit $rc"; cat nan.log; }
# Resumed at train.steps with another schedule: no learning rate of a step that never runs.
cp -r ck0 ck10
quick 60 "$A" train --config t.yaml --set train.steps=2 --set train.lr=0.01 --set checkpoint.dir=ck10 --resume auto
grep -q 'no step is left to train' out.log && ! grep -q 'learning rate of step 3' out.log || { bad "past-end resume"; cat out.log; }
# Superseded copies go once their step is older than every checkpoint kept.
cp -r ck0 ck11 && cp -r ck0/step_00000002 ck11/step_00000002.superseded
quick 60 "$A" train --config t.yaml --set train.steps=6 --set train.eval_every=0 --set checkpoint.dir=ck11 \
  --set checkpoint.every=2 --set checkpoint.keep_last=1 --resume auto
[ ! -e ck11/step_00000002.superseded ] && [ -f ck11/step_00000006/COMMITTED ] || bad "superseded not pruned: $(ls ck11)"

[ "$failed" = 0 ] && echo "every bad input refused cleanly"
exit "$failed"
