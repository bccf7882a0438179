"""Run an ONNX graph as a torch module, so ONNX models get input gradients and stay on the device.

The converter covers the operators classifiers exported from PyTorch, Keras
and similar tools commonly use, and the ONNX-ML operators skl2onnx writes for
linear models, MLPs and preprocessing (Scaler, Normalizer, LinearClassifier,
ZipMap, OneHotEncoder over integers); only the branch that computes the
probabilities is converted. A graph with any other operator is not
converted, and the model keeps black-box access only. A converted graph is
used only after it has been checked against onnxruntime on a batch.
"""

from __future__ import annotations

import numpy as np


class UnsupportedGraph(Exception):
    """The graph uses an operator (or attribute) the converter does not implement."""


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pads_for(pads, spatial: int):
    """ONNX pads (begin..., end...) as F.pad's (last dim first: left, right, ...)."""
    begin, end = pads[:spatial], pads[spatial:]
    out = []
    for b, e in zip(reversed(begin), reversed(end)):
        out += [int(b), int(e)]
    return out


def _conv(t, x, w, b=None, attrs=None):
    F = t.nn.functional
    spatial = w.dim() - 2
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise UnsupportedGraph("Conv with auto_pad")
    pads = list(attrs.get("pads", [0] * 2 * spatial))
    strides = list(attrs.get("strides", [1] * spatial))
    dilations = list(attrs.get("dilations", [1] * spatial))
    group = int(attrs.get("group", 1))
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[spatial]
    if pads[:spatial] == pads[spatial:]:
        return conv(x, w, b, stride=strides, padding=pads[:spatial], dilation=dilations, groups=group)
    return conv(F.pad(x, _pads_for(pads, spatial)), w, b, stride=strides, dilation=dilations, groups=group)


def _pool(t, x, attrs, kind):
    F = t.nn.functional
    kernel = list(attrs["kernel_shape"])
    spatial = len(kernel)
    pads = list(attrs.get("pads", [0] * 2 * spatial))
    strides = list(attrs.get("strides", [1] * spatial))
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or attrs.get("ceil_mode", 0):
        raise UnsupportedGraph(f"{kind} with auto_pad or ceil_mode")
    if pads[:spatial] != pads[spatial:]:
        raise UnsupportedGraph(f"{kind} with asymmetric pads")
    if kind == "MaxPool":
        pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[spatial]
        return pool(x, kernel, strides, pads[:spatial], dilation=list(attrs.get("dilations", [1] * spatial)))
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[spatial]
    return pool(x, kernel, strides, pads[:spatial], count_include_pad=bool(attrs.get("count_include_pad", 0)))


def _axes(node_inputs, values, attrs):
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    if len(node_inputs) > 1 and node_inputs[1]:
        return [int(a) for a in values[1].tolist()]
    return None


# Long on purpose: one flat dispatch over ONNX operator types, a few lines per operator; split, it would only scatter the table.
def _run_node(t, node, values, attrs):
    F = t.nn.functional
    op = node.op_type
    x = values[0] if values else None
    if op == "Gemm":
        a, b = values[0], values[1]
        if attrs.get("transA", 0):
            a = a.t()
        if attrs.get("transB", 0):
            b = b.t()
        out = attrs.get("alpha", 1.0) * (a @ b)
        if len(values) > 2 and values[2] is not None:
            out = out + attrs.get("beta", 1.0) * values[2]
        return out
    if op == "MatMul":
        return t.matmul(values[0], values[1])
    if op in ("Add", "Sub", "Mul", "Div", "Pow"):
        return {"Add": t.add, "Sub": t.sub, "Mul": t.mul, "Div": t.div, "Pow": t.pow}[op](values[0], values[1])
    if op == "Relu":
        return F.relu(x)
    if op == "LeakyRelu":
        return F.leaky_relu(x, attrs.get("alpha", 0.01))
    if op == "Elu":
        return F.elu(x, attrs.get("alpha", 1.0))
    if op == "Sigmoid":
        return t.sigmoid(x)
    if op == "Tanh":
        return t.tanh(x)
    if op == "Erf":
        return t.erf(x)
    if op == "Sqrt":
        return t.sqrt(x)
    if op == "Exp":
        return t.exp(x)
    if op == "Neg":
        return -x
    if op == "Softplus":
        return F.softplus(x)
    if op == "Gelu":
        return F.gelu(x, approximate="tanh" if attrs.get("approximate", b"none") in (b"tanh", "tanh") else "none")
    if op in ("Softmax", "LogSoftmax"):
        axis = int(attrs.get("axis", -1))
        return t.softmax(x, axis) if op == "Softmax" else t.log_softmax(x, axis)
    if op == "Flatten":
        axis = int(attrs.get("axis", 1))
        return x.reshape(int(np.prod(x.shape[:axis])) if axis else 1, -1)
    if op == "Reshape":
        shape = [int(s) for s in values[1].tolist()]
        if not attrs.get("allowzero", 0):
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return x.reshape(shape)
    if op == "Transpose":
        perm = attrs.get("perm")
        return x.permute(*perm) if perm is not None else x.permute(*reversed(range(x.dim())))
    if op == "Concat":
        return t.cat(values, dim=int(attrs["axis"]))
    if op in ("Identity", "Dropout"):
        return x
    if op == "Cast":
        if int(attrs["to"]) not in _CAST_TYPES:
            raise UnsupportedGraph(f"Cast to ONNX type {attrs['to']}")
        return x.to(getattr(t, _CAST_TYPES[int(attrs["to"])]))
    if op == "Shape":
        return t.tensor(list(x.shape), dtype=t.int64, device=x.device)
    if op == "Gather":
        axis = int(attrs.get("axis", 0)) % x.dim()
        index = values[1].long()
        picked = t.index_select(x, axis, index.reshape(-1))
        return picked.reshape(tuple(x.shape[:axis]) + tuple(index.shape) + tuple(x.shape[axis + 1 :]))
    if op == "Unsqueeze":
        for axis in sorted(_axes(node.input, values, attrs)):
            x = x.unsqueeze(axis)
        return x
    if op == "Squeeze":
        axes = _axes(node.input, values, attrs)
        return x.squeeze() if axes is None else x.squeeze(tuple(axes))
    if op == "Clip":
        low = values[1] if len(values) > 1 and values[1] is not None else attrs.get("min")
        high = values[2] if len(values) > 2 and values[2] is not None else attrs.get("max")
        return t.clamp(x, low, high)
    if op == "ReduceSum":
        axes = _axes(node.input, values, attrs)
        if not axes:
            return x if attrs.get("noop_with_empty_axes", 0) else x.sum(keepdim=bool(attrs.get("keepdims", 1)), dim=tuple(range(x.dim())))
        return x.sum(dim=axes, keepdim=bool(attrs.get("keepdims", 1)))
    if op == "ReduceMean":
        axes = _axes(node.input, values, attrs)
        return x.mean(dim=axes, keepdim=bool(attrs.get("keepdims", 1))) if axes else x.mean()
    if op == "Conv":
        return _conv(t, values[0], values[1], values[2] if len(values) > 2 else None, attrs)
    if op in ("MaxPool", "AveragePool"):
        return _pool(t, x, attrs, op)
    if op == "GlobalAveragePool":
        return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)
    if op == "GlobalMaxPool":
        return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)
    if op == "BatchNormalization":
        scale, bias, mean, var = values[1:5]
        return F.batch_norm(x, mean, var, scale, bias, training=False, eps=attrs.get("epsilon", 1e-5))
    if op == "ArgMax":
        axis = int(attrs.get("axis", 0))
        if attrs.get("select_last_index", 0):
            raise UnsupportedGraph("ArgMax with select_last_index")
        return t.argmax(x, dim=axis, keepdim=bool(attrs.get("keepdims", 1)))
    if node.domain == "ai.onnx.ml":
        return _run_ml_node(t, op, x, attrs)
    raise UnsupportedGraph(f"operator {op}")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _run_ml_node(t, op, x, attrs):
    """The ONNX-ML operators scikit-learn pipelines use on their probability path (skl2onnx's output)."""
    if op == "Scaler":
        offset = t.as_tensor(list(attrs.get("offset", [0.0])), dtype=t.float32, device=x.device)
        scale = t.as_tensor(list(attrs.get("scale", [1.0])), dtype=t.float32, device=x.device)
        return (x.float() - offset) * scale
    if op == "Normalizer":
        norm = _text(attrs.get("norm", b"MAX"))
        x = x.float()
        if norm == "L1":
            return x / x.abs().sum(dim=1, keepdim=True)
        if norm == "L2":
            return x / x.pow(2).sum(dim=1, keepdim=True).sqrt()
        if norm == "MAX":
            return x / x.amax(dim=1, keepdim=True)
        raise UnsupportedGraph(f"Normalizer with norm {norm}")
    if op in ("LinearClassifier", "LinearRegressor"):
        intercepts = list(attrs.get("intercepts", []))
        coefficients = t.as_tensor(list(attrs["coefficients"]), dtype=t.float32, device=x.device)
        n_scores = len(intercepts) if intercepts else int(attrs.get("targets", 1))
        weight = coefficients.reshape(n_scores, -1)
        scores = x.float() @ weight.t()
        if intercepts:
            scores = scores + t.as_tensor(intercepts, dtype=t.float32, device=x.device)
        transform = _text(attrs.get("post_transform", b"NONE"))
        labels = attrs.get("classlabels_ints") or attrs.get("classlabels_strings") or []
        if op == "LinearClassifier" and n_scores == 1 and len(labels) == 2:
            # onnxruntime's binary case: one score for the positive class
            if transform == "LOGISTIC":
                positive = t.sigmoid(scores)
                return t.cat([1 - positive, positive], dim=1)
            if transform == "NONE":
                return t.cat([-scores, scores], dim=1)
            raise UnsupportedGraph(f"a one-score LinearClassifier with post_transform {transform}")
        if transform == "NONE":
            return scores
        if transform == "LOGISTIC":
            return t.sigmoid(scores)
        if transform == "SOFTMAX":
            return t.softmax(scores, dim=1)
        raise UnsupportedGraph(f"{op} with post_transform {transform}")
    if op == "ZipMap":
        # A map per row for the user; the same numbers as the tensor it reads.
        return x
    if op == "OneHotEncoder":
        categories = attrs.get("cats_int64s")
        if categories is None:
            raise UnsupportedGraph("OneHotEncoder over strings (its input is not a tensor torch can hold)")
        categories = t.as_tensor(list(categories), dtype=t.int64, device=x.device)
        return (x.long().unsqueeze(-1) == categories).float()
    raise UnsupportedGraph(f"operator ai.onnx.ml.{op}")


def probability_tensor(proto, output_name: str) -> str | None:
    """The tensor a ZipMap output (scikit-learn's list of {class: probability}) is made from, or None."""
    for node in proto.graph.node:
        if node.op_type == "ZipMap" and output_name in node.output:
            return node.input[0]
    return None


def _needed_nodes(graph, output_name: str, known: set[str]):
    """The nodes the output depends on, in graph order: a label branch (ArgMax, ArrayFeatureExtractor) is left out."""
    producers = {out: node for node in graph.node for out in node.output}
    needed, stack, seen = set(), [output_name], set()
    while stack:
        name = stack.pop()
        if name in seen or name in known:
            continue
        seen.add(name)
        node = producers.get(name)
        if node is None:
            continue
        needed.add(id(node))
        stack.extend(i for i in node.input if i)
    return [node for node in graph.node if id(node) in needed]


def convert(proto, input_name, output_name: str):
    """A torch.nn.Module computing ``output_name`` from ``input_name``; UnsupportedGraph if it cannot.

    ``input_name`` may also be a list of (name, first column, width, rank) for a
    graph with several inputs: the module then takes one row matrix and gives
    each input its block of columns (rank 1: a single column as a vector). A
    list of names makes a module taking one tensor per input, in that order
    (a text model's input_ids and attention_mask).
    """
    import onnx
    import onnx.numpy_helper
    import torch

    graph = proto.graph
    constants = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    nodes = []
    # Only what the output depends on is converted: scikit-learn graphs compute
    # their label on a branch of their own (ArgMax, ArrayFeatureExtractor).
    separate = not isinstance(input_name, str) and all(isinstance(i, str) for i in input_name)
    if isinstance(input_name, str) or separate:
        blocks = [(name, 0, None, None) for name in ([input_name] if isinstance(input_name, str) else input_name)]
    else:
        blocks = list(input_name)
    for node in _needed_nodes(graph, output_name, {name for name, *_ in blocks}):
        attrs = _attrs(node)
        if node.op_type == "Constant":
            if "value" not in attrs:
                raise UnsupportedGraph("Constant without a tensor value")
            constants[node.output[0]] = onnx.numpy_helper.to_array(attrs["value"])
            continue
        if node.domain not in ("", "ai.onnx", "ai.onnx.ml"):
            raise UnsupportedGraph(f"operator {node.domain}.{node.op_type}")
        nodes.append((node, attrs))
    # Unsupported operators surface here, before any module is built, not at the first real batch.
    unknown = sorted({n.op_type if n.domain != "ai.onnx.ml" else f"ai.onnx.ml.{n.op_type}" for n, _ in nodes}
                     - _SUPPORTED - {f"ai.onnx.ml.{op}" for op in _SUPPORTED_ML})
    if unknown:
        raise UnsupportedGraph(f"operator(s) {', '.join(unknown)}")

    width_of_first = blocks[0][2]
    weights = layer_weights([node for node, _ in nodes], constants)

    class OnnxGraphModule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.names = {}
            # The weights of each weighted node are the parameters of one child module, in
            # graph order, as a torch module's layers own theirs: code that walks a module's
            # parameterised layers (model randomisation) sees the same layers on both.
            # They never need gradients, so they ask for none.
            self.layers = torch.nn.ModuleList()
            owned = {}
            for slots in weights:
                layer = torch.nn.Module()
                for slot, name in slots.items():
                    tensor = torch.from_numpy(np.array(constants[name])).float()
                    layer.register_parameter(slot, torch.nn.Parameter(tensor, requires_grad=False))
                    owned[name] = (len(self.layers), slot)
                self.layers.append(layer)
            self.owned = owned
            for index, (name, array) in enumerate(constants.items()):
                if name in owned:
                    continue
                tensor = torch.from_numpy(np.array(array))
                if tensor.is_floating_point():
                    tensor = tensor.float()
                self.register_buffer(f"c{index}", tensor, persistent=False)
                self.names[name] = f"c{index}"

        def forward(self, x, *more):
            if width_of_first is None:
                env = dict(zip([name for name, *_ in blocks], (x, *more)))
            else:
                env = {name: x[:, start] if rank == 1 else x[:, start : start + width] for name, start, width, rank in blocks}
            for name, buffer in self.names.items():
                env[name] = getattr(self, buffer)
            for name, (index, slot) in self.owned.items():
                env[name] = getattr(self.layers[index], slot)
            for node, attrs in nodes:
                values = [env[i] if i else None for i in node.input]
                out = _run_node(torch, node, values, attrs)
                env[node.output[_RESULT_OUTPUT.get(node.op_type, 0)]] = out
            return env[output_name]

    return OnnxGraphModule().eval()


def layer_weights(nodes, constants) -> list[dict[str, str]]:
    """Per weighted node, in graph order: its float constant inputs by torch's names (weight, bias).

    Gemm and Conv take (weight, bias) as inputs 1 and 2; BatchNormalization its
    scale and shift (its running statistics stay buffers, as in torch); a MatMul
    its constant operand, with the constant of an Add right after it as its bias
    (how some exporters write a linear layer). A constant two nodes share belongs
    to the first.
    """
    def is_weight(name):
        return name in constants and np.asarray(constants[name]).dtype.kind == "f" and name not in taken

    consumers: dict[str, list] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    taken: set[str] = set()
    layers = []
    for node in nodes:
        slots = {}
        if node.op_type in ("Gemm", "Conv", "BatchNormalization"):
            slots = {slot: node.input[i] for slot, i in (("weight", 1), ("bias", 2)) if len(node.input) > i and is_weight(node.input[i])}
        elif node.op_type == "MatMul":
            constant = [name for name in node.input if is_weight(name)]
            if constant:
                slots["weight"] = constant[0]
                after = consumers.get(node.output[0], [])
                if len(after) == 1 and after[0].op_type == "Add":
                    bias = [name for name in after[0].input if is_weight(name)]
                    if bias:
                        slots["bias"] = bias[0]
        if slots:
            taken.update(slots.values())
            layers.append(slots)
    return layers


_CAST_TYPES = {1: "float32", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}

_SUPPORTED = {
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Pow", "Relu", "LeakyRelu", "Elu", "Sigmoid", "Tanh", "Erf", "Sqrt", "Exp",
    "Neg", "Softplus", "Gelu", "Softmax", "LogSoftmax", "Flatten", "Reshape", "Transpose", "Concat", "Identity", "Dropout",
    "Cast", "Shape", "Gather", "Unsqueeze", "Squeeze", "Clip", "ReduceMean", "ReduceSum", "Conv", "MaxPool", "AveragePool",
    "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "ArgMax",
}
# Operators with several outputs whose converted result is not the first: a
# LinearClassifier's outputs are (label, scores), and only the scores are computed.
_RESULT_OUTPUT = {"LinearClassifier": 1}
_SUPPORTED_ML = {"Scaler", "Normalizer", "LinearClassifier", "LinearRegressor", "ZipMap", "OneHotEncoder"}
