"""PyTorch peer of bench/train_epoch.cpp: the same model, data, batch size and optimizer,
one warm-up epoch then one timed epoch on the CPU. Prints one JSON line.
Run with Debian's /usr/bin/python3 (python3-torch)."""
import argparse
import gzip
import json
import resource
import time

import numpy as np
import torch
from torch import nn

DIR = "/usr/share/datasets/fashion-mnist"


def load_idx(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def build(spec):
    kind, body = spec.split(":", 1)
    items = body.split("-")
    layers = []
    if kind == "mlp":
        widths = [int(w) for w in items]
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            if i + 2 < len(widths):
                layers.append(nn.ReLU())
        return nn.Sequential(nn.Flatten(), *layers)
    c, h, w = (int(v) for v in items[0].split("x"))
    shape = torch.zeros(1, c, h, w)
    for item in items[1:-1]:
        if item[0] == "c":
            layers += [nn.Conv2d(shape.shape[1], int(item[1:]), 3, padding=1), nn.ReLU()]
        elif item[0] == "p":
            layers.append(nn.MaxPool2d(2))
        elif item[0] == "f":
            if shape.dim() > 2:
                layers.append(nn.Flatten())
                shape = nn.Flatten()(shape)
            layers += [nn.Linear(shape.shape[1], int(item[1:])), nn.ReLU()]
        shape = nn.Sequential(*layers)(torch.zeros(1, c, h, w))
    if shape.dim() > 2:
        layers.append(nn.Flatten())
        shape = nn.Flatten()(shape)
    layers.append(nn.Linear(shape.shape[1], int(items[-1])))
    return nn.Sequential(*layers)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mlp:784-256-256-10")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.01)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.from_numpy(load_idx(f"{DIR}/train-images-idx3-ubyte.gz", 16).astype(np.float32) / 255.0)
    x = x.reshape(-1, 1, 28, 28)
    y = torch.from_numpy(load_idx(f"{DIR}/train-labels-idx1-ubyte.gz", 8).astype(np.int64))
    model = build(a.model)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def epoch():
        perm = torch.randperm(x.shape[0])
        total = 0.0
        for s in range(0, x.shape[0], a.batch_size):
            idx = perm[s:s + a.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        return total / x.shape[0]

    epoch()
    start = time.perf_counter()
    loss = epoch()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"engine": "pytorch", "torch": torch.__version__, "model": a.model, "threads": a.threads,
                      "epoch_seconds": seconds, "final_loss": loss, "peak_rss_mb": peak}))


if __name__ == "__main__":
    main()
