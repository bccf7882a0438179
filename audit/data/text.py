"""Text data: a column of strings in a CSV, TSV, Parquet or JSON Lines file, with labels and attributes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from audit.errors import AuditError, first_line


def _read_jsonl(path: Path) -> dict[str, list]:
    columns: dict[str, list] = {}
    rows = 0
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise AuditError(f"{path}: line {line_number} is not valid JSON ({error.msg}); write one JSON object per line") from None
                if not isinstance(record, dict):
                    raise AuditError(f"{path}: line {line_number} is a JSON {type(record).__name__}, not an object with named fields")
                for key in record.keys() - columns.keys():
                    columns[key] = [None] * rows
                for key, values in columns.items():
                    values.append(record.get(key))
                rows += 1
    except UnicodeDecodeError:
        raise AuditError(f"{path}: not a UTF-8 text file") from None
    return columns


def _read_csv(path: Path) -> dict[str, list]:
    """Every column as text: a text data set is strings first, and far smaller than a numeric table."""
    import csv

    from audit.data.tabular import _csv_dialect, _csv_header

    header = _csv_header(path)
    columns: dict[str, list] = {name: [] for name in header}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=_csv_dialect(path))
        next(reader, None)
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise AuditError(f"{path}: line {reader.line_num} has {len(row)} fields where the header has {len(header)}")
            for name, value in zip(header, row):
                columns[name].append(value)
    return columns


def _read_parquet(path: Path) -> dict[str, list]:
    from audit.data.tabular import _arrow_values, _pyarrow

    pq = _pyarrow(path)
    try:
        table = pq.read_table(path)
    except Exception as error:  # noqa: BLE001 - any reader failure is a bad file
        raise AuditError(f"{path}: not a readable Parquet file ({first_line(error, 120)})") from None
    return {name: list(_arrow_values(table.column(name))) for name in table.column_names}


def read_columns(path: Path) -> dict[str, list]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path)
    return _read_csv(path)


def _class_indices(path: Path, name: str, raw: list, class_names) -> tuple[np.ndarray, list[str] | None]:
    if any(v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == "" for v in raw):
        raise AuditError(f"{path}: label column {name!r} has empty values; every row needs a label")
    if all(isinstance(v, (int, np.integer)) or (isinstance(v, str) and v.strip().lstrip("-").isdigit()) for v in raw):
        return np.array([int(v) for v in raw], dtype=np.int64), None
    if all(isinstance(v, (float, np.floating)) and float(v).is_integer() for v in raw):
        return np.array([int(v) for v in raw], dtype=np.int64), None
    values = [str(v) for v in raw]
    names = list(class_names) if class_names else sorted(set(values))
    lookup = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(values) - set(lookup))
    if unknown:
        raise AuditError(f"{path}: label value(s) {', '.join(unknown[:5])} are not among the class names {names}")
    return np.array([lookup[v] for v in values], dtype=np.int64), names


def load_text(path: Path, options):
    """Read the text column (``--text``; a JSON Lines file defaults to ``text``), the label and the attributes."""
    from audit.data import Dataset

    columns = read_columns(path)
    if not columns:
        raise AuditError(f"{path}: no rows; expected a header (or JSON objects) and one text per row")
    names = list(columns)
    text_column = options.text
    if text_column is None:
        if "text" not in columns:
            raise AuditError(f"{path}: no text column named; pass --text with one of: {', '.join(names)}")
        text_column = "text"
    if not isinstance(text_column, str):
        raise AuditError(f"data.text must be a column name, not {text_column!r}")
    if text_column not in columns:
        raise AuditError(f"{path}: no text column {text_column!r} (columns: {', '.join(names)}); pass --text with one of them")
    if options.label is not None and options.label not in columns:
        raise AuditError(f"{path}: no label column {options.label!r} (columns: {', '.join(names)}); pass --label with one of them")
    missing = [a for a in options.attributes if a not in columns]
    if missing:
        raise AuditError(f"{path}: no attribute column {', '.join(missing)} (columns: {', '.join(names)})")
    if text_column == options.label or text_column in options.attributes:
        raise AuditError(f"{path}: the text column {text_column!r} cannot also be the label or an attribute")
    raw_texts = columns[text_column]
    bad = [i for i, t in enumerate(raw_texts) if not isinstance(t, str)]
    if bad:
        raise AuditError(f"{path}: text column {text_column!r} has {len(bad)} missing or non-string value(s), "
                         f"first at row {bad[0] + 1}; every row needs a text")
    x = np.empty(len(raw_texts), dtype=object)
    x[:] = raw_texts
    y, class_names = None, None
    if options.label is not None:
        y, class_names = _class_indices(path, options.label, columns[options.label], options.class_names)
    attributes = {}
    for name in options.attributes:
        raw = ["" if v is None else v for v in columns[name]]
        try:
            attributes[name] = np.array([float(v) for v in raw], dtype=np.float64)
        except (TypeError, ValueError):
            attributes[name] = np.array([str(v) for v in raw])
    return Dataset(x=x, y=y, attributes=attributes, modality="text", class_names=class_names, feature_names=[text_column])


def check_model_matches(dataset, model) -> None:
    """Text data needs a text model and the other way round: token ids are never fed numbers, nor strings a float model."""
    model_text = getattr(model, "modality", None) == "text"
    data_text = dataset.modality == "text"
    if model_text and not data_text:
        raise AuditError(f"{dataset.path}: the model is a text classifier (it takes token ids through {model.tokenizer_path.name}); "
                         "give data with a text column: --data FILE.csv|.parquet|.jsonl --text COLUMN")
    if data_text and not model_text:
        raise AuditError(f"{dataset.path}: the data is text but the model takes numbers; a text model takes input_ids and comes "
                         "with a tokenizer.json (beside it or --tokenizer PATH)")
