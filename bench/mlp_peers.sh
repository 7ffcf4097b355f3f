#!/usr/bin/env bash
# Training speed of nnr against the peers a user would otherwise pick, in one run on this
# machine: the same MLP 784-256-256-10 on Fashion-MNIST (batch 128, SGD momentum 0.9,
# lr 0.01, 2 threads, one epoch timed after a warm-up epoch) in nnr, PyTorch (CPU) and dlib,
# plus the bare GEMMs of one epoch with nnr's Eigen GEMM (the arithmetic floor); then the
# small CNN in nnr and PyTorch. Prints seconds per epoch, ratios and peak memory, and writes
# bench/results/mlp-peers.json.
#   bash bench/mlp_peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
NNR_BENCH_PEERS=1 bash scripts/setup.sh
bash scripts/build.sh >/dev/null
threads=2
cnn=cnn:1x28x28-c32-p-c64-p-f128-10
mkdir -p build/bench-peers bench/results
g++ -O3 -march=native -std=c++17 bench/peers/dlib_train_epoch.cpp -o build/bench-peers/dlib_train_epoch \
  $(pkg-config --cflags --libs dlib-1) -lz -lpthread

export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
echo "running nnr, PyTorch and dlib (MLP), then nnr and PyTorch (CNN); a few minutes..." >&2
nnr_mlp=$(build/bench/bench_train_epoch --threads $threads)
torch_mlp=$(/usr/bin/python3 bench/peers/torch_train_epoch.py --threads $threads)
dlib_mlp=$(build/bench-peers/dlib_train_epoch)
nnr_cnn=$(build/bench/bench_train_epoch --threads $threads --model $cnn)
torch_cnn=$(/usr/bin/python3 bench/peers/torch_train_epoch.py --threads $threads --model $cnn)

/usr/bin/python3 - "$nnr_mlp" "$torch_mlp" "$dlib_mlp" "$nnr_cnn" "$torch_cnn" <<'PY'
import json, sys, datetime, platform, subprocess
nnr, torch, dlib, nnr_cnn, torch_cnn = (json.loads(a) for a in sys.argv[1:])
floor = nnr["gemm_floor_seconds"]
rows = [("nnr", nnr), ("pytorch", torch), ("dlib", dlib)]
print("MLP 784-256-256-10, batch 128, SGD momentum, 2 threads, one epoch after a warm-up")
print(f"{'engine':<10}{'s/epoch':>10}{'nnr / peer':>12}{'peak RSS MB':>13}")
for name, r in rows:
    print(f"{name:<10}{r['epoch_seconds']:>10.3f}{nnr['epoch_seconds'] / r['epoch_seconds']:>12.2f}{r['peak_rss_mb']:>13.0f}")
print(f"{'GEMM floor':<10}{floor:>10.3f}   nnr is {nnr['epoch_seconds'] / floor:.2f}x the floor")
print()
print("CNN " + nnr_cnn["model"])
for name, r in (("nnr", nnr_cnn), ("pytorch", torch_cnn)):
    print(f"{name:<10}{r['epoch_seconds']:>10.3f}{nnr_cnn['epoch_seconds'] / r['epoch_seconds']:>12.2f}{r['peak_rss_mb']:>13.0f}")
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
result = {"date": datetime.date.today().isoformat(), "cpu": cpu, "command": "bash bench/mlp_peers.sh",
          "mlp": {"nnr": nnr, "pytorch": torch, "dlib": dlib,
                  "ratio_vs_pytorch": nnr["epoch_seconds"] / torch["epoch_seconds"],
                  "ratio_vs_dlib": nnr["epoch_seconds"] / dlib["epoch_seconds"],
                  "ratio_vs_gemm_floor": nnr["epoch_seconds"] / floor},
          "cnn": {"nnr": nnr_cnn, "pytorch": torch_cnn,
                  "ratio_vs_pytorch": nnr_cnn["epoch_seconds"] / torch_cnn["epoch_seconds"]}}
with open("bench/results/mlp-peers.json", "w") as f:
    json.dump(result, f, indent=2)
print("\nwrote bench/results/mlp-peers.json")
PY
