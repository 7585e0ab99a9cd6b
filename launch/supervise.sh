#!/usr/bin/env bash
# Restart supervisor: runs `attnres train ... --resume auto` under mpirun and,
# when the job ends abnormally (a rank killed or crashed, or a rank's watchdog
# caught a hang: exit 124), restarts it from the newest complete checkpoint,
# with exponential backoff, up to --max-restarts times. A clean exit ends it.
#
#   launch/supervise.sh [--np N] [--max-restarts N] [--backoff SECONDS]
#                       [--checkpoint-dir DIR] [--attnres BINARY] -- <attnres train args...>
#
# The checkpoint directory is only read, to log the step each restart resumes
# from (the newest step_<8 digits>/ holding COMMITTED, docs/CHECKPOINT.md): it
# is --checkpoint-dir if given, else the last `--set checkpoint.dir=...` of the
# train args, else `checkpoint: dir:` in the --config file. The trainer picks
# the checkpoint itself; if the newest one fails verification it falls back to
# an older one and says so in its own log.
#
# SIGUSR1 and SIGUSR2 (SLURM's warning before a time limit or preemption,
# launch/slurm/attnres.sbatch) are passed on to mpirun, which passes them to
# the ranks.
#
# Exit status: 0 when an attempt finishes cleanly; otherwise that of the last
# failed attempt, after a final "giving up" line; 2 for bad usage; 128+signal
# when the supervisor itself is interrupted (the job is stopped, not restarted).
set -uo pipefail

usage() {  # the header comment
  sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit "${1:-2}"
}
die() { echo "supervisor: error: $*" >&2; exit 2; }
say() { echo "supervisor: $*" >&2; }

np=1
max_restarts=3
backoff=5
max_backoff=600
ckpt_dir=""
attnres="$(cd "$(dirname "$0")/.." && pwd)/build/attnres"
while [ $# -gt 0 ]; do
  case "$1" in
    --np) np="${2:-}"; shift 2 || usage ;;
    --max-restarts) max_restarts="${2:-}"; shift 2 || usage ;;
    --backoff) backoff="${2:-}"; shift 2 || usage ;;
    --checkpoint-dir) ckpt_dir="${2:-}"; shift 2 || usage ;;
    --attnres) attnres="${2:-}"; shift 2 || usage ;;
    --) shift; break ;;
    -h|--help) usage 0 ;;
    *) die "unknown option '$1' (supervisor options go before --, train arguments after it)" ;;
  esac
done
[[ "$np" =~ ^[1-9][0-9]*$ ]] || die "--np '$np': expected a positive integer"
[[ "$max_restarts" =~ ^[0-9]+$ ]] || die "--max-restarts '$max_restarts': expected a non-negative integer"
[[ "$backoff" =~ ^[0-9]+$ ]] || die "--backoff '$backoff': expected whole seconds >= 0"
[ $# -gt 0 ] || die "no train arguments: expected -- --config FILE [...]"
[ -x "$attnres" ] || die "$attnres: not an executable (build it, or pass --attnres BINARY)"

train_args=("$@")
config=""
set_dir=""
for ((i = 0; i < ${#train_args[@]}; ++i)); do
  a="${train_args[i]}"
  next="${train_args[i + 1]:-}"
  case "$a" in
    --resume|--resume=*) die "'$a': the supervisor passes --resume auto itself" ;;
    --config) config="$next" ;;
    --config=*) config="${a#--config=}" ;;
    --set) [[ "$next" == checkpoint.dir=* ]] && set_dir="${next#checkpoint.dir=}" ;;
    --set=checkpoint.dir=*) set_dir="${a#--set=checkpoint.dir=}" ;;
  esac
done
if [ -z "$ckpt_dir" ]; then
  ckpt_dir="$set_dir"
  if [ -z "$ckpt_dir" ] && [ -f "$config" ]; then
    # `dir:` under the top-level `checkpoint:` section (plain, unquoted or simply quoted).
    ckpt_dir="$(awk '/^[^[:space:]#][^:]*:/ { sec = $1; next }
                     sec == "checkpoint:" && $1 == "dir:" { v = $2; gsub(/^["\047]|["\047]$/, "", v); print v; exit }' "$config")"
  fi
fi
[ -n "$ckpt_dir" ] || say "warning: no checkpoint.dir found (--checkpoint-dir, --set checkpoint.dir=, or the config): a restart begins again at step 0"

# Newest step_<8 digits> directory with the commit marker; 0 if none.
newest_committed() {
  local best=0 d n
  [ -n "$ckpt_dir" ] && [ -d "$ckpt_dir" ] || { echo 0; return; }
  for d in "$ckpt_dir"/step_[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]; do
    [ -f "$d/COMMITTED" ] || continue
    n=$((10#${d##*/step_}))
    [ "$n" -gt "$best" ] && best=$n
  done
  echo "$best"
}

if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
cmd=(mpirun -np "$np" --oversubscribe)
[ -n "${ATTNRES_FAULT:-}" ] && cmd+=(-x ATTNRES_FAULT)  # to ranks on other hosts too
cmd+=("$attnres" train "${train_args[@]}" --resume auto)

child=""
interrupted=0
on_signal() {
  interrupted=$1
  [ -n "$child" ] && kill -TERM "$child" 2>/dev/null
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap '[ -n "$child" ] && kill -USR1 "$child" 2>/dev/null' USR1
trap '[ -n "$child" ] && kill -USR2 "$child" 2>/dev/null' USR2

# Runs "$@" in the background so a signal reaches the trap; returns its status.
run_child() {
  "$@" &
  child=$!
  local rc
  while :; do
    wait "$child"
    rc=$?
    kill -0 "$child" 2>/dev/null || break  # only a trapped signal interrupted the wait
  done
  child=""
  return "$rc"
}

attempt=1
delay=$backoff
while :; do
  say "attempt $attempt: ${cmd[*]} (newest committed checkpoint: step $(newest_committed))"
  run_child "${cmd[@]}"
  rc=$?
  if [ "$interrupted" != 0 ]; then
    say "interrupted; job stopped (exit $rc), not restarting"
    exit "$interrupted"
  fi
  if [ "$rc" = 0 ]; then
    say "attempt $attempt finished cleanly"
    exit 0
  fi
  why="exit $rc"
  [ "$rc" = 124 ] && why="exit 124: a rank's watchdog saw no progress"
  [ "$rc" -gt 128 ] && [ "$rc" -lt 160 ] && why="exit $rc: a rank died of signal $((rc - 128))"
  step=$(newest_committed)
  if [ $((attempt - 1)) -ge "$max_restarts" ]; then
    say "attempt $attempt failed ($why); giving up after $max_restarts restart(s); newest committed checkpoint: step $step${ckpt_dir:+ in $ckpt_dir}"
    exit "$rc"
  fi
  say "attempt $attempt failed ($why); restarting in $delay s (resume from step $step)"
  run_child sleep "$delay"
  if [ "$interrupted" != 0 ]; then
    say "interrupted during backoff; not restarting"
    exit "$interrupted"
  fi
  attempt=$((attempt + 1))
  delay=$((delay * 2 > max_backoff ? max_backoff : delay * 2))
done
