#!/usr/bin/env bash
# Stands in for the attnres binary in the preemption test (test_slurm.sh):
# runs ATTNRES_REAL with the same arguments and, when SIGUSR1 arrives, appends
# "<hostname> rank <r> USR1" to ATTNRES_SIGNAL_LOG and passes the signal on.
# When the rank has ended, appends "<hostname> rank <r> exit <status>".
set -u
rank="${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-${SLURM_PROCID:-?}}}"
log="${ATTNRES_SIGNAL_LOG:?}"
child=""
trap 'echo "$(hostname) rank $rank USR1" >> "$log"; [ -n "$child" ] && kill -USR1 "$child" 2>/dev/null' USR1
"${ATTNRES_REAL:?}" "$@" &
child=$!
while :; do
  wait "$child"
  rc=$?
  kill -0 "$child" 2>/dev/null || break
done
echo "$(hostname) rank $rank exit $rc" >> "$log"
exit "$rc"
