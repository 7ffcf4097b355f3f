#!/usr/bin/env python3
"""Sweeps the paper preset's settings one at a time on `nnr stream` and ranks them by validation
accuracy after the last round (the mean over every seen chunk's validation part), the only number
a choice may read. Test accuracy (ACC) is printed beside it for the record, never used to rank.

    python3 bench/stream_sweep.py [--nnr build/apps/nnr/nnr] [--device cpu|cuda] [--seeds 1 2 3]
                                  [--scenarios split permuted] [--strategy paper] [--threads 0]
                                  [--jobs 4] [--out sweep.json]

Each configuration is the --strategy preset (paper unless told) plus the flags in CONFIGS; runs go in parallel (--jobs),
each one `nnr stream ... -q --json`. Writes every run's summary and the per-configuration medians
to --out and prints a table, best validation accuracy first.
"""
import argparse
import concurrent.futures
import json
import statistics
import subprocess
import sys
import time

# One change at a time from the paper preset (bandit samples, bandit weights, SNI).
CONFIGS = {
    "paper": [],
    "online-ewc": ["--regularizer", "online-ewc"],
    "sni lambda auto": ["--lambda", "auto"],
    "budget 0.1": ["--weight-budget", "0.1"],
    "budget 0.5": ["--weight-budget", "0.5"],
    "layer granularity": ["--weight-granularity", "layer"],
    "replay 0.3": ["--replay-fraction", "0.3"],
    "replay 0.7": ["--replay-fraction", "0.7"],
    "bandit share 0.05": ["--bandit-share", "0.05"],
    "bandit share 0.3": ["--bandit-share", "0.3"],
    "pull steps 4": ["--pull-steps", "4"],
    "pull steps 32": ["--pull-steps", "32"],
    "class groups": ["--memory-groups", "class"],
    "lr 0.01": ["--lr", "0.01"],
    "lr 0.1": ["--lr", "0.1"],
    "samples replay": ["--samples", "replay"],
    "weights all": ["--weights", "all"],
    # Second round: the best single change on validation (online EWC) with the next best ones.
    "ewc + budget 0.5": ["--regularizer", "online-ewc", "--weight-budget", "0.5"],
    "ewc + class groups": ["--regularizer", "online-ewc", "--memory-groups", "class"],
    "ewc + lambda auto": ["--regularizer", "online-ewc", "--lambda", "auto"],
    "ewc + bandit share 0.05": ["--regularizer", "online-ewc", "--bandit-share", "0.05"],
    "ewc + replay 0.7": ["--regularizer", "online-ewc", "--replay-fraction", "0.7"],
    "ewc + weights all": ["--regularizer", "online-ewc", "--weights", "all"],
    # Weight aligning of the output layer after rounds that bring new classes.
    "align new classes": ["--align-new-classes"],
    "ewc + align new classes": ["--regularizer", "online-ewc", "--align-new-classes"],
    # The prior correction of the output biases (retraining.h), on paper and on bandit-der.
    "prior correction": ["--prior-correction", "on"],
    "der": ["--regularizer", "online-ewc", "--distill", "0.1"],
    "der + prior correction": ["--regularizer", "online-ewc", "--distill", "0.1", "--prior-correction", "on"],
    # On bandit-der (--strategy bandit-der): its online-EWC strength and weight budget.
    "der: lambda 300": ["--lambda", "300"],
    "der: lambda 100": ["--lambda", "100"],
    "der: lambda 30": ["--lambda", "30"],
    "der: lambda 10": ["--lambda", "10"],
    "der: lambda 3": ["--lambda", "3"],
    "der: no regularizer": ["--regularizer", "none"],
    "der: lambda 300 + importance weights": ["--lambda", "300", "--weights", "importance"],
    "der: lambda 300 + budget 0.5": ["--lambda", "300", "--weight-budget", "0.5"],
    "der: lambda 100 + budget 0.4": ["--lambda", "100", "--weight-budget", "0.4"],
    "der: lambda 100 + budget 0.5": ["--lambda", "100", "--weight-budget", "0.5"],
    "der: lambda 30 + budget 0.35": ["--lambda", "30", "--weight-budget", "0.35"],
    "der: lambda 30 + budget 0.5": ["--lambda", "30", "--weight-budget", "0.5"],
    "der: lambda 10 + budget 0.5": ["--lambda", "10", "--weight-budget", "0.5"],
    "der: lambda 30 + distill 0.2": ["--lambda", "30", "--distill", "0.2"],
}


def run(nnr, device, strategy, threads, scenario, seed, name, flags):
    chunks = "20" if scenario == "drift" else "5"
    cmd = [nnr, "stream", "--device", device, "--scenario", scenario, "--chunks", chunks, "--seed", str(seed),
           "--threads", str(threads), "--strategy", strategy, *flags, "-q", "--json"]
    start = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"config": name, "scenario": scenario, "seed": seed, "error": done.stderr.strip()[-500:]}
    strategy = json.loads(done.stdout)["strategies"][0]
    return {"config": name, "scenario": scenario, "seed": seed, "seconds": round(time.time() - start, 2),
            "validation": strategy["rounds"][-1]["validation_accuracy"], "test_acc": strategy["average_accuracy"],
            "train_flops": strategy["train_flops"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nnr", default="build/apps/nnr/nnr")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--scenarios", nargs="+", default=["split", "permuted"])
    ap.add_argument("--configs", nargs="+", default=[c for c in CONFIGS if not c.startswith(("ewc +", "der:"))],
                    help="names from CONFIGS (default: the single changes to paper)")
    ap.add_argument("--strategy", default="paper", help="the preset the configurations change")
    ap.add_argument("--threads", type=int, default=0, help="each run's --threads (0: all cores)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="stream-sweep.json")
    a = ap.parse_args()
    jobs = [(sc, seed, name) for sc in a.scenarios for name in a.configs for seed in a.seeds]
    runs = []
    with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
        futures = [pool.submit(run, a.nnr, a.device, a.strategy, a.threads, sc, seed, name, CONFIGS[name]) for sc, seed, name in jobs]
        for f in concurrent.futures.as_completed(futures):
            r = f.result()
            runs.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    table = []
    for sc in a.scenarios:
        for name in a.configs:
            ok = [r for r in runs if r["scenario"] == sc and r["config"] == name and "error" not in r]
            if not ok:
                continue
            table.append({"scenario": sc, "config": name, "seeds": len(ok),
                          "median_validation": statistics.median(r["validation"] for r in ok),
                          "median_test_acc": statistics.median(r["test_acc"] for r in ok),
                          "median_train_flops": statistics.median(r["train_flops"] for r in ok)})
    table.sort(key=lambda t: (t["scenario"], -t["median_validation"]))
    with open(a.out, "w") as f:
        json.dump({"command": " ".join(sys.argv), "device": a.device, "strategy": a.strategy, "seeds": a.seeds,
                   "configs": {name: CONFIGS[name] for name in a.configs},
                   "ranked_by": "median validation accuracy after the last round", "table": table, "runs": runs},
                  f, indent=1)
    print(f"{'scenario':9} {'config':20} {'val':>6} {'test':>6} {'GFLOP':>7}")
    for t in table:
        print(f"{t['scenario']:9} {t['config']:20} {100 * t['median_validation']:6.2f} {100 * t['median_test_acc']:6.2f} "
              f"{t['median_train_flops'] / 1e9:7.1f}")
    errors = [r for r in runs if "error" in r]
    for r in errors:
        print("error:", r, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
