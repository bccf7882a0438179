"""PyTorch models: TorchScript files, torch.export archives, and (only if trusted) pickled modules."""

from __future__ import annotations

import contextlib
import zipfile
from pathlib import Path

import numpy as np

from audit.errors import AuditError, first_line
from audit.models.base import LoadOptions, Model, first_output, parse_device, threads_from_env

TORCH_SUFFIXES = {".pt", ".pth", ".pt2", ".ts", ".torchscript", ".jit"}


def resolve_torch_device(device: str) -> str:
    import torch

    device = parse_device(device)
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise AuditError(f"--device {device} asked for CUDA, but torch sees no CUDA device; use --device cpu or auto")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise AuditError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) present; use cuda:0 to cuda:{torch.cuda.device_count() - 1}"
            )
        return f"cuda:{index}"
    return "cpu"


class TorchModel(Model):
    """A torch.nn.Module (TorchScript, exported or trusted pickle) run on one device."""

    def __init__(self, module, *, path=None, format: str, input_shape=None, options: LoadOptions | None = None, n_classes=None):
        import torch

        options = options or LoadOptions()
        device = resolve_torch_device(options.device)
        threads = options.threads or threads_from_env("AUDIT_THREADS")
        if threads:
            # Oversubscribed CPU threads (another process, or a busy neighbour)
            # make OpenMP spin: pinning is often several times faster.
            torch.set_num_threads(threads)
        module = module.to(device)
        if format != "torch.export":  # exported programs are traced in eval mode already
            module.eval()
        for parameter in module.parameters():
            parameter.requires_grad_(False)
        self.module = module
        self.format = format
        self.provider = f"torch-{device}"
        super().__init__(
            path=path,
            input_shape=tuple(input_shape) if input_shape is not None else (),
            n_classes=n_classes,
            device=device,
            batch_size=options.batch_size,
            output=options.output,
        )
        self._torch = torch
        self._inference_module = None
        self._optimize = options.optimize
        self.inference_note = "the module as loaded"

    @property
    def capabilities(self) -> frozenset[str]:
        caps = {"predict", "gradients", "torch"}
        if self._supports_hooks():
            caps.add("activations")
        return frozenset(caps)

    def _supports_hooks(self) -> bool:
        return not isinstance(self.module, self._torch.jit.ScriptModule) and bool(self.layers())

    def prepare_for(self, sample: np.ndarray) -> None:
        """Build the inference copy of a TorchScript module and keep it only if it gives the module's outputs.

        ``torch.jit.optimize_for_inference`` freezes a clone (weights become
        constants), folds batch norms into convolutions and picks oneDNN
        kernels: the demo CNN's forward pass went from 9.5 to 5.3 us/row in
        batches of 1,024 on one CPU thread (7.5 to 3.5 at its best batch),
        with identical outputs. Gradient passes keep the module as
        loaded. Only on the CPU, where it was measured.
        """
        torch = self._torch
        if not self._optimize:
            self.inference_note = "the module as loaded (model.optimize = false)"
            return
        if self._inference_module is not None or self.device != "cpu" or not isinstance(self.module, torch.jit.ScriptModule):
            return
        try:
            optimised = torch.jit.optimize_for_inference(torch.jit.freeze(self.module.eval()))
            rows = torch.as_tensor(np.ascontiguousarray(sample[:64]), dtype=torch.float32)
            with torch.inference_mode():
                expected, got = first_output(self.module(rows)).double(), first_output(optimised(rows)).double()
                optimised(rows[:1])  # a second shape, so a failure on odd batch sizes shows here
        except Exception as error:  # noqa: BLE001 - any failure just keeps the module as loaded
            self.inference_note = f"the module as loaded (optimising it failed: {first_line(error, 120)})"
            return
        if got.shape != expected.shape:
            self.inference_note = "the module as loaded (its optimised copy gave outputs of another shape)"
            return
        finite = torch.isfinite(expected)  # rows with NaN inputs (allow_nan) must give NaN in both
        same_pattern = bool(torch.equal(finite, torch.isfinite(got)))
        difference = float((got - expected)[finite].abs().max()) if bool(finite.any()) else 0.0
        tolerance = 1e-5 * max(1.0, float(expected[finite].abs().max())) if bool(finite.any()) else 0.0
        if not same_pattern or difference > tolerance:
            self.inference_note = f"the module as loaded (its optimised copy differed by {difference:.2g})"
            return
        self._inference_module = optimised
        self.inference_note = f"frozen, inference-optimised TorchScript copy (max difference {difference:.2g} on the first rows)"

    def _module_for(self, x):
        """The optimised copy for passes that need no gradient, the module as loaded otherwise."""
        if self._inference_module is not None and not (x.requires_grad and self._torch.is_grad_enabled()):
            return self._inference_module
        return self.module

    def describe(self):
        info = super().describe()
        info["forward_passes"] = self.inference_note
        return info

    def _forward_numpy(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            xt = torch.from_numpy(x).to(self.device, non_blocking=True)
            out = first_output(self._module_for(xt)(xt))
        return out.float().cpu().numpy()

    def _release_memory(self) -> None:
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()

    def torch_module(self):
        return self.module

    def logits_torch(self, x):
        return self.logits_of(self._module_for(x), x)

    def layers(self) -> list[str]:
        if isinstance(self.module, self._torch.jit.ScriptModule):
            return []
        return [
            name
            for name, child in self.module.named_modules()
            if name and not name.startswith("_") and not list(child.children())
        ]

    def activations(self, x: np.ndarray, layers: list[str]) -> dict[str, np.ndarray]:
        if "activations" not in self.capabilities:
            raise AuditError("this PyTorch model does not allow forward hooks (TorchScript); export it to ONNX to probe layers")
        modules = dict(self.module.named_modules())
        missing = [layer for layer in layers if layer not in modules]
        if missing:
            raise AuditError(f"unknown layer(s) {', '.join(missing)}; layers are: {', '.join(self.layers())}")
        captured: dict[str, list] = {layer: [] for layer in layers}
        handles = []
        for layer in layers:
            def hook(_module, _inputs, output, layer=layer):
                out = output[0] if isinstance(output, (tuple, list)) else output
                captured[layer].append(out.detach().float().cpu().numpy())

            handles.append(modules[layer].register_forward_hook(hook))
        try:
            self.raw_outputs(x)
        finally:
            for handle in handles:
                handle.remove()
        return {layer: np.concatenate(parts, axis=0) for layer, parts in captured.items()}


def _is_zip(path: Path) -> bool:
    return zipfile.is_zipfile(path)


def load_torch(path: Path, options: LoadOptions) -> TorchModel:
    """Load a TorchScript file, a torch.export archive, or a trusted pickled module."""
    import torch

    if path.suffix == ".pt2":
        return _load_export_archive(torch, path, options)

    if not _is_zip(path):
        raise AuditError(f"{path}: not a PyTorch archive (expected a TorchScript file saved with torch.jit.save, or a .pt2 from torch.export.save)")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
        return TorchModel(module, path=path, format="torchscript", options=options)
    except RuntimeError as script_error:
        jit_message = first_line(script_error)
    # Not TorchScript: a pickle. Loading one runs arbitrary code from the file.
    if not options.trust_model_code:
        raise AuditError(
            f"{path}: a pickled PyTorch object, and loading it runs code from the file; "
            "export it with torch.jit.save or torch.export.save, or pass --trust-model-code if you trust its author"
        )
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    except (AttributeError, ModuleNotFoundError) as error:
        # A pickle names the module's class by import path; it must be importable where the audit runs.
        raise AuditError(f"{path}: the pickled module's class cannot be imported here ({first_line(error)}); put the folder of the "
                         "code that defines it on PYTHONPATH (a class defined in a script's __main__ must move to a module), "
                         "or export the model with torch.jit.save or torch.export.save") from None
    except Exception as error:  # noqa: BLE001
        raise AuditError(f"{path}: could not be loaded by PyTorch ({first_line(error)}; as TorchScript: {jit_message})") from None
    if isinstance(obj, dict):
        raise AuditError(f"{path}: holds only weights (a state_dict), not a model; save the module with torch.jit.save or torch.export.save")
    if not isinstance(obj, torch.nn.Module):
        raise AuditError(f"{path}: holds a {type(obj).__name__}, not a torch.nn.Module")
    return TorchModel(obj, path=path, format="torch-pickle", options=options)


def _load_export_archive(torch, path: Path, options: LoadOptions) -> TorchModel:
    """A torch.export archive, checked first so that nothing in it unpickles or runs unless the user trusts it."""
    from audit.models.pt2_guard import check_export_archive, weights_only_loads

    if options.trust_model_code:
        guard = contextlib.nullcontext()
    else:
        check_export_archive(path)
        guard = weights_only_loads()
    try:
        with guard:
            program = torch.export.load(str(path))
        module = program.module()
    except Exception as error:  # noqa: BLE001 - torch raises AssertionError, RuntimeError, KeyError... for a bad archive
        raise AuditError(f"{path}: not a readable torch.export archive ({type(error).__name__}: {first_line(error)}); save it with torch.export.save") from None
    shape = _export_input_shape(program)
    return TorchModel(module, path=path, format="torch.export", input_shape=shape, options=options)


def _export_input_shape(program) -> tuple:
    try:
        spec = [s for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"][0]
        value = program.graph.find_nodes(op="placeholder", target=spec.arg.name)[0].meta["val"]
        return tuple(int(d) if str(d).isdigit() else None for d in value.shape)[1:]
    except Exception:  # noqa: BLE001 - the shape is a nicety for validation, not required
        return ()
