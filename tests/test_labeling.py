"""The labeling loop (`ssl_multilabel.labeling`): extending a trained model with new labels,
ranking the cells to label next, and merging a person's answers."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from ssl_multilabel.labeling import (
    cell_priorities,
    check_model_labels,
    diverse_priorities,
    extend_model,
    human_cells,
    merge_answers,
    per_label_order,
    read_model_labels,
    suggest_cells,
    teacher_fill,
    typical_priorities,
)
from ssl_multilabel.labels import PartialLabels, Source

# === Extending a model ===


def _random_images(shape, n=6, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *shape)).astype("float32")


@pytest.fixture(scope="module")
def small_model():
    from ssl_multilabel.models import build_classifier

    model = build_classifier("small_cnn", 3, (16, 16, 1), seed=0)
    # Non-zero biases, so a lost bias would show in the scores.
    kernel, bias = model.get_layer("scores").get_weights()
    model.get_layer("scores").set_weights([kernel, np.array([0.3, -0.2, 0.1], np.float32)])
    return model


def test_extended_model_keeps_the_old_labels_scores(small_model):
    x = _random_images((16, 16, 1))
    extended = extend_model(small_model, ["a", "b", "c"], ["x", "c", "a", "y", "b"], seed=1)
    old, new = small_model.predict(x, verbose=0), extended.predict(x, verbose=0)
    assert extended.output_shape == (None, 5)
    np.testing.assert_allclose(new[:, [2, 4, 1]], old, atol=1e-6)  # a, b, c in the table's order


def test_extended_model_copies_the_old_units_and_starts_new_ones_fresh(small_model):
    import keras

    extended = extend_model(small_model, ["a", "b", "c"], ["a", "new", "b", "c"], seed=4)
    old_kernel, old_bias = small_model.get_layer("scores").get_weights()
    kernel, bias = extended.get_layer("scores").get_weights()
    np.testing.assert_array_equal(kernel[:, [0, 2, 3]], old_kernel)
    np.testing.assert_array_equal(bias[[0, 2, 3]], old_bias)
    assert bias[1] == 0.0
    # Keras' default Dense initialiser, seeded: the column of a fresh 4-unit Glorot-uniform kernel.
    fresh = keras.initializers.GlorotUniform(seed=4)(kernel.shape)
    np.testing.assert_allclose(kernel[:, 1], np.asarray(fresh)[:, 1], atol=0)
    limit = math.sqrt(6.0 / (kernel.shape[0] + kernel.shape[1]))
    assert np.abs(kernel[:, 1]).max() <= limit and np.abs(kernel[:, 1]).max() > 0


def test_extending_leaves_the_original_model_alone(small_model):
    before = [w.copy() for w in small_model.get_weights()]
    extended = extend_model(small_model, ["a", "b", "c"], ["a", "b", "c", "d"])
    extended.get_layer("scores").set_weights([np.zeros_like(w) for w in extended.get_layer("scores").get_weights()])
    for a, b in zip(before, small_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert small_model.output_shape == (None, 3)


def test_extended_frozen_backbone_stays_frozen_with_its_noise_layer_and_penalty():
    from ssl_multilabel.models import build_classifier, frozen_backbone, head_model

    model = build_classifier("mobilenet", 2, (32, 32, 3), weights=None, freeze=True, feature_noise=0.5, l2=0.03,
                             backbone_kwargs={"alpha": 0.25}, seed=0)
    extended = extend_model(model, ["p", "q"], ["q", "r", "p"])
    assert frozen_backbone(extended)
    kernel = extended.get_layer("scores").get_weights()[0]
    np.testing.assert_allclose(float(extended.losses[0]), 0.03 * np.sum(kernel.astype(np.float64) ** 2), rtol=1e-5)
    assert [layer.name for layer in extended.layers][-4:] == ["embedding", "feature_noise", "dropout", "scores"]
    x = _random_images((32, 32, 3), n=3)
    np.testing.assert_allclose(extended.predict(x, verbose=0)[:, [2, 0]], model.predict(x, verbose=0), atol=1e-6)
    # The head on cached features is the extended head.
    assert head_model(extended).output_shape == (None, 3)


def test_extended_noisy_student_and_logits_models_keep_their_scores():
    from ssl_multilabel.models import build_classifier
    from ssl_multilabel.teacher_student import build_student_classifier

    x = _random_images((16, 16, 1), n=4)
    student = build_student_classifier(2, (16, 16, 1), survival_probability=0.8, seed=0)
    logits = build_classifier("small_cnn", 2, (16, 16, 1), activation=None, seed=0)
    for model in (student, logits):
        extended = extend_model(model, ["u", "v"], ["v", "w", "u"])
        np.testing.assert_allclose(extended.predict(x, verbose=0)[:, [2, 0]], model.predict(x, verbose=0), atol=1e-5)
        assert extended.get_layer("scores").activation == model.get_layer("scores").activation


def test_extended_pretrained_backbone_stays_frozen(weights_dir):
    from ssl_multilabel.models import build_classifier, frozen_backbone

    model = build_classifier("mobilenet", 2, (32, 32, 3), weights=weights_dir / "mobilenet_v1_0.75_224_imagenet_notop.weights.h5",
                             backbone_kwargs={"alpha": 0.75}, seed=0)
    extended = extend_model(model, ["p", "q"], ["p", "q", "r"])
    assert frozen_backbone(model) and frozen_backbone(extended)
    for a, b in zip(model.get_layer("backbone").get_weights(), extended.get_layer("backbone").get_weights()):
        np.testing.assert_array_equal(a, b)
    x = _random_images((32, 32, 3), n=3)
    np.testing.assert_allclose(extended.predict(x, verbose=0)[:, :2], model.predict(x, verbose=0), atol=1e-6)


def test_extended_model_round_trips_through_a_keras_file(small_model, tmp_path):
    from ssl_multilabel.models import load_model

    extended = extend_model(small_model, ["a", "b", "c"], ["a", "b", "c", "d"])
    extended.save(tmp_path / "m.keras")
    x = _random_images((16, 16, 1), n=3)
    np.testing.assert_allclose(load_model(tmp_path / "m.keras").predict(x, verbose=0), extended.predict(x, verbose=0),
                               atol=1e-6)


def test_a_renamed_label_is_one_error_naming_it_and_both_sources(small_model):
    with pytest.raises(ValueError, match=r"The model's labels \['b'\] \(from model.keras.labels.json\) are not labels "
                                         r"of the table \(from labels.csv\).*Model labels: \['a', 'b', 'c'\]; table "
                                         r"labels: \['a', 'B', 'c'\]"):
        check_model_labels(["a", "b", "c"], ["a", "B", "c"], model_source="model.keras.labels.json",
                           table_source="labels.csv")
    with pytest.raises(ValueError, match=r"The model's labels \['b', 'c'\]"):
        extend_model(small_model, ["a", "b", "c"], ["a", "d"])


def test_model_labels_must_match_the_outputs(small_model):
    with pytest.raises(ValueError, match=r"the model has 3 outputs; got 2 label names"):
        extend_model(small_model, ["a", "b"], ["a", "b", "c"])
    # A string where a list belongs is refused, not split into one-letter labels.
    with pytest.raises(ValueError, match=r"Label names from `table_labels`: expected a list of non-empty strings; "
                                         r"got 'abcd'"):
        extend_model(small_model, ["a", "b", "c"], "abcd")


def test_read_model_labels_checks_the_file(tmp_path):
    path = tmp_path / "m.keras.labels.json"
    path.write_text(json.dumps(["a", "b"]))
    assert read_model_labels(path) == ["a", "b"]
    with pytest.raises(ValueError, match="expected a JSON list of 3 non-empty strings"):
        read_model_labels(path, 3)
    path.write_text(json.dumps(["a", "a"]))
    with pytest.raises(ValueError, match=r"duplicate label names \['a'\]"):
        read_model_labels(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_model_labels(tmp_path / "none.json")


def test_teacher_fill_fills_only_the_old_labels_unknown_cells():
    table = PartialLabels.from_array([[1, -1, -1], [-1, 0, -1]], ["a", "new", "b"], ["r0", "r1"])
    old_scores = np.array([[0.9, 0.2], [0.4, 0.7]])  # outputs a, b of the old model
    filled = teacher_fill(table, old_scores, ["a", "b"])
    np.testing.assert_allclose(filled.to_array(), [[1, -1, 0.2], [0.4, 0, 0.7]], atol=1e-7)
    assert filled.source.tolist() == [[Source.HUMAN, 0, Source.TEACHER], [Source.TEACHER, Source.HUMAN, Source.TEACHER]]
    assert filled.weight.tolist() == [[1, 0, 1], [1, 1, 1]]


# === Suggesting cells ===
#
# The hand-computed example: rows x, y, z and labels a, b; thresholds 0.5.
#   known:   x a=1, y a=0, z b=0          unknown: (x,b), (y,b), (z,a)
#   scores:  x (0.9, 0.6), y (0.2, 0.3), z (0.55, 0.1)
#   uncertainty u = 1 - |s - 0.5| / 0.5:  (x,b) 0.8, (y,b) 0.6, (z,a) 0.9
#   need q = 1 + 1 / (1 + positives): a has 1, b has 0 -> q_a = 1.5, q_b = 2
#   suggest (no graph, no propagation): (x,b) 0.8*2 = 1.6, (z,a) 0.9*1.5 = 1.35, (y,b) 0.6*2 = 1.2


def _table():
    return PartialLabels.from_array([[1, -1], [0, -1], [-1, 0]], ["a", "b"], ["x", "y", "z"])


SCORES = np.array([[0.9, 0.6], [0.2, 0.3], [0.55, 0.1]])


def _cells(frame):
    return list(zip(frame["id"], frame["label"]))


def test_suggest_ranks_by_the_hand_computed_priorities():
    frame = suggest_cells(_table(), SCORES, budget=3, thresholds=0.5)
    assert list(frame.columns) == ["id", "label", "score", "answer"]
    assert _cells(frame) == [("x", "b"), ("z", "a"), ("y", "b")]
    assert frame["score"].tolist() == [0.6, 0.55, 0.3]
    assert frame["answer"].tolist() == ["", "", ""]
    priority = cell_priorities(_table(), SCORES, thresholds=0.5)
    np.testing.assert_allclose(priority[[0, 2, 1], [1, 0, 1]], [1.6, 1.35, 1.2])
    assert np.isnan(priority[[0, 1, 2], [0, 0, 1]]).all()


def test_uncertainty_ranks_by_closeness_to_the_threshold_alone():
    frame = suggest_cells(_table(), SCORES, budget=3, thresholds=0.5, method="uncertainty")
    assert _cells(frame) == [("z", "a"), ("x", "b"), ("y", "b")]


def test_disagreement_with_propagation_raises_a_cell():
    propagation = np.full((3, 2), 0.5)
    propagation[1, 1] = 1.0  # (y,b): d = |0.3 - 1| = 0.7 > its u = 0.6: 0.7*2 = 1.4 > (z,a)'s 1.35
    frame = suggest_cells(_table(), SCORES, budget=3, thresholds=0.5, propagation=propagation)
    assert _cells(frame) == [("x", "b"), ("y", "b"), ("z", "a")]


def test_reach_counts_unknown_neighbour_cells():
    # Graph x - y - z. (x,b): neighbour y has b unknown -> 1; (y,b): x unknown, z known -> 1;
    # (z,a): neighbour y has a known -> 0. r = n / 1: priorities 1.6*2, 1.2*2, 1.35.
    graph = sp.csr_matrix(np.array([[0, 0.5, 0], [0.5, 0, 0.2], [0, 0.2, 0]], np.float32))
    frame = suggest_cells(_table(), SCORES, budget=3, thresholds=0.5, graph=graph)
    assert _cells(frame) == [("x", "b"), ("y", "b"), ("z", "a")]
    priority = cell_priorities(_table(), SCORES, thresholds=0.5, graph=graph)
    np.testing.assert_allclose(priority[[0, 1, 2], [1, 1, 0]], [3.2, 2.4, 1.35])


def test_default_thresholds_are_the_best_f1_cut_of_the_known_cells():
    # Label a: known x=1 (0.9), y=0 (0.2): best-F1 cut 0.9. Label b: one class known -> 0.5.
    # (z,a): u = 1 - |0.55 - 0.9| / 0.9.
    priority = cell_priorities(_table(), SCORES, method="uncertainty")
    assert priority[2, 0] == pytest.approx(1 - 0.35 / 0.9)
    assert priority[0, 1] == pytest.approx(0.8)


def test_budget_cuts_the_ranking_and_never_exceeds_the_unknown_cells():
    assert _cells(suggest_cells(_table(), SCORES, budget=1, thresholds=0.5)) == [("x", "b")]
    assert len(suggest_cells(_table(), SCORES, budget=10, thresholds=0.5)) == 3
    assert len(suggest_cells(_table(), SCORES, budget=0)) == 0


def test_random_draws_unknown_cells_only_and_depends_on_the_seed():
    rng = np.random.default_rng(0)
    truth = (rng.random((50, 4)) < 0.5).astype(float)
    partial = np.where(rng.random(truth.shape) < 0.5, truth, -1.0)
    table = PartialLabels.from_array(partial)
    scores = rng.random(truth.shape)
    everything = suggest_cells(table, scores, budget=200, method="random", seed=1)
    unknown = {(table.ids[i], table.label_names[j]) for i, j in zip(*np.nonzero(~table.known))}
    assert set(_cells(everything)) == unknown and len(everything) == len(unknown)
    a = _cells(suggest_cells(table, scores, budget=10, method="random", seed=1))
    b = _cells(suggest_cells(table, scores, budget=10, method="random", seed=2))
    assert a == _cells(everything)[:10] and a != b


def test_typicality_is_the_inverse_mean_distance_to_the_nearest_neighbours():
    from sklearn.neighbors import NearestNeighbors

    from ssl_multilabel.labeling import _typicality

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    distances, _ = NearestNeighbors(n_neighbors=8).fit(x).kneighbors(x)  # itself first
    np.testing.assert_allclose(_typicality(x, 7), 1.0 / distances[:, 1:].mean(axis=1), rtol=1e-6)
    assert _typicality(x[:1], 7).tolist() == [0.0]


def test_typical_asks_the_most_typical_row_of_each_uncovered_cluster_largest_first():
    # Three directions on the unit circle (typical_priorities compares unit vectors): blob A around
    # 0 degrees (9 rows), B around 120 (7 rows), C around 240 (5 rows); in each blob, row `centre`
    # lies at the blob's mean direction (the least mean distance to the others), the rest spread
    # symmetrically around it.
    angles, centres = [], []
    for mean, size in ((0.0, 9), (120.0, 7), (240.0, 5)):
        centres.append(len(angles))
        angles.extend([mean, *(mean + np.linspace(-10, 10, size - 1))])
    rad = np.radians(angles)
    features = np.c_[np.cos(rad), np.sin(rad)] * np.linspace(1, 3, len(rad))[:, None]  # lengths do not matter
    known = np.zeros((len(rad), 1), bool)
    known[3, 0] = True  # blob A holds a known cell: covered
    # budget 2 -> 1 known + 2 = 3 clusters, the three blobs; B (7 rows) before C (5 rows)
    table = PartialLabels.from_array(np.where(known, 1.0, -1.0), label_names=["a"])
    frame = suggest_cells(table, None, budget=2, features=features, method="typical")
    assert frame["id"].tolist() == [table.ids[centres[1]], table.ids[centres[2]]]
    assert frame["score"].isna().all() and frame["answer"].tolist() == ["", ""]
    priority = typical_priorities(known, features, 2)
    assert np.isnan(priority[3, 0]) and np.argsort(-np.nan_to_num(priority[:, 0], nan=-1))[:2].tolist() == centres[1:]


def test_typical_spends_an_equal_share_per_label_in_turn():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(30, 4))
    known = rng.random((30, 3)) < 0.2
    table = PartialLabels.from_array(np.where(known, 1.0, -1.0), label_names=["a", "b", "c"])
    frame = suggest_cells(table, None, budget=7, features=features, method="typical", seed=3)
    assert frame["label"].tolist() == ["a", "b", "c", "a", "b", "c", "a"]
    assert not any(known[table.ids.index(i), "abc".index(j)] for i, j in _cells(frame))
    # the same cells as each label's ranking of typical_priorities, taken in turn
    rows, cols = per_label_order(typical_priorities(known, features, 7, seed=3))
    assert _cells(frame) == [(table.ids[i], "abc"[j]) for i, j in zip(rows[:7], cols[:7])]


def test_diverse_draws_the_most_uncertain_row_first_then_by_squared_distance():
    # Gradient vectors g = u * unit(x): A = (1, 0) (u 1), B = (0, 0.5) (u 0.5), C = (0.5, 0) (u 0.5).
    # A is drawn first (the longest); then B with probability |B - A|^2 / (|B - A|^2 + |C - A|^2)
    # = 1.25 / 1.5 (k-means++ seeding).
    uncertainty = np.array([[1.0], [0.5], [0.5]])
    features = np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 0.0]])  # lengths do not matter
    seconds = []
    for seed in range(600):
        priority = diverse_priorities(uncertainty, features, 2, seed=seed)[:, 0]
        assert priority[0] == priority.max() and np.sum(priority > 1) == 2  # A first, two rows drawn
        seconds.append(int(priority[1] > 1))
    p = 1.25 / 1.5
    assert abs(np.mean(seconds) - p) < 4 * math.sqrt(p * (1 - p) / 600)


def test_diverse_never_draws_a_repeat_and_skips_known_cells():
    # Rows 0-3 repeat one vector; rows 4 and 5 lie elsewhere. Three draws: one of the repeats (the
    # longest vector), then rows 4 and 5, never a second repeat (squared distance 0).
    uncertainty = np.array([[0.9], [0.9], [0.9], [np.nan], [0.3], [0.4]])
    features = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0], [-1.0, 0.0]])
    for seed in range(20):
        priority = diverse_priorities(uncertainty, features, 3, seed=seed)[:, 0]
        drawn = set(np.flatnonzero(priority > 1))
        assert len(drawn & {0, 1, 2}) == 1 and {4, 5} <= drawn and np.isnan(priority[3])


def test_diverse_ranks_by_the_uncertainty_term_and_spends_an_equal_share_per_label():
    rng = np.random.default_rng(2)
    known = rng.random((40, 3)) < 0.3
    table = PartialLabels.from_array(np.where(known, (rng.random((40, 3)) < 0.5).astype(float), -1.0),
                                     label_names=["a", "b", "c"])
    scores, features = rng.random((40, 3)), rng.normal(size=(40, 5))
    frame = suggest_cells(table, scores, budget=6, features=features, method="diverse", thresholds=0.4, seed=4)
    assert frame["label"].tolist() == ["a", "b", "c", "a", "b", "c"]
    assert not any(known[table.ids.index(i), "abc".index(j)] for i, j in _cells(frame))
    u = np.where(known, np.nan, 1 - np.abs(scores - 0.4) / 0.6)  # the uncertainty term, by hand
    best = np.nanargmax(u, axis=0)  # each label's first draw: its most uncertain unknown cell
    assert _cells(frame)[:3] == [(table.ids[best[j]], "abc"[j]) for j in range(3)]
    rows, cols = per_label_order(diverse_priorities(u, features, 6, seed=4))
    assert _cells(frame) == [(table.ids[i], "abc"[j]) for i, j in zip(rows[:6], cols[:6])]


def test_typical_caps_the_clusters_and_labels_at_the_cap_share_one_clustering(monkeypatch):
    import sklearn.cluster

    import ssl_multilabel.labeling as labeling

    fitted = []

    class CountingKMeans(sklearn.cluster.KMeans):
        def fit_predict(self, x, *args, **kwargs):
            fitted.append(self.n_clusters)
            return super().fit_predict(x, *args, **kwargs)

    monkeypatch.setattr(sklearn.cluster, "KMeans", CountingKMeans)
    monkeypatch.setattr(labeling, "TYPICAL_MAX_CLUSTERS", 4)
    rng = np.random.default_rng(2)
    known = np.zeros((40, 3), bool)
    known[:6, 0] = known[:1, 1] = known[:9, 2] = True  # + a share of 1: 7, 2 and 10 clusters, capped at 4
    typical_priorities(known, rng.normal(size=(40, 3)), 3)
    assert fitted == [4, 2]  # labels 0 and 2 share the clustering at the cap


def test_per_label_order_takes_each_label_s_best_cell_in_turn():
    priority = np.array([[0.9, np.nan, 0.1], [0.2, 0.8, np.nan], [0.5, 0.7, np.nan], [np.nan, 0.6, np.nan]])
    rows, cols = per_label_order(priority)
    # by hand: rank 0 of labels 0, 1, 2; rank 1 of labels 0, 1; rank 2 of labels 0, 1
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 0), (1, 1), (0, 2), (2, 0), (2, 1), (1, 0), (3, 1)]


@pytest.mark.parametrize("method", ["suggest", "uncertainty", "random"])
def test_per_label_spends_an_equal_share_per_label_in_the_ranking_s_order(method):
    rng = np.random.default_rng(3)
    truth = (rng.random((40, 3)) < 0.3).astype(float)
    table = PartialLabels.from_array(np.where(rng.random(truth.shape) < 0.4, truth, -1.0), label_names=["a", "b", "c"])
    scores = rng.random(truth.shape)
    everything = _cells(suggest_cells(table, scores, budget=120, method=method, seed=5))  # the global ranking
    frame = suggest_cells(table, scores, budget=10, method=method, per_label=True, seed=5)
    # by brute force: each label's cells in the order of the global ranking, taken a, b, c, a, b, c, ...
    queues = {name: [cell for cell in everything if cell[1] == name] for name in "abc"}
    expected = [queues[name][rank] for rank in range(4) for name in "abc"][:10]
    assert _cells(frame) == expected
    assert frame["label"].tolist() == ["a", "b", "c"] * 3 + ["a"]
    assert _cells(suggest_cells(table, scores, budget=10, method=method, seed=5)) == everything[:10]  # default: global


def test_suggest_rejects_bad_input():
    with pytest.raises(ValueError, match=r"`scores` has shape \(2, 2\); expected \(3, 2\)"):
        suggest_cells(_table(), SCORES[:2], budget=1)
    with pytest.raises(ValueError, match=r"`scores` row 0, column 1: expected a probability in \[0, 1\]; got 1.5"):
        suggest_cells(_table(), [[0.1, 1.5], [0, 0], [0, 0]], budget=1)
    with pytest.raises(ValueError, match=r"`budget`. Expected an int >= 0. Received: budget=-1"):
        suggest_cells(_table(), SCORES, budget=-1)
    with pytest.raises(ValueError, match=r"`method`. Expected one of"):
        suggest_cells(_table(), SCORES, budget=1, method="entropy")
    with pytest.raises(ValueError, match=r"`thresholds`. Expected None, a float in \[0, 1\] or one per label \(2\)"):
        suggest_cells(_table(), SCORES, budget=1, thresholds=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match=r"`graph`. Expected shape \(3, 3\)"):
        suggest_cells(_table(), SCORES, budget=1, graph=sp.eye(2, format="csr"))
    with pytest.raises(ValueError, match=r"method='typical' ranks rows by their features"):
        suggest_cells(_table(), SCORES, budget=1, method="typical")
    with pytest.raises(ValueError, match=r"method='diverse' ranks rows by their features"):
        suggest_cells(_table(), SCORES, budget=1, method="diverse")
    with pytest.raises(ValueError, match=r"`features`. Expected an \(n, d\) array with one row per row of the table \(3\)"):
        suggest_cells(_table(), SCORES, budget=1, method="diverse", features=np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"`features`. Expected an \(n, d\) array with one row per row of the table \(3\)"):
        suggest_cells(_table(), SCORES, budget=1, method="typical", features=np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"method='suggest' ranks cells by the model's scores; pass an array of shape \(3, 2\) "
                                         r"\(only method='typical' ranks without them\)"):
        suggest_cells(_table(), None, budget=1)


# === Answers ===


def _answers(rows):
    return pd.DataFrame(rows, columns=["id", "label", "score", "answer"])


def test_answers_become_human_cells_and_nothing_else_changes():
    table = _table().fill(np.array([[-1, 0.8], [-1, -1], [-1, -1]]), 0.8, Source.PROPAGATED)
    merged = merge_answers(table, _answers([["z", "a", 0.55, "1"], ["y", "b", 0.3, ""], ["x", "b", 0.6, "0"]]))
    np.testing.assert_array_equal(merged.to_array(), [[1, 0], [0, -1], [1, 0]])
    assert merged.source.tolist() == [[Source.HUMAN] * 2, [Source.HUMAN, 0], [Source.HUMAN] * 2]
    assert merged.weight.tolist() == [[1, 1], [1, 0], [1, 1]]
    assert merged.ids == table.ids and merged.label_names == table.label_names


def test_answers_keep_exclusive_groups():
    # Row x: a person said a=1, so b is an implied 0; row y is unknown. Group {a, b}, c outside it.
    table = PartialLabels.from_array([[1, -1, -1], [-1, -1, -1]], label_names=list("abc"), ids=["x", "y"],
                                     exclusive_groups=[["a", "b"]])
    merged = merge_answers(table, _answers([["y", "a", 0.5, "1"], ["y", "c", 0.5, "1"]]))
    np.testing.assert_array_equal(merged.to_array(), [[1, 0, -1], [1, 0, 1]])  # y's b is implied by its a
    assert merged.source.tolist() == [[Source.HUMAN, Source.IMPLIED, 0], [Source.HUMAN, Source.IMPLIED, Source.HUMAN]]
    with pytest.raises(ValueError, match=r"cells.csv: the answers break an exclusive group\. Row id 'y': labels "
                                         r"\['a', 'b'\] are all positive"):
        merge_answers(table, _answers([["y", "a", 0.5, "1"], ["y", "b", 0.5, "1"]]), where="cells.csv")
    with pytest.raises(ValueError, match=r"line 2 \(id 'x', label 'b'\): answer '1' contradicts the table, where this "
                                         r"cell is a negative implied by a person's positive of its exclusive group"):
        merge_answers(table, _answers([["x", "b", 0.5, "1"]]))


def test_answers_from_a_csv_file(tmp_path):
    path = tmp_path / "cells.csv"
    path.write_text("id,label,score,answer\nz,a,0.55,1.0\ny,b,0.3,0\n")
    merged = merge_answers(_table(), path)
    np.testing.assert_array_equal(merged.to_array(), [[1, -1], [0, 0], [1, 0]])



def test_answers_take_the_label_table_s_spellings_and_name_an_unreadable_file(tmp_path):
    # The same cell spellings as a label table (one meaning of a cell), and a file saved in
    # Excel's Latin-1 or with semicolons gets the advice the label table reader gives.
    path = tmp_path / "cells.csv"
    path.write_text("id,label,score,answer\nz,a,0.55,TRUE\ny,b,0.3, false \nx,b,0.2,?\n")
    merged = merge_answers(_table(), path)
    np.testing.assert_array_equal(merged.to_array(), [[1, -1], [0, 0], [1, 0]])
    path.write_bytes("id,label,score,answer\ny,a,0.5,1\ncaf\u00e9,b,0.3,0\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"cells.csv' is not UTF-8 text: line 3 holds the byte b'\\xe9'. Save it as CSV UTF-8"):
        merge_answers(_table(), path)
    path.write_text("id;label;score;answer\ny;a;0.5;1\n")
    with pytest.raises(ValueError, match=r"expected comma-separated columns; the header 'id;label;score;answer' is one column"):
        merge_answers(_table(), path)


def test_answers_read_numbers_as_a_label_table_does_and_name_lines_as_an_editor_counts(tmp_path):
    """`1.00` (a spreadsheet's number format) and `-0.0` were refused although a label table takes
    them, pd.NA was refused though NaN is blank, and after a blank line or a cell over two lines the
    error named the wrong line (row index + 2). Reference: the lines counted by hand."""
    path = tmp_path / "cells.csv"
    path.write_text("id,label,score,answer\nz,a,0.55,1.00\ny,b,0.3,-0.0\n")
    np.testing.assert_array_equal(merge_answers(_table(), path).to_array(), [[1, -1], [0, 0], [1, 0]])
    frame = pd.DataFrame({"id": ["z", "y"], "label": ["a", "b"], "answer": pd.array([1, pd.NA], dtype="Int64")})
    np.testing.assert_array_equal(merge_answers(_table(), frame).to_array(), [[1, -1], [0, -1], [1, 0]])
    path.write_text('id,label,score,answer,note\nz,a,0.55,1,""\n\ny,b,0.3,1,"two\nlines"\nx,b,0.2,maybe,\n')
    with pytest.raises(ValueError, match=r"cells.csv line 6 \(id 'x', label 'b'\): answer 'maybe'"):
        merge_answers(_table(), path)
    path.write_text("id,label,score,answer\nz,a,0.55,1\n\ny,b,0.3,1,extra\n")
    with pytest.raises(ValueError, match=r"Row id 'y' \(line 4\) of answers file .*cells.csv': expected 4 fields"):
        merge_answers(_table(), path)


@pytest.mark.parametrize("answer", ["yes", "2", "0.5", "-1", "maybe"])
def test_an_answer_other_than_1_0_or_blank_names_the_csv_line(answer):
    rows = [["z", "a", 0.5, "1"], ["x", "b", 0.6, answer]]
    with pytest.raises(ValueError, match=rf"cells.csv line 3 \(id 'x', label 'b'\): answer {re.escape(repr(answer))} is not 1, 0 or blank"):
        merge_answers(_table(), _answers(rows), where="cells.csv")


def test_unknown_ids_labels_and_contradictions_name_the_line():
    with pytest.raises(ValueError, match=r"answers line 2 \(id 'w', label 'a'\): id 'w' is not a row"):
        merge_answers(_table(), _answers([["w", "a", 0.5, "1"]]))
    with pytest.raises(ValueError, match=r"line 2 \(id 'x', label 'c'\): label 'c' is not a label of the table"):
        merge_answers(_table(), _answers([["x", "c", 0.5, "1"]]))
    with pytest.raises(ValueError, match=r"line 3 .*answer '0' contradicts line 2"):
        merge_answers(_table(), _answers([["x", "b", 0.5, "1"], ["x", "b", 0.5, "0"]]))
    with pytest.raises(ValueError, match=r"line 2 \(id 'x', label 'a'\): answer '0' contradicts the table, where a "
                                         r"person labeled this cell 1"):
        merge_answers(_table(), _answers([["x", "a", 0.5, "0"]]))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['answer'\]"):
        merge_answers(_table(), pd.DataFrame({"id": ["x"], "label": ["a"]}))


def test_human_cells_drop_machine_cells_and_keep_group_negatives():
    table = PartialLabels.from_array([[1, -1, -1], [-1, -1, 0]], ["cat", "dog", "car"], ["r0", "r1"],
                                     exclusive_groups=[["cat", "dog"]])
    assert table.source[0, 1] == Source.IMPLIED  # dog follows from cat
    filled = table.fill(np.array([[-1, -1, 0.9], [0.2, -1, -1]]), 0.9, Source.TEACHER)
    filled = filled.fill(np.array([[-1, -1, -1], [-1, 0.0, -1]]), 1.0, Source.IMPLIED)  # an assume-negative cell
    human = human_cells(filled)
    np.testing.assert_array_equal(human.to_array(), [[1, 0, -1], [-1, -1, 0]])
    assert human.source.tolist() == [[Source.HUMAN, Source.IMPLIED, 0], [0, 0, Source.HUMAN]]


def test_equal_priorities_tie_by_row_whatever_their_last_bit():
    """0.1 + 0.2 + 0.3 is 0.6000000000000001: equal to 0.6 by its formula, so the two cells tie
    and rank by row (docs/labeling.md), not by the rounding error."""
    priority = np.array([[0.6, 0.2], [0.1 + 0.2 + 0.3, 0.2]])
    assert priority[1, 0] > priority[0, 0]  # the float arithmetic the ranking must not see
    rows, cols = per_label_order(priority)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_answers_line_of_a_row_whose_cell_spans_lines_is_where_the_row_starts(tmp_path):
    path = tmp_path / "cells.csv"
    path.write_text('id,label,score,answer,note\nz,a,0.55,1,x\nx,b,0.2,maybe,"two\nlines"\n')
    with pytest.raises(ValueError, match=r"cells.csv line 3 \(id 'x', label 'b'\): answer 'maybe'"):
        merge_answers(_table(), path)


def test_an_id_ending_in_a_space_is_answered_as_the_table_holds_it():
    table = PartialLabels.from_array([[1, -1], [-1, 0]], ["a", "b"], ["r1 ", "r2"])
    merged = merge_answers(table, _answers([["r1 ", "b", 0.5, "0"], [" r2", "a", 0.5, "1"]]))
    np.testing.assert_array_equal(merged.to_array(), [[1, 0], [1, 0]])


def test_save_answered_keeps_other_columns_of_rows_whose_id_ends_in_a_space(tmp_path):
    """The ids were compared stripped, so one id with a space dropped every other column silently."""
    from ssl_multilabel.labeling import save_answered

    source = tmp_path / "labels.csv"
    source.write_text("id,a,group,b\nr1 ,1,g1,\nr2,,g2,0\n")
    table = PartialLabels.load(source, label_columns=["a", "b"])
    merged = merge_answers(table, _answers([["r1 ", "b", 0.5, "1"]]))
    assert save_answered(merged, tmp_path / "v2.csv", "id", source) == ["group"]
    assert (tmp_path / "v2.csv").read_text() == "id,a,group,b\nr1 ,1,g1,1\nr2,,g2,0\n"
