"""Rules the training steps apply to a label table: assumed negatives, propagation hold-outs."""

import numpy as np

from ssl_multilabel.labels import PartialLabels, Source
from ssl_multilabel.recipes.steps import assume_negatives, propagate_table


def test_assume_negatives_fills_only_labels_without_a_known_negative():
    y = np.array([[1, 1, -1], [-1, 0, -1], [-1, -1, 1], [1, -1, -1]], np.float32)
    table = PartialLabels.from_array(y, label_names=["a", "b", "c"])
    out = assume_negatives(table, log=False)
    # a and c have no known negative: their unknown cells become IMPLIED negatives; b is untouched.
    expected_known = np.array([[1, 1, 1], [1, 1, 1], [1, 0, 1], [1, 0, 1]], bool)
    np.testing.assert_array_equal(out.known, expected_known)
    np.testing.assert_array_equal(out.to_array(), [[1, 1, 0], [0, 0, 0], [0, -1, 1], [1, -1, 0]])
    new = out.known & ~table.known
    assert (out.source[new] == Source.IMPLIED).all() and (out.source[table.known] == Source.HUMAN).all()
    assert assume_negatives(out, log=False) is out  # every label has a negative now: nothing to do


def test_propagation_holdout_rows_are_neither_seeds_nor_filled():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8))
    features = np.concatenate([c + 0.05 * rng.normal(size=(20, 8)) for c in centres]).astype(np.float32)
    truth = np.repeat(np.eye(3), 20, axis=0)
    y = np.where(rng.random(truth.shape) < 0.3, truth, -1.0)
    table = PartialLabels.from_array(y)
    holdout = np.array([0, 1, 20, 21, 40])
    filled, scores = propagate_table(table, features, k=5, target_precision=None, holdout_rows=holdout)
    # Reference: the same propagation with the held-out rows' cells removed beforehand.
    y_without = y.copy()
    y_without[holdout] = -1.0
    reference_filled, reference_scores = propagate_table(PartialLabels.from_array(y_without), features, k=5,
                                                         target_precision=None)
    np.testing.assert_allclose(scores, reference_scores)
    rest = np.setdiff1d(np.arange(len(y)), holdout)
    np.testing.assert_array_equal(filled.known[rest], reference_filled.known[rest])
    np.testing.assert_array_equal(filled.known[holdout], table.known[holdout])  # not filled
    np.testing.assert_array_equal(filled.values[table.known], table.values[table.known])  # human cells kept
    assert (filled.source[table.known] == Source.HUMAN).all()


def test_noisy_student_step_keeps_the_round_with_the_best_validation_map():
    from types import SimpleNamespace

    from ssl_multilabel.recipes.steps import _best_round

    def rnd(index, val_map):
        metrics = {} if val_map is None else {"val": {"summary": {"mAP": val_map}}}
        return SimpleNamespace(index=index, metrics=metrics)

    assert _best_round([rnd(0, 0.80), rnd(1, 0.70)]).index == 0  # a worse student is not kept
    assert _best_round([rnd(0, 0.80), rnd(1, 0.85), rnd(2, 0.83)]).index == 1
    assert _best_round([rnd(0, 0.80), rnd(1, 0.80)]).index == 1  # a tie keeps the later round
    assert _best_round([rnd(0, None), rnd(1, float("nan")), rnd(2, 0.5)]).index == 2


def test_neighbour_vote_seeds_human_cells_and_assumes_negatives_for_a_label_without_one():
    from ssl_multilabel.models import build_classifier, head_model
    from ssl_multilabel.propagation import KNNLabelPropagation
    from ssl_multilabel.recipes.steps import add_neighbour_vote
    from ssl_multilabel.teacher_student.pseudo_labels import predict_scores

    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 128)).astype(np.float32)  # the small CNN's embedding width
    y = np.full((40, 2), -1.0)
    y[:10, 0] = rng.integers(0, 2, 10)  # label a: known positives and negatives
    y[10:20, 1] = 1.0  # label b: known positives only (as single positive labels)
    table = PartialLabels.from_array(y, label_names=["a", "b"])
    machine = np.where(y == -1, 0.9, -1.0)  # a teacher's cells: not a person's, so never seeds
    table = table.fill(machine, 1.0, Source.TEACHER)
    model = build_classifier("small_cnn", 2, (16, 16, 3))
    voted = head_model(add_neighbour_vote(model, features, table, k=5, alpha=0.5, weight=0.7))
    # Reference: the person's cells, b's other cells as negatives, propagated by the estimator.
    seeds = np.where(y == -1, -1.0, y)
    seeds[:, 1] = np.where(y[:, 1] == 1.0, 1.0, 0.0)
    estimator = KNNLabelPropagation(n_neighbors=5, alpha=0.5, metric="cosine").fit(features, seeds)
    queries = rng.normal(size=(8, 128)).astype(np.float32)
    expected = 0.3 * predict_scores(head_model(model), queries) + 0.7 * estimator.predict_proba(queries)
    np.testing.assert_allclose(predict_scores(voted, queries), expected, atol=1e-5)
