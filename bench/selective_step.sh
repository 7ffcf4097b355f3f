#!/usr/bin/env bash
# Cost of a selective retraining step on the CPU: one step (forward, loss, backward, masked SGD
# step) of MLP 784-400-400-10 and of the small CNN, batch 128, 2 threads, with the update masks
# a retraining round builds at weight budgets 100 / 50 / 25 / 10 %, layer and neuron granularity,
# as ratios to the full step of the same model in the same run (bench/selective_step.cpp says how).
# Writes bench/results/selective-step.json, or $NNR_SELECTIVE_OUT (one file per machine), with the
# machine's load average at the start and end.
#   bash bench/selective_step.sh [BUILD_DIR] [extra bench_selective_step flags, e.g. --repeats 11]
# BUILD_DIR (a configured CMake build directory) or $NNR_BUILD_DIR, else build/ (built by
# scripts/build.sh). --phases adds the per-phase and per-layer profile of each configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${NNR_BUILD_DIR:-build}
if [[ $# -gt 0 && -f $1/CMakeCache.txt ]]; then
  build=$1
  shift
fi
if [[ $build == build ]]; then bash scripts/build.sh >/dev/null; fi
cmake --build "$build" --target bench_selective_step -j2 >/dev/null
mkdir -p bench/results
load=$(cut -d' ' -f1-3 /proc/loadavg)
out=$("$build"/bench/bench_selective_step --threads 2 "$@")
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
/usr/bin/python3 - "$out" "$load" "$load_end" "${NNR_SELECTIVE_OUT:-bench/results/selective-step.json}" <<'PY'
import json, sys, datetime, platform, os
r = json.loads(sys.argv[1])
r["load_average_at_start"] = sys.argv[2]
r["load_average_at_end"] = sys.argv[3]
r["machine"] = {"cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor()),
                "cores": os.cpu_count(),
                "widest_simd": next((f for f in ("avx512f", "avx2", "sse4_2") if f in open("/proc/cpuinfo").read().split()), "?")}
r["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
r["target"] = "25 % budget <= 0.55x the full step"
print(f"{'model':<36}{'granularity':<12}{'budget':>7}{'open':>7}{'ms/step':>9}{'ratio':>7}{'FLOPs':>7}")
for x in r["results"]:
    print(f"{x['model']:<36}{x['granularity']:<12}{x['budget']:>7.2f}{x['open_fraction']:>7.3f}{x['ms_per_step']:>9.3f}{x['ratio_to_full']:>7.3f}{x['flop_ratio_to_full']:>7.3f}")
with open(sys.argv[4], "w") as f:
    json.dump(r, f, indent=2)
    f.write("\n")
print("wrote " + sys.argv[4])
PY
