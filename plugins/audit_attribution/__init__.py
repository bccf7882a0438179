"""Built-in `attribution` analyses (being built: see the attribution issue)."""

import audit


@audit.hookimpl
def register_analyses(register):
    pass
