"""Built-in `robustness` analyses (being built: see the robustness issue)."""

import audit


@audit.hookimpl
def register_analyses(register):
    pass
