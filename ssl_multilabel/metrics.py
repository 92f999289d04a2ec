"""Masked multi-label metrics: streaming Keras metrics and a one-shot `evaluate()`.

Conventions shared by everything here:

- `y_true` has shape `(n, L)` with `-1` or NaN for unknown cells (`labels.cell_masks`); known
  cells may hold soft targets in `[0, 1]`, which are **binarised at 0.5** (`y >= 0.5` is a
  positive). Unknown cells are ignored everywhere; any other value (`-0.5`, `2.0`) is an error.
- A score at or above `threshold` is a predicted positive (`y_score >= threshold`).
- Ranking metrics (mAP, mean ROC-AUC) are exact: per label they equal scikit-learn's
  `average_precision_score` and `roc_auc_score` on the known cells of that label, ties
  included. A label is *scored* only if it has at least one known positive and one known
  negative; other labels are left out of every macro mean and listed (`evaluate` returns them
  in `labels_left_out` and logs a warning). A mean over no scored label is 0.0, never NaN.
- Macro precision / recall / F1 are per-label values (a 0/0 counts as 0, scikit-learn's
  `zero_division=0`) averaged over the scored labels; micro values pool the counts of every
  known cell of every label.
- Optional `sample_weight` (`(n,)` per sample or `(n, L)` per cell) weights the cells as
  scikit-learn's `sample_weight` does; cells of weight 0 are ignored.

The streaming ranking metrics (`MaskedAveragePrecision`, `MaskedAUC`) keep every known
`(score, target, weight, label)` of the epoch in resizable `tf.Variable`s and compute the exact
values in `result()` (through `tf.numpy_function`, so they work under `model.fit` in graph
mode). Keras calls `result()` after every training step, so the cost per step is
`O(k log k)` in the number `k` of known cells seen so far in the epoch: fine for thousands of
samples; on large training sets prefer them as validation metrics. They need the TensorFlow
backend, a single device (no `tf.distribute` strategy) and `jit_compile=False` (the default
`"auto"` already disables XLA on CPU-only machines; pass `jit_compile=False` on GPU).

Example:
    >>> import numpy as np
    >>> y = np.array([[1, 1], [0, -1], [1, 1]], "float32")
    >>> s = np.array([[0.9, 0.2], [0.4, 0.8], [0.6, 0.7]], "float32")
    >>> summary, table = evaluate(y, s, label_names=["cat", "dog"])
    >>> summary["mAP"], summary["labels_left_out"]
    (1.0, ['dog'])
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import pandas as pd
from keras import ops

from ssl_multilabel.labels import cell_masks, unknown_mask
from ssl_multilabel.losses import check_targets

logger = logging.getLogger(__name__)

__all__ = [
    "MaskedAUC",
    "MaskedAveragePrecision",
    "MaskedF1Score",
    "MaskedPrecision",
    "MaskedRecall",
    "average_precision_and_auc",
    "evaluate",
]

_PACKAGE = "ssl_multilabel"


# === Exact ranking metrics in numpy ===


def _binary_ap_auc(target: np.ndarray, score: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """AP and ROC-AUC of one label, computed as scikit-learn does (ties grouped per threshold).

    `target` is 0/1, all weights are > 0 and both classes are present.
    """
    order = np.argsort(-score, kind="mergesort")
    score, target, weight = score[order], target[order], weight[order]
    # The last index of each group of tied scores: one point of the curves per distinct threshold.
    ends = np.r_[np.flatnonzero(np.diff(score)), score.size - 1]
    tps = np.cumsum(target * weight)[ends]
    fps = np.cumsum((1.0 - target) * weight)[ends]
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    tpr = np.r_[0.0, recall]
    fpr = np.r_[0.0, fps / fps[-1]]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
    return ap, auc


def average_precision_and_auc(
    scores: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray,
    label_ids: np.ndarray,
    n_labels: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact per-label AP and ROC-AUC from flat lists of known cells.

    Args:
        scores: `(k,)` scores of the known cells.
        targets: `(k,)` binary targets (0 or 1) of the same cells.
        weights: `(k,)` positive cell weights.
        label_ids: `(k,)` integer label index of each cell, in `[0, n_labels)`.
        n_labels: number of labels `L`.

    Returns:
        `(ap, auc, pos_weight, neg_weight)`, each `(L,)` float64: AP and AUC are NaN for labels
        without a known positive or a known negative; `pos_weight` / `neg_weight` are the summed
        weights of known positives / negatives (counts when unweighted).

    Example:
        >>> ap, auc, _, _ = average_precision_and_auc(
        ...     np.array([0.9, 0.1]), np.array([1.0, 0.0]), np.ones(2), np.array([0, 0]), 1)
        >>> float(ap[0]), float(auc[0])
        (1.0, 1.0)
    """
    scores = np.asarray(scores, np.float64).ravel()
    targets = np.asarray(targets, np.float64).ravel()
    weights = np.asarray(weights, np.float64).ravel()
    label_ids = np.asarray(label_ids, np.int64).ravel()
    ap = np.full(n_labels, np.nan)
    auc = np.full(n_labels, np.nan)
    pos = np.bincount(label_ids, weights=targets * weights, minlength=n_labels)[:n_labels]
    neg = np.bincount(label_ids, weights=(1.0 - targets) * weights, minlength=n_labels)[:n_labels]
    order = np.argsort(label_ids, kind="mergesort")
    bounds = np.searchsorted(label_ids[order], np.arange(n_labels + 1))
    for j in np.flatnonzero((pos > 0) & (neg > 0)):
        rows = order[bounds[j] : bounds[j + 1]]
        ap[j], auc[j] = _binary_ap_auc(targets[rows], scores[rows], weights[rows])
    return ap, auc, pos, neg


def _mean_or_zero(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else 0.0


# === Streaming Keras metrics ===


def _tf() -> Any:
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "ssl_multilabel.metrics streaming metrics need the TensorFlow backend "
            f"(KERAS_BACKEND=tensorflow); the current backend is {keras.backend.backend()!r}."
        )
    import tensorflow as tf

    return tf


def _flat_known_cells(y_true: Any, y_pred: Any, sample_weight: Any) -> tuple[Any, Any, Any, Any, Any]:
    """Flatten a `(batch, L)` batch to `(score, target, weight, label)` of its known cells."""
    tf = _tf()
    y_pred = tf.cast(tf.convert_to_tensor(y_pred), tf.float32)
    y_true = tf.cast(tf.convert_to_tensor(y_true), tf.float32)
    if y_true.shape.rank is not None and y_pred.shape.rank is not None and y_true.shape.rank != y_pred.shape.rank:
        raise ValueError(
            "`y_true` and `y_pred` must both have shape (batch, labels). "
            f"Received y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}."
        )
    n_labels = tf.shape(y_pred)[-1]
    y_pred = tf.reshape(y_pred, [-1, n_labels])
    y_true = tf.reshape(y_true, [-1, n_labels])
    unknown, invalid = cell_masks(y_true, ops)
    check_targets(y_true, invalid)
    known = tf.logical_not(unknown)
    if sample_weight is None:
        weight = tf.ones_like(y_pred)
    else:
        weight = tf.cast(tf.convert_to_tensor(sample_weight), tf.float32)
        if weight.shape.rank == 1:
            weight = weight[:, None]
        weight = tf.broadcast_to(tf.reshape(weight, [tf.shape(y_pred)[0], -1]), tf.shape(y_pred))
        known = tf.logical_and(known, tf.greater(weight, 0.0))
    target = tf.cast(tf.greater_equal(y_true, 0.5), tf.float32)
    labels = tf.broadcast_to(tf.range(n_labels, dtype=tf.int32)[None, :], tf.shape(y_pred))
    return (
        tf.boolean_mask(y_pred, known),
        tf.boolean_mask(target, known),
        tf.boolean_mask(weight, known),
        tf.boolean_mask(labels, known),
        n_labels,
    )


def _resizable(tf: Any, dtype: Any, name: str) -> Any:
    # A raw tf.Variable of unknown length: Keras variables have a fixed shape, and the exact
    # metrics must keep every known cell of the epoch.
    return tf.Variable(
        tf.zeros([0], dtype), shape=tf.TensorShape([None]), trainable=False, validate_shape=False, name=name
    )


class _ExactRankingMetric(keras.metrics.Metric):
    """Base class: accumulates the known cells of every batch and ranks them exactly."""

    _index = 0  # 0: AP, 1: AUC

    def __init__(self, name: str, dtype: Any = None):
        super().__init__(name=name, dtype=dtype)
        tf = _tf()
        self._scores = _resizable(tf, tf.float32, "scores")
        self._targets = _resizable(tf, tf.float32, "targets")
        self._cell_weights = _resizable(tf, tf.float32, "weights")
        self._label_ids = _resizable(tf, tf.int32, "label_ids")
        self._n_labels = tf.Variable(0, dtype=tf.int32, trainable=False, name="n_labels")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Append the known cells of a `(batch, L)` batch (unknown `-1` cells are skipped)."""
        tf = _tf()
        score, target, weight, label, n_labels = _flat_known_cells(y_true, y_pred, sample_weight)
        self._scores.assign(tf.concat([self._scores, score], 0))
        self._targets.assign(tf.concat([self._targets, target], 0))
        self._cell_weights.assign(tf.concat([self._cell_weights, weight], 0))
        self._label_ids.assign(tf.concat([self._label_ids, label], 0))
        self._n_labels.assign(tf.maximum(self._n_labels, n_labels))

    def _numpy_result(self, scores, targets, weights, label_ids, n_labels):  # type: ignore[no-untyped-def]
        values = average_precision_and_auc(scores, targets, weights, label_ids, int(n_labels))[self._index]
        return np.float32(_mean_or_zero(values[~np.isnan(values)]))

    def result(self) -> Any:
        """Mean over scored labels (0.0 when no label has both a known positive and negative)."""
        tf = _tf()
        value = tf.numpy_function(
            self._numpy_result,
            [self._scores, self._targets, self._cell_weights, self._label_ids, self._n_labels],
            tf.float32,
            stateful=False,
        )
        value.set_shape([])
        return value

    def per_label_result(self) -> np.ndarray:
        """Per-label values (eager only); NaN marks labels left out of the mean.

        Returns:
            `(L,)` float64 array.
        """
        values = average_precision_and_auc(
            self._scores.numpy(),
            self._targets.numpy(),
            self._cell_weights.numpy(),
            self._label_ids.numpy(),
            int(self._n_labels.numpy()),
        )[self._index]
        return values

    def reset_state(self) -> None:
        tf = _tf()
        for variable in (self._scores, self._targets, self._cell_weights):
            variable.assign(tf.zeros([0], tf.float32))
        self._label_ids.assign(tf.zeros([0], tf.int32))
        self._n_labels.assign(0)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedAveragePrecision(_ExactRankingMetric):
    """Streaming masked mean average precision (mAP), exact (scikit-learn's definition).

    Args:
        name: metric name (the key in `fit` logs, e.g. `val_mAP`).
        dtype: result dtype.

    Example:
        >>> m = MaskedAveragePrecision()
        >>> m.update_state([[1.0, -1.0], [0.0, 1.0]], [[0.8, 0.3], [0.4, 0.9]])
        >>> float(m.result())  # label 1 has no known negative: left out
        1.0
    """

    _index = 0

    def __init__(self, name: str = "mAP", dtype: Any = None):
        super().__init__(name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedAUC(_ExactRankingMetric):
    """Streaming masked mean ROC-AUC over labels, exact (ties count 1/2, as scikit-learn).

    Args:
        name: metric name (the key in `fit` logs, e.g. `val_AUC`).
        dtype: result dtype.

    Example:
        >>> m = MaskedAUC()
        >>> m.update_state([[1.0], [0.0], [-1.0]], [[0.5], [0.5], [0.9]])
        >>> float(m.result())
        0.5
    """

    _index = 1

    def __init__(self, name: str = "AUC", dtype: Any = None):
        super().__init__(name=name, dtype=dtype)


class _MaskedConfusionMetric(keras.metrics.Metric):
    """Base class: per-label weighted TP/FP/FN/TN at a threshold, macro or micro averaged."""

    _statistic = "f1"

    def __init__(
        self,
        average: str = "macro",
        threshold: float = 0.5,
        from_logits: bool = False,
        name: str | None = None,
        dtype: Any = None,
    ):
        if average not in ("macro", "micro"):
            raise ValueError(
                f"Invalid value for argument `average`. Expected 'macro' or 'micro'. Received: average={average!r}"
            )
        try:
            threshold = float(threshold)
        except (TypeError, ValueError):
            raise TypeError(
                f"Invalid value for argument `threshold`. Expected a float. Received: threshold={threshold!r}"
            ) from None
        if not isinstance(from_logits, bool):
            raise TypeError(
                f"Invalid value for argument `from_logits`. Expected a bool. Received: from_logits={from_logits!r}"
            )
        default = {"f1": "F1", "precision": "precision", "recall": "recall"}[self._statistic]
        super().__init__(name=name or f"{average}_{default}", dtype=dtype)
        self.average = average
        self.threshold = threshold
        self.from_logits = from_logits
        tf = _tf()
        # Per-label counts; their length is only known at the first batch.
        self._counts = {key: _resizable(tf, tf.float32, key) for key in ("tp", "fp", "fn", "tn")}

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Add the weighted confusion counts of the known cells of a `(batch, L)` batch."""
        tf = _tf()
        y_pred = tf.cast(tf.convert_to_tensor(y_pred), tf.float32)
        if self.from_logits:
            y_pred = tf.sigmoid(y_pred)
        score, target, weight, label, n_labels = _flat_known_cells(y_true, y_pred, sample_weight)
        predicted = tf.cast(tf.greater_equal(score, self.threshold), tf.float32)
        cells = {
            "tp": target * predicted,
            "fp": (1.0 - target) * predicted,
            "fn": target * (1.0 - predicted),
            "tn": (1.0 - target) * (1.0 - predicted),
        }
        for key, indicator in cells.items():
            new = tf.math.unsorted_segment_sum(indicator * weight, label, n_labels)
            old = self._counts[key]
            # "old + new" that also covers the empty initial state. Neither tf.cond on
            # tf.size(old) nor tf.pad by it works here: inside tf.function the size of a second
            # resizable variable read as 0 (TF 2.21), so stack and sum instead.
            old.assign(tf.reduce_sum(tf.reshape(tf.concat([old, new], 0), [-1, n_labels]), 0))

    def result(self) -> Any:
        tf = _tf()
        tp, fp, fn, tn = (self._counts[k] for k in ("tp", "fp", "fn", "tn"))
        if self.average == "micro":
            tp, fp, fn = tf.reduce_sum(tp), tf.reduce_sum(fp), tf.reduce_sum(fn)
        values = _confusion_statistic(tf, self._statistic, tp, fp, fn)
        if self.average == "macro":
            scored = tf.cast(tf.logical_and(tp + fn > 0, fp + tn > 0), tf.float32)
            values = tf.math.divide_no_nan(tf.reduce_sum(values * scored), tf.reduce_sum(scored))
        return tf.cast(values, self.dtype)

    def reset_state(self) -> None:
        tf = _tf()
        for variable in self._counts.values():
            variable.assign(tf.zeros([0], tf.float32))

    def get_config(self) -> dict[str, Any]:
        return {
            "average": self.average,
            "threshold": self.threshold,
            "from_logits": self.from_logits,
            "name": self.name,
            "dtype": self.dtype,
        }


def _confusion_statistic(xp: Any, statistic: str, tp: Any, fp: Any, fn: Any) -> Any:
    """Precision, recall or F1 with 0/0 -> 0; `xp` is `tf` (tensors) or None (numpy)."""
    if xp is None:
        numerator = {"precision": tp, "recall": tp, "f1": 2.0 * tp}[statistic]
        denominator = {"precision": tp + fp, "recall": tp + fn, "f1": 2.0 * tp + fp + fn}[statistic]
        numerator = np.asarray(numerator, np.float64)
        return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)
    if statistic == "precision":
        return xp.math.divide_no_nan(tp, tp + fp)
    if statistic == "recall":
        return xp.math.divide_no_nan(tp, tp + fn)
    return xp.math.divide_no_nan(2.0 * tp, 2.0 * tp + fp + fn)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedF1Score(_MaskedConfusionMetric):
    """Streaming masked F1 at a threshold, macro (over scored labels) or micro (pooled cells).

    Args:
        average: `"macro"` or `"micro"`.
        threshold: a score `>= threshold` is a predicted positive.
        from_logits: apply a sigmoid to `y_pred` first.
        name: metric name (default `"macro_F1"` / `"micro_F1"`).
        dtype: result dtype.

    Example:
        >>> m = MaskedF1Score(average="micro")
        >>> m.update_state([[1.0, 0.0, -1.0]], [[0.7, 0.6, 0.9]])
        >>> round(float(m.result()), 4)  # TP=1, FP=1, FN=0
        0.6667
    """

    _statistic = "f1"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedPrecision(_MaskedConfusionMetric):
    """Streaming masked precision at a threshold (macro over scored labels, or micro).

    Args:
        average: `"macro"` or `"micro"`.
        threshold: a score `>= threshold` is a predicted positive.
        from_logits: apply a sigmoid to `y_pred` first.
        name: metric name (default `"macro_precision"` / `"micro_precision"`).
        dtype: result dtype.

    Example:
        >>> m = MaskedPrecision(average="micro")
        >>> m.update_state([[1.0, 0.0]], [[0.7, 0.6]])
        >>> float(m.result())
        0.5
    """

    _statistic = "precision"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedRecall(_MaskedConfusionMetric):
    """Streaming masked recall at a threshold (macro over scored labels, or micro).

    Args:
        average: `"macro"` or `"micro"`.
        threshold: a score `>= threshold` is a predicted positive.
        from_logits: apply a sigmoid to `y_pred` first.
        name: metric name (default `"macro_recall"` / `"micro_recall"`).
        dtype: result dtype.

    Example:
        >>> m = MaskedRecall(average="micro")
        >>> m.update_state([[1.0, 1.0, -1.0]], [[0.7, 0.2, 0.1]])
        >>> float(m.result())
        0.5
    """

    _statistic = "recall"


# === One-shot evaluation ===


def _as_array(name: str, value: Any) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"`{name}` must be a numeric array of shape (n, labels); conversion failed: {error}") from None
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"`{name}` must have shape (n, labels). Received shape {array.shape}.")
    return array


def evaluate(
    y_true: Any,
    y_score: Any,
    label_names: Sequence[str] | None = None,
    threshold: float = 0.5,
    sample_weight: Any = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Evaluate scores against partial labels: mAP, mean AUC, macro/micro F1, precision, recall.

    Args:
        y_true: `(n, L)` targets in `[0, 1]` (binarised at 0.5) with `-1` or NaN for unknown
            cells (any other value is an error), or a `PartialLabels` table (its `to_array()` and `label_names` are used).
        y_score: `(n, L)` finite scores (probabilities for the threshold metrics).
        label_names: `L` names (default: those of a `PartialLabels`, else `"0"`, `"1"`, ...).
        threshold: a score `>= threshold` is a predicted positive.
        sample_weight: optional `(n,)` or `(n, L)` non-negative weights; weight-0 cells are ignored.

    Returns:
        `(summary, table)`. `summary` holds floats `"mAP"`, `"AUC"`, `"macro_F1"`,
        `"macro_precision"`, `"macro_recall"`, `"micro_F1"`, `"micro_precision"`,
        `"micro_recall"`, ints `"n_labels_scored"`, `"n_known_cells"` and the list
        `"labels_left_out"` (names of labels without a known positive or a known negative; they
        are excluded from every macro mean, which is 0.0 if no label is scored). `table` has one
        row per label: `label, n_known, n_pos, n_neg, scored, AP, AUC, precision, recall, F1`;
        the metric columns are NaN for labels that are not scored.

    Example:
        >>> summary, table = evaluate([[1, 0], [0, 1]], [[0.8, 0.1], [0.3, 0.9]])
        >>> summary["mAP"], summary["n_labels_scored"]
        (1.0, 2)
    """
    names_from_table = getattr(y_true, "label_names", None)
    if hasattr(y_true, "to_array") and callable(y_true.to_array):
        y_true = y_true.to_array()
    truth = _as_array("y_true", y_true)
    score = _as_array("y_score", y_score)
    if truth.shape != score.shape:
        raise ValueError(f"`y_true` and `y_score` must have the same shape. Received {truth.shape} and {score.shape}.")
    n, n_labels = truth.shape
    bad = ~np.isfinite(score)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"`y_score` must be finite. Received {score[row, col]} at row {row}, column {col}.")
    known = ~unknown_mask(truth, "y_true")
    if label_names is None:
        label_names = names_from_table if names_from_table is not None else [str(j) for j in range(n_labels)]
    label_names = [str(name) for name in label_names]
    if len(label_names) != n_labels:
        raise ValueError(f"`label_names` has {len(label_names)} names but the arrays have {n_labels} labels.")
    if sample_weight is None:
        weight = np.ones_like(score)
    else:
        weight = np.asarray(sample_weight, np.float64)
        if weight.ndim == 1:
            weight = weight[:, None]
        if weight.shape not in ((n, 1), (n, n_labels)):
            raise ValueError(f"`sample_weight` must have shape ({n},) or ({n}, {n_labels}). "
                             f"Received shape {np.shape(sample_weight)}.")
        if not np.all(np.isfinite(weight)) or np.any(weight < 0):
            row, col = np.argwhere(~(np.isfinite(weight) & (weight >= 0)))[0]
            where = f"row {row}" + (f", column {col}" if weight.shape[1] > 1 else "")
            raise ValueError(f"`sample_weight` must be finite and non-negative. Received {float(weight[row, col])!r} "
                             f"at {where}.")
        weight = np.broadcast_to(weight, score.shape)
        known = known & (weight > 0)

    rows, cols = np.nonzero(known)
    target = (truth[rows, cols] >= 0.5).astype(np.float64)
    cell_weight = weight[rows, cols]
    ap, auc, _, _ = average_precision_and_auc(score[rows, cols], target, cell_weight, cols, n_labels)
    n_pos = np.bincount(cols, weights=target, minlength=n_labels).astype(int)
    n_known = np.bincount(cols, minlength=n_labels)
    scored = ~np.isnan(ap)

    predicted = (score[rows, cols] >= threshold).astype(np.float64)
    counts = {
        key: np.bincount(cols, weights=indicator * cell_weight, minlength=n_labels)
        for key, indicator in {
            "tp": target * predicted,
            "fp": (1.0 - target) * predicted,
            "fn": target * (1.0 - predicted),
        }.items()
    }
    statistics = ("precision", "recall", "f1")
    per_label = {s: _confusion_statistic(None, s, counts["tp"], counts["fp"], counts["fn"]) for s in statistics}
    pooled = {key: np.sum(value) for key, value in counts.items()}
    micro = {s: float(_confusion_statistic(None, s, pooled["tp"], pooled["fp"], pooled["fn"])) for s in statistics}

    left_out = [name for name, ok in zip(label_names, scored) if not ok]
    if left_out:
        message = (
            f"{len(left_out)} of {n_labels} labels have no known positive or no known negative and are "
            f"left out of the macro means: {left_out[:10]}{' ...' if len(left_out) > 10 else ''}"
        )
        warnings.warn(message, UserWarning, stacklevel=2)

    summary: dict[str, Any] = {
        "mAP": _mean_or_zero(ap[scored]),
        "AUC": _mean_or_zero(auc[scored]),
        "macro_F1": _mean_or_zero(per_label["f1"][scored]),
        "macro_precision": _mean_or_zero(per_label["precision"][scored]),
        "macro_recall": _mean_or_zero(per_label["recall"][scored]),
        "micro_F1": micro["f1"],
        "micro_precision": micro["precision"],
        "micro_recall": micro["recall"],
        "n_labels_scored": int(scored.sum()),
        "n_known_cells": int(rows.size),
        "labels_left_out": left_out,
        "threshold": float(threshold),
    }

    def masked(values: np.ndarray) -> np.ndarray:
        return np.where(scored, values, np.nan)

    table = pd.DataFrame(
        {
            "label": label_names,
            "n_known": n_known,
            "n_pos": n_pos,
            "n_neg": n_known - n_pos,
            "scored": scored,
            "AP": ap,
            "AUC": auc,
            "precision": masked(per_label["precision"]),
            "recall": masked(per_label["recall"]),
            "F1": masked(per_label["f1"]),
        }
    )
    return summary, table
