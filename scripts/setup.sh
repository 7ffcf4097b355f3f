#!/usr/bin/env bash
# Installs what nnr needs to build, test, fuzz (clang, libclang-rt: libFuzzer), load-test (wrk) and
# run its demo, from Debian's packages and PyPI (and NCCL for the data-parallel CUDA runs, with a CUDA toolkit).
# Idempotent: installs only what is missing. Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake g++ make libeigen3-dev catch2 libcli11-dev zlib1g-dev nlohmann-json3-dev libbenchmark-dev libcpp-httplib-dev
          dataset-fashion-mnist python3-numpy python3-torch clang libclang-rt-14-dev wrk openmpi-bin libopenmpi-dev)
if [ "${NNR_BENCH_PEERS:-0}" = 1 ]; then
  packages+=(libopenblas0-pthread libdlib-dev)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The interop tests use the real safetensors client; installed beside the build, not system-wide.
pydeps=.pydeps
if ! PYTHONPATH=$pydeps /usr/bin/python3 -c "import safetensors.numpy" 2>/dev/null; then
  echo "setup: installing safetensors into $pydeps" >&2
  /usr/bin/python3 -m pip install -q --target "$pydeps" safetensors 2>/dev/null ||
    python3 -m pip install -q --target "$pydeps" --python-version 3.11 --only-binary=:all: safetensors
fi

# NCCL for the data-parallel CUDA runs (libnnr_nccl.so): the nvidia-nccl wheel of the CUDA
# toolkit's major version (nccl.h and libnccl.so.2 in $pydeps/nvidia/nccl, where CMake looks
# first). Only with a CUDA toolkit; where PyPI cannot be reached the build goes on without the
# NCCL backend (CMake says so) and data-parallel runs stay on the CPU.
nvcc_bin=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
if [ -x "$nvcc_bin" ] && [ ! -f "$pydeps/nvidia/nccl/include/nccl.h" ]; then
  cuda_major=$("$nvcc_bin" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
  if [ -n "$cuda_major" ]; then
    echo "setup: installing nvidia-nccl-cu$cuda_major into $pydeps" >&2
    /usr/bin/python3 -m pip install -q --no-deps --target "$pydeps" "nvidia-nccl-cu$cuda_major" ||
      echo "setup: nvidia-nccl-cu$cuda_major could not be installed: the build will have no NCCL backend" >&2
  fi
fi
