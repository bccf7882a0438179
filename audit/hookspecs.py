"""The plugin contract: pluggy markers and the hook specifications of project `audit`."""

import pluggy

hookspec = pluggy.HookspecMarker("audit")
hookimpl = pluggy.HookimplMarker("audit")


@hookspec
def register_analyses(register):
    """Register analysis classes.

    Call ``register(AnalysisClass)`` once for each :class:`audit.Analysis`
    subclass the plugin provides. Names must be unique across all plugins;
    a clash is an error that names both plugins.
    """


@hookspec(firstresult=True)
def load_model(path, options):
    """Return an :class:`audit.models.Model` for ``path``, or ``None``.

    ``options`` is a :class:`audit.models.LoadOptions` (device, batch size,
    output kind, trust in pickled code). The first non-``None`` result wins;
    the built-in ONNX and PyTorch loaders are registered ``trylast`` so a
    plugin can take over any format.
    """


@hookspec
def register_commands(app):
    """Add commands to the Typer ``app`` of the ``audit`` CLI."""


@hookspec
def register_frameworks(register):
    """Register compliance frameworks.

    Call ``register(framework_id, title, requirements)`` where
    ``requirements`` maps a requirement id (matched against finding tags as
    ``framework_id:requirement_id``) to its text.
    """
