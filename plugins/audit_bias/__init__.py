"""Built-in `bias` analyses (being built: see the bias issue)."""

import audit


@audit.hookimpl
def register_analyses(register):
    pass
