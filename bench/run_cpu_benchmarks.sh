#!/usr/bin/env bash
# Every CPU measurement of bench/results/ in one sequence, for a quiet machine (each script
# records the load average it ran under): peers and GEMM floors, the selective retraining step,
# the convolution's two algorithms, the loop threads' wait, nnr serve under load, data-parallel
# train and stream.
#   bash bench/run_cpu_benchmarks.sh [BUILD_DIR]   # default build/, built first by scripts/build.sh
# About 30 minutes on a 2-core machine. On a machine other than the one the default result files
# came from, set NNR_PEERS_OUT, NNR_SELECTIVE_OUT and NNR_CONV_OUT (see each script).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
if [[ $build == build ]]; then bash scripts/build.sh >/dev/null; fi
stamp() { echo "== $1 $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg)"; }
stamp mlp_peers
NNR_PEERS_BUILD=$build bash bench/mlp_peers.sh
stamp selective_step
NNR_BUILD_DIR=$build bash bench/selective_step.sh
stamp conv_algorithms
bash bench/conv_algorithms.sh "$build"
stamp thread_wait
THREAD_WAIT_SPINS="${THREAD_WAIT_SPINS:-3000 10000 30000}" NNR_BIN=$build/apps/nnr/nnr bash bench/thread_wait.sh
stamp serve_load
bash bench/serve_load.sh "$build/apps/nnr/nnr" "$build/bench/bench_serve_predict"
stamp data_parallel
NNR=$build/apps/nnr/nnr bash bench/data_parallel.sh
stamp end
