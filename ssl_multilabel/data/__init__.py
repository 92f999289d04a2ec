"""Images to tf.data: the dataset builder and the check for bad image files.

Names are resolved lazily so that importing this package does not import TensorFlow until a
name is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "make_dataset": "pipeline",
    "find_bad_images": "pipeline",
    "BadImage": "pipeline",
    "BadImageError": "pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
