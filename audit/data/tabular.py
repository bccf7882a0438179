"""CSV and Parquet tables: a label column, attribute columns, feature columns; CSV streamed in blocks of rows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from audit.errors import AuditError, first_line

MISSING = "missing"
# Rows parsed at a time: one block's text is all of the file held in memory at once.
BLOCK_ROWS = 8192


def load_table(path: Path, options, model_features: list[str] | None = None, string_features: list[str] | None = None):
    """Read a table; the features are --features, else the model's input names, else every other numeric column.

    ``string_features``: the model's inputs that are string tensors (categorical columns). They are read as text
    and coded in ``x`` as indices into their sorted categories (``Dataset.categories``); every other feature is a number.
    """
    from audit.data import Dataset

    parquet = path.suffix.lower() in (".parquet", ".pq")
    names = _parquet_columns(path) if parquet else _csv_header(path)
    if options.label is not None and options.label not in names:
        raise AuditError(f"{path}: no label column {options.label!r} (columns: {', '.join(names)}); pass --label with one of them")
    missing = [a for a in options.attributes if a not in names]
    if missing:
        raise AuditError(f"{path}: no attribute column {', '.join(missing)} (columns: {', '.join(names)})")
    if options.features is not None:
        chosen, source = list(options.features), "--features"
    elif model_features:
        chosen, source = list(model_features), "the model's input names"
    else:
        chosen, source = None, "every numeric column but the label"
    if chosen is not None:
        unknown = [f for f in chosen if f not in names]
        if unknown and source == "the model's input names":
            raise AuditError(f"{path}: no feature column {', '.join(unknown)} (named by the model's input names; columns: "
                             f"{', '.join(names)}); rename the columns to the model's input names ({', '.join(chosen)}), "
                             "or pass --features with the file's columns in the model's input order")
        if unknown:
            raise AuditError(f"{path}: no feature column {', '.join(unknown)} (named by {source}; columns: {', '.join(names)})")
    strings = _string_columns(chosen, model_features, string_features)
    if options.label is not None and options.label in (chosen or []):
        raise AuditError(f"{path}: the label column {options.label!r} cannot also be a feature")
    candidates = chosen if chosen is not None else [n for n in names if n != options.label]
    # A text attribute is a grouping column, not a model input, unless the features were named.
    droppable = set() if chosen is not None else set(options.attributes)
    others = list(dict.fromkeys([*([options.label] if options.label else []), *options.attributes, *strings]))
    numeric = [c for c in candidates if c not in strings]
    hint = _numeric_hint(source)
    if parquet:
        x, features, raw = _read_parquet(path, numeric, others, droppable, hint)
    else:
        x, features, raw = _read_csv(path, names, numeric, others, droppable, hint)
    categories: dict[str, list[str]] = {}
    if strings:
        x, categories = _with_categories(path, options, candidates, x, features, raw, strings)
        features = list(candidates)
    if not features:
        raise AuditError(f"{path}: no numeric feature columns left; name them with --features")

    y, class_names = None, None
    if options.label is not None:
        y, class_names = _labels(path, options, raw[options.label])
    attributes = {name: _attribute(raw[name]) for name in options.attributes}
    ignored = [n for n in names if n not in features and n != options.label and n not in options.attributes]
    return Dataset(
        x=x,
        y=y,
        attributes=attributes,
        modality="tabular",
        class_names=class_names,
        feature_names=features,
        attribute_features={a: features.index(a) for a in options.attributes if a in features},
        feature_source=source,
        ignored_columns=ignored,
        categories=categories,
    )


def _string_columns(chosen, model_features, string_features) -> list[str]:
    """The chosen columns the model reads as strings: by name, or by position when --features renamed the model's inputs."""
    if not string_features or chosen is None:
        return []
    wanted = set(string_features)
    if model_features and list(chosen) != list(model_features) and len(chosen) == len(model_features):
        return [c for c, m in zip(chosen, model_features) if m in wanted]
    return [c for c in chosen if c in wanted]


def _numeric_hint(source: str) -> str:
    if source == "the model's input names":
        return ("the model's input of that name is a numeric tensor: put numbers in the column, or export the model "
                "with a string input for it (skl2onnx StringTensorType)")
    return "list the model's input columns with --features"


def _with_categories(path: Path, options, candidates: list[str], numbers: np.ndarray, numeric: list[str], raw: dict, strings: list[str]):
    """The feature matrix in ``candidates`` order, each string column as codes into its sorted categories."""
    x = np.empty((len(numbers), len(candidates)), dtype=np.float32)
    categories: dict[str, list[str]] = {}
    position = {name: j for j, name in enumerate(numeric)}
    for j, name in enumerate(candidates):
        if name not in strings:
            x[:, j] = numbers[:, position[name]]
            continue
        values = raw[name]
        if values.dtype.kind not in "USO":
            raise AuditError(f"{path}: column {name!r} holds {values.dtype} values, but the model's input {name!r} is a string "
                             "tensor; store the column as text (e.g. df[col] = df[col].astype(str)) or export the model with a "
                             "numeric input for it")
        text = values.astype(str)
        blank = np.flatnonzero(np.char.strip(text) == "")
        if len(blank) and not options.allow_nan:
            raise AuditError(f"{path}: column {name!r} (the model's string input) has {len(blank)} empty or missing value(s), "
                             f"first in data row {int(blank[0]) + 1}; fill them with a category (e.g. 'missing'), or set "
                             "allow_nan = true under [data] to feed them as empty strings")
        found, codes = np.unique(text, return_inverse=True)
        categories[name] = [str(v) for v in found]
        x[:, j] = codes.reshape(-1)
    return x, categories


# -- CSV ------------------------------------------------------------------------------------------------
def _csv_dialect(path: Path):
    return "\t" if path.suffix.lower() == ".tsv" else ","


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle, delimiter=_csv_dialect(path)), None)
    except UnicodeDecodeError:
        raise AuditError(f"{path}: not a UTF-8 text CSV file") from None
    if not header:
        raise AuditError(f"{path}: the file is empty; expected a header row and data rows")
    if len(set(header)) != len(header):
        raise AuditError(f"{path}: duplicate column names in the header")
    return header


def _read_csv(path: Path, header: list[str], candidates: list[str], others: list[str], droppable: set[str], hint: str = ""):
    """Stream the file: features parsed to float32 block by block, label and attributes kept as compact text arrays.

    A block without quotes goes through numpy's C parser (15x faster than csv.reader and a string per cell);
    a block it rejects (blanks, text, a short row) is read again with csv.reader for the exact error. From the
    first quote on, csv.reader reads the rest, since a quoted field may hold the delimiter or span lines.
    """
    reader = _CsvBlocks(path, header, candidates, others, droppable)
    reader.hint = hint or reader.hint
    reader.read()
    return reader.assemble()


class _CsvBlocks:
    """The blocks of one CSV file read so far: float32 features, and compact text for the label and attributes."""

    def __init__(self, path: Path, header: list[str], candidates: list[str], others: list[str], droppable: set[str]):
        self.path = path
        self.header = header
        self.candidates = candidates
        self.droppable = droppable
        self.delimiter = _csv_dialect(path)
        self.feature_index = [header.index(n) for n in candidates]
        self.other_index = {n: header.index(n) for n in others}
        self.blocks: list[np.ndarray | None] = []
        self.other_blocks: dict[str, list[np.ndarray]] = {n: [] for n in others}
        self.dropped: set[str] = set()
        self.hint = "list the model's input columns with --features"  # the fix named when a feature holds text

    def read(self) -> None:
        """Numpy's parser for each unquoted block, csv.reader from the first quote on (see _read_csv)."""
        import itertools

        path, delimiter = self.path, self.delimiter
        try:
            with open(path, newline="", encoding="utf-8-sig") as handle:
                first = next(handle)
                consumed = 1
                quoted = '"' in first
                while not quoted:
                    lines = [line for line in itertools.islice(handle, BLOCK_ROWS)]
                    if not lines:
                        break
                    if any('"' in line for line in lines):
                        quoted = True
                        self.add_rows(csv.reader(itertools.chain(lines, handle), delimiter=delimiter), consumed + 1)
                        break
                    kept = [line for line in lines if line.strip("\r\n")]
                    if kept and not self.add_lines(kept):
                        self.add_rows(csv.reader(lines, delimiter=delimiter), consumed + 1)
                    consumed += len(lines)
                else:  # only when the header itself was quoted: the loop above never ran
                    self.add_rows(csv.reader(handle, delimiter=delimiter), consumed + 1)
        except UnicodeDecodeError:
            raise AuditError(f"{path}: not a UTF-8 text CSV file") from None

    def add_cells(self, rows: list[list[str]]) -> None:
        cells = np.array(rows, dtype=str)
        self.blocks.append(_feature_block(self.path, cells[:, self.feature_index], self.candidates, self.droppable, self.dropped, self.hint))
        for name, index in self.other_index.items():
            self.other_blocks[name].append(_compact(cells[:, index]))

    def add_lines(self, lines: list[str]) -> bool:
        """Parse unquoted lines with numpy; False (nothing added) when numpy cannot, for csv.reader to explain why."""
        candidates, delimiter, feature_index = self.candidates, self.delimiter, self.feature_index
        active = [j for j, name in enumerate(candidates) if name not in self.dropped]
        if any(line.count(delimiter) != len(self.header) - 1 for line in lines):
            return False
        try:
            values = np.loadtxt(lines, delimiter=delimiter, dtype=np.float32, usecols=[feature_index[j] for j in active],
                                ndmin=2, comments=None)
        except ValueError:
            # A text attribute among the automatic features: drop it here and parse the block again.
            text = [candidates[j] for j in active
                    if candidates[j] in self.droppable and not _all_numbers(lines, delimiter, feature_index[j])]
            if text:
                self.dropped.update(text)
                return self.add_lines(lines)
            return False
        if len(values) != len(lines):
            return False
        if len(active) < len(candidates):
            block = np.full((len(values), len(candidates)), np.nan, dtype=np.float32)
            block[:, active] = values
            values = block
        self.blocks.append(values)
        if self.other_index:
            texts = np.loadtxt(lines, delimiter=delimiter, dtype=str, usecols=list(self.other_index.values()), ndmin=2,
                               comments=None)
            for k, name in enumerate(self.other_index):
                self.other_blocks[name].append(_compact(texts[:, k]))
        return True

    def add_rows(self, reader, first_line: int) -> None:
        """Rows from csv.reader, in blocks of BLOCK_ROWS; a row of the wrong width is an error naming its line."""
        header = self.header
        rows, line_number = [], first_line - 1
        for row in reader:
            line_number = first_line + reader.line_num - 1
            if not row:
                continue
            if len(row) != len(header):
                raise AuditError(f"{self.path}: line {line_number} has {len(row)} fields, the header has {len(header)}")
            rows.append(row)
            if len(rows) == BLOCK_ROWS:
                self.add_cells(rows)
                rows = []
        if rows:
            self.add_cells(rows)

    def assemble(self):
        """The feature matrix, its column names (less the dropped text columns) and the other columns' values."""
        blocks, candidates = self.blocks, self.candidates
        if not blocks:
            raise AuditError(f"{self.path}: the data set has no rows")
        keep = [i for i, name in enumerate(candidates) if name not in self.dropped]
        rows_total = sum(len(block) for block in blocks)
        x = np.empty((rows_total, len(keep)), dtype=np.float32)
        start = 0
        for i in range(len(blocks)):
            block, blocks[i] = blocks[i], None  # free each block once copied: the result and the blocks never both peak
            x[start:start + len(block)] = block[:, keep]
            start += len(block)
        raw = {name: np.concatenate(parts) for name, parts in self.other_blocks.items()}
        return x, [candidates[i] for i in keep], raw


def _all_numbers(lines: list[str], delimiter: str, index: int) -> bool:
    try:
        for line in lines:
            float(line.split(delimiter)[index])
    except ValueError:
        return False
    return True


def _compact(column: np.ndarray) -> np.ndarray:
    """As wide as this column's longest value, not the block's: a label of "0" keeps 4 bytes a row."""
    return column.astype(f"U{max(1, int(np.char.str_len(column).max()))}") if len(column) else column


def _feature_block(path, cells: np.ndarray, names: list[str], droppable: set[str], dropped: set[str],
                   hint: str = "list the model's input columns with --features") -> np.ndarray:
    try:
        return cells.astype(np.float32)
    except ValueError:
        pass
    # Slow path for this block only: blanks are NaN (refused later unless allow_nan), text is not a feature.
    out = np.empty(cells.shape, dtype=np.float32)
    for j, name in enumerate(names):
        column = np.char.strip(cells[:, j])
        blank = column == ""
        try:
            out[:, j] = np.where(blank, "nan", column).astype(np.float32)
        except ValueError:
            if name in droppable:
                dropped.add(name)
                out[:, j] = np.nan
                continue
            sample = next(v for v in np.where(blank, "0", column) if not _is_number(v))
            raise AuditError(f"{path}: column {name!r} is not numeric (it holds {sample[:40]!r}); {hint}") from None
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# -- Parquet --------------------------------------------------------------------------------------------
def _pyarrow(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise AuditError(f"{path}: reading Parquet needs pyarrow, which this installation lacks; pip install pyarrow "
                         "(or convert the file to CSV)") from None
    return pq


def _parquet_columns(path: Path) -> list[str]:
    pq = _pyarrow(path)
    try:
        return list(pq.read_schema(path).names)
    except Exception as error:  # noqa: BLE001
        raise AuditError(f"{path}: not a readable Parquet file ({first_line(error, 120)})") from None


def _read_parquet(path: Path, candidates: list[str], others: list[str], droppable: set[str],
                  hint: str = "list the model's input columns with --features"):
    pq = _pyarrow(path)
    try:
        table = pq.read_table(path, columns=list(dict.fromkeys([*candidates, *others])))
    except Exception as error:  # noqa: BLE001
        raise AuditError(f"{path}: not a readable Parquet file ({first_line(error, 120)})") from None
    raw = {name: _arrow_values(table.column(name)) for name in others}
    features, columns = [], []
    for name in candidates:
        values = _arrow_values(table.column(name))
        numbers = _as_numeric(values)
        if numbers is None:
            if name in droppable:
                continue
            raise AuditError(f"{path}: column {name!r} is not numeric ({values.dtype}); {hint}")
        features.append(name)
        columns.append(numbers.astype(np.float32))
    x = np.stack(columns, axis=1) if columns else np.empty((table.num_rows, 0), np.float32)
    return x, features, raw


def _arrow_values(column) -> np.ndarray:
    values = column.to_numpy(zero_copy_only=False)
    if values.dtype == object:
        # Nulls in a text column come back as None: blanks, as a CSV has them.
        return np.array(["" if v is None else str(v) for v in values], dtype=str)
    return values


# -- labels and attributes ------------------------------------------------------------------------------
def _as_numeric(values: np.ndarray) -> np.ndarray | None:
    """A float array if every value parses as a number (blank = NaN), else None."""
    values = np.asarray(values)
    if values.dtype.kind in "fiub":
        return values.astype(np.float64)
    text = np.char.strip(values.astype(str))
    try:
        return np.where(text == "", "nan", text).astype(np.float64)
    except ValueError:
        return None


def _labels(path, options, raw: np.ndarray):
    numbers = _as_numeric(raw)
    if numbers is not None and np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)):
        return numbers.astype(np.int64), None
    if numbers is not None:
        raise AuditError(f"{path}: label column {options.label!r} holds non-integer or missing numbers; labels must be class indices or class names")
    text = raw.astype(str)
    class_names = list(options.class_names) if options.class_names else sorted(set(np.unique(text).tolist()))
    lookup = {name: i for i, name in enumerate(class_names)}
    uniques, codes = np.unique(text, return_inverse=True)
    unknown = [u for u in uniques.tolist() if u not in lookup]
    if unknown:
        raise AuditError(f"{path}: label value(s) {', '.join(unknown[:5])} are not among the class names {class_names}")
    return np.array([lookup[u] for u in uniques.tolist()], dtype=np.int64)[codes.reshape(-1)], class_names


def _attribute(raw: np.ndarray) -> np.ndarray:
    """Numbers stay numbers (NaN where blank); text keeps its values, a blank one named "missing"."""
    numbers = _as_numeric(raw)
    if numbers is not None:
        return numbers
    text = raw.astype(str)
    blank = np.char.strip(text) == ""
    return np.where(blank, MISSING, text) if blank.any() else text
