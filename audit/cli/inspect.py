"""`audit plugins` and `audit analyses`: what is installed, without importing torch."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins)
    app.command("analyses")(analyses)


def plugins(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
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


def analyses(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
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
            "description": cls.description(), "options": option_fields(cls.Options),
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
