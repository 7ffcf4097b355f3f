#!/usr/bin/env bash
# Gradient buckets all-reduced during backward against one all-reduce after it (issue #18): one
# epoch of nnr train on Fashion-MNIST (batch 128, Adam, seed 0) for the MLP 784-400-400-10 and the
# CNN 1x28x28-c32-p-c64-p-f128-10, in one process (1 thread: 1 rank) and under `mpirun -np 2` (1
# thread per rank) with NNR_ALLREDUCE_BUCKET_BYTES=0 (one all-reduce after backward) and with the
# default buckets (256 KiB), plus, for the MLP, buckets of 64 KiB and 1 MiB (how the default was
# chosen). The configurations alternate within each repeat; medians over REPEATS (3). Records the
# epoch time (the report's seconds), the bytes each rank all-reduces per step, whether the 2-rank
# weights of the buckets equal those of one all-reduce bit for bit, and the load average. On the
# 2-core development machine this is a correctness and overhead figure, not a speed-up claim.
# Adds (or replaces) the "bucketed_all_reduce" section of bench/results/data-parallel.json; the
# other sections are those of bench/data_parallel.sh and are kept.
#   NNR=build-dp/apps/nnr/nnr bash bench/data_parallel_buckets.sh   # an nnr built with MPI
#   REPEATS=5 MODELS=mlp ...                                        # runs per configuration; mlp, cnn or both
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${NNR:-}" ]; then
  bash scripts/setup.sh
  bash scripts/build.sh >/dev/null
  NNR=build/apps/nnr/nnr
fi
repeats=${REPEATS:-3}
models=${MODELS:-"mlp cnn"}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p bench/results
mpirun=(mpirun --oversubscribe --allow-run-as-root)

spec() {
  case $1 in
    mlp) echo "mlp:784-400-400-10" ;;
    cnn) echo "cnn:1x28x28-c32-p-c64-p-f128-10" ;;
  esac
}
configs() {  # name:ranks:bucket bytes ("-": unset, the default)
  echo "one-rank:1:- two-single:2:0 two-buckets:2:-"
  [ "$1" = mlp ] && echo "two-buckets-64k:2:65536 two-buckets-1m:2:1048576"
  return 0
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for model in $models; do
  train=(train --data fashion-mnist --model "$(spec "$model")" --epochs 1 --batch-size 128 --seed 0 -q --json)
  for i in $(seq 1 "$repeats"); do
    for config in $(configs "$model"); do
      IFS=: read -r name ranks bytes <<<"$config"
      env=()
      [ "$bytes" != "-" ] && env=(-x "NNR_ALLREDUCE_BUCKET_BYTES=$bytes")
      file="$out/$model-$name"
      cut -d' ' -f1 /proc/loadavg >"$file-$i.load"
      if [ "$ranks" = 1 ]; then
        "$NNR" "${train[@]}" --threads 1 -o "$file.safetensors" >"$file-$i.json"
      else
        "${mpirun[@]}" -np "$ranks" "${env[@]}" "$NNR" "${train[@]}" -o "$file.safetensors" >"$file-$i.json"
      fi
    done
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

/usr/bin/python3 - "$out" "$repeats" "$load_before" "$load_after" "$(nproc)" "$models" <<'PY'
import datetime, json, statistics, sys
out, repeats, load_before, load_after, cores, models = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], \
    int(sys.argv[5]), sys.argv[6].split()
specs = {"mlp": "mlp:784-400-400-10", "cnn": "cnn:1x28x28-c32-p-c64-p-f128-10"}
labels = {"one-rank": "1 process, 1 thread (no all-reduce)",
          "two-single": "mpirun -np 2, one all-reduce after backward (NNR_ALLREDUCE_BUCKET_BYTES=0)",
          "two-buckets": "mpirun -np 2, 256 KiB buckets during backward (the default)",
          "two-buckets-64k": "mpirun -np 2, 64 KiB buckets during backward",
          "two-buckets-1m": "mpirun -np 2, 1 MiB buckets during backward"}
section = {
    "date": datetime.date.today().isoformat(),
    "command": "NNR=build-dp/apps/nnr/nnr bash bench/data_parallel_buckets.sh",
    "what": "nnr train --data fashion-mnist --epochs 1 --batch-size 128 --seed 0 (adam, cosine); 1 thread per rank; "
            "configurations alternated within each repeat, medians over the repeats; epoch_seconds is the "
            "training loop (the report's seconds)",
    "repeats": repeats,
    "machine": f"{cores} cores, shared with other work: load average {load_before} before, {load_after} after",
    "note": "a correctness and overhead figure on a loaded 2-core machine (2 ranks of 1 thread each share the 2 "
            "cores with the MPI progress and whatever else runs), not a speed-up claim",
    "models": {},
}
for model in models:
    entry = {"model": specs[model], "runs": {}}
    for name, label in labels.items():
        try:
            reports = [json.load(open(f"{out}/{model}-{name}-{i}.json")) for i in range(1, repeats + 1)]
        except FileNotFoundError:
            continue
        loads = [float(open(f"{out}/{model}-{name}-{i}.load").read()) for i in range(1, repeats + 1)]
        epoch = [r["epochs"][0]["seconds"] for r in reports]
        run = {"what": label, "epoch_seconds": epoch, "epoch_seconds_median": statistics.median(epoch),
               "load_average_1min_at_start": loads, "final_train_loss": reports[-1]["epochs"][0]["loss"],
               "bytes_all_reduced_per_step": reports[-1].get("data_parallel", {}).get("bytes_all_reduced_per_step", 0)}
        entry["runs"][name] = run
    single = open(f"{out}/{model}-two-single.safetensors", "rb").read()
    entry["bucketed_weights_bitwise_equal_to_one_all_reduce"] = {
        name: open(f"{out}/{model}-{name}.safetensors", "rb").read() == single
        for name in entry["runs"] if name.startswith("two-buckets")}
    entry["buckets_vs_one_all_reduce_epoch_ratio"] = (entry["runs"]["two-buckets"]["epoch_seconds_median"] /
                                                      entry["runs"]["two-single"]["epoch_seconds_median"])
    section["models"][model] = entry
path = "bench/results/data-parallel.json"
try:
    results = json.load(open(path))
except FileNotFoundError:
    results = {}
results["bucketed_all_reduce"] = section
json.dump(results, open(path, "w"), indent=2)
print(f"{'model':<6}{'configuration':<80}{'epoch s':>9}{'bytes/step':>12}")
for model, entry in section["models"].items():
    for r in entry["runs"].values():
        print(f"{model:<6}{r['what']:<80}{r['epoch_seconds_median']:>9.3f}{r['bytes_all_reduced_per_step']:>12}")
    print(f"{model:<6}bitwise equal to one all-reduce: {entry['bucketed_weights_bitwise_equal_to_one_all_reduce']}")
print(f"load average {load_before} before, {load_after} after; wrote {path} (bucketed_all_reduce)")
PY
