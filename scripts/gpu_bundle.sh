#!/usr/bin/env bash
# For a session lent a GPU machine (which has the CUDA libraries and PyTorch but no Eigen, CLI11
# or Catch2, and no package registry): builds the GPU tests, benchmarks and the nnr binary here,
# portable (no -march=native: the GPU machine's CPU may differ), and gathers them with the scripts
# and the Fashion-MNIST files into gpu-bundle/ (ignored by git, about 45 MB, under the 64 MiB that
# may travel). Then, in one device call:
#     carry: ["gpu-bundle"]   command: bash gpu-bundle/bench/run_gpu_benchmarks.sh gpu-bundle
# (see bench/run_gpu_benchmarks.sh for the phases and what it writes).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
build=build-gpu
bundle=gpu-bundle
targets=(nnr nnr_kernels_tests nnr_engine_cuda_tests bench_masked_update bench_softmax_cross_entropy bench_reduce bench_train_step)

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DNNR_NATIVE=OFF -DNNR_CUDA=ON -DNNR_BUILD_BENCH=ON >/dev/null
cmake --build "$build" -j"$jobs" --target nnr_cuda "${targets[@]}"

rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/bench/peers" "$bundle/data"
for t in "${targets[@]}"; do
  find "$build" -type f -name "$t" -perm -u+x -exec cp {} "$bundle/bin/" \;
  [[ -x "$bundle/bin/$t" ]] || { echo "gpu_bundle: $t was not built" >&2; exit 1; }
done
# The shared libraries nnr links beyond the C and C++ runtimes and CUDA (cpp-httplib, OpenSSL,
# ...): the GPU machine may lack them; run_gpu_benchmarks.sh puts lib/ last on the loader's path.
mkdir -p "$bundle/lib"
ldd "$bundle/bin/nnr" | awk '/=> \// {print $3}' |
  grep -v -E '/(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|librt|ld-linux[^/]*|libcuda[a-z]*|libcublas[A-Za-z]*|libcudnn[a-z_]*)\.so' |
  xargs -r cp -L -t "$bundle/lib/"
# The CUDA backend that nnr loads on first use and the tests link (found there through lib/).
cp -L "$build/kernels/libnnr_cuda.so" "$bundle/lib/"
cp bench/run_gpu_benchmarks.sh bench/gpu_mlp_peers.sh bench/stream_sweep.py "$bundle/bench/"
cp bench/peers/*.py "$bundle/bench/peers/"
cp /usr/share/datasets/fashion-mnist/*.gz "$bundle/data/"
git rev-parse --short HEAD >"$bundle/COMMIT"
du -sh "$bundle"
