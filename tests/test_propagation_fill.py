"""fill_unknown: only unknown cells change, thresholds come from the known cells' out-of-fold scores only."""

import re
import warnings

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from ssl_multilabel.labels import PartialLabels, Source
from ssl_multilabel.propagation import diffuse, fill_unknown, fold_ids, knn_graph, select_thresholds
from ssl_multilabel.thresholds import precision_thresholds


def _two_blobs(seed=0):
    rng = np.random.default_rng(seed)
    X = np.r_[rng.normal([5, 0], 1, (60, 2)), rng.normal([0, 5], 1, (60, 2))]
    truth = np.r_[np.ones(60), np.zeros(60)][:, None].repeat(2, axis=1)
    truth[:, 1] = 1 - truth[:, 1]
    Y = np.where(rng.random(truth.shape) < 0.4, truth, -1)
    return X, truth, Y


def test_select_thresholds_hand_computed():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1])[:, None]
    truth = np.array([1, 1, 0, 1, 0, 0])[:, None]
    mask = np.ones_like(truth, dtype=bool)
    t_pos, t_neg = select_thresholds(scores, truth, mask, target_precision=0.75)
    # Positives: top-4 precision 3/4 = 0.75 (lowest cut reaching it) -> 0.6.
    # Negatives: bottom-4 (0.1, 0.2, 0.6, 0.7) has NPV 3/4, but 0.7 is above the positive
    # threshold; below it, bottom-2 (NPV 1) -> 0.2.
    assert t_pos[0] == pytest.approx(0.6) and t_neg[0] == pytest.approx(0.2)
    t_pos, t_neg = select_thresholds(scores, truth, mask, target_precision=None)
    # Best F1: top-2 gives 2*2/(2+3)=0.8, top-4 gives 2*3/(4+3)=0.857 -> threshold 0.6.
    assert t_pos[0] == pytest.approx(0.6) and t_neg[0] < 0.6


def test_one_class_held_out_cells_give_no_fill_of_the_other_class(caplog):
    # Held-out positives only (single-positive tables): every cut has precision 1, so a
    # positive threshold would fill every cell; none is chosen. Negatives only: no negative one.
    scores = np.array([[0.9, 0.9], [0.5, 0.5], [0.1, 0.1]])
    truth = np.array([[1, 0], [1, 0], [1, 0]])
    t_pos, t_neg = select_thresholds(scores, truth, np.ones_like(truth, dtype=bool), target_precision=0.9)
    assert t_pos[0] == np.inf and t_neg[0] == -np.inf  # column 0: positives only
    assert t_pos[1] == np.inf and t_neg[1] == -np.inf  # column 1: negatives only
    assert "[0, 1]" in caplog.text


def test_fold_ids_deal_each_label_and_class_evenly():
    rng = np.random.default_rng(0)
    Y = np.where(rng.random((103, 3)) < 0.5, (rng.random((103, 3)) < 0.3).astype(float), -1.0)
    fold = fold_ids(Y, 4, seed=1)
    assert ((fold == -1) == (Y == -1)).all()
    for j in range(3):
        for value in (0, 1):
            counts = np.bincount(fold[Y[:, j] == value, j], minlength=4)
            assert counts.max() - counts.min() <= 1 and counts.sum() == (Y[:, j] == value).sum()
    np.testing.assert_array_equal(fold, fold_ids(Y, 4, seed=1))
    assert not np.array_equal(fold, fold_ids(Y, 4, seed=2))
    with pytest.raises(ValueError, match=r"Expected an int >= 2. Received: folds=1"):
        fold_ids(Y, 1)


def test_thresholds_are_fitted_on_each_known_cells_score_without_its_own_fold():
    # A scorer that records its seeds: the fold runs hide each known cell exactly once, and the
    # thresholds equal precision_thresholds on the scores each cell got while hidden.
    X, truth, Y = _two_blobs(2)
    W = knn_graph(X, k=6)
    seeds_seen, outputs = [], []

    def scorer(seeds):
        seeds_seen.append(seeds.copy())
        outputs.append(diffuse(W, seeds).probability)
        return outputs[-1]

    labels = PartialLabels.from_array(Y)
    filled, report = fill_unknown(labels, scorer, folds=3, return_report=True)
    *fold_runs, last = seeds_seen
    assert len(fold_runs) == 3 and (last == Y).all()
    hidden = np.array([(s == -1) & (Y != -1) for s in fold_runs])
    np.testing.assert_array_equal(hidden.sum(axis=0), (Y != -1).astype(int))  # each known cell hidden once
    out_of_fold = np.choose(hidden.argmax(axis=0), outputs[:3])
    expected = precision_thresholds(Y, out_of_fold, 0.9, cells=Y != -1)
    np.testing.assert_array_equal(report["threshold_pos"], expected[0])
    np.testing.assert_array_equal(report["threshold_neg"], expected[1])
    assert (report["heldout_cells"] == (Y != -1).sum(axis=0)).all()
    # A filled cell's weight: the probability its value is right, from scikit-learn's isotonic
    # regression of the known cells' truth on their out-of-fold scores, per label.
    new = filled.known & (Y == -1)
    for j in range(Y.shape[1]):
        known = Y[:, j] != -1
        q = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(out_of_fold[known, j], Y[known, j])
        q = q.predict(outputs[-1][:, j])
        expected_weight = np.where(filled.values[:, j] == 1, q, 1 - q)
        np.testing.assert_allclose(filled.weight[new[:, j], j], expected_weight[new[:, j]], atol=1e-6)


def test_fill_changes_only_unknown_cells_with_provenance_and_confidence():
    X, truth, Y = _two_blobs()
    labels = PartialLabels.from_array(Y)
    W = knn_graph(X, k=6, metric="l2")
    # alpha=0.99 spreads far enough on 40 %-known blobs to fill > 80 % of the unknown cells (the
    # default 0.8 fills about 73 % here, all correctly).
    filled = fill_unknown(labels, W, target_precision=0.9, alpha=0.99)
    known = labels.known
    np.testing.assert_array_equal(filled.values[known], labels.values[known])
    assert (filled.source[known] == Source.HUMAN).all() and (filled.weight[known] == 1).all()
    new = filled.known & ~known
    assert new.sum() > 0.8 * (~known).sum()
    assert (filled.source[new] == Source.PROPAGATED).all()
    right = filled.values == truth
    assert right[new].mean() >= 0.9  # the target precision
    # The weight is the calibrated probability that the filled value is right: it rises with the
    # score among a label's positive fills, falls among its negative fills, and the wrong fills get
    # less of it than the right ones (here the thresholds sit near p = 0.13, where |2p - 1|, the
    # diffusion's confidence, would weigh a positive fill the more the lower its score).
    p = diffuse(W, Y, alpha=0.99).probability
    for j in range(Y.shape[1]):
        for value, sign in ((1, 1), (0, -1)):
            cells = np.flatnonzero(new[:, j] & (filled.values[:, j] == value))
            assert (np.diff(filled.weight[cells[np.argsort(sign * p[cells, j])], j]) >= -1e-6).all()
    assert filled.weight[new & ~right].mean() < 0.5 < filled.weight[new & right].mean()


def test_cross_fitting_stops_once_the_held_out_cells_are_enough(monkeypatch):
    # At scale one fold holds plenty of cells of each class: no more runs are made, and the
    # thresholds rest on that fold's cells alone.
    import ssl_multilabel.propagation.fill as fill

    X, truth, Y = _two_blobs(3)
    W = knn_graph(X, k=6)
    seeds_seen = []

    def scorer(seeds):
        seeds_seen.append(seeds.copy())
        return diffuse(W, seeds).probability

    fewest = min(((Y == v) & (fold_ids(Y, 4, 0) == 0)).sum(0).min() for v in (0, 1))
    monkeypatch.setattr(fill, "ENOUGH_HELD_OUT", fewest)
    _, report = fill_unknown(PartialLabels.from_array(Y), scorer, folds=4, return_report=True)
    first, last = seeds_seen  # one fold run, then the fill run
    held = (first == -1) & (Y != -1)
    np.testing.assert_array_equal(held, fold_ids(Y, 4, 0) == 0)
    expected = precision_thresholds(Y, diffuse(W, first).probability, 0.9, cells=held)
    np.testing.assert_array_equal(report["threshold_pos"], expected[0])
    assert (report["heldout_cells"] == held.sum(axis=0)).all()
    for enough, fold_runs in ((fewest + 1, 2), (10**9, 4)):  # one cell short after one fold; never enough
        monkeypatch.setattr(fill, "ENOUGH_HELD_OUT", enough)
        seeds_seen.clear()
        fill_unknown(PartialLabels.from_array(Y), scorer, folds=4)
        assert len(seeds_seen) == fold_runs + 1


def test_thresholds_never_use_hidden_cells():
    # A scorer that records its seeds and scores unknown cells adversarially: if thresholds were
    # fitted on anything but the held-out known cells they would move.
    X, truth, Y = _two_blobs(1)
    labels = PartialLabels.from_array(Y)
    calls = []

    def scorer(seeds):
        calls.append(seeds.copy())
        p = np.where(truth == 1, 0.8, 0.2)
        return np.where(Y == -1, 0.5, p)  # hidden cells all at 0.5: useless for thresholds

    filled, report = fill_unknown(labels, scorer, target_precision=0.9, folds=3, return_report=True)
    *folds, last = calls
    assert len(folds) == 3 and all(((s == -1) & (Y != -1)).any() for s in folds)  # each fold hides known cells
    assert (last == Y).all()  # the fill run uses them all
    np.testing.assert_allclose(report["threshold_pos"], 0.8)
    np.testing.assert_allclose(report["threshold_neg"], 0.2)
    # Hidden cells score 0.5, between the thresholds: nothing is filled.
    assert (filled.known == labels.known).all()


def test_array_scores_need_explicit_thresholds():
    _, _, Y = _two_blobs()
    labels = PartialLabels.from_array(Y)
    scores = np.full(Y.shape, 0.7)
    with pytest.raises(ValueError, match="pass `thresholds="):
        fill_unknown(labels, scores)
    filled = fill_unknown(labels, scores, thresholds=(0.6, 0.1), soft=True)
    new = filled.known & ~labels.known
    assert new.sum() == (~labels.known).sum()
    np.testing.assert_allclose(filled.values[new], 0.7)
    np.testing.assert_allclose(filled.weight[new], 0.7, rtol=1e-6)  # nothing calibrated: the score itself
    for bad in ((0.6,), (0.1, 0.6), (np.nan, 0.1), ([0.6, 0.7, 0.8], 0.1)):
        with pytest.raises(ValueError, match="argument `thresholds`"):
            fill_unknown(labels, scores, thresholds=bad)


def test_input_errors():
    _, _, Y = _two_blobs()
    with pytest.raises(TypeError, match="`labels` must be a PartialLabels"):
        fill_unknown(Y, lambda s: s)
    with pytest.raises(ValueError, match=r"`target_precision` must be in \[0.5, 1\] or None; got 0.2"):
        fill_unknown(PartialLabels.from_array(Y), lambda s: s, target_precision=0.2)
    with pytest.raises(ValueError, match=r"argument `Y`. Expected shape \(n_samples, n_labels\). Received shape \(7,\)"):
        fold_ids(np.array([1, 1, 0, 0, -1, 1, 0]))
    with pytest.raises(ValueError, match=r"Expected an int >= 2. Received: folds=1.5"):
        fill_unknown(PartialLabels.from_array(Y), lambda s: s, folds=1.5)
    with pytest.raises(ValueError, match=r"Expected None or a float in \(0, 1\). Received: precision_confidence=1"):
        fill_unknown(PartialLabels.from_array(Y), lambda s: s, precision_confidence=1)
    with pytest.raises(ValueError, match=r"`precision_confidence=0.8` applies to `target_precision`, which is None"):
        fill_unknown(PartialLabels.from_array(Y), lambda s: s, target_precision=None, precision_confidence=0.8)
    with pytest.raises(ValueError, match=r"with explicit `thresholds` it would go unused"):
        fill_unknown(PartialLabels.from_array(Y), np.full(Y.shape, 0.5), thresholds=(0.6, 0.4), precision_confidence=0.8)
    with pytest.raises(ValueError, match=r"Diffusion settings \['alpha'\] apply when `scores` is an affinity graph"):
        fill_unknown(PartialLabels.from_array(Y), lambda s: np.full(Y.shape, 0.5), alpha=0.5)
    with pytest.raises(ValueError, match=r"returned nan at row 0, column 1; expected finite"):
        fill_unknown(PartialLabels.from_array(Y), lambda s: np.where(np.arange(Y.size).reshape(Y.shape) == 1, np.nan, 0.5))


def test_a_numpy_number_is_a_target_precision_like_a_python_float():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal([5, 0], 1, (40, 2)), rng.normal([0, 5], 1, (40, 2))]
    Y = np.full((80, 1), -1.0)
    Y[:20], Y[40:60] = 1, 0
    labels, W = PartialLabels.from_array(Y), knn_graph(X, k=5)
    expected = fill_unknown(labels, W, target_precision=0.9)
    got = fill_unknown(labels, W, target_precision=np.float32(0.9))
    np.testing.assert_array_equal(got.to_array(), expected.to_array())
    with pytest.raises(ValueError, match=r"`target_precision` must be in \[0.5, 1\] or None; got True"):
        fill_unknown(labels, W, target_precision=True)


def test_a_threshold_fitted_on_a_few_held_out_cells_is_named_in_a_warning():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal([5, 0], 1, (400, 2)), rng.normal([0, 5], 1, (400, 2))]
    Y = np.full((800, 2), -1.0)
    Y[:200, 0], Y[400:600, 0] = 1, 0  # "thick": 400 known cells, each held out in one fold
    Y[:4, 1], Y[400:404, 1] = 1, 0  # "thin": 8 known cells (4 of each class)
    labels = PartialLabels.from_array(Y, ["thick", "thin"])
    W = knn_graph(X, k=5)
    with pytest.warns(UserWarning, match=r"checked on fewer than 10 held-out cells for the positive fills of \['thin'\] "
                                         r"and the negative fills of \['thin'\].*precision_confidence") as record:
        filled, report = fill_unknown(labels, W, return_report=True)
    assert not any("'thick'" in str(w.message) for w in record)
    assert report.loc["thin", "heldout_cells"] == 8 and report.loc["thick", "heldout_cells"] == 400
    # The precision each threshold met, and on how many held-out cells: at most the 4 of each class.
    assert report.loc["thin", "heldout_selected_pos"] <= 4 and report.loc["thin", "heldout_selected_neg"] <= 4
    assert report.loc["thick", "heldout_selected_pos"] >= 10
    assert (filled.source[:, 1] == Source.PROPAGATED).any()  # the thin label is still filled: a warning, not a refusal
    # With a confidence level the evidence is weighed instead: 4 of 4 right is not enough for 0.9 at
    # 0.8 (P(Binomial(4, 0.9) >= 4) = 0.66 > 0.2), so the thin label is not filled, and nothing warns.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bounded = fill_unknown(labels, W, precision_confidence=0.8)
    assert not (bounded.source[:, 1] == Source.PROPAGATED).any()
    assert (bounded.source[:, 0] == Source.PROPAGATED).sum() > 0.9 * 400  # of its 400 unknown cells


def test_a_thin_threshold_that_fills_no_cell_is_not_warned_about():
    """4 + 4 known cells fit finite thresholds (0.95 / 0.05), but every unknown cell scores 0.5: the
    fill fills nothing, so no warning names the label (it named it before, for fills never made)."""
    Y = np.full((28, 1), -1.0)
    Y[:4], Y[4:8] = 1, 0
    score = np.where(np.arange(28) < 4, 0.95, np.where(np.arange(28) < 8, 0.05, 0.5))[:, None]
    labels = PartialLabels.from_array(Y, ["thin"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        filled, report = fill_unknown(labels, lambda seeds: score.copy(), return_report=True)
    assert np.isfinite(report.loc["thin", "threshold_pos"]) and np.isfinite(report.loc["thin", "threshold_neg"])
    assert report.loc["thin", "filled_pos"] == 0 and report.loc["thin", "filled_neg"] == 0
    assert filled.known.sum() == 8


def test_a_label_without_both_classes_is_named_once_not_by_its_column_number(caplog):
    # The fill warned by name about labels without both classes known, then the thresholds logged
    # the same labels again as column numbers ("Labels [1] have no held-out known cell").
    import logging

    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    y = np.full((60, 2), -1.0)
    y[:30, 0] = (X[:30, 0] > 0).astype(float)
    y[:5, 1] = 1.0  # positives only
    labels = PartialLabels.from_array(y, label_names=["cat", "dog"])
    with caplog.at_level(logging.INFO), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filled = fill_unknown(labels, knn_graph(X, k=5))
    messages = [str(w.message) for w in caught]
    assert any(re.search(r"not filled .*\['dog'\]", m) for m in messages)
    assert not any("label 1" in m for m in messages)  # the diffusion's numbered repeat
    assert "Labels [" not in caplog.text and "[1]" not in caplog.text
    assert not (filled.known & ~labels.known)[:, 1].any()


def test_a_rare_label_filled_negative_by_its_base_rate_alone_is_named():
    # 5 % positives: every cut meets 90 % negative precision, so the fill wrote 0 into every unknown
    # cell, the unknown positives too, without a word (embeddings that say nothing did the same).
    rng = np.random.default_rng(4)
    n = 400
    truth = np.c_[rng.random(n) < 0.05, rng.random(n) < 0.5].astype(float)
    X = np.c_[truth[:, 1] + 0.3 * rng.normal(size=n), rng.normal(size=(n, 3))].astype(np.float32)
    y = np.where(rng.random((n, 2)) < 0.5, truth, -1.0)
    labels = PartialLabels.from_array(y, label_names=["rare", "common"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filled = fill_unknown(labels, knn_graph(X, k=10))
    messages = [str(w.message) for w in caught if "base rate alone" in str(w.message)]
    assert len(messages) == 1 and messages[0].startswith("Labels ['rare']:")
    unknown = ~labels.known[:, 0]
    assert (filled.known[unknown, 0] & (filled.values[unknown, 0] == 0)).all()  # what the warning says
    # With every cell known there is nothing to fill: no warning (it used to say every unknown cell
    # would be filled 0 when there was none).
    known = PartialLabels.from_array(np.where(labels.known, y, truth), label_names=["rare", "common"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fill_unknown(known, knn_graph(X, k=10))
    assert not [w for w in caught if "base rate alone" in str(w.message)]
