#!/usr/bin/env bash
# Replays the committed fuzz inputs (fuzz/regressions/ and fuzz/corpus/) through an nnr binary (in
# CI the ASan + UBSan one, from ctest in build-asan) the way a user hands them to it: data files
# (idx, csv, npy) to `nnr predict --input`, checkpoints and importance states to `--model`, model
# specs to `--model-spec`. Each run must exit 0, 1 or 2, say "error:" when it fails, and leave no
# sanitizer report. Bandit states have no path through the CLI but a model directory; the
# in-process tests (tests/engine/io/fuzz_regression_test.cpp) replay those.
#   bash fuzz/replay_cli.sh <nnr binary>
set -uo pipefail
nnr=${1:?usage: replay_cli.sh <nnr binary>}
fuzz=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/nnr-replay-XXXXXX")
trap 'rm -rf "$work"' EXIT
model="$fuzz/corpus/checkpoint/mlp_3_4_2.safetensors"   # nnr-written mlp:3-4-2
plain_model="$fuzz/corpus/checkpoint/plain_f16_bf16_f64.safetensors"  # no nnr metadata: --model-spec applies
printf '0.1,0.2,0.3\n1,2,3\n' >"$work/x.csv"
failures=0 runs=0

check() {  # check <what> <nnr arguments...>
  local what=$1 code
  shift
  "$nnr" "$@" -o "$work/out.csv" >"$work/stdout" 2>"$work/stderr"
  code=$?
  runs=$((runs + 1))
  if [ $code -gt 2 ] || grep -qE "Sanitizer|runtime error|LeakSanitizer" "$work/stderr" ||
     { [ $code -ne 0 ] && ! grep -q "error:" "$work/stderr"; }; then
    failures=$((failures + 1))
    echo "FAILED ($what): nnr $* exited $code" >&2
    head -c 4000 "$work/stderr" >&2
  fi
}

for kind in regressions corpus; do
  for ext in idx csv npy; do
    for f in "$fuzz/$kind/$ext"/*; do
      [ -f "$f" ] || continue
      if [ "$ext" = csv ]; then tail -c +2 "$f" >"$work/input.csv"  # the first byte is the fuzz target's options
      else cp "$f" "$work/input.$ext"; fi
      check "$f" predict --model "$model" --input "$work/input.$ext"
    done
  done
  for dir in checkpoint importance_state; do
    for f in "$fuzz/$kind/$dir"/*; do
      [ -f "$f" ] && check "$f" predict --model "$f" --input "$work/x.csv" --model-spec mlp:3-4-2
    done
  done
  for f in "$fuzz/$kind/model_spec"/*; do
    # timeout-*: specs the fuzz target's lowered parameter limit refuses, but nnr builds (slowly).
    case "$(basename "$f")" in timeout-*) continue ;; esac
    [ -f "$f" ] && check "$f" predict --model "$plain_model" --input "$work/x.csv" --model-spec "$(cat "$f")"
  done
done
echo "replay_cli: $runs runs of $nnr, $failures failed"
[ $failures -eq 0 ]
