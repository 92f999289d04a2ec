"""Masked multi-label metrics: streaming Keras metrics and a one-shot `evaluate()`.

`evaluate()` and `average_precision_and_auc()` live in `ssl_multilabel.evaluation` (numpy only, no
TensorFlow import; `ssl_multilabel.evaluate` is the same function) and are re-exported here.

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
  scikit-learn's `sample_weight` does; cells of weight 0 are ignored. In `model.compile` a metric
  receives the weights only through `weighted_metrics=` (Keras passes none to `metrics=`);
  `train_round(metrics=...)` compiles them so.
- A NaN or infinite score on a known cell is an error for `evaluate()` and makes a streaming
  metric's result NaN (a diverged model), never a plausible number.
- The streaming metrics hold scores in float32: float64 scores closer than float32 can tell
  apart tie there (`evaluate()` keeps float64).

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
from typing import Any

import keras
import numpy as np
from keras import ops

from ssl_multilabel.evaluation import (
    _confusion_statistic,
    _mean_or_zero,
    average_precision_and_auc,
    evaluate,
)
from ssl_multilabel.labels import cell_masks
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
        if not np.isfinite(scores).all():
            return np.float32(np.nan)
        values = average_precision_and_auc(scores, targets, weights, label_ids, int(n_labels))[self._index]
        return np.float32(_mean_or_zero(values[~np.isnan(values)]))

    def result(self) -> Any:
        """Mean over scored labels (0.0 when no label has both a known positive and negative; NaN
        after a NaN or infinite score on a known cell)."""
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
            `(L,)` float64 array; all NaN after a NaN or infinite score on a known cell.
        """
        if not np.isfinite(self._scores.numpy()).all():
            return np.full(int(self._n_labels.numpy()), np.nan)
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
        self._nonfinite = tf.Variable(0.0, dtype=tf.float32, trainable=False, name="nonfinite")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Add the weighted confusion counts of the known cells of a `(batch, L)` batch."""
        tf = _tf()
        y_pred = tf.cast(tf.convert_to_tensor(y_pred), tf.float32)
        if self.from_logits:
            y_pred = tf.sigmoid(y_pred)
        score, target, weight, label, n_labels = _flat_known_cells(y_true, y_pred, sample_weight)
        self._nonfinite.assign_add(tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(score)), tf.float32)))
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
        values = tf.where(self._nonfinite > 0, tf.constant(float("nan"), values.dtype), values)  # a diverged model
        return tf.cast(values, self.dtype)

    def reset_state(self) -> None:
        tf = _tf()
        for variable in self._counts.values():
            variable.assign(tf.zeros([0], tf.float32))
        self._nonfinite.assign(0.0)

    def get_config(self) -> dict[str, Any]:
        return {
            "average": self.average,
            "threshold": self.threshold,
            "from_logits": self.from_logits,
            "name": self.name,
            "dtype": self.dtype,
        }


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
