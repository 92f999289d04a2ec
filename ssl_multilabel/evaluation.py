"""Masked multi-label evaluation in numpy: `evaluate()` and exact per-label AP / ROC-AUC.

The conventions are those of `ssl_multilabel.metrics` (whose streaming Keras metrics compute the
same values during training). This module imports neither Keras nor TensorFlow, so scoring
`predict_proba` of the propagation estimator (e.g. in a scikit-learn scorer) stays light.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ssl_multilabel.labels import unknown_mask

__all__ = ["average_precision_and_auc", "evaluate"]


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
        weights: `(k,)` non-negative cell weights; cells of weight 0 are left out.
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
    if not np.isfinite(scores).all():
        raise ValueError(f"`scores` must be finite. Received {scores[~np.isfinite(scores)][0]!r} at cell "
                         f"{int(np.flatnonzero(~np.isfinite(scores))[0])}.")
    if not (np.isfinite(weights) & (weights >= 0)).all():
        bad = int(np.flatnonzero(~(np.isfinite(weights) & (weights >= 0)))[0])
        raise ValueError(f"`weights` must be finite and non-negative. Received {weights[bad]!r} at cell {bad}.")
    used = weights > 0  # a weight-0 cell would count as a 0 / 0 step of the precision-recall curve
    scores, targets, weights, label_ids = scores[used], targets[used], weights[used], label_ids[used]
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
