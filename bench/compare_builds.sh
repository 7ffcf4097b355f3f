#!/usr/bin/env bash
# Two builds of nnr against each other on the same machine, in turn, so that load that drifts hits
# both alike: a change's effect on speed, page faults and memory, measured as users run nnr.
#   cnn_step_ms / mlp_step_ms   a full training step of cnn:1x28x28-c32-p-c64-p-f128-10 and of
#                               mlp:784-400-400-10 (batch 128, 2 threads; bench_selective_step's full
#                               step, median over its repeats), and that process's minor page faults
#   epoch_s                     the second epoch of `nnr train --data fashion-mnist --model cnn:...
#                               --epochs 2` with the CLI's defaults; peak_rss_mb and minor_faults of that run
# Within a round each measurement runs under both builds back to back, the order swapping from round
# to round; ratios (b/a) are medians over rounds of per-round ratios.
#   bash bench/compare_builds.sh BUILD_A BUILD_B [rounds (3)] > result.json
# BUILD_A and BUILD_B are CMake build directories with nnr and bench_selective_step built.
set -euo pipefail
[[ $# -ge 2 ]] || { echo "usage: bash bench/compare_builds.sh BUILD_A BUILD_B [rounds]" >&2; exit 2; }
builds=("$1" "$2")
rounds=${3:-3}
for b in "${builds[@]}"; do
  for exe in apps/nnr/nnr bench/bench_selective_step; do
    [[ -x $b/$exe ]] || { echo "compare_builds: $b/$exe is missing (build it first)" >&2; exit 2; }
  done
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cnn=cnn:1x28x28-c32-p-c64-p-f128-10
mlp=mlp:784-400-400-10

# "ms minor_faults" of the full step of model $2 with build $1 ($3 repeats).
step_ms() {
  /usr/bin/time -f '%R' -o "$tmp/time.txt" "$1/bench/bench_selective_step" --model "$2" --granularity layer \
    --budgets 1 --threads 2 --warmup 3 --steps 10 --repeats "$3" >"$tmp/step.json"
  echo "$(/usr/bin/python3 -c 'import json, sys; print(next(x["ms_per_step"] for x in json.load(open(sys.argv[1]))["results"] if x["granularity"] == "full"))' "$tmp/step.json") $(tail -n 1 "$tmp/time.txt")"
}

# "epoch_seconds peak_rss_kb minor_faults" of `nnr train` with build $1.
train_epoch() {
  /usr/bin/time -f '%M %R' -o "$tmp/time.txt" "$1/apps/nnr/nnr" train --data fashion-mnist --model "$cnn" \
    --epochs 2 --json -q -o "$tmp/model.safetensors" >"$tmp/train.json" 2>/dev/null
  echo "$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["epochs"][-1]["seconds"])' "$tmp/train.json") $(tail -n 1 "$tmp/time.txt")"
}

load=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$tmp/runs.txt"
for r in $(seq 1 "$rounds"); do
  order=(0 1)
  if ((r % 2 == 0)); then order=(1 0); fi
  declare -A line=()
  for i in "${order[@]}"; do line[$i]="$(step_ms "${builds[$i]}" "$cnn" 5)"; done
  for i in "${order[@]}"; do line[$i]+=" $(step_ms "${builds[$i]}" "$mlp" 9)"; done
  for i in "${order[@]}"; do line[$i]+=" $(train_epoch "${builds[$i]}")"; done
  for i in 0 1; do
    echo "round $r build ${builds[$i]}: ${line[$i]}" >&2
    echo "$r $i ${line[$i]} $(cut -d' ' -f1 /proc/loadavg)" >>"$tmp/runs.txt"
  done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

/usr/bin/python3 - "$load" "$load_end" "$tmp/runs.txt" "${builds[0]}" "${builds[1]}" <<'PY'
import datetime, json, statistics, sys
load, load_end, runs_file, a, b = sys.argv[1:6]
keys = ["cnn_step_ms", "cnn_step_faults", "mlp_step_ms", "mlp_step_faults", "epoch_s", "peak_rss_mb", "minor_faults"]
runs = []
for line in open(runs_file):
    f = line.split()
    v = [float(x) for x in f[2:9]]
    v[5] /= 1024.0  # KB -> MB
    runs.append({"round": int(f[0]), "build": [a, b][int(f[1])], **dict(zip(keys, v)), "load_1min_after": float(f[9])})
def of(build, key):
    return {r["round"]: r[key] for r in runs if r["build"] == build}
medians = {build: {k: statistics.median(of(build, k).values()) for k in keys} for build in (a, b)}
ratios = {}
for k in keys:
    va, vb = of(a, k), of(b, k)
    ratios[k] = statistics.median(vb[r] / va[r] for r in va if va[r])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
print(json.dumps({"date": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"), "cpu": cpu,
                  "command": f"bash bench/compare_builds.sh {a} {b}", "load_average_at_start": load,
                  "load_average_at_end": load_end, "medians": medians, "ratio_b_over_a": ratios, "runs": runs}, indent=1))
PY
