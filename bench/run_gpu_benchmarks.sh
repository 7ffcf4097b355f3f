#!/usr/bin/env bash
# For a session with a GPU: builds the CUDA targets, runs the GPU tests (plain, then under
# compute-sanitizer memcheck and racecheck when it is installed), every kernel benchmark and the
# end-to-end MLP step against PyTorch eager (bench/gpu_mlp_peers.sh, which writes its own JSON), and
# writes all output to bench/results/<device>-<date>.txt plus the JSON lines to a .jsonl beside it.
#   bench/run_gpu_benchmarks.sh [build-dir]          (default: build-cuda)
# Environment: NNR_SANITIZER_TIMEOUT (seconds per sanitizer run, default 900), NNR_SKIP_SANITIZER=1.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-cuda}
jobs=$(nproc 2>/dev/null || echo 2)

cmake -S "$root" -B "$build" -DNNR_BUILD_BENCH=ON >/dev/null || exit 1
cmake --build "$build" --target nnr_kernels_tests bench_masked_update bench_softmax_xent bench_reduce bench_train_step \
  -j"$jobs" || exit 1

device=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr -c 'A-Za-z0-9.-' '_' | sed 's/_*$//')
device=${device:-unknown-device}
mkdir -p "$root/bench/results"
stem="$root/bench/results/${device}-$(date +%Y-%m-%d-%H%M)"
log="$stem.txt"
jsonl="$stem.jsonl"
: >"$jsonl"
exec > >(tee "$log") 2>&1

echo "# nnr kernel tests and benchmarks, $(date -u +%FT%TZ), git $(git -C "$root" rev-parse --short HEAD 2>/dev/null)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>/dev/null
tests="$build/tests/kernels/nnr_kernels_tests"
status=0

echo "## GPU tests"
"$tests" --durations yes || status=1
(cd "$build" && ctest -R nnr_kernels_tests --output-on-failure) || status=1

sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [[ -n "$sanitizer" && "${NNR_SKIP_SANITIZER:-0}" != 1 ]]; then
  limit=${NNR_SANITIZER_TIMEOUT:-900}
  echo "## compute-sanitizer memcheck"
  timeout "$limit" "$sanitizer" --tool memcheck --leak-check full --error-exitcode 3 "$tests" || status=1
  # racecheck checks shared-memory hazards: the kernels that use shared memory (block reductions).
  echo "## compute-sanitizer racecheck"
  timeout "$limit" "$sanitizer" --tool racecheck --error-exitcode 3 "$tests" "[reduce],[softmax_xent],[masked_update]" || status=1
else
  echo "## compute-sanitizer not run (${sanitizer:-not installed})"
fi

run() {  # one run per configuration: its JSON line goes to the log and to the .jsonl
  "$@" --json | tee -a "$jsonl"
  [[ ${PIPESTATUS[0]} == 0 ]] || status=1
}

echo "## masked update (target: >= 85 % of D2D copy bandwidth at >= 10M parameters)"
for n in 1M 10M 100M; do
  for opt in sgd adam; do
    run "$build/bench/bench_masked_update" --n "$n" --optimizer "$opt" --density 1
    for density in 0.25 0.05; do
      run "$build/bench/bench_masked_update" --n "$n" --optimizer "$opt" --density "$density" --mask rows
      run "$build/bench/bench_masked_update" --n "$n" --optimizer "$opt" --density "$density" --mask elements
    done
  done
  run "$build/bench/bench_masked_update" --n "$n" --optimizer adam --density 1 --penalty si
  run "$build/bench/bench_masked_update" --n "$n" --optimizer sgd --density 1 --penalty none
done

echo "## softmax cross-entropy"
for shape in "65536 10" "16384 1000" "1024 32000"; do
  set -- $shape
  run "$build/bench/bench_softmax_xent" --n "$1" --k "$2"
done

echo "## reductions"
for n in 1M 10M 100M; do
  run "$build/bench/bench_reduce" --n "$n" --channels 256
done

echo "## MLP training step against PyTorch eager (targets: 784-256-256-10 b128 >= 2x, 4096-4096-4096-10 b1024 >= 0.95x)"
bash "$root/bench/gpu_mlp_peers.sh" "$build" || status=1

echo "# wrote $log and $jsonl; exit status $status"
exit $status
