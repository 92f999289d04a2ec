"""Tests of ssl_multilabel.training: positive weights, the training round, export, strategies."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import average_precision_score

from ssl_multilabel.losses import MaskedBinaryCrossentropy
from ssl_multilabel.models import build_classifier
from ssl_multilabel.training import BestMaskedMAP, export_model, pos_weight_from_labels, train_round

REPO = Path(__file__).resolve().parents[1]
L = 3


def _data(n: int = 48, size: int = 8, p_known: float = 0.6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images whose label j is 'bright quadrant j', so a small CNN can learn something."""
    rng = np.random.default_rng(seed)
    truth = (rng.random((n, L)) < 0.4).astype("float32")
    x = rng.uniform(0, 60, (n, size, size, 1)).astype("float32")
    half = size // 2
    quadrants = [(slice(0, half), slice(0, half)), (slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))]
    for j, (rows, cols) in enumerate(quadrants):
        x[truth[:, j] == 1, rows, cols, :] += 150.0
    y = np.where(rng.random((n, L)) < p_known, truth, -1.0).astype("float32")
    return x, y


def _ds(x: np.ndarray, y: np.ndarray, batch: int = 16) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def _masked_ap(y: np.ndarray, score: np.ndarray) -> float:
    aps = []
    for j in range(y.shape[1]):
        known = y[:, j] >= 0
        if 0 < y[known, j].sum() < known.sum():
            aps.append(average_precision_score(y[known, j], score[known, j]))
    return float(np.mean(aps))


# === Positive weights ===


def test_pos_weight_counts_known_cells_only():
    y = np.array([[1, 0, -1, 1], [0, 0, -1, 1], [0, -1, -1, 1], [1, 1, 0, -1]], "float32")
    # label 0: 2 pos / 2 neg; label 1: 1 pos / 2 neg; label 2: no positive; label 3: no negative.
    np.testing.assert_allclose(pos_weight_from_labels(y), [1.0, 2.0, 1.0, 1.0])


def test_pos_weight_from_partial_labels_table_and_clipping():
    from ssl_multilabel.labels import PartialLabels

    y = np.full((1000, 2), -1.0, "float32")
    y[:, 0] = 0.0
    y[0, 0] = 1.0  # 1 positive among 1000 known cells: 999 is clipped to 100
    y[:4, 1] = [1, 1, 1, 0]  # 3 positives, 1 negative
    np.testing.assert_allclose(pos_weight_from_labels(PartialLabels.from_array(y)), [100.0, 1 / 3], rtol=1e-6)


# === Training round ===


@pytest.mark.parametrize("pass_labels", [True, False], ids=["from-labels", "from-dataset"])
def test_round_loss_is_the_masked_bce_with_auto_pos_weight(pass_labels):
    """With a zero learning rate the logged loss is the masked weighted BCE of the initial model."""
    x, y = _data(32)
    model = build_classifier("small_cnn", L, (8, 8, 1), dropout=0.0, seed=1)
    p = model.predict(x, verbose=0).astype("float64")
    model, history = train_round(
        model, _ds(x, y, batch=32), epochs=1, optimizer=keras.optimizers.SGD(0.0),
        labels=y if pass_labels else None, verbose=0,
    )
    pw = pos_weight_from_labels(y)
    known = y >= 0
    t = np.where(known, y, 0)
    cell = -(pw * t * np.log(p) + (1 - t) * np.log(1 - p))
    expected = cell[known].mean()
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-4)


class _FlipHeadAtLastEpoch(keras.callbacks.Callback):
    """Negate the output layer before the last epoch, so that epoch is far worse than the best."""

    def __init__(self, last: int):
        super().__init__()
        self.last = last

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.last:
            layer = self.model.get_layer("scores")
            layer.set_weights([-w for w in layer.get_weights()])


def test_round_learns_and_restores_the_best_epoch():
    x, y = _data(96, seed=0)
    xv, yv = _data(48, seed=1)
    model = build_classifier("small_cnn", L, (8, 8, 1), seed=0)
    model, history = train_round(
        model, _ds(x, y), _ds(xv, yv, batch=20), epochs=5, learning_rate=3e-3, patience=None,
        callbacks=[_FlipHeadAtLastEpoch(4)], verbose=0,
    )
    val_map = history.history["val_mAP"]
    assert len(val_map) == 5
    assert max(val_map) > 0.6  # chance level is ~0.4
    assert val_map[-1] < max(val_map) - 0.1  # the flipped last epoch is worse...
    # ...and the restored model is the best epoch's: recompute its mAP with scikit-learn.
    final = _masked_ap(yv, model.predict(xv, verbose=0))
    assert final == pytest.approx(max(val_map), abs=1e-6)


def test_keep_epoch_last_trains_every_epoch_and_returns_the_last_weights():
    """The flipped last epoch is the worst, yet `keep_epoch="last"` returns it; a patience that would
    stop `"best"` after one epoch without a better one stops nothing."""
    x, y = _data(96, seed=0)
    xv, yv = _data(48, seed=1)
    model = build_classifier("small_cnn", L, (8, 8, 1), seed=0)
    model, history = train_round(
        model, _ds(x, y), _ds(xv, yv, batch=20), epochs=5, learning_rate=3e-3, patience=1, keep_epoch="last",
        callbacks=[_FlipHeadAtLastEpoch(4)], verbose=0,
    )
    val_map = history.history["val_mAP"]
    assert len(val_map) == len(history.history["loss"]) == 5
    assert val_map[-1] < max(val_map) - 0.1
    # The returned model is the last epoch's: its mAP, recomputed with scikit-learn, is the last one logged.
    assert _masked_ap(yv, model.predict(xv, verbose=0)) == pytest.approx(val_map[-1], abs=1e-6)


def test_keep_epoch_is_checked():
    x, y = _data(8)
    with pytest.raises(ValueError, match="keep_epoch.*'best' or 'last'.*Received: keep_epoch='first'"):
        train_round(build_classifier("small_cnn", L, (8, 8, 1)), _ds(x, y), epochs=1, keep_epoch="first")


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    x, y = _data(32, seed=0)
    xv, yv = _data(32, seed=1)
    model = build_classifier("small_cnn", L, (8, 8, 1), seed=0)
    # With a zero learning rate val_mAP never improves after epoch 1: patience=2 stops at epoch 3.
    _, history = train_round(
        model, _ds(x, y), (xv, yv), epochs=10, patience=2, optimizer=keras.optimizers.SGD(0.0), verbose=0
    )
    assert len(history.history["val_mAP"]) == 3


def test_per_cell_weights_reach_the_loss():
    """A (x, y, w) dataset: cells with weight 0 do not count in the numerator."""
    x, y = _data(16)
    w = np.ones_like(y)
    w[:, 0] = 0.0
    model = build_classifier("small_cnn", L, (8, 8, 1), dropout=0.0, seed=2)
    p = model.predict(x, verbose=0).astype("float64")
    ds = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(16)
    _, history = train_round(model, ds, epochs=1, optimizer=keras.optimizers.SGD(0.0), pos_weight=None, verbose=0)
    known = y >= 0
    t = np.where(known, y, 0)
    cell = -(t * np.log(p) + (1 - t) * np.log(1 - p)) * w
    assert history.history["loss"][0] == pytest.approx(cell[known].sum() / known.sum(), rel=1e-4)


def _linear_scores_model(logit_scale: float) -> keras.Model:
    """x (n, 1) -> logits `logit_scale * x` from a linear `scores` layer (a model that outputs logits)."""
    inputs = keras.Input((1,))
    layer = keras.layers.Dense(1, activation=None, name="scores")
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([np.array([[logit_scale]], "float32"), np.zeros(1, "float32")])
    return model


def test_best_masked_map_ranks_logits_without_rounding_them_to_probabilities():
    """Logits 30 (positive), 20 and -5: a float32 sigmoid makes 30 and 20 both 1.0, a tie that
    would halve the AP. The callback ranks the logits themselves, as scikit-learn does."""
    x = np.array([[1.0], [2 / 3], [-1 / 6]], "float32")
    y = np.array([[1.0], [0.0], [0.0]], "float32")
    model = _linear_scores_model(30.0)
    callback = BestMaskedMAP((x, y))
    callback.set_model(model)
    callback.on_epoch_end(0)
    logits = 30.0 * x[:, 0].astype("float64")
    assert callback.history[0]["val_mAP"] == pytest.approx(average_precision_score(y[:, 0], logits))  # 1.0
    assert callback.history[0]["val_mAP"] == pytest.approx(1.0)
    # The masked BCE from the logits, without log(0): the negative at logit 20 costs about 20.
    expected = np.mean(np.logaddexp(0.0, logits) - y[:, 0] * logits)
    assert callback.history[0]["val_masked_bce"] == pytest.approx(expected, rel=1e-6)


def test_best_masked_map_says_the_loss_chose_the_epoch_when_no_label_is_scorable(caplog):
    """Validation labels of one class only: mAP is 0.0 at every epoch and the loss decides, but the
    log said "restoring the weights of epoch 1 (val_mAP 0.0000)". Reference: the BCE by hand."""
    x = np.array([[1.0], [2 / 3], [-1 / 6]], "float32")
    y = np.array([[1.0], [1.0], [1.0]], "float32")  # no known negative: no AP
    callback = BestMaskedMAP((x, y))
    callback.set_model(_linear_scores_model(2.0))
    callback.on_train_begin()
    callback.on_epoch_end(0)
    logits = 2.0 * x[:, 0].astype("float64")
    loss = np.mean(np.logaddexp(0.0, logits) - logits)
    with caplog.at_level(logging.INFO, logger="ssl_multilabel.training"):
        callback.on_train_end()
    assert (f"restoring the weights of epoch 1 (val_masked_bce {loss:.4f}: no validation label was scorable "
            "for mAP)") in caplog.text


def test_best_masked_map_weighs_the_cells_of_weighted_validation_batches():
    """(x, y, w) validation batches: a weight-0 cell is left out of val_mAP and val_masked_bce."""
    x = np.array([[0.9], [0.8], [0.3], [0.1]], "float32")
    y = np.array([[1.0], [0.0], [1.0], [0.0]], "float32")
    w = np.array([1.0, 0.0, 1.0, 1.0], "float32")  # the negative scored above a positive does not count
    model = _linear_scores_model(4.0)
    callback = BestMaskedMAP(tf.data.Dataset.from_tensor_slices((x, y, w)).batch(3))
    callback.set_model(model)
    callback.on_epoch_end(0)
    kept = w > 0
    logits = 4.0 * x[:, 0].astype("float64")
    assert callback.history[0]["val_mAP"] == pytest.approx(average_precision_score(y[kept, 0], logits[kept]))
    assert callback.history[0]["val_mAP"] == pytest.approx(1.0)
    expected = np.mean((np.logaddexp(0.0, logits) - y[:, 0] * logits)[kept])
    assert callback.history[0]["val_masked_bce"] == pytest.approx(expected, rel=1e-6)


def test_pos_weight_from_labels_refuses_cells_that_are_neither_known_nor_unknown():
    """2.0 and -0.5 are errors everywhere (`labels.cell_masks`), not a weight or an unknown cell."""
    for bad in (2.0, -0.5):
        with pytest.raises(ValueError, match="labels"):
            pos_weight_from_labels(np.array([[1.0, 0.0], [bad, 1.0]]))


def test_extra_metrics_weigh_cells_as_the_loss_does():
    """`train_round(metrics=...)`: a cell of weight 0 counts in neither the loss nor the metric."""
    from ssl_multilabel.metrics import MaskedAveragePrecision

    x, y = _data(32, seed=5)
    w = np.ones_like(y)
    w[::2] = 0.0  # every other image weighs nothing
    model = build_classifier("small_cnn", L, (8, 8, 1), dropout=0.0, seed=2)
    p = model.predict(x, verbose=0).astype("float64")
    ds = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(8)
    _, history = train_round(model, ds, epochs=1, optimizer=keras.optimizers.SGD(0.0), pos_weight=None,
                             metrics=[MaskedAveragePrecision()], verbose=0)
    aps = [average_precision_score(y[(y[:, j] >= 0) & (w[:, j] > 0), j], p[(y[:, j] >= 0) & (w[:, j] > 0), j])
           for j in range(L)]
    assert history.history["mAP"][0] == pytest.approx(np.mean(aps), abs=1e-5)


def test_best_masked_map_callback_on_shuffled_dataset_stays_aligned():
    xv, yv = _data(40, seed=4)
    model = build_classifier("small_cnn", L, (8, 8, 1), seed=0)
    shuffled = tf.data.Dataset.from_tensor_slices((xv, yv)).shuffle(40, seed=1).batch(8)
    callback = BestMaskedMAP(shuffled)
    callback.set_model(model)
    truth, score, weight = callback.scores()
    assert weight is None  # (x, y) batches
    order = np.lexsort(truth.T)
    expected = model.predict(xv, verbose=0)
    np.testing.assert_allclose(
        np.sort(score[order], axis=0), np.sort(expected[np.lexsort(yv.T)], axis=0), rtol=1e-5, atol=1e-6
    )
    assert _masked_ap(truth, score) == pytest.approx(_masked_ap(yv, expected), abs=1e-6)


# === Input errors ===


def test_input_errors():
    x, y = _data(8)
    model = build_classifier("small_cnn", L, (8, 8, 1))
    with pytest.raises(TypeError, match="`train_ds`.*Received: tuple"):
        train_round(model, (x, y))
    with pytest.raises(ValueError, match="3 labels but pos_weight has shape \\(2,\\)"):
        train_round(model, _ds(x, y), pos_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="from_logits=True but the model returns probabilities"):
        train_round(model, _ds(x, y), loss=MaskedBinaryCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match="`epochs`.*Received: epochs=0"):
        train_round(model, _ds(x, y), epochs=0)
    with pytest.raises(ValueError, match="Unknown loss 'mse'"):
        train_round(model, _ds(x, y), loss="mse", verbose=0)
    # A table with another number of labels than the model's outputs: one error naming both
    # (it was a pos_weight complaint the user never asked for, or a TensorFlow shape error).
    wider = np.hstack([y, y[:, :1]])
    for pos_weight in ("auto", None):
        with pytest.raises(ValueError, match="The model has 3 outputs but the batches of `train_ds` hold 4 labels"):
            train_round(model, _ds(x, wider), pos_weight=pos_weight, verbose=0)
    with pytest.raises(ValueError, match="The model has 3 outputs but `labels` hold 4 labels"):
        train_round(model, _ds(x, y), labels=wider, verbose=0)


# === Export ===


def test_export_reload_gives_identical_predictions(tmp_path):
    x, y = _data(24)
    model = build_classifier("small_cnn", L, (8, 8, 1), seed=0)
    model, _ = train_round(model, _ds(x, y), epochs=1, labels=y, verbose=0)
    paths = export_model(model, tmp_path / "run")
    expected = model.predict(x, verbose=0)

    from ssl_multilabel.models import load_model

    reloaded = load_model(paths["keras"])
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), expected)
    serving = tf.saved_model.load(str(paths["saved_model"]))
    np.testing.assert_allclose(np.asarray(serving.serve(tf.constant(x))), expected, rtol=1e-5, atol=1e-6)
    # Only the two exports are left in the folder (temporary names were renamed or removed).
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["model.keras", "saved_model"]

    # With a kNN vote (the photo recipe's model) the SavedModel serves a batch of images too: its
    # list input made `serve(images)` fail (only `serve([images])` worked).
    from ssl_multilabel.models import build_embedding_model, with_neighbour_vote

    memory = build_embedding_model(model).predict(x, verbose=0)
    voted = with_neighbour_vote(model, memory, np.clip(y, 0, 1), np.full(L, 0.5, np.float32), k=3)
    vote_paths = export_model(voted, tmp_path / "voted")
    expected = voted.predict(x, verbose=0)
    serving = tf.saved_model.load(str(vote_paths["saved_model"]))
    np.testing.assert_allclose(np.asarray(serving.serve(tf.constant(x))), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(load_model(vote_paths["keras"]).predict(x, verbose=0), expected)

    # Exporting again replaces both.
    export_model(model, tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["model.keras", "saved_model"]


# === Distribution ===

_STRATEGY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    # Must run before TensorFlow initialises its devices, hence a separate process.
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from ssl_multilabel.models import build_classifier
    from ssl_multilabel.training import train_round

    rng = np.random.default_rng(0)
    n, L = 32, 3
    x = rng.uniform(0, 255, (n, 8, 8, 1)).astype("float32")
    truth = (rng.random((n, L)) < 0.5).astype("float32")
    # Every row has exactly 2 known cells, so each replica's half-batch has the same number of
    # known cells and the mean of the two per-replica masked means equals the global mean.
    y = np.full((n, L), -1.0, "float32")
    for i in range(n):
        cols = rng.choice(L, 2, replace=False)
        y[i, cols] = truth[i, cols]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)

    initial = build_classifier("small_cnn", L, (8, 8, 1), dropout=0.0, seed=0)
    results = {}
    for name, strategy in [("single", None),
                           ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))]:
        model = keras.models.clone_model(initial)
        model.set_weights(initial.get_weights())
        model, history = train_round(model, ds, ds, epochs=2, optimizer=keras.optimizers.SGD(0.05),
                                     labels=y, strategy=strategy, verbose=0)
        results[name] = {"loss": history.history["loss"], "val_mAP": history.history["val_mAP"],
                         "replicas": model.distribute_strategy.num_replicas_in_sync,
                         "kernel": float(np.abs(model.get_layer("scores").get_weights()[0]).sum())}
    print("RESULT" + json.dumps(results))
    """
)


def test_mirrored_strategy_on_two_cpus_matches_single_device():
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", _STRATEGY_SCRIPT], capture_output=True, text=True, env=env, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    results = json.loads(line[len("RESULT"):])
    assert results["mirrored"]["replicas"] == 2
    np.testing.assert_allclose(results["mirrored"]["loss"], results["single"]["loss"], rtol=1e-5)
    np.testing.assert_allclose(results["mirrored"]["val_mAP"], results["single"]["val_mAP"], rtol=1e-5)
    assert results["mirrored"]["kernel"] == pytest.approx(results["single"]["kernel"], rel=1e-5)


def test_equal_validation_map_is_broken_by_the_masked_loss_and_patience_stops():
    """A perfectly ranked validation set keeps one mAP (1.0); the lower masked loss picks the epoch."""
    x = np.array([[-2.0], [-1.0], [1.0], [2.0]], np.float32)
    y = np.array([[0.0], [0.0], [1.0], [-1.0]], np.float32)  # the last cell is unknown
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, activation="sigmoid")])
    callback = BestMaskedMAP((x, y), patience=1)
    callback.set_model(model)
    callback.on_train_begin()
    losses = []
    for epoch, w in enumerate([1.0, 3.0, 0.5]):  # same ranking, so mAP 1.0 every epoch
        model.set_weights([np.array([[w]], np.float32), np.zeros(1, np.float32)])
        callback.on_epoch_end(epoch, {})
        p = 1.0 / (1.0 + np.exp(-w * x[:3, 0].astype(np.float64)))
        losses.append(-np.mean(np.log(np.where(y[:3, 0] == 1, p, 1 - p))))
    assert [h["val_mAP"] for h in callback.history] == [1.0, 1.0, 1.0]
    np.testing.assert_allclose([h["val_masked_bce"] for h in callback.history], losses, rtol=1e-5)
    assert callback.best_epoch == int(np.argmin(losses)) == 1
    assert model.stop_training  # epoch 3 was not better: patience 1 is used up


class _RawWeights(keras.callbacks.Callback):
    """The model's weights after every training step (the raw, not averaged, ones)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[list[np.ndarray]] = []
        self.epoch_ends: list[int] = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([np.array(w) for w in self.model.get_weights()])

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(len(self.steps))


def test_ema_momentum_validates_and_returns_the_moving_average_of_the_weights():
    x, y = _data(96, seed=0)
    xv, yv = _data(48, seed=1)
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Dense(6, activation="relu")(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(L, activation="sigmoid", name="scores")(hidden))
    reference = keras.models.clone_model(model)
    raw, momentum = _RawWeights(), 0.8
    model, history = train_round(model, _ds(x, y), (xv, yv), epochs=4, learning_rate=3e-2, patience=None,
                                 ema_momentum=momentum, callbacks=[raw], verbose=0)
    # The moving average in numpy: the first step's weights, then momentum * average + (1 - momentum) * w.
    average = [w.copy() for w in raw.steps[0]]
    averages = []
    for step, weights in enumerate(raw.steps[1:], start=2):
        average = [momentum * a + (1 - momentum) * w for a, w in zip(average, weights)]
        if step in raw.epoch_ends:
            averages.append([a.copy() for a in average])
    assert len(averages) == 4
    val_map = history.history["val_mAP"]
    for epoch, weights in enumerate(averages):  # each epoch was validated with its averaged weights
        reference.set_weights(weights)
        assert _masked_ap(yv, reference.predict(xv, verbose=0)) == pytest.approx(val_map[epoch], abs=1e-6)
    # The best epoch: the highest mAP, a tie broken by the lower masked loss (BestMaskedMAP's rule).
    top = [e for e, v in enumerate(val_map) if np.isclose(v, max(val_map), rtol=0.0, atol=1e-9)]
    best = min(top, key=lambda e: history.history["val_masked_bce"][e])
    for got, expected in zip(model.get_weights(), averages[best]):  # and the best epoch's average is returned
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(averages[best][0], raw.steps[raw.epoch_ends[best] - 1][0])  # it is not the raw weights


def test_ema_momentum_input_errors():
    x, y = _data(16)
    model = build_classifier("small_cnn", L, (8, 8, 1), seed=0)
    with pytest.raises(ValueError, match=r"ema_momentum.*Received: ema_momentum=1\.0"):
        train_round(model, _ds(x, y), epochs=1, ema_momentum=1.0, verbose=0)
    with pytest.raises(ValueError, match="use_ema=True"):
        train_round(model, _ds(x, y), epochs=1, ema_momentum=0.9, optimizer=keras.optimizers.SGD(0.1), verbose=0)


def test_fit_verbosity_follows_the_package_log_level(monkeypatch):
    """The CLI's `-q` (the package's log at WARNING) silences Keras' per-epoch lines; INFO shows
    them (one line per epoch off a terminal); with no logging set up (plain Python) they show."""
    import logging

    from ssl_multilabel.cli import _setup_logging
    from ssl_multilabel.training import default_verbosity

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", logging.WARNING)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert default_verbosity() == 2  # nothing set up
    _setup_logging(-1)  # -q
    assert default_verbosity() == 0
    _setup_logging(0)  # the default
    assert default_verbosity() == 2
