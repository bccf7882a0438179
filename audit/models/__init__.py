"""Model loading: the `load_model` hook first, then the built-in ONNX and PyTorch loaders."""

from __future__ import annotations

from pathlib import Path

from audit.errors import AuditError
from audit.hookspecs import hookimpl
from audit.models.base import Counters, LoadOptions, Model, detect_output_kind, normalise_outputs, parse_device, torch_logits

__all__ = ["Counters", "LoadOptions", "Model", "detect_output_kind", "load", "normalise_outputs", "parse_device", "torch_logits"]


def load(path, options: LoadOptions | None = None, plugin_manager=None) -> Model:
    """Load the model at ``path`` through the plugin hooks; bad files raise AuditError."""
    options = options or LoadOptions()
    parse_device(options.device)
    path = Path(path)
    if not path.exists():
        raise AuditError(f"model file {path} does not exist; check the path")
    if path.is_dir():
        raise AuditError(f"model path {path} is a folder; give the model file (.onnx, .pt, .pt2)")
    if plugin_manager is None:
        from audit.plugins import get_plugin_manager

        plugin_manager = get_plugin_manager()
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


class BuiltinLoaders:
    """The default loaders, `trylast` so that a plugin can claim any format first."""

    @hookimpl(trylast=True)
    def load_model(self, path, options):
        suffix = Path(path).suffix.lower()
        if suffix == ".onnx":
            from audit.models.onnx import load_onnx

            return load_onnx(Path(path), options)
        from audit.models.torch import TORCH_SUFFIXES, load_torch

        if suffix in TORCH_SUFFIXES:
            return load_torch(Path(path), options)
        return None
