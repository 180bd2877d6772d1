"""YAML recipes: a whole compression run from one file (`edgewise run`, `edgewise recipe validate`), and
the search over them (`edgewise compress`).

Names are loaded on first use (PEP 562), so that importing a config from this package stays light.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"Recipe": "edgewise.recipe.config", "load_recipe": "edgewise.recipe.config",
            "run_recipe": "edgewise.recipe.run", "compress": "edgewise.recipe.compress",
            "CompressConfig": "edgewise.recipe.compress"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
