"""Interop of nnr checkpoints with the real Python safetensors client.

    interop_test.py python-writes --tool <nnr_checkpoint_interop>
        safetensors.numpy.save_file writes the reference model; nnr loads and checks it.
    interop_test.py nnr-writes --tool <nnr_checkpoint_interop>
        nnr writes the reference model; safetensors loads it here and checks names, shapes,
        dtypes, values bit for bit, the metadata and every nnr.crc32.* entry.

Exits 77 (ctest's SKIP_RETURN_CODE) when numpy or safetensors cannot be imported, so a machine
without them reports SKIPPED, never a pass.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import zlib

try:
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file
except ImportError as e:
    print(f"SKIPPED: {e} (run scripts/setup.sh to install safetensors into .pydeps)")
    sys.exit(77)

# Mirrors kReference in interop_tool.cpp: nn.Sequential(Linear(7, 5), ReLU(), Linear(5, 3)) + a conv.
REFERENCE = [("0.weight", (5, 7)), ("0.bias", (5,)), ("2.weight", (3, 5)), ("2.bias", (3,)),
             ("4.weight", (2, 1, 3, 3))]


def reference_tensor(k, shape):
    i = np.arange(int(np.prod(shape)), dtype=np.int64)
    return (((i * 7 + k * 13) % 101 - 50) / 64.0).astype(np.float32).reshape(shape)


def fail(message):
    print(f"FAILED: {message}")
    sys.exit(1)


def python_writes(tool, workdir):
    path = os.path.join(workdir, "from_python.safetensors")
    tensors = {name: reference_tensor(k, shape) for k, (name, shape) in enumerate(REFERENCE)}
    save_file(tensors, path, metadata={"format": "np"})
    result = subprocess.run([tool, "check", path], capture_output=True, text=True)
    print(result.stdout + result.stderr, end="")
    if result.returncode != 0:
        fail(f"nnr could not load the file Python wrote (exit {result.returncode})")


def nnr_writes(tool, workdir):
    path = os.path.join(workdir, "from_nnr.safetensors")
    result = subprocess.run([tool, "write", path], capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"nnr could not write {path}: {result.stdout}{result.stderr}")
    loaded = load_file(path)
    names = [name for name, _ in REFERENCE]
    if sorted(loaded) != sorted(names):
        fail(f"names {sorted(loaded)}, expected {sorted(names)}")
    for k, (name, shape) in enumerate(REFERENCE):
        t = loaded[name]
        if t.dtype != np.float32 or t.shape != shape:
            fail(f"{name}: {t.dtype} {t.shape}, expected float32 {shape}")
        if t.tobytes() != reference_tensor(k, shape).tobytes():
            fail(f"{name}: values differ from the reference")
    with safe_open(path, framework="np") as f:
        meta = f.metadata()
        if list(f.keys()) != sorted(names):
            fail(f"safe_open keys {list(f.keys())}")
    if meta.get("nnr.format_version") != "1" or meta.get("nnr.model_spec") != "mlp:7-5-3":
        fail(f"metadata {meta}")
    for name in names:
        crc = "%08x" % (zlib.crc32(loaded[name].tobytes()) & 0xFFFFFFFF)
        if meta.get("nnr.crc32." + name) != crc:
            fail(f"nnr.crc32.{name} is {meta.get('nnr.crc32.' + name)}, zlib says {crc}")
    print(f"Python loaded {len(loaded)} tensors and metadata from {path}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("direction", choices=["python-writes", "nnr-writes"])
    parser.add_argument("--tool", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nnr-interop-") as workdir:
        (python_writes if args.direction == "python-writes" else nnr_writes)(args.tool, workdir)


if __name__ == "__main__":
    main()
