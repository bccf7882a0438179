"""Models, data, thread pinning and pass counting shared by the benchmark workers."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def worker_env(threads: int) -> dict:
    """The environment of every timed process, peers' and ours alike.

    Thread pools pinned, and glibc's malloc thresholds fixed as `audit run`
    fixes them (audit/allocator.py): left adaptive, the same code ran 0.51 s
    in one fresh process and 0.88 s in the next (page faults), a coin toss
    that decided ratios. Fixed for everyone, the comparison is of the code.
    """
    from audit.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD

    env = dict(os.environ)
    for variable in THREAD_VARIABLES:
        env[variable] = str(threads)
    env["GLIBC_TUNABLES"] = f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD}:glibc.malloc.trim_threshold={TRIM_THRESHOLD}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def pin_threads(threads: int) -> None:
    """Same thread count for every implementation: OpenMP/MKL pools and torch's intra-op pool."""
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def synchronise(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def dataset(name: str, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The demo audit rows of ``name`` (digits or credit), tiled to ``rows``."""
    archive = np.load(DEMO / f"{name}.npz")
    x, y = archive["x"].astype(np.float32), archive["y"].astype(np.int64)
    repeats = -(-rows // len(x))
    return np.tile(x, (repeats,) + (1,) * (x.ndim - 1))[:rows], np.tile(y, repeats)[:rows]


def credit_module():
    """The credit MLP as a torch module, weights read from credit.onnx (Sub, Div, Gemm, ReLU, Gemm, ReLU, Gemm)."""
    import onnx
    import torch
    from onnx import numpy_helper

    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in onnx.load(str(DEMO / "credit.onnx")).graph.initializer}

    class CreditMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", weights["scale.mean"])
            self.register_buffer("std", weights["scale.std"])
            self.fc1 = torch.nn.Linear(6, 32)
            self.fc2 = torch.nn.Linear(32, 16)
            self.out = torch.nn.Linear(16, 2)
            with torch.no_grad():
                for layer in ("fc1", "fc2", "out"):
                    getattr(self, layer).weight.copy_(weights[f"{layer}.weight"])
                    getattr(self, layer).bias.copy_(weights[f"{layer}.bias"])

        def forward(self, x):
            h = torch.relu(self.fc1((x - self.mean) / self.std))
            return self.out(torch.relu(self.fc2(h)))

    return torch.jit.script(CreditMLP().eval())


def torch_module(name: str, device: str):
    """The demo model as a TorchScript module on ``device`` (what the peers get)."""
    import torch

    module = torch.jit.load(str(DEMO / "digits.pt"), map_location="cpu") if name == "digits" else credit_module()
    return module.to(device).eval()


def onnx_session(name: str, threads: int, device: str):
    """An onnxruntime session of the demo model with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # TF32 off, as audit's own loader does: otherwise GPU scores differ from the CPU's in the fourth decimal.
    cuda = ("CUDAExecutionProvider", {"use_tf32": 0})
    providers = [cuda, "CPUExecutionProvider"] if str(device).startswith("cuda") else ["CPUExecutionProvider"]
    return ort.InferenceSession(str(DEMO / f"{name}.onnx"), options, providers=providers)


def our_model(name: str, backend: str, device: str, threads: int, batch_size: int | None = None):
    """The audit Model: loaded from the demo file the way `audit run` loads it.

    The ONNX session is rebuilt with the pinned thread count (the loader takes
    onnxruntime's default, every core), so ours and the peers use the same
    threads. Batches are sized from the data's rows, as `audit run` does once
    the data is validated (TorchScript files declare no input shape), and
    ``prepare_for`` gets the first rows, as it does there.
    """
    from audit.models import load
    from audit.models.base import LoadOptions

    options = LoadOptions(device=device, batch_size=batch_size)
    if backend == "onnx":
        model = load(DEMO / f"{name}.onnx", options)
        model.session = onnx_session(name, threads, model.device)
    elif name == "digits":
        model = load(DEMO / "digits.pt", options)
    else:
        from audit.testing import model_from_module

        model = model_from_module(credit_module(), device=device, input_shape=(6,), batch_size=batch_size)
    sample = dataset(name, 64)[0]
    model.fit_batch_size(sample.shape[1:])
    model.prepare_for(sample)
    return model


class CountingModule:
    """Wraps a torch module for a peer: counts rows forward, and rows whose input needs a gradient."""

    def __new__(cls, inner):
        import torch

        class Counting(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = inner
                self.forward_rows = 0
                self.backward_rows = 0

            def forward(self, x):
                self.forward_rows += len(x)
                if torch.is_grad_enabled() and x.requires_grad:
                    self.backward_rows += len(x)
                return self.inner(x)

        return Counting().eval()


class CountingSession:
    """A numpy forward function over an onnxruntime session, counting rows (for black-box peers)."""

    def __init__(self, session, batch_size: int):
        self.session = session
        self.name = session.get_inputs()[0].name
        self.batch_size = batch_size
        self.forward_rows = 0
        self.backward_rows = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.forward_rows += len(x)
        parts = [self.session.run(None, {self.name: x[i : i + self.batch_size]})[0] for i in range(0, len(x), self.batch_size)]
        return np.concatenate(parts, axis=0)


def timed(function, device: str):
    synchronise(device)
    start = time.perf_counter()
    result = function()
    synchronise(device)
    return time.perf_counter() - start, result
