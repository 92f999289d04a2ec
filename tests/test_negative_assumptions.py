"""Labels without a known negative: the negative assumption is chosen on held-out positives (PU-AUC)."""

import logging

import numpy as np
import pytest

from ssl_multilabel.labels import PartialLabels, Source
from ssl_multilabel.recipes.steps import assume_negatives
from ssl_multilabel.teacher_student.assumptions import (
    Assumption,
    candidate_assumptions,
    choose_negative_assumption,
    likely_positive_cells,
    pu_auc,
)


def test_pu_auc_is_the_share_of_positive_unlabeled_pairs_ranked_right():
    rng = np.random.default_rng(0)
    pos, unl = rng.integers(0, 5, 30).astype(float), rng.integers(0, 5, 50).astype(float)  # many ties
    pairs = (pos[:, None] > unl[None, :]) + 0.5 * (pos[:, None] == unl[None, :])
    assert pu_auc(pos, unl) == pytest.approx(pairs.mean(), abs=1e-12)
    with pytest.raises(ValueError, match="positives and unlabeled"):
        pu_auc(pos, [])


def test_candidates_are_assume_negative_and_weak_negatives_of_the_literature():
    assert candidate_assumptions(10) == (Assumption("assume negative", 1.0), Assumption("weak negatives", 1 / 9))
    assert candidate_assumptions(1) == (Assumption("assume negative", 1.0),)


def _single_positive(rng, n=400):
    """Labels a, b: one known positive per positive row with probability 0.5, no negative known;
    label c: random cells with negatives. Feature 0 carries a's truth, feature 1 b's."""
    truth = (rng.random((n, 3)) < 0.4).astype(float)
    x = np.stack([truth[:, 0] + 0.3 * rng.normal(size=n), truth[:, 1] + 0.3 * rng.normal(size=n),
                  rng.normal(size=n)], axis=1)
    y = np.full((n, 3), -1.0)
    y[:, :2] = np.where((truth[:, :2] == 1) & (rng.random((n, 2)) < 0.5), 1.0, -1.0)
    y[:, 2] = np.where(rng.random(n) < 0.3, truth[:, 2], -1.0)
    return PartialLabels.from_array(y, label_names=["a", "b", "c"]), x


def test_the_candidate_that_ranks_held_out_positives_first_is_chosen_per_label():
    # A hand-made scorer whose right answer is known: trained with negatives of weight 1 it scores
    # by feature 0 (a's truth), with weak negatives by feature 1 (b's truth). So assume-negative
    # must win on label a and weak negatives on label b; c has known negatives and needs nothing.
    rng = np.random.default_rng(1)
    labels, x = _single_positive(rng)

    def scorer(train_x, train_y, train_w, test_x):
        negative_weight = float(train_w[train_y == 0][0])
        return test_x[:, 0] if negative_weight == 1.0 else test_x[:, 1]

    choice = choose_negative_assumption(labels, x, scorer=scorer, seed=0, log=False)
    assert choice.labels == ("a", "b")
    assert choice.chosen["a"].name == "assume negative" and choice.chosen["b"].name == "weak negatives"
    assert choice.pu_auc["a"]["assume negative"] > 0.8 > choice.pu_auc["a"]["weak negatives"]
    assert choice.pu_auc["b"]["weak negatives"] > 0.8 > choice.pu_auc["b"]["assume negative"]
    filled = choice.apply(labels)
    new = filled.known & ~labels.known
    assert (filled.source[new] == Source.IMPLIED).all() and (filled.values[new] == 0).all()
    np.testing.assert_array_equal(new[:, 0], ~labels.known[:, 0])
    np.testing.assert_allclose(filled.weight[new[:, 0], 0], 1.0)
    np.testing.assert_allclose(filled.weight[new[:, 1], 1], 0.5)  # 1 / (L - 1), L = 3
    assert not new[:, 2].any()
    np.testing.assert_array_equal(filled.values[labels.known], labels.values[labels.known])


def test_logistic_regression_choice_logs_one_line_with_the_figures(caplog):
    rng = np.random.default_rng(2)
    labels, x = _single_positive(rng)
    with caplog.at_level(logging.INFO, logger="ssl_multilabel.teacher_student.assumptions"):
        choice = choose_negative_assumption(labels, x, seed=0)
    (record,) = caplog.records
    assert "No known negative for 2 label(s)" in record.getMessage() and "PU-AUC" in record.getMessage()
    for name in ("a", "b"):
        # Feature j separates the label well: both candidates rank held-out positives high.
        assert min(choice.pu_auc[name].values()) > 0.8
        assert choice.chosen[name] in candidate_assumptions(3)
        assert f"{name} (assume negative {choice.pu_auc[name]['assume negative']:.3f}" in record.getMessage()


def test_without_features_or_positives_the_choice_is_assume_negative(caplog):
    rng = np.random.default_rng(3)
    labels, x = _single_positive(rng)
    with caplog.at_level(logging.INFO, logger="ssl_multilabel.teacher_student.assumptions"):
        choice = choose_negative_assumption(labels, None)
    assert choice.weights() == {"a": 1.0, "b": 1.0} and choice.pu_auc == {}
    assert len(caplog.records) == 1 and "no features given" in caplog.records[0].getMessage()
    few = PartialLabels.from_array(np.where(np.arange(40)[:, None] < 2, 1.0, -1.0), label_names=["a"])
    assert choose_negative_assumption(few, np.arange(40.0)[:, None], log=False).chosen["a"].weight == 1.0
    with pytest.raises(ValueError, match=r"`features` has shape \(3, 1\); expected \(400, d\)"):
        choose_negative_assumption(labels, np.zeros((3, 1)), log=False)


def test_assume_negatives_applies_the_choice_and_keeps_labels_with_a_negative():
    rng = np.random.default_rng(4)
    labels, x = _single_positive(rng)
    out = assume_negatives(labels, features=x, seed=0, log=False)
    expected = choose_negative_assumption(labels, x, seed=0, log=False).apply(labels)
    np.testing.assert_array_equal(out.weight, expected.weight)
    np.testing.assert_array_equal(out.known[:, :2], True)
    np.testing.assert_array_equal(out.known[:, 2], labels.known[:, 2])


def test_the_choice_reads_only_the_given_rows():
    # Reference: the same choice made on the table cut down to those rows. Cells outside the rows
    # (here: known negatives for a, which would make a need no assumption) change nothing.
    rng = np.random.default_rng(5)
    labels, x = _single_positive(rng)
    rows = np.arange(300)
    outside = labels.to_array()
    outside[300:, 0] = 0.0
    changed = PartialLabels.from_array(outside, label_names=labels.label_names)
    reference = choose_negative_assumption(labels.subset(rows), x[rows], seed=0, log=False)
    for table in (labels, changed):
        choice = choose_negative_assumption(table, x, seed=0, rows=rows, log=False)
        assert choice.labels == reference.labels == ("a", "b")
        assert choice.chosen == reference.chosen and choice.pu_auc == reference.pu_auc
    assert choose_negative_assumption(changed, x, seed=0, log=False).labels == ("b",)


def test_assume_negatives_on_training_rows_fills_a_label_whose_negatives_are_all_held_out():
    # Label a's only known negative is in row 3 (a validation row): the training rows 0-2 hold no
    # negative for a, so its unknown cells are assumed negative; read on every row, a needs nothing.
    y = np.array([[1, 0], [-1, 1], [1, -1], [0, -1]], np.float32)
    table = PartialLabels.from_array(y, label_names=["a", "b"])
    out = assume_negatives(table, rows=np.array([0, 1, 2]), log=False)
    np.testing.assert_array_equal(out.to_array(), [[1, 0], [0, 1], [1, -1], [0, -1]])
    assert out.source[1, 0] == Source.IMPLIED and out.source[3, 0] == Source.HUMAN
    assert assume_negatives(table, log=False) is table


def test_a_supervised_step_assumes_negatives_from_its_training_rows(tmp_path, monkeypatch):
    from ssl_multilabel.labels import validation_split
    from ssl_multilabel.recipes import Quickstart, Recipe, Supervised, run_recipe
    from ssl_multilabel.teacher_student import assumptions

    seen = []
    real = assumptions.choose_negative_assumption

    def spy(labels, features=None, **kwargs):
        seen.append((labels, kwargs["rows"]))
        return real(labels, features, **kwargs)

    monkeypatch.setattr(assumptions, "choose_negative_assumption", spy)
    recipe = Recipe(data=Quickstart(protocol="single_positive", n_train=80, n_test=20),
                    steps=[Supervised(epochs=1, validation_fraction=0.25)], seed=3)
    run_recipe(recipe, tmp_path / "run")
    (labels, rows), = seen
    expected, _ = validation_split(labels, 0.25, 3 * 1000)
    np.testing.assert_array_equal(rows, expected)
    assert len(rows) < labels.n_samples


def test_steps_on_a_frozen_backbone_assume_negatives_of_weight_one(tmp_path, weights_file, monkeypatch):
    # With cached features at hand the steps could choose weak negatives by PU-AUC; they do not
    # (on the photo recipe's dev split that choice scored below weight 1).
    from _photos import SIZE, write_photo_folder

    from ssl_multilabel.labels import Source
    from ssl_multilabel.recipes import ImageFolder, NoisyStudent, Recipe, Supervised, run_recipe
    from ssl_multilabel.teacher_student import assumptions, sources

    csv = write_photo_folder(tmp_path / "photos", n=40)
    header, *rows = csv.read_text().splitlines()  # keep the positives only: no label has a known negative
    rows = [",".join(c if j == 0 or c == "1" else "" for j, c in enumerate(row.split(","))) for row in rows]
    csv.write_text("\n".join([header, *rows]) + "\n")
    given = PartialLabels.load(csv)
    assert given.known.any(axis=0).all() and (given.values[given.known] == 1).all()
    seen = []
    real = assumptions.choose_negative_assumption
    monkeypatch.setattr(assumptions, "choose_negative_assumption",
                        lambda labels, features=None, **kw: seen.append(features) or real(labels, features, **kw))
    proposed = []  # the student's assumed negatives (training targets; the step's table does not keep them)
    propose = sources.AssumeNegative.propose
    monkeypatch.setattr(sources.AssumeNegative, "propose",
                        lambda self, inputs, current: proposed.append(propose(self, inputs, current)) or proposed[-1])
    recipe = Recipe(
        data=ImageFolder(labels_csv=str(csv), image_dir=str(csv.parent), image_size=SIZE, channels=3, test_fraction=0.0),
        steps=[Supervised(backbone="mobilenet", width=0.25, weights=str(weights_file), epochs=1),
               NoisyStudent(epochs=1, rounds=1)],
    )
    run_dir = run_recipe(recipe, tmp_path / "run")
    assert seen and all(features is None for features in seen)
    assert proposed
    for table in proposed:
        implied = table.known & (table.source == Source.IMPLIED)
        assert implied.any()
        np.testing.assert_array_equal(table.weight[implied], 1.0)
        np.testing.assert_array_equal(table.values[implied], 0.0)
    final = PartialLabels.load(run_dir / "labels.npz")
    assert not (final.known & (final.source == Source.IMPLIED)).any()  # guesses are not handed on as findings


def _single_positive_blobs(seed: int = 0, n: int = 300):
    """Label 0 is positive on one blob of two; a third of its positives are known, nothing else."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.5
    features = rng.normal(size=(n, 4)) + 3.0 * truth[:, None]
    y = np.full((n, 2), -1.0)
    y[truth & (rng.random(n) < 1 / 3), 0] = 1.0
    y[rng.random(n) < 0.3, 1] = 0.0
    y[:20, 1] = 1.0  # label 1 has known negatives and positives: no assumption, no likely positive
    return features, truth, PartialLabels.from_array(y)


def test_likely_positives_are_the_hidden_positives_of_a_label_without_a_known_negative():
    features, truth, table = _single_positive_blobs()
    likely = likely_positive_cells(table, features, seed=0)
    hidden = truth & ~table.known[:, 0]
    assert not likely[:, 1].any() and not (likely & table.known).any()
    # Against the truth: nearly every hidden positive is found, and few negatives are taken for one.
    assert (likely[:, 0] & hidden).sum() / hidden.sum() > 0.9
    assert (likely[:, 0] & hidden).sum() / likely[:, 0].sum() > 0.9


def test_likely_positives_follow_elkan_and_noto_on_cross_fitted_logistic_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    features = rng.normal(size=(60, 3))
    y = np.full((60, 1), -1.0)
    y[(features[:, 0] + 0.8 * rng.normal(size=60) > 0.3) & (rng.random(60) < 0.5), 0] = 1.0
    table = PartialLabels.from_array(y)
    # Reference: fold f of row i is its place in the seeded permutation modulo 3; each fold is
    # scored by a logistic regression on the standardised features of the other folds' rows.
    fold = np.random.default_rng(7).permutation(60) % 3
    g = np.zeros(60)
    for f in range(3):
        rest = fold != f
        scaler = StandardScaler().fit(features[rest])
        fitted = LogisticRegression(max_iter=300).fit(scaler.transform(features[rest]), y[rest, 0] == 1.0)
        g[fold == f] = fitted.predict_proba(scaler.transform(features[fold == f]))[:, 1]
    c = g[y[:, 0] == 1.0].mean()
    expected = (y[:, 0] == -1.0) & (g / c >= 0.5)
    assert 0 < expected.sum() < (y[:, 0] == -1.0).sum()
    np.testing.assert_array_equal(likely_positive_cells(table, features, folds=3, seed=7)[:, 0], expected)


def test_no_likely_positive_with_too_few_known_positives():
    features, _, table = _single_positive_blobs()
    y = table.to_array()
    y[np.flatnonzero(y[:, 0] == 1.0)[3:], 0] = -1.0  # three known positives left
    assert not likely_positive_cells(PartialLabels.from_array(y), features).any()
