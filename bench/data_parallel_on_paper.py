#!/usr/bin/env python3
"""Data parallel on paper (issue #18): the all-reduce time of one step's gradients against the step
itself, for the benchmark models on H100/H200 NVLink and on 200 Gb/s InfiniBand, and the number of
GPUs at which a step becomes communication-bound, with every weight open and at a 25 % budget.

Model (ring all-reduce of S bytes over N GPUs, as NCCL's ring and Horovod do it):
    T_comm(N) = 2 (N - 1) / N * S / B  +  2 (N - 1) * a
with B the link bandwidth one way per GPU and a the latency of one ring hop. A fixed global batch
split over N GPUs (strong scaling, no overlap of communication with the backward pass) computes
for t1 / N, t1 the one-GPU step measured on an H200 (bench/results/gpu/README.md). The step is
communication-bound from the smallest N with T_comm(N) >= t1 / N. B and a are assumptions (the
links' nominal figures and a typical hop latency), not measurements: change them with the flags.
Prints a table and writes bench/results/data-parallel-on-paper.json.
    /usr/bin/python3 bench/data_parallel_on_paper.py [--nvlink-gbs 450] [--ib-gbs 25] ...
"""
import argparse, json, os

def mlp_parameters(widths):
    return sum(a * b + b for a, b in zip(widths, widths[1:]))

# Parameters: MLPs from their widths; the CNN cnn:1x28x28-c32-p-c64-p-f128-10 (3x3 convolutions,
# padding 1, two 2x2 pools): 1*32*9+32 + 32*64*9+64 + 64*7*7*128+128 + 128*10+10.
CNN_PARAMETERS = 1 * 32 * 9 + 32 + 32 * 64 * 9 + 64 + 64 * 7 * 7 * 128 + 128 + 128 * 10 + 10

# One-GPU step times measured on the H200 (bench/results/gpu/README.md, 2026-11-30).
MODELS = [
    {"model": "mlp:784-256-256-10", "batch": 128, "parameters": mlp_parameters([784, 256, 256, 10]),
     "t1_ms": 0.277, "t1_source": "bench/gpu_mlp_peers.sh, nnr eager step, median of 200"},
    {"model": "mlp:4096-4096-4096-10", "batch": 1024, "parameters": mlp_parameters([4096, 4096, 4096, 10]),
     "t1_ms": 3.985, "t1_source": "bench/gpu_mlp_peers.sh, nnr eager step, median of 200"},
    {"model": "cnn:1x28x28-c32-p-c64-p-f128-10", "batch": 128, "parameters": CNN_PARAMETERS,
     "t1_ms": 2310.0 / (5 * 469), "t1_source": "nnr train --device cuda, 5 epochs of 469 steps in 2.31 s "
                                               "(epoch time / steps: includes each batch's upload)"},
]

def comm_seconds(n, bytes_, bandwidth, hop_latency):
    if n <= 1:
        return 0.0
    return 2 * (n - 1) / n * bytes_ / bandwidth + 2 * (n - 1) * hop_latency

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nvlink-gbs", type=float, default=450.0,
                   help="NVLink 4 (H100/H200 SXM) GB/s one way per GPU: half its 900 GB/s total")
    p.add_argument("--nvlink-hop-us", type=float, default=2.0, help="latency of one ring hop over NVLink, µs")
    p.add_argument("--ib-gbs", type=float, default=25.0, help="200 Gb/s InfiniBand in GB/s one way")
    p.add_argument("--ib-hop-us", type=float, default=5.0, help="latency of one ring hop over InfiniBand, µs")
    p.add_argument("--out", default="bench/results/data-parallel-on-paper.json")
    a = p.parse_args()
    links = {"nvlink": (a.nvlink_gbs * 1e9, a.nvlink_hop_us * 1e-6), "ib200": (a.ib_gbs * 1e9, a.ib_hop_us * 1e-6)}
    rows = []
    for m in MODELS:
        for budget in (1.0, 0.25):
            # float32 gradients of the open entries, and the loss (one double).
            bytes_ = int(round(m["parameters"] * budget)) * 4 + 8
            t1 = m["t1_ms"] * 1e-3
            row = {"model": m["model"], "batch": m["batch"], "parameters": m["parameters"], "budget": budget,
                   "bytes": bytes_, "t1_ms": m["t1_ms"], "t1_source": m["t1_source"]}
            for link, (bandwidth, hop) in links.items():
                row[f"{link}_allreduce_ms_8_gpus"] = 1e3 * comm_seconds(8, bytes_, bandwidth, hop)
                row[f"{link}_allreduce_share_of_step_2_gpus"] = comm_seconds(2, bytes_, bandwidth, hop) / (t1 / 2)
                bound = next((n for n in range(2, 4097) if comm_seconds(n, bytes_, bandwidth, hop) >= t1 / n), None)
                row[f"{link}_communication_bound_from_gpus"] = bound
            rows.append(row)
    result = {"command": "/usr/bin/python3 bench/data_parallel_on_paper.py", "formula":
              "T_comm(N) = 2 (N-1)/N * S/B + 2 (N-1) * a; communication-bound from the smallest N with "
              "T_comm(N) >= t1/N (fixed global batch, no overlap)",
              "assumptions": {"nvlink_GBps_one_way": a.nvlink_gbs, "nvlink_hop_us": a.nvlink_hop_us,
                              "ib_GBps_one_way": a.ib_gbs, "ib_hop_us": a.ib_hop_us},
              "note": "t1 measured on one H200; B and a are the links' nominal figures and typical hop latencies, "
                      "not measured; at a 25 % budget t1 is kept at the full step's (the selective GPU step is "
                      "not measured yet), which makes its bound an early estimate",
              "rows": rows}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"{'model':<34}{'budget':>7}{'MB':>8}{'t1 ms':>8}{'NVLink 8 GPUs ms':>18}{'bound at':>9}"
          f"{'IB 8 GPUs ms':>14}{'bound at':>9}")
    for r in rows:
        print(f"{r['model']:<34}{r['budget']:>7.2f}{r['bytes'] / 1e6:>8.2f}{r['t1_ms']:>8.3f}"
              f"{r['nvlink_allreduce_ms_8_gpus']:>18.3f}{str(r['nvlink_communication_bound_from_gpus']):>9}"
              f"{r['ib200_allreduce_ms_8_gpus']:>14.3f}{str(r['ib200_communication_bound_from_gpus']):>9}")
    print(f"wrote {a.out}")

if __name__ == "__main__":
    main()
