"""ONNX graphs with several inputs, as skl2onnx writes mixed tables: one tensor per column (or block of columns), mapped by name.

The rows an analysis sees stay one float32 matrix, one column per data column in
the graph's input order. A string input's column holds category codes (indices
into the data's sorted categories, which the dataset binds to the model); the
strings are looked up only when a batch is fed to onnxruntime. A code that is
not a whole number in range means an analysis perturbed a categorical column as
a number: that is refused, never rounded to some other category.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audit.errors import AuditError
from audit.models.base import LoadOptions
from audit.models.onnx import _ONNX_DTYPES, OnnxModel


@dataclass
class InputBlock:
    """One graph input and the data columns it reads: ``width`` columns of ``x`` from ``start``."""

    name: str
    kind: str  # float | int | string
    dtype: np.dtype  # what onnxruntime is fed (object for strings)
    columns: list[str]
    start: int
    rank: int  # 1: a vector per batch, 2: (rows, width)

    @property
    def width(self) -> int:
        return len(self.columns)

    def describe(self) -> str:
        """The mapping as the report shows it: ``size: string [batch, 1] <- column size``."""
        onnx_type = "string" if self.kind == "string" else str(np.dtype(self.dtype))
        shape = "[batch]" if self.rank == 1 else f"[batch, {self.width}]"
        columns = f"column {self.columns[0]}" if self.width == 1 else f"columns {', '.join(self.columns)}"
        return f"{self.name}: {onnx_type} {shape} <- {columns}"


def _metadata_names(session) -> list[str] | None:
    import json

    text = session.get_modelmeta().custom_metadata_map.get("feature_names")
    if not text:
        return None
    try:
        names = json.loads(text) if text.lstrip().startswith("[") else text.split(",")
    except ValueError:
        return None
    return [str(n).strip() for n in names if str(n).strip()] or None


def read_blocks(path: Path, session) -> list[InputBlock]:
    """The graph's inputs as column blocks, in graph order.

    A [batch, 1] or [batch] input reads the column of its own name. A wider
    input reads the columns the model's ``feature_names`` metadata lists for it
    (one flat list over all inputs), else NAME_0 .. NAME_{k-1}.
    """
    inputs = session.get_inputs()
    shapes = []
    for item in inputs:
        if item.type == "tensor(string)":
            kind, dtype = "string", np.dtype(object)
        elif item.type in _ONNX_DTYPES:
            dtype = np.dtype(_ONNX_DTYPES[item.type])
            kind = "float" if dtype.kind == "f" else "int"
        else:
            raise AuditError(f"{path}: input {item.name!r} has type {item.type}; audit feeds float, integer and string tensors")
        dims = list(item.shape)
        if len(dims) not in (1, 2):
            raise AuditError(f"{path}: input {item.name!r} has {len(dims)} axes; a model with several inputs must take "
                             "(rows,) or (rows, columns) tensors, one per column or block of columns of a table")
        width = dims[1] if len(dims) == 2 and isinstance(dims[1], int) and dims[1] > 0 else 1
        shapes.append((item.name, kind, dtype, width, len(dims)))
    total = sum(width for _, _, _, width, _ in shapes)
    metadata = _metadata_names(session)
    named = metadata if metadata is not None and len(metadata) == total else None
    blocks, start = [], 0
    for name, kind, dtype, width, rank in shapes:
        if named is not None:
            columns = named[start : start + width]
        else:
            columns = [name] if width == 1 else [f"{name}_{i}" for i in range(width)]
        blocks.append(InputBlock(name, kind, dtype, columns, start, rank))
        start += width
    duplicated = sorted({c for b in blocks for c in b.columns if sum(c in o.columns for o in blocks) > 1})
    if duplicated:
        raise AuditError(f"{path}: inputs name the column(s) {', '.join(duplicated)} twice; give each input its own columns")
    return blocks


class MultiInputOnnxModel(OnnxModel):
    """An ONNX graph with several input tensors, fed from one row matrix whose columns are mapped to the inputs by name."""

    def _read_inputs(self, path: Path, session):
        self.blocks = read_blocks(path, session)
        self._categories: dict[str, np.ndarray] = {}
        dims = [list(i.shape) for i in session.get_inputs()]
        batch = dims[0][0] if dims and dims[0] else None
        fixed_batch = batch if isinstance(batch, int) and batch > 0 else None
        width = sum(b.width for b in self.blocks)
        return self.blocks[0].name, np.float32, fixed_batch, (width,)

    def __init__(self, path: Path, options: LoadOptions, proto=None):
        super().__init__(path, options, proto=proto)
        self.feature_names = [c for b in self.blocks for c in b.columns]

    # -- what the data must provide -------------------------------------------------------
    @property
    def string_features(self) -> list[str]:
        """Data columns the graph reads as strings: categorical columns, coded in ``x``."""
        return [c for b in self.blocks if b.kind == "string" for c in b.columns]

    @property
    def integer_features(self) -> list[str]:
        return [c for b in self.blocks if b.kind == "int" for c in b.columns]

    def bind_categories(self, categories: dict[str, list[str]]) -> None:
        """The category behind each code of each string column (the dataset's; codes index these lists)."""
        missing = [c for c in self.string_features if c not in categories]
        if missing:
            raise AuditError(f"{self.path}: the model reads {', '.join(missing)} as strings, but the data has no categorical "
                             "column of that name; give a CSV or Parquet table with those columns as text")
        self._categories = {c: np.asarray(list(categories[c]), dtype=object) for c in self.string_features}

    def _read_trees(self, proto) -> None:
        super()._read_trees(proto)
        if self.tree_op is not None and self.trees is not None:
            self.trees = None
            self.trees_reason = (f"its trees read one of the model's {len(self.blocks)} inputs, not the table's columns in order; "
                                 "TreeSHAP reads trees over a single input tensor")

    # -- feeding onnxruntime --------------------------------------------------------------
    def _decode(self, column: str, codes: np.ndarray) -> np.ndarray:
        categories = self._categories.get(column)
        if categories is None:
            raise AuditError(f"{self.path}: the model reads {column!r} as strings, and no categories are bound to it; "
                             "load the data through audit.data.load and validate_against_model")
        index = codes.astype(np.int64)
        bad = (index != codes) | (index < 0) | (index >= len(categories))
        if bad.any():
            value = codes[bad][0]
            raise AuditError(f"categorical column {column!r} got the value {value:g}, not the code of one of its {len(categories)} "
                             "categories: an analysis perturbed it as a number (categorical columns must only be swapped)")
        return categories[index]

    def _feeds(self, x: np.ndarray) -> dict:
        feeds = {}
        for block in self.blocks:
            part = x[:, block.start : block.start + block.width]
            if block.kind == "string":
                value = np.empty(part.shape, dtype=object)
                for j, column in enumerate(block.columns):
                    value[:, j] = self._decode(column, part[:, j])
            elif block.kind == "int":
                # Integer inputs (counts, years) take the nearest whole number: noise on them stays on the grid.
                value = np.rint(part).astype(block.dtype)
            else:
                value = np.ascontiguousarray(part, dtype=block.dtype)
            feeds[block.name] = value[:, 0] if block.rank == 1 else value
        return feeds

    # -- gradients: only when every input is a float tensor -------------------------------
    def prepare_for(self, sample: np.ndarray) -> None:
        if self._torch_tried:
            return
        strings = [b.name for b in self.blocks if b.kind == "string"]
        integers = [b.name for b in self.blocks if b.kind == "int"]
        if strings or integers:
            self._torch_tried = True
            self.gradient_reason = (
                f"the graph has string input(s) {', '.join(strings)}: categorical columns are not differentiable "
                "(ONNX-ML's OneHotEncoder over strings has no gradient), so gradient analyses do not run; black-box analyses "
                "perturb its numeric columns only" if strings else
                f"the graph has integer input(s) {', '.join(integers)}, which have no gradient"
            )
            return
        super().prepare_for(sample)

    def _convert_graph(self, convert, target: str):
        return convert(self.proto, [(b.name, b.start, b.width, b.rank) for b in self.blocks], target)

    def describe(self):
        info = super().describe()
        info["input_columns"] = [b.describe() for b in self.blocks]
        if self.string_features:
            info["categorical_columns"] = list(self.string_features)
        return info
