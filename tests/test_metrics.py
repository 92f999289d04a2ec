"""Masked metrics against scikit-learn on the known cells, streaming and under model.fit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from ssl_multilabel.metrics import (  # noqa: E402
    MaskedAUC,
    MaskedAveragePrecision,
    MaskedF1Score,
    MaskedPrecision,
    MaskedRecall,
    evaluate,
)

# === scikit-learn references on known cells ===


def sk_per_label(y, s, w=None):
    """Per-label AP/AUC with scikit-learn on known cells; None for labels left out."""
    aps, aucs = [], []
    for j in range(y.shape[1]):
        known = y[:, j] >= 0
        if w is not None:
            known &= w[:, j] > 0
        t = (y[known, j] >= 0.5).astype(int)
        if t.size == 0 or t.min() == t.max():
            aps.append(None)
            aucs.append(None)
            continue
        kw = None if w is None else w[known, j]
        aps.append(average_precision_score(t, s[known, j], sample_weight=kw))
        aucs.append(roc_auc_score(t, s[known, j], sample_weight=kw))
    return aps, aucs


def sk_mean(values):
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else 0.0


def sk_threshold(y, s, threshold, statistic, average):
    fn = {"f1": f1_score, "precision": precision_score, "recall": recall_score}[statistic]
    known = y >= 0
    t = (y >= 0.5).astype(int)
    pred = (s >= threshold).astype(int)
    if average == "micro":
        if not known.any():
            return 0.0
        return fn(t[known], pred[known], zero_division=0)
    values = []
    for j in range(y.shape[1]):
        kj = known[:, j]
        tj = t[kj, j]
        if tj.size and tj.min() != tj.max():  # scored labels only
            values.append(fn(tj, pred[kj, j], zero_division=0))
    return float(np.mean(values)) if values else 0.0


def _data(seed, n=40, n_labels=5):
    """Scores on a coarse grid (many ties), -1 cells, soft targets; label 3 has no known
    negative and label 4 no known cell at all (both left out)."""
    rng = np.random.default_rng(seed)
    y = rng.choice([0.0, 1.0, 0.8, 0.2], size=(n, n_labels), p=[0.4, 0.4, 0.1, 0.1])
    y[rng.random((n, n_labels)) < 0.3] = -1.0
    y[:, 3] = np.where(y[:, 3] >= 0, 1.0, -1.0)
    y[:, 4] = -1.0
    s = np.round(rng.random((n, n_labels)), 1)
    return y.astype("float32"), s.astype("float32")


def test_streaming_ranking_metrics_equal_sklearn_across_batches_with_ties():
    y, s = _data(0)
    ap_metric, auc_metric = MaskedAveragePrecision(), MaskedAUC()
    for start in range(0, len(y), 7):  # uneven batches
        ap_metric.update_state(y[start : start + 7], s[start : start + 7])
        auc_metric.update_state(y[start : start + 7], s[start : start + 7])
    aps, aucs = sk_per_label(y, s)
    assert aps[3] is None and aps[4] is None and all(v is not None for v in aps[:3])
    assert float(ap_metric.result()) == pytest.approx(sk_mean(aps), abs=1e-6)
    assert float(auc_metric.result()) == pytest.approx(sk_mean(aucs), abs=1e-6)
    per_label = ap_metric.per_label_result()
    np.testing.assert_allclose(per_label[:3], aps[:3], atol=1e-6)
    assert np.isnan(per_label[3:]).all()
    ap_metric.reset_state()
    ap_metric.update_state(y[:20], s[:20])
    assert float(ap_metric.result()) == pytest.approx(sk_mean(sk_per_label(y[:20], s[:20])[0]), abs=1e-6)


def test_streaming_ranking_metrics_with_cell_weights():
    y, s = _data(1)
    w = np.random.default_rng(1).choice([0.0, 0.5, 1.0, 2.0], size=y.shape).astype("float32")
    metric = MaskedAUC()
    metric.update_state(y[:25], s[:25], sample_weight=w[:25])
    metric.update_state(y[25:], s[25:], sample_weight=w[25:])
    assert float(metric.result()) == pytest.approx(sk_mean(sk_per_label(y, s, w)[1]), abs=1e-6)


@pytest.mark.parametrize("statistic,cls", [("f1", MaskedF1Score), ("precision", MaskedPrecision), ("recall", MaskedRecall)])
@pytest.mark.parametrize("average", ["macro", "micro"])
def test_streaming_threshold_metrics_equal_sklearn(statistic, cls, average):
    y, s = _data(2)
    metric = cls(average=average, threshold=0.4)
    for start in range(0, len(y), 9):
        metric.update_state(y[start : start + 9], s[start : start + 9])
    assert metric.name == f"{average}_{'F1' if statistic == 'f1' else statistic}"
    assert float(metric.result()) == pytest.approx(sk_threshold(y, s, 0.4, statistic, average), abs=1e-6)


def test_threshold_metric_from_logits_matches_probabilities():
    y, s = _data(3)
    logits = np.log(np.clip(s, 1e-3, 1 - 1e-3) / (1 - np.clip(s, 1e-3, 1 - 1e-3))).astype("float32")
    metric = MaskedF1Score(from_logits=True, threshold=0.35)
    metric.update_state(y, logits)
    assert float(metric.result()) == pytest.approx(sk_threshold(y, np.clip(s, 1e-3, 1 - 1e-3), 0.35, "f1", "macro"), abs=1e-6)


def test_no_scored_label_gives_zero_not_nan():
    y = np.array([[1.0, -1.0], [1.0, -1.0]], "float32")
    s = np.array([[0.2, 0.3], [0.9, 0.1]], "float32")
    for metric in (MaskedAveragePrecision(), MaskedAUC(), MaskedF1Score(), MaskedPrecision()):
        metric.update_state(y, s)
        assert float(metric.result()) == 0.0
    empty = MaskedAveragePrecision()
    assert float(empty.result()) == 0.0


def test_a_nan_score_on_a_known_cell_makes_streaming_metrics_nan_not_plausible():
    """[NaN, .2, .8, .9] against [1, 0, 1, 0] gave AP 0.5, AUC 0.25, F1 0.5 (the NaN ranked last and
    counted as a predicted negative); evaluate() and scikit-learn refuse it. A NaN on an unknown
    cell changes nothing; reset_state clears it."""
    y = np.array([[1.0], [0.0], [1.0], [0.0], [-1.0]], "float32")
    s = np.array([[np.nan], [0.2], [0.8], [0.9], [0.5]], "float32")
    clean_s = np.array([[0.7], [0.2], [0.8], [0.9], [np.nan]], "float32")  # the NaN on the unknown cell
    for cls in (MaskedAveragePrecision, MaskedAUC, MaskedF1Score, MaskedPrecision, MaskedRecall):
        metric = cls()
        metric.update_state(y, s)
        assert np.isnan(float(metric.result())), cls.__name__
        metric.reset_state()
        metric.update_state(y, clean_s)
        expected = {"MaskedAveragePrecision": average_precision_score(y[:4, 0], clean_s[:4, 0]),
                    "MaskedAUC": roc_auc_score(y[:4, 0], clean_s[:4, 0])}.get(cls.__name__)
        value = float(metric.result())
        assert np.isfinite(value), cls.__name__
        if expected is not None:
            assert value == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="finite"):
        evaluate(y[:4], s[:4])
    metric = MaskedAveragePrecision()
    metric.update_state(y, s)
    assert np.isnan(metric.per_label_result()).all()


def test_average_precision_and_auc_leaves_weight_zero_cells_out():
    """A top-scored cell of weight 0 made the AP NaN (a 0 / 0 precision); scikit-learn leaves it out."""
    from ssl_multilabel.metrics import average_precision_and_auc

    scores = np.array([0.95, 0.9, 0.8, 0.4, 0.3, 0.1])
    targets = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    weights = np.array([0.0, 1.0, 2.0, 1.0, 0.5, 1.0])
    ap, auc, _, _ = average_precision_and_auc(scores, targets, weights, np.zeros(6, int), 1)
    assert ap[0] == pytest.approx(average_precision_score(targets, scores, sample_weight=weights))
    assert auc[0] == pytest.approx(roc_auc_score(targets, scores, sample_weight=weights))
    with pytest.raises(ValueError, match="non-negative"):
        average_precision_and_auc(scores, targets, -weights, np.zeros(6, int), 1)


# === under model.fit / evaluate (graph mode) ===


def test_metrics_under_model_fit_equal_sklearn_on_predictions():
    y, _ = _data(4, n=48)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(len(y), 3)).astype("float32")
    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5, activation="sigmoid")])
    from ssl_multilabel.losses import MaskedBinaryCrossentropy

    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.0),  # predictions stay fixed during the epoch
        loss=MaskedBinaryCrossentropy(),
        metrics=[MaskedAveragePrecision(), MaskedAUC(), MaskedF1Score(), MaskedRecall(average="micro")],
    )
    history = model.fit(x, y, batch_size=10, epochs=2, validation_data=(x[:30], y[:30]), verbose=0, shuffle=False)
    p = model.predict(x, verbose=0)
    aps, aucs = sk_per_label(y, p)
    assert history.history["mAP"][-1] == pytest.approx(sk_mean(aps), abs=1e-6)
    assert history.history["AUC"][-1] == pytest.approx(sk_mean(aucs), abs=1e-6)
    assert history.history["macro_F1"][-1] == pytest.approx(sk_threshold(y, p, 0.5, "f1", "macro"), abs=1e-6)
    assert history.history["micro_recall"][-1] == pytest.approx(sk_threshold(y, p, 0.5, "recall", "micro"), abs=1e-6)
    val_aps, _ = sk_per_label(y[:30], p[:30])
    assert history.history["val_mAP"][-1] == pytest.approx(sk_mean(val_aps), abs=1e-6)
    logs = model.evaluate(x, y, batch_size=7, verbose=0, return_dict=True)
    assert logs["AUC"] == pytest.approx(sk_mean(aucs), abs=1e-6)


@pytest.mark.parametrize(
    "metric",
    [MaskedAveragePrecision(name="ap"), MaskedAUC(), MaskedF1Score(average="micro", threshold=0.3), MaskedRecall(from_logits=True)],
    ids=lambda m: type(m).__name__,
)
def test_metric_config_round_trip(metric):
    config = metric.get_config()
    clone = type(metric).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(restored) is type(metric) and restored.get_config() == config


def test_invalid_metric_arguments():
    with pytest.raises(ValueError, match="average"):
        MaskedF1Score(average="weighted")
    with pytest.raises(TypeError, match="threshold"):
        MaskedPrecision(threshold="high")


# === evaluate() ===


def test_evaluate_equals_sklearn_and_reports_left_out_labels():
    y, s = _data(5)
    names = ["a", "b", "c", "only_pos", "never_known"]
    with pytest.warns(UserWarning, match="left out"):
        summary, table = evaluate(y, s, label_names=names, threshold=0.4)
    aps, aucs = sk_per_label(y, s)
    assert summary["mAP"] == pytest.approx(sk_mean(aps), abs=1e-6)
    assert summary["AUC"] == pytest.approx(sk_mean(aucs), abs=1e-6)
    for statistic in ("f1", "precision", "recall"):
        key = "F1" if statistic == "f1" else statistic
        assert summary[f"macro_{key}"] == pytest.approx(sk_threshold(y, s, 0.4, statistic, "macro"), abs=1e-6)
        assert summary[f"micro_{key}"] == pytest.approx(sk_threshold(y, s, 0.4, statistic, "micro"), abs=1e-6)
    assert summary["labels_left_out"] == ["only_pos", "never_known"]
    assert summary["n_labels_scored"] == 3
    assert summary["n_known_cells"] == int((y >= 0).sum())
    assert not any(isinstance(v, float) and np.isnan(v) for v in summary.values())
    assert list(table["label"]) == names
    assert list(table.columns) == ["label", "n_known", "n_pos", "n_neg", "scored", "AP", "AUC", "precision", "recall", "F1"]
    np.testing.assert_allclose(table["AP"][:3], aps[:3], atol=1e-6)
    np.testing.assert_array_equal(table["n_pos"], ((y >= 0.5)).sum(0))
    np.testing.assert_array_equal(table["n_neg"], ((y >= 0) & (y < 0.5)).sum(0))
    assert list(table["scored"]) == [True, True, True, False, False]
    # the streaming metric and evaluate agree
    metric = MaskedAveragePrecision()
    metric.update_state(y, s)
    assert float(metric.result()) == pytest.approx(summary["mAP"], abs=1e-6)


def test_evaluate_hand_computed_and_weights():
    # One label: scores 0.9 (pos), 0.5 (neg), 0.5 (pos) -> tie at 0.5.
    # AP = 1/2 * 1 + 1/2 * 2/3 = 5/6; AUC = (1 + 0.5) / 2 = 0.75.
    y = np.array([[1.0], [0.0], [1.0], [-1.0]])
    s = np.array([[0.9], [0.5], [0.5], [0.0]])
    summary, _ = evaluate(y, s)
    assert summary["mAP"] == pytest.approx(5 / 6)
    assert summary["AUC"] == pytest.approx(0.75)
    w = np.array([1.0, 2.0, 0.0, 5.0])  # weight 0 drops the tied positive
    summary, table = evaluate(y, s, sample_weight=w)
    assert summary["mAP"] == pytest.approx(1.0) and summary["AUC"] == pytest.approx(1.0)
    assert table["n_known"][0] == 2


def test_evaluate_accepts_partial_labels():
    labels_module = pytest.importorskip("ssl_multilabel.labels")
    y = np.array([[1, 0], [0, -1], [1, 1], [0, 0]], "float32")
    s = np.array([[0.9, 0.2], [0.3, 0.5], [0.6, 0.7], [0.1, 0.4]], "float32")
    table = labels_module.PartialLabels.from_array(y, label_names=["cat", "dog"])
    summary, per_label = evaluate(table, s)
    assert list(per_label["label"]) == ["cat", "dog"]
    assert summary["mAP"] == pytest.approx(sk_mean(sk_per_label(y, s)[0]), abs=1e-6)


def test_evaluate_input_errors():
    with pytest.raises(ValueError, match="same shape"):
        evaluate(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"y_score.*finite.*row 1, column 0"):
        evaluate(np.zeros((3, 1)), np.array([[0.1], [np.nan], [0.2]]))
    with pytest.raises(ValueError, match=r"y_true.*row 0, column 1"):
        evaluate(np.array([[0.0, 2.0]]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="label_names"):
        evaluate(np.zeros((2, 2)), np.zeros((2, 2)), label_names=["a"])
    with pytest.raises(ValueError, match="sample_weight"):
        evaluate(np.zeros((2, 2)), np.zeros((2, 2)), sample_weight=-np.ones(2))


@given(
    y=hnp.arrays(np.float64, st.tuples(st.integers(2, 12), st.integers(1, 3)), elements=st.sampled_from([-1.0, 0.0, 1.0])),
    data=st.data(),
)
def test_evaluate_matches_sklearn_property(y, data):
    s = data.draw(hnp.arrays(np.float64, y.shape, elements=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        summary, table = evaluate(y, s)
    aps, aucs = sk_per_label(y, s)
    assert summary["mAP"] == pytest.approx(sk_mean(aps), abs=1e-6)
    assert summary["AUC"] == pytest.approx(sk_mean(aucs), abs=1e-6)
    assert summary["n_labels_scored"] == sum(v is not None for v in aps)
    assert summary["micro_F1"] == pytest.approx(sk_threshold(y, s, 0.5, "f1", "micro"), abs=1e-6)


def test_a_negative_sample_weight_is_named_with_its_cell_not_blamed_on_the_shape():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], np.float32)
    s = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.6], [0.1, 0.3]], np.float32)
    with pytest.raises(ValueError, match=r"must be finite and non-negative\. Received -1\.0 at row 2\.$"):
        evaluate(y, s, sample_weight=np.array([1.0, 1.0, -1.0, 1.0]))
    weights = np.ones((4, 2))
    weights[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"Received nan at row 3, column 1\.$"):
        evaluate(y, s, sample_weight=weights)
    with pytest.raises(ValueError, match=r"must have shape \(4,\) or \(4, 2\)\. Received shape \(3,\)"):
        evaluate(y, s, sample_weight=np.ones(3))
