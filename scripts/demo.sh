#!/usr/bin/env bash
# The main job on Fashion-MNIST: installs what is missing, builds nnr, trains the MLP for
# 5 epochs and evaluates it on the test set; then retrains a
# model round after round on split Fashion-MNIST (5 chunks of 2 classes) with four strategies
# and prints their table (about a minute on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh >/dev/null
out=build/demo
mkdir -p "$out"
nnr=build/apps/nnr/nnr
set -x
$nnr train --data fashion-mnist --model mlp:784-256-256-10 --epochs 5 -o "$out/mlp.safetensors"
$nnr eval --model "$out/mlp.safetensors" --data fashion-mnist:test
$nnr stream --data fashion-mnist --scenario split --chunks 5 --compare finetune,full,replay,paper --seed 1 \
  --report "$out/stream"
