#!/usr/bin/env bash
# Test accuracy on Fashion-MNIST after 5 epochs: the MLP 784-256-256-10 (target >= 88.5 %)
# and the small CNN (target >= 90.5 %), trained and evaluated with the nnr CLI with its
# default optimizer settings and seed 0. Writes bench/results/fashion-mnist-accuracy.json.
#   bash bench/fashion_mnist_accuracy.sh [BUILD_DIR]   # default build/, built first by scripts/build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bash scripts/setup.sh
if [[ $build == build ]]; then bash scripts/build.sh >/dev/null; fi
nnr=$build/apps/nnr/nnr
out=$build/bench-accuracy
mkdir -p "$out" bench/results
results=()
for spec in mlp:784-256-256-10 cnn:1x28x28-c32-p-c64-p-f128-10; do
  name=${spec%%:*}
  $nnr train --data fashion-mnist --model "$spec" --epochs 5 --seed 0 -q --json -o "$out/$name.safetensors" >"$out/$name-train.json"
  $nnr eval --model "$out/$name.safetensors" --data fashion-mnist:test --json >"$out/$name-eval.json"
  results+=("$out/$name-train.json" "$out/$name-eval.json")
done
/usr/bin/python3 - "${results[@]}" <<'PY'
import json, sys, datetime
files = sys.argv[1:]
targets = {"mlp": 0.885, "cnn": 0.905}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
summary = {"date": datetime.date.today().isoformat(), "cpu": cpu, "command": "bash bench/fashion_mnist_accuracy.sh",
           "runs": {}}
print(f"{'model':<36}{'epochs':>7}{'train s':>9}{'test acc':>10}{'target':>8}")
for train_file, eval_file in zip(files[0::2], files[1::2]):
    t, e = json.load(open(train_file)), json.load(open(eval_file))
    kind = t["model"].split(":")[0]
    ok = e["accuracy"] >= targets[kind]
    print(f"{t['model']:<36}{len(t['epochs']):>7}{t['seconds']:>9.1f}{100 * e['accuracy']:>9.2f}%{100 * targets[kind]:>7.1f}% {'ok' if ok else 'MISSED'}")
    summary["runs"][t["model"]] = {"epochs": len(t["epochs"]), "train_seconds": t["seconds"], "test_accuracy": e["accuracy"],
                                  "test_loss": e["loss"], "target": targets[kind], "met": ok}
json.dump(summary, open("bench/results/fashion-mnist-accuracy.json", "w"), indent=2)
print("wrote bench/results/fashion-mnist-accuracy.json")
PY
