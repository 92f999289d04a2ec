"""One meaning of "unknown" everywhere: -1 and NaN are unknown, [0, 1] known, anything else an error.

Every module that reads a label array (tables, diffusion, thresholds, losses, metrics) is run on
the same cases.
"""

import re

import numpy as np
import pytest
import scipy.sparse as sp

from ssl_multilabel.labels import PartialLabels, unknown_mask
from ssl_multilabel.propagation import diffuse, seed_matrix
from ssl_multilabel.thresholds import precision_thresholds

UNKNOWN = [-1.0, np.nan]
INVALID = [-0.5, 2.0, np.inf, -2.0]
MESSAGE = r"row 1, column 0: expected a value in \[0, 1\] for a known cell, or -1 or NaN for an unknown one; got {}"


def with_cell(value):
    """A 2 x 2 label array with `value` in cell (1, 0) and the other cells known."""
    return np.array([[1.0, 0.0], [value, 1.0]])


def _got(value):
    return MESSAGE.format(re.escape(repr(float(value))))


# === labels ===


@pytest.mark.parametrize("value", UNKNOWN)
def test_unknown_mask_unknown(value):
    np.testing.assert_array_equal(unknown_mask(with_cell(value)), [[False, False], [True, False]])


@pytest.mark.parametrize("value", INVALID)
def test_unknown_mask_invalid(value):
    with pytest.raises(ValueError, match="`Y` " + _got(value)):
        unknown_mask(with_cell(value), "Y")


def test_unknown_mask_of_strings_is_an_error():
    with pytest.raises(ValueError, match=r"argument `y`. Expected numbers in \[0, 1\].*dtype <U1"):
        unknown_mask([["1", "?"]])


@pytest.mark.parametrize("value", UNKNOWN)
def test_from_array_unknown(value):
    assert not PartialLabels.from_array(with_cell(value)).known[1, 0]


@pytest.mark.parametrize("value", INVALID)
def test_from_array_invalid(value):
    with pytest.raises(ValueError, match="`Y` " + _got(value)):
        PartialLabels.from_array(with_cell(value))


@pytest.mark.parametrize("value", UNKNOWN)
def test_fill_leaves_unknown(value):
    table = PartialLabels.from_array(np.full((2, 2), -1.0))
    assert not table.fill(with_cell(value)).known[1, 0]


@pytest.mark.parametrize("value", INVALID)
def test_fill_invalid(value):
    table = PartialLabels.from_array(np.full((2, 2), -1.0))
    with pytest.raises(ValueError, match="`values` " + _got(value)):
        table.fill(with_cell(value))


# === diffusion ===


@pytest.mark.parametrize("value", UNKNOWN)
def test_diffusion_seeds_skip_unknown(value):
    seeds = seed_matrix(with_cell(value))
    assert (seeds[1, [0, 2]] == 0).all()  # no positive or negative seed mass for label 0 in row 1


def test_diffusion_nan_and_minus_one_give_the_same_result():
    W = sp.csr_matrix(np.array([[0, 1, 0.5], [1, 0, 1], [0.5, 1, 0]]))
    Y = np.array([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]])
    a = diffuse(W, Y, smoothing_steps=0).probability
    b = diffuse(W, np.where(Y == -1, np.nan, Y), smoothing_steps=0).probability
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("value", INVALID)
def test_diffusion_invalid(value):
    with pytest.raises(ValueError, match="`Y` " + _got(value)):
        seed_matrix(with_cell(value))


# === thresholds ===


@pytest.mark.parametrize("value", UNKNOWN)
def test_thresholds_skip_unknown(value):
    scores = np.array([[0.9, 0.1], [0.5, 0.8]])
    np.testing.assert_array_equal(
        precision_thresholds(with_cell(value), scores, 0.9),
        precision_thresholds(with_cell(-1.0), scores, 0.9),
    )


@pytest.mark.parametrize("value", INVALID)
def test_thresholds_invalid(value):
    with pytest.raises(ValueError, match="`labels` " + _got(value)):
        precision_thresholds(with_cell(value), np.full((2, 2), 0.5))


# === losses and metrics (TensorFlow) ===


@pytest.fixture(scope="module")
def tf():
    import tensorflow

    return tensorflow


PRED = np.array([[0.9, 0.2], [0.3, 0.7]], np.float32)


@pytest.mark.parametrize("value", UNKNOWN)
def test_loss_ignores_unknown(tf, value):
    from ssl_multilabel.losses import MaskedBinaryCrossentropy

    loss = MaskedBinaryCrossentropy()
    expected = -(np.log(0.9) + np.log(0.8) + np.log(0.7)) / 3
    assert float(loss(with_cell(value).astype(np.float32), PRED)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("value", INVALID)
def test_loss_invalid(tf, value):
    from ssl_multilabel.losses import MaskedBinaryCrossentropy

    with pytest.raises(ValueError, match="`y_true` " + _got(value)):
        MaskedBinaryCrossentropy()(with_cell(value).astype(np.float32), PRED)


def test_loss_invalid_inside_a_traced_function(tf):
    from ssl_multilabel.losses import MaskedBinaryCrossentropy

    loss = MaskedBinaryCrossentropy()
    traced = tf.function(lambda y, p: loss(y, p))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`y_true`: expected values in \[0, 1\] for known cells"):
        traced(tf.constant(with_cell(-0.5), tf.float32), tf.constant(PRED))


@pytest.mark.parametrize("value", UNKNOWN)
def test_evaluate_ignores_unknown(value):
    from ssl_multilabel.metrics import evaluate

    summary, _ = evaluate(with_cell(value), PRED)
    assert summary["n_known_cells"] == 3


@pytest.mark.parametrize("value", INVALID)
def test_evaluate_invalid(value):
    from ssl_multilabel.metrics import evaluate

    with pytest.raises(ValueError, match="`y_true` " + _got(value)):
        evaluate(with_cell(value), PRED)


@pytest.mark.parametrize("value", UNKNOWN)
def test_streaming_metric_ignores_unknown(tf, value):
    from ssl_multilabel.metrics import MaskedAveragePrecision

    metric = MaskedAveragePrecision()
    metric.update_state(with_cell(value).astype(np.float32), PRED)
    assert int(tf.size(metric._scores)) == 3


@pytest.mark.parametrize("value", INVALID)
def test_streaming_metric_invalid(tf, value):
    from ssl_multilabel.metrics import MaskedAveragePrecision

    with pytest.raises(ValueError, match="`y_true` " + _got(value)):
        MaskedAveragePrecision().update_state(with_cell(value).astype(np.float32), PRED)


def test_evaluate_imports_without_tensorflow():
    # The propagation estimator's scorer (`ssl_multilabel.evaluate`) must not pull in TensorFlow:
    # a scikit-learn user's GridSearchCV workers would each pay its import.
    import subprocess
    import sys

    code = ("import sys; from ssl_multilabel import evaluate; from ssl_multilabel.evaluation import evaluate as e; "
            "assert evaluate is e; evaluate([[1, 0], [0, 1]], [[0.9, 0.2], [0.1, 0.8]]); "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
