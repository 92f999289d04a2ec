"""The package's user-error type, in a module of its own so that every layer can raise it, and
the advice for photos TensorFlow cannot decode, which the image check and the CLI both give.

Nothing here imports anything of the package: the run-directory reader, the report and the
recipes all raise `RecipeError` without importing one another.
"""

from __future__ import annotations

__all__ = ["HEIF_ADVICE", "RecipeError"]

#: HEIC / HEIF (the iPhone's default format) and AVIF stills.
HEIF_ADVICE = ("TensorFlow cannot decode HEIC/HEIF or AVIF photos (the iPhone's default format): convert them to "
               "JPEG (on a Mac: sips -s format jpeg IN --out OUT)")


class RecipeError(ValueError):
    """A recipe, a step parameter, an override or a run directory is invalid (a user error)."""
