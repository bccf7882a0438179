"""`audit plugins`, `audit analyses` and `audit schema`: what is installed and what the JSON holds, without importing torch."""

from __future__ import annotations

import json
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer

from audit.cli.options import JsonOption


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins)
    app.command("analyses")(analyses)
    app.command("schema")(schema)


def schema():
    """Print the JSON Schema of a run document (`audit run --json`, `audit show --json`, .json reports)."""
    from importlib import resources

    print(resources.files("audit").joinpath("schemas/run.schema.json").read_text(encoding="utf-8"), end="")


def plugins(as_json: JsonOption = False):
    """List installed plugins: name, distribution, version, hooks and load errors."""
    from audit.plugins import get_plugin_manager

    infos = [info.as_dict() for info in get_plugin_manager().plugin_infos()]
    if as_json:
        print(json.dumps(infos, indent=2))
        return
    if not infos:
        print("No plugins loaded (AUDIT_LOAD_PLUGINS may exclude them).")
    for info in infos:
        where = f"{info['distribution']} {info['version']}" if info["distribution"] else "registered in code"
        print(f"{info['name']}  ({where})")
        if info["error"]:
            print(f"    load error: {info['error']}")
        else:
            print(f"    hooks: {', '.join(info['hooks']) or 'none'}")


def analyses(as_json: JsonOption = False):
    """List analyses: name, title, category, requirements, plugin and options."""
    from audit.analysis import option_fields
    from audit.plugins import get_plugin_manager

    registry = get_plugin_manager().analyses()
    rows = []
    for name in sorted(registry):
        entry = registry[name]
        cls = entry.cls
        rows.append({
            "name": name, "title": cls.title, "category": cls.category, "requires": sorted(cls.requires),
            "tags": sorted(cls.tags), "plugin": entry.plugin, "distribution": entry.distribution,
            "description": cls.description(),
            "options": [{**option, "type": describe_type(cls.Options.model_fields[option["name"]].annotation,
                                                         cls.Options.model_fields[option["name"]].metadata)}
                        for option in option_fields(cls.Options)],
        })
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    for row in rows:
        requires = f" requires {', '.join(row['requires'])}" if row["requires"] else ""
        print(f"{row['name']}  [{row['category']}]  {row['title']}  (plugin {row['plugin']}){requires}")
        for option in row["options"]:
            default = "required" if option["required"] else f"default {option['default']!r}"
            text = f" - {option['description']}" if option["description"] else ""
            print(f"    --set {row['name']}.{option['name']}=<{option['type']}>  ({default}){text}")


_TYPE_NAMES = {int: "int", float: "float", bool: "true or false", str: "text"}


def describe_type(annotation: Any, constraints=()) -> str:
    """An option's type in words, with its allowed values: `list of float >= 0`, `one of: mean, zeros`.

    ``constraints`` are the field's pydantic/annotated-types metadata (Ge, Le, MinLen...); bounds apply to the
    numbers inside an optional or a list, lengths to the list itself.
    """
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        extra = []
        for item in args[1:]:
            # Field(ge=0) inside Annotated is a FieldInfo whose constraints sit in .metadata.
            extra.extend(getattr(item, "metadata", None) or [item])
        return describe_type(args[0], [*constraints, *extra])
    if origin in (Union, types.UnionType):
        # None is the "not set" default; TOML and --set cannot write it, so it is not a choice worth naming.
        return " or ".join(describe_type(arg, constraints) for arg in args if arg is not type(None))
    if origin is Literal:
        return "one of: " + ", ".join(str(value) for value in args)
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set, frozenset):
        item = describe_type(args[0], [c for c in constraints if not _is_length(c)]) if args else "values"
        text = f"list of ({item})" if item.startswith("one of") else f"list of {item}"
        lengths = [f"at least {c.min_length}" for c in constraints if getattr(c, "min_length", None)]
        lengths += [f"at most {c.max_length}" for c in constraints if getattr(c, "max_length", None) is not None]
        return ", ".join([text, *lengths])
    if origin is dict or annotation is dict:
        key, value = args if args else (str, Any)
        return f"table of {describe_type(key)} to {describe_type(value)}"
    name = _TYPE_NAMES.get(annotation) or getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
    bounds = _bounds(constraints)
    return f"{name} {bounds}" if bounds else name


def _is_length(constraint) -> bool:
    return hasattr(constraint, "min_length") or hasattr(constraint, "max_length")


def _bounds(constraints) -> str:
    found = {}
    for constraint in constraints:
        for key in ("ge", "gt", "le", "lt"):
            if getattr(constraint, key, None) is not None:
                found[key] = getattr(constraint, key)
    if "ge" in found and "le" in found:
        return f"from {found['ge']} to {found['le']}"
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return ", ".join(f"{symbols[key]} {value}" for key, value in found.items())
