"""Medians over seeds of `nnr stream --json` runs, with the issue's targets, as JSON and a table.

Usage: stream_summary.py RUNS_DIR OUT_JSON COMMAND [KEEP_JSON]
RUNS_DIR holds <scenario>.<seed>.<label>.json files written by bench/stream_fashion_mnist.sh.
KEEP_JSON, an earlier summary: its strategies that RUNS_DIR does not have are kept, per seed, and
named under "kept" with that summary's command and date (a run that adds one strategy need not
rerun the others, `full` included, whose FLOPs the ratios read).
"""
import glob
import json
import os
import platform
import statistics
import sys
import time

runs_dir, out_path, command = sys.argv[1], sys.argv[2], sys.argv[3]
keep_path = sys.argv[4] if len(sys.argv) > 4 else None

# scenario -> strategy label -> seed -> numbers
table = {}
settings = {}
for path in sorted(glob.glob(os.path.join(runs_dir, "*.json"))):
    scenario, seed, label = os.path.basename(path)[: -len(".json")].split(".", 2)
    with open(path) as f:
        report = json.load(f)
    settings[scenario] = report["settings"]
    full_flops = {s["strategy"]: s["train_flops"] for s in report["strategies"]}.get("full")
    for s in report["strategies"]:
        name = s["strategy"] if label == "compare" else label
        table.setdefault(scenario, {}).setdefault(name, {})[int(seed)] = {
            "average_accuracy": s["average_accuracy"],
            "bwt": s["bwt"],
            "forgetting": s["forgetting"],
            "newest_accuracy": s["newest_accuracy"],
            "final_validation_accuracy": s["rounds"][-1]["validation_accuracy"],
            "train_flops": s["train_flops"],
            "train_seconds": s["train_seconds"],
            "lambda": s["rounds"][-1]["lambda"],
        }

kept = None
if keep_path:
    with open(keep_path) as f:
        earlier = json.load(f)
    names = set()
    for scenario, strategies in earlier["scenarios"].items():
        if scenario not in table:
            continue
        for name, entry in strategies.items():
            if name not in table[scenario]:
                table[scenario][name] = {int(seed): numbers for seed, numbers in entry["seeds"].items()}
                names.add(f"{scenario}/{name}")
        settings.setdefault(scenario, earlier.get("settings", {}).get(scenario))
    kept = {"from": earlier["command"], "date": earlier["date"], "strategies": sorted(names)}

# FLOPs ratios to `full` of the same scenario and seed.
for scenario, strategies in table.items():
    full = strategies.get("full", {})
    for name, seeds in strategies.items():
        for seed, numbers in seeds.items():
            if seed in full and full[seed]["train_flops"] > 0:
                numbers["flops_to_full"] = numbers["train_flops"] / full[seed]["train_flops"]


def medians(seeds):
    keys = sorted({k for numbers in seeds.values() for k in numbers})
    return {k: statistics.median(n[k] for n in seeds.values() if k in n) for k in keys}


summary = {
    scenario: {name: {"median": medians(seeds), "seeds": {str(k): v for k, v in sorted(seeds.items())}}
               for name, seeds in strategies.items()}
    for scenario, strategies in table.items()
}


def target(scenario, strategy, check, text):
    strategies = summary.get(scenario)
    if not strategies or strategy not in strategies or "full" not in strategies:
        return None
    ours, full = strategies[strategy]["median"], strategies["full"]["median"]
    return {"target": text, "strategy": strategy, "met": bool(check(ours, full)),
            "acc": ours["average_accuracy"], "full_acc": full["average_accuracy"],
            "flops_to_full": ours.get("flops_to_full")}


# The targets, for the paper's method, bandit-ewc (the paper preset with the one change
# that validation data preferred) and bandit-der (bandit-ewc with dark experience replay).
targets = [t for strategy in ("paper", "bandit-ewc", "bandit-der") for t in [
    target("split", strategy, lambda p, f: p["average_accuracy"] >= 0.81 and
           f["average_accuracy"] - p["average_accuracy"] <= 0.03 and p["flops_to_full"] <= 0.25,
           "split: ACC >= 81 %, within 3 points of full, <= 25 % of full's FLOPs"),
    target("permuted", strategy, lambda p, f: p["average_accuracy"] >= 0.855, "permuted: ACC >= 85.5 %"),
    target("drift", strategy, lambda p, f: f["average_accuracy"] - p["average_accuracy"] <= 0.01 and
           p["flops_to_full"] <= 0.30, "drift: within 1 point of full at <= 30 % of its FLOPs"),
] if t]

cpu = "unknown"
try:
    with open("/proc/cpuinfo") as f:
        cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
except (OSError, StopIteration):
    pass
result = {"command": command, "date": time.strftime("%Y-%m-%d"), "machine": f"{cpu}, {os.cpu_count()} cores",
          "settings": settings, "metric": "test accuracy (reported only; every choice reads validation data)",
          "scenarios": summary, "targets": targets}
if kept:
    result["kept"] = kept
os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
with open(out_path, "w") as f:
    json.dump(result, f, indent=2, sort_keys=True)
    f.write("\n")

print(f"{'scenario':9} {'strategy':30} {'ACC %':>6} {'BWT':>7} {'forget':>7} {'FLOPs/full':>10} {'train s':>8}  (medians over seeds)")
for scenario, strategies in summary.items():
    for name, entry in strategies.items():
        m = entry["median"]
        ratio = f"{m['flops_to_full']:.3f}" if "flops_to_full" in m else "-"
        print(f"{scenario:9} {name:30} {100 * m['average_accuracy']:6.2f} {100 * m['bwt']:7.2f} "
              f"{100 * m['forgetting']:7.2f} {ratio:>10} {m['train_seconds']:8.1f}")
for t in targets:
    print(("met:    " if t["met"] else "missed: ") + f"{t['strategy']}: " + t["target"] +
          f" ({100 * t['acc']:.2f} %, full {100 * t['full_acc']:.2f} %, FLOPs {t['flops_to_full']:.3f} of full)")
