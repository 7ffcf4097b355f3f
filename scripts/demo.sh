#!/usr/bin/env bash
# The main job on Fashion-MNIST: installs what is missing, builds nnr, trains the MLP for
# 5 epochs, evaluates it on the test set and predicts the first test images.
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
