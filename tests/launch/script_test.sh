# Sourced by the script tests of tests/launch, which take ATTNRES SOURCE_DIR
# WORK_DIR: sets A, src and work, runs in a fresh WORK_DIR, and gives bad()
# to record a failure (the script exits "$failed" at its end).
set -uo pipefail
[ $# = 3 ] || { echo "usage: $0 ATTNRES SOURCE_DIR WORK_DIR" >&2; exit 2; }
A="$1" src="$2" work="$3"
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
failed=0
bad() { echo "FAIL: $*"; failed=1; }
