"""What the core itself registers with the plugin manager: the default model loaders and compliance frameworks.

Both are ``trylast`` hook implementations, so a plugin can claim any model
format first, or register a framework of the same id that replaces ours.
"""

from __future__ import annotations

from pathlib import Path

from audit.hookspecs import hookimpl

PLUGIN_NAME = "audit.builtins"


@hookimpl(trylast=True)
def load_model(path, options):
    """The ONNX and PyTorch loaders; None for any other suffix."""
    from audit.models import load_builtin

    return load_builtin(Path(path), options)


@hookimpl(trylast=True)
def register_frameworks(register):
    from audit.report.frameworks import BUILTIN_FRAMEWORKS

    for framework in BUILTIN_FRAMEWORKS:
        register(framework["id"], framework["title"], framework["requirements"])
