"""PyTorch eager peer of bench/train_step.cpp: the same training step (zero_grad, forward,
CrossEntropyLoss, backward, SGD momentum 0.9 / Adam) on one fixed batch of random inputs and
labels that lives on the device, --warmup untimed steps, then --steps timed in blocks of --block
with torch.cuda.synchronize() before each clock read. Prints one JSON line with the keys of
bench_train_step --json.

By default each step reads the loss back (loss.item()), as nnr's Tape::apply_loss does, which
waits for the forward pass; --no-loss-item leaves it on the device, so the host can queue the
next steps while the GPU works (PyTorch eager at its fastest). TF32 is off: nnr's cuBLAS GEMMs
are plain fp32.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_train_epoch import build  # noqa: E402  (the same spec parser as the epoch peer)


def input_shape(spec):
    kind, body = spec.split(":", 1)
    first = body.split(":")[0].split("-")[0]
    if kind == "mlp":
        return (int(first),)
    return tuple(int(v) for v in first.split("x"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mlp:784-256-256-10")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--block", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-loss-item", action="store_true", help="do not read the loss back each step")
    p.add_argument("--json", action="store_true", help="accepted for symmetry; output is always JSON")
    a = p.parse_args()
    a.block = min(a.block, a.steps)

    cuda = a.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print(f"torch_train_step: --device cuda: torch {torch.__version__} sees no CUDA device", file=sys.stderr)
        sys.exit(2)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(a.threads if a.threads > 0 else os.cpu_count())
    torch.manual_seed(a.seed)
    device = torch.device(a.device)

    model = build(a.model).to(device)
    classes = model(torch.zeros((1,) + input_shape(a.model), device=device)).shape[1]
    gen = torch.Generator().manual_seed(a.seed + 1)
    x = torch.randn((a.batch,) + input_shape(a.model), generator=gen).to(device)
    y = torch.randint(0, classes, (a.batch,), generator=gen).to(device)
    if a.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    loss_fn = nn.CrossEntropyLoss()
    read_loss = not a.no_loss_item

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item() if read_loss else loss

    def wait():
        if cuda:
            torch.cuda.synchronize()

    loss = None
    for _ in range(a.warmup):
        loss = step()
    wait()
    first_loss = float(loss) if loss is not None else float("nan")
    block_ms, total = [], 0.0
    done = 0
    while done < a.steps:
        n = min(a.block, a.steps - done)
        start = time.perf_counter()
        for _ in range(n):
            loss = step()
        wait()
        seconds = time.perf_counter() - start
        block_ms.append(1e3 * seconds / n)
        total += seconds
        done += n
    out = {"engine": "pytorch", "torch": torch.__version__, "model": a.model, "batch": a.batch,
           "device": a.device, "device_name": torch.cuda.get_device_name() if cuda else "cpu",
           "optimizer": a.optimizer, "lr": a.lr, "threads": a.threads, "warmup": a.warmup, "steps": a.steps,
           "block": a.block, "loss_item_per_step": read_loss,
           "ms_per_step_median": statistics.median(block_ms), "ms_per_step_mean": 1e3 * total / a.steps,
           "ms_per_step_min_block": min(block_ms), "loss_after_warmup": first_loss, "final_loss": float(loss),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if cuda:
        out["device_memory_mb"] = torch.cuda.max_memory_reserved() / (1024.0 * 1024.0)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
