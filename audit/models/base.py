"""The Model every analysis talks to: batched predictions, gradients, activations, pass counters."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from audit.errors import AuditError
from audit.toolkit import is_out_of_memory  # noqa: F401 - re-exported for the loaders

if TYPE_CHECKING:
    import torch

OutputKind = Literal["logits", "probabilities"]


@dataclass
class LoadOptions:
    """How to load a model: where it runs and how to read its outputs."""

    device: str = "auto"
    batch_size: int | None = None
    output: OutputKind | None = None  # None: detect from the first batch
    trust_model_code: bool = False
    threads: int | None = None  # None: the runtime's default (OMP_NUM_THREADS where set)
    onnx_gradients: bool = True  # run a verified torch conversion of ONNX graphs for gradients
    optimize: bool = True  # forward-only passes through a frozen, inference-optimised TorchScript copy, checked first
    tokenizer: str | None = None  # tokenizer.json of a text model (default: beside the model)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Counters:
    """Rows sent forward and backward through the model, and the seconds spent."""

    forward_rows: int = 0
    backward_rows: int = 0
    forward_seconds: float = 0.0
    backward_seconds: float = 0.0

    def snapshot(self) -> "Counters":
        return Counters(self.forward_rows, self.backward_rows, self.forward_seconds, self.backward_seconds)

    def since(self, start: "Counters") -> "Counters":
        return Counters(
            self.forward_rows - start.forward_rows,
            self.backward_rows - start.backward_rows,
            self.forward_seconds - start.forward_seconds,
            self.backward_seconds - start.backward_seconds,
        )


def parse_device(device: str | None) -> str:
    """Normalise `--device`: auto, cpu, cuda or cuda:N; anything else is an AuditError."""
    value = (device or "auto").strip().lower()
    if value in ("auto", "cpu", "cuda"):
        return value
    if value.startswith("cuda:") and value[5:].isdigit():
        return value
    raise AuditError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N (for example cuda:0)")


def threads_from_env(*names: str) -> int | None:
    """A positive thread count from the first of these environment variables that holds one."""
    import os

    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None




class Model:
    """A classifier behind one interface, whatever the runtime.

    Subclasses implement ``_forward_numpy`` (raw outputs for one batch) and,
    where the runtime allows, the torch hooks. Everything else, batching,
    out-of-memory retries, output normalisation and counting, lives here.
    """

    format: str = "unknown"
    provider: str = "unknown"
    gradient_reason: str | None = None  # why there are no input gradients, where there are none

    def __init__(
        self,
        *,
        path=None,
        input_shape: tuple,
        n_classes: int | None,
        device: str = "cpu",
        batch_size: int | None = None,
        output: OutputKind | None = None,
        input_dtype=np.float32,
    ):
        self.path = path
        self.input_shape = tuple(input_shape)
        self._n_classes = n_classes
        self.device = device
        self.input_dtype = np.dtype(input_dtype)
        self.output_kind: OutputKind | None = output
        self.output_detected = output is None
        self.batch_size_given = batch_size is not None
        self.row_shape = self.input_shape
        self.batch_size = batch_size or self._default_batch_size()
        self.counters = Counters()
        self.warnings: list[str] = []

    # -- what the runtime can do -------------------------------------------------
    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({"predict"})

    @property
    def n_classes(self) -> int:
        if self._n_classes is None:
            raise AuditError("the number of classes is not known until the model has run once")
        return self._n_classes

    def describe(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "provider": self.provider,
            "device": self.device,
            "input_shape": list(self.input_shape),
            "n_classes": self._n_classes,
            "output": self.output_kind,
            "batch_size": self.batch_size,
            "capabilities": sorted(self.capabilities),
        }

    def count(self, forward_rows: int = 0, backward_rows: int = 0, forward_seconds: float = 0.0, backward_seconds: float = 0.0) -> None:
        """Record passes made outside predict/logits_torch/input_gradient (a wrapped or copied module)."""
        self.counters.forward_rows += int(forward_rows)
        self.counters.backward_rows += int(backward_rows)
        self.counters.forward_seconds += float(forward_seconds)
        self.counters.backward_seconds += float(backward_seconds)

    def logits_of(self, module, x: "torch.Tensor") -> "torch.Tensor":
        """Logits of a torch module (this model's own, a randomised copy, a wrapper) read the way
        this model's outputs are read; counted, differentiable if ``x`` requires grad."""
        start = time.perf_counter()
        out = first_output(module(x))
        if out.dim() == 1:
            out = out.unsqueeze(1)
        if self.output_kind is None:
            self.output_kind = detect_output_kind(out.detach().float().cpu().numpy().reshape(len(x), -1))
        logits = torch_logits(out.float(), self.output_kind)
        if self._n_classes is None:
            self._n_classes = logits.shape[1]
        self.count(forward_rows=len(x), forward_seconds=time.perf_counter() - start)
        return logits

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        warnings.warn(message, stacklevel=3)

    # -- batched predictions -----------------------------------------------------
    def prepare_for(self, sample: np.ndarray) -> None:
        """Called once with real rows after validation; runtimes that need data to set up use it."""

    def fit_batch_size(self, row_shape: tuple) -> None:
        """Size the default batch from the data's rows when the model did not declare its input shape."""
        self.row_shape = tuple(row_shape)
        if not self.batch_size_given and not self.input_shape:
            self.batch_size = self._default_batch_size(tuple(row_shape))

    @property
    def gradient_batch_size(self) -> int:
        """Rows per forward + input-backward call.

        A backward pass keeps its forward pass's activations alive and writes
        as much again, so on a CPU the batch that fits the cache is smaller:
        on a 2-core Xeon (one thread) the demo CNN ran forward+backward at
        17.7 us/row in batches of 256, 18.1 at 1024 and 25 at 4096, and a
        10-step PGD over 5,000 rows took 0.95 s in batches of 256 against
        1.39 s at 1024. A batch the user chose is used as it is; on a GPU the
        out-of-memory halving sizes it.
        """
        if self.batch_size_given or self.device != "cpu" or len(self.row_shape) <= 1:
            return self.batch_size
        return max(1, self.batch_size // 4)

    def _default_batch_size(self, row_shape: tuple | None = None) -> int:
        shape = self.input_shape if row_shape is None else row_shape
        row_values = int(np.prod([d for d in shape if isinstance(d, int) and d > 0] or [1]))
        # About 32 MB of float32 input per batch: large enough to keep the
        # device busy, small enough for activations of a mid-sized CNN.
        size = max(1, (8 * 1024 * 1024) // max(row_values, 1))
        # On a CPU, large batches of images spill out of cache; measured on the
        # demo CNN, 256-1024 rows per call beat 4096 by 10-30%.
        # On a GPU small rows batch far larger before the device is busy; an
        # out-of-memory error halves the batch anyway.
        if self.device == "cpu":
            cap = 1024 if len(shape) > 1 else 4096
        else:
            cap = 65536 if len(shape) <= 1 else 4096
        return int(min(cap, 2 ** int(np.log2(size))))

    def _forward_numpy(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def raw_outputs(self, x: np.ndarray) -> np.ndarray:
        """The model's own outputs for all rows, batched, counted, OOM-safe."""
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        if len(x) == 0:
            raise AuditError("no rows to predict: the data set is empty")
        start = time.perf_counter()
        outputs = []
        i = 0
        while i < len(x):
            chunk = x[i : i + self.batch_size]
            try:
                out = self._forward_numpy(chunk)
            except Exception as error:  # noqa: BLE001 - retried only for out-of-memory
                if is_out_of_memory(error) and self.batch_size > 1:
                    self._release_memory()
                    self.batch_size = max(1, self.batch_size // 2)
                    self.warn(f"out of memory; batch size halved to {self.batch_size}")
                    continue
                raise
            outputs.append(np.asarray(out, dtype=np.float64).reshape(len(chunk), -1))
            i += len(chunk)
        self.counters.forward_rows += len(x)
        self.counters.forward_seconds += time.perf_counter() - start
        raw = np.concatenate(outputs, axis=0)
        self._settle_output_kind(raw)
        return raw

    def predict(self, x: np.ndarray, output: Literal["probabilities", "logits"] = "probabilities") -> np.ndarray:
        """Class probabilities (N, C), or logits with ``output="logits"``."""
        probabilities, logits = self.predict_both(x)
        return logits if output == "logits" else probabilities

    def predict_both(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and logits from one pass over ``x``."""
        return normalise_outputs(self.raw_outputs(x), self.output_kind)

    def _settle_output_kind(self, raw: np.ndarray) -> None:
        if self.output_kind is None:
            self.output_kind = detect_output_kind(raw)
        width = 2 if raw.shape[1] == 1 else raw.shape[1]
        if self._n_classes is None:
            self._n_classes = width

    def _release_memory(self) -> None:
        pass

    # -- white-box access (torch runtimes) --------------------------------------
    def torch_module(self) -> "torch.nn.Module":
        raise AuditError(f"a {self.format} model has no torch module; white-box analyses need a PyTorch model")

    def gradient(self, x: np.ndarray, target: np.ndarray, output: str = "logit") -> np.ndarray:
        """d output[target] / d x for each row, batched; see ``input_gradient``."""
        import torch

        target = np.asarray(target, dtype=np.int64)
        grads = []
        step = self.gradient_batch_size
        for i in range(0, len(x), step):
            xb = torch.as_tensor(np.ascontiguousarray(x[i : i + step]), dtype=torch.float32, device=self.device)
            tb = torch.as_tensor(target[i : i + step], device=self.device)
            _, grad = self.input_gradient(xb, tb, output=output)
            grads.append(grad.detach().cpu().numpy())
        return np.concatenate(grads, axis=0)

    def logits_torch(self, x: "torch.Tensor") -> "torch.Tensor":
        """Logits for a tensor already on the device, counted; differentiable if x requires grad."""
        raise AuditError(f"a {self.format} model cannot run torch tensors; white-box analyses need a PyTorch model")

    def input_gradient(self, x: "torch.Tensor", target: "torch.Tensor", output: str = "logit"):
        """Return (logits, d score/d x) for a device tensor, parameters untouched.

        ``output`` picks the score: ``logit``, ``probability`` or
        ``log_probability`` of class ``target`` per row (minus the latter is
        the cross-entropy loss an attack ascends).
        """
        import torch

        start = time.perf_counter()
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.logits_torch(x)
            if output == "logit":
                picked = logits.gather(1, target.view(-1, 1).long()).sum()
            elif output == "probability":
                picked = torch.softmax(logits, dim=1).gather(1, target.view(-1, 1).long()).sum()
            elif output == "log_probability":
                # The fused cross-entropy kernel: the same gradient as summing
                # log_softmax at the targets, with less memory traffic.
                picked = -torch.nn.functional.cross_entropy(logits, target.long(), reduction="sum")
            else:
                raise ValueError(f"unknown output {output!r}: use logit, probability or log_probability")
            (grad,) = torch.autograd.grad(picked, x)
        self.counters.backward_rows += len(x)
        self.counters.backward_seconds += time.perf_counter() - start
        return logits.detach(), grad

    def layers(self) -> list[str]:
        return []

    def activations(self, x: np.ndarray, layers: list[str]) -> dict[str, np.ndarray]:
        raise AuditError(f"a {self.format} model does not expose intermediate activations")


def first_output(out):
    """A module's output, or the first of the outputs it returns as a tuple or list."""
    return out[0] if isinstance(out, (tuple, list)) else out


def row_max(a: np.ndarray) -> np.ndarray:
    """Maximum of each row of a 2-D array.

    numpy reduces a short last axis one row at a time: for 14,000 x 2 scores
    ``a.max(axis=1)`` takes 400 us, a column-wise ``np.maximum`` 8 us.
    """
    if a.shape[1] > 32 or a.shape[1] == 0:
        return a.max(axis=1)
    result = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        np.maximum(result, a[:, j], out=result)
    return result


def row_sum(a: np.ndarray) -> np.ndarray:
    """Sum of each row of a 2-D float array, as a matrix-vector product (9 us against numpy's 178 for 14,000 x 2)."""
    return a @ np.ones(a.shape[1], dtype=a.dtype)


def detect_output_kind(raw: np.ndarray) -> OutputKind:
    """Probabilities if every row is a distribution (or one column in [0, 1]), else logits."""
    finite = raw[np.isfinite(raw).all(axis=1)]
    if len(finite) == 0:
        return "logits"
    in_unit = bool(((finite >= 0) & (finite <= 1)).all())
    if raw.shape[1] == 1:
        return "probabilities" if in_unit else "logits"
    sums_to_one = bool(np.allclose(row_sum(finite), 1.0, atol=1e-3))
    return "probabilities" if in_unit and sums_to_one else "logits"


def normalise_outputs(raw: np.ndarray, kind: OutputKind | None) -> tuple[np.ndarray, np.ndarray]:
    """Turn raw outputs into (probabilities, logits), both (N, C) with C >= 2.

    A single column is the positive class of a binary model: a sigmoid output
    p becomes [1 - p, p], a single logit z becomes logits [0, z] (so that
    softmax reproduces the sigmoid exactly).
    """
    raw = np.asarray(raw, dtype=np.float64)
    kind = kind or detect_output_kind(raw)
    if raw.shape[1] == 1:
        if kind == "probabilities":
            p = np.clip(raw[:, 0], 0.0, 1.0)
            probabilities = np.stack([1.0 - p, p], axis=1)
            with np.errstate(divide="ignore"):
                logits = np.log(np.clip(probabilities, 1e-300, None))
            return probabilities, logits
        logits = np.concatenate([np.zeros_like(raw), raw], axis=1)
    elif kind == "probabilities":
        probabilities = np.clip(raw, 0.0, None)
        probabilities = probabilities / np.clip(row_sum(probabilities), 1e-300, None)[:, None]
        logits = np.log(np.clip(probabilities, 1e-300, None))
        return probabilities, logits
    else:
        logits = raw
    exp = np.exp(logits - row_max(logits)[:, None])
    return exp / row_sum(exp)[:, None], logits


def torch_logits(raw: "torch.Tensor", kind: OutputKind | None) -> "torch.Tensor":
    """The torch counterpart of normalise_outputs' logits, differentiable."""
    import torch

    if raw.dim() == 1:
        raw = raw.unsqueeze(1)
    if raw.shape[1] == 1:
        if kind == "probabilities":
            p = raw.clamp(1e-12, 1 - 1e-12)
            return torch.cat([torch.log1p(-p), torch.log(p)], dim=1)
        return torch.cat([torch.zeros_like(raw), raw], dim=1)
    if kind == "probabilities":
        return torch.log(raw.clamp_min(1e-12))
    return raw
