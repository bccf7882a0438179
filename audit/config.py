"""audit.toml or [tool.audit] in pyproject.toml, merged with CLI flags (flags win) into a RunSpec."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from audit.data import DataOptions
from audit.errors import AuditError

TOP_LEVEL_KEYS = {
    "model", "data", "analyses", "device", "seed", "batch_size", "db", "reports", "fail_on",
    "trust_model_code", "template_dir", "analysis", "threads",
}
MODEL_KEYS = {"output", "path", "gradients", "optimize"}
DATA_KEYS = {f.name for f in fields(DataOptions)} | {"path"}
FAIL_ON = ("info", "low", "medium", "high", "critical", "never")


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
    data_options: DataOptions = field(default_factory=DataOptions)
    device: str = "auto"
    seed: int = 0
    batch_size: int | None = None
    threads: int | None = None
    db: str | None = None
    reports: list[str] = field(default_factory=list)
    fail_on: str = "high"
    trust_model_code: bool = False
    template_dir: str | None = None
    config_file: str | None = None
    executor: str = "local"  # local | ray
    ray_address: str | None = None
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
        table = _read_toml(path)
        if path.name == "pyproject.toml":
            table = table.get("tool", {}).get("audit", {})
        return path, table
    if (cwd / "audit.toml").exists():
        return cwd / "audit.toml", _read_toml(cwd / "audit.toml")
    if (cwd / "pyproject.toml").exists():
        table = _read_toml(cwd / "pyproject.toml").get("tool", {}).get("audit")
        if table is not None:
            return cwd / "pyproject.toml", table
    return None, {}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise AuditError(f"{path}: not valid TOML ({error})") from None


def _unknown(section: str, key: str, valid) -> AuditError:
    return AuditError(f"unknown key {section}{key!r} in the config; valid keys: {', '.join(sorted(valid))}")


def apply_config(spec: RunSpec, table: dict[str, Any], base: Path) -> None:
    """Fill ``spec`` from a config table; relative paths are relative to the config's folder."""
    for key in table:
        if key not in TOP_LEVEL_KEYS:
            raise _unknown("", key, TOP_LEVEL_KEYS)

    def path_of(value):
        return str((base / value) if not Path(value).is_absolute() and "://" not in str(value) else value)

    model = table.get("model")
    if isinstance(model, dict):
        for key in model:
            if key not in MODEL_KEYS:
                raise _unknown("model.", key, MODEL_KEYS)
        if "path" in model:
            spec.model = path_of(model["path"])
        if "output" in model:
            spec.model_output = _model_output(model["output"])
        if "gradients" in model:
            spec.model_gradients = _boolean("model.gradients", model["gradients"])
        if "optimize" in model:
            spec.model_optimize = _boolean("model.optimize", model["optimize"])
    elif model is not None:
        spec.model = path_of(model)
    data = table.get("data")
    if isinstance(data, dict):
        for key in data:
            if key not in DATA_KEYS:
                raise _unknown("data.", key, DATA_KEYS)
        for key, value in data.items():
            if key == "path":
                spec.data = path_of(value)
            elif key == "attributes_file":
                spec.data_options.attributes_file = path_of(value)
            else:
                setattr(spec.data_options, key, value)
    elif data is not None:
        spec.data = path_of(data)
    for key in ("device", "seed", "batch_size", "threads", "fail_on", "trust_model_code"):
        if key in table:
            setattr(spec, key, table[key])
    if "db" in table:
        spec.db = path_of(table["db"])
    if "template_dir" in table:
        spec.template_dir = path_of(table["template_dir"])
    if "analyses" in table:
        spec.analyses = [str(a) for a in _as_list(table["analyses"], "analyses")]
    if "reports" in table:
        spec.reports = [path_of(r) for r in _as_list(table["reports"], "reports")]
    for name, values in (table.get("analysis") or {}).items():
        if not isinstance(values, dict):
            raise AuditError(f"[analysis.{name}] in the config must be a table of options")
        for analysis, options in _flatten_dotted(name, values).items():
            spec.options.setdefault(analysis, {}).update(options)


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


def _as_list(value, key):
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise AuditError(f"config key {key!r} must be a list")
    return value


def _model_output(value: str) -> str:
    if value not in ("logits", "probabilities"):
        raise AuditError(f"model.output must be logits or probabilities, not {value!r}")
    return value


def _boolean(key: str, value) -> bool:
    if not isinstance(value, bool):
        raise AuditError(f"{key} must be true or false, not {value!r}")
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
    """Apply --set NAME.KEY=VALUE; NAME is `model`, `data` or an analysis name (which may hold dots)."""
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
            if key == "gradients":
                spec.model_gradients = _boolean("model.gradients", value)
            elif key == "optimize":
                spec.model_optimize = _boolean("model.optimize", value)
            else:
                spec.model_output = _model_output(value)
        elif name == "data":
            if key not in DATA_KEYS - {"path"}:
                raise _unknown("data.", key, DATA_KEYS - {"path"})
            setattr(spec.data_options, key, value)
        else:
            spec.options.setdefault(name, {})[key] = value


def check_fail_on(value: str) -> str:
    value = str(value).lower()
    if value not in FAIL_ON:
        raise AuditError(f"--fail-on {value!r}: use one of {', '.join(FAIL_ON)}")
    return value
