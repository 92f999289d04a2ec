"""Masked losses against independent numpy references, gradients, weights, serialization."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from ssl_multilabel import losses  # noqa: E402
from ssl_multilabel.losses import (  # noqa: E402
    AsymmetricLoss,
    LargeLossRejection,
    MaskedBinaryCrossentropy,
    MaskedFocalLoss,
    MaskedSoftF1Loss,
    PartialBinaryCrossentropy,
)

EPS = 1e-7

# === numpy references ===


def _log_probs(y_pred, from_logits):
    if from_logits:
        z = y_pred.astype(np.float64)
        return 1.0 / (1.0 + np.exp(-z)), -np.logaddexp(0.0, -z), -np.logaddexp(0.0, z)
    p = np.clip(y_pred.astype(np.float64), EPS, 1.0 - EPS)
    return p, np.log(p), np.log1p(-p)


def ref_bce_cells(y, y_pred, from_logits=False, label_smoothing=0.0, pos_weight=None):
    t = np.where(y >= 0, y, 0.0) * (1 - label_smoothing) + 0.5 * label_smoothing
    _, log_p, log_1mp = _log_probs(y_pred, from_logits)
    pw = np.ones(y.shape[-1]) if pos_weight is None else np.asarray(pos_weight, float)
    return -(pw * t * log_p + (1 - t) * log_1mp)


def ref_focal_cells(y, y_pred, gamma=2.0, alpha=0.25, from_logits=False):
    # Lin et al.: FL = -alpha_t (1 - p_t)^gamma log(p_t), written for hard targets per cell.
    t = np.where(y >= 0, y, 0.0)
    p, log_p, log_1mp = _log_probs(y_pred, from_logits)
    pos = -alpha * (1 - p) ** gamma * log_p
    neg = -(1 - alpha) * p**gamma * log_1mp
    return t * pos + (1 - t) * neg


def ref_asl_cells(y, y_pred, gamma_pos=0.0, gamma_neg=4.0, clip=0.05, from_logits=False):
    # Port of the reference AsymmetricLoss (Ridnik et al.) forward pass, eps = 1e-8.
    t = np.where(y >= 0, y, 0.0)
    xs_pos = 1 / (1 + np.exp(-y_pred.astype(np.float64))) if from_logits else np.clip(y_pred, EPS, 1 - EPS).astype(np.float64)
    xs_neg = 1 - xs_pos
    if clip > 0:
        xs_neg = np.minimum(xs_neg + clip, 1.0)
    loss = t * np.log(np.maximum(xs_pos, 1e-8)) + (1 - t) * np.log(np.maximum(xs_neg, 1e-8))
    pt = xs_pos * t + xs_neg * (1 - t)
    gamma = gamma_pos * t + gamma_neg * (1 - t)
    return -loss * (1 - pt) ** gamma


def masked_mean(cells, y, w=None):
    known = y >= 0
    w = np.ones_like(cells) if w is None else np.broadcast_to(w.reshape(len(y), -1), cells.shape)
    n = known.sum()
    return 0.0 if n == 0 else float(np.sum(np.where(known, cells * w, 0.0)) / n)


def ref_partial_bce(y, y_pred, alpha=-4.45, beta=5.45, gamma=1.0, from_logits=False, w=None):
    cells = ref_bce_cells(y, y_pred, from_logits)
    w = np.ones_like(cells) if w is None else np.broadcast_to(w.reshape(len(y), -1), cells.shape)
    n, L = y.shape
    total = 0.0
    for i in range(n):
        known = y[i] >= 0
        p = known.sum() / L
        g = alpha * p**gamma + beta
        total += g / L * np.sum(cells[i][known] * w[i][known])
    return total / n


def ref_soft_f1(y, y_pred, from_logits=False, w=None):
    p = 1 / (1 + np.exp(-y_pred.astype(np.float64))) if from_logits else y_pred.astype(np.float64)
    w = np.ones_like(p) if w is None else np.broadcast_to(w.reshape(len(y), -1), p.shape)
    costs = []
    for j in range(y.shape[1]):
        k = y[:, j] >= 0
        if not k.any():
            continue
        pj, yj, wj = p[k, j], y[k, j], w[k, j]
        tp, fp, fn = np.sum(wj * pj * yj), np.sum(wj * pj * (1 - yj)), np.sum(wj * (1 - pj) * yj)
        costs.append(1 - 2 * tp / (2 * tp + fn + fp + 1e-16))
    return float(np.mean(costs)) if costs else 0.0


# Hand-made batch: 4 samples x 3 labels, unknown cells, one soft target, an all-unknown row.
Y = np.array([[1, 0, -1], [0, 0.7, 1], [-1, -1, -1], [1, -1, 0]], dtype="float32")
PROBS = np.array([[0.9, 0.2, 0.5], [0.3, 0.6, 0.8], [0.5, 0.1, 0.99], [0.4, 0.05, 0.35]], dtype="float32")
LOGITS = np.array([[2.0, -1.5, 0.3], [-0.7, 0.4, 1.2], [3.0, -2.0, 0.0], [-0.2, 4.0, -0.6]], dtype="float32")
HARD_Y = np.where(Y == 0.7, 1.0, Y).astype("float32")  # focal / ASL references are hard-target formulas


def _pred(from_logits):
    return LOGITS if from_logits else PROBS


CELL_CASES = [
    (lambda fl: MaskedBinaryCrossentropy(from_logits=fl), lambda y, p, fl: ref_bce_cells(y, p, fl), Y),
    (
        lambda fl: MaskedBinaryCrossentropy(from_logits=fl, label_smoothing=0.2, pos_weight=[2.0, 0.5, 3.0]),
        lambda y, p, fl: ref_bce_cells(y, p, fl, 0.2, [2.0, 0.5, 3.0]),
        Y,
    ),
    (lambda fl: MaskedFocalLoss(from_logits=fl), lambda y, p, fl: ref_focal_cells(y, p, from_logits=fl), HARD_Y),
    (
        lambda fl: MaskedFocalLoss(gamma=0.0, alpha=0.5, from_logits=fl),
        lambda y, p, fl: ref_focal_cells(y, p, 0.0, 0.5, fl),
        HARD_Y,
    ),
    (lambda fl: AsymmetricLoss(from_logits=fl), lambda y, p, fl: ref_asl_cells(y, p, from_logits=fl), HARD_Y),
    (
        lambda fl: AsymmetricLoss(gamma_pos=1.0, gamma_neg=2.0, clip=0.0, from_logits=fl),
        lambda y, p, fl: ref_asl_cells(y, p, 1.0, 2.0, 0.0, fl),
        HARD_Y,
    ),
]


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("case", range(len(CELL_CASES)))
def test_cell_losses_equal_numpy_reference(case, from_logits):
    make, ref, y = CELL_CASES[case]
    pred = _pred(from_logits)
    value = float(make(from_logits)(y, pred))
    assert value == pytest.approx(masked_mean(ref(y, pred, from_logits), y), rel=1e-5)


@pytest.mark.parametrize("from_logits", [False, True])
def test_partial_bce_and_soft_f1_equal_numpy_reference(from_logits):
    pred = _pred(from_logits)
    assert float(PartialBinaryCrossentropy(from_logits=from_logits)(Y, pred)) == pytest.approx(
        ref_partial_bce(Y, pred, from_logits=from_logits), rel=1e-5
    )
    assert float(MaskedSoftF1Loss(from_logits=from_logits)(Y, pred)) == pytest.approx(
        ref_soft_f1(Y, pred, from_logits), rel=1e-5
    )


def test_hand_computed_values():
    # One known positive cell, logit 0, pos_weight 2: 2 * log 2 over one known cell.
    loss = MaskedBinaryCrossentropy(from_logits=True, pos_weight=[2.0, 1.0])
    assert float(loss([[1.0, -1.0]], [[0.0, 3.0]])) == pytest.approx(2 * np.log(2), rel=1e-6)
    # Partial-BCE, 2 of 4 labels known: g(0.5) = -4.45 * 0.5 + 5.45 = 3.225, times sum / 4.
    value = float(PartialBinaryCrossentropy()([[1.0, -1.0, 0.0, -1.0]], [[0.9, 0.5, 0.2, 0.5]]))
    assert value == pytest.approx(3.225 / 4 * (-np.log(0.9) - np.log(0.8)), rel=1e-5)
    # Partial-BCE with every cell known equals the plain BCE (g(1) = 1).
    full = np.array([[1, 0], [0, 1]], "float32")
    assert float(PartialBinaryCrossentropy()(full, PROBS[:2, :2])) == pytest.approx(
        float(MaskedBinaryCrossentropy()(full, PROBS[:2, :2])), rel=1e-6
    )
    # Soft-F1, one label, p = 0.5 on a positive and a negative: 1 - 2*0.5 / (1 + 1) = 0.5.
    assert float(MaskedSoftF1Loss()([[1.0], [0.0], [-1.0]], [[0.5], [0.5], [0.9]])) == pytest.approx(0.5)


ALL_LOSSES = [
    lambda fl: MaskedBinaryCrossentropy(from_logits=fl, label_smoothing=0.1, pos_weight=[1.0, 2.0, 3.0]),
    lambda fl: MaskedFocalLoss(from_logits=fl),
    lambda fl: MaskedFocalLoss(gamma=0.5, from_logits=fl),
    lambda fl: AsymmetricLoss(from_logits=fl),
    lambda fl: AsymmetricLoss(gamma_pos=0.5, gamma_neg=0.0, clip=0.0, from_logits=fl),
    lambda fl: PartialBinaryCrossentropy(from_logits=fl),
    lambda fl: MaskedSoftF1Loss(from_logits=fl),
    lambda fl: LargeLossRejection(rate=0.5, from_logits=fl),
]


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("case", range(len(ALL_LOSSES)))
def test_unknown_cells_get_exactly_zero_gradient(case, from_logits):
    loss = ALL_LOSSES[case](from_logits)
    pred = _pred(from_logits).copy()
    unknown = Y < 0
    # Extreme predictions on unknown cells: saturated logits / probabilities of exactly 0 and 1.
    pred[unknown] = np.where(np.arange(unknown.sum()) % 2, 60.0, -60.0) if from_logits else np.arange(unknown.sum()) % 2
    y_pred = tf.Variable(pred)
    w = tf.constant(np.linspace(0.5, 2.0, Y.size).reshape(Y.shape), tf.float32)
    with tf.GradientTape() as tape:
        value = loss(Y, y_pred, sample_weight=w)
    grad = tape.gradient(value, y_pred).numpy()
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(grad))
    assert np.all(grad[unknown] == 0.0)
    assert np.count_nonzero(grad[~unknown]) >= 5


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("case", range(len(ALL_LOSSES)))
def test_all_unknown_batch_gives_zero_loss_and_zero_gradient(case, from_logits):
    loss = ALL_LOSSES[case](from_logits)
    y_pred = tf.Variable(_pred(from_logits))
    with tf.GradientTape() as tape:
        value = loss(-np.ones_like(Y), y_pred)
    assert float(value) == 0.0
    assert np.all(tape.gradient(value, y_pred).numpy() == 0.0)


def test_per_cell_and_per_sample_weights():
    rng = np.random.default_rng(0)
    cell_w = rng.uniform(0.1, 2.0, Y.shape).astype("float32")
    sample_w = rng.uniform(0.1, 2.0, len(Y)).astype("float32")
    bce_cells = ref_bce_cells(Y, PROBS)
    loss = MaskedBinaryCrossentropy()
    assert float(loss(Y, PROBS, sample_weight=cell_w)) == pytest.approx(masked_mean(bce_cells, Y, cell_w), rel=1e-5)
    assert float(loss(Y, PROBS, sample_weight=sample_w)) == pytest.approx(masked_mean(bce_cells, Y, sample_w), rel=1e-5)
    assert float(loss(Y, PROBS, sample_weight=sample_w[:, None])) == pytest.approx(
        masked_mean(bce_cells, Y, sample_w), rel=1e-5
    )
    assert float(PartialBinaryCrossentropy()(Y, PROBS, sample_weight=cell_w)) == pytest.approx(
        ref_partial_bce(Y, PROBS, w=cell_w), rel=1e-5
    )
    assert float(MaskedSoftF1Loss()(Y, PROBS, sample_weight=cell_w)) == pytest.approx(
        ref_soft_f1(Y, PROBS, w=cell_w), rel=1e-5
    )
    # NaN weights on unknown cells are ignored.
    nan_w = np.where(Y < 0, np.nan, cell_w).astype("float32")
    assert float(loss(Y, PROBS, sample_weight=nan_w)) == pytest.approx(masked_mean(bce_cells, Y, cell_w), rel=1e-5)
    with pytest.raises(ValueError, match="sample_weight"):
        loss(Y, PROBS, sample_weight=np.ones((4, 2), "float32"))


def test_a_second_fit_with_per_sample_weights_after_per_cell_ones():
    """Keras retraces its train step with a `sample_weight` of unknown rank when the weights' shape
    changes between fits; the loss must still broadcast them (it raised 'unknown rank')."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(len(Y), 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(Y.shape[1], activation="sigmoid")])
    model.compile("sgd", loss=MaskedBinaryCrossentropy())
    model.fit(x, Y, sample_weight=np.ones(Y.shape, "float32"), batch_size=len(Y), epochs=1, verbose=0)
    sample_w = rng.uniform(0.1, 2.0, len(Y)).astype("float32")
    before = model.predict(x, verbose=0)
    history = model.fit(x, Y, sample_weight=sample_w, batch_size=len(Y), epochs=1, verbose=0)
    expected = masked_mean(ref_bce_cells(Y, before), Y, sample_w)  # one full batch: the loss before its update
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-4)


def test_reductions():
    cells = ref_bce_cells(Y, PROBS)
    expected = np.where(Y >= 0, cells, 0.0)
    np.testing.assert_allclose(MaskedBinaryCrossentropy(reduction="none")(Y, PROBS), expected, rtol=1e-5)
    assert float(MaskedBinaryCrossentropy(reduction="sum")(Y, PROBS)) == pytest.approx(expected.sum(), rel=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        MaskedBinaryCrossentropy(reduction="mean_over_labels")


label_cells = st.sampled_from([-1.0, 0.0, 1.0, 0.25, 0.8])


@given(
    y=hnp.arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 4)), elements=label_cells),
    data=st.data(),
)
def test_bce_and_partial_bce_match_reference_property(y, data):
    z = data.draw(hnp.arrays(np.float32, y.shape, elements=st.floats(-8, 8, width=32)))
    assert float(MaskedBinaryCrossentropy(from_logits=True)(y, z)) == pytest.approx(
        masked_mean(ref_bce_cells(y, z, True), y), rel=1e-4, abs=1e-6
    )
    assert float(PartialBinaryCrossentropy(from_logits=True)(y, z)) == pytest.approx(
        ref_partial_bce(y, z, from_logits=True), rel=1e-4, abs=1e-6
    )


@given(
    y=hnp.arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 4)), elements=st.sampled_from([-1.0, 0.0, 1.0])),
    data=st.data(),
)
def test_focal_and_asl_match_reference_property(y, data):
    z = data.draw(hnp.arrays(np.float32, y.shape, elements=st.floats(-8, 8, width=32)))
    assert float(MaskedFocalLoss(gamma=1.5, alpha=0.3, from_logits=True)(y, z)) == pytest.approx(
        masked_mean(ref_focal_cells(y, z, 1.5, 0.3, True), y), rel=1e-4, abs=1e-6
    )
    assert float(AsymmetricLoss(from_logits=True)(y, z)) == pytest.approx(
        masked_mean(ref_asl_cells(y, z, from_logits=True), y), rel=1e-4, abs=1e-6
    )


# === serialization, get(), validation ===

CONFIGURED = [
    MaskedBinaryCrossentropy(from_logits=True, label_smoothing=0.1, pos_weight=np.array([1.0, 2.0, 0.5])),
    MaskedFocalLoss(gamma=1.0, alpha=None),
    AsymmetricLoss(gamma_pos=1.0, gamma_neg=3.0, clip=0.1),
    PartialBinaryCrossentropy(alpha=-2.0, beta=3.0, gamma=2.0, from_logits=True),
    MaskedSoftF1Loss(from_logits=True),
    LargeLossRejection(rate=0.3, pos_weight=[1.0, 2.0, 0.5]),
]


@pytest.mark.parametrize("loss", CONFIGURED, ids=lambda l: type(l).__name__)
def test_get_config_round_trip(loss):
    config = loss.get_config()
    clone = type(loss).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss) and restored.get_config() == config
    assert float(restored(Y, LOGITS if getattr(loss, "from_logits", False) else PROBS)) == pytest.approx(
        float(loss(Y, LOGITS if getattr(loss, "from_logits", False) else PROBS)), rel=1e-6
    )


def test_get_helper():
    assert isinstance(losses.get("bce"), MaskedBinaryCrossentropy)
    assert isinstance(losses.get("partial_bce"), PartialBinaryCrossentropy)
    assert isinstance(losses.get("soft_f1"), MaskedSoftF1Loss)
    assert losses.get({"class_name": "ll_r", "config": {"rate": 0.2}}).rate == 0.2
    assert isinstance(losses.get("AsymmetricLoss"), AsymmetricLoss)
    focal = losses.get({"class_name": "focal", "config": {"gamma": 1.0}})
    assert isinstance(focal, MaskedFocalLoss) and focal.gamma == 1.0
    asl = AsymmetricLoss(clip=0.2)
    assert losses.get(asl) is asl
    assert losses.get(keras.saving.serialize_keras_object(asl)).clip == pytest.approx(0.2)
    with pytest.raises(ValueError, match="Unknown loss 'hinge'"):
        losses.get("hinge")
    with pytest.raises(TypeError, match="identifier"):
        losses.get(3)


def ref_large_loss_rejection(y, y_pred, rate, from_logits=False, w=None):
    """Brute force: drop the floor(rate * n) hard negatives (y == 0) with the largest BCE, then the masked mean."""
    cells = ref_bce_cells(y, y_pred, from_logits)
    negatives = np.flatnonzero((y == 0).ravel())
    k = int(np.floor(rate * len(negatives)))
    rejected = negatives[np.argsort(-cells.ravel()[negatives], kind="stable")[:k]]
    kept = y.copy().ravel()
    kept[rejected] = -1
    return masked_mean(cells, kept.reshape(y.shape), w), rejected


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.37, 0.9])
def test_large_loss_rejection_equals_brute_force(rate, from_logits):
    rng = np.random.default_rng(7)
    y = rng.choice([0.0, 0.0, 0.0, 1.0, -1.0, 0.25], size=(16, 5)).astype("float32")  # 0.25: soft, never rejected
    pred = (rng.normal(0, 2, y.shape) if from_logits else rng.uniform(0.01, 0.99, y.shape)).astype("float32")
    w = rng.uniform(0.5, 2.0, y.shape).astype("float32")
    expected, rejected = ref_large_loss_rejection(y, pred, rate, from_logits, w)
    assert len(rejected) == int(np.floor(rate * np.sum(y == 0)))
    y_pred = tf.Variable(pred)
    with tf.GradientTape() as tape:
        value = LargeLossRejection(rate=rate, from_logits=from_logits)(y, y_pred, sample_weight=w)
    assert float(value) == pytest.approx(expected, rel=1e-5)
    grad = tape.gradient(value, y_pred).numpy().ravel()
    assert np.all(grad[rejected] == 0.0)  # a rejected negative gets no gradient, like an unknown cell
    known = np.setdiff1d(np.flatnonzero(y.ravel() >= 0), rejected)
    assert np.all(grad[known] != 0.0)
    if rate == 0.0:  # nothing rejected: the masked BCE
        assert float(value) == pytest.approx(float(MaskedBinaryCrossentropy(from_logits=from_logits)(y, pred, w)), rel=1e-6)


def test_call_gives_the_unweighted_unreduced_losses_of_each_loss():
    """`loss.call(y, p)`: per cell for the cell losses (LL-R's rejected negatives at 0), per label
    for the soft F1 (it raised NotImplementedError; LL-R returned the plain BCE)."""
    rng = np.random.default_rng(3)
    y = rng.choice([0.0, 0.0, 1.0, -1.0], size=(12, 4)).astype("float32")
    pred = rng.uniform(0.02, 0.98, y.shape).astype("float32")
    cells = np.where(y >= 0, ref_bce_cells(y, pred), 0.0)
    np.testing.assert_allclose(MaskedBinaryCrossentropy().call(y, pred), cells, rtol=1e-5, atol=1e-7)
    _, rejected = ref_large_loss_rejection(y, pred, 0.3)
    assert len(rejected) > 0
    expected = cells.ravel().copy()
    expected[rejected] = 0.0
    np.testing.assert_allclose(np.ravel(LargeLossRejection(rate=0.3).call(y, pred)), expected, rtol=1e-5, atol=1e-7)
    per_label = np.asarray(MaskedSoftF1Loss().call(y, pred))
    assert per_label.shape == (4,)
    assert per_label.mean() == pytest.approx(ref_soft_f1(y, pred), rel=1e-5)  # every label has known cells


def test_a_16_bit_loss_is_refused():
    """float16 rounds 1 - 1e-7 to 1: an infinite loss, and NaN gradients on unknown cells."""
    for cls in (MaskedBinaryCrossentropy, MaskedFocalLoss, AsymmetricLoss, MaskedSoftF1Loss):
        with pytest.raises(ValueError, match="dtype"):
            cls(dtype="float16")
    assert MaskedBinaryCrossentropy(dtype="float64").dtype == "float64"


def test_large_loss_rejection_inside_fit_equals_brute_force():
    """Compiled (graph mode, a batch whose size is not known when tracing): the same value as eager numpy."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 6)).astype("float32")
    y = rng.choice([0.0, 0.0, 1.0, -1.0], size=(40, 4)).astype("float32")
    model = _tiny_model(6, 4)
    model.compile(optimizer="adam", loss=LargeLossRejection(rate=0.25))
    value = model.evaluate(x, y, batch_size=40, verbose=0)
    expected, _ = ref_large_loss_rejection(y, model.predict(x, verbose=0), 0.25)
    assert value == pytest.approx(expected, rel=1e-5)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="rate"):
        LargeLossRejection(rate=1.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        MaskedBinaryCrossentropy(label_smoothing=1.5)
    with pytest.raises(ValueError, match="pos_weight"):
        MaskedBinaryCrossentropy(pos_weight=[1.0, -1.0])
    with pytest.raises(ValueError, match="pos_weight"):
        MaskedBinaryCrossentropy(pos_weight=[1.0, 2.0])(Y, PROBS)
    with pytest.raises(ValueError, match="gamma"):
        MaskedFocalLoss(gamma=-1.0)
    with pytest.raises(TypeError, match="from_logits"):
        AsymmetricLoss(from_logits="yes")
    with pytest.raises(ValueError, match="same shape"):
        MaskedBinaryCrossentropy()(Y[:, :2], PROBS)


# === inside model.fit ===


def _tiny_model(n_in, n_out, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((n_in,)), keras.layers.Dense(n_out, activation="sigmoid")])
    return model


@pytest.mark.parametrize("weight_shape", ["cell", "sample"])
def test_fit_passes_per_cell_weights_to_the_loss(weight_shape):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = rng.choice([-1.0, 0.0, 1.0], size=(16, 4)).astype("float32")
    w = rng.uniform(0.1, 3.0, size=(16, 4) if weight_shape == "cell" else (16,)).astype("float32")
    model = _tiny_model(3, 4)
    # Learning rate 0: the reported epoch loss is the loss of the initial weights.
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss=MaskedBinaryCrossentropy())
    dataset = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(16)
    history = model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    p = model.predict(x, verbose=0)
    expected = masked_mean(ref_bce_cells(y, p), y, w)
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-5)
    # The weights matter: the unweighted loss differs.
    assert abs(masked_mean(ref_bce_cells(y, p), y) - expected) > 1e-3


def test_model_saving_with_losses_and_metrics(tmp_path):
    from ssl_multilabel.metrics import MaskedAveragePrecision, MaskedF1Score

    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 3)).astype("float32")
    y = rng.choice([-1.0, 0.0, 1.0], size=(12, 3)).astype("float32")
    model = _tiny_model(3, 3)
    loss = AsymmetricLoss(gamma_neg=3.0, clip=0.1)
    model.compile(
        optimizer="adam",
        loss=loss,
        metrics=[MaskedAveragePrecision(), MaskedF1Score(average="micro", threshold=0.4)],
    )
    model.fit(x, y, epochs=1, batch_size=6, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.loss, AsymmetricLoss)
    assert loaded.loss.get_config() == loss.get_config()
    before = model.evaluate(x, y, batch_size=5, verbose=0, return_dict=True)
    after = loaded.evaluate(x, y, batch_size=5, verbose=0, return_dict=True)
    assert set(after) == {"loss", "mAP", "micro_F1"}
    for key in before:
        assert after[key] == pytest.approx(before[key], rel=1e-6)


def test_the_recipes_loss_names_are_the_short_names_of_losses_get():
    import typing

    from ssl_multilabel import losses
    from ssl_multilabel.teacher_student.config import LossName

    assert set(typing.get_args(LossName)) == set(losses._SHORT_NAMES)
