"""Teacher pseudo-labels: cell selection, thresholds for a target precision, balancing.

Every selection is checked against a plain-loop numpy reference written independently of the
vectorised implementation.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssl_multilabel.labels import PartialLabels, Source
from ssl_multilabel.teacher_student.pseudo_labels import (
    PseudoLabels,
    select_pseudo_labels,
    thresholds_for_precision,
)

# === Random partial tables ===


@st.composite
def tables(draw, max_n=12, max_labels=4):
    """A table with human, implied and propagated cells, scores on a coarse grid (many ties)."""
    n = draw(st.integers(1, max_n))
    n_labels = draw(st.integers(1, max_labels))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    y = np.where(rng.random((n, n_labels)) < 0.4, rng.integers(0, 2, (n, n_labels)), -1).astype(float)
    table = PartialLabels.from_array(y)
    # Some propagated cells with soft values and confidences: they must survive untouched too.
    propagated = ~table.known & (rng.random((n, n_labels)) < 0.3)
    table = table.fill(np.where(propagated, rng.random((n, n_labels)), -1), rng.random((n, n_labels)), "propagated")
    scores = rng.integers(0, 11, (n, n_labels)) / 10.0
    return table, scores, rng


def reference_selection(known, scores, pos_t, neg_t, top_k, max_dup):
    """Plain loops: which cells become positive / negative, and the row repeat counts."""
    n, n_labels = scores.shape
    positive = np.zeros((n, n_labels), bool)
    negative = np.zeros((n, n_labels), bool)
    for i in range(n):
        for j in range(n_labels):
            if known[i, j]:
                continue
            if scores[i, j] >= pos_t[j]:
                positive[i, j] = True
            elif scores[i, j] <= neg_t[j]:
                negative[i, j] = True
    repeats = [1] * n
    if top_k is not None:
        for j in range(n_labels):
            candidates = [i for i in range(n) if positive[i, j]]
            candidates.sort(key=lambda i: (-scores[i, j], i))
            kept = candidates[:top_k]
            for i in candidates[top_k:]:
                positive[i, j] = False
            if 0 < len(kept) < top_k:
                factor = min(max_dup, -(-top_k // len(kept)))
                for i in kept:
                    repeats[i] = max(repeats[i], factor)
    return positive, negative, np.array(repeats)


# === Selection ===


@given(tables(), st.data())
def test_selected_cells_match_numpy_reference(case, data):
    table, scores, rng = case
    n_labels = table.n_labels
    pos_t = np.array(data.draw(st.lists(st.sampled_from([0.5, 0.6, 0.8, 1.0, np.inf]), min_size=n_labels, max_size=n_labels)))
    neg_t = np.array([data.draw(st.sampled_from([-np.inf, 0.0, 0.1, 0.3, 0.4])) for _ in range(n_labels)])
    top_k = data.draw(st.one_of(st.none(), st.integers(1, 5)))
    max_dup = data.draw(st.integers(1, 4))
    soft = data.draw(st.booleans())
    # rows: the rows that may be pseudo-labelled (the others, e.g. held out, take no top-K slot)
    rows = data.draw(st.one_of(st.none(), st.lists(st.booleans(), min_size=table.n_samples, max_size=table.n_samples)))
    rows = None if rows is None else np.array(rows)

    out = select_pseudo_labels(
        table, scores, positive_threshold=pos_t, negative_threshold=neg_t, soft=soft, top_k=top_k,
        max_duplication=max_dup, rows=rows,
    )
    closed = table.known if rows is None else table.known | ~rows[:, None]
    positive, negative, repeats = reference_selection(closed, scores, pos_t, neg_t, top_k, max_dup)
    teacher = out.labels.source == Source.TEACHER
    np.testing.assert_array_equal(teacher, positive | negative)
    np.testing.assert_array_equal(out.teacher_cells, positive | negative)
    np.testing.assert_array_equal(out.repeats, repeats)
    np.testing.assert_array_equal(out.positive, positive)
    expected_values = scores if soft else positive.astype(float)
    np.testing.assert_allclose(out.labels.values[teacher], expected_values[teacher], rtol=0, atol=1e-7)
    np.testing.assert_allclose(out.labels.weight[teacher], np.maximum(scores, 1 - scores)[teacher], atol=1e-7)
    # Low-confidence cells and cells dropped by top-K stay unknown.
    np.testing.assert_array_equal(out.labels.known, table.known | positive | negative)


@given(tables(), st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.one_of(st.none(), st.integers(1, 4)))
def test_known_cells_are_never_changed(case, a, b, top_k):
    table, scores, _ = case
    low, high = min(a, b), max(a, b)
    if low == high:
        high = np.inf
    out = select_pseudo_labels(table, scores, positive_threshold=high, negative_threshold=low, top_k=top_k)
    known = table.known
    np.testing.assert_array_equal(out.labels.known[known], True)
    np.testing.assert_array_equal(out.labels.values[known], table.values[known])
    np.testing.assert_array_equal(out.labels.weight[known], table.weight[known])
    np.testing.assert_array_equal(out.labels.source[known], table.source[known])
    # Every newly known cell is a teacher cell, and only unknown cells were filled.
    new = out.labels.known & ~known
    np.testing.assert_array_equal(out.labels.source[new], Source.TEACHER)
    assert not (out.teacher_cells & known).any()
    assert out.labels.ids == table.ids and out.labels.label_names == table.label_names


def test_hand_computed_example():
    table = PartialLabels.from_array([[1, -1, -1], [-1, -1, 0], [-1, -1, -1]], label_names=["a", "b", "c"])
    scores = np.array([[0.2, 0.95, 0.5], [0.97, 0.05, 0.9], [0.6, 0.91, 0.08]])
    out = select_pseudo_labels(table, scores, positive_threshold=[0.95, 0.9, 0.9], negative_threshold=0.1, soft=False)
    expected = np.array([[1, 1, -1], [1, 0, 0], [-1, 1, 0]], np.float32)
    np.testing.assert_array_equal(out.labels.to_array(), expected)
    assert out.labels.source[0, 0] == Source.HUMAN and out.labels.source[0, 1] == Source.TEACHER
    assert out.labels.weight[1, 1] == pytest.approx(0.95)
    summary = out.summary()
    assert summary["pseudo_positives"] == [1, 2, 0]
    assert summary["pseudo_negatives"] == [0, 1, 1]
    assert summary["still_unknown"] == [1, 0, 1]


def test_soft_targets_with_temperature():
    table = PartialLabels.from_array([[-1, -1]])
    scores = np.array([[0.9, 0.2]])
    out = select_pseudo_labels(table, scores, positive_threshold=0.8, negative_threshold=0.3, temperature=2.0)
    # sigmoid(logit(p) / 2) = sqrt(p) / (sqrt(p) + sqrt(1 - p))
    expected = [math.sqrt(0.9) / (math.sqrt(0.9) + math.sqrt(0.1)), math.sqrt(0.2) / (math.sqrt(0.2) + math.sqrt(0.8))]
    np.testing.assert_allclose(out.labels.values[0], expected, rtol=1e-6)


def test_top_k_keeps_most_confident_and_duplicates_underfilled_labels():
    table = PartialLabels.from_array(-np.ones((6, 2)))
    scores = np.array([[0.91, 0.2], [0.99, 0.2], [0.95, 0.2], [0.93, 0.97], [0.5, 0.5], [0.2, 0.2]])
    out = select_pseudo_labels(table, scores, positive_threshold=0.9, negative_threshold=0.1, top_k=2, max_duplication=3)
    positive = out.teacher_cells & (out.labels.values >= 0.5)
    # Label 0: 4 candidates, keep the 2 best (rows 1 and 2); label 1: 1 candidate (row 3),
    # duplicated ceil(2 / 1) = 2 times.
    np.testing.assert_array_equal(np.flatnonzero(positive[:, 0]), [1, 2])
    np.testing.assert_array_equal(np.flatnonzero(positive[:, 1]), [3])
    np.testing.assert_array_equal(out.repeats, [1, 1, 1, 2, 1, 1])
    # Dropped candidates stay unknown.
    assert not out.labels.known[0, 0] and not out.labels.known[3, 0]
    # Bounded duplication: top_k=10 with 1 candidate gives min(3, 10).
    out = select_pseudo_labels(table, scores, positive_threshold=0.9, negative_threshold=0.1, top_k=10, max_duplication=3)
    assert out.repeats[3] == 3


def test_teacher_table_round_trips_through_save(tmp_path):
    table = PartialLabels.from_array([[1, -1], [-1, -1]])
    out = select_pseudo_labels(table, np.array([[0.5, 0.92], [0.03, 0.4]]), positive_threshold=0.9, negative_threshold=0.1)
    out.labels.save(tmp_path / "pseudo_labels.csv")
    back = PartialLabels.load(tmp_path / "pseudo_labels.csv")
    np.testing.assert_array_equal(back.source, out.labels.source)
    np.testing.assert_allclose(back.values, out.labels.values, rtol=1e-6)
    np.testing.assert_allclose(back.weight, out.labels.weight, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(positive_threshold=0.3, negative_threshold=0.3), "negative_threshold.*below.*positive_threshold"),
        (dict(positive_threshold=[0.9, 0.9, 0.9]), "positive_threshold.*one float per label"),
        (dict(negative_threshold=1.5), "negative_threshold"),
        (dict(top_k=0), "top_k"),
        (dict(max_duplication=0), "max_duplication"),
        (dict(temperature=0.0), "temperature"),
    ],
)
def test_invalid_arguments(kwargs, match):
    table = PartialLabels.from_array([[1, -1]])
    with pytest.raises(ValueError, match=match):
        select_pseudo_labels(table, np.array([[0.5, 0.5]]), **kwargs)


def test_invalid_scores():
    table = PartialLabels.from_array([[1, -1]])
    with pytest.raises(ValueError, match=r"row 0, column 1.*probability"):
        select_pseudo_labels(table, np.array([[0.5, 2.0]]))
    with pytest.raises(ValueError, match=r"shape \(1, 3\).*expected \(1, 2\)"):
        select_pseudo_labels(table, np.zeros((1, 3)))
    with pytest.raises(TypeError, match="PartialLabels"):
        select_pseudo_labels([[1, -1]], np.array([[0.5, 0.5]]))


# === Thresholds for a target precision ===


def reference_thresholds(y, scores, target, min_selected):
    """Brute force over every candidate threshold."""
    n_labels = y.shape[1]
    pos_t, neg_t = np.full(n_labels, np.inf), np.full(n_labels, -np.inf)
    for j in range(n_labels):
        known = y[:, j] >= 0
        s, t = scores[known, j], y[known, j] >= 0.5
        if t.all() or not t.any():
            continue  # one class only: a precision cannot be measured, no threshold
        for cand in sorted(set(s)):
            sel = s >= cand
            if sel.sum() >= min_selected and t[sel].mean() >= target:
                pos_t[j] = cand
                break
        for cand in sorted(set(s), reverse=True):
            sel = s <= cand
            if cand < pos_t[j] and sel.sum() >= min_selected and (~t[sel]).mean() >= target:
                neg_t[j] = cand
                break
    return pos_t, neg_t


@given(tables(max_n=20), st.sampled_from([0.5, 0.7, 0.8, 1.0]), st.integers(1, 3))
def test_thresholds_match_brute_force(case, target, min_selected):
    table, scores, _ = case
    pos_t, neg_t = thresholds_for_precision(table.to_array(), scores, target, min_selected)
    ref_pos, ref_neg = reference_thresholds(table.to_array(), scores, target, min_selected)
    np.testing.assert_array_equal(pos_t, ref_pos)
    np.testing.assert_array_equal(neg_t, ref_neg)
    # The same from the table itself.
    pos_t2, neg_t2 = thresholds_for_precision(table, scores, target, min_selected)
    np.testing.assert_array_equal(pos_t2, pos_t)
    np.testing.assert_array_equal(neg_t2, neg_t)


def test_thresholds_hand_computed():
    y = np.array([[1], [1], [0], [1], [0], [0]], np.float32)
    s = np.array([[0.95], [0.8], [0.7], [0.6], [0.3], [0.1]])
    # Precision of score >= t: 0.95 -> 1, 0.8 -> 1, 0.7 -> 2/3, 0.6 -> 3/4, 0.3 -> 3/5.
    pos, neg = thresholds_for_precision(y, s, target_precision=0.75)
    assert pos[0] == 0.6
    # Negative predictive value of score <= t: 0.1 -> 1, 0.3 -> 1, 0.6 -> 2/3, 0.7 -> 3/4.
    assert neg[0] == 0.3  # 0.7 would reach 3/4 but is above the positive threshold 0.6
    pos, neg = thresholds_for_precision(y, s, target_precision=1.0)
    assert (pos[0], neg[0]) == (0.8, 0.3)


def test_thresholds_unreachable_and_empty_labels():
    y = np.array([[0, -1], [0, -1]], np.float32)
    pos, neg = thresholds_for_precision(y, np.array([[0.9, 0.5], [0.8, 0.5]]), 0.9)
    assert pos[0] == np.inf and neg[0] == -np.inf  # negatives only: no negative threshold either
    assert pos[1] == np.inf and neg[1] == -np.inf
    # inf / -inf thresholds select nothing.
    out = select_pseudo_labels(PartialLabels.from_array(-np.ones((2, 2))), np.array([[0.9, 0.5], [0.8, 0.5]]),
                               positive_threshold=pos, negative_threshold=neg, soft=False)
    assert isinstance(out, PseudoLabels)
    assert not out.labels.known.any()


def test_teacher_table_holds_only_teacher_cells():
    table = PartialLabels.from_array([[1, -1, -1], [-1, 0, -1]])
    out = select_pseudo_labels(table, np.array([[0.5, 0.95, 0.5], [0.02, 0.5, 0.5]]), soft=False)
    np.testing.assert_array_equal(out.teacher_table.to_array(), [[-1, 1, -1], [0, -1, -1]])
    np.testing.assert_array_equal(out.teacher_array(), out.teacher_table.to_array())
