"""A served model directory and PyTorch, both ways, with the real torch and safetensors clients.

1. `nnr train --model-dir DIR` then `nnr retrain --model-dir DIR --data c1.csv`: DIR/2/model.safetensors
   loads with safetensors.torch.load_file into nn.Sequential(Linear(16, 64), ReLU, Linear(64, 64),
   ReLU, Linear(64, 10)) with load_state_dict(strict=True) (the file holds exactly the model's
   tensors: metadata may say more, tensors may not), and torch's softmax on test rows equals
   `nnr predict`'s probabilities within 1e-5, with the same argmax.
2. A torch model of that architecture, trained a few steps on chunk 0 and saved with
   safetensors.torch.save_file, is adopted by `nnr retrain --init ... --model-spec ... --memory-data`
   as version 1 (weights unchanged), retrained on chunk 1, and version 2 loads back into torch
   with strict=True and predicts in torch what it predicts in nnr.

Usage: served_model_torch_test.py NNR_BINARY. Exit 0 on success, 1 on failure, 77 (ctest
SKIP_RETURN_CODE) when torch, numpy or safetensors cannot be imported."""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
except ImportError as e:
    print(f"SKIPPED: {e}")
    sys.exit(77)

SPEC = "mlp:16-64-64-10"
TOLERANCE = 1e-5


class Failure(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Failure(what)
    print(f"ok: {what}")


def nnr(*args):
    run = subprocess.run([NNR, *args], capture_output=True, text=True)
    if run.returncode != 0:
        raise Failure(f"nnr {' '.join(args)} exited {run.returncode}:\n{run.stdout}{run.stderr}")
    return run


def torch_mlp():
    return torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 10))


def chunk(rows, seed, classes):
    """Ten well separated classes in 16-D (class c: feature c is 3, plus N(0, 0.3^2) noise), float32."""
    rng = np.random.default_rng(seed)
    y = np.array([classes[i % len(classes)] for i in range(rows)])
    x = (rng.normal(0.0, 0.3, (rows, 16)) + 3.0 * np.eye(16)[y]).astype(np.float32)
    return x, y


def write_csv(path, x, y=None):
    """Label in column 0 (when given), a header; repr() of a float32 value parses back to it exactly."""
    with open(path, "w") as f:
        if y is not None:
            f.write("label," + ",".join(f"f{j}" for j in range(16)) + "\n")
        for i, row in enumerate(x):
            cells = [repr(float(v)) for v in row]
            f.write(",".join(([str(int(y[i]))] if y is not None else []) + cells) + "\n")


def load_strict(path):
    """DIR/n/model.safetensors into a fresh torch model, strict=True; extra tensors are a bug."""
    tensors = load_file(path)
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
    expected = set(torch_mlp().state_dict())
    check(set(tensors) == expected,
          f"{os.path.relpath(path, TMP)} holds exactly the model's tensors {sorted(expected)} "
          f"(got {sorted(tensors)}; metadata keys {sorted(metadata)})")
    check(all(t.dtype == torch.float32 for t in tensors.values()), f"{os.path.relpath(path, TMP)}: float32 tensors")
    model = torch_mlp()
    model.load_state_dict(tensors, strict=True)
    print(f"ok: {os.path.relpath(path, TMP)} loads with load_state_dict(strict=True)")
    return model.eval(), tensors


def compare_predictions(model, model_file, x_csv, x, name):
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()
    out = os.path.join(TMP, "preds-" + name.replace("/", "-") + ".csv")
    nnr("predict", "--model", model_file, "--input", x_csv, "-o", out, "--threads", "1")
    with open(out) as f:
        header = f.readline().strip()
    check(header == "label," + ",".join(f"p{j}" for j in range(10)), f"{name}: predict's header is {header}")
    preds = np.loadtxt(out, delimiter=",", skiprows=1)
    check(preds.shape == (len(x), 11), f"{name}: predict wrote {len(x)} rows of label + 10 probabilities")
    err = float(np.abs(preds[:, 1:] - probs).max())
    check(err <= TOLERANCE, f"{name}: nnr predict's probabilities equal torch's softmax within {TOLERANCE} "
                            f"(max difference {err:.2e})")
    top2 = np.sort(probs, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > TOLERANCE  # rows whose argmax float rounding cannot flip
    same = preds[:, 0].astype(int) == probs.argmax(axis=1)
    check(bool(same[clear].all()), f"{name}: nnr's predicted labels equal torch's argmax "
                                   f"({int(same.sum())}/{len(x)} rows, {int((~clear).sum())} near-ties)")
    return probs


def main():
    x0, y0 = chunk(400, 11, [0, 1, 2, 3])
    x1, y1 = chunk(300, 12, [4, 5, 6])
    xt, _ = chunk(200, 13, list(range(10)))
    c0, c1, x_csv = (os.path.join(TMP, n) for n in ("c0.csv", "c1.csv", "x.csv"))
    write_csv(c0, x0, y0)
    write_csv(c1, x1, y1)
    write_csv(x_csv, xt)  # features only: what nnr predict reads

    # 1. nnr -> torch.
    d = os.path.join(TMP, "served")
    nnr("train", "--data", c0, "--model", SPEC, "--model-dir", d, "--optimizer", "sgd", "--lr", "0.03",
        "--lr-schedule", "constant", "--epochs", "2", "--batch-size", "16", "--seed", "1", "--threads", "1", "-q")
    nnr("retrain", "--model-dir", d, "--data", c1, "--threads", "1")
    check(os.path.isfile(os.path.join(d, "2", "VERSION")), "nnr train --model-dir + nnr retrain wrote served/2")
    model, _ = load_strict(os.path.join(d, "2", "model.safetensors"))
    probs = compare_predictions(model, os.path.join(d, "2", "model.safetensors"), x_csv, xt, "served/2")
    seen = np.isin(probs.argmax(axis=1), list(range(7)))
    check(bool(seen.mean() > 0.5), f"served/2 predicts seen classes 0-6 for most test rows ({seen.mean():.2f})")

    # 2. torch -> nnr -> torch.
    torch.manual_seed(3)
    trained = torch_mlp()
    optimizer = torch.optim.SGD(trained.parameters(), lr=0.05, momentum=0.9)
    xs, ys = torch.from_numpy(x0), torch.from_numpy(y0).long()
    for step in range(60):
        batch = torch.randint(0, len(xs), (32,))
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(trained(xs[batch]), ys[batch])
        loss.backward()
        optimizer.step()
    print(f"ok: torch model trained 60 steps on c0 (last loss {loss.item():.4f})")
    torch_file = os.path.join(TMP, "torch.safetensors")
    saved = {k: v.detach().clone().contiguous() for k, v in trained.state_dict().items()}
    save_file(saved, torch_file)

    d3 = os.path.join(TMP, "adopted")
    nnr("retrain", "--model-dir", d3, "--init", torch_file, "--model-spec", SPEC, "--memory-data", c0,
        "--threads", "1")
    check(os.path.isfile(os.path.join(d3, "1", "VERSION")), "nnr retrain --init adopted the torch model as adopted/1")
    _, v1 = load_strict(os.path.join(d3, "1", "model.safetensors"))
    check(all(torch.equal(v1[k], saved[k]) for k in saved), "adopted/1 holds the torch weights bit for bit")
    nnr("retrain", "--model-dir", d3, "--data", c1, "--threads", "1")
    check(os.path.isfile(os.path.join(d3, "2", "VERSION")), "nnr retrain on c1 wrote adopted/2")
    back, v2 = load_strict(os.path.join(d3, "2", "model.safetensors"))
    check(any(not torch.equal(v2[k], saved[k]) for k in saved), "adopted/2's weights differ from the torch model's")
    compare_predictions(back, os.path.join(d3, "2", "model.safetensors"), x_csv, xt, "adopted/2")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: served_model_torch_test.py NNR_BINARY")
    NNR = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="nnr-served-torch-") as TMP:
        try:
            main()
        except Failure as e:
            print(f"FAILED: {e}")
            sys.exit(1)
    print("served model directory <-> torch: ok")
