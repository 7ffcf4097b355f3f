#!/usr/bin/env bash
# The CPU convolution's two algorithms side by side in one run: im2col everywhere (the reference,
# NNR_CONV_ALGORITHM=im2col) and nnr's default pick (auto: Winograd F(2x2, 3x3), kernels/
# conv2d_winograd.h, on the 3x3 layers of >= 8 channels in and out, im2col on the rest). Times the
# three directions of the small CNN's second layer (32 -> 64 channels, 14x14, batch 128) with
# bench_conv2d, then one training epoch of the CNN (bench_train_epoch, SGD momentum, 2 threads),
# the two algorithms alternated NNR_CONV_REPEATS times (default 2); medians and paired ratios.
# Writes bench/results/conv-algorithms.json, or $NNR_CONV_OUT (one file per machine).
#   bash bench/conv_algorithms.sh [BUILD_DIR]    # default build/, built first by scripts/build.sh
# About 10 minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
if [[ $build == build ]]; then bash scripts/build.sh >/dev/null; fi
cmake --build "$build" --target bench_conv2d bench_train_epoch -j2 >/dev/null
repeats=${NNR_CONV_REPEATS:-2}
cnn=cnn:1x28x28-c32-p-c64-p-f128-10
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
load=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$repeats"); do
  for algorithm in im2col auto; do
    echo "  repeat $r of $repeats: $algorithm ($(uptime | sed 's/.*load/load/'))" >&2
    NNR_CONV_ALGORITHM=$algorithm "$build/bench/bench_conv2d" --device cpu --json --batch 128 --channels 32 \
      --size 14 --filters 64 --kernel 3 | sed "s/^/{\"repeat\": $r, \"algorithm\": \"$algorithm\", \"what\": \"layer\", \"result\": /; s/\$/}/" \
      >>"$work/runs.jsonl"
    echo "{\"repeat\": $r, \"algorithm\": \"$algorithm\", \"what\": \"epoch\", \"result\": $(NNR_CONV_ALGORITHM=$algorithm \
      "$build/bench/bench_train_epoch" --threads 2 --model $cnn)}" >>"$work/runs.jsonl"
  done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

/usr/bin/python3 - "$work/runs.jsonl" "$load" "$load_end" "${NNR_CONV_OUT:-bench/results/conv-algorithms.json}" \
  "$(git rev-parse --short HEAD)" <<'PY'
import json, sys, datetime, os, statistics
runs = [json.loads(line) for line in open(sys.argv[1])]
out = sys.argv[4]
med = statistics.median
repeats = sorted({r["repeat"] for r in runs})

def ms(rep, alg, bench):
    return next(r["result"]["median_ms"] for r in runs
                if r["repeat"] == rep and r["algorithm"] == alg and r["what"] == "layer" and r["result"]["benchmark"] == bench)

def epoch(rep, alg):
    return next(r["result"]["epoch_seconds"] for r in runs if r["repeat"] == rep and r["algorithm"] == alg and r["what"] == "epoch")

result = {"date": datetime.date.today().isoformat(), "git": sys.argv[5],
          "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
          "cores": os.cpu_count(), "load_average_at_start": sys.argv[2], "load_average_at_end": sys.argv[3],
          "repeats": len(repeats),
          "command": "bash bench/conv_algorithms.sh" + (f" (NNR_CONV_OUT={out})" if "NNR_CONV_OUT" in os.environ else ""),
          "auto": "Winograd on the 32 -> 64 layer (and in the epoch on the CNN's second conv), im2col on its first (1 -> 32)",
          "layer": "conv 32 -> 64 channels, 3x3, padding 1, 14x14, batch 128, 2 threads", "directions": {}}
print(f"{'':<28}{'im2col ms':>11}{'auto ms':>13}{'ratio':>8}")
for bench in ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_filter"):
    a = [ms(r, "im2col", bench) for r in repeats]
    b = [ms(r, "auto", bench) for r in repeats]
    ratio = med(y / x for x, y in zip(a, b))
    result["directions"][bench] = {"im2col_ms": a, "auto_ms": b, "ratio_auto_to_im2col": ratio}
    print(f"{bench:<28}{med(a):>11.2f}{med(b):>13.2f}{ratio:>8.2f}")
a = [epoch(r, "im2col") for r in repeats]
b = [epoch(r, "auto") for r in repeats]
ratio = med(y / x for x, y in zip(a, b))
result["cnn_epoch"] = {"model": "cnn:1x28x28-c32-p-c64-p-f128-10", "im2col_seconds": a, "auto_seconds": b,
                       "ratio_auto_to_im2col": ratio}
print(f"{'CNN epoch (s)':<28}{med(a):>11.2f}{med(b):>13.2f}{ratio:>8.2f}")
with open(out, "w") as f:
    json.dump(result, f, indent=2)
print("wrote " + out)
PY
