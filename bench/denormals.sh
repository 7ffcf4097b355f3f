#!/usr/bin/env bash
# nnr train with denormal floats flushed to zero (the default, kernels/denormals.h) against the same
# binary keeping them (NNR_DENORMALS=keep), as a user runs it: `nnr train --data fashion-mnist`
# with the CLI's defaults (mlp:784-256-256-10, Adam, cosine schedule, all cores). Per mode the
# marginal epoch, (wall time of E epochs - wall time of 1 epoch) / (E - 1), and the final training
# loss; the modes alternate, R rounds, medians reported. Writes bench/results/denormals.json.
#   bash bench/denormals.sh [NNR (build/apps/nnr/nnr)] [ROUNDS (3)] [EPOCHS (6)]
set -euo pipefail
cd "$(dirname "$0")/.."
nnr=${1:-build/apps/nnr/nnr}
rounds=${2:-3}
epochs=${3:-6}
[ -x "$nnr" ] || { echo "denormals.sh: no nnr binary at $nnr" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
load=$(cut -d' ' -f1-3 /proc/loadavg)

# "wall_seconds final_loss" of `nnr train` for $2 epochs, NNR_DENORMALS=$1.
run() {
  local start end
  start=$(date +%s.%N)
  NNR_DENORMALS=$1 "$nnr" train --data fashion-mnist --epochs "$2" --json -q -o "$work/m.safetensors" >"$work/out.json" \
    2>"$work/err.txt" || { cat "$work/err.txt" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.4f", b - a }') $(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["epochs"][-1]["loss"])' "$work/out.json")"
}

: >"$work/runs.txt"
for r in $(seq 1 "$rounds"); do
  modes=(flush keep)
  ((r % 2 == 0)) && modes=(keep flush)
  for m in "${modes[@]}"; do
    one=$(run "$m" 1)
    many=$(run "$m" "$epochs")
    echo "round $r $m: 1 epoch ${one%% *} s, $epochs epochs ${many%% *} s" >&2
    echo "$r $m $one $many" >>"$work/runs.txt"
  done
done

python3 - "$work/runs.txt" "$load" "$(cut -d' ' -f1-3 /proc/loadavg)" "$epochs" "$nnr" "$rounds" <<'PY'
import datetime, json, statistics, sys
runs_file, load, load_end, epochs, nnr, rounds = sys.argv[1:7]
epochs = int(epochs)
runs = []
for line in open(runs_file):
    r, mode, one, _, many, loss = line.split()
    runs.append({"round": int(r), "mode": mode, "one_epoch_s": float(one), "epochs_s": float(many),
                 "marginal_epoch_s": (float(many) - float(one)) / (epochs - 1), "final_loss": float(loss)})
med = {m: statistics.median(x["marginal_epoch_s"] for x in runs if x["mode"] == m) for m in ("flush", "keep")}
ratios = []
for r in sorted({x["round"] for x in runs}):
    f = next(x for x in runs if x["round"] == r and x["mode"] == "flush")
    k = next(x for x in runs if x["round"] == r and x["mode"] == "keep")
    ratios.append(f["marginal_epoch_s"] / k["marginal_epoch_s"])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
out = {"date": datetime.date.today().isoformat(), "cpu": cpu,
       "command": f"bash bench/denormals.sh {nnr} {rounds} {epochs}",
       "what": f"nnr train --data fashion-mnist with the CLI's defaults: marginal epoch over {epochs} epochs, denormals flushed (default) against NNR_DENORMALS=keep",
       "load_average": {"before": load, "after": load_end},
       "median_marginal_epoch_s": med, "median_ratio_flush_over_keep": statistics.median(ratios),
       "final_loss": {m: [x["final_loss"] for x in runs if x["mode"] == m] for m in ("flush", "keep")},
       "runs": runs}
json.dump(out, open("bench/results/denormals.json", "w"), indent=1)
print(f"marginal epoch: flush {med['flush']:.3f} s, keep {med['keep']:.3f} s, ratio {out['median_ratio_flush_over_keep']:.3f} (median of per-round ratios)")
print("wrote bench/results/denormals.json")
PY
