"""audit.toml or [tool.audit] in pyproject.toml, AUDIT_* variables and CLI flags, typed and merged into a RunSpec."""

from __future__ import annotations

import json
import os
import tomllib
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic

from audit.data import DataOptions
from audit.errors import AuditError
from audit.gate import FAIL_ON_CHOICES

TOP_LEVEL_KEYS = {
    "model", "data", "analyses", "device", "seed", "batch_size", "db", "reports", "fail_on",
    "trust_model_code", "template_dir", "analysis", "threads", "min_rows", "fail_on_inconclusive",
    "budget",
}
MODEL_KEYS = {"output", "path", "gradients", "optimize", "tokenizer"}
DATA_KEYS = {f.name for f in fields(DataOptions)} | {"path"}
FAIL_ON = FAIL_ON_CHOICES  # the severities, least first, then "never"
# With n rows all classified right, the one-sided 95% Clopper-Pearson lower bound
# on accuracy is 0.05 ** (1 / n): it first passes 0.9 at n = 29. With fewer rows no
# check can pass with confidence, so the audit refuses them unless told otherwise.
MIN_ROWS = 29
MAX_SEED = 2**63 - 1  # the store keeps the seed in a signed 64-bit column
DB_SCHEMES = ("sqlite", "postgresql", "postgres")
ENVIRONMENT = {"AUDIT_DB": "db", "AUDIT_THREADS": "threads"}

# One typed model for every setting, whatever its source: strict, so a TOML
# string "false" is not taken for a boolean and "abc" is not a seed.
STRICT = pydantic.ConfigDict(extra="forbid", strict=True)


class ModelSettings(pydantic.BaseModel):
    """The [model] table."""

    model_config = STRICT
    path: str | None = None
    output: Literal["logits", "probabilities"] | None = None
    gradients: bool | None = None
    optimize: bool | None = None
    tokenizer: str | None = None


def _data_settings() -> type[pydantic.BaseModel]:
    """The [data] table: DataOptions' own fields and types, plus the path."""
    hints = typing.get_type_hints(DataOptions)
    columns = {f.name: (hints[f.name] | None, None) for f in fields(DataOptions)}
    return pydantic.create_model("DataSettings", __config__=STRICT, path=(str | None, None), **columns)


DataSettings = _data_settings()


class Settings(pydantic.BaseModel):
    """The top level of the config; model and data tables are checked by their own models."""

    model_config = STRICT
    model: str | None = None
    data: str | None = None
    analyses: list[str] | None = None
    device: str | None = None
    seed: Annotated[int, pydantic.Field(ge=0, le=MAX_SEED)] | None = None
    batch_size: Annotated[int, pydantic.Field(ge=1)] | None = None
    threads: Annotated[int, pydantic.Field(ge=1)] | None = None
    db: str | None = None
    reports: list[str] | None = None
    fail_on: str | None = None
    fail_on_inconclusive: bool | None = None
    trust_model_code: bool | None = None
    template_dir: str | None = None
    min_rows: Annotated[int, pydantic.Field(ge=0)] | None = None
    analysis: dict[str, Any] | None = None
    executor: str | None = None  # checked, with the fix, by runner.check_executor
    ray_address: str | None = None
    budget: str | int | float | None = None  # seconds after parsing: 90, "90s", "5m", "1h", "quick"

    @pydantic.field_validator("budget")
    @classmethod
    def _budget(cls, value):
        from audit.cost import parse_duration

        return None if value is None else parse_duration(value)

    @pydantic.field_validator("fail_on")
    @classmethod
    def _fail_on(cls, value):
        if value is not None and value.lower() not in FAIL_ON:
            raise ValueError(f"use one of {', '.join(FAIL_ON)}")
        return None if value is None else value.lower()

    @pydantic.field_validator("db")
    @classmethod
    def _db(cls, value):
        if value is not None and "://" in value:
            scheme = value.split("://", 1)[0].split("+", 1)[0].lower()
            if scheme not in DB_SCHEMES:
                raise ValueError(f"unknown database URL scheme {scheme!r}; give a file path, sqlite:///PATH or postgresql://...")
        if value is not None and not value.strip():
            raise ValueError("give a file path or a database URL")
        return value

    @pydantic.field_validator("device")
    @classmethod
    def _device(cls, value):
        from audit.models.base import parse_device

        if value is not None:
            try:
                parse_device(value)
            except AuditError as error:
                raise ValueError(str(error)) from None
        return value


def _describe(value) -> str:
    kind = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "a list", dict: "a table"}.get(type(value))
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return f"{shown} ({kind})" if kind else shown


def validated(model: type[pydantic.BaseModel], values: dict[str, Any], source: str, prefix: str = "", label: str | None = None):
    """Validate ``values`` with ``model``; the first problem becomes one AuditError naming its source and key.

    ``source`` is where the value came from ("audit.toml: ", "--set "), ``prefix``
    goes before the key ("data.", "--"), ``label`` replaces both for a single value.
    """
    try:
        return model.model_validate(values)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        key = label or source + prefix + ".".join(str(p) for p in first["loc"] if not isinstance(p, int))
        if first["type"] == "value_error":
            raise AuditError(f"{key} {first.get('input')!r}: {first['msg'].removeprefix('Value error, ')}") from None
        expected = {
            "bool_type": "write true or false (no quotes)", "int_type": "write a whole number (no quotes)",
            "int_parsing": "write a whole number", "string_type": "write a quoted string",
            "list_type": "write a list such as [\"a\", \"b\"]",
        }.get(first["type"])
        hint = f"; {expected}" if expected else ""
        raise AuditError(f"{key}: {first['msg'].lower()}, got {_describe(first.get('input'))}{hint}") from None


@dataclass
class RunSpec:
    """Everything one `audit run` needs, after config files and flags are merged."""

    model: str | None = None
    data: str | None = None
    analyses: list[str] = field(default_factory=list)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_output: str | None = None
    model_gradients: bool = True
    model_optimize: bool = True
    model_tokenizer: str | None = None
    data_options: DataOptions = field(default_factory=DataOptions)
    device: str = "auto"
    seed: int = 0
    batch_size: int | None = None
    threads: int | None = None
    db: str | None = None
    reports: list[str] = field(default_factory=list)
    fail_on: str = "high"
    fail_on_inconclusive: bool = False
    trust_model_code: bool = False
    template_dir: str | None = None
    min_rows: int = MIN_ROWS
    config_file: str | None = None
    executor: str = "local"  # local | ray
    ray_address: str | None = None
    budget: float | None = None  # seconds of estimated analysis time the run fits its plan into
    argv: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("data_options", "argv")}
        out["data_options"] = {f.name: getattr(self.data_options, f.name) for f in fields(DataOptions)}
        return out


def find_config(explicit: str | None, cwd: Path | None = None) -> tuple[Path | None, dict[str, Any]]:
    """Read --config FILE, else ./audit.toml, else [tool.audit] of ./pyproject.toml."""
    cwd = cwd or Path.cwd()
    if explicit:
        path = Path(explicit)
        if not path.exists():
            raise AuditError(f"config file {path} does not exist")
        if not path.is_file():
            raise AuditError(f"--config {path} is a folder; give a file such as {path / 'audit.toml'}")
        table = _read_toml(path)
        if path.name == "pyproject.toml":
            table = table.get("tool", {}).get("audit", {})
        return path, table
    if (cwd / "audit.toml").is_file():
        return cwd / "audit.toml", _read_toml(cwd / "audit.toml")
    if (cwd / "pyproject.toml").is_file():
        table = _read_toml(cwd / "pyproject.toml").get("tool", {}).get("audit")
        if table is not None:
            return cwd / "pyproject.toml", table
    return None, {}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise AuditError(f"{path}: not valid TOML ({error})") from None
    except OSError as error:
        raise AuditError(f"config file {path} cannot be read ({error.strerror or error})") from None


def _unknown(section: str, key: str, valid) -> AuditError:
    return AuditError(f"unknown key {section}{key!r} in the config; valid keys: {', '.join(sorted(valid))}")


def apply_config(spec: RunSpec, table: dict[str, Any], base: Path, source: str | None = None, explicit: bool = True) -> None:
    """Fill ``spec`` from a config table; relative paths are relative to the config's folder.

    A config file found in the working directory (``explicit=False``) may not
    set ``trust_model_code``: a file checked into a repository must not turn
    on unpickling for whoever runs the audit there.
    """
    where = f"{source or 'the config'}: "
    for key in table:
        if key not in TOP_LEVEL_KEYS:
            raise _unknown("", key, TOP_LEVEL_KEYS)
    model, data = table.get("model"), table.get("data")
    flat = {k: v for k, v in table.items() if k not in ("model", "data")}
    for key in ("analyses", "reports"):
        if isinstance(flat.get(key), str):
            flat[key] = [flat[key]]
    settings = validated(Settings, {**flat, **({"model": model} if not isinstance(model, dict) else {}),
                                    **({"data": data} if not isinstance(data, dict) else {})}, where)
    if isinstance(model, dict):
        _apply_model_table(spec, model, base, where)
    elif settings.model is not None:
        spec.model = _config_path(base, settings.model)
    if isinstance(data, dict):
        _apply_data_table(spec, data, base, where)
    elif settings.data is not None:
        spec.data = _config_path(base, settings.data)
    if settings.trust_model_code and not explicit:
        raise AuditError(
            f"{source or 'the config'} sets trust_model_code, which a config file found in the working directory may not do; "
            "pass --trust-model-code, or name the file with --config if you trust it"
        )
    _apply_top_level(spec, settings, base)
    _apply_analysis_options(spec, settings)


def _config_path(base: Path, value) -> str:
    """A path relative to the config's folder; absolute paths and URLs (a database's) as written."""
    return str((base / value) if not Path(value).is_absolute() and "://" not in str(value) else value)


def _apply_model_table(spec: RunSpec, model: dict[str, Any], base: Path, where: str) -> None:
    """A [model] table."""
    for key in model:
        if key not in MODEL_KEYS:
            raise _unknown("model.", key, MODEL_KEYS)
    if "output" in model:
        _model_output(model["output"])
    table_model = validated(ModelSettings, model, where, "model.")
    if table_model.path is not None:
        spec.model = _config_path(base, table_model.path)
    _apply_model(spec, table_model)
    if table_model.tokenizer is not None:
        spec.model_tokenizer = _config_path(base, table_model.tokenizer)


def _apply_data_table(spec: RunSpec, data: dict[str, Any], base: Path, where: str) -> None:
    """A [data] table: its path, and the keys it sets among the data options."""
    for key in data:
        if key not in DATA_KEYS:
            raise _unknown("data.", key, DATA_KEYS)
    table_data = validated(DataSettings, data, where, "data.")
    for key in data:
        value = getattr(table_data, key)
        if key == "path":
            spec.data = _config_path(base, value)
        elif key == "attributes_file" and value is not None:
            spec.data_options.attributes_file = _config_path(base, value)
        else:
            setattr(spec.data_options, key, value)


def _apply_top_level(spec: RunSpec, settings: Settings, base: Path) -> None:
    """The top-level keys other than model, data and [analysis]."""
    for key in ("device", "seed", "batch_size", "threads", "fail_on", "fail_on_inconclusive", "trust_model_code", "min_rows", "budget"):
        value = getattr(settings, key)
        if value is not None:
            setattr(spec, key, value)
    if settings.db is not None:
        spec.db = _config_path(base, settings.db)
    if settings.template_dir is not None:
        spec.template_dir = _config_path(base, settings.template_dir)
    if settings.analyses is not None:
        spec.analyses = list(settings.analyses)
    if settings.reports is not None:
        spec.reports = [_config_path(base, r) for r in settings.reports]


def _apply_analysis_options(spec: RunSpec, settings: Settings) -> None:
    """[analysis.NAME] tables, TOML's dotted-key nesting undone, merged into each analysis's options."""
    for name, values in (settings.analysis or {}).items():
        if not isinstance(values, dict):
            raise AuditError(f"[analysis.{name}] in the config must be a table of options")
        for analysis, options in _flatten_dotted(name, values).items():
            spec.options.setdefault(analysis, {}).update(options)


def _apply_model(spec: RunSpec, model: ModelSettings) -> None:
    if model.output is not None:
        spec.model_output = model.output
    if model.gradients is not None:
        spec.model_gradients = model.gradients
    if model.optimize is not None:
        spec.model_optimize = model.optimize
    if model.tokenizer is not None:
        spec.model_tokenizer = model.tokenizer


def apply_environment(spec: RunSpec, environ=None) -> None:
    """AUDIT_DB and AUDIT_THREADS, read as --set values are and checked by the same model; flags and config win."""
    environ = os.environ if environ is None else environ
    for variable, key in ENVIRONMENT.items():
        raw = environ.get(variable, "")
        if not raw.strip() or getattr(spec, key) is not None:
            continue
        value = raw if key == "db" else parse_value(raw.strip())
        setattr(spec, key, getattr(validated(Settings, {key: value}, "", label=f"environment variable {variable}"), key))


def database_location(db: str | None, environ=None) -> str | None:
    """--db, else AUDIT_DB, checked like every other setting (for commands that only read the store)."""
    environ = os.environ if environ is None else environ
    if db is not None:
        return validated(Settings, {"db": db}, "", label="--db").db
    raw = environ.get("AUDIT_DB", "")
    if raw.strip():
        return validated(Settings, {"db": raw}, "", label="environment variable AUDIT_DB").db
    return None


def apply_flags(spec: RunSpec, flags: dict[str, Any]) -> None:
    """Command-line options, checked by the same model as the config file (ranges, device, database URL)."""
    for key, value in flags.items():
        if value is not None:
            setattr(spec, key, getattr(validated(Settings, {key: value}, "", label="--" + key.replace("_", "-")), key))


def _flatten_dotted(name: str, values: dict) -> dict[str, dict]:
    """[analysis.bias.group_fairness] arrives as nested tables; undo TOML's dotted-key nesting."""
    found: dict[str, dict] = {}
    options = {k: v for k, v in values.items() if not isinstance(v, dict)}
    if options:
        found[name] = options
    for key, value in values.items():
        if isinstance(value, dict):
            found.update(_flatten_dotted(f"{name}.{key}", value))
    return found


def _model_output(value) -> str:
    if value not in ("logits", "probabilities"):
        raise AuditError(f"model.output must be logits or probabilities, not {value!r}")
    return value


def parse_value(text: str) -> Any:
    """A --set value: TOML/JSON literal when it parses (numbers, booleans, lists), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_set(spec: RunSpec, assignments: list[str], analysis_names: set[str] | None = None) -> None:
    """Apply --set NAME.KEY=VALUE; NAME is `model`, `data` or an analysis name (which may hold dots).

    ``model`` and ``data`` keys are checked by the same typed model as the
    config file: ``--set data.allow_nan=no`` is an error, not a truthy string.
    """
    for assignment in assignments:
        if "=" not in assignment:
            raise AuditError(f"--set {assignment!r}: write NAME.KEY=VALUE, for example --set bias.group_fairness.min_group_size=50")
        target, _, raw = assignment.partition("=")
        target = target.strip()
        if "." not in target:
            raise AuditError(f"--set {assignment!r}: write NAME.KEY=VALUE with the analysis name before the last dot")
        name, _, key = target.rpartition(".")
        value = parse_value(raw.strip())
        if name == "model":
            if key not in MODEL_KEYS - {"path"}:
                raise _unknown("model.", key, MODEL_KEYS - {"path"})
            if key == "output":
                _model_output(value)
            _apply_model(spec, validated(ModelSettings, {key: value}, "--set ", "model."))
        elif name == "data":
            if key not in DATA_KEYS - {"path"}:
                raise _unknown("data.", key, DATA_KEYS - {"path"})
            setattr(spec.data_options, key, getattr(validated(DataSettings, {key: value}, "--set ", "data."), key))
        else:
            spec.options.setdefault(name, {})[key] = value


def check_fail_on(value: str) -> str:
    value = str(value).lower()
    if value not in FAIL_ON:
        raise AuditError(f"--fail-on {value!r}: use one of {', '.join(FAIL_ON)}")
    return value
