"""CSV and Parquet tables: a label column, attribute columns, feature columns in file order."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from audit.errors import AuditError, first_line


def _read_csv(path: Path) -> dict[str, list[str]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            header = next(reader, None)
            if not header:
                raise AuditError(f"{path}: the file is empty; expected a header row and data rows")
            columns: dict[str, list[str]] = {name: [] for name in header}
            if len(columns) != len(header):
                raise AuditError(f"{path}: duplicate column names in the header")
            for line_number, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise AuditError(f"{path}: line {line_number} has {len(row)} fields, the header has {len(header)}")
                for name, value in zip(header, row):
                    columns[name].append(value)
    except UnicodeDecodeError:
        raise AuditError(f"{path}: not a UTF-8 text CSV file") from None
    return columns


def _read_parquet(path: Path) -> dict[str, np.ndarray]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise AuditError(f"{path}: reading Parquet needs pyarrow; pip install 'classifier-audit[tabular]' or convert to CSV") from None
    try:
        table = pq.read_table(path)
    except Exception as error:  # noqa: BLE001
        raise AuditError(f"{path}: not a readable Parquet file ({first_line(error, 120)})") from None
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _as_numeric(values) -> np.ndarray | None:
    """A float array if every value parses as a number (empty = NaN), else None."""
    array = np.asarray(values)
    if array.dtype.kind in "fiub":
        return array.astype(np.float64)
    try:
        return np.array([float(v) if str(v).strip() != "" else np.nan for v in array], dtype=np.float64)
    except ValueError:
        return None


def load_table(path: Path, options):
    from audit.data import Dataset

    columns = _read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else _read_csv(path)
    names = list(columns)
    if options.label is not None and options.label not in columns:
        raise AuditError(f"{path}: no label column {options.label!r} (columns: {', '.join(names)}); pass --label with one of them")
    missing = [a for a in options.attributes if a not in columns]
    if missing:
        raise AuditError(f"{path}: no attribute column {', '.join(missing)} (columns: {', '.join(names)})")
    if options.features is not None:
        unknown = [f for f in options.features if f not in columns]
        if unknown:
            raise AuditError(f"{path}: no feature column {', '.join(unknown)} (columns: {', '.join(names)})")
        feature_names = list(options.features)
    else:
        feature_names = [n for n in names if n != options.label]
    if options.label in feature_names:
        raise AuditError(f"{path}: the label column {options.label!r} cannot also be a feature")

    numeric = {}
    features = []
    for name in feature_names:
        values = _as_numeric(columns[name])
        if values is None:
            if name in options.attributes and options.features is None:
                continue  # a text attribute is a grouping column, not a model input
            raise AuditError(f"{path}: column {name!r} is not numeric; list the model's input columns with --features")
        numeric[name] = values
        features.append(name)
    if not features:
        raise AuditError(f"{path}: no numeric feature columns left; name them with --features")
    x = np.stack([numeric[name] for name in features], axis=1).astype(np.float32)

    y = None
    class_names = None
    if options.label is not None:
        raw = np.asarray(columns[options.label])
        numbers = _as_numeric(raw)
        if numbers is not None and np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)):
            y = numbers.astype(np.int64)
        elif numbers is not None:
            raise AuditError(f"{path}: label column {options.label!r} holds non-integer numbers; labels must be class indices or class names")
        else:
            class_names = list(options.class_names) if options.class_names else sorted(set(raw.astype(str)))
            lookup = {name: i for i, name in enumerate(class_names)}
            unknown = sorted(set(raw.astype(str)) - set(lookup))
            if unknown:
                raise AuditError(f"{path}: label value(s) {', '.join(unknown[:5])} are not among the class names {class_names}")
            y = np.array([lookup[v] for v in raw.astype(str)], dtype=np.int64)

    attributes = {}
    for name in options.attributes:
        raw = np.asarray(columns[name])
        numbers = _as_numeric(raw)
        attributes[name] = numbers if numbers is not None else raw.astype(str)
    attribute_features = {a: features.index(a) for a in options.attributes if a in features}
    return Dataset(
        x=x,
        y=y,
        attributes=attributes,
        modality="tabular",
        class_names=class_names,
        feature_names=features,
        attribute_features=attribute_features,
    )
