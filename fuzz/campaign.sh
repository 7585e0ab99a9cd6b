#!/usr/bin/env bash
# The fuzzing campaign (docs/FUZZING.md): builds the libFuzzer targets with
# clang (ASan + UBSan + coverage), fuzzes each for SECONDS from its kept
# corpus, two targets at a time (one per core), then merges what each found
# into a minimal corpus, written back to fuzz/corpus/<target>/ (replayed by
# CTest from then on). Logs and crash inputs stay in OUT_DIR.
#
#   fuzz/campaign.sh OUT_DIR [SECONDS]   (default 600)
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 OUT_DIR [SECONDS]" >&2; exit 2; }
out="$(realpath -m "$1")" secs="${2:-600}"
src="$(cd "$(dirname "$0")/.." && pwd)"
command -v clang++ > /dev/null || { echo "needs clang++ (apt-get install clang)" >&2; exit 2; }
targets=(config token_file manifest safetensors fault_spec)
cmake -S "$src" -B "$out/build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Release \
  -DATTNRES_FUZZ=ON -DATTNRES_BENCH=OFF -DATTNRES_CUDA=OFF > "$out.cmake.log"
cmake --build "$out/build" -j2 $(printf -- '--target fuzz_%s ' "${targets[@]}") > "$out.build.log"

fuzz_one() {  # TARGET: fuzz from the kept corpus into OUT_DIR/TARGET
  local t="$1"
  mkdir -p "$out/$t" "$out/crashes/$t"
  (cd "$out/crashes/$t" && "$out/build/fuzz/fuzz_$t" "$out/$t" "$src/fuzz/corpus/$t" \
     -max_total_time="$secs" -max_len=20000 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1) \
     > "$out/$t.log" 2>&1 || echo "$t: the fuzzer stopped on a finding (see $out/$t.log)"
}
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  fuzz_one "${targets[i]}" &
  [ $((i + 1)) -lt ${#targets[@]} ] && fuzz_one "${targets[i + 1]}" &
  wait
done

for t in "${targets[@]}"; do  # keep a minimal corpus covering all that was found
  rm -rf "$out/merged/$t" && mkdir -p "$out/merged/$t"
  "$out/build/fuzz/fuzz_$t" -merge=1 "$out/merged/$t" "$src/fuzz/corpus/$t" "$out/$t" > "$out/$t.merge.log" 2>&1
  rm -rf "$src/fuzz/corpus/$t" && cp -r "$out/merged/$t" "$src/fuzz/corpus/$t"
  printf '%-12s %s\n' "$t" "$(grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$out/$t.log" | tr -s ' ' | paste -sd' ') \
corpus $(ls "$src/fuzz/corpus/$t" | wc -l) files, $(grep -o 'cov: [0-9]*' "$out/$t.log" | tail -1)"
done
