"""Helpers for plugin authors' tests: tiny seeded models and data, and run_analysis()."""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.analysis import Analysis, Figure, Finding, Metric
from audit.data import Dataset
from audit.models.base import LoadOptions, Model


class Records(list):
    """What an analysis yielded, in order, with lookups by kind."""

    notes: list[str]
    status: str = "ok"
    reason: str | None = None

    @property
    def findings(self) -> list[Finding]:
        return [r for r in self if isinstance(r, Finding)]

    @property
    def metrics(self) -> list[Metric]:
        return [r for r in self if isinstance(r, Metric)]

    @property
    def figures(self) -> list[Figure]:
        return [r for r in self if isinstance(r, Figure)]

    def finding(self, check: str, subject: str | None = ...) -> Finding:
        """The one finding with this check (and subject, if given); KeyError if none."""
        matches = [f for f in self.findings if f.check == check and (subject is ... or f.subject == subject)]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} findings match check={check!r} subject={subject!r}: {[(f.check, f.subject) for f in self.findings]}")
        return matches[0]

    def metric(self, name: str, group: str | None = ..., subject: str | None = ...) -> Metric:
        matches = [
            m for m in self.metrics
            if m.name == name and (group is ... or m.group == group) and (subject is ... or m.subject == subject)
        ]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} metrics match name={name!r} group={group!r} subject={subject!r}")
        return matches[0]


def model_from_module(module, device: str = "cpu", output: str | None = None, input_shape=None, batch_size: int | None = None) -> Model:
    """Wrap an in-process torch.nn.Module as an audit Model (no file, nothing unpickled)."""
    from audit.models.torch import TorchModel

    options = LoadOptions(device=device, output=output, batch_size=batch_size)
    return TorchModel(module, format="torch", input_shape=input_shape, options=options)


def linear_model(weights, bias=None, device: str = "cpu") -> Model:
    """A linear classifier whose logits are x @ weights.T + bias; weights is (C, F)."""
    import torch

    weights = torch.as_tensor(np.asarray(weights, dtype=np.float32))
    layer = torch.nn.Linear(weights.shape[1], weights.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weights)
        layer.bias.copy_(torch.zeros(weights.shape[0]) if bias is None else torch.as_tensor(np.asarray(bias, dtype=np.float32)))
    return model_from_module(layer, device=device, input_shape=(weights.shape[1],))


def tiny_mlp(n_features: int = 4, n_classes: int = 2, hidden: int = 16, seed: int = 0, device: str = "cpu") -> Model:
    """A seeded, untrained two-layer MLP with named layers fc1, act1, fc2."""
    import torch

    torch.manual_seed(seed)
    module = torch.nn.Sequential()
    module.add_module("fc1", torch.nn.Linear(n_features, hidden))
    module.add_module("act1", torch.nn.ReLU())
    module.add_module("fc2", torch.nn.Linear(hidden, n_classes))
    return model_from_module(module, device=device, input_shape=(n_features,))


def tiny_cnn(channels: int = 1, size: int = 8, n_classes: int = 3, seed: int = 0, device: str = "cpu") -> Model:
    """A seeded, untrained small CNN for (N, channels, size, size) images."""
    import torch

    torch.manual_seed(seed)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(channels, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16, n_classes),
    )
    return model_from_module(module, device=device, input_shape=(channels, size, size))


def tiny_dataset(n: int = 64, n_features: int = 4, n_classes: int = 2, seed: int = 0, attributes: bool = True) -> Dataset:
    """Seeded Gaussian features, labels from a fixed linear rule, a binary 'group' attribute."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_features)).astype(np.float32)
    w = rng.normal(size=(n_features, n_classes))
    y = (x @ w).argmax(axis=1).astype(np.int64)
    attrs = {"group": np.where(rng.random(n) < 0.5, "a", "b")} if attributes else {}
    return Dataset(x=x, y=y, attributes=attrs, modality="tabular", feature_names=[f"f{i}" for i in range(n_features)], path="<tiny>")


def tiny_images(n: int = 32, channels: int = 1, size: int = 8, n_classes: int = 3, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.random((n, channels, size, size)).astype(np.float32)
    y = rng.integers(0, n_classes, size=n).astype(np.int64)
    return Dataset(x=x, y=y, modality="image", path="<tiny-images>")


def run_analysis(cls: type[Analysis], model: Model, data: Dataset, seed: int = 0, shared: dict | None = None, **options: Any) -> Records:
    """Run one analysis the way `audit run` does (shared clean pass, seeded rng); return its records.

    Requirements and ``skip_reason`` are applied as the runner applies them: a
    skipped analysis returns no records, with ``.status == "skipped"`` and the
    ``.reason``. Exceptions from ``run`` propagate, so a test shows the traceback.
    Pass the same ``shared`` dict to several calls to share work as one run does.
    """
    from audit.analysis import iter_records
    from audit.runner import make_context, unmet_requirement

    analysis = cls(options)
    ctx = make_context(model, data, seed=seed, analysis_name=cls.name, shared=shared)
    reason = unmet_requirement(cls, model, data) or analysis.skip_reason(ctx)
    if reason is not None:
        records = Records()
        records.status, records.reason, records.notes = "skipped", reason, []
        return records
    records = Records(iter_records(analysis.run(ctx)))
    records.status, records.reason, records.notes = "ok", None, list(ctx.notes)
    return records


def export_onnx(model_or_module, path, sample: np.ndarray, opset: int = 17):
    """Export a torch module (or a torch-backed audit Model) to ONNX with a dynamic batch axis."""
    import torch

    module = getattr(model_or_module, "module", model_or_module)
    example = torch.as_tensor(np.asarray(sample[:2], dtype=np.float32))
    torch.onnx.export(
        module.cpu() if hasattr(module, "cpu") else module,
        example,
        str(path),
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        opset_version=opset,
        dynamo=False,
    )
    return path


def load_onnx_model(path, device: str = "cpu", gradients: bool = True) -> Model:
    """Load an ONNX file as `audit run` would; ``gradients=False`` keeps it black-box only."""
    from audit.models import load

    return load(path, LoadOptions(device=device, onnx_gradients=gradients))
