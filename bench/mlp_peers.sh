#!/usr/bin/env bash
# Training speed of nnr against the peers a user would otherwise pick, in one run on this
# machine: the MLP 784-256-256-10 on Fashion-MNIST (batch 128, SGD momentum 0.9, lr 0.01,
# 2 threads, one epoch timed after a warm-up epoch) in nnr (bench/train_epoch.cpp), PyTorch (CPU)
# and dlib; the small CNN in nnr and PyTorch; and for both models the bare GEMMs of one epoch
# (the arithmetic floor: one GEMM per layer and direction over the batch) with nnr's GEMM and
# with Eigen's own multithreaded GEMM. Then the same models through the `nnr train` CLI with its
# defaults (Adam, cosine schedule, all cores), timed as a user would: the marginal epoch,
# (wall time of E epochs − wall time of 1 epoch) / (E − 1), so start-up, data loading and the
# final evaluation cancel. Each measurement runs NNR_PEERS_REPEATS times (default 3), the peers
# interleaved, so every ratio compares runs made side by side; the medians are reported.
# Prints seconds per epoch, ratios and peak memory, and writes bench/results/mlp-peers.json
# (or $NNR_PEERS_OUT: one file per machine, e.g. bench/results/mlp-peers-amd-epyc.json).
#   bash bench/mlp_peers.sh
# Environment: NNR_PEERS_REPEATS (3), NNR_PEERS_CLI_EPOCHS (MLP E, 6), NNR_PEERS_CNN_CLI_EPOCHS
# (CNN E, 3), NNR_PEERS_BUILD (use this existing build directory instead of building build/).
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${NNR_PEERS_REPEATS:-3}
mlp_epochs=${NNR_PEERS_CLI_EPOCHS:-6}
cnn_epochs=${NNR_PEERS_CNN_CLI_EPOCHS:-3}
build=${NNR_PEERS_BUILD:-build}
NNR_BENCH_PEERS=1 bash scripts/setup.sh
[ -n "${NNR_PEERS_BUILD:-}" ] || bash scripts/build.sh >/dev/null
threads=2
mlp=mlp:784-256-256-10
cnn=cnn:1x28x28-c32-p-c64-p-f128-10
mkdir -p build/bench-peers bench/results
g++ -O3 -march=native -std=c++17 bench/peers/dlib_train_epoch.cpp -o build/bench-peers/dlib_train_epoch \
  $(pkg-config --cflags --libs dlib-1) -lz -lpthread
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads

# Wall seconds of `nnr train` with its defaults for $2 epochs of model $1.
cli_seconds() {
  local start end
  start=$(date +%s.%N)
  "$build/apps/nnr/nnr" train --data fashion-mnist --model "$1" --epochs "$2" -o "$work/model.safetensors" -q \
    >/dev/null
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.6f\n", b - a }'
}

# One JSON object per measurement, one line each, in $work/runs.jsonl.
record() { echo "{\"repeat\": $1, \"what\": \"$2\", \"result\": $3}" >>"$work/runs.jsonl"; }

echo "nnr, PyTorch and dlib (MLP), nnr and PyTorch (CNN), nnr train (both), $repeats times; several minutes..." >&2
for r in $(seq 1 "$repeats"); do
  echo "  repeat $r of $repeats ($(uptime | sed 's/.*load/load/'))" >&2
  record "$r" nnr_mlp "$("$build/bench/bench_train_epoch" --threads $threads)"
  record "$r" torch_mlp "$(/usr/bin/python3 bench/peers/torch_train_epoch.py --threads $threads)"
  record "$r" dlib_mlp "$(build/bench-peers/dlib_train_epoch)"
  one=$(cli_seconds $mlp 1)
  many=$(cli_seconds $mlp "$mlp_epochs")
  record "$r" cli_mlp "{\"one_epoch_seconds\": $one, \"epochs\": $mlp_epochs, \"all_epochs_seconds\": $many}"
  record "$r" nnr_cnn "$("$build/bench/bench_train_epoch" --threads $threads --model $cnn)"
  record "$r" torch_cnn "$(/usr/bin/python3 bench/peers/torch_train_epoch.py --threads $threads --model $cnn)"
  one=$(cli_seconds $cnn 1)
  many=$(cli_seconds $cnn "$cnn_epochs")
  record "$r" cli_cnn "{\"one_epoch_seconds\": $one, \"epochs\": $cnn_epochs, \"all_epochs_seconds\": $many}"
done
load=$(cut -d' ' -f1-3 /proc/loadavg)

/usr/bin/python3 - "$work/runs.jsonl" "$load" "${NNR_PEERS_OUT:-bench/results/mlp-peers.json}" <<'PY'
import json, sys, datetime, statistics, subprocess
runs = [json.loads(line) for line in open(sys.argv[1])]
out = sys.argv[3]
repeats = sorted({r["repeat"] for r in runs})
by = {(r["repeat"], r["what"]): r["result"] for r in runs}
for (rep, what), res in list(by.items()):
    if what.startswith("cli_"):  # the marginal epoch of `nnr train`
        res["marginal_epoch_seconds"] = (res["all_epochs_seconds"] - res["one_epoch_seconds"]) / (res["epochs"] - 1)
med = statistics.median

def median_of(what):
    """The median run of `what` (its epoch_seconds / marginal epoch), with every repeat's time."""
    rs = [by[(rep, what)] for rep in repeats]
    key = "marginal_epoch_seconds" if what.startswith("cli_") else "epoch_seconds"
    out = dict(sorted(rs, key=lambda r: r[key])[len(rs) // 2])
    out["repeats_seconds"] = [r[key] for r in rs]
    for field in ("gemm_floor_seconds", "eigen_gemm_floor_seconds", "peak_rss_mb"):
        if field in rs[0]:
            out[field] = med(r[field] for r in rs)
    out[key] = med(r[key] for r in rs)
    return out

def ratio(num, num_key, den, den_key):
    """Median over repeats of the ratio of two measurements made in the same repeat."""
    return med(by[(rep, num)][num_key] / by[(rep, den)][den_key] for rep in repeats)

E, M, F, G = "epoch_seconds", "marginal_epoch_seconds", "gemm_floor_seconds", "eigen_gemm_floor_seconds"
result = {"date": datetime.date.today().isoformat(),
          "cpu": subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                                capture_output=True, text=True).stdout.strip(),
          "cores": int(subprocess.run(["nproc"], capture_output=True, text=True).stdout),
          "widest_simd": next((f for f in ("avx512f", "avx2", "sse4_2") if f in open("/proc/cpuinfo").read().split()), "?"),
          "load_average_after": sys.argv[2], "repeats": len(repeats),
          "command": "bash bench/mlp_peers.sh" + (f" (NNR_PEERS_OUT={out})" if out != "bench/results/mlp-peers.json" else "")}
for model, peers in (("mlp", ("torch", "dlib")), ("cnn", ("torch",))):
    nnr, cli = median_of(f"nnr_{model}"), median_of(f"cli_{model}")
    r = {"nnr": nnr, "nnr_train_cli": cli}
    for p in peers:
        r["pytorch" if p == "torch" else p] = median_of(f"{p}_{model}")
        r["ratio_vs_" + ("pytorch" if p == "torch" else p)] = ratio(f"nnr_{model}", E, f"{p}_{model}", E)
    r["ratio_vs_gemm_floor"] = ratio(f"nnr_{model}", E, f"nnr_{model}", F)
    r["ratio_vs_eigen_gemm_floor"] = ratio(f"nnr_{model}", E, f"nnr_{model}", G)
    r["cli_ratio_vs_eigen_gemm_floor"] = ratio(f"cli_{model}", M, f"nnr_{model}", G)
    r["cli_ratio_vs_gemm_floor"] = ratio(f"cli_{model}", M, f"nnr_{model}", F)
    result[model] = r

m, c = result["mlp"], result["cnn"]
print(f"load average after the run: {sys.argv[2]}; medians of {len(repeats)} repeats")
print("MLP 784-256-256-10, batch 128, SGD momentum, 2 threads, one epoch after a warm-up")
print(f"{'engine':<22}{'s/epoch':>10}{'nnr / peer':>12}{'peak RSS MB':>13}")
for name, key in (("nnr", "nnr"), ("pytorch", "pytorch"), ("dlib", "dlib")):
    rr = m[key]
    rat = 1.0 if key == "nnr" else m["ratio_vs_" + key]
    print(f"{name:<22}{rr[E]:>10.3f}{rat:>12.2f}{rr['peak_rss_mb']:>13.0f}")
for model, r in (("MLP", m), ("CNN " + c["nnr"]["model"], c)):
    if model != "MLP":
        print()
        print(model + ", batch 128, SGD momentum, 2 threads")
        print(f"{'nnr':<22}{r['nnr'][E]:>10.3f}{1.0:>12.2f}{r['nnr']['peak_rss_mb']:>13.0f}")
        print(f"{'pytorch':<22}{r['pytorch'][E]:>10.3f}{r['ratio_vs_pytorch']:>12.2f}{r['pytorch']['peak_rss_mb']:>13.0f}")
    print(f"{'GEMM floor (nnr)':<22}{r['nnr'][F]:>10.3f}   nnr is {r['ratio_vs_gemm_floor']:.2f}x")
    print(f"{'GEMM floor (Eigen MT)':<22}{r['nnr'][G]:>10.3f}   nnr is {r['ratio_vs_eigen_gemm_floor']:.2f}x")
    cli = r["nnr_train_cli"]
    print(f"{'nnr train (defaults)':<22}{cli[M]:>10.3f}   marginal epoch of {cli['epochs']}; "
          f"{r['cli_ratio_vs_eigen_gemm_floor']:.2f}x the Eigen MT floor, {r['cli_ratio_vs_gemm_floor']:.2f}x nnr's")
with open(out, "w") as f:
    json.dump(result, f, indent=2)
print("\nwrote " + out)
PY
