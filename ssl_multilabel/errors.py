"""The package's user-error type, in a module of its own so that every layer can raise it.

Nothing here imports anything of the package: the run-directory reader, the report and the
recipes all raise `RecipeError` without importing one another.
"""

from __future__ import annotations

__all__ = ["RecipeError"]


class RecipeError(ValueError):
    """A recipe, a step parameter, an override or a run directory is invalid (a user error)."""
