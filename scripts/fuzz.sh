#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang, ASan + UBSan) into build-fuzz/ and runs each for a
# bounded time:  bash scripts/fuzz.sh [seconds per target, default 30] [target ...]
# Each run starts from the committed seeds (fuzz/corpus/<target>/) and replays the regression
# inputs (fuzz/regressions/<target>/) first; new corpus entries go to build-fuzz/fuzz-corpus/, never
# into the repository. Limits: -rss_limit_mb / -malloc_limit_mb (an input that makes a parser
# allocate more than that is a finding: sizes must be refused before allocation) and -timeout (a
# hang). Exits 1 when any target crashed, hung, leaked, hit a limit or got a sanitizer report;
# the offending input is kept as build-fuzz/fuzz-artifacts/<target>/crash-* (or leak-, oom-,
# timeout-): copy it to fuzz/regressions/<target>/ with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
all_targets=(idx csv npy checkpoint model_spec bandit_state importance_state)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
jobs=$(nproc 2>/dev/null || echo 2)
build=build-fuzz

command -v clang++ >/dev/null || { echo "scripts/fuzz.sh: clang++ not found (scripts/setup.sh installs clang and libclang-rt-14-dev)" >&2; exit 1; }
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)

start=$(date +%s)
echo "== fuzz: configure and build $build (clang, libFuzzer, ASan + UBSan)"
CC=clang CXX=clang++ cmake -S . -B "$build" -DNNR_FUZZ=ON -DNNR_CUDA=OFF -DNNR_BUILD_BENCH=OFF -DNNR_NATIVE=OFF \
  -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" >/dev/null
targets_to_build=()
for t in "${targets[@]}"; do targets_to_build+=(--target "${t}_fuzz"); done
cmake --build "$build" -j"$jobs" "${targets_to_build[@]}"
echo "== fuzz: built in $(( $(date +%s) - start )) s"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1
failed=()
for t in "${targets[@]}"; do
  work="$build/fuzz-corpus/$t" artifacts="$build/fuzz-artifacts/$t" log="$build/fuzz-logs/$t.log"
  mkdir -p "$work" "$artifacts" "$(dirname "$log")"
  inputs=("$work" "fuzz/corpus/$t")
  [ -d "fuzz/regressions/$t" ] && inputs+=("fuzz/regressions/$t")
  echo "== fuzz: $t for ${seconds} s"
  set +e
  "$build/fuzz/${t}_fuzz" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
    -max_len=4096 -print_final_stats=1 -artifact_prefix="$artifacts/" "${inputs[@]}" >"$log" 2>&1
  rc=$?
  set -e
  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" | sed 's/^/   /' || true
  if [ $rc -ne 0 ]; then
    failed+=("$t")
    echo "   FAILED (exit $rc): the report is in $log; the input:" >&2
    ls "$artifacts" | sed "s|^|     $artifacts/|" >&2
    grep -E "ERROR: |runtime error|==ERROR|SUMMARY" "$log" | head -5 | sed 's/^/     /' >&2
  fi
done
echo "== fuzz: ${#targets[@]} targets in $(( $(date +%s) - start )) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "scripts/fuzz.sh: findings in: ${failed[*]}" >&2
  exit 1
fi
