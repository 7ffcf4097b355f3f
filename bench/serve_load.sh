#!/usr/bin/env bash
# Load test of nnr serve from a second process (wrk, loopback only), bounded in time. Builds
# nothing: takes the nnr binary and the bench_serve_predict binary (the in-process baseline).
#
#   bash bench/serve_load.sh [NNR] [BENCH_SERVE_PREDICT]
#     NNR                  default build/apps/nnr/nnr
#     BENCH_SERVE_PREDICT  default bench/bench_serve_predict next to NNR's build folder
#   SERVE_LOAD_SECONDS (default 12) per wrk run, SERVE_LOAD_MODEL (default mlp:784-256-256-10),
#   SERVE_LOAD_SERVE_FLAGS (default none) more nnr serve flags for every run, e.g. "--retrain-nice 0"
#
# Prepares a model directory (the MLP trained one epoch on 6000 Fashion-MNIST training images as
# CSV, version 1), then, each run a fresh `nnr serve --port 0` on it, measures with
# `wrk -t2 -c16 -d<s>s --latency` POSTing one batch-1 predict request (bench/serve_load.lua):
#   idle        the defaults (no dynamic batching), no retraining
#   batched     dynamic batching, --max-batch 32 --max-wait-us 500, no retraining
#   feedback    the defaults, no retraining: bench/serve_feeder.py posts 200 labelled samples
#               every 2 s and polls /v1/model every 0.1 s (what the retraining run's feeder
#               does, without the rounds)
#   retraining  the defaults, while retraining rounds run back to back: the feeder posts 200
#               labelled samples (--retrain-every 200), polls /v1/model every 0.1 s until the
#               round has ended (its rounds counter), and posts again, for the whole wrk window.
#               Each poll records /v1/model's "retraining" flag: the share of polls in the window
#               with a round running, and the rounds counter before/after, say that rounds
#               really overlapped the measurement. The feeder is one process on one keep-alive
#               connection (a curl and a sed per poll, 30 a second, cost as much p99 as the rounds).
# and runs bench_serve_predict (batch-1 predictions in a loop in one process, no HTTP: the forward
# pass alone, and the forward pass with the server's JSON parsing and answer writing). Targets:
# p99 during retraining <= 2x p99 idle, no failed request (non-2xx and socket errors 0),
# throughput within 10 % of the in-process batch-1 forward loop. Also reported, not a target: the
# throughput over the in-process request loop (parse + forward + write, one thread), which says
# what HTTP costs on top of the work a request needs anyway. The load average before and after is
# recorded: on a shared machine the absolute numbers move, the ratios (one run) less.
# Writes bench/results/serve-load.json.
set -euo pipefail
cd "$(dirname "$0")/.."
nnr=$(realpath "${1:-build/apps/nnr/nnr}")
bench=$(realpath "${2:-$(dirname "$nnr")/../../bench/bench_serve_predict}")
seconds=${SERVE_LOAD_SECONDS:-12}
model=${SERVE_LOAD_MODEL:-mlp:784-256-256-10}
data=/usr/share/datasets/fashion-mnist
for tool in wrk curl python3; do command -v $tool >/dev/null || { echo "serve_load.sh: $tool not found (scripts/setup.sh)" >&2; exit 1; }; done
[ -x "$nnr" ] || { echo "serve_load.sh: no nnr binary at $nnr" >&2; exit 1; }
[ -x "$bench" ] || { echo "serve_load.sh: no bench_serve_predict at $bench (build with NNR_BUILD_BENCH)" >&2; exit 1; }

work=$(mktemp -d /tmp/nnr-serve-load.XXXXXX)
[ -n "${SERVE_LOAD_KEEP:-}" ] && echo "serve_load.sh: keeping $work" >&2
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  [ -n "${SERVE_LOAD_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

# Data: 6000 training images for version 1, one test image as the predict body, and ten feedback
# bodies of 200 labelled training images each (pixels / 255, as nnr reads IDX files).
python3 - "$data" "$work" <<'PY'
import gzip, json, sys
data, work = sys.argv[1], sys.argv[2]
def images(name, n):
    raw = gzip.open(f"{data}/{name}-images-idx3-ubyte.gz").read()
    return [[raw[16 + i * 784 + j] / 255 for j in range(784)] for i in range(n)]
def labels(name, n):
    return list(gzip.open(f"{data}/{name}-labels-idx1-ubyte.gz").read()[8:8 + n])
x, y = images("train", 8000), labels("train", 8000)
with open(f"{work}/train.csv", "w") as f:
    for xi, yi in zip(x[:6000], y[:6000]):
        f.write(str(yi) + "," + ",".join(f"{v:.4g}" for v in xi) + "\n")
json.dump({"input": [round(v, 4) for v in images("t10k", 1)[0]]}, open(f"{work}/predict.json", "w"))
for k in range(10):
    lo = 6000 + 200 * k
    json.dump({"inputs": [[round(v, 4) for v in xi] for xi in x[lo:lo + 200]], "labels": y[lo:lo + 200]},
              open(f"{work}/feedback-{k}.json", "w"))
PY
"$nnr" train --data "$work/train.csv" --model "$model" --model-dir "$work/served" --epochs 1 --seed 1 -q \
  >"$work/train.txt" 2>&1 || { cat "$work/train.txt"; exit 1; }
export NNR_PREDICT_BODY="$work/predict.json"

start_server() {  # start_server LOG [flags...]: sets server_pid and port
  local log=$1
  shift
  # shellcheck disable=SC2086  # SERVE_LOAD_SERVE_FLAGS: words
  "$nnr" serve --model-dir "$work/served" --port 0 "$@" ${SERVE_LOAD_SERVE_FLAGS:-} 2>"$log" &
  server_pid=$!
  port=
  for _ in $(seq 200); do
    port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$log" | head -1)
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { echo "serve_load.sh: nnr serve did not start" >&2; cat "$log" >&2; exit 1; }
  curl -sf -H 'Content-Type: application/json' --data-binary @"$NNR_PREDICT_BODY" \
    "http://127.0.0.1:$port/v1/predict" >/dev/null
}
stop_server() {
  kill -TERM "$server_pid"
  wait "$server_pid" || { echo "serve_load.sh: nnr serve exited with $?" >&2; exit 1; }
  server_pid=
}
model_field() {  # model_field FIELD: one field of GET /v1/model
  curl -sf "http://127.0.0.1:$port/v1/model" | sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p"
  echo  # (the body has no final newline)
}
run_wrk() {  # run_wrk NAME
  wrk -t2 -c16 -d"${seconds}s" --latency -s bench/serve_load.lua "http://127.0.0.1:$port/v1/predict" \
    >"$work/wrk-$1.txt"
  curl -sf "http://127.0.0.1:$port/metrics" >"$work/metrics-$1.txt"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "serve_load.sh: $model, wrk -t2 -c16 -d${seconds}s per run, $(nproc) cores, load average $load_before" >&2
start_server "$work/serve-idle.log"
run_wrk idle
stop_server

start_server "$work/serve-batched.log" --max-batch 32 --max-wait-us 500
run_wrk batched
stop_server

start_server "$work/serve-feedback.log"
touch "$work/feeding"
python3 bench/serve_feeder.py "$port" "$work" every 2 &
feeder=$!
run_wrk feedback
rm -f "$work/feeding"
wait "$feeder"
rm -f "$work/retraining-samples.txt"
stop_server

start_server "$work/serve-retrain.log" --retrain-every 200 --max-regression 100
rounds_before=$(model_field rounds_run)
touch "$work/feeding"
python3 bench/serve_feeder.py "$port" "$work" rounds &
feeder=$!
for _ in $(seq 200); do [ "$(model_field retraining)" = true ] && break; sleep 0.05; done
: >"$work/retraining-samples.txt"  # the share of samples with a round running: over the window only
rounds_start=$(model_field rounds_run)
run_wrk retraining
rounds_end=$(model_field rounds_run)
rm -f "$work/feeding"
wait "$feeder"
version_end=$(model_field version)
stop_server

"$bench" --model-dir "$work/served" --body "$NNR_PREDICT_BODY" --seconds 5 >"$work/inprocess.json"

SERVE_LOAD_COMMAND="bash bench/serve_load.sh${*:+ $*} (SERVE_LOAD_SECONDS=$seconds${SERVE_LOAD_SERVE_FLAGS:+, SERVE_LOAD_SERVE_FLAGS=$SERVE_LOAD_SERVE_FLAGS})" \
  SERVE_LOAD_LOAD_BEFORE="$load_before" SERVE_LOAD_LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)" python3 - "$work" "$seconds" "$model" "$rounds_before" "$rounds_start" "$rounds_end" "$version_end" <<'PY'
import datetime, json, os, re, sys
work, seconds, model = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rounds_before, rounds_start, rounds_end, version_end = map(int, sys.argv[4:8])
def to_ms(v, unit):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]
def wrk(name):
    text = open(f"{work}/wrk-{name}.txt").read()
    lat = {p: to_ms(v, u) for p, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    metrics = open(f"{work}/metrics-{name}.txt").read()
    batches = re.search(r"^nnr_predict_batch_size_count (\d+)", metrics, re.M)
    inputs = re.search(r"^nnr_predict_batch_size_sum (\d+)", metrics, re.M)
    return {"requests": int(m.group(1)), "requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
            "p50_ms": lat["50"], "p90_ms": lat["90"], "p99_ms": lat["99"],
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(map(int, sock.groups())) if sock else 0,
            "mean_batch": int(inputs.group(1)) / max(1, int(batches.group(1))), "wrk_output": text}
runs = {name: wrk(name) for name in ("idle", "batched", "feedback", "retraining")}
samples = [l.strip() for l in open(f"{work}/retraining-samples.txt") if l.strip()]
busy = sum(s == "true" for s in samples) / max(1, len(samples))
runs["retraining"].update({"rounds_before_window": rounds_start, "rounds_after_window": rounds_end,
                           "rounds_in_window": rounds_end - rounds_start, "retraining_share_of_samples": busy,
                           "samples": len(samples), "version_after": version_end})
inproc = json.load(open(f"{work}/inprocess.json"))
idle, retr = runs["idle"], runs["retraining"]
failed = sum(r["non_2xx"] + r["socket_errors"] for r in runs.values())
targets = {
    "p99_retraining_over_idle": {"value": retr["p99_ms"] / idle["p99_ms"], "target": "<= 2", "met": retr["p99_ms"] <= 2 * idle["p99_ms"]},
    "failed_requests": {"value": failed, "target": "0", "met": failed == 0},
    "throughput_over_inprocess_forward": {"value": idle["requests_per_second"] / inproc["forward"]["calls_per_second"],
                                          "target": ">= 0.9", "met": idle["requests_per_second"] >= 0.9 * inproc["forward"]["calls_per_second"]},
}
# Not a target: HTTP throughput (server and wrk on the same cores) over one thread doing a request's
# own work in a loop (fast JSON parse + forward + answer), and that work's cost split.
inproc_ratios = {
    "http_over_inprocess_request": idle["requests_per_second"] / inproc["request"]["calls_per_second"],
    "inprocess_request_over_forward_p50": inproc["request"]["p50_us"] / inproc["forward"]["p50_us"],
    "inprocess_nlohmann_request_over_forward_p50": inproc["request_nlohmann"]["p50_us"] / inproc["forward"]["p50_us"],
    # What posting feedback and polling /v1/model cost predictions without any round: the part of
    # the retraining run's p99 that is not the rounds'.
    "p99_feedback_over_idle": runs["feedback"]["p99_ms"] / idle["p99_ms"],
}
print(f"\n{'run':<34}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'batch':>7}{'failed':>8}")
for name, r in runs.items():
    print(f"{'wrk ' + name:<34}{r['requests_per_second']:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['mean_batch']:>7.2f}{r['non_2xx'] + r['socket_errors']:>8}")
for mode in ("forward", "request", "request_nlohmann"):
    r = inproc[mode]
    print(f"{'in-process batch-1 ' + mode:<34}{r['calls_per_second']:>10.0f}{r['p50_us'] / 1e3:>9.3f}{r['p99_us'] / 1e3:>9.3f}")
print(f"\nretraining window: rounds {rounds_start} -> {rounds_end} ({rounds_end - rounds_start} in the window, "
      f"{rounds_before} before the feeder), a round running in {100 * busy:.0f} % of {len(samples)} samples of /v1/model")
print(f"\n{'ratio':<40}{'value':>8}  target")
for name, t in targets.items():
    print(f"{name:<40}{t['value']:>8.3f}  {t['target']:<6} {'met' if t['met'] else 'MISSED'}")
print(f"{'p99 feedback / idle':<40}{inproc_ratios['p99_feedback_over_idle']:>8.3f}  (not a target: feedback posted every 2 s, no round)")
print(f"{'batched / idle throughput':<40}{runs['batched']['requests_per_second'] / idle['requests_per_second']:>8.3f}")
print(f"{'http / in-process request throughput':<40}{inproc_ratios['http_over_inprocess_request']:>8.3f}  (not a target)")
print(f"{'in-process request / forward (p50)':<40}{inproc_ratios['inprocess_request_over_forward_p50']:>8.3f}"
      f"  (nlohmann instead of the fast JSON path: {inproc_ratios['inprocess_nlohmann_request_over_forward_p50']:.3f})")
load = {"before": os.environ["SERVE_LOAD_LOAD_BEFORE"], "after": os.environ["SERVE_LOAD_LOAD_AFTER"]}
print(f"load average (1, 5, 15 min): before {load['before']}, after {load['after']}")
out = {"date": datetime.date.today().isoformat(), "machine": "2-core dev machine", "cores": os.cpu_count(),
       "load_average": load, "command": os.environ["SERVE_LOAD_COMMAND"], "model": model,
       "wrk": f"wrk -t2 -c16 -d{seconds}s --latency -s bench/serve_load.lua (batch-1 POST /v1/predict)",
       "runs": runs, "in_process": inproc, "targets": targets, "not_targets": inproc_ratios}
os.makedirs("bench/results", exist_ok=True)
json.dump(out, open("bench/results/serve-load.json", "w"), indent=2)
print("wrote bench/results/serve-load.json")
PY
