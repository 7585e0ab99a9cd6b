#!/usr/bin/env bash
# Restart supervisor: runs `attnres train ... --resume auto` under mpirun and,
# when the job ends abnormally (a rank killed or crashed, or a rank's watchdog
# caught a hang: exit 124), restarts it from the newest complete checkpoint,
# with exponential backoff, up to --max-restarts times. A clean exit ends it.
#
#   launch/supervise.sh [--np N] [--max-restarts N] [--backoff SECONDS]
#                       [--checkpoint-dir DIR] [--attnres BINARY] -- <attnres train args...>
#
# Every attempt resumes (--resume auto), so the config the train arguments
# resolve to (`attnres config --get checkpoint.dir`) must set checkpoint.dir:
# without one the supervisor refuses to start (exit 2), as it does when the
# config does not resolve. The directory is only read here, to log the step
# each restart resumes from (the newest step_<8 digits>/ holding COMMITTED,
# docs/CHECKPOINT.md); --checkpoint-dir names it as this host sees it, if
# that differs. The trainer picks the checkpoint itself; if the newest one
# fails verification it falls back to an older one and says so in its own log.
#
# Signals (save on signal, docs/CHECKPOINT.md). The ranks save a checkpoint at
# the next step boundary and exit 75 on SIGTERM, SIGUSR1 or SIGHUP
# (preempted), 130 on SIGINT (the user); they ignore SIGUSR2. mpirun passes
# SIGUSR1 on to the ranks as it is, so:
#   - SIGUSR1, SIGTERM, SIGHUP or SIGINT to the supervisor (SLURM's warning
#     before a time limit, launch/slurm/attnres.sbatch; a scheduler ending the
#     job; the terminal closing; the user) is passed to mpirun as SIGUSR1: the
#     ranks save and exit, and the supervisor exits too, without restarting:
#     75 after SIGUSR1, SIGTERM or SIGHUP ("preempted: resume"), 130 after
#     SIGINT ("stopped by the user").
#   - Ranks that exit 75 on their own (signalled directly) were preempted:
#     the supervisor restarts them at once, not counted as a failed attempt.
#     Ranks that exit 130 were stopped by the user: the supervisor exits 130.
#   - SIGUSR2 has no meaning for a run: the supervisor logs it and goes on.
#
# Exit status: 0 when an attempt finishes cleanly; 75 or 130 when stopped as
# above; otherwise that of the last failed attempt, after a final "giving up"
# line; 2 for bad usage.
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
[[ "$backoff" =~ ^[0-9]{1,9}$ ]] || die "--backoff '$backoff': expected whole seconds >= 0 (capped at $max_backoff)"
[ $# -gt 0 ] || die "no train arguments: expected -- --config FILE [...]"
[ -x "$attnres" ] || die "$attnres: not an executable (build it, or pass --attnres BINARY)"

train_args=("$@")
config_args=()  # the --config and --set arguments among them
for ((i = 0; i < ${#train_args[@]}; ++i)); do
  a="${train_args[i]}"
  case "$a" in
    --resume|--resume=*) die "'$a': the supervisor passes --resume auto itself" ;;
    --config|--set) config_args+=("$a" "${train_args[i + 1]:-}") ;;
    --config=*|--set=*) config_args+=("$a") ;;
  esac
done
# The binary resolves the config (file, then every --set), as training will.
resolved="$("$attnres" config "${config_args[@]}" --get checkpoint.dir 2>&1)" ||
  die "the train arguments' config does not resolve: $resolved"
[ -n "$resolved" ] || die "the config sets no checkpoint.dir: every attempt resumes with --resume auto, which needs one (--set checkpoint.dir=DIR, and checkpoint.every to save periodically)"
[ -n "$ckpt_dir" ] || ckpt_dir="$resolved"

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

preempted=75     # the ranks' status after saving on SIGTERM/SIGUSR1 (runtime/stop_signal.h)
user_stopped=130 # and on SIGINT
child=""
stopping=0       # set by a signal to the supervisor: the status to exit with
on_signal() {    # on_signal STATUS: the ranks save and exit; no restart after
  stopping=$1
  say "got a stop signal; asking the ranks to save and exit (SIGUSR1 to ${child:+pid }${child:-nobody})"
  [ -n "$child" ] && kill -USR1 "$child" 2>/dev/null
}
trap "on_signal $user_stopped" INT
trap "on_signal $preempted" TERM
trap "on_signal $preempted" USR1
trap "on_signal $preempted" HUP
trap 'say "got SIGUSR2: it means nothing to a run; ignored"' USR2

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
failures=0  # failed attempts restarted so far (a preemption is not one)
delay=$((backoff > max_backoff ? max_backoff : backoff))
while :; do
  say "attempt $attempt: ${cmd[*]} (newest committed checkpoint: step $(newest_committed))"
  run_child "${cmd[@]}"
  rc=$?
  if [ "$stopping" != 0 ]; then
    say "stopped ($([ "$stopping" = "$user_stopped" ] && echo "by the user" || echo "preempted: resume")); attempt $attempt exited $rc; newest committed checkpoint: step $(newest_committed); not restarting"
    exit "$stopping"
  fi
  if [ "$rc" = 0 ]; then
    say "attempt $attempt finished cleanly"
    exit 0
  fi
  if [ "$rc" = "$user_stopped" ]; then
    say "attempt $attempt was stopped by the user (a rank got SIGINT) and saved step $(newest_committed); not restarting"
    exit "$rc"
  fi
  if [ "$rc" = "$preempted" ]; then
    say "attempt $attempt was preempted (a rank got SIGTERM, SIGUSR1 or SIGHUP) and saved step $(newest_committed); resuming at once"
    attempt=$((attempt + 1))
    continue
  fi
  why="exit $rc"
  [ "$rc" = 124 ] && why="exit 124: a rank's watchdog saw no progress"
  [ "$rc" -gt 128 ] && [ "$rc" -lt 160 ] && why="exit $rc: a rank died of signal $((rc - 128))"
  step=$(newest_committed)
  if [ "$failures" -ge "$max_restarts" ]; then
    say "attempt $attempt failed ($why); giving up after $max_restarts restart(s); newest committed checkpoint: step $step${ckpt_dir:+ in $ckpt_dir}"
    exit "$rc"
  fi
  say "attempt $attempt failed ($why); restarting in $delay s (resume from step $step)"
  run_child sleep "$delay"
  if [ "$stopping" != 0 ]; then
    say "stopped during backoff; not restarting"
    exit "$stopping"
  fi
  attempt=$((attempt + 1))
  failures=$((failures + 1))
  delay=$((delay * 2 > max_backoff ? max_backoff : delay * 2))
done
