"""YAML recipes: a whole compression run from one file (`edgewise run`, `edgewise recipe validate`)."""

from edgewise.recipe.config import Recipe, load_recipe
from edgewise.recipe.run import run_recipe

__all__ = ["Recipe", "load_recipe", "run_recipe"]
