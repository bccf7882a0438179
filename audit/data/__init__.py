"""Evaluation data: the Dataset type, the NPZ, CSV, Parquet and image-folder loaders, validation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from audit.errors import AuditError, first_line

Modality = Literal["tabular", "image", "tensor", "text"]


@dataclass
class DataOptions:
    """How to read the data: which columns are what, sampling, image preprocessing."""

    label: str | None = None
    text: str | None = None  # the column of strings a text model reads
    attributes: list[str] = field(default_factory=list)
    features: list[str] | None = None
    sample: int | None = None
    allow_nan: bool = False
    modality: Modality | None = None
    class_names: list[str] | None = None
    attributes_file: str | None = None  # image folders: CSV keyed by file name
    image_size: list[int] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    grayscale: bool = False
    # NPZ: every 1-D array of one value per row is a protected attribute (the behaviour before 0.1.0's
    # release); off, only names from --attribute, config or the archive's own `attributes` array are.
    attributes_from_arrays: bool = False
    # NPZ: refuse an archive whose arrays inflate past this, before decompressing anything.
    max_inflated_mb: int = 1024


@dataclass
class Dataset:
    """Inputs ``x``, optional labels ``y``, protected attributes, and where they came from.

    ``attribute_features`` maps an attribute that is also a model input to its
    column in ``x``, which is what counterfactual analyses vary.
    """

    x: np.ndarray
    y: np.ndarray | None = None
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    modality: Modality = "tabular"
    class_names: list[str] | None = None
    feature_names: list[str] | None = None
    attribute_features: dict[str, int] = field(default_factory=dict)
    path: str | None = None
    sha256: str | None = None
    feature_source: str | None = None  # tables: what chose the feature columns
    ignored_columns: list[str] = field(default_factory=list)  # tables: columns neither feature, label nor attribute
    # tables: categorical (string) feature -> its categories; its column of x holds codes, indices into that list
    categories: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.x)

    @property
    def has_labels(self) -> bool:
        return self.y is not None

    @property
    def categorical_columns(self) -> list[int]:
        """Indices of the columns of ``x`` that hold category codes: they may be swapped for other codes, never shifted."""
        if not self.categories or not self.feature_names:
            return []
        return [j for j, name in enumerate(self.feature_names) if name in self.categories]

    @property
    def numeric_columns(self) -> list[int]:
        """Indices of the columns of a table's ``x`` that hold numbers (every column where none is categorical)."""
        skip = set(self.categorical_columns)
        return [j for j in range(self.x.shape[1]) if j not in skip] if self.x.ndim == 2 else []

    def keep_categorical(self, perturbed: np.ndarray, original: np.ndarray) -> np.ndarray:
        """``perturbed`` with its categorical columns put back from ``original``: noise, attacks and masks move numbers only."""
        columns = self.categorical_columns
        if not columns:
            return perturbed
        out = np.array(perturbed, dtype=np.float32, copy=True)
        out[:, columns] = np.broadcast_to(np.asarray(original, dtype=np.float32), out.shape)[:, columns]
        return out

    def subset(self, index: np.ndarray) -> "Dataset":
        return replace(
            self,
            x=self.x[index],
            y=None if self.y is None else self.y[index],
            attributes={k: v[index] for k, v in self.attributes.items()},
        )

    def describe(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "rows": len(self),
            "shape": list(self.x.shape[1:]),
            "modality": self.modality,
            "labels": self.has_labels,
            "attributes": sorted(self.attributes),
            "attribute_features": dict(self.attribute_features),
            "class_names": self.class_names,
            "features": list(self.feature_names) if self.feature_names and self.modality == "tabular" else None,
            "feature_source": self.feature_source,
            "ignored_columns": list(self.ignored_columns),
            **({"categorical_columns": {name: len(values) for name, values in self.categories.items()}} if self.categories else {}),
        }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(path)).encode())
            digest.update(file.read_bytes())
        return digest.hexdigest()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load(path, options: DataOptions | None = None, seed: int = 0, model_features: list[str] | None = None,
         string_features: list[str] | None = None) -> Dataset:
    """Read a data set from ``path`` (NPZ, CSV, Parquet or an image folder).

    ``model_features``: the model's input column names, if it declares them; a table's other columns are ignored.
    ``string_features``: those of them the model reads as strings (categorical columns, coded in ``x``).
    """
    options = options or DataOptions()
    path = Path(path)
    if not path.exists():
        raise AuditError(f"data file {path} does not exist; check the --data path")
    suffix = path.suffix.lower()
    if path.is_dir():
        from audit.data.images import load_image_folder

        dataset = load_image_folder(path, options)
    elif options.text is not None or suffix in (".jsonl", ".ndjson"):
        from audit.data.text import load_text

        dataset = load_text(path, options)
    elif suffix == ".npz":
        dataset = load_npz(path, options)
    elif suffix in (".csv", ".tsv", ".parquet", ".pq"):
        from audit.data.tabular import load_table

        dataset = load_table(path, options, model_features=model_features, string_features=string_features)
    else:
        raise AuditError(f"{path}: unknown data format {suffix or '(no suffix)'}; use .npz, .csv, .parquet, .jsonl (text) or a folder of images")
    dataset.path = str(path)
    dataset.sha256 = sha256_of(path)
    if options.modality:
        dataset.modality = options.modality
    if options.class_names:
        dataset.class_names = list(options.class_names)
    if len(dataset) == 0:
        raise AuditError(f"{path}: the data set has no rows")
    check_values(dataset, options)
    if options.sample is not None:
        if options.sample <= 0:
            raise AuditError(f"--sample {options.sample}: give a positive number of rows")
        if options.sample < len(dataset):
            rng = np.random.default_rng(seed)
            index = np.sort(rng.choice(len(dataset), size=options.sample, replace=False))
            dataset = dataset.subset(index)
    return dataset


def load_npz(path: Path, options: DataOptions) -> Dataset:
    _check_npz_sizes(path, options.max_inflated_mb)
    try:
        archive = np.load(path, allow_pickle=False)
        arrays = {key: archive[key] for key in archive.files}
    except Exception as error:  # noqa: BLE001 - zip and format errors come in many types
        raise AuditError(f"{path}: not a readable .npz archive ({first_line(error, 120)})") from None
    if "x" not in arrays:
        raise AuditError(f"{path}: no array named 'x' (found: {', '.join(sorted(arrays)) or 'none'}); save inputs as x=..., labels as y=...")
    x = arrays.pop("x")
    if x.ndim < 2:
        raise AuditError(f"{path}: 'x' has shape {x.shape}; expected (rows, features) or (rows, channels, height, width)")
    if np.iscomplexobj(x):
        raise AuditError(f"{path}: 'x' holds complex numbers ({x.dtype}); models take real inputs: save the real part, "
                         "or the real and imaginary parts as separate features")
    if not np.issubdtype(x.dtype, np.number):
        raise AuditError(f"{path}: 'x' has dtype {x.dtype}; model inputs must be numeric")
    n = len(x)
    y = arrays.pop("y", None)
    if y is not None:
        y = _labels(np.asarray(y), n, path)
    feature_names = [str(f) for f in arrays.pop("feature_names")] if "feature_names" in arrays else None
    class_names = [str(c) for c in arrays.pop("class_names")] if "class_names" in arrays else None
    declared = [str(a) for a in arrays.pop("attributes").reshape(-1)] if "attributes" in arrays else []
    per_row = {key: value for key, value in arrays.items() if value.ndim == 1 and len(value) == n}
    if options.attributes:
        wanted = list(options.attributes)
    elif declared:
        wanted = declared
    elif options.attributes_from_arrays:
        wanted = list(per_row)
    else:
        wanted = []
    unknown = [a for a in wanted if a not in per_row]
    if unknown:
        raise AuditError(f"{path}: no attribute array {', '.join(unknown)} with one value per row "
                         f"(arrays with one value per row: {', '.join(sorted(per_row)) or 'none'})")
    attributes = {a: _attribute_values(per_row[a]) for a in wanted}
    modality: Modality = "tabular" if x.ndim == 2 else "image" if x.ndim in (3, 4) else "tensor"
    attribute_features = {}
    if feature_names and modality == "tabular":
        attribute_features = {a: feature_names.index(a) for a in attributes if a in feature_names}
    return Dataset(
        x=x.astype(np.float32, copy=False),
        y=y,
        attributes=attributes,
        modality=modality,
        class_names=class_names,
        feature_names=feature_names,
        attribute_features=attribute_features,
    )


def _attribute_values(values: np.ndarray) -> np.ndarray:
    """Text attributes as str, a blank value named "missing"; numbers as they are (NaN is a missing number)."""
    if values.dtype.kind in "USO":
        text = values.astype(str)
        return np.where(np.char.strip(text) == "", "missing", text)
    return values


def _check_npz_sizes(path: Path, max_inflated_mb: int) -> None:
    """Refuse a zip bomb from the sizes the archive declares, before anything is decompressed.

    zipfile stops reading a member at its declared size, and each .npy header's shape must fit in that size,
    so these checks bound what np.load can allocate.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            inflated = sum(info.file_size for info in members)
            if inflated > max_inflated_mb * 2**20:
                raise AuditError(
                    f"{path}: its arrays inflate to {inflated / 2**20:,.0f} MB from {path.stat().st_size / 2**20:,.1f} MB on disk, "
                    f"over the {max_inflated_mb:,} MB limit; if the data is really that large, raise it with "
                    f"--set data.max_inflated_mb={int(inflated / 2**20) + 1}"
                )
            for info in members:
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                if dtype.hasobject:
                    continue  # np.load refuses object arrays itself (allow_pickle=False)
                if int(np.prod(shape, dtype=np.float64)) * dtype.itemsize > info.file_size:
                    raise AuditError(f"{path}: array {info.filename} declares shape {shape} of {dtype}, more than the "
                                     f"{info.file_size:,} bytes the archive holds for it; the file is corrupt or crafted")
    except AuditError:
        raise
    except Exception as error:  # noqa: BLE001 - zip and header errors come in many types
        raise AuditError(f"{path}: not a readable .npz archive ({first_line(error, 120)})") from None


def _labels(y: np.ndarray, n: int, path) -> np.ndarray:
    if y.ndim != 1 or len(y) != n:
        raise AuditError(f"{path}: labels 'y' have shape {y.shape}; expected one label per row ({n},)")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise AuditError(f"{path}: labels 'y' must be whole class indices, found non-integer values")
    elif y.dtype.kind not in "iub":
        raise AuditError(f"{path}: labels 'y' have dtype {y.dtype}; expected class indices 0..C-1")
    return y.astype(np.int64)


def check_values(dataset: Dataset, options: DataOptions) -> None:
    if dataset.modality == "text":
        return
    bad = ~np.isfinite(dataset.x)
    count = int(bad.sum())
    if count and not options.allow_nan:
        rows = int(bad.reshape(len(dataset.x), -1).any(axis=1).sum())
        raise AuditError(
            f"{dataset.path}: {count} NaN or infinite value(s) in the inputs, in {rows} row(s); "
            "clean the data, or set allow_nan = true under [data] if the model handles them"
        )


def bind_model(dataset: Dataset, model) -> None:
    """Give a model with string inputs the data's categories, which its codes in ``x`` index (every process that runs it)."""
    strings = list(getattr(model, "string_features", None) or [])
    if not strings:
        return
    if dataset.modality != "tabular" or not dataset.categories:
        raise AuditError(f"{dataset.path}: the model reads {', '.join(strings)} as strings (categorical columns); give a CSV or "
                         "Parquet table with those columns, named as the model's inputs")
    names = list(dataset.feature_names or [])
    model_names = list(getattr(model, "feature_names", None) or [])
    if names != model_names and len(names) == len(model_names):
        # --features named the model's inputs by position
        categories = {m: dataset.categories[n] for n, m in zip(names, model_names) if n in dataset.categories}
    else:
        categories = dataset.categories
    model.bind_categories(categories)


def validate_against_model(dataset: Dataset, model) -> None:
    """Check shapes and labels against the model; a probe on two rows catches the rest."""
    from audit.data.text import check_model_matches

    check_model_matches(dataset, model)
    bind_model(dataset, model)
    row_shape = tuple(dataset.x.shape[1:])
    expected = tuple(model.input_shape)
    if expected and (len(expected) != len(row_shape) or any(e is not None and e != r for e, r in zip(expected, row_shape))):
        shown = "(" + ", ".join("?" if e is None else str(e) for e in expected) + ")"
        raise AuditError(f"{dataset.path}: rows have shape {row_shape} but the model expects {shown}; pick the right features or model")
    model.fit_batch_size(row_shape)
    before = model.counters.snapshot()
    try:
        model.raw_outputs(dataset.x[:2])
    except AuditError:
        raise
    except Exception as error:  # noqa: BLE001 - runtimes raise their own types on bad shapes
        raise AuditError(f"{dataset.path}: the model rejected rows of shape {row_shape} ({first_line(error, 160)}); "
                         "check the features match the model's input") from None
    finally:
        # The probe is validation, not analysis work: keep the counters honest.
        model.counters = before
    model.prepare_for(dataset.x[:64])
    if dataset.y is not None:
        n_classes = model.n_classes
        low, high = int(dataset.y.min()), int(dataset.y.max())
        if low < 0 or high >= n_classes:
            raise AuditError(f"{dataset.path}: labels range over {low}..{high} but the model has {n_classes} classes (0..{n_classes - 1})")
    if dataset.class_names and len(dataset.class_names) != model.n_classes:
        raise AuditError(f"{dataset.path}: {len(dataset.class_names)} class names for a model with {model.n_classes} classes")
