"""Round callbacks that score what only a benchmark can score: hidden training cells, a test split.

`noisy_student(..., on_round_end=callback)` calls `callback(round_result)` after each round's own
metrics and merges the returned dict into that round's metrics (and `metrics.json`).
:func:`hidden_and_test` is the ready-made one for benchmarks that know the cells a protocol hid
and have a labelled test split.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ssl_multilabel.labels import PartialLabels

__all__ = ["evaluate_scores", "hidden_and_test"]


def evaluate_scores(labels: PartialLabels | np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """`{"summary": ..., "per_label": ...}` of `evaluation.evaluate` on the known cells of `labels`."""
    import warnings

    from ssl_multilabel.evaluation import evaluate

    with warnings.catch_warnings():
        # Labels without both classes among the known cells are listed in `labels_left_out`
        # of the saved metrics; the warning would repeat it for every round and split.
        warnings.simplefilter("ignore", UserWarning)
        summary, table = evaluate(labels, scores)
    return {"summary": summary, "per_label": table.to_dict(orient="list")}


def hidden_and_test(
    labels: PartialLabels,
    *,
    true_labels: PartialLabels | None = None,
    test_images: np.ndarray | Sequence[str] | None = None,
    test_labels: PartialLabels | None = None,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
) -> Callable[[Any], dict[str, Any]]:
    """A round callback adding `train_hidden`, `pseudo_label_quality` and `test` metrics.

    Args:
        labels: the training table given to `noisy_student` (its unknown cells are the hidden ones).
        true_labels: the fully known training table: every round's model is scored on the cells
            `labels` hid (`train_hidden`), and its pseudo-labels on the hidden cells they filled
            (`pseudo_label_quality`: cells, accuracy, the teacher scores' metrics there).
        test_images, test_labels: a test split, scored with every round's model (`test`).
        image_size, channels: passed to `make_dataset` for the test images.

    Returns:
        `callback(round_result) -> dict`, for `noisy_student(..., on_round_end=callback)`.

    Raises:
        ValueError: shapes or label names that do not match `labels` (before any training).

    Example:
        >>> score = hidden_and_test(labels, true_labels=truth, test_images=x_test, test_labels=y_test)  # doctest: +SKIP
        >>> noisy_student(images, labels, on_round_end=score)  # doctest: +SKIP
    """
    if not isinstance(labels, PartialLabels):
        raise TypeError(f"Argument `labels` must be a PartialLabels. Received: {type(labels).__name__}")
    if true_labels is not None and true_labels.known.shape != labels.known.shape:
        raise ValueError(f"`true_labels` has shape {true_labels.known.shape}; expected {labels.known.shape}.")
    if (test_images is None) != (test_labels is None):
        raise ValueError("Pass both `test_images` and `test_labels`, or neither.")
    if test_labels is not None:
        if len(test_images) != test_labels.n_samples:
            raise ValueError(f"`test_images` has {len(test_images)} entries but `test_labels` has {test_labels.n_samples} rows.")
        if test_labels.label_names != labels.label_names:
            raise ValueError(
                f"`test_labels` has labels {list(test_labels.label_names)}; expected those of `labels`: "
                f"{list(labels.label_names)}."
            )
    hidden = None if true_labels is None else true_labels.known & ~labels.known
    truth = None if true_labels is None else np.where(hidden, true_labels.values, -1.0)

    def callback(round_result: Any) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        if test_labels is not None:
            from ssl_multilabel.models import outputs_logits
            from ssl_multilabel.teacher_student.pseudo_labels import predict_scores

            model = round_result.model
            scores = predict_scores(model, test_images, from_logits=outputs_logits(model), image_size=image_size,
                                    channels=channels)
            metrics["test"] = evaluate_scores(test_labels, scores)
        if truth is not None:
            metrics["train_hidden"] = evaluate_scores(truth, round_result.scores)
            pseudo = round_result.pseudo
            if pseudo is not None:
                cells = pseudo.teacher_cells & hidden
                filled = np.where(cells, truth, -1.0)
                agree = pseudo.positive[cells] == (truth[cells] >= 0.5)
                metrics["pseudo_label_quality"] = {
                    "cells": int(cells.sum()),
                    "accuracy": float(agree.mean()) if agree.size else None,
                    "teacher_scores": evaluate_scores(filled, pseudo.scores)["summary"],
                }
        return metrics

    return callback
