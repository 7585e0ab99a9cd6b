#!/usr/bin/env bash
# Disk full (ENOSPC) in each phase of a checkpoint save and in an export, on
# a small tmpfs (docs/CHECKPOINT.md, "Disk full"). For each phase, filler
# leaves just too little room for that phase of the step-6 save: the run
# exits 1 naming the failure (also when the save is asynchronous), the step-4 checkpoint stays committed and
# verifies, no .tmp_step_* or *.tmp debris is left, and --resume auto
# continues from step 4. Then a save that just fits, with pruning on a full
# disk, and an export that does not fit.
#
#   test_disk_full.sh ATTNRES_BINARY SOURCE_DIR WORK_DIR
# Exit 77 (CTest: skipped) with the reason where a tmpfs cannot be mounted.
set -euo pipefail
[ $# = 3 ] || { echo "usage: $0 ATTNRES_BINARY SOURCE_DIR WORK_DIR" >&2; exit 2; }
attnres="$1" src="$2" work="$3"
[ "$(id -u)" = 0 ] || { echo "SKIPPED: mounting a tmpfs needs root"; exit 77; }
rm -rf "$work"
mkdir -p "$work/mnt"
mnt="$work/mnt"
mount -t tmpfs -o size=4m tmpfs "$mnt" 2> "$work/mount.err" ||
  { echo "SKIPPED: cannot mount a tmpfs: $(cat "$work/mount.err")"; exit 77; }
trap 'umount "$mnt"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$attnres" data prepare --input "$src/tests" --glob '*.cpp' --out "$work/corpus" --val-fraction 0.2 > /dev/null
ckpt="$mnt/ckpt"
train() {  # STEPS LOG [more args]: tiny.yaml, a checkpoint every 2 steps on the tmpfs
  local steps="$1" log="$2"
  shift 2
  "$attnres" train --config "$src/configs/tiny.yaml" --peak-gflops 1 --set "data.dir=$work/corpus" \
    --set train.threads=1 --set "train.steps=$steps" --set train.warmup_steps=2 --set train.eval_every=0 \
    --set "checkpoint.dir=$ckpt" --set checkpoint.every=2 --set checkpoint.keep_last=5 "$@" > "$log" 2>&1
}
pages() { echo $(( ($(stat -c %s "$1") + 4095) / 4096 )); }
free_pages() { df --output=avail -B 4096 "$mnt" | tail -1 | tr -d ' '; }
no_debris() {
  local d
  d="$(find "$mnt" -name '.tmp_step_*' -o -name '*.tmp')"
  [ -z "$d" ] || fail "$1: debris left: $d"
}

train 4 "$work/base.log" || { cat "$work/base.log"; fail "the first 4 steps did not train"; }
step4="$ckpt/step_00000004"
shard_pages=$(pages "$step4/rank0.bin") manifest_pages=$(pages "$step4/manifest.json")

# Phase -> pages left free for the step-6 save: the shard cannot be written;
# the shard can, the manifest cannot; both can, the COMMITTED marker cannot.
declare -A room=([shard]=$((shard_pages / 2)) [manifest]=$shard_pages [marker]=$((shard_pages + manifest_pages)))
# full_save PHASE MODE STEPS [args]: the step-6 save of a STEPS-step run, sync
# or async, meets a full disk in PHASE.
full_save() {
  local phase="$1" mode="$2" steps="$3"
  shift 3
  rm -rf "$mnt/filler" "$ckpt/step_00000006"
  head -c $(( ($(free_pages) - ${room[$phase]}) * 4096 )) /dev/zero > "$mnt/filler"
  if train "$steps" "$work/$phase.$mode.log" --resume auto "$@"; then fail "$phase ($mode): the run did not fail on a full disk"; fi
  grep -q "checkpoint of step 6 failed: .*No space left on device" "$work/$phase.$mode.log" ||
    { cat "$work/$phase.$mode.log"; fail "$phase ($mode): no clear disk-full message"; }
  [ ! -e "$ckpt/step_00000006" ] || fail "$phase ($mode): a failed save left step_00000006"
  [ -f "$step4/COMMITTED" ] || fail "$phase ($mode): the step-4 checkpoint lost its marker"
  "$attnres" checkpoint inspect "$step4" > "$work/$phase.$mode.inspect" 2>&1 ||
    { cat "$work/$phase.$mode.inspect"; fail "$phase ($mode): the step-4 checkpoint does not verify"; }
  no_debris "$phase ($mode)"
  echo "disk full in the $phase phase of a $mode save: exit 1 with the reason, step 4 intact and verified, no debris"
}
for phase in shard manifest marker; do full_save "$phase" sync 6; done
# The background writer fails while later steps train: the run stops at the
# next step boundary with the reason, before the step-8 save.
for phase in shard marker; do
  full_save "$phase" async 10 --set checkpoint.async=true
  [ ! -e "$ckpt/step_00000008" ] || fail "$phase (async): the run went on to save step 8"
done

# A save that just fits on a disk kept full, then pruning on it (keep_last 1).
rm -rf "$mnt/filler"
head -c $(( ($(free_pages) - shard_pages - manifest_pages - 1) * 4096 )) /dev/zero > "$mnt/filler"
train 6 "$work/fits.log" --resume auto --set checkpoint.keep_last=1 || { cat "$work/fits.log"; fail "a save that fits failed"; }
grep -q "resume: loaded $step4 (step 4)" "$work/fits.log" || fail "the retry did not resume from step 4"
[ -f "$ckpt/step_00000006/COMMITTED" ] && [ ! -e "$step4" ] && [ ! -e "$ckpt/step_00000002" ] ||
  fail "after a save that just fits, pruning did not leave step 6 alone: $(ls "$ckpt")"
no_debris "fits"
echo "a save that just fits is committed and pruning runs on the full disk"

# An export that does not fit: a clear error and no half-written file.
rm -rf "$mnt/filler" "$ckpt"
head -c $(( ($(free_pages) - 8) * 4096 )) /dev/zero > "$mnt/filler"
if "$attnres" train --config "$src/configs/tiny.yaml" --peak-gflops 1 --set "data.dir=$work/corpus" \
     --set train.steps=1 --set train.warmup_steps=0 --set train.eval_every=0 --export "$mnt/out/model.safetensors" \
     > "$work/export.log" 2>&1; then fail "an export larger than the free space succeeded"; fi
grep -q "model.safetensors.*No space left on device" "$work/export.log" || { cat "$work/export.log"; fail "export: no clear disk-full message"; }
[ ! -e "$mnt/out/model.safetensors" ] || fail "export: a partial model.safetensors was left"
no_debris "export"
echo "disk full in an export: exit 1 with the reason, no partial file"
echo PASS
