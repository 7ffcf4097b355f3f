#!/usr/bin/env bash
# The retraining loop on Fashion-MNIST as a user runs it (`nnr stream`, its defaults: MLP
# 784-400-400-10, 2 epochs per round, memory 1000, SGD 0.03, batch 64, each regularizer's
# default λ), over seeds:
#   split    5 chunks: finetune, full, replay, paper, bandit-ewc (paper with online EWC instead of
#            SNI), bandit-der (bandit-ewc with dark experience replay), and the ablations of paper
#            (without bandit samples, without bandit weights)
#   permuted 5 chunks: finetune, full, replay, paper, bandit-ewc, bandit-der
#   drift    20 chunks: finetune, full, replay, paper, bandit-ewc, bandit-der
# Every choice inside a run reads validation data only; test accuracy is only reported.
# Writes bench/results/stream-fashion-mnist.json (medians over seeds, each seed's numbers, the
# targets) and seed 1's report folders (report.json, rounds.csv, report.svg) under
# bench/results/stream/<scenario>/. Environment: NNR (binary), SEEDS, SCENARIOS, OUT, STRATEGIES
# (the --compare list), ABLATIONS (0: skip split's two ablations), KEEP (an earlier summary whose
# strategies this run does not rerun are kept, `full` included: see bench/stream_summary.py).
set -euo pipefail
cd "$(dirname "$0")/.."
nnr=${NNR:-build/apps/nnr/nnr}
seeds=${SEEDS:-1 2 3}
scenarios=${SCENARIOS:-split permuted drift}
all_strategies=finetune,full,replay,paper,bandit-ewc,bandit-der
strategies=${STRATEGIES:-$all_strategies}
ablations=${ABLATIONS:-1}
keep=${KEEP:-}
out=${OUT:-bench/results}
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
[ -x "$nnr" ] || { echo "stream bench: $nnr not found; build first (bash scripts/build.sh)" >&2; exit 1; }

run() {  # scenario seed label args...
  local scenario=$1 seed=$2 label=$3
  shift 3
  local chunks=5
  [ "$scenario" = drift ] && chunks=20
  local report=()
  local folder=$label
  [ "$label" = compare ] && [ "$strategies" != "$all_strategies" ] && folder=${strategies//,/-}
  [ "$seed" = 1 ] && report=(--report "$out/stream/$scenario/$folder")
  echo "stream bench: $scenario seed $seed $label" >&2
  local start=$SECONDS
  "$nnr" stream --data fashion-mnist --scenario "$scenario" --chunks "$chunks" --seed "$seed" -q --json \
    "${report[@]}" "$@" > "$runs/$scenario.$seed.$label.json"
  echo "stream bench:   $((SECONDS - start)) s" >&2
}

for seed in $seeds; do
  for scenario in $scenarios; do
    run "$scenario" "$seed" compare --compare "$strategies"
    if [ "$scenario" = split ] && [ "$ablations" = 1 ]; then
      run split "$seed" paper-without-bandit-samples --strategy paper --samples replay
      run split "$seed" paper-without-bandit-weights --strategy paper --weights all
    fi
  done
done

/usr/bin/python3 bench/stream_summary.py "$runs" "$out/stream-fashion-mnist.json" \
  "bash bench/stream_fashion_mnist.sh (SEEDS='$seeds' SCENARIOS='$scenarios' STRATEGIES='$strategies' ABLATIONS=$ablations${keep:+ KEEP=$keep})" \
  ${keep:+"$keep"}
