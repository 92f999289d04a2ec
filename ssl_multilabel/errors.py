"""The package's user-error type, in a module of its own so that every layer can raise it, and
the advice for photos TensorFlow cannot decode, which the image check and the CLI both give, and
the file endings that `predict` scores and the recipes' unused-image note counts.

Nothing here imports anything of the package: the run-directory reader, the report and the
recipes all raise `RecipeError` without importing one another.
"""

from __future__ import annotations

__all__ = ["HEIF_ADVICE", "HEIF_SUFFIXES", "IMAGE_SUFFIXES", "RecipeError"]

#: File endings of the images `ssl-multilabel predict` scores. WebP: TensorFlow's decoder reads it
#: (as the training pipeline does); where it cannot, the check before the model loads names the files.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".gif", ".webp")
#: iPhone photos (HEIC / HEIF) and AVIF stills: TensorFlow cannot decode them.
HEIF_SUFFIXES = (".heic", ".heif", ".avif")

#: HEIC / HEIF (the iPhone's default format) and AVIF stills.
HEIF_ADVICE = ("TensorFlow cannot decode HEIC/HEIF or AVIF photos (the iPhone's default format): convert them to "
               "JPEG (on a Mac: sips -s format jpeg IN --out OUT)")


class RecipeError(ValueError):
    """A recipe, a step parameter, an override or a run directory is invalid (a user error)."""
