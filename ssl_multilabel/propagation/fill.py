"""Fill the unknown cells of a `PartialLabels` table from propagation scores.

Per-label thresholds are chosen on the known cells' out-of-fold scores (cross-fitting: each known
cell is scored by a run whose seeds leave out its fold, an honest out-of-sample estimate), never
on hidden cells; the diffusion is then run again with every known cell as a seed and only unknown
cells whose score clears a threshold are filled, with source "propagated". A filled cell's weight
is the probability that its value is right, read from the same out-of-fold scores (per label, an
isotonic calibration of score to truth). Known cells never change (`PartialLabels.fill` guarantees it).
"""

from __future__ import annotations

import logging
import warnings
from numbers import Integral, Real
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..labels import PartialLabels, Source, unknown_mask
from ..thresholds import best_f1_thresholds, check_confidence, check_per_label, precision_thresholds
from .diffusion import diffuse

__all__ = ["fill_unknown", "fold_ids", "select_thresholds"]

logger = logging.getLogger(__name__)

Scorer = Callable[[np.ndarray], Any]


def fold_ids(Y: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Deal each label's known positives, and its known negatives, into `folds` folds for cross-fitting.

    Within a (label, class) group the cells are shuffled and dealt in turn, so each fold holds
    `1 / folds` of the group (to within one cell).

    Args:
        Y: `(n, L)` with -1 or NaN for unknown cells.
        folds: number of folds, `>= 2`.
        seed: random seed.

    Returns:
        int `(n, L)`: the fold of each known cell, -1 on unknown cells.

    Example:
        >>> Y = np.array([[1], [1], [1], [1], [0], [0], [-1]])
        >>> np.bincount(fold_ids(Y, 2)[:6, 0]).tolist()  # 2 positives and 1 negative per fold
        [3, 3]
    """
    if isinstance(folds, bool) or not isinstance(folds, Integral) or folds < 2:
        raise ValueError(f"Invalid value for argument `folds`. Expected an int >= 2. Received: folds={folds!r}")
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise ValueError(f"Invalid value for argument `Y`. Expected shape (n_samples, n_labels). Received shape {Y.shape}.")
    known = ~unknown_mask(Y, "Y")
    rng = np.random.default_rng(seed)
    fold = np.full(Y.shape, -1)
    for label in range(Y.shape[1]):
        column, column_known = Y[:, label], known[:, label]
        for cells in (np.flatnonzero(column_known & (column >= 0.5)), np.flatnonzero(column_known & (column < 0.5))):
            fold[rng.permutation(cells), label] = np.arange(cells.size) % folds
    return fold


def both_classes_known(labels: PartialLabels) -> np.ndarray:
    """bool `(L,)`: the labels with a known positive and a known negative, the only ones a fill
    can fill (a precision, or a fixed threshold on scores that are not just the label prior,
    needs both)."""
    counts = labels.summary()
    return ((counts["positives"] > 0) & (counts["negatives"] > 0)).to_numpy()


#: Held-out cells of each class per label past which no more cross-fitting runs are made. On B1's
#: data at 20 % known cells, one 20 % holdout (160-320 held-out positives per label) left the
#: positive fills one point less precise than cross-fitting (B1-fill); past 500 cells the gain is
#: smaller, while at scale (B2, 1,000,000 points: 680 or more positives per fold) the extra runs
#: would cost 330 s each. So the fill there costs two diffusions, not `folds + 1`.
ENOUGH_HELD_OUT = 500


def _out_of_fold_scores(scores: Any, Y: np.ndarray, fold: np.ndarray, two_class: np.ndarray,
                        diffusion_kwargs: dict[str, Any]) -> np.ndarray:
    """Each known cell's probability from a run whose seeds leave out its fold (NaN on unknown cells
    and on the cells of folds not run: the runs stop once the cells scored hold `ENOUGH_HELD_OUT`
    of each class of every label in `two_class`, bool `(L,)`: those with both classes known)."""
    out = np.full(Y.shape, np.nan)
    positive, negative = (fold >= 0) & (Y >= 0.5), (fold >= 0) & (Y < 0.5)
    for k in range(fold.max() + 1):
        held = fold == k
        out[held] = _run(scores, np.where(held, -1.0, Y), diffusion_kwargs)[held]
        scored = ~np.isnan(out)
        fewest = np.minimum((scored & positive).sum(0), (scored & negative).sum(0))[two_class]
        if fewest.size == 0 or fewest.min() >= ENOUGH_HELD_OUT:
            break
    return out


def select_thresholds(
    scores: np.ndarray,
    Y: np.ndarray | PartialLabels,
    mask: np.ndarray,
    target_precision: float | None = 0.9,
    precision_confidence: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-label positive and negative thresholds fitted on the cells in `mask`.

    A thin wrapper of `ssl_multilabel.thresholds` (which the teacher's pseudo-labels use too).

    Args:
        scores: `(n, L)` probabilities of positive.
        Y: `(n, L)` true values (-1 or NaN unknown) for the cells in `mask`, or a `PartialLabels`
            (whose label names the thresholds' log lines then use).
        mask: bool `(n, L)`, the held-out known cells to fit on.
        target_precision: a positive fill needs `p >= t_pos`, where `t_pos` is the lowest
            threshold with precision >= target on the held-out cells; a negative fill needs
            `p <= t_neg`, the highest threshold below `t_pos` with negative predictive value >=
            target (`thresholds.precision_thresholds`). A label without held-out negatives gets
            no positive fill (its precision cannot be measured), one without held-out positives
            no negative fill. None: one best-F1 threshold per label and every unknown cell of a
            label with held-out cells of both classes is filled (`thresholds.best_f1_thresholds`).
        precision_confidence: None: the measured held-out precision must reach the target; a
            float in (0, 1): its one-sided Clopper-Pearson lower bound at this confidence level
            (`thresholds.precision_thresholds`' `confidence`).

    Returns:
        `(t_pos, t_neg)`, `(L,)` each; `inf` / `-inf` when no threshold meets the target.
    """
    if target_precision is None:
        return best_f1_thresholds(Y, scores, cells=mask)
    return precision_thresholds(Y, scores, target_precision, cells=mask, confidence=precision_confidence)


def _run(scores: Any, Y: np.ndarray, diffusion_kwargs: dict[str, Any]) -> np.ndarray:
    """The probability of positive of every cell, from an affinity graph or a scorer callable."""
    if sp.issparse(scores):
        with warnings.catch_warnings():
            # `fill_unknown` names the labels without both classes known itself; the diffusion's
            # own warning would repeat them by column number (and, inside a cross-fitting fold,
            # report a class the fold holds out).
            warnings.filterwarnings("ignore", message="No known cells for", category=UserWarning)
            return np.asarray(diffuse(scores, Y, **diffusion_kwargs).probability, dtype=np.float64)
    out = scores(Y)
    probability = np.asarray(out[0] if isinstance(out, tuple) else out, dtype=np.float64)
    if probability.shape != Y.shape:
        raise ValueError(
            f"The `scores` callable returned shape {probability.shape}; expected {Y.shape}."
        )
    if not np.isfinite(probability).all():
        row, col = np.argwhere(~np.isfinite(probability))[0]
        raise ValueError(
            f"The `scores` callable returned {float(probability[row, col])!r} at row {row}, column {col}; expected finite "
            "probabilities in [0, 1]."
        )
    return probability


def _calibration(probability: np.ndarray, Y: np.ndarray, held: np.ndarray) -> list[Any]:
    """Per label, an isotonic map from out-of-fold score to the probability of positive, fitted on
    the `held` known cells (None for a label without held cells of both classes)."""
    from sklearn.isotonic import IsotonicRegression

    maps: list[Any] = []
    for j in range(Y.shape[1]):
        cells = held[:, j]
        truth = Y[cells, j] >= 0.5
        if truth.all() or not truth.any():
            maps.append(None)
            continue
        maps.append(IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(probability[cells, j], truth))
    return maps


#: Fewer held-out cells than this behind a fitted threshold: its precision is a weak estimate.
MIN_HELDOUT_EVIDENCE = 10


def _warn_thin_evidence(names: Sequence[str], n_pos: np.ndarray, n_neg: np.ndarray, fills_pos: np.ndarray,
                        fills_neg: np.ndarray, target: float) -> None:
    """One warning naming the labels whose fill threshold rests on fewer than
    `MIN_HELDOUT_EVIDENCE` held-out cells: 4 of 4 held-out cells right meets any target, yet says
    little about the thousands of cells the threshold then fills."""
    thin = [(kind, [names[j] for j in np.flatnonzero(fills & (n < MIN_HELDOUT_EVIDENCE))])
            for kind, n, fills in (("positive", n_pos, fills_pos), ("negative", n_neg, fills_neg))]
    parts = [f"the {kind} fills of {found[:10]}{' ...' if len(found) > 10 else ''}" for kind, found in thin if found]
    if parts:
        warnings.warn(
            f"The target precision {target:g} is checked on fewer than {MIN_HELDOUT_EVIDENCE} held-out cells for "
            f"{' and '.join(parts)}: a few held-out cells all right meet any target, and the filled cells can be far "
            "less precise. Give those labels more known cells, pass precision_confidence (e.g. 0.8) to weigh how many "
            "cells a precision rests on, or use their filled cells with care.",
            UserWarning, stacklevel=3,
        )


def _warn_base_rate_negatives(names: Sequence[str], held: np.ndarray, truth: np.ndarray, pos_pick: np.ndarray,
                              neg_pick: np.ndarray, target: float, fillable: np.ndarray) -> None:
    """One warning naming the labels whose negative fill takes every held-out cell the positive fill
    leaves, known positives included: at least `target` of those cells are negative (for a rare
    label, by its base rate alone), and every unknown cell the positive fill leaves, the unknown
    positives too, is filled 0. Only labels with an unknown cell (`fillable`): with every cell known
    nothing is filled."""
    everything = (neg_pick | pos_pick | ~held).all(axis=0) & (neg_pick & truth).any(axis=0) & fillable
    found = [names[j] for j in np.flatnonzero(everything)]
    if found:
        warnings.warn(
            f"Labels {found[:10]}{' ...' if len(found) > 10 else ''}: at least {target:g} of the known cells their "
            f"positive fill leaves are negative (for a rare label, by the base rate alone), so the negative fill meets "
            f"the target precision {target:g} without any cut and fills every unknown cell the positive fill leaves "
            "with 0, the unknown positives among them too. Give them more known positives, or pass a higher "
            "target_precision.",
            UserWarning, stacklevel=3,
        )


def _check_thresholds(thresholds: Any, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """`(t_pos, t_neg)` as `(L,)` float arrays, each a number or one per label, `t_neg < t_pos`
    (`inf` / `-inf`: no positive / negative fill)."""
    try:
        t_pos, t_neg = thresholds
    except (TypeError, ValueError):
        raise ValueError(
            f"Invalid value for argument `thresholds`. Expected (t_pos, t_neg), each a number or one per label "
            f"({n_labels}). Received: thresholds={thresholds!r}"
        ) from None
    t_pos, t_neg = (check_per_label(t, n_labels, "thresholds", -np.inf, np.inf) for t in (t_pos, t_neg))
    if (t_neg >= t_pos).any():
        raise ValueError(
            f"Invalid value for argument `thresholds`: each label needs t_neg < t_pos (inf / -inf: no positive / "
            f"negative fill). Received: thresholds={thresholds!r}"
        )
    return t_pos, t_neg


def fill_unknown(
    labels: PartialLabels,
    scores: Any,
    *,
    target_precision: float | None = 0.9,
    precision_confidence: float | None = None,
    folds: int = 5,
    thresholds: tuple[np.ndarray, np.ndarray] | None = None,
    soft: bool = False,
    seed: int = 0,
    return_report: bool = False,
    **diffusion_kwargs: Any,
) -> PartialLabels | tuple[PartialLabels, pd.DataFrame]:
    """A new table in which confidently scored unknown cells are filled (source "propagated").

    Steps: deal each label's known positives and negatives into `folds` folds (`fold_ids`); score
    every cell once per fold with the other folds as seeds, so every known cell gets an
    out-of-sample score (cross-fitting); choose per-label thresholds on those scores of the known
    cells (`select_thresholds`); score again with every known cell as a seed; fill unknown cells
    with `p >= t_pos` as 1 and `p <= t_neg` as 0.

    A filled cell's weight is the probability that its value is right: `q` for a positive, `1 - q`
    for a negative, where `q` is the cell's score calibrated on the known cells' out-of-fold
    scores (per label, isotonic regression of their truth on their score). The raw score is no
    such probability: a threshold with 90 % of its held-out cells right can sit at `p = 0.2` for a
    rare label. With explicit `thresholds` nothing is calibrated and `q = p`.

    Args:
        labels: the partial table.
        scores: what produces the scores, one of
            - a scipy.sparse affinity `W` (e.g. `knn_graph(embeddings)`): `diffuse` is run on it
              with `diffusion_kwargs`;
            - a callable `f(Y) -> probability` taking a boundary array `Y` (-1 unknown) of
              seeds (of a returned tuple, e.g. `(probability, confidence)`, the first item);
            - an `(n, L)` array of probabilities, only together with explicit `thresholds`
              (array scores cannot be re-scored without the held-out seeds).
        target_precision: precision the held-out cells must reach for a fill (see
            `select_thresholds`); None = best-F1 threshold and fill every unknown cell.
        precision_confidence: None: a threshold's measured precision must reach the target; a
            float in (0, 1): its one-sided lower confidence bound at that level (see
            `select_thresholds`), so that a few held-out cells that happen to be right do not
            pass for a precise threshold.
        folds: the number of cross-fitting runs (each holds out `1 / folds` of the known cells).
            They stop early once the cells scored hold `ENOUGH_HELD_OUT` (500) of each class
            of every label: at scale one run holds them.
        thresholds: `(t_pos, t_neg)` per label to use instead of fitting them.
        soft: fill with the calibrated probability `q` instead of 0 / 1 (near a threshold a
            cell filled as positive can hold `q < 0.5`).
        seed: seed of the held-out split.
        return_report: also return a per-label DataFrame (thresholds, held-out precision and
            the number of held-out cells it rests on, filled counts). `heldout_cells` counts the
            known cells scored out of fold: every one, unless the runs stopped early.
        **diffusion_kwargs: `alpha`, `smoothing_steps`, `tol`, `max_iter`, `prior_mass`,
            `progress` for `diffuse`; only with a graph `scores`.

    Returns:
        The filled `PartialLabels` (and the report when `return_report=True`).

    Example:
        >>> import numpy as np
        >>> from ssl_multilabel.labels import PartialLabels, Source
        >>> from ssl_multilabel.propagation import knn_graph
        >>> rng = np.random.default_rng(0)
        >>> X = np.r_[rng.normal([5, 0], 1, (40, 2)), rng.normal([0, 5], 1, (40, 2))]
        >>> Y = np.full((80, 1), -1.0); Y[:20] = 1; Y[40:60] = 0
        >>> filled = fill_unknown(PartialLabels.from_array(Y), knn_graph(X, k=5))
        >>> new = filled.source[:, 0] == Source.PROPAGATED  # the filled cells, of 40 unknown
        >>> right = filled.values[new, 0] == (np.arange(80)[new] < 40)
        >>> int(new.sum()), int(right.sum())  # 39 of 40 right: above the target precision 0.9
        (40, 39)
    """
    if not isinstance(labels, PartialLabels):
        raise TypeError(f"`labels` must be a PartialLabels; got {type(labels).__name__}.")
    if target_precision is not None and not (
        isinstance(target_precision, Real) and not isinstance(target_precision, bool) and 0.5 <= target_precision <= 1
    ):
        raise ValueError(f"`target_precision` must be in [0.5, 1] or None; got {target_precision!r}.")
    check_confidence(precision_confidence, "precision_confidence")
    if precision_confidence is not None and target_precision is None:
        raise ValueError(
            f"`precision_confidence={precision_confidence!r}` applies to `target_precision`, which is None (best-F1 "
            "thresholds): pass a target precision, or leave precision_confidence at None."
        )
    if precision_confidence is not None and thresholds is not None:
        raise ValueError(
            f"`precision_confidence={precision_confidence!r}` applies when the thresholds are fitted; with explicit "
            "`thresholds` it would go unused. Leave it at None."
        )
    Y = labels.to_array().astype(np.float64)
    is_array = not sp.issparse(scores) and not callable(scores)
    if diffusion_kwargs and not sp.issparse(scores):
        raise ValueError(
            f"Diffusion settings {sorted(diffusion_kwargs)} apply when `scores` is an affinity graph; with a "
            f"{'scores array' if is_array else 'scorer callable'} they would go unused. Leave them out."
        )
    if is_array and thresholds is None:
        raise ValueError(
            "`scores` is an array: pass `thresholds=(t_pos, t_neg)` as well, or pass the affinity "
            "graph or a scorer callable so thresholds can be fitted on held-out known cells."
        )
    if sp.issparse(scores) and scores.shape != (labels.n_samples, labels.n_samples):
        raise ValueError(
            f"`scores` graph has shape {scores.shape}; expected ({labels.n_samples}, {labels.n_samples})."
        )
    report = pd.DataFrame(index=pd.Index(labels.label_names, name="label"))
    if thresholds is None:
        fold = fold_ids(Y, folds, seed)
        two_class = both_classes_known(labels)
        if not two_class.all():
            missing = [labels.label_names[j] for j in np.flatnonzero(~two_class)]
            warnings.warn(
                f"Labels without both a known positive and a known negative are not filled (a precision needs "
                f"both): {missing[:10]}{' ...' if len(missing) > 10 else ''}.",
                UserWarning,
                stacklevel=2,
            )
        probability = _out_of_fold_scores(scores, Y, fold, two_class, diffusion_kwargs)
        held = ~np.isnan(probability)  # every known cell, unless one fold held enough
        # Only the labels with both classes known (the others were named above, and get no fill),
        # as a named table, so that the thresholds' own messages name the labels.
        t_pos, t_neg = np.full(labels.n_labels, np.inf), np.full(labels.n_labels, -np.inf)
        cols = np.flatnonzero(two_class)
        if cols.size:
            named = PartialLabels.from_array(Y[:, cols], label_names=[labels.label_names[j] for j in cols])
            t_pos[cols], t_neg[cols] = select_thresholds(np.nan_to_num(probability[:, cols]), named, held[:, cols],
                                                         target_precision, precision_confidence)
        calibration = _calibration(probability, Y, held)
        report["heldout_cells"] = held.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            truth = Y >= 0.5
            pos_pick = held & (probability >= t_pos)
            neg_pick = held & (probability <= t_neg) & ~pos_pick
            report["heldout_precision_pos"] = (pos_pick & truth).sum(0) / pos_pick.sum(0)
            report["heldout_precision_neg"] = (neg_pick & ~truth).sum(0) / neg_pick.sum(0)
            # how many held-out cells each precision rests on (few: a weak estimate, see the warning)
            report["heldout_selected_pos"] = pos_pick.sum(0)
            report["heldout_selected_neg"] = neg_pick.sum(0)
        if target_precision is not None:
            _warn_base_rate_negatives(labels.label_names, held, truth, pos_pick, neg_pick, target_precision,
                                      (~labels.known).any(axis=0))
    else:
        t_pos, t_neg = _check_thresholds(thresholds, labels.n_labels)
        calibration = [None] * labels.n_labels
    if is_array:
        probability = np.asarray(scores, dtype=np.float64)
        if probability.shape != Y.shape:
            raise ValueError(f"`scores` has shape {probability.shape}; expected {Y.shape}.")
    else:
        probability = _run(scores, Y, diffusion_kwargs)
    unknown = Y == -1
    positive = unknown & (probability >= t_pos)
    negative = unknown & (probability <= t_neg) & ~positive
    q = np.clip(probability, 0.0, 1.0)
    for j, calibrate in enumerate(calibration):
        if calibrate is not None:
            q[:, j] = calibrate.predict(probability[:, j])
    if thresholds is None and target_precision is not None and precision_confidence is None:
        # a confidence bound weighs the evidence itself; a threshold that fills no cell needs no warning
        _warn_thin_evidence(labels.label_names, pos_pick.sum(0), neg_pick.sum(0), positive.any(axis=0),
                            negative.any(axis=0), target_precision)
    values = np.where(positive, 1.0, np.where(negative, 0.0, -1.0))
    if soft:
        values = np.where(positive | negative, q, -1.0)
    filled = labels.fill(values, np.where(positive, q, 1.0 - q), Source.PROPAGATED)
    report["threshold_pos"] = t_pos
    report["threshold_neg"] = t_neg
    report["filled_pos"] = positive.sum(axis=0)
    report["filled_neg"] = negative.sum(axis=0)
    report["still_unknown"] = (unknown & ~positive & ~negative).sum(axis=0)
    # DEBUG: callers summarise what they keep (the Propagate step drops the fills of its validation
    # rows, so an INFO line here would count cells the step's own line does not).
    logger.debug(
        "fill_unknown: filled %d positive and %d negative cells; %d stay unknown",
        int(positive.sum()), int(negative.sum()), int(report["still_unknown"].sum()),
    )
    return (filled, report) if return_report else filled

