#!/usr/bin/env bash
# Permuted Fashion-MNIST with every regularizer: builds regularizers_permuted, runs the λ sweep
# below for each strategy, prints the table and writes bench/results/regularizers-permuted.json
# from the measured results.
#   bench/regularizers_permuted.sh            (BUILD_DIR=... to choose the build folder)
# Settings: 5 tasks (task 0 the identity, then 4 seeded pixel permutations), mlp:784-400-400-10,
# 2 epochs per task of SGD (lr 0.01, momentum 0.9, batch 64) on all 60 000 training samples of
# each task (--train-samples 0), importance estimated on 1024 samples after each task, evaluation
# on the full 10 000-image test set of every task. One thread, waiting passively: on a shared
# machine OpenMP's barrier spinning made 2 threads up to 15x slower, and the timings must be comparable.
# One epoch on 60 000 samples takes ~2-2.8 s at 1 thread, one strategy/λ run ~22-30 s, so the
# 29 runs below take ~14 minutes.
# Sweep: 3 values per regularizer centred on the best λ of the earlier 20 000-sample sweep, then
# extended past every best that a first 60 000-sample pass left at the edge of its sweep
# (l2 0.3 of 0.3,1,3; si 1000 of 100,300,1000; sni 0.03 of 0.003,0.01,0.03;
# sni-synapse-only 0.03 of 0.03,0.1,0.3).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build-reg}
cmake -S "$root" -B "$build" -DNNR_CUDA=OFF -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build" --target regularizers_permuted -j"${JOBS:-1}" > /dev/null
mkdir -p "$root/bench/results"
export NNR_THREAD_WAIT=passive
"$build/bench/regularizers_permuted" \
  --threads 1 --tasks 5 --epochs 2 --train-samples 0 --seed 1 \
  --lr 0.01 --momentum 0.9 --batch-size 64 --importance-samples 1024 \
  --sweep finetune=0 \
  --sweep l2=0.03,0.1,0.3,1 \
  --sweep ewc=100,300,1000 \
  --sweep online-ewc=100,300,1000 \
  --sweep si=300,1000,3000,10000 \
  --sweep mas=0.1,0.3,1 \
  --sweep sni=0.01,0.03,0.1,0.3 \
  --sweep sni-synapse-only=0.01,0.03,0.1,0.3 \
  --sweep sni-neuron-only=0.01,0.03,0.1 \
  --json "$root/bench/results/regularizers-permuted.json"
