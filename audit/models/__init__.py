"""Model loading: the `load_model` hooks of a plugin manager, or the built-in ONNX and PyTorch loaders."""

from __future__ import annotations

from pathlib import Path

from audit.errors import AuditError
from audit.models.base import Counters, LoadOptions, Model, detect_output_kind, normalise_outputs, parse_device, torch_logits

__all__ = ["Counters", "LoadOptions", "Model", "detect_output_kind", "load", "load_builtin", "normalise_outputs", "parse_device", "torch_logits"]


def load(path, options: LoadOptions | None = None, plugin_manager=None) -> Model:
    """Load the model at ``path``; bad files raise AuditError.

    With a ``plugin_manager``, its `load_model` hooks are asked first (the
    runner passes one); without, only the built-in ONNX and PyTorch loaders.
    """
    options = options or LoadOptions()
    parse_device(options.device)
    path = Path(path)
    if not path.exists():
        raise AuditError(f"model file {path} does not exist; check the path")
    if path.is_dir():
        raise AuditError(f"model path {path} is a folder; give the model file (.onnx, .pt, .pt2)")
    if plugin_manager is None:
        model = load_builtin(path, options)
    else:
        model = plugin_manager.hook.load_model(path=path, options=options)
    if model is None:
        raise AuditError(f"{path}: no loader for {path.suffix or 'files without a suffix'}; audit reads .onnx, TorchScript .pt/.pth "
                         f"and torch.export .pt2{_conversion_hint(path)}")
    return model


def _conversion_hint(path: Path) -> str:
    if path.suffix.lower() in (".joblib", ".pkl", ".pickle", ".sav"):
        # Unpickling would run code from the file; converting once, where the model was trained, does not.
        return (". A pickled scikit-learn model: convert it to ONNX with skl2onnx (skl2onnx.to_onnx(model, x[:1]), "
                "then audit the .onnx), or write a plugin whose load_model hook reads it (docs/plugins.md)")
    return ""


def load_builtin(path: Path, options: LoadOptions) -> Model | None:
    """The built-in loaders: ONNX Runtime for .onnx, torch for TorchScript and torch.export files; else None."""
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        from audit.models.onnx import load_onnx
        from audit.models.text import load_onnx_text

        return load_onnx_text(Path(path), options) or load_onnx(Path(path), options)
    from audit.models.torch import TORCH_SUFFIXES, load_torch

    if suffix in TORCH_SUFFIXES:
        from audit.models.text import wrap_torch_text

        model = load_torch(Path(path), options)
        return wrap_torch_text(Path(path), model, options) or model
    return None
