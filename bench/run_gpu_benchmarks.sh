#!/usr/bin/env bash
# For a session with a GPU: the GPU tests (plain, then under compute-sanitizer memcheck, racecheck,
# synccheck and initcheck when it is installed), every kernel benchmark, the end-to-end MLP step against PyTorch
# eager (bench/gpu_mlp_peers.sh) and `nnr train --device cuda` on Fashion-MNIST. All output goes
# to <results>/<device>-<date>.txt, the benchmarks' JSON lines to a .jsonl beside it.
#
#   bench/run_gpu_benchmarks.sh [dir]
# dir is either a CMake build dir (default build-cuda; configured and built here first), or a
# bundle made by scripts/gpu_bundle.sh (dir/bin holds the binaries, dir/data Fashion-MNIST):
# the GPU machine has no Eigen, CLI11 or Catch2, so there the binaries come prebuilt, e.g.
#   device run, carry ["gpu-bundle"]:
#   NNR_RESULTS_DIR=$OUT bash gpu-bundle/bench/run_gpu_benchmarks.sh gpu-bundle
#
# Environment: NNR_PHASES (default "tests sanitizer kernels peers train stream"; "sweep" too runs
# bench/stream_sweep.py on the GPU; any subset, in that order), NNR_RESULTS_DIR (default bench/results), NNR_SANITIZER_TIMEOUT (seconds per sanitizer
# run, default 240).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
dir=${1:-$root/build-cuda}
[[ $dir == /* ]] || dir=$PWD/$dir
phases=" ${NNR_PHASES:-tests sanitizer kernels peers train stream} "
results=${NNR_RESULTS_DIR:-$root/bench/results}

if [[ -x $dir/bin/nnr_kernels_tests ]]; then  # a bundle
  bin() { echo "$dir/bin/$1"; }
  fmnist=$dir/data
  # Libraries nnr links that the GPU machine may lack (cpp-httplib and its needs, for nnr serve),
  # last on the path so that the machine's own copies win.
  [[ -d $dir/lib ]] && export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$dir/lib
  # nnr loads its CUDA backend on the first CUDA device (engine/core/backend.cpp).
  [[ -f $dir/lib/libnnr_cuda.so ]] && export NNR_CUDA_BACKEND=$dir/lib/libnnr_cuda.so
else
  cmake -S "$root" -B "$dir" -DNNR_BUILD_BENCH=ON >/dev/null || exit 1
  cmake --build "$dir" -j"$(nproc 2>/dev/null || echo 2)" --target nnr nnr_kernels_tests nnr_engine_cuda_tests \
    bench_masked_update bench_softmax_cross_entropy bench_reduce bench_train_step || exit 1
  bin() { find "$dir" -type f -name "$1" -perm -u+x | head -1; }
  fmnist=/usr/share/datasets/fashion-mnist
fi

# cuBLAS and cuDNN may live in pip's nvidia-* packages rather than on the loader's path.
if ldd "$(bin nnr_kernels_tests)" | grep -q "not found"; then
  for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcudnn.so.9; do
    found=$(find / -xdev -name "$lib" -not -path "*/proc/*" 2>/dev/null | head -1)
    [[ -n $found ]] && LD_LIBRARY_PATH=$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  done
  export LD_LIBRARY_PATH
fi

device=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr -c 'A-Za-z0-9.-' '_' | sed 's/_*$//')
device=${device:-unknown-device}
mkdir -p "$results"
stem="$results/${device}-$(date +%Y-%m-%d-%H%M)"
log="$stem.txt"
jsonl="$stem.jsonl"
: >"$jsonl"
exec > >(tee "$log") 2>&1

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || cat "$dir/COMMIT" 2>/dev/null)
echo "# nnr GPU tests and benchmarks, $(date -u +%FT%TZ), commit $commit, phases:$phases"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>/dev/null
status=0
kernel_tests=$(bin nnr_kernels_tests)
engine_tests=$(bin nnr_engine_cuda_tests)

if [[ $phases == *" tests "* ]]; then
  echo "## GPU tests"
  "$kernel_tests" --durations yes || status=1
  "$engine_tests" --durations yes || status=1
fi

if [[ $phases == *" sanitizer "* ]]; then
  sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
  if [[ -n $sanitizer ]]; then
    limit=${NNR_SANITIZER_TIMEOUT:-240}
    # The kernel tests provoke CUDA API errors on purpose (an invalid device, out-of-memory
    # retries, a broken capture): memcheck reports memory errors and leaks only.
    for t in "$kernel_tests" "$engine_tests"; do
      echo "## compute-sanitizer memcheck $(basename "$t")"
      timeout "$limit" "$sanitizer" --tool memcheck --leak-check full --report-api-errors no --error-exitcode 3 "$t" ||
        status=1
    done
    # racecheck checks shared-memory hazards: the kernels that use shared memory (block reductions).
    echo "## compute-sanitizer racecheck"
    timeout "$limit" "$sanitizer" --tool racecheck --error-exitcode 3 "$kernel_tests" \
      "[reduce],[softmax_cross_entropy],[masked_update]" || status=1
    for tool in synccheck initcheck; do
      for t in "$kernel_tests" "$engine_tests"; do
        echo "## compute-sanitizer $tool $(basename "$t")"
        timeout "$limit" "$sanitizer" --tool "$tool" --error-exitcode 3 "$t" || status=1
      done
    done
  else
    echo "## compute-sanitizer not found"
  fi
fi

run() {  # one run per configuration: its JSON line goes to the log and to the .jsonl
  "$@" --json | tee -a "$jsonl"
  [[ ${PIPESTATUS[0]} == 0 ]] || status=1
}

if [[ $phases == *" kernels "* ]]; then
  masked=$(bin bench_masked_update)
  echo "## masked update (target: >= 85 % of D2D copy bandwidth at >= 10M parameters)"
  for n in 1M 10M 100M; do
    for opt in sgd adam; do
      run "$masked" --n "$n" --optimizer "$opt" --density 1
      for density in 0.25 0.05; do
        run "$masked" --n "$n" --optimizer "$opt" --density "$density" --mask rows
        run "$masked" --n "$n" --optimizer "$opt" --density "$density" --mask elements
      done
    done
    run "$masked" --n "$n" --optimizer adam --density 1 --penalty si
    run "$masked" --n "$n" --optimizer sgd --density 1 --penalty none
    # The one-entry-per-access path, for comparison with the default four-entry path.
    run "$masked" --n "$n" --optimizer sgd --density 1 --path scalar
    run "$masked" --n "$n" --optimizer adam --density 1 --path scalar
    run "$masked" --n "$n" --optimizer sgd --density 0.25 --mask rows --path scalar
  done

  echo "## softmax cross-entropy"
  for shape in "65536 10" "16384 1000" "1024 32000"; do
    set -- $shape
    run "$(bin bench_softmax_cross_entropy)" --n "$1" --k "$2"
  done

  echo "## reductions"
  for n in 1M 10M 100M; do
    run "$(bin bench_reduce)" --n "$n" --channels 256
  done
fi

if [[ $phases == *" peers "* ]]; then
  echo "## MLP training step against PyTorch eager (targets: 784-256-256-10 b128 >= 2x, 4096-4096-4096-10 b1024 >= 0.95x)"
  NNR_STEP_BIN=$(bin bench_train_step) NNR_RESULTS_DIR=$results bash "$here/gpu_mlp_peers.sh" "$dir" || status=1
fi

if [[ $phases == *" train "* ]]; then
  # The CLI end to end on the GPU, with the accuracy targets of the CPU runs (bench/fashion_mnist_accuracy.sh).
  train="$fmnist/train-images-idx3-ubyte.gz:$fmnist/train-labels-idx1-ubyte.gz"
  test="$fmnist/t10k-images-idx3-ubyte.gz:$fmnist/t10k-labels-idx1-ubyte.gz"
  nnr=$(bin nnr)
  out=$(mktemp -d)
  # Each model eager and replayed from a CUDA graph (--cuda-graph): the same seed, so the losses
  # and the accuracy should agree closely and the seconds show what the graph saves.
  for model in mlp:784-256-256-10 cnn:1x28x28-c32-p-c64-p-f128-10; do
    for graph in "" --cuda-graph; do
      echo "## nnr train --device cuda $graph --model $model --epochs 5 --seed 0"
      "$nnr" train --device cuda $graph --data "$train" --eval-data "$test" --model "$model" --epochs 5 --seed 0 -q \
        --json -o "$out/model.safetensors" | tee -a "$jsonl" || status=1
    done
  done
  rm -rf "$out"
fi

if [[ $phases == *" stream "* ]]; then
  # The retraining loop on the GPU: the split stream with the paper's method and full retraining,
  # the bench's seed 1 (bench/stream_fashion_mnist.sh has the CPU numbers for the same runs).
  train="$fmnist/train-images-idx3-ubyte.gz:$fmnist/train-labels-idx1-ubyte.gz"
  test="$fmnist/t10k-images-idx3-ubyte.gz:$fmnist/t10k-labels-idx1-ubyte.gz"
  echo "## nnr stream --device cuda --scenario split --compare paper,full --seed 1"
  start=$SECONDS
  timeout "${NNR_STREAM_TIMEOUT:-300}" "$(bin nnr)" stream --device cuda --data "$train" --test-data "$test" \
    --scenario split --chunks 5 --compare paper,full --seed 1 -q --json | tee -a "$jsonl"
  [[ ${PIPESTATUS[0]} == 0 ]] || status=1
  echo "stream: $((SECONDS - start)) s"
fi

if [[ $phases == *" sweep "* ]]; then
  # The paper preset's settings one at a time, ranked by validation accuracy (bench/stream_sweep.py).
  echo "## stream sweep on cuda"
  python3 "$here/stream_sweep.py" --nnr "$(bin nnr)" --device cuda --jobs "${NNR_SWEEP_JOBS:-8}" \
    --out "$results/stream-sweep-$device.json" 2>/dev/null || status=1
fi

echo "# wrote $log and $jsonl; exit status $status"
exit $status
