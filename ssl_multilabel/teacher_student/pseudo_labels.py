"""Teacher pseudo-labels for the unknown cells of a partial multi-label table.

Noisy Student (Xie et al., CVPR 2020) for multi-label data, per label and per cell:

1. the *un-noised* teacher (`training=False`, no augmentation) scores every image
   (:func:`predict_scores`);
2. per-label thresholds decide which unknown cells become pseudo-positives (`score >= t_pos`)
   or pseudo-negatives (`score <= t_neg`); cells in between are low-confidence and stay unknown.
   Thresholds are fixed numbers or are chosen on held-out known cells for a target precision
   (:func:`thresholds_for_precision`);
3. targets are soft (the teacher's probability sharpened by a temperature; `T = 1`, the paper's
   setting, keeps it as is) or hard (1 / 0); the confidence of each filled cell is
   `max(p, 1 - p)`;
4. per-label positive balancing: at most `top_k` pseudo-positives per label (the most
   confident); a label with fewer gets its rows duplicated up to `ceil(top_k / count)` times,
   bounded by `max_duplication` (the paper duplicates images of under-filled classes).

Human (and implied and propagated) cells are never changed: the result is built with
`PartialLabels.fill`, which only writes unknown cells.

This module needs only numpy; :func:`predict_scores` imports TensorFlow when it is called.
"""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ssl_multilabel.labels import PartialLabels, Source
from ssl_multilabel.thresholds import check_per_label, precision_thresholds

logger = logging.getLogger(__name__)

__all__ = [
    "PseudoLabels",
    "predict_scores",
    "select_pseudo_labels",
    "thresholds_for_precision",
]


@dataclass(frozen=True, eq=False)
class PseudoLabels:
    """The outcome of one pseudo-labelling pass.

    Attributes:
        labels: the input table with the selected unknown cells filled, source `TEACHER` and
            weight = confidence `max(p, 1 - p)`; every other cell is the input's.
        scores: float32 `(n, L)`, the teacher's probabilities for every cell.
        positive_threshold: float64 `(L,)`; `inf` means "no pseudo-positive for this label".
        negative_threshold: float64 `(L,)`; `-inf` means "no pseudo-negative for this label".
        repeats: int64 `(n,)`, how many times each row appears in the pseudo-labelled stream
            (1, or more for rows carrying a pseudo-positive of an under-filled label).
        positive: bool `(n, L)`, the cells selected as pseudo-positives (`score >= t_pos`,
            after top-K); the other teacher cells are pseudo-negatives. With soft targets the
            value of a cell is the teacher's probability, so this mask, not the value, says
            which side of the thresholds a cell was selected on.
    """

    labels: PartialLabels
    scores: np.ndarray
    positive_threshold: np.ndarray
    negative_threshold: np.ndarray
    repeats: np.ndarray
    positive: np.ndarray

    @property
    def teacher_cells(self) -> np.ndarray:
        """bool `(n, L)`: the cells this pass filled."""
        return self.labels.known & (self.labels.source == Source.TEACHER)

    @property
    def teacher_table(self) -> PartialLabels:
        """The teacher cells alone (every other cell unknown): the pseudo-labelled stream's targets."""
        return self.labels.restrict(self.teacher_cells)

    def teacher_array(self) -> np.ndarray:
        """`(n, L)` float32 with the teacher cells' targets and `-1` everywhere else."""
        return np.where(self.teacher_cells, self.labels.values, np.float32(-1.0)).astype(np.float32)

    def summary(self) -> dict[str, Any]:
        """Counts per label: pseudo-positives, pseudo-negatives, still unknown, thresholds."""
        cells = self.teacher_cells
        positive = cells & self.positive
        return {
            "label_names": list(self.labels.label_names),
            "pseudo_positives": positive.sum(axis=0).tolist(),
            "pseudo_negatives": (cells & ~positive).sum(axis=0).tolist(),
            "still_unknown": (~self.labels.known).sum(axis=0).tolist(),
            "positive_threshold": [_json_float(t) for t in self.positive_threshold],
            "negative_threshold": [_json_float(t) for t in self.negative_threshold],
            "duplicated_rows": int((self.repeats > 1).sum()),
            "stream_rows": int(self.repeats[cells.any(axis=1)].sum()),
        }


def _json_float(value: float) -> float | str:
    value = float(value)
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


# === Validation helpers ===


def check_scores(scores: Any, shape: tuple[int, int] | None, name: str = "scores") -> np.ndarray:
    """`scores` as float64 probabilities, checked: 2-D, of `shape` (when given), every value in [0, 1]
    (the one check of score tables, also used by `ssl_multilabel.labeling`)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D (n_samples, n_labels); got shape {scores.shape}.")
    if shape is not None and scores.shape != shape:
        raise ValueError(f"`{name}` has shape {scores.shape}; expected {shape} (one score per cell of `labels`).")
    bad = ~(np.isfinite(scores) & (scores >= 0) & (scores <= 1))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"`{name}` row {row}, column {col}: expected a probability in [0, 1]; got "
            f"{float(scores[row, col])!r}. Pass sigmoid outputs, not logits."
        )
    return scores


def _check_labels(labels: Any, name: str = "labels") -> PartialLabels:
    if not isinstance(labels, PartialLabels):
        raise TypeError(f"Argument `{name}` must be a PartialLabels. Received: {type(labels).__name__}")
    return labels


# === Thresholds ===


def thresholds_for_precision(
    labels: PartialLabels | np.ndarray,
    scores: np.ndarray,
    target_precision: float | Sequence[float] = 0.9,
    min_selected: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-label thresholds chosen on held-out known cells for a target precision.

    A thin wrapper of `ssl_multilabel.thresholds.precision_thresholds` (which propagation's fill
    uses too) that also checks `scores` are probabilities. For label `j`, over its known cells
    (positive when the value is `>= 0.5`): the positive threshold is the smallest score `t` such
    that at least `min_selected` cells score `>= t` and the share of positives among them is
    `>= target_precision`; the negative threshold the largest score `t` below it such that at
    least `min_selected` cells score `<= t` and the share of negatives among them is
    `>= target_precision`. A label whose held-out cells hold no negative gets no positive
    threshold (`inf`: on positives only every cut has precision 1), one whose cells hold no
    positive no negative threshold (`-inf`); so does a label where no cut reaches the target.

    Use scores of a model on cells it was *not* trained on (a validation split); on its own
    training cells a teacher looks more precise than it is.

    Args:
        labels: held-out table (or `(n, L)` array with `-1` or NaN for unknown).
        scores: `(n, L)` teacher probabilities for the same rows.
        target_precision: a float in (0, 1], or one per label.
        min_selected: the least number of held-out cells a threshold must select.

    Returns:
        `(positive_threshold, negative_threshold)`, two float64 arrays `(L,)`.

    Example:
        >>> y = np.array([[1], [1], [0], [0]], "float32")
        >>> s = np.array([[0.9], [0.6], [0.7], [0.1]])
        >>> pos, neg = thresholds_for_precision(y, s, target_precision=1.0)
        >>> float(pos[0]), float(neg[0])
        (0.9, 0.1)
    """
    shape = labels.known.shape if isinstance(labels, PartialLabels) else np.shape(labels)
    scores = check_scores(scores, shape if len(shape) == 2 else None)
    return precision_thresholds(labels, scores, target_precision, min_selected=min_selected)


# === Selection ===


def select_pseudo_labels(
    labels: PartialLabels,
    scores: np.ndarray,
    *,
    positive_threshold: float | Sequence[float] | np.ndarray = 0.9,
    negative_threshold: float | Sequence[float] | np.ndarray = 0.1,
    soft: bool = True,
    temperature: float = 1.0,
    top_k: int | None = None,
    max_duplication: int = 4,
    rows: np.ndarray | None = None,
) -> PseudoLabels:
    """Fill the confident unknown cells of `labels` with the teacher's predictions.

    An unknown cell `(i, j)` becomes a pseudo-positive when `scores[i, j] >= positive_threshold[j]`
    and a pseudo-negative when `scores[i, j] <= negative_threshold[j]`; any other cell stays
    unknown. Known cells (human, implied, propagated) are never changed. With `top_k`, label `j`
    keeps only its `top_k` highest-scoring pseudo-positives (ties broken by row order); the rest
    stay unknown, and if it has `0 < c < top_k` of them, their rows are repeated
    `min(max_duplication, ceil(top_k / c))` times in the pseudo-labelled stream (a row takes the
    largest factor among its labels).

    Args:
        labels: the current table (its known cells are kept as they are).
        scores: `(n, L)` probabilities of the un-noised teacher.
        positive_threshold: a float or one per label, in [0, 1] or `inf` (no positives).
        negative_threshold: a float or one per label, in [0, 1] or `-inf` (no negatives); must
            be below `positive_threshold` for every label.
        soft: soft targets `sigmoid(logit(p) / temperature)` (the paper's default, `T = 1`
            keeps `p`) or hard targets 1 / 0.
        temperature: `> 0`, only for soft targets.
        top_k: at most this many pseudo-positives per label, or None (no balancing).
        max_duplication: the largest repeat factor of a row (`>= 1`; 1 disables duplication).
        rows: bool `(n,)`, the rows that may be pseudo-labelled (default every row), e.g. without
            the rows held out for validation, so that they take no `top_k` slot.

    Returns:
        A `PseudoLabels`; its `labels` carry source `TEACHER` and weight `max(p, 1 - p)` on the
        filled cells.

    Example:
        >>> table = PartialLabels.from_array([[1, -1], [-1, -1]])
        >>> s = np.array([[0.2, 0.95], [0.5, 0.05]])
        >>> out = select_pseudo_labels(table, s, soft=False)
        >>> out.labels.to_array().tolist()
        [[1.0, 1.0], [-1.0, 0.0]]
    """
    labels = _check_labels(labels)
    scores = check_scores(scores, labels.known.shape)
    n, n_labels = scores.shape
    pos_t = check_per_label(positive_threshold, n_labels, "positive_threshold", 0.0, np.inf)
    neg_t = check_per_label(negative_threshold, n_labels, "negative_threshold", -np.inf, 1.0)
    overlap = neg_t >= pos_t
    if overlap.any():
        j = int(np.flatnonzero(overlap)[0])
        raise ValueError(
            f"`negative_threshold` must be below `positive_threshold` for every label; label "
            f"{labels.label_names[j]!r} has negative {neg_t[j]!r} >= positive {pos_t[j]!r}."
        )
    if not isinstance(soft, bool):
        raise TypeError(f"Argument `soft` must be a bool. Received: soft={soft!r}")
    try:
        temperature = float(temperature)
    except (TypeError, ValueError):
        raise TypeError(f"Argument `temperature` must be a float > 0. Received: temperature={temperature!r}") from None
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"Argument `temperature` must be a finite float > 0. Received: temperature={temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1):
        raise ValueError(f"Invalid value for argument `top_k`. Expected None or an int >= 1. Received: top_k={top_k!r}")
    if isinstance(max_duplication, bool) or not isinstance(max_duplication, numbers.Integral) or max_duplication < 1:
        raise ValueError(
            f"Invalid value for argument `max_duplication`. Expected an int >= 1. Received: max_duplication={max_duplication!r}"
        )

    unknown = ~labels.known
    if rows is not None:
        rows = np.asarray(rows)
        if rows.dtype != bool or rows.shape != (n,):
            raise ValueError(f"Invalid value for argument `rows`. Expected a bool array of shape ({n},). "
                             f"Received {rows.dtype} of shape {rows.shape}.")
        unknown &= rows[:, None]
    positive = unknown & (scores >= pos_t)
    negative = unknown & (scores <= neg_t)
    repeats = np.ones(n, dtype=np.int64)
    if top_k is not None:
        for j in range(n_labels):
            rows = np.flatnonzero(positive[:, j])
            if rows.size > top_k:
                # Most confident first; a stable sort keeps row order among equal scores.
                keep = rows[np.argsort(-scores[rows, j], kind="stable")[:top_k]]
                positive[:, j] = False
                positive[keep, j] = True
            elif rows.size:
                factor = min(int(max_duplication), math.ceil(top_k / rows.size))
                repeats[rows] = np.maximum(repeats[rows], factor)

    if soft:
        if temperature == 1.0:
            target = scores
        else:
            clipped = np.clip(scores, 1e-7, 1 - 1e-7)
            target = 1.0 / (1.0 + np.exp(-np.log(clipped / (1 - clipped)) / temperature))
    else:
        target = (scores >= pos_t).astype(np.float64)
    take = positive | negative
    filled = labels.fill(
        np.where(take, target, -1.0),
        np.maximum(scores, 1.0 - scores),
        source=Source.TEACHER,
    )
    result = PseudoLabels(
        labels=filled,
        scores=scores.astype(np.float32),
        positive_threshold=pos_t,
        negative_threshold=neg_t,
        repeats=repeats,
        positive=positive,
    )
    logger.info(
        "Pseudo-labels: %d positive and %d negative cells filled, %d unknown cells left, %d rows duplicated.",
        int(positive.sum()), int(negative.sum()), int((~filled.known).sum()), int((repeats > 1).sum()),
    )
    return result


# === Teacher scores ===


def predict_scores(
    model: Any,
    images: np.ndarray,
    *,
    batch_size: int = 128,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    from_logits: bool | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """The un-noised teacher's probabilities for every image: `model(x, training=False)`.

    TensorFlow is imported only when this function is called.

    No augmentation, dropout or stochastic depth is active: the batches come from
    `make_dataset(images, augment=None, shuffle=False)` and the model is called in inference
    mode. Images are float32 in [0, 255] as for training.

    Args:
        model: a Keras model mapping images to `(batch, L)` probabilities (or logits).
        images: an array `(n, H, W[, C])` or a sequence of image paths.
        batch_size: prediction batch size.
        image_size: passed to `make_dataset` (resize), None keeps the size.
        channels: passed to `make_dataset`.
        from_logits: apply a sigmoid to the model's outputs; None detects logits from the
            model's `scores` layer (`ssl_multilabel.models.outputs_logits`).
        max_pixels: passed to `make_dataset` (None: its default limit, `DEFAULT_MAX_PIXELS`).

    Returns:
        float32 `(n, L)` probabilities, rows in the order of `images`.

    Example:
        >>> scores = predict_scores(teacher, images)  # doctest: +SKIP
    """
    from ssl_multilabel.data.pipeline import DEFAULT_MAX_PIXELS, make_dataset

    if from_logits is None:
        from ssl_multilabel.models import outputs_logits

        from_logits = outputs_logits(model)
    ds = make_dataset(images, None, image_size=image_size, channels=channels, batch_size=batch_size,
                      shuffle=False, augment=None, max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
    # `predict` runs the model in inference mode (training=False: no dropout, no stochastic
    # depth) and reuses one traced function per model across calls.
    scores = np.asarray(model.predict(ds, verbose=0), dtype=np.float32)
    if from_logits:
        scores = (1.0 / (1.0 + np.exp(-scores.astype(np.float64)))).astype(np.float32)
    return np.clip(scores, 0.0, 1.0)
