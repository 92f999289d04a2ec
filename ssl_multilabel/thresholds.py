"""Per-label thresholds that turn scores into filled cells, fitted on held-out known cells.

Propagation's fill (`propagation.fill_unknown`) and the teacher's pseudo-labels
(`teacher_student.select_pseudo_labels`) both fill an unknown cell as positive when its score is
`>= t_pos` and as negative when it is `<= t_neg`, with one pair `(t_pos, t_neg)` per label. This
module chooses those pairs, once for both, on known cells whose scores are out-of-sample (held
out from the seeds, or a validation split the teacher did not train on):

- `precision_thresholds`: `t_pos` is the lowest score at which the cells scoring `>= t_pos` are
  positive with at least the target precision; `t_neg` the highest score below `t_pos` at which
  the cells scoring `<= t_neg` are negative with at least the target precision (negative
  predictive value). Built on scikit-learn's `precision_recall_curve`. With `confidence`, a cut
  must reach the target with that confidence, not only on the cells measured: the one-sided
  Clopper-Pearson lower bound of its precision must be `>= target`. A measured precision rests on
  the held-out cells above the cut; with few of them (4 of 4 right meets any target) the lowest
  cut that passes is an optimistic pick, and the filled cells fall short of the target.
- `best_f1_thresholds`: one cut per label at the best F1; every cell is then either side of it.

A precision needs both classes: on held-out cells that are all positive, every cut has precision
1 and the lowest one would make every cell a pseudo-positive (single positive labels). So a label
whose held-out cells hold no negative gets no positive threshold (`inf`), and one whose held-out
cells hold no positive gets no negative threshold (`-inf`); the labels concerned are logged.
"""

from __future__ import annotations

import logging
import numbers
from typing import Any, Sequence

import numpy as np
from scipy.stats import beta
from sklearn.metrics import precision_recall_curve

from ssl_multilabel.labels import PartialLabels, unknown_mask

__all__ = ["best_f1_thresholds", "precision_thresholds"]

logger = logging.getLogger(__name__)

# A known cell counts as positive when its value is at least this (soft filled cells).
_POSITIVE = 0.5
# Precisions are ratios of counts; a target such as 0.9 must accept 9 / 10 however it rounds.
_TOLERANCE = 1e-12


def precision_thresholds(
    labels: PartialLabels | np.ndarray,
    scores: np.ndarray,
    target_precision: float | Sequence[float] = 0.9,
    *,
    cells: np.ndarray | None = None,
    min_selected: int = 1,
    confidence: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-label `(t_pos, t_neg)` for a target precision on held-out known cells.

    For label `j`, over its known cells (in `cells`, when given), a cell being positive when its
    value is `>= 0.5`:

    - `t_pos[j]` is the smallest score `t` (among the cells' scores) such that at least
      `min_selected` cells score `>= t` and the share of positives among them is
      `>= target_precision`; `inf` when there is none, or when the cells hold no negative.
    - `t_neg[j]` is the largest score `t < t_pos[j]` such that at least `min_selected` cells score
      `<= t` and the share of negatives among them is `>= target_precision`; `-inf` when there
      is none, or when the cells hold no positive. No score is then both `>= t_pos` and
      `<= t_neg`.

    Args:
        labels: a `PartialLabels`, or an `(n, L)` array with `-1` or NaN for unknown cells.
        scores: `(n, L)` finite scores (probabilities of positive) of a model that did not train
            on these cells; on its own training cells a model looks more precise than it is.
        target_precision: a float in (0, 1], or one per label.
        cells: optional bool `(n, L)`: only these known cells are used (the held-out ones).
        min_selected: the least number of cells a threshold must select, `>= 1`.
        confidence: None: a cut passes when the share of positives among the cells it selects
            reaches the target. A float in (0, 1): when the one-sided Clopper-Pearson lower
            bound of that share, at this confidence level, reaches it: `k` positives among `n`
            selected cells pass when `P(Binomial(n, target) >= k) <= 1 - confidence`. With `k = n`
            that needs `n >= log(1 - confidence) / log(target)` cells (22 for 0.9 at 0.9).

    Returns:
        `(t_pos, t_neg)`, two float64 arrays `(L,)`.

    Example:
        >>> y = np.array([[1], [1], [0], [1], [0], [0]])
        >>> s = np.array([[0.95], [0.8], [0.7], [0.6], [0.3], [0.1]])
        >>> t_pos, t_neg = precision_thresholds(y, s, 0.75)
        >>> float(t_pos[0]), float(t_neg[0])
        (0.6, 0.3)
        >>> precision_thresholds(y, s, 0.75, confidence=0.9)  # 3 of 3 right is too little evidence
        (array([inf]), array([-inf]))
    """
    known, positive, scores, names = _fit_cells(labels, scores, cells)
    n_labels = known.shape[1]
    target = _check_target(target_precision, n_labels)
    if isinstance(min_selected, bool) or not isinstance(min_selected, numbers.Integral) or min_selected < 1:
        raise ValueError(
            f"Invalid value for argument `min_selected`. Expected an int >= 1. Received: min_selected={min_selected!r}"
        )
    check_confidence(confidence)
    t_pos = np.full(n_labels, np.inf)
    t_neg = np.full(n_labels, -np.inf)
    for j, s, y in _two_class_labels(known, positive, scores, names):
        t_pos[j] = _lowest_precise_cut(y, s, target[j], min_selected, confidence)
        # The negative side is the positive side of the mirrored problem (-score, not y).
        t_neg[j] = -_lowest_precise_cut(~y, -s, target[j], min_selected, confidence, above=-t_pos[j])
    shown = min(len(t_pos), 10)  # 300 labels made one line of 3,750 characters
    logger.info(
        "Thresholds for precision %s%s: positive %s, negative %s%s.", target_precision,
        "" if confidence is None else f" at confidence {confidence:g}",
        np.round(t_pos[:shown], 4).tolist(), np.round(t_neg[:shown], 4).tolist(),
        f" (the first {shown} of {len(t_pos)} labels)" if shown < len(t_pos) else "",
    )
    return t_pos, t_neg


def best_f1_thresholds(
    labels: PartialLabels | np.ndarray,
    scores: np.ndarray,
    *,
    cells: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-label `(t_pos, t_neg)` at the best F1 on held-out known cells: every cell is filled.

    `t_pos[j]` is the score cut `score >= t` of highest F1 on the known cells of label `j` (the
    highest such cut on ties) and `t_neg[j]` the largest float below it, so every cell falls on
    one side. A label whose cells hold only one class gets `(inf, -inf)` (no fill), as in
    `precision_thresholds`.

    Args:
        labels: a `PartialLabels`, or an `(n, L)` array with `-1` or NaN for unknown cells.
        scores: `(n, L)` finite scores.
        cells: optional bool `(n, L)`: only these known cells are used.

    Returns:
        `(t_pos, t_neg)`, two float64 arrays `(L,)`.

    Example:
        >>> y = np.array([[1], [1], [0], [1], [0], [0]])
        >>> s = np.array([[0.9], [0.8], [0.7], [0.6], [0.2], [0.1]])
        >>> float(best_f1_thresholds(y, s)[0][0])
        0.6
    """
    known, positive, scores, names = _fit_cells(labels, scores, cells)
    n_labels = known.shape[1]
    t_pos = np.full(n_labels, np.inf)
    t_neg = np.full(n_labels, -np.inf)
    for j, s, y in _two_class_labels(known, positive, scores, names):
        _, recall, cuts = precision_recall_curve(y, s)
        # F1 = 2 TP / (selected + positives) from counts, so that equal F1s compare equal.
        true_positives = np.rint(recall[:-1] * y.sum())
        selected = s.size - np.searchsorted(np.sort(s), cuts, side="left")
        f1 = 2 * true_positives / (selected + y.sum())
        best = np.flatnonzero(f1 == f1.max())[-1]  # cuts ascend: the last is the highest
        t_pos[j] = cuts[best]
        t_neg[j] = np.nextafter(t_pos[j], -np.inf)
    return t_pos, t_neg


# === Helpers ===


def _two_class_labels(
    known: np.ndarray, positive: np.ndarray, scores: np.ndarray, names: list[Any]
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """`(j, scores, is_positive)` on the fitted cells of every label holding both classes.

    The other labels get no threshold: those without a fitted cell and those with one class
    only are logged (`_log_refusals`).
    """
    fit, empty, one_class = [], [], []
    for j in range(known.shape[1]):
        s, y = scores[known[:, j], j], positive[known[:, j], j]
        if s.size == 0:
            empty.append(names[j])
        elif y.all() or not y.any():
            one_class.append(names[j])
        else:
            fit.append((j, s, y))
    _log_refusals(empty, one_class)
    return fit


def check_per_label(value: Any, n_labels: int, name: str, low: float, high: float) -> np.ndarray:
    """`value` (a float, or one per label) as an `(n_labels,)` float array, each in [low, high]
    (inf allowed at the open ends); a ValueError naming the argument `name` otherwise."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        array = np.full(n_labels, float(array))
    if array.shape != (n_labels,):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a float or one float per label "
            f"({n_labels}). Received shape {array.shape}."
        )
    bad = np.isnan(array) | (array < low) | (array > high)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"Invalid value for argument `{name}`: label {j} has {float(array[j])!r}; expected a "
            f"value in [{low}, {high}]."
        )
    return array


def check_confidence(confidence: Any, name: str = "confidence") -> None:
    """Raise unless `confidence` is None or a float in (0, 1) (a confidence level)."""
    if confidence is None:
        return
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not 0 < confidence < 1:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected None or a float in (0, 1). Received: {name}={confidence!r}"
        )


def _lowest_precise_cut(y: np.ndarray, s: np.ndarray, target: float, min_selected: int, confidence: float | None,
                        above: float = -np.inf) -> float:
    """The lowest score `t > above` at which the cells scoring `>= t` reach `target` precision
    (its Clopper-Pearson lower bound at `confidence`, when given)."""
    precision, _, cuts = precision_recall_curve(y, s)
    precision = precision[:-1]  # the last point (precision 1, recall 0) has no cut
    selected = s.size - np.searchsorted(np.sort(s), cuts, side="left")
    if confidence is not None:
        hits = np.rint(precision * selected)
        # The exact lower bound: the p with P(Binomial(n, p) >= k) = 1 - confidence (0 when k = 0).
        precision = np.where(hits > 0, beta.ppf(1 - confidence, np.maximum(hits, 1), selected - hits + 1), 0.0)
    ok = (precision >= target - _TOLERANCE) & (selected >= min_selected) & (cuts > above)
    return float(cuts[np.flatnonzero(ok)[0]]) if ok.any() else np.inf


def _fit_cells(
    labels: Any, scores: Any, cells: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any]]:
    """(known cells to fit on, positive cells, float64 scores, label names) after checking them."""
    if isinstance(labels, PartialLabels):
        known, values, names = labels.known, labels.values, list(labels.label_names)
    else:
        array = np.asarray(labels)
        if array.ndim != 2:
            raise ValueError(
                f"Invalid value for argument `labels`. Expected a PartialLabels or a 2-D array "
                f"(n_samples, n_labels). Received shape {array.shape}."
            )
        known = ~unknown_mask(array, "labels")
        values = np.where(known, array, 0.0)
        names = list(range(array.shape[1]))
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != known.shape:
        raise ValueError(
            f"Invalid value for argument `scores`. Expected shape {known.shape} (one score per cell of "
            f"`labels`). Received shape {scores.shape}."
        )
    bad = ~np.isfinite(scores)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"Invalid value for argument `scores`: row {row}, column {col} is {float(scores[row, col])!r}; "
            "expected finite scores."
        )
    if cells is not None:
        cells = np.asarray(cells)
        if cells.shape != known.shape or cells.dtype != bool:
            raise ValueError(
                f"Invalid value for argument `cells`. Expected a bool array of shape {known.shape}. "
                f"Received {cells.dtype} of shape {cells.shape}."
            )
        known = known & cells
    return known, known & (values >= _POSITIVE), scores, names


def _check_target(target_precision: Any, n_labels: int) -> np.ndarray:
    try:
        target = np.asarray(target_precision, dtype=np.float64)
    except (TypeError, ValueError):
        target = np.array(np.nan)
    if target.ndim == 0:
        target = np.full(n_labels, float(target))
    if target.shape != (n_labels,) or not ((target > 0) & (target <= 1)).all():
        raise ValueError(
            f"Invalid value for argument `target_precision`. Expected a float in (0, 1] or one per label "
            f"({n_labels}). Received: target_precision={target_precision!r}"
        )
    return target


def _log_refusals(empty: list[Any], one_class: list[Any]) -> None:
    if empty:
        logger.warning("Labels %s have no held-out known cell: they get no threshold (no fill).", empty)
    if one_class:
        logger.warning(
            "Labels %s have held-out cells of one class only: a precision cannot be measured without both "
            "classes, so they get no positive threshold without a negative cell and no negative threshold "
            "without a positive one.", one_class,
        )
