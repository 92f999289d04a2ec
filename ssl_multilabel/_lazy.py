"""Lazy public names for a package, so importing it does not import TensorFlow until needed."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """Module-level `__getattr__`, `__dir__` and `__all__` for `package` (PEP 562).

    Args:
        package: the package's `__name__`.
        exports: public name -> submodule (relative to `package`) that defines it.

    Returns:
        `(__getattr__, __dir__, __all__)` to assign in the package's `__init__`.
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
            vars(sys.modules[package])[name] = value  # later look-ups skip __getattr__
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__, sorted(exports)
