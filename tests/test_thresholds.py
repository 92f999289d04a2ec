"""Thresholds for a target precision: against a brute-force scan of every candidate threshold."""

import logging

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binom

from ssl_multilabel.labels import PartialLabels
from ssl_multilabel.propagation import select_thresholds
from ssl_multilabel.teacher_student import thresholds_for_precision
from ssl_multilabel.thresholds import best_f1_thresholds, precision_thresholds

# === Brute-force references (every candidate score, plain loops) ===


def brute_precision(y, s, target, min_selected, confidence=None):
    """(t_pos, t_neg) of one label: y bool, s scores; refusals for one-class cells. With `confidence`,
    `k` right of `n` selected pass when a true precision of `target` would give `k` or more right with
    probability at most `1 - confidence` (the binomial tail: the one-sided test behind the bound)."""

    def precise(right):
        if confidence is None:
            return right.mean() >= target
        return binom.sf(right.sum() - 1, right.size, target) <= 1 - confidence

    t_pos, t_neg = np.inf, -np.inf
    if y.all() or not y.any():
        return t_pos, t_neg
    for cand in sorted(set(s.tolist())):  # lowest first
        sel = s >= cand
        if sel.sum() >= min_selected and precise(y[sel]):
            t_pos = cand
            break
    for cand in sorted(set(s.tolist()), reverse=True):  # highest first
        sel = s <= cand
        if cand < t_pos and sel.sum() >= min_selected and precise(~y[sel]):
            t_neg = cand
            break
    return t_pos, t_neg


def brute_f1(y, s):
    if y.all() or not y.any():
        return np.inf
    best, best_t = -1.0, np.inf
    for cand in sorted(set(s.tolist()), reverse=True):  # highest first: ties keep the highest cut
        pred = s >= cand
        f1 = 2 * (pred & y).sum() / (pred.sum() + y.sum())
        if f1 > best:
            best, best_t = f1, cand
    return best_t


@st.composite
def cases(draw, max_n=20, max_labels=3):
    """A label array (-1 unknown, soft values too) and scores on a coarse grid (many ties)."""
    n = draw(st.integers(1, max_n))
    n_labels = draw(st.integers(1, max_labels))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    values = rng.choice([0.0, 1.0, 0.3, 0.8], size=(n, n_labels), p=[0.4, 0.4, 0.1, 0.1])
    y = np.where(rng.random((n, n_labels)) < 0.7, values, -1.0)
    scores = rng.integers(0, 11, (n, n_labels)) / 10.0
    cells = rng.random((n, n_labels)) < 0.8
    return y, scores, cells


# === precision_thresholds ===


@given(cases(), st.sampled_from([0.5, 0.7, 0.75, 0.9, 1.0]), st.integers(1, 3))
def test_precision_thresholds_match_brute_force(case, target, min_selected):
    y, scores, cells = case
    t_pos, t_neg = precision_thresholds(y, scores, target, cells=cells, min_selected=min_selected)
    for j in range(y.shape[1]):
        use = cells[:, j] & (y[:, j] >= 0)
        expected = brute_precision(y[use, j] >= 0.5, scores[use, j], target, min_selected)
        assert (t_pos[j], t_neg[j]) == expected


# Confidence levels whose 1 - confidence no binomial tail at these targets equals exactly (at target 0.5
# and confidence 0.5, P(Binomial(n, 0.5) >= (n + 1) / 2) is exactly 0.5 for odd n: a tie that rounding
# decides either way).
@given(cases(max_n=60), st.sampled_from([0.5, 0.7, 0.9]), st.sampled_from([0.8, 0.95]))
def test_precision_thresholds_at_a_confidence_match_the_binomial_test(case, target, confidence):
    y, scores, cells = case
    t_pos, t_neg = precision_thresholds(y, scores, target, cells=cells, confidence=confidence)
    for j in range(y.shape[1]):
        use = cells[:, j] & (y[:, j] >= 0)
        expected = brute_precision(y[use, j] >= 0.5, scores[use, j], target, 1, confidence)
        assert (t_pos[j], t_neg[j]) == expected


def test_a_confidence_needs_enough_cells_closed_form():
    # n cells all right pass 0.9 at confidence 0.9 when 0.9 ** n <= 0.1: n >= 22 (log 0.1 / log 0.9 = 21.85).
    for n, passes in ((21, False), (22, True)):
        y = np.r_[np.ones(n), np.zeros(n)][:, None]
        s = np.r_[np.full(n, 0.8), np.full(n, 0.2)][:, None]
        t_pos, t_neg = precision_thresholds(y, s, 0.9, confidence=0.9)
        assert (t_pos[0], t_neg[0]) == ((0.8, 0.2) if passes else (np.inf, -np.inf))
    with pytest.raises(ValueError, match=r"Expected None or a float in \(0, 1\). Received: confidence=0.0"):
        precision_thresholds(y, s, 0.9, confidence=0.0)


@given(cases())
def test_best_f1_thresholds_match_brute_force(case):
    y, scores, cells = case
    t_pos, t_neg = best_f1_thresholds(y, scores, cells=cells)
    for j in range(y.shape[1]):
        use = cells[:, j] & (y[:, j] >= 0)
        assert t_pos[j] == brute_f1(y[use, j] >= 0.5, scores[use, j])
        # Every cell falls on one side: t_neg is the float just below t_pos.
        assert t_neg[j] == (np.nextafter(t_pos[j], -np.inf) if np.isfinite(t_pos[j]) else -np.inf)


def test_precision_thresholds_hand_computed():
    y = np.array([[1], [1], [0], [1], [0], [0]])
    s = np.array([[0.95], [0.8], [0.7], [0.6], [0.3], [0.1]])
    # Precision of score >= t: 0.95 -> 1, 0.8 -> 1, 0.7 -> 2/3, 0.6 -> 3/4, 0.3 -> 3/5.
    # Negative predictive value of score <= t: 0.1 -> 1, 0.3 -> 1, 0.6 -> 2/3, 0.7 -> 3/4, but
    # 0.7 is above the positive threshold 0.6.
    t_pos, t_neg = precision_thresholds(y, s, 0.75)
    assert (t_pos[0], t_neg[0]) == (0.6, 0.3)


def test_table_and_array_give_the_same_thresholds():
    y = np.array([[1, 0], [0, -1], [1, 1], [-1, 0], [0, 1]], np.float32)
    s = np.array([[0.9, 0.2], [0.3, 0.5], [0.8, 0.7], [0.5, 0.1], [0.6, 0.9]])
    from_array = precision_thresholds(y, s, 0.8)
    from_table = precision_thresholds(PartialLabels.from_array(y), s, 0.8)
    np.testing.assert_array_equal(from_array, from_table)


def test_per_label_targets():
    y = np.array([[1, 1], [0, 0], [1, 1], [0, 0]])
    s = np.array([[0.9, 0.9], [0.8, 0.8], [0.7, 0.7], [0.1, 0.1]])
    # Score >= 0.7 holds 2 positives of 3 (precision 2/3): enough for 0.6, not for 1.0.
    t_pos, _ = precision_thresholds(y, s, [0.6, 1.0])
    assert (t_pos[0], t_pos[1]) == (0.7, 0.9)


# === Refusals: one class held out ===


def test_no_positive_threshold_without_a_held_out_negative(caplog):
    # All held-out cells positive: every cut has precision 1; the lowest would fill every cell.
    y = np.array([[1], [1], [1]])
    with caplog.at_level(logging.WARNING, logger="ssl_multilabel.thresholds"):
        t_pos, t_neg = precision_thresholds(y, np.array([[0.9], [0.5], [0.1]]), 0.9)
    assert (t_pos[0], t_neg[0]) == (np.inf, -np.inf)
    assert "one class only" in caplog.text


def test_no_negative_threshold_without_a_held_out_positive():
    y = np.array([[0], [0], [0]])
    t_pos, t_neg = precision_thresholds(y, np.array([[0.9], [0.5], [0.1]]), 0.9)
    assert (t_pos[0], t_neg[0]) == (np.inf, -np.inf)


def test_cells_outside_the_mask_do_not_count_as_the_missing_class():
    # The only negative lies outside `cells`: the fit sees positives only and refuses.
    y = np.array([[1], [1], [0]])
    t_pos, _ = precision_thresholds(y, np.array([[0.9], [0.5], [0.1]]), 0.9, cells=np.array([[True], [True], [False]]))
    assert t_pos[0] == np.inf


def test_best_f1_refuses_one_class_labels():
    t_pos, t_neg = best_f1_thresholds(np.array([[1], [1]]), np.array([[0.9], [0.1]]))
    assert (t_pos[0], t_neg[0]) == (np.inf, -np.inf)


def test_label_without_held_out_cells_gets_no_threshold(caplog):
    with caplog.at_level(logging.WARNING, logger="ssl_multilabel.thresholds"):
        t_pos, t_neg = precision_thresholds(np.array([[1, -1], [0, -1]]), np.array([[0.9, 0.5], [0.1, 0.5]]))
    assert (t_pos[1], t_neg[1]) == (np.inf, -np.inf)
    assert "no held-out known cell" in caplog.text


# === The two public wrappers use the same thresholds ===


def test_fill_and_pseudo_label_wrappers_agree_with_the_module():
    rng = np.random.default_rng(3)
    y = np.where(rng.random((40, 3)) < 0.7, rng.integers(0, 2, (40, 3)), -1).astype(float)
    s = rng.integers(0, 21, (40, 3)) / 20.0
    expected = precision_thresholds(y, s, 0.8)
    np.testing.assert_array_equal(select_thresholds(s, y, np.ones(y.shape, bool), 0.8), expected)
    np.testing.assert_array_equal(thresholds_for_precision(y, s, 0.8), expected)


def test_pseudo_label_wrapper_refuses_a_positive_threshold_on_positives_only():
    # The teacher's thresholds once lacked this check (issue 16).
    t_pos, t_neg = thresholds_for_precision(np.array([[1.0], [1.0]]), np.array([[0.9], [0.2]]), 0.9)
    assert (t_pos[0], t_neg[0]) == (np.inf, -np.inf)


# === Argument errors ===


def test_target_precision_out_of_range_is_an_error():
    with pytest.raises(ValueError, match=r"argument `target_precision`. Expected a float in \(0, 1\].*Received: target_precision=1.5"):
        precision_thresholds(np.array([[1], [0]]), np.array([[0.9], [0.1]]), 1.5)


def test_target_precision_of_the_wrong_length_is_an_error():
    with pytest.raises(ValueError, match=r"one per label \(1\). Received: target_precision=\[0.9, 0.8\]"):
        precision_thresholds(np.array([[1], [0]]), np.array([[0.9], [0.1]]), [0.9, 0.8])


def test_scores_of_another_shape_are_an_error():
    with pytest.raises(ValueError, match=r"argument `scores`. Expected shape \(2, 1\).*Received shape \(2, 2\)"):
        precision_thresholds(np.array([[1], [0]]), np.zeros((2, 2)))


def test_non_finite_scores_are_an_error():
    with pytest.raises(ValueError, match=r"`scores`: row 1, column 0 is nan; expected finite scores"):
        precision_thresholds(np.array([[1], [0]]), np.array([[0.9], [np.nan]]))


def test_min_selected_below_one_is_an_error():
    with pytest.raises(ValueError, match=r"argument `min_selected`. Expected an int >= 1. Received: min_selected=0"):
        precision_thresholds(np.array([[1], [0]]), np.array([[0.9], [0.1]]), min_selected=0)


def test_cells_of_another_shape_are_an_error():
    with pytest.raises(ValueError, match=r"argument `cells`. Expected a bool array of shape \(2, 1\)"):
        precision_thresholds(np.array([[1], [0]]), np.array([[0.9], [0.1]]), cells=np.ones((1, 1), bool))


def test_invalid_label_values_are_an_error():
    with pytest.raises(ValueError, match=r"`labels` row 1, column 0: expected a value in \[0, 1\].*got -0.5"):
        precision_thresholds(np.array([[1], [-0.5]]), np.array([[0.9], [0.1]]))


def test_the_thresholds_log_line_names_at_most_ten_labels(caplog):
    """With 300 labels one INFO line held every threshold (3,750 characters)."""
    import logging

    rng = np.random.default_rng(0)
    y = (rng.random((60, 15)) < 0.5).astype(float)
    with caplog.at_level(logging.INFO, logger="ssl_multilabel.thresholds"):
        t_pos, _ = precision_thresholds(y, rng.random((60, 15)), 0.5)
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Thresholds for precision")]
    assert "(the first 10 of 15 labels)" in line and str(np.round(t_pos[:10], 4).tolist()) in line
