"""A model written by the real Python client loads into nnr and predicts what numpy predicts.

Python writes the weights of an MLP (PyTorch nn.Sequential names, [out, in] layout) with
safetensors.numpy and computes the forward pass in numpy (float64); `nnr predict` loads the
file with --model-spec and predicts the same inputs. Probabilities must agree to 1e-5
(float32 arithmetic over 20-wide dot products is accurate to about 1e-6). Then `nnr train
--init` continues from the Python file, and Python reads nnr's output back.
Exit 77 (ctest SKIP_RETURN_CODE) when numpy or safetensors is missing."""
import subprocess
import sys
import tempfile

try:
    import numpy as np
    from safetensors.numpy import load_file, save_file
except ImportError as e:
    print(f"SKIPPED: {e}")
    sys.exit(77)

nnr = sys.argv[1]
rng = np.random.default_rng(7)
spec = "mlp:20-13-9-4"
widths = [20, 13, 9, 4]
weights = {}
for i in range(3):
    weights[f"{2 * i}.weight"] = rng.normal(0, 0.5, (widths[i + 1], widths[i])).astype(np.float32)
    weights[f"{2 * i}.bias"] = rng.normal(0, 0.1, widths[i + 1]).astype(np.float32)
x = rng.normal(0, 1, (37, 20)).astype(np.float32)

h = x.astype(np.float64)
for i in range(3):
    h = h @ weights[f"{2 * i}.weight"].T.astype(np.float64) + weights[f"{2 * i}.bias"]
    if i < 2:
        h = np.maximum(h, 0)
p = np.exp(h - h.max(axis=1, keepdims=True))
p /= p.sum(axis=1, keepdims=True)

with tempfile.TemporaryDirectory() as d:
    save_file(weights, f"{d}/py.safetensors")
    np.save(f"{d}/x.npy", x)
    run = subprocess.run([nnr, "predict", "--model", f"{d}/py.safetensors", "--model-spec", spec,
                          "--input", f"{d}/x.npy", "-o", f"{d}/preds.csv"], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"nnr predict failed: {run.stderr}")
    preds = np.loadtxt(f"{d}/preds.csv", delimiter=",", skiprows=1)
    assert preds.shape == (37, 5), preds.shape
    err = np.abs(preds[:, 1:] - p).max()
    assert err <= 1e-5, f"probabilities differ from numpy by {err}"
    assert (preds[:, 0].astype(int) == p.argmax(axis=1)).all(), "predicted labels differ"

    # Without --model-spec nnr refuses a file that records no spec, and says what to do.
    run = subprocess.run([nnr, "predict", "--model", f"{d}/py.safetensors", "--input", f"{d}/x.npy",
                          "-o", f"{d}/p2.csv"], capture_output=True, text=True)
    assert run.returncode == 2 and "give --model-spec" in run.stderr, run.stderr

    # nnr continues training from the Python weights; Python reads the result.
    y = p.argmax(axis=1)
    with open(f"{d}/train.csv", "w") as f:
        for row, label in zip(x, y):
            f.write(",".join([str(label)] + [repr(float(v)) for v in row]) + "\n")
    run = subprocess.run([nnr, "train", "--data", f"{d}/train.csv", "--init", f"{d}/py.safetensors",
                          "--model", spec, "--epochs", "1", "-q", "-o", f"{d}/nnr.safetensors"],
                         capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"nnr train --init failed: {run.stderr}")
    back = load_file(f"{d}/nnr.safetensors")
    assert sorted(back) == sorted(weights), sorted(back)
    for name, value in weights.items():
        assert back[name].shape == value.shape and back[name].dtype == np.float32, name
print("python model interop: ok")
