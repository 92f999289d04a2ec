"""For labels whose known cells hold no negative: which negative assumption to train with.

A label whose known cells are all positive (single positive labels and similar) gives a masked
loss nothing to push scores down: the model learns to say "yes". Its unknown cells must be
assumed something. The candidates (Cole et al., "Multi-label learning from single positive
labels", CVPR 2021):

- **assume negative** (AN): every unknown cell of the label is a negative of weight 1;
- **weak negatives** (WAN): the same negatives with weight `1 / (L - 1)` (`L` labels), the
  paper's `gamma`, so the expected number of false negatives weighs less.

`choose_negative_assumption` picks one per label by a criterion that needs no known negative:
on held-out rows, the AUC of the label's known positives against its unlabeled cells (PU-AUC).
Under labels selected completely at random, the unlabeled cells are a mixture of negatives and
positives in fixed proportion, so PU-AUC is an increasing linear function of the true AUC
(Menon et al., ICML 2015; Jain et al., 2017), and the candidate with the higher PU-AUC is the one
with the higher true AUC. The models compared are per-label weighted logistic regressions on
given features (the cached features of a frozen backbone: the same linear head the training
steps fit there), with the positives weighted `n_neg / n_pos` as the training's `pos_weight="auto"`
does. Without features the choice falls back to assume-negative, and the log line says so.

The training steps of `ssl_multilabel.recipes` do not choose: they assume negatives of weight 1.
On the photo recipe's dev split (single positive labels, head with an L2 penalty) the choice took
weak negatives for every label and its head scored below the head with weight 1
(docs/noisy_student.md, "Labels without a known negative").

`likely_positive_cells` goes one step further for a kNN vote's seeds: which unknown cells of such a
label are more likely positive than not (Elkan and Noto, KDD 2008), so that they are left to the
propagation instead of taken as negatives.

This module needs numpy and scikit-learn only.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Sequence

import numpy as np

from ssl_multilabel.labels import PartialLabels
from ssl_multilabel.teacher_student.sources import AssumeNegative, assumed_negatives

__all__ = ["Assumption", "AssumptionChoice", "candidate_assumptions", "choose_negative_assumption",
           "likely_positive_cells", "pu_auc"]

logger = logging.getLogger(__name__)

# Fewer known positives than this in a label: too few to hold some out; assume negative.
MIN_POSITIVES = 4


@dataclasses.dataclass(frozen=True)
class Assumption:
    """A negative assumption: unknown cells are negatives of weight `weight`."""

    name: str
    weight: float


def candidate_assumptions(n_labels: int) -> tuple[Assumption, ...]:
    """Assume negative (weight 1) and, with more than one label, weak negatives (`1 / (L - 1)`)."""
    candidates = [Assumption("assume negative", 1.0)]
    if n_labels > 1:
        candidates.append(Assumption("weak negatives", 1.0 / (n_labels - 1)))
    return tuple(candidates)


@dataclasses.dataclass(frozen=True)
class AssumptionChoice:
    """The assumption chosen for each label without a known negative, and the figures behind it.

    Attributes:
        labels: the labels whose known cells hold no negative (the others need no assumption).
        chosen: label name -> the chosen `Assumption`.
        pu_auc: label name -> candidate name -> PU-AUC on the held-out rows (empty when not measured).
        reason: how the choice was made.
    """

    labels: tuple[str, ...]
    chosen: dict[str, Assumption]
    pu_auc: dict[str, dict[str, float]]
    reason: str

    def weights(self) -> dict[str, float]:
        """label name -> weight of its assumed negatives."""
        return {name: self.chosen[name].weight for name in self.labels}

    def source(self) -> AssumeNegative | None:
        """The pseudo-label source that applies the choice (None: no label needs one)."""
        return AssumeNegative(labels=self.labels, weight=self.weights()) if self.labels else None

    def apply(self, labels: PartialLabels) -> PartialLabels:
        """`labels` with the unknown cells of the chosen labels filled as (weighted) negatives (IMPLIED)."""
        if not self.labels:
            return labels
        source = self.source()
        return assumed_negatives(labels, source.columns(labels.label_names), source.weights(labels.label_names))

    def summary(self) -> str:
        """One line: what was chosen for which labels, and why."""
        if not self.labels:
            return "Every label has a known negative: no negative assumption needed."
        groups: dict[str, list[str]] = {}
        for name in self.labels:
            figures = self.pu_auc.get(name)
            text = name if not figures else f"{name} (" + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()) + ")"
            choice = self.chosen[name]
            groups.setdefault(f"{choice.name} (weight {choice.weight:.3g})", []).append(text)
        parts = "; ".join(f"{key} for {', '.join(names)}" for key, names in groups.items())
        return f"No known negative for {len(self.labels)} label(s): {parts}. Chosen by {self.reason}."


def pu_auc(positive_scores: np.ndarray, unlabeled_scores: np.ndarray) -> float:
    """AUC of known positives against unlabeled cells: P(s_pos > s_unl) + P(s_pos = s_unl) / 2."""
    from sklearn.metrics import roc_auc_score

    pos, unl = np.asarray(positive_scores, np.float64), np.asarray(unlabeled_scores, np.float64)
    if pos.size == 0 or unl.size == 0:
        raise ValueError(f"pu_auc needs positives and unlabeled cells; got {pos.size} and {unl.size}.")
    y = np.concatenate([np.ones(pos.size), np.zeros(unl.size)])
    return float(roc_auc_score(y, np.concatenate([pos, unl])))


Scorer = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def logistic_scores(train_x: np.ndarray, train_y: np.ndarray, train_w: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    """Scores of `test_x` from a weighted logistic regression (the linear head on features)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    model = LogisticRegression(max_iter=300)
    model.fit(scaler.transform(train_x), train_y, sample_weight=train_w)
    return model.decision_function(scaler.transform(test_x))


def choose_negative_assumption(
    labels: PartialLabels,
    features: np.ndarray | None = None,
    *,
    holdout: float = 0.25,
    seed: int = 0,
    candidates: Sequence[Assumption] | None = None,
    scorer: Scorer = logistic_scores,
    max_rows: int = 20_000,
    rows: np.ndarray | None = None,
    log: bool = True,
) -> AssumptionChoice:
    """Per label without a known negative, the candidate assumption with the best PU-AUC.

    Rows are split once (`holdout` of them held out, seeded). For each such label and candidate,
    a model is fitted on the other rows (known positives with weight `n_neg / n_pos`, unknown
    cells as negatives of the candidate's weight) and scored on the held-out rows; the PU-AUC
    is that of the held-out known positives against the held-out unknown cells. The first
    candidate (assume negative) wins ties. A label with fewer than `MIN_POSITIVES` known
    positives, or without features, gets assume-negative.

    Args:
        labels: the table (known cells of every source count: a filled negative is a negative).
        features: `(n, d)` features, one row per row of `labels` (None: fall back).
        holdout: share of rows held out for the PU-AUC.
        seed: seed of the split and of the row sample.
        candidates: the assumptions to compare (default `candidate_assumptions(L)`).
        scorer: `(train_x, train_y, train_w, test_x) -> scores`; default a weighted logistic
            regression.
        max_rows: at most this many rows are used (a seeded sample), to bound the cost.
        rows: the rows whose cells inform the choice, both which labels lack a known negative
            and the PU-AUC (default all; a training step passes its training rows, so that its
            validation rows never inform a choice it is then scored on).
        log: log the one-line summary.

    Returns:
        An `AssumptionChoice`.
    """
    candidates = tuple(candidates or candidate_assumptions(labels.n_labels))
    rows = np.arange(labels.n_samples) if rows is None else np.unique(np.asarray(rows, dtype=np.int64))
    no_negative = ~(labels.known[rows] & (labels.values[rows] < 0.5)).any(axis=0)
    names = tuple(labels.label_names[j] for j in np.flatnonzero(no_negative))
    fallback = {name: candidates[0] for name in names}
    if not names:
        return AssumptionChoice((), {}, {}, "no label needed one")
    if features is None:
        choice = AssumptionChoice(names, fallback, {}, "default: no features given to choose by PU-AUC")
        if log:
            logger.info(choice.summary())
        return choice
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] != labels.n_samples:
        raise ValueError(f"`features` has shape {features.shape}; expected ({labels.n_samples}, d), one row per label row.")
    rng = np.random.default_rng(seed)
    if rows.size > max_rows:
        rows = np.sort(rng.choice(rows, max_rows, replace=False))
    held = np.zeros(labels.n_samples, bool)
    held[rng.permutation(rows)[: int(round(holdout * rows.size))]] = True
    fit_rows, test_rows = rows[~held[rows]], rows[held[rows]]

    chosen, figures = dict(fallback), {}
    for name in names:
        j = labels.label_names.index(name)
        positive = labels.known[:, j] & (labels.values[:, j] >= 0.5)
        unknown = ~labels.known[:, j]
        train = fit_rows[positive[fit_rows] | unknown[fit_rows]]
        test_pos, test_unl = test_rows[positive[test_rows]], test_rows[unknown[test_rows]]
        n_pos, n_neg = int(positive[train].sum()), int(unknown[train].sum())
        if n_pos < MIN_POSITIVES - 1 or n_neg == 0 or test_pos.size == 0 or test_unl.size == 0:
            continue
        y = positive[train].astype(np.float64)
        per_candidate = {}
        for candidate in candidates:
            w = np.where(y > 0, n_neg / n_pos, candidate.weight)
            scores = scorer(features[train], y, w, features[np.concatenate([test_pos, test_unl])])
            per_candidate[candidate.name] = pu_auc(scores[: test_pos.size], scores[test_pos.size:])
        figures[name] = per_candidate
        best = max(range(len(candidates)), key=lambda i: (per_candidate[candidates[i].name], -i))
        chosen[name] = candidates[best]
    reason = (f"PU-AUC on {int(round(100 * holdout))}% held-out rows (known positives against the unlabeled "
              "cells of the same label; first candidate on ties)")
    choice = AssumptionChoice(names, chosen, figures, reason)
    if log:
        logger.info(choice.summary())
    return choice


def likely_positive_cells(
    labels: PartialLabels,
    features: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    max_rows: int = 5_000,
    scorer: Scorer = logistic_scores,
) -> np.ndarray:
    """The unknown cells of the labels without a known negative that are more likely positive than not.

    Positive-unlabeled learning (Elkan and Noto, "Learning classifiers from only positive and
    unlabeled data", KDD 2008). For such a label, a probe fitted to tell its known positives from
    its unknown cells estimates `g(x) = P(known | x)`. When the known positives are a random sample
    of the positives, `g(x) = c * P(positive | x)` with `c = P(known | positive)`, which is
    estimated as the mean of `g` over the known positives. A cell is a likely positive when
    `g(x) / c >= 0.5`.

    `g` is cross-fitted: the rows are dealt into `folds` folds (a seeded permutation), and each
    fold is scored by a probe (`scorer`, default the weighted logistic regression above, every row
    weight 1) fitted on the other folds' rows (at most `max_rows` of them, a seeded sample), so no
    row, known positive or not, is scored by a probe that saw it. A label with fewer than
    `MIN_POSITIVES` known positives, or with a fold whose training rows hold one class only, gets
    no likely positive.

    Args:
        labels: the table; a label counts as without a known negative when its known cells (of
            any source) are all positive.
        features: `(n, d)` features, one row per row of `labels`.

    Returns:
        bool `(n_samples, n_labels)`: the likely positives (never a known cell).
    """
    from scipy.special import expit

    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] != labels.n_samples:
        raise ValueError(f"`features` has shape {features.shape}; expected ({labels.n_samples}, d), one row per label row.")
    positive = labels.known & (labels.values >= 0.5)
    no_negative = ~(labels.known & (labels.values < 0.5)).any(axis=0)
    columns = [j for j in np.flatnonzero(no_negative)
               if positive[:, j].sum() >= MIN_POSITIVES and (~labels.known[:, j]).any()]
    likely = np.zeros(labels.known.shape, bool)
    rng = np.random.default_rng(seed)
    fold = rng.permutation(labels.n_samples) % folds
    g = np.full((labels.n_samples, len(columns)), np.nan)
    for f in range(folds):
        held, rest = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        if rest.size > max_rows:
            rest = np.sort(rng.choice(rest, max_rows, replace=False))
        for c, j in enumerate(columns):
            y = positive[rest, j]
            if held.size and 0 < y.sum() < y.size:
                g[held, c] = expit(scorer(features[rest], y.astype(np.float64), np.ones(y.size), features[held]))
    for c, j in enumerate(columns):
        if np.isnan(g[:, c]).any():
            continue
        known_rate = g[positive[:, j], c].mean()  # c = P(known | positive)
        likely[:, j] = ~labels.known[:, j] & (g[:, c] >= 0.5 * known_rate)
    return likely
