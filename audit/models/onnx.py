"""ONNX models through onnxruntime, on CUDA when a session really gets it, on the CPU otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audit.errors import AuditError, first_line
from audit.models.base import LoadOptions, Model, parse_device, threads_from_env

_ONNX_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}
# Node types whose outputs are worth probing as "layers".
_LAYER_OPS = {"Gemm", "MatMul", "Relu", "Conv", "Tanh", "Sigmoid", "Gelu", "LeakyRelu", "Flatten", "GlobalAveragePool", "MaxPool", "AveragePool", "Add", "Elu", "Softplus"}

def hidden_layers(proto) -> list[str]:
    """Outputs of the graph's layer-like nodes that are not already graph outputs: what activations can read."""
    graph = proto.graph
    final = {o.name for o in graph.output}
    return [node.output[0] for node in graph.node if node.op_type in _LAYER_OPS and node.output and node.output[0] not in final]


def session_with_outputs(proto, layers: list[str], session_options, providers):
    """A second session on a copy of the graph that also outputs the named intermediate values."""
    import onnx
    import onnxruntime as ort

    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    existing = {o.name for o in copy.graph.output}
    for layer in layers:
        if layer not in existing:
            copy.graph.output.append(onnx.helper.make_empty_tensor_value_info(layer))
    return ort.InferenceSession(copy.SerializeToString(), sess_options=session_options, providers=providers)


def _providers_for(device: str):
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"], None
    index = int(device.split(":")[1]) if ":" in device else 0
    if "CUDAExecutionProvider" not in available or (device == "auto" and not _gpu_present()):
        if device == "auto":
            return ["CPUExecutionProvider"], None
        raise AuditError(
            f"--device {device}: this onnxruntime build has no CUDAExecutionProvider (install onnxruntime-gpu); use --device cpu or auto"
        )
    if hasattr(ort, "preload_dlls"):
        # CUDA and cuDNN often come as pip packages (nvidia-*, as torch installs
        # them) rather than system libraries; this finds them there.
        try:
            ort.preload_dlls(directory="")
        except Exception:  # noqa: BLE001 - the session below reports what is missing
            pass
    # TF32 matrix products change scores in the fourth decimal; an audit reports
    # the model's float32 behaviour, the same on the GPU as on the CPU.
    return [("CUDAExecutionProvider", {"device_id": index, "use_tf32": 0}), "CPUExecutionProvider"], index


def _gpu_present() -> bool:
    """Cheap check that a CUDA driver and device exist, so `auto` does not try (and log) in vain."""
    import ctypes
    import os

    if not any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")):
        return os.name == "nt"
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def _load_checked(path: Path):
    """The model's graph, refused unless the ONNX checker accepts it."""
    import onnx

    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
    except Exception as error:  # noqa: BLE001 - protobuf and checker raise many types
        raise AuditError(f"{path}: not a valid ONNX model ({first_line(error)}); re-export it with torch.onnx.export or skl2onnx") from None
    return proto


def _start_session(path: Path, proto, device: str, options: LoadOptions):
    """An InferenceSession on the device asked for, its SessionOptions, its providers in use, and the CUDA device index (None on the CPU).

    With --device auto a session that did not get CUDA runs on the CPU; with a CUDA device named, that is an error.
    """
    import onnxruntime as ort

    providers, cuda_index = _providers_for(device)
    session_options = ort.SessionOptions()
    session_options.log_severity_level = 3  # CUDA fall-back chatter is reported by us, once
    threads = options.threads or threads_from_env("AUDIT_THREADS", "OMP_NUM_THREADS")
    if threads:
        session_options.intra_op_num_threads = threads
        session_options.inter_op_num_threads = 1
    # onnxruntime logs a CUDA fall-back at error level; we check the providers
    # in use below and report the outcome ourselves, in one line.
    ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(proto.SerializeToString(), sess_options=session_options, providers=providers)
    except Exception as error:  # noqa: BLE001
        raise AuditError(f"{path}: onnxruntime could not load the model ({first_line(error)})") from None
    finally:
        ort.set_default_logger_severity(2)
    in_use = session.get_providers()
    if cuda_index is not None and "CUDAExecutionProvider" not in in_use:
        if device != "auto":
            raise AuditError(
                f"--device {device}: onnxruntime could not start CUDA here (missing CUDA/cuDNN libraries or no GPU); use --device cpu or auto"
            )
        cuda_index = None
    return session, session_options, in_use, cuda_index


def _read_input(path: Path, session):
    """The one input tensor's name and dtype, its fixed batch size (None when dynamic), and one row's shape (None per unknown axis)."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise AuditError(f"{path}: the model has {len(inputs)} inputs ({names}); audit supports models with one input tensor")
    input_name = inputs[0].name
    input_dtype = _ONNX_DTYPES.get(inputs[0].type)
    if input_dtype is None:
        raise AuditError(f"{path}: input {input_name!r} has type {inputs[0].type}; audit supports float and integer tensors")
    dims = list(inputs[0].shape)
    batch_dim = dims[0] if dims else None
    fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
    row_shape = tuple(d if isinstance(d, int) and d > 0 else None for d in dims[1:])
    return input_name, input_dtype, fixed_batch, row_shape


class OnnxModel(Model):
    """An ONNX graph in an onnxruntime InferenceSession."""

    format = "onnx"

    def __init__(self, path: Path, options: LoadOptions, proto=None):
        device = parse_device(options.device)
        proto = _load_checked(path) if proto is None else proto
        self.proto = proto
        session, session_options, in_use, cuda_index = _start_session(path, proto, device, options)
        self.session = session
        self._session_options = session_options
        self._providers = in_use
        self.provider = in_use[0]
        self.cuda_index = cuda_index
        resolved = f"cuda:{cuda_index}" if cuda_index is not None else "cpu"

        self.input_name, input_dtype, self.fixed_batch, row_shape = self._read_inputs(path, session)
        self.output_name, self.output_is_map, n_classes, self.label_output = self._pick_output(session)
        super().__init__(
            path=path,
            input_shape=row_shape,
            n_classes=n_classes,
            device=resolved,
            batch_size=options.batch_size,
            output=options.output or ("probabilities" if self.output_is_map else None),
            input_dtype=input_dtype,
        )
        self.feature_names = _feature_names(session, row_shape)
        if self.fixed_batch is not None:
            self.warn(
                f"{path.name}: the input has a fixed batch size of {self.fixed_batch}; rows are sent "
                f"{self.fixed_batch} at a time (re-export with a dynamic batch axis to run faster)"
            )
            self.batch_size = self.fixed_batch
        self._activation_session = None
        self._torch_module = None
        self._read_trees(proto)
        self._torch_tried = not options.onnx_gradients
        self.gradient_reason = None if options.onnx_gradients else "ONNX gradients turned off (model.gradients = false)"
        if not self._torch_tried and self.input_shape and all(isinstance(d, int) for d in self.input_shape):
            # A fully known input shape lets the conversion be checked now, on
            # seeded synthetic rows; otherwise the first real rows do it.
            self.prepare_for(np.random.default_rng(0).normal(size=(8, *self.input_shape)).astype(self.input_dtype))

    def _read_inputs(self, path: Path, session):
        """(input name, dtype, fixed batch or None, one row's shape): one input tensor here; MultiInputOnnxModel maps several."""
        return _read_input(path, session)

    def _pick_output(self, session):
        """Find the class-score output: a float tensor, or scikit-learn's probability map."""
        outputs = session.get_outputs()
        label = None
        candidates = []
        for out in outputs:
            if out.type.startswith("seq(map("):
                return out.name, True, None, label
            if out.type in ("tensor(float)", "tensor(double)", "tensor(float16)"):
                candidates.append(out)
            elif out.type.startswith("tensor(int") or out.type == "tensor(string)":
                label = out.name
        if not candidates:
            raise AuditError("the ONNX model has no float output with class scores")
        preferred = [c for c in candidates if "prob" in c.name.lower()] or candidates
        out = preferred[0]
        shape = list(out.shape)
        width = shape[-1] if shape and isinstance(shape[-1], int) else None
        n_classes = (2 if width == 1 else width) if width else None
        return out.name, False, n_classes, label

    # -- tree ensembles: exact TreeSHAP read from the graph's tree attributes ------------
    def _read_trees(self, proto) -> None:
        from audit.models.trees import UnsupportedTrees, find_tree_node, read_trees

        self.trees = None
        self.tree_op = None
        self.tree_summary = None
        self.trees_reason = "the graph has no TreeEnsembleClassifier or TreeEnsembleRegressor operator"
        self._tree_shap = None
        self._trees_checked = False
        tree_nodes = [n.op_type for n in proto.graph.node if n.domain == "ai.onnx.ml" and n.op_type.startswith("TreeEnsemble")]
        if not tree_nodes:
            return
        self.tree_op = tree_nodes[0]
        self.tree_summary = self.tree_op
        try:
            node = find_tree_node(proto)
            self.trees = read_trees(node)
            self.tree_summary = self.trees.describe()
            self.trees_reason = None
        except UnsupportedTrees as error:
            self.trees_reason = f"its trees cannot be explained exactly: {error}"
        except Exception as error:  # noqa: BLE001 - malformed attributes: black-box analyses still run
            self.trees_reason = f"its tree attributes could not be read ({type(error).__name__}: {first_line(error, 120)})"

    def tree_shap(self, reference: np.ndarray | None = None):
        """The TreeSHAP explainer of this model's trees, node covers counted on ``reference`` rows.

        The parsed trees are checked once against onnxruntime on the first 256
        reference rows (post-transform included); with no argument, the explainer
        last prepared is returned. AuditError when the model has no trees TreeSHAP reads.
        """
        from audit.models.trees import TreeShap

        if self.trees is None:
            raise AuditError(f"no TreeSHAP for this model: {self.trees_reason}")
        if reference is None:
            if self._tree_shap is None:
                raise AuditError("TreeSHAP has no reference rows yet: call tree_shap(reference) first")
            return self._tree_shap[1]
        import zlib

        reference = np.ascontiguousarray(reference, dtype=self.input_dtype)
        key = (reference.shape, zlib.crc32(reference.tobytes()))
        if self._tree_shap is not None and self._tree_shap[0] == key:
            return self._tree_shap[1]
        if not self._trees_checked:
            sample = reference[:256]
            expected = self.raw_outputs(sample)
            got = self.trees.outputs(self.trees.margins(sample))
            difference = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("inf")
            if not difference <= 1e-4 * max(1.0, float(np.max(np.abs(expected)))):
                self.trees = None
                self.trees_reason = f"the trees read from the graph disagree with onnxruntime (by {difference:.2g}) on the model's output"
                raise AuditError(f"no TreeSHAP for this model: {self.trees_reason}")
            self._trees_checked = True
        self._tree_shap = (key, TreeShap(self.trees, reference))
        return self._tree_shap[1]

    @property
    def capabilities(self) -> frozenset[str]:
        caps = {"predict"}
        if self.trees is not None:
            caps.add("trees")
        if self.layers():
            caps.add("activations")
        if self._torch_module is not None:
            caps |= {"gradients", "torch"}
        return frozenset(caps)

    # -- gradients through a verified torch conversion of the graph ---------------
    def prepare_for(self, sample: np.ndarray) -> None:
        if self._torch_tried:
            return
        self._torch_tried = True
        try:
            import torch

            from audit.models.onnx_torch import UnsupportedGraph, convert
        except ImportError:
            self.gradient_reason = "torch is not installed, so ONNX graphs cannot be differentiated"
            return
        if self.tree_op is not None:
            self.gradient_reason = (f"the model is a tree ensemble ({self.tree_summary}), piecewise constant: its input gradients are zero "
                                    "almost everywhere (black-box analyses and TreeSHAP apply)")
            return
        if self.input_dtype.kind != "f":
            self.gradient_reason = "the graph's input is not a float tensor"
            return
        target = self.output_name
        if self.output_is_map:
            from audit.models.onnx_torch import probability_tensor

            # scikit-learn's {class: probability} maps are made by ZipMap from a tensor.
            target = probability_tensor(self.proto, self.output_name)
            if target is None:
                self.gradient_reason = "the probability output is a map that no ZipMap operator makes from a tensor"
                return
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            self.gradient_reason = "onnxruntime runs on CUDA but torch sees no CUDA device"
            return
        try:
            module = self._convert_graph(convert, target).to(self.device)
        except UnsupportedGraph as error:
            self.gradient_reason = f"the graph uses {error}, which the ONNX-to-torch conversion does not cover"
            return
        sample = np.ascontiguousarray(sample[:64], dtype=self.input_dtype)
        try:
            expected = np.asarray(self._forward_numpy(sample), dtype=np.float64)
            with torch.inference_mode():
                got = module(torch.as_tensor(sample, device=self.device)).double().cpu().numpy().reshape(expected.shape)
        except Exception as error:  # noqa: BLE001 - any failure means no gradients, never a failed run
            self.gradient_reason = f"the converted graph did not run ({type(error).__name__}: {first_line(error, 120)})"
            return
        difference = float(np.max(np.abs(got - expected))) if expected.size else 0.0
        tolerance = 1e-4 * max(1.0, float(np.max(np.abs(expected))))
        if not np.isfinite(difference) or difference > tolerance:
            self.gradient_reason = f"the converted graph disagrees with onnxruntime by {difference:.2g} (tolerance {tolerance:.2g})"
            return
        self._torch_module = module
        self.conversion_difference = difference

    def _convert_graph(self, convert, target: str):
        """The graph from its input to ``target`` as a torch module taking this model's rows."""
        return convert(self.proto, self.input_name, target)

    def torch_module(self):
        if self._torch_module is None:
            return super().torch_module()
        return self._torch_module

    def logits_torch(self, x):
        if self._torch_module is None:
            return super().logits_torch(x)
        return self.logits_of(self._torch_module, x)

    def describe(self):
        info = super().describe()
        info["gradients"] = "torch conversion, checked against onnxruntime" if self._torch_module is not None else self.gradient_reason
        if self.tree_op is not None:
            info["trees"] = self.tree_summary
            info["tree_attributions"] = (f"exact path-dependent TreeSHAP of {self.trees.explained_space()}" if self.trees is not None
                                         else self.trees_reason)
        return info

    def _run(self, session, names, x):
        if self.fixed_batch is not None and len(x) < self.fixed_batch:
            # The last chunk of a fixed-batch model is padded, and the padding dropped.
            pad = np.zeros((self.fixed_batch - len(x), *x.shape[1:]), dtype=x.dtype)
            outs = session.run(names, self._feeds(np.concatenate([x, pad], axis=0)))
            return [o[: len(x)] for o in outs]
        return session.run(names, self._feeds(x))

    def _feeds(self, x: np.ndarray) -> dict:
        """The session's input feed for a batch of rows."""
        return {self.input_name: x}

    def _forward_numpy(self, x: np.ndarray) -> np.ndarray:
        (out,) = self._run(self.session, [self.output_name], x)
        if self.output_is_map:
            keys = sorted(out[0].keys())
            out = np.array([[row[k] for k in keys] for row in out], dtype=np.float64)
        out = np.asarray(out)
        return out.reshape(len(x), -1)

    def layers(self) -> list[str]:
        return hidden_layers(self.proto)

    def activations(self, x: np.ndarray, layers: list[str]) -> dict[str, np.ndarray]:
        """Run a second session whose graph also outputs the named intermediate values."""
        known = self.layers()
        missing = [layer for layer in layers if layer not in known]
        if missing:
            raise AuditError(f"unknown layer(s) {', '.join(missing)}; layers are: {', '.join(known)}")
        session = session_with_outputs(self.proto, layers, self._session_options, self._providers)
        results: dict[str, list] = {layer: [] for layer in layers}
        for i in range(0, len(x), self.batch_size):
            chunk = np.ascontiguousarray(x[i : i + self.batch_size], dtype=self.input_dtype)
            outs = self._run(session, layers, chunk)
            for layer, value in zip(layers, outs):
                results[layer].append(np.asarray(value, dtype=np.float32))
            self.counters.forward_rows += len(chunk)
        return {layer: np.concatenate(parts, axis=0) for layer, parts in results.items()}


def load_onnx(path: Path, options: LoadOptions) -> OnnxModel:
    """An OnnxModel; a graph with several inputs (skl2onnx's one tensor per column) is a MultiInputOnnxModel."""
    proto = _load_checked(path)
    initializers = {i.name for i in proto.graph.initializer}
    if sum(1 for i in proto.graph.input if i.name not in initializers) > 1:
        from audit.models.onnx_inputs import MultiInputOnnxModel

        return MultiInputOnnxModel(path, options, proto=proto)
    return OnnxModel(path, options, proto=proto)


def _feature_names(session, row_shape: tuple) -> list[str] | None:
    """Input column names from the model's metadata (`feature_names`: a JSON list or comma-separated), if they fit its width."""
    from audit.models.onnx_inputs import _metadata_names

    names = _metadata_names(session)
    if names is None:
        return None
    if len(row_shape) != 1 or (row_shape[0] is not None and row_shape[0] != len(names)):
        return None  # names that do not match a flat input of that width say nothing about which columns to use
    return names
