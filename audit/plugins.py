"""The plugin manager: entry points of group `audit`, each loaded on its own, and the registries."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from dataclasses import dataclass, field

import pluggy

from audit import hookspecs
from audit.analysis import Analysis, Options
from audit.errors import AuditError, first_line

ENTRY_POINT_GROUP = "audit"
LOAD_PLUGINS_ENV = "AUDIT_LOAD_PLUGINS"
BUILTINS = "audit.builtins"  # the core's own loaders and frameworks (audit/builtins.py), not listed as a plugin


@dataclass
class PluginInfo:
    name: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict:
        return {"name": self.name, "distribution": self.distribution, "version": self.version, "hooks": self.hooks, "error": self.error}


@dataclass
class Registered:
    """An analysis class and the plugin that registered it."""

    cls: type[Analysis]
    plugin: str
    distribution: str | None = None
    version: str | None = None


@dataclass
class Framework:
    id: str
    title: str
    requirements: dict[str, str]
    plugin: str


class AuditPluginManager(pluggy.PluginManager):
    """pluggy's manager plus what `audit plugins` reports: distributions and load errors."""

    def __init__(self):
        super().__init__("audit")
        self.add_hookspecs(hookspecs)
        self.load_errors: list[PluginInfo] = []
        self.distributions: dict[str, tuple[str, str]] = {}  # plugin name -> (dist, version)

    def load_entry_points(self, warn=None) -> None:
        only = os.environ.get(LOAD_PLUGINS_ENV)
        allowed = None if only is None else {_normalise(d) for d in only.split(",") if d.strip()}
        seen = set()
        for dist in importlib.metadata.distributions():
            dist_name = dist.metadata["Name"]
            if not dist_name or _normalise(dist_name) in seen:
                continue  # the same distribution visible twice on sys.path
            seen.add(_normalise(dist_name))
            if allowed is not None and _normalise(dist_name) not in allowed:
                continue
            for entry_point in dist.entry_points:
                if entry_point.group != ENTRY_POINT_GROUP:
                    continue
                if self.has_plugin(entry_point.name):
                    continue
                try:
                    module = entry_point.load()
                    self.register(module, name=entry_point.name)
                except Exception as error:  # noqa: BLE001 - a broken plugin must not stop the rest
                    message = f"{type(error).__name__}: {first_line(error, 300)}"
                    self.load_errors.append(PluginInfo(entry_point.name, dist_name, dist.version, [], message))
                    (warn or _warn)(f"Warning: plugin {entry_point.name!r} from {dist_name} {dist.version} failed to load ({message}); skipped")
                    continue
                self.distributions[entry_point.name] = (dist_name, dist.version)

    # -- listings ---------------------------------------------------------------
    def plugin_infos(self) -> list[PluginInfo]:
        infos = []
        for name, plugin in sorted(self.list_name_plugin(), key=lambda item: str(item[0])):
            if name == BUILTINS:
                continue
            dist, version = self.distributions.get(name, (None, None))
            hooks = sorted(impl.name for impl in self.get_hookcallers(plugin) or [])
            infos.append(PluginInfo(name, dist, version, hooks))
        return infos + list(self.load_errors)

    def _plugin_of(self, impl) -> tuple[str, str | None, str | None]:
        name = self.get_name(impl.plugin) or repr(impl.plugin)
        dist, version = self.distributions.get(name, (None, None))
        return name, dist, version

    def analyses(self, warn=None) -> dict[str, Registered]:
        """Every registered analysis by name; a name registered twice is an AuditError."""
        found: dict[str, Registered] = {}
        for impl in reversed(self.hook.register_analyses.get_hookimpls()):
            plugin, dist, version = self._plugin_of(impl)

            def register(cls, plugin=plugin, dist=dist, version=version):
                _check_analysis_class(cls, plugin)
                if cls.name in found and found[cls.name].cls is not cls:
                    raise AuditError(
                        f"analysis {cls.name!r} is registered twice: by plugin {found[cls.name].plugin!r} and by plugin {plugin!r}; "
                        "uninstall one, or limit plugins with AUDIT_LOAD_PLUGINS"
                    )
                found[cls.name] = Registered(cls, plugin, dist, version)

            try:
                impl.function(register=register)
            except AuditError:
                raise
            except Exception as error:  # noqa: BLE001 - one plugin's bug must not hide the others
                (warn or _warn)(f"Warning: plugin {plugin!r} failed in register_analyses ({type(error).__name__}: {error}); its analyses are skipped")
        return found

    def register_commands(self, app, warn=None) -> None:
        """Let each plugin add its commands; one that raises is reported in one line and skipped."""
        for impl in reversed(self.hook.register_commands.get_hookimpls()):
            plugin, _, _ = self._plugin_of(impl)
            try:
                impl.function(app=app)
            except Exception as error:  # noqa: BLE001 - a plugin's bug must not take `audit plugins` down with it
                (warn or _warn)(f"Warning: plugin {plugin!r} failed in register_commands ({type(error).__name__}: {error}); its commands are skipped")

    def frameworks(self, warn=None) -> dict[str, Framework]:
        found: dict[str, Framework] = {}
        for impl in reversed(self.hook.register_frameworks.get_hookimpls()):
            plugin, _, _ = self._plugin_of(impl)

            def register(framework_id, title, requirements, plugin=plugin):
                found[str(framework_id)] = Framework(str(framework_id), str(title), dict(requirements), plugin)

            try:
                impl.function(register=register)
            except Exception as error:  # noqa: BLE001
                (warn or _warn)(f"Warning: plugin {plugin!r} failed in register_frameworks ({type(error).__name__}: {error})")
        return found


def _check_analysis_class(cls, plugin: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Analysis)):
        raise AuditError(f"plugin {plugin!r} registered {cls!r}, which is not a subclass of audit.Analysis")
    if not cls.name or not isinstance(cls.name, str):
        raise AuditError(f"plugin {plugin!r}: analysis class {cls.__name__} has no name; set name = 'plugin.analysis'")
    if not (isinstance(cls.Options, type) and issubclass(cls.Options, Options)):
        raise AuditError(f"plugin {plugin!r}: {cls.__name__}.Options must subclass audit.Options")


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


_manager: AuditPluginManager | None = None


def get_plugin_manager(warn=None) -> AuditPluginManager:
    """The process-wide plugin manager, built on first use."""
    global _manager
    if _manager is None:
        from audit import builtins

        manager = AuditPluginManager()
        manager.register(builtins, name=BUILTINS)
        manager.load_entry_points(warn=warn)
        _manager = manager
    return _manager


def reset_plugin_manager() -> None:
    """Forget the manager, so the next use reloads entry points (tests use this)."""
    global _manager
    _manager = None
