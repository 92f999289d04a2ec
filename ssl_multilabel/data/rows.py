"""Rows of model inputs (TensorFlow-free)."""

from __future__ import annotations

from typing import Any

import numpy as np


def take_rows(inputs: Any, rows: np.ndarray) -> Any:
    """The `rows` of `inputs`: an array's rows, or the items of a list of image paths.

    Example:
        >>> take_rows(["a.png", "b.png", "c.png"], np.array([2, 0]))
        ['c.png', 'a.png']
    """
    if isinstance(inputs, np.ndarray):
        return inputs[rows]
    return [inputs[i] for i in rows]
