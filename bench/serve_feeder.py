"""The control traffic of bench/serve_load.sh's feedback and retraining runs, from one process over
one keep-alive connection: posting feedback bodies and polling GET /v1/model every 0.1 s, until the
file WORK/feeding is removed. Each poll appends /v1/model's "retraining" flag to
WORK/retraining-samples.txt.
  python3 bench/serve_feeder.py PORT WORK rounds   post 200 samples, poll until the round they
                                                   start has ended, post again (rounds back to back)
  python3 bench/serve_feeder.py PORT WORK every S  post every S seconds (the server retrains nothing)
One process instead of a curl and a sed per poll: spawning those 30 times a second cost the server's
predictions as much p99 as a retraining round did (bench/results/serve-load-harness.json)."""
import http.client
import json
import os
import sys
import time

port, work, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
period = float(sys.argv[4]) if mode == "every" else 0.0
feeding = os.path.join(work, "feeding")
bodies = [open(os.path.join(work, f"feedback-{k}.json"), "rb").read() for k in range(10)]
samples = open(os.path.join(work, "retraining-samples.txt"), "a")
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)


def call(method, path, body=None):
    headers = {"Content-Type": "application/json"} if body else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.status // 100 != 2:
        sys.exit(f"serve_feeder.py: {method} {path} answered {response.status}: {data[:200]!r}")
    return json.loads(data)


def model():
    m = call("GET", "/v1/model")
    samples.write(("true" if m["retraining"] else "false") + "\n")
    samples.flush()
    return m


k = 0
while os.path.exists(feeding):
    before = model()["rounds_run"]
    call("POST", "/v1/feedback", bodies[k % len(bodies)])
    k += 1
    posted = time.monotonic()
    while os.path.exists(feeding):
        time.sleep(0.1)
        m = model()
        if mode == "rounds" and m["rounds_run"] != before:
            break
        if mode == "every" and time.monotonic() - posted >= period:
            break
