"""Partial-label protocols: hide cells of a fully known label table, reproducibly.

These simulate the ways labels come partial in practice (see ``BENCHMARKS.md``):

- :func:`random_cells` -- every (sample, label) cell is known independently with probability ``p``.
- :func:`labeled_subset` -- a fraction ``f`` of the samples is fully labeled, the rest fully unknown.
- :func:`single_positive` -- every sample keeps exactly one known positive, drawn uniformly
  among its positives; every other cell is unknown (Cole et al. 2021).

Each takes a fully known :class:`~ssl_multilabel.labels.PartialLabels` and a seed and returns
a new table in which the hidden cells are unknown; known cells keep their true value, and
label names, row ids and exclusive groups are kept. The cells a protocol hid are
``truth.known & ~partial.known``; hidden-cell scores are computed on those.
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings

import numpy as np

from ssl_multilabel.labels import PartialLabels

logger = logging.getLogger(__name__)

__all__ = ["random_cells", "labeled_subset", "single_positive"]

#: A known cell counts as positive for :func:`single_positive` when its value is at least this.
POSITIVE_THRESHOLD = 0.5

SeedLike = int | np.random.Generator


def _rng(seed: SeedLike) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"Argument `seed` must be an int or a numpy.random.Generator. Received: seed={seed!r} "
            f"of type {type(seed).__name__}"
        )
    return np.random.default_rng(int(seed))


def _fraction(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Argument `{name}` must be a number in [0, 1]. Received: {name}={value!r} of type {type(value).__name__}")
    value = float(value)
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ValueError(f"Argument `{name}` must be in [0, 1]. Received: {name}={value!r}")
    return value


def _fully_known_array(labels: object, protocol: str) -> np.ndarray:
    """The boundary array of ``labels`` after checking that every cell is known."""
    if not isinstance(labels, PartialLabels):
        raise TypeError(
            f"{protocol}: argument `labels` must be a PartialLabels (use PartialLabels.from_array(Y) for an "
            f"array). Received: {type(labels).__name__}"
        )
    known = np.asarray(labels.known, dtype=bool)
    if not known.all():
        n_unknown = int((~known).sum())
        row = int(np.flatnonzero(~known.all(axis=1))[0])
        raise ValueError(
            f"{protocol}: argument `labels` must be fully known (the protocol hides cells of a complete table); "
            f"received {n_unknown} unknown cells, the first in row {row}."
        )
    return np.asarray(labels.to_array(), dtype=np.float32)


def _with_hidden(labels: PartialLabels, y: np.ndarray, keep: np.ndarray) -> PartialLabels:
    out = np.where(keep, y, np.float32(-1.0)).astype(np.float32)
    return PartialLabels.from_array(
        out,
        label_names=labels.label_names,
        ids=labels.ids,
        exclusive_groups=labels.exclusive_groups,
    )


def random_cells(labels: PartialLabels, p: float, seed: SeedLike = 0) -> PartialLabels:
    """Keep every cell known independently with probability ``p``; hide the others.

    Args:
        labels: a fully known table.
        p: probability that a cell stays known, in ``[0, 1]``.
        seed: int seed or ``numpy.random.Generator``.

    Returns:
        A new ``PartialLabels`` of the same shape; kept cells have their true value.

    Example:
        >>> truth = PartialLabels.from_array(np.eye(3, dtype=np.float32))
        >>> partial = random_cells(truth, p=0.5, seed=0)
        >>> partial.to_array().shape
        (3, 3)
    """
    p = _fraction(p, "p")
    y = _fully_known_array(labels, "random_cells")
    keep = _rng(seed).random(y.shape) < p
    return _with_hidden(labels, y, keep)


def labeled_subset(labels: PartialLabels, f: float, seed: SeedLike = 0) -> PartialLabels:
    """Keep ``round(f * n)`` samples fully labeled (chosen at random); hide every cell of the rest.

    Rounding is half up, so ``f = 0.5`` of 5 samples keeps 3.

    Args:
        labels: a fully known table with ``n`` samples.
        f: fraction of samples kept labeled, in ``[0, 1]``.
        seed: int seed or ``numpy.random.Generator``.

    Returns:
        A new ``PartialLabels``: each row is either all known (true values) or all unknown.

    Example:
        >>> truth = PartialLabels.from_array(np.eye(4, dtype=np.float32))
        >>> int(labeled_subset(truth, f=0.5, seed=0).known.all(axis=1).sum())
        2
    """
    f = _fraction(f, "f")
    y = _fully_known_array(labels, "labeled_subset")
    n = y.shape[0]
    n_labeled = min(n, int(math.floor(f * n + 0.5)))
    rows = _rng(seed).permutation(n)[:n_labeled]
    keep = np.zeros(y.shape, dtype=bool)
    keep[rows] = True
    return _with_hidden(labels, y, keep)


def single_positive(labels: PartialLabels, seed: SeedLike = 0) -> PartialLabels:
    """Keep one positive per sample, drawn uniformly among its positives; hide every other cell.

    A cell is positive when its value is ``>= 0.5``. A sample without any positive has
    nothing to keep: its row becomes all unknown, and a ``UserWarning`` gives the count of
    such rows.

    Args:
        labels: a fully known table.
        seed: int seed or ``numpy.random.Generator``.

    Returns:
        A new ``PartialLabels`` with at most one known cell per row, a true positive.

    Example:
        >>> truth = PartialLabels.from_array(np.array([[1, 1, 0], [0, 0, 1]], dtype=np.float32))
        >>> single_positive(truth, seed=0).known.sum(axis=1).tolist()
        [1, 1]
    """
    y = _fully_known_array(labels, "single_positive")
    positive = y >= POSITIVE_THRESHOLD
    # i.i.d. uniform keys, -1 on negatives: the argmax is uniform among a row's positives.
    keys = _rng(seed).random(y.shape)
    keys[~positive] = -1.0
    pick = np.argmax(keys, axis=1) if y.shape[1] else np.zeros(y.shape[0], dtype=np.int64)
    has_positive = positive.any(axis=1)
    keep = np.zeros(y.shape, dtype=bool)
    rows = np.flatnonzero(has_positive)
    keep[rows, pick[rows]] = True
    n_empty = int((~has_positive).sum())
    if n_empty:
        warnings.warn(
            f"single_positive: {n_empty} of {y.shape[0]} samples have no positive label; their rows are left "
            "all unknown.",
            UserWarning,
            stacklevel=2,
        )
    return _with_hidden(labels, y, keep)
