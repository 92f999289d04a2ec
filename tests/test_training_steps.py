"""Rules the training steps apply to a label table: assumed negatives, propagation hold-outs."""

import numpy as np
import pytest

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


def _three_clusters(seed: int, spread: float) -> tuple[np.random.Generator, np.ndarray, np.ndarray, np.ndarray]:
    """20 points around each of 3 centres, one label per cluster, 30 % of the cells known (-1 else)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 8))
    features = np.concatenate([c + spread * rng.normal(size=(20, 8)) for c in centres]).astype(np.float32)
    truth = np.repeat(np.eye(3), 20, axis=0)
    return rng, features, truth, np.where(rng.random(truth.shape) < 0.3, truth, -1.0)


def test_propagation_holdout_rows_are_neither_seeds_nor_filled():
    _, features, _, y = _three_clusters(0, 0.05)
    table = PartialLabels.from_array(y)
    holdout = np.array([0, 1, 20, 21, 40])
    filled, scores, _ = propagate_table(table, features, k=5, target_precision=None, holdout_rows=holdout)
    # Reference: the same propagation with the held-out rows' cells removed beforehand.
    y_without = y.copy()
    y_without[holdout] = -1.0
    reference_filled, reference_scores, _ = propagate_table(PartialLabels.from_array(y_without), features, k=5,
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


@pytest.mark.parametrize("kept", [0, 1, 2])
def test_noisy_student_step_table_holds_the_kept_rounds_cells(tmp_path, monkeypatch, kept):
    """With two rounds, the step's table took the last round's teacher cells even when validation
    kept an earlier model: cells of a student it had rejected (27 % right in a quickstart run).
    Reference: `filled` of the kept student's round (round 1, the kept teacher's own cells, when
    the teacher is kept), which differs from the last round's."""
    from ssl_multilabel.recipes import NoisyStudent, Quickstart, Recipe, Supervised, run_recipe
    from ssl_multilabel.recipes import steps
    from ssl_multilabel.teacher_student import loop

    captured = {}
    real = loop.noisy_student

    def capture(*args, **kwargs):
        captured["result"] = real(*args, **kwargs)
        return captured["result"]

    def split(base, *args):
        captured["base"] = base  # the step's input table
        return real_split(base, *args)

    real_split = steps.validation_split
    monkeypatch.setattr(loop, "noisy_student", capture)
    monkeypatch.setattr(steps, "validation_split", split)
    monkeypatch.setattr(steps, "_best_round", lambda rounds: rounds[kept])
    recipe = Recipe(data=Quickstart(n_train=64, n_test=8, known_fraction=0.3),
                    steps=[Supervised(epochs=1, patience=None),
                           NoisyStudent(rounds=2, epochs=1, patience=None, target_precision=None,
                                        positive_threshold=0.5, negative_threshold=0.45)], seed=0)
    run = run_recipe(recipe, tmp_path / "run")
    table = PartialLabels.load(run / "labels.npz")
    base, result = captured["base"], captured["result"]
    expected, last = result.filled(base, round_index=max(kept, 1)), result.filled(base)
    np.testing.assert_array_equal(table.known, expected.known)
    np.testing.assert_array_equal(table.values, expected.values)
    np.testing.assert_array_equal(table.source, expected.source)
    if kept < 2:
        assert not (np.array_equal(last.known, expected.known) and np.array_equal(last.values, expected.values))
    with pytest.raises(ValueError, match="must name a student round, 1 to 2"):
        result.filled(base, round_index=0)
    import json

    record = json.loads((run / "state.json").read_text())["finished"][1]  # the report's round boundaries
    assert record["info"]["round_epochs"] == [len(rnd.history["loss"]) for rnd in result.rounds[1:]] == [1, 1]


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
    voted = head_model(add_neighbour_vote(model, features, table, k=5, alpha=0.5, weight=0.7,
                                          likely_positives=False))
    # Reference: the person's cells, b's other cells as negatives, propagated by the estimator.
    seeds = np.where(y == -1, -1.0, y)
    seeds[:, 1] = np.where(y[:, 1] == 1.0, 1.0, 0.0)
    estimator = KNNLabelPropagation(n_neighbors=5, alpha=0.5, metric="cosine").fit(features, seeds)
    queries = rng.normal(size=(8, 128)).astype(np.float32)
    expected = 0.3 * predict_scores(head_model(model), queries) + 0.7 * estimator.predict_proba(queries)
    np.testing.assert_allclose(predict_scores(voted, queries), expected, atol=1e-5)


def test_a_centred_neighbour_vote_is_the_estimator_on_centred_features_and_survives_saving(tmp_path):
    from ssl_multilabel.models import build_classifier, head_model, load_model
    from ssl_multilabel.propagation import KNNLabelPropagation
    from ssl_multilabel.recipes.steps import add_neighbour_vote
    from ssl_multilabel.teacher_student.pseudo_labels import predict_scores

    rng = np.random.default_rng(5)
    features = (rng.normal(size=(40, 128)) + 2.0).astype(np.float32)  # off the origin
    y = np.where(rng.random((40, 2)) < 0.5, rng.integers(0, 2, (40, 2)), -1).astype(float)
    table = PartialLabels.from_array(y, label_names=["a", "b"])
    model = build_classifier("small_cnn", 2, (16, 16, 3))
    queries = (rng.normal(size=(8, 128)) + 2.0).astype(np.float32)
    mean = features.astype(np.float64).mean(axis=0)
    estimator = KNNLabelPropagation(n_neighbors=5, alpha=0.5, metric="cosine").fit(features - mean, y)
    expected = 0.3 * predict_scores(head_model(model), queries) + 0.7 * estimator.predict_proba(queries - mean)
    voted = add_neighbour_vote(model, features, table, k=5, alpha=0.5, weight=0.7, centre=True)
    np.testing.assert_allclose(predict_scores(head_model(voted), queries), expected, atol=1e-5)
    uncentred = add_neighbour_vote(model, features, table, k=5, alpha=0.5, weight=0.7)
    assert np.abs(predict_scores(head_model(uncentred), queries) - expected).max() > 1e-3  # centring matters here
    voted.save(tmp_path / "voted.keras")
    np.testing.assert_allclose(predict_scores(head_model(load_model(tmp_path / "voted.keras")), queries), expected,
                               atol=1e-5)


def test_neighbour_vote_leaves_the_likely_positives_of_a_label_without_a_negative_to_the_propagation():
    from ssl_multilabel.models import build_classifier, head_model
    from ssl_multilabel.propagation import KNNLabelPropagation
    from ssl_multilabel.recipes.steps import add_neighbour_vote
    from ssl_multilabel.teacher_student.assumptions import likely_positive_cells
    from ssl_multilabel.teacher_student.pseudo_labels import predict_scores

    rng = np.random.default_rng(0)
    truth = rng.random(120) < 0.5
    features = (rng.normal(size=(120, 128)) + 2.0 * truth[:, None]).astype(np.float32)
    y = np.full((120, 1), -1.0)
    y[truth & (rng.random(120) < 0.4), 0] = 1.0  # single positive labels: known positives only
    table = PartialLabels.from_array(y)
    likely = likely_positive_cells(table, features, seed=3)[:, 0]
    # Against the truth: no negative is taken for a likely positive, and half the hidden positives are found.
    assert not (likely & ~truth).any() and (likely & truth).sum() >= 0.5 * (truth & (y[:, 0] == -1.0)).sum()
    model = build_classifier("small_cnn", 1, (16, 16, 3))
    voted = head_model(add_neighbour_vote(model, features, table, k=5, alpha=0.5, weight=0.7, seed=3))
    # Reference: known positives 1, the likely positives unknown, the other cells negatives.
    seeds = np.where(y[:, 0] == 1.0, 1.0, np.where(likely, -1.0, 0.0))[:, None]
    estimator = KNNLabelPropagation(n_neighbors=5, alpha=0.5, metric="cosine").fit(features, seeds)
    queries = (rng.normal(size=(8, 128)) + 2.0 * (np.arange(8) % 2)[:, None]).astype(np.float32)
    expected = 0.3 * predict_scores(head_model(model), queries) + 0.7 * estimator.predict_proba(queries)
    np.testing.assert_allclose(predict_scores(voted, queries), expected, atol=1e-5)


@pytest.mark.parametrize("centre", [False, True])
def test_check_neighbour_vote_equals_a_scikit_learn_leave_one_out_cross_fit(centre):
    from scipy.special import expit
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score
    from sklearn.preprocessing import StandardScaler

    from ssl_multilabel.propagation import KNNLabelPropagation
    from ssl_multilabel.recipes.steps import check_neighbour_vote

    rng = np.random.default_rng(1)
    base = rng.normal(size=(36, 6))
    truth = (base[:, :2] + 0.5 * rng.normal(size=(36, 2)) > 0).astype(float)
    features = base + (1.5 if centre else 0.0)  # off the origin: centring changes every cosine
    space = features - features.mean(axis=0) if centre else features  # what the vote compares
    y = np.where(rng.random(truth.shape) < 0.6, truth, -1.0)
    y[30:] = -1.0  # unlabeled rows: in the vote's graph, never scored
    labeled = np.flatnonzero((y >= 0).any(axis=1))
    # One fold per labeled row: leave one row out, whatever the order the rows are dealt in.
    result = check_neighbour_vote(features, PartialLabels.from_array(y), k=4, alpha=0.5, weight=0.7,
                                  centre=centre, folds=len(labeled), resamples=50)
    probe = np.full(y.shape, np.nan)
    vote = np.full(y.shape, np.nan)
    for i in labeled:
        rest = np.setdiff1d(np.arange(len(y)), [i])
        for j in range(2):
            train = rest[y[rest, j] >= 0]
            scaler = StandardScaler().fit(features[train])
            fitted = LogisticRegression(max_iter=300).fit(scaler.transform(features[train]), y[train, j])
            probe[i, j] = expit(fitted.decision_function(scaler.transform(features[[i]]))[0])
        estimator = KNNLabelPropagation(n_neighbors=4, alpha=0.5, metric="cosine").fit(space[rest], y[rest])
        vote[i] = estimator.predict_proba(space[[i]])[0]
    blend = 0.3 * probe + 0.7 * vote
    known = y >= 0
    reference = [np.mean([average_precision_score(y[known[:, j], j], s[known[:, j], j]) for j in range(2)])
                 for s in (probe, blend)]
    assert result["rows"] == len(labeled)
    np.testing.assert_allclose([result["mAP_probe"], result["mAP_blend"]], reference, atol=1e-6)
    np.testing.assert_allclose(result["difference"], reference[1] - reference[0], atol=1e-6)
    assert result["difference_se"] > 0
    assert result["keep"] == (result["difference"] >= -2 * result["difference_se"])


def test_check_neighbour_vote_scores_the_cells_the_probe_learns_whatever_seeds_the_vote_diffuses():
    from ssl_multilabel.recipes.steps import check_neighbour_vote
    from ssl_multilabel.teacher_student.assumptions import likely_positive_cells

    rng = np.random.default_rng(2)
    truth = rng.random((200, 2)) < 0.4
    features = rng.normal(size=(200, 6)) + 2.0 * np.hstack([truth, truth, truth])
    y = np.where(truth & (rng.random(truth.shape) < 0.5), 1.0, -1.0)  # known positives only
    table = PartialLabels.from_array(y)
    assert likely_positive_cells(table, features, seed=0).any()
    shipped = check_neighbour_vote(features, table, seed=0, resamples=20)
    former = check_neighbour_vote(features, table, seed=0, resamples=20, likely_positives=False)
    # The same cells (known positives, every other cell a negative) and the same probe either way;
    # only the vote differs, by the seeds it diffuses.
    assert shipped["rows"] == former["rows"] == int((y >= 0).any(axis=1).sum())
    assert shipped["mAP_probe"] == former["mAP_probe"]
    assert shipped["mAP_blend"] != former["mAP_blend"]


def test_the_vote_and_its_check_take_seeds_made_once_and_give_what_they_make_themselves(monkeypatch):
    from ssl_multilabel.models import build_classifier, head_model
    from ssl_multilabel.recipes.steps import add_neighbour_vote, check_neighbour_vote, vote_seeds
    from ssl_multilabel.teacher_student import assumptions
    from ssl_multilabel.teacher_student.pseudo_labels import predict_scores

    rng = np.random.default_rng(2)
    truth = rng.random((200, 2)) < 0.4
    features = (rng.normal(size=(200, 128)) + 2.0 * np.repeat(truth, 64, axis=1)).astype(np.float32)
    table = PartialLabels.from_array(np.where(truth & (rng.random(truth.shape) < 0.5), 1.0, -1.0))
    model = build_classifier("small_cnn", 2, (16, 16, 3))
    queries = features[:8] + rng.normal(size=(8, 128)).astype(np.float32)
    made_here = (check_neighbour_vote(features, table, seed=4, resamples=20),
                 predict_scores(head_model(add_neighbour_vote(model, features, table, seed=4)), queries))
    seeds = vote_seeds(table, features, seed=4)
    assert seeds.known.sum() < table.n_samples * table.n_labels  # likely positives were left unknown
    calls = []
    estimate = assumptions.likely_positive_cells
    monkeypatch.setattr(assumptions, "likely_positive_cells", lambda *a, **kw: calls.append(1) or estimate(*a, **kw))
    given = (check_neighbour_vote(features, table, seed=4, resamples=20, seeds=seeds),
             predict_scores(head_model(add_neighbour_vote(model, features, table, seed=4, seeds=seeds)), queries))
    assert not calls  # the costly estimate is not made again
    assert given[0] == made_here[0]
    np.testing.assert_array_equal(given[1], made_here[1])


def test_check_neighbour_vote_refuses_a_vote_whose_neighbourhoods_ignore_the_labels():
    from ssl_multilabel.recipes.steps import check_neighbour_vote

    rng = np.random.default_rng(0)
    n = 400
    signal = rng.normal(size=(n, 2))
    truth = (signal > 0).astype(float)
    y = np.where(rng.random(truth.shape) < 0.5, truth, -1.0)
    # The labels follow two low-variance directions that a standardised linear probe finds, while
    # cosine neighbourhoods are set by 30 loud directions that carry no label.
    ignored = np.hstack([0.05 * signal, rng.normal(size=(n, 30))])
    refused = check_neighbour_vote(ignored, PartialLabels.from_array(y), seed=0)
    assert not refused["keep"] and refused["difference"] < -2 * refused["difference_se"]
    # Labels that alternate around a ring of 12 clusters: no linear probe separates them, the
    # neighbours do; the vote is kept, and shown to help.
    cluster = rng.integers(0, 12, n)
    angle = cluster * 2 * np.pi / 12
    truth = np.stack([cluster % 2, (cluster // 2) % 2], axis=1).astype(float)
    y = np.where(rng.random(truth.shape) < 0.5, truth, -1.0)
    ring = np.hstack([5 * np.stack([np.cos(angle), np.sin(angle)], axis=1), np.zeros((n, 10))])
    kept = check_neighbour_vote(ring + 0.3 * rng.normal(size=ring.shape), PartialLabels.from_array(y), seed=0)
    assert kept["keep"] and kept["difference"] > 2 * kept["difference_se"]


def test_check_neighbour_vote_keeps_the_vote_when_nothing_can_be_scored():
    from ssl_multilabel.recipes.steps import check_neighbour_vote

    features = np.random.default_rng(0).normal(size=(10, 4))
    y = np.full((10, 2), -1.0)
    y[:3] = 0.0  # three rows, fewer than the folds, and no known positive anywhere
    result = check_neighbour_vote(features, PartialLabels.from_array(y))
    assert result["keep"] and "no label has a known positive" in result["reason"]


@pytest.mark.parametrize("centre", [False, True])
def test_check_neighbour_vote_on_validation_equals_a_scikit_learn_reference(centre):
    from sklearn.metrics import roc_auc_score

    from ssl_multilabel.propagation import KNNLabelPropagation
    from ssl_multilabel.recipes.steps import check_neighbour_vote_on_validation

    rng = np.random.default_rng(3)
    base = rng.normal(size=(120, 6))
    truth = (base[:, :2] + 0.7 * rng.normal(size=(120, 2)) > 0).astype(float)
    features = base + (1.5 if centre else 0.0)  # off the origin: centring changes every cosine
    space = features - features.mean(axis=0) if centre else features  # what the vote compares
    y = np.where(rng.random(truth.shape) < 0.6, truth, -1.0)  # every label has known negatives
    y[100:] = -1.0  # unlabeled rows: in the vote's graph, never scored
    val = np.array([3, 8, 15, 22, 40, 41, 57, 63, 70, 88, 95, 99])
    scores = 1 / (1 + np.exp(-(base[val, :2] + rng.normal(size=(len(val), 2)))))  # some model
    result = check_neighbour_vote_on_validation(features, PartialLabels.from_array(y), scores, val, k=4, alpha=0.5,
                                                weight=0.7, centre=centre, seed=1, resamples=50)
    rest = np.setdiff1d(np.arange(120), val)  # the vote never sees the validation rows' cells
    vote = KNNLabelPropagation(n_neighbors=4, alpha=0.5, metric="cosine").fit(space[rest], y[rest]).predict_proba(
        space[val])
    known = y[val] >= 0
    reference = [np.mean([roc_auc_score(y[val][known[:, j], j], s[known[:, j], j]) for j in range(2)])
                 for s in (scores, 0.3 * scores + 0.7 * vote)]
    assert result["rows"] == len(val)
    np.testing.assert_allclose([result["AUC_model"], result["AUC_blend"]], reference, atol=1e-9)
    np.testing.assert_allclose(result["difference"], reference[1] - reference[0], atol=1e-9)
    assert result["difference_se"] > 0
    assert result["keep"] == (result["difference"] >= -2 * result["difference_se"])


def test_check_neighbour_vote_on_validation_refuses_a_vote_that_lowers_a_better_model():
    from ssl_multilabel.recipes.steps import check_neighbour_vote_on_validation

    rng = np.random.default_rng(0)
    n = 600
    signal = rng.normal(size=(n, 2))
    truth = signal > 0
    y = np.where(rng.random(truth.shape) < 0.5, truth, -1.0)
    val = np.arange(0, n, 4)
    # Cosine neighbourhoods set by 30 loud directions that carry no label; the model knows the signal.
    ignored = np.hstack([0.05 * signal, rng.normal(size=(n, 30))])
    good = 1 / (1 + np.exp(-3 * signal[val]))
    refused = check_neighbour_vote_on_validation(ignored, PartialLabels.from_array(y), good, val, seed=0)
    assert not refused["keep"] and refused["difference"] < -2 * refused["difference_se"]
    # Neighbourhoods that follow the labels, and a model that knows nothing: the vote is kept, and helps.
    clustered = np.hstack([5 * signal, 0.3 * rng.normal(size=(n, 4))])
    kept = check_neighbour_vote_on_validation(clustered, PartialLabels.from_array(y), rng.random((len(val), 2)), val,
                                              seed=0)
    assert kept["keep"] and kept["difference"] > 2 * kept["difference_se"]


def test_check_neighbour_vote_on_validation_under_single_positives_scores_the_other_cells_as_negatives():
    from ssl_multilabel.recipes.steps import check_neighbour_vote_on_validation

    rng = np.random.default_rng(2)
    truth = rng.random((200, 2)) < 0.4
    features = rng.normal(size=(200, 6)) + 2.0 * np.hstack([truth, truth, truth])
    y = np.where(truth & (rng.random(truth.shape) < 0.5), 1.0, -1.0)  # known positives only
    val = np.flatnonzero((y >= 0).any(axis=1))[::2]
    scores = rng.random((len(val), 2))
    from sklearn.metrics import roc_auc_score

    shipped = check_neighbour_vote_on_validation(features, PartialLabels.from_array(y), scores, val, seed=0,
                                                 resamples=20)
    former = check_neighbour_vote_on_validation(features, PartialLabels.from_array(y), scores, val, seed=0,
                                                resamples=20, likely_positives=False)
    # Known positives against every other cell of the validation rows, by the model's scores.
    reference = np.mean([roc_auc_score(y[val, j] == 1.0, scores[:, j]) for j in range(2)])
    assert shipped["AUC_model"] == former["AUC_model"]
    np.testing.assert_allclose(shipped["AUC_model"], reference, atol=1e-9)
    assert shipped["AUC_blend"] != former["AUC_blend"]  # only the vote's seeds differ


def test_check_neighbour_vote_on_validation_keeps_the_vote_when_nothing_can_be_scored():
    from ssl_multilabel.recipes.steps import check_neighbour_vote_on_validation

    features = np.random.default_rng(0).normal(size=(10, 4))
    y = np.full((10, 2), -1.0)
    y[:3] = 0.0
    table = PartialLabels.from_array(y)
    no_rows = check_neighbour_vote_on_validation(features, table, np.zeros((0, 2)), np.array([], dtype=int))
    assert no_rows["keep"] and "no validation row" in no_rows["reason"]
    one_class = check_neighbour_vote_on_validation(features, table, np.full((2, 2), 0.5), np.array([0, 1]))
    assert one_class["keep"] and "no label has a known positive and a known negative" in one_class["reason"]


def test_supervised_flip_shift_mirrors_the_training_images(tmp_path):
    # Label "left": a bright square in the left half (1) or in the right half (0). The exact mirror
    # of every image is in the table with the opposite label, so with random flips (flip_shift=0.0)
    # every image and its mirror carry the same mix of targets: no model can do better than
    # predicting 1/2, whose binary cross-entropy is ln 2 (closed form), while without flips a small
    # CNN fits the 48 images (loss near 0).
    import json

    from PIL import Image

    from ssl_multilabel.recipes import ImageFolder, Recipe, Supervised, run_recipe

    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    ids, left = [], []
    for i in range(0, 48, 2):  # pairs: an image with its square on the left, then its exact mirror
        image = rng.integers(0, 30, (16, 16), dtype=np.uint8)
        row, col = rng.integers(2, 11), rng.integers(1, 4)
        image[row:row + 3, col:col + 3] = 255
        for j, pixels in ((i, image), (i + 1, image[:, ::-1])):
            Image.fromarray(np.ascontiguousarray(pixels)).save(folder / f"{j}.png")
            ids.append(f"{j}.png")
        left += [1.0, 0.0]
    PartialLabels.from_array(np.array(left)[:, None], ["left"], ids).save(tmp_path / "labels.csv")

    def last_losses(flip_shift):
        data = ImageFolder(labels_csv=str(tmp_path / "labels.csv"), image_dir=str(folder), image_size=(16, 16),
                           channels=1, test_fraction=0.0)
        recipe = Recipe(data=data, steps=[Supervised(epochs=15, patience=None, validation_fraction=0.0,
                                                     learning_rate=3e-3, flip_shift=flip_shift)], seed=0)
        run = run_recipe(recipe, tmp_path / f"run_{flip_shift}")
        return json.loads(next(run.glob("steps/*supervised/history.json")).read_text())["loss"][-5:]

    assert max(last_losses(None)) < 0.1
    assert min(last_losses(0.0)) > np.log(2) - 0.02


def test_supervised_keep_epoch_last_trains_every_epoch_that_best_would_stop(tmp_path):
    # Random labels: validation mAP wanders, so patience=1 stops `keep_epoch="best"` early; "last"
    # trains all the epochs and logs validation for each of them.
    import json

    from PIL import Image

    from ssl_multilabel.recipes import ImageFolder, Recipe, Supervised, run_recipe

    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    ids = [f"{i}.png" for i in range(60)]
    for name in ids:
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / name)
    PartialLabels.from_array(rng.integers(0, 2, (60, 2)).astype(float), ["a", "b"], ids).save(tmp_path / "labels.csv")

    def history(keep_epoch):
        data = ImageFolder(labels_csv=str(tmp_path / "labels.csv"), image_dir=str(folder), image_size=(8, 8),
                           channels=1, test_fraction=0.0)
        step = Supervised(epochs=12, patience=1, validation_fraction=0.3, keep_epoch=keep_epoch)
        run = run_recipe(Recipe(data=data, steps=[step], seed=0), tmp_path / f"run_{keep_epoch}")
        return json.loads(next(run.glob("steps/*supervised/history.json")).read_text())

    assert len(history("best")["val_mAP"]) < 12
    last = history("last")
    assert len(last["val_mAP"]) == len(last["loss"]) == 12


@pytest.mark.parametrize("holdout", [None, np.array([0, 1, 20])])
def test_propagation_seeds_and_measures_on_given_cells_only(holdout):
    """A second Propagate (or one after a teacher) took the earlier machine cells as seeds and as the
    cells its target precision is measured on: a second fill was right half the time. Reference:
    the same propagation of the table without its machine cells; those cells stay as they were."""
    rng, features, truth, y = _three_clusters(2, 0.3)
    given = PartialLabels.from_array(y)
    wrong = (y == -1) & (rng.random(y.shape) < 0.4)  # a teacher's cells, all wrong
    table = given.fill(np.where(wrong, 1.0 - truth, -1.0), 0.9, Source.TEACHER)
    filled, scores, report = propagate_table(table, features, k=5, holdout_rows=holdout)
    reference, reference_scores, _ = propagate_table(given, features, k=5, holdout_rows=holdout)
    np.testing.assert_allclose(scores, reference_scores)
    np.testing.assert_array_equal(filled.values[wrong], table.values[wrong])  # kept, not re-filled
    assert (filled.source[wrong] == Source.TEACHER).all()
    new = filled.known & ~table.known
    np.testing.assert_array_equal(new, reference.known & ~given.known & ~wrong)
    np.testing.assert_array_equal(filled.values[new], reference.values[new])
    # The report counts the cells of the table returned (it counted the fill of the seeds' table).
    np.testing.assert_array_equal(report["filled_pos"], (new & (filled.values >= 0.5)).sum(axis=0))
    np.testing.assert_array_equal(report["filled_neg"], (new & (filled.values < 0.5)).sum(axis=0))
    np.testing.assert_array_equal(report["still_unknown"], (~filled.known).sum(axis=0))
