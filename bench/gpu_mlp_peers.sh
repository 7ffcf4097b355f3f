#!/usr/bin/env bash
# nnr's training step against PyTorch eager on the same GPU: MLP 784-256-256-10 at batch 128 and
# MLP 4096-4096-4096-10 at batch 1024, SGD momentum 0.9, lr 0.01, fp32 (TF32 off in PyTorch),
# one fixed batch on the device (bench_train_step and bench/peers/torch_train_step.py). Prints
# ms per step (median over blocks of steps), the speed-up torch/nnr and the targets (small MLP
# >= 2x PyTorch eager, large >= 0.95x), and writes bench/results/gpu-mlp-peers-<device>-<date>.json.
# PyTorch runs twice: reading the loss back every step, as nnr's step does, and without (its
# fastest eager loop); nnr runs twice too: eager, and replaying its step from a CUDA graph
# (--cuda-graph, which also uploads the batch each step). "met?" compares the faster of each.
#   bash bench/gpu_mlp_peers.sh [build-dir]            (default: build)
# Environment: NNR_STEP_BIN names a prebuilt bench_train_step (then nothing is built);
# NNR_RESULTS_DIR is where the JSON goes (default bench/results); NNR_STEP_DEVICE=cpu tries it
# all on the CPU with few steps (its JSON then goes to the build dir, never to the results);
# NNR_STEP_WARMUP / NNR_STEP_STEPS / NNR_STEP_BLOCK override the step counts; NNR_PYTHON picks
# the python with torch (default python3, falling back to /usr/bin/python3).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
[[ $build == /* ]] || build=$root/$build
device=${NNR_STEP_DEVICE:-cuda}
if [[ $device == cuda ]]; then
  warmup=${NNR_STEP_WARMUP:-20} steps=${NNR_STEP_STEPS:-200} block=${NNR_STEP_BLOCK:-10}
else
  warmup=${NNR_STEP_WARMUP:-2} steps=${NNR_STEP_STEPS:-4} block=${NNR_STEP_BLOCK:-2}
fi

python=${NNR_PYTHON:-python3}
if ! "$python" -c "import torch" 2>/dev/null; then
  echo "gpu_mlp_peers: $python has no torch; using /usr/bin/python3" >&2
  python=/usr/bin/python3
  "$python" -c "import torch" || { echo "gpu_mlp_peers: no python with torch found (set NNR_PYTHON)" >&2; exit 1; }
fi

bin=${NNR_STEP_BIN:-}
if [[ -z $bin ]]; then  # build it (NNR_STEP_BIN: a prebuilt one, e.g. from scripts/gpu_bundle.sh)
  [[ -f $build/CMakeCache.txt ]] || cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DNNR_BUILD_BENCH=ON >/dev/null
  cmake --build "$build" --target bench_train_step -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
  bin=$build/bench/bench_train_step
fi

common=(--device "$device" --optimizer sgd --lr 0.01 --warmup "$warmup" --steps "$steps" --block "$block" --seed 0)
configs=("mlp:784-256-256-10 128 2.0" "mlp:4096-4096-4096-10 1024 0.95")
runs=()
echo "gpu_mlp_peers: $device, $warmup warm-up + $steps timed steps per run, $python ($("$python" -c 'import torch; print(torch.__version__)'))" >&2
for config in "${configs[@]}"; do
  read -r model batch target <<<"$config"
  set +e
  nnr=$("$bin" --model "$model" --batch "$batch" "${common[@]}" --json)
  rc=$?
  set -e
  if [[ $rc == 2 ]]; then exit 2; fi  # no usable CUDA: bench_train_step said why on stderr
  [[ $rc == 0 ]] || { echo "gpu_mlp_peers: bench_train_step failed ($rc) on $model" >&2; exit 1; }
  if [[ $device == cuda ]]; then
    nnr_graph=$("$bin" --model "$model" --batch "$batch" "${common[@]}" --cuda-graph --json) ||
      { echo "gpu_mlp_peers: bench_train_step --cuda-graph failed on $model" >&2; exit 1; }
  else
    nnr_graph=null  # a CUDA graph needs the GPU
  fi
  torch_sync=$("$python" "$root/bench/peers/torch_train_step.py" --model "$model" --batch "$batch" "${common[@]}")
  torch_async=$("$python" "$root/bench/peers/torch_train_step.py" --model "$model" --batch "$batch" "${common[@]}" \
    --no-loss-item)
  runs+=("$target" "$nnr" "$nnr_graph" "$torch_sync" "$torch_async")
done

"$python" - "$root" "$build" "$device" "${runs[@]}" <<'PY'
import datetime, json, os, re, sys
root, build, device, *rest = sys.argv[1:]
rows = []
print(f"{'config':<27}{'nnr ms':>10}{'graph ms':>10}{'torch ms':>10}{'async ms':>10}{'torch/nnr':>11}"
      f"{'target':>9}  met?")
for i in range(0, len(rest), 5):
    target = float(rest[i])
    nnr, graph, sync, asyn = (json.loads(s) for s in rest[i + 1:i + 5])
    best_torch = min(sync["ms_per_step_median"], asyn["ms_per_step_median"])
    best_nnr = min(nnr["ms_per_step_median"], graph["ms_per_step_median"] if graph else float("inf"))
    speedup = best_torch / best_nnr
    met = speedup >= target
    name = f"{nnr['model'].split(':', 1)[1]} b{nnr['batch']}"
    graph_ms = f"{graph['ms_per_step_median']:>10.3f}" if graph else f"{'-':>10}"
    print(f"{name:<27}{nnr['ms_per_step_median']:>10.3f}{graph_ms}{sync['ms_per_step_median']:>10.3f}"
          f"{asyn['ms_per_step_median']:>10.3f}{speedup:>10.2f}x{target:>8.2f}x  {'yes' if met else 'NO'}")
    rows.append({"model": nnr["model"], "batch": nnr["batch"], "target_speedup": target, "speedup": speedup,
                 "met": met, "nnr": nnr, "nnr_cuda_graph": graph, "pytorch_loss_item": sync, "pytorch_async": asyn})
print("ms: median ms per step; nnr = eager step, graph = step replayed from a CUDA graph (batch uploaded each"
      " step); torch = PyTorch eager reading loss.item() each step (as nnr's step returns the loss), async ="
      " without; torch/nnr uses the faster run of each")
name = rows[0]["nnr"]["device_name"] if rows else device
stem = re.sub(r"_+$", "", re.sub(r"[^A-Za-z0-9.-]", "_", name))
date = datetime.date.today().isoformat()
# CPU trial runs are not results: they go to the build dir so they cannot be committed by mistake.
folder = os.environ.get("NNR_RESULTS_DIR") or os.path.join(root, "bench", "results")
if device != "cuda":
    folder = build
os.makedirs(folder, exist_ok=True)
path = os.path.join(folder, f"gpu-mlp-peers-{stem}-{date}.json")
with open(path, "w") as f:
    json.dump({"date": date, "device": name, "command": "bash bench/gpu_mlp_peers.sh", "rows": rows}, f, indent=2)
print(f"wrote {os.path.relpath(path, root)}")
PY
