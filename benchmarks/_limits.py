"""The physical limit: best per-row time of a forward and of a forward + input-backward pass, over batch sizes."""

from __future__ import annotations

import time

import numpy as np

from ._setup import dataset, onnx_session, synchronise, torch_module

BATCHES = (16, 64, 256, 1024, 4096)


def _best(call, device: str, repeats: int) -> float:
    call()  # warm-up: allocator, TorchScript profiling runs, CUDA kernels
    call()
    best = float("inf")
    for _ in range(repeats):
        synchronise(device)
        start = time.perf_counter()
        call()
        synchronise(device)
        best = min(best, time.perf_counter() - start)
    return best


def measure(model: str, backend: str, device: str, threads: int, repeats: int = 7, batches=BATCHES) -> dict:
    """{"forward": seconds per row, "backward": seconds per row or None, "sweep": per batch size} for one model and backend."""
    x_all, y_all = dataset(model, max(batches))
    sweep = {}
    if backend == "onnx":
        session = onnx_session(model, threads, device)
        name = session.get_inputs()[0].name
        for b in batches:
            xb = np.ascontiguousarray(x_all[:b])
            sweep[b] = {"forward": _best(lambda: session.run(None, {name: xb}), "cpu", repeats) / b}
        return {"forward": min(v["forward"] for v in sweep.values()), "backward": None, "sweep": sweep}

    import torch

    module = torch_module(model, device)
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    # The fastest forward this model has: audit runs forward-only passes of a
    # TorchScript model on the CPU through a frozen, inference-optimised copy,
    # so the limit is the better of that copy and the module, or ours could
    # beat "the limit".
    inference = module
    if not str(device).startswith("cuda"):
        inference = torch.jit.optimize_for_inference(torch.jit.freeze(module.eval()))
    for b in batches:
        xb = torch.as_tensor(x_all[:b], device=device)
        yb = torch.as_tensor(y_all[:b], device=device)

        def forward(forward_module):
            def call():
                with torch.inference_mode():
                    return forward_module(xb)

            return call

        def forward_backward():
            xg = xb.detach().requires_grad_(True)
            picked = torch.log_softmax(module(xg), dim=1).gather(1, yb.view(-1, 1)).sum()
            return torch.autograd.grad(picked, xg)[0]

        candidates = (module,) if inference is module else (module, inference)
        sweep[b] = {"forward": min(_best(forward(m), device, repeats) for m in candidates) / b,
                    "backward": _best(forward_backward, device, repeats) / b}
    return {
        "forward": min(v["forward"] for v in sweep.values()),
        "backward": min(v["backward"] for v in sweep.values()),
        "sweep": sweep,
    }
