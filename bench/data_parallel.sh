#!/usr/bin/env bash
# Data-parallel nnr train and nnr stream (issue #18). train: the epoch time of the MLP
# 784-256-256-10 on Fashion-MNIST (1 epoch, batch 128, Adam, seed 0) in one process (2 threads, and
# 1 thread) and under `mpirun -np 2` (1 thread per rank), the bytes each rank all-reduces per step,
# and how far the 2-rank weights are from the 1-process weights. stream: the round time of split
# Fashion-MNIST (3 chunks of 6000 samples, MLP 784-400-400-10, 2 epochs a round) for replay (every
# weight open) and paper (25 % weight budget), 1 process against 2 ranks, and the bytes a step
# all-reduces at each budget. On the 2-core development machine this is a correctness and overhead
# figure, not a speed-up claim. Writes bench/results/data-parallel.json (keeping the
# "bucketed_all_reduce" section of bench/data_parallel_buckets.sh).
#   bash bench/data_parallel.sh                        # builds build/ first (scripts/build.sh)
#   NNR=build-h18/apps/nnr/nnr bash bench/data_parallel.sh   # an nnr already built (with MPI)
#   REPEATS=5 ...                                      # runs per configuration (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${NNR:-}" ]; then
  bash scripts/setup.sh
  bash scripts/build.sh >/dev/null
  NNR=build/apps/nnr/nnr
fi
repeats=${REPEATS:-3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p bench/results
train=(train --data fashion-mnist --model mlp:784-256-256-10 --epochs 1 --batch-size 128 --seed 0 -q --json)
mpirun=(mpirun --oversubscribe --allow-run-as-root)

run() {  # name, then the command; writes $out/name-i.json and the wall seconds to $out/name-i.wall
  local name=$1; shift
  for i in $(seq 1 "$repeats"); do
    local start end
    start=$(date +%s.%N)
    "$@" -o "$out/$name.safetensors" >"$out/$name-$i.json"
    end=$(date +%s.%N)
    echo "$start $end" >"$out/$name-$i.wall"
  done
}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
run one-2threads "$NNR" "${train[@]}" --threads 2
run one-1thread "$NNR" "${train[@]}" --threads 1
run two-ranks "${mpirun[@]}" -np 2 "$NNR" "${train[@]}"
stream=(stream --data fashion-mnist --scenario split --chunks 3 --chunk-samples 6000 --model mlp:784-400-400-10
        --compare replay,paper --seed 1 -q --json)
for i in $(seq 1 "$repeats"); do
  "$NNR" "${stream[@]}" --threads 2 --save-models "$out/stream-one" >"$out/stream-one-$i.json"
  "${mpirun[@]}" -np 2 "$NNR" "${stream[@]}" --save-models "$out/stream-two" >"$out/stream-two-$i.json"
done
# The same run at another thread count: rounding differences grow over a stream's hundreds of
# steps, so this is the yardstick for the 1-process-against-2-ranks weight difference.
"$NNR" "${stream[@]}" --threads 1 --save-models "$out/stream-one-1thread" >/dev/null
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

/usr/bin/python3 - "$out" "$repeats" "$load_before" "$load_after" "$(nproc)" <<'PY'
import datetime, json, statistics, struct, sys, array
out, repeats, load_before, load_after, cores = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])

def weights(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    data = b[8 + n:]
    result = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        a = array.array("f")
        a.frombytes(data[v["data_offsets"][0]:v["data_offsets"][1]])
        result[name] = a
    return result

runs = {}
for name, label in [("one-2threads", "1 process, 2 threads"), ("one-1thread", "1 process, 1 thread"),
                    ("two-ranks", "mpirun -np 2, 1 thread per rank")]:
    reports = [json.load(open(f"{out}/{name}-{i}.json")) for i in range(1, repeats + 1)]
    walls = [(lambda s, e: e - s)(*map(float, open(f"{out}/{name}-{i}.wall").read().split()))
             for i in range(1, repeats + 1)]
    epoch = [r["epochs"][0]["seconds"] for r in reports]
    runs[name] = {"what": label, "epoch_seconds": epoch, "epoch_seconds_median": statistics.median(epoch),
                  "epoch_seconds_min": min(epoch), "command_wall_seconds_median": statistics.median(walls),
                  "final_train_loss": reports[-1]["epochs"][0]["loss"]}
    if "data_parallel" in reports[-1]:
        runs[name]["data_parallel"] = reports[-1]["data_parallel"]

a, b = weights(f"{out}/one-2threads.safetensors"), weights(f"{out}/two-ranks.safetensors")
diff = max(abs(x - y) for k in a for x, y in zip(a[k], b[k]))

# stream: per strategy, the retraining rounds' seconds (rounds 1.., summed) and bytes per step.
stream = {}
for strategy in ("replay", "paper"):
    entry = {}
    for name, label in [("stream-one", "1 process, 2 threads"), ("stream-two", "mpirun -np 2, 1 thread per rank")]:
        reports = [json.load(open(f"{out}/{name}-{i}.json")) for i in range(1, repeats + 1)]
        per_run = []
        for r in reports:
            s = next(x for x in r["strategies"] if x["strategy"] == strategy)
            per_run.append(sum(x["compute"]["round_seconds"] for x in s["rounds"][1:]))
        s = next(x for x in reports[-1]["strategies"] if x["strategy"] == strategy)
        entry[name] = {"what": label, "retraining_seconds": per_run,
                       "retraining_seconds_median": statistics.median(per_run),
                       "average_accuracy": s["average_accuracy"]}
        if name == "stream-two":
            dp = s["rounds"][1]["choices"]["data_parallel"]
            entry["bytes_all_reduced_per_step"] = dp["bytes_all_reduced_per_step"]
            entry["open_fraction"] = s["rounds"][1]["choices"].get("weights", {}).get("open_fraction", 1.0)
    wa = weights(f"{out}/stream-one/{strategy}.safetensors")
    wb = weights(f"{out}/stream-two/{strategy}.safetensors")
    entry["max_abs_weight_difference_1_vs_2_ranks"] = max(abs(x - y) for k in wa for x, y in zip(wa[k], wb[k]))
    wc = weights(f"{out}/stream-one-1thread/{strategy}.safetensors")
    entry["max_abs_weight_difference_1_process_2_vs_1_threads"] = max(
        abs(x - y) for k in wa for x, y in zip(wa[k], wc[k]))
    entry["overhead_2_ranks_vs_1_process"] = (entry["stream-two"]["retraining_seconds_median"] /
                                              entry["stream-one"]["retraining_seconds_median"])
    stream[strategy] = entry
dp = runs["two-ranks"]["data_parallel"]
summary = {
    "date": datetime.date.today().isoformat(),
    "command": "bash bench/data_parallel.sh",
    "model": "mlp:784-256-256-10", "data": "fashion-mnist (60000 training samples)", "epochs": 1,
    "global_batch": 128, "optimizer": "adam (cosine)", "repeats": repeats,
    "machine": f"{cores} cores, shared with other work: load average {load_before} before, {load_after} after",
    "note": "a correctness and overhead figure on a loaded 2-core machine, not a speed-up claim; epoch_seconds "
            "is the training loop (report 'seconds'), command wall time adds data loading and, for mpirun, "
            "starting the ranks and loading MPI",
    "runs": runs,
    "bytes_all_reduced_per_step": {
        "full": dp["bytes_all_reduced_per_step"],
        "what": "per rank per step: every gradient as float32 (269,322 parameters) and the loss as one double",
    },
    "stream": {
        "command": " ".join(["nnr", "stream", "--data", "fashion-mnist", "--scenario", "split", "--chunks", "3",
                             "--chunk-samples", "6000", "--model", "mlp:784-400-400-10", "--compare", "replay,paper",
                             "--seed", "1"]),
        "what": "retraining_seconds: rounds 1 and 2 (round_seconds summed); bytes per step per rank: the open "
                "gradient entries (replay: all 478,410 weights; paper: its 25 % budget) as float32 and the loss. "
                "The weight differences grow with the steps (float sums in another order, amplified by "
                "training): the same run with 1 thread instead of 2 differs as much; the tests compare short "
                "runs to 1e-4",
        "strategies": stream,
    },
    "max_abs_weight_difference_1_vs_2_ranks": diff,
    "overhead_2_ranks_vs_1_process_2_threads": runs["two-ranks"]["epoch_seconds_median"] /
                                               runs["one-2threads"]["epoch_seconds_median"],
}
# bench/data_parallel_buckets.sh's section (buckets against one all-reduce) is kept.
try:
    previous = json.load(open("bench/results/data-parallel.json"))
    if "bucketed_all_reduce" in previous:
        summary["bucketed_all_reduce"] = previous["bucketed_all_reduce"]
except (FileNotFoundError, ValueError):
    pass
json.dump(summary, open("bench/results/data-parallel.json", "w"), indent=2)
print(f"{'configuration':<36}{'epoch s (median)':>18}{'min':>8}{'wall s':>9}")
for r in runs.values():
    print(f"{r['what']:<36}{r['epoch_seconds_median']:>18.3f}{r['epoch_seconds_min']:>8.3f}"
          f"{r['command_wall_seconds_median']:>9.2f}")
print(f"bytes all-reduced per step per rank: {dp['bytes_all_reduced_per_step']}; "
      f"max |w(2 ranks) - w(1 process)| = {diff:.3g}")
print(f"{'stream strategy':<16}{'1 process s':>13}{'2 ranks s':>11}{'bytes/step':>12}{'open':>7}{'max |dw|':>10}"
      f"{'1 vs 2 threads':>16}")
for name, e in stream.items():
    print(f"{name:<16}{e['stream-one']['retraining_seconds_median']:>13.2f}"
          f"{e['stream-two']['retraining_seconds_median']:>11.2f}{e['bytes_all_reduced_per_step']:>12}"
          f"{e['open_fraction']:>7.3f}{e['max_abs_weight_difference_1_vs_2_ranks']:>10.2g}"
          f"{e['max_abs_weight_difference_1_process_2_vs_1_threads']:>16.2g}")
print("wrote bench/results/data-parallel.json")
PY
