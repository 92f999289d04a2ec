"""Masked multi-label losses for Keras 3, written with `keras.ops`.

Every loss takes `y_true` of shape `(batch, L)` with values in `[0, 1]` for known cells (soft
targets such as pseudo-label confidences are allowed) and `-1` or NaN for unknown cells
(`labels.cell_masks`, the package's one rule); any other value (`-0.5`, `2.0`) is an error: a
`ValueError` naming the cell when called eagerly, a failed assertion inside `model.fit` (TensorFlow
backend). Unknown cells contribute nothing to the value and receive exactly
zero gradient: their target is replaced by 0 *before* the element-wise loss is computed (so the
element-wise loss is finite everywhere) and the result is selected out with `where`.

Per-cell weights
----------------
Keras passes the third element of a dataset `(x, y, w)` to `Loss.__call__` as `sample_weight`.
The losses here accept:

- `sample_weight` of shape `(batch, L)`: one weight per cell (e.g. the confidence of a
  propagated label; `PartialLabels.weight`);
- `sample_weight` of shape `(batch,)` or `(batch, 1)`: one weight per sample, broadcast over
  labels.

Weights of unknown cells are ignored. (Keras' own `BinaryCrossentropy` averages over labels
*before* applying `sample_weight`, so a `(batch, L)` mask there gives wrong numbers; this is
why `__call__` is overridden.)

Normalisation (`reduction="sum_over_batch_size"`, the default)
-------------------------------------------------------------
With `K` the set of known cells of the batch, `w_ij` the cell weight (1 when no weight is given)
and `l_ij` the element-wise loss:

- `MaskedBinaryCrossentropy`, `MaskedFocalLoss`, `AsymmetricLoss`:
  `loss = sum_{(i,j) in K} w_ij * l_ij / |K|` (a no-NaN divide: 0 when `K` is empty).
  The count `|K|` is not weighted, so a cell weight of 0.5 halves that cell's contribution.
- `LargeLossRejection`: the same mean after removing from `K` the share `rate` of the batch's
  hard negatives (target 0) with the largest BCE.
- `PartialBinaryCrossentropy` (Durand et al., CVPR 2019): with `p_i = |K_i| / L` the known
  fraction of sample `i` and `g(p) = alpha * p**gamma + beta`,
  `loss = (1 / B) * sum_i g(p_i) / L * sum_{j in K_i} w_ij * l_ij` where `B` is the batch size.
  With every cell known (`g(1) = 1`) this equals the masked BCE.
- `MaskedSoftF1Loss`: per label `F1_j = 2 * sum_i w_ij p_ij y_ij / (sum_i w_ij p_ij +
  sum_i w_ij y_ij + 1e-16)` over the known cells of label `j`;
  `loss = mean over labels with a positive known weight of (1 - F1_j)` (0 if there is none).

`reduction="sum"` returns the numerator without the division; `reduction="none"` returns the
weighted element-wise losses `(batch, L)` with zeros on unknown cells (for the soft-F1 loss, the
per-label `1 - F1_j`, zeros for labels without known cells). Under a `tf.distribute` strategy the
mean reductions are scaled by `1 / num_replicas` as Keras' own losses are.

Example:
    >>> import numpy as np
    >>> y = np.array([[1.0, -1.0], [0.0, 1.0]], "float32")
    >>> p = np.array([[0.9, 0.1], [0.2, 0.7]], "float32")
    >>> float(MaskedBinaryCrossentropy()(y, p))  # mean over the 3 known cells  # doctest: +ELLIPSIS
    0.228...
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from ssl_multilabel.labels import cell_masks, invalid_cells_message

logger = logging.getLogger(__name__)

__all__ = [
    "AsymmetricLoss",
    "LargeLossRejection",
    "MaskedBinaryCrossentropy",
    "MaskedFocalLoss",
    "MaskedSoftF1Loss",
    "PartialBinaryCrossentropy",
    "check_targets",
    "get",
]

_PACKAGE = "ssl_multilabel"
_REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "none", None)
# Only 0 < gamma < 1 makes x**gamma have an infinite derivative at x = 0; flooring the base there
# keeps gradients finite while changing values by at most _POW_FLOOR**gamma.
_POW_FLOOR = 1e-12
_SOFT_F1_EPSILON = 1e-16


def check_targets(y_true: Any, invalid: Any, name: str = "y_true") -> None:
    """Fail on `invalid` cells of `y_true` (from `labels.cell_masks`), for losses and metrics.

    Called eagerly, a `ValueError` names the cell and its value. Inside a traced function
    (`model.fit` with the TensorFlow backend) a value-dependent Python error is impossible, so a
    TensorFlow assertion stops the step with the message and the first invalid value.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly():
            tf.debugging.Assert(
                tf.logical_not(tf.reduce_any(invalid)),
                [f"`{name}`: expected values in [0, 1] for known cells, or -1 or NaN for unknown ones; got",
                 tf.boolean_mask(y_true, invalid)[:1]],
            )
            return
    if bool(ops.convert_to_numpy(ops.any(invalid))):
        raise ValueError(invalid_cells_message(name, ops.convert_to_numpy(y_true), ops.convert_to_numpy(invalid)))


def _scale_loss_for_distribution(value: Any) -> Any:
    """Divide by the number of replicas, as Keras' own mean-reduced losses do."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            value = ops.multiply(value, ops.cast(1.0 / replicas, value.dtype))
    return value


def _apply_reduction(values: Any, reduction: Any, count: Any) -> Any:
    """`values` for "none", their sum for "sum", else the sum over `count` (no-NaN divide)."""
    if reduction in ("none", None):
        return values
    total = ops.sum(values)
    if reduction == "sum":
        return total
    return _scale_loss_for_distribution(ops.divide_no_nan(total, count))


def _check_float(name: str, value: Any, low: float | None = None, high: float | None = None) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"Invalid value for argument `{name}`. Expected a float. Received: {name}={value!r}") from None
    if out != out or (low is not None and out < low) or (high is not None and out > high):
        bounds = f"in [{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ValueError(f"Invalid value for argument `{name}`. Expected a float {bounds}. Received: {name}={value!r}")
    return out


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"Invalid value for argument `{name}`. Expected a bool. Received: {name}={value!r}")
    return value


def _check_reduction(reduction: Any) -> Any:
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"Invalid value for argument `reduction`. Expected one of {set(_REDUCTIONS)}. "
            f"Received: reduction={reduction!r}"
        )
    return reduction


def _focal_factor(base: Any, gamma: float) -> Any:
    """`base ** gamma` with finite gradients for `base` in [0, 1]."""
    if gamma == 0.0:
        # pow(x, 0) has gradient 0 * x**-1 = NaN at x = 0 in TensorFlow: avoid the op entirely.
        return ops.ones_like(base)
    if gamma == 1.0:
        return base
    if gamma < 1.0:
        base = ops.maximum(base, _POW_FLOOR)
    return ops.power(base, gamma)


def _cell_weights(sample_weight: Any, y_pred: Any, dtype: Any) -> Any:
    """Broadcast `sample_weight` ((batch,), (batch, 1) or (batch, L)) to the shape of `y_pred`."""
    if sample_weight is None:
        return None
    w = ops.cast(ops.convert_to_tensor(sample_weight), dtype)
    try:
        rank = len(w.shape)
    except ValueError:  # unknown rank: Keras retraced its step with a relaxed `sample_weight` (a second fit)
        return ops.broadcast_to(ops.reshape(w, (ops.shape(y_pred)[0], -1)), ops.shape(y_pred))
    pred_rank = len(y_pred.shape)
    if rank == pred_rank - 1:
        w = ops.expand_dims(w, -1)
    elif rank != pred_rank:
        raise ValueError(
            "Invalid `sample_weight`: expected shape (batch,) for per-sample weights or "
            f"{tuple(y_pred.shape)} for per-cell weights. Received shape {tuple(w.shape)}."
        )
    if w.shape[-1] is not None and y_pred.shape[-1] is not None and w.shape[-1] not in (1, y_pred.shape[-1]):
        raise ValueError(
            "Invalid `sample_weight`: expected shape (batch,) for per-sample weights or "
            f"{tuple(y_pred.shape)} for per-cell weights. Received shape {tuple(w.shape)}."
        )
    return ops.broadcast_to(w, ops.shape(y_pred))


def _log_probs(y_pred: Any, from_logits: bool) -> tuple[Any, Any, Any]:
    """Return `(p, log p, log(1 - p))`, stable for logits and clipped to [eps, 1 - eps] otherwise."""
    if from_logits:
        return ops.sigmoid(y_pred), ops.log_sigmoid(y_pred), ops.log_sigmoid(-y_pred)
    eps = keras.config.epsilon()
    p = ops.clip(y_pred, eps, 1.0 - eps)
    return p, ops.log(p), ops.log(1.0 - p)


class _MaskedLoss(keras.losses.Loss):
    """Base class: element-wise loss on known cells, per-cell weights, masked mean."""

    def __init__(self, reduction: Any = "sum_over_batch_size", name: str | None = None, dtype: Any = None):
        super().__init__(name=name, reduction=_check_reduction(reduction), dtype=dtype)
        if self.dtype in ("float16", "bfloat16"):
            # In 16 bits 1 - 1e-7 rounds to 1: log(1 - p) is -inf, and unknown cells get NaN gradients.
            raise ValueError(
                f"Invalid value for argument `dtype`. Expected float32 or float64 (a 16-bit loss gives "
                f"infinite losses and NaN gradients near p = 0 or 1; under mixed precision Keras keeps "
                f"losses in float32, the default). Received: dtype={self.dtype!r}"
            )

    # Subclasses implement the element-wise loss; `target` is already 0 on unknown cells.
    def _elementwise(self, target: Any, y_pred: Any) -> Any:
        raise NotImplementedError

    def _prepare(self, y_true: Any, y_pred: Any) -> tuple[Any, Any, Any]:
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        y_true = ops.cast(ops.convert_to_tensor(y_true), self.dtype)
        if tuple(y_true.shape) != tuple(y_pred.shape) and None not in y_true.shape and None not in y_pred.shape:
            raise ValueError(
                f"`y_true` and `y_pred` must have the same shape (batch, labels). "
                f"Received y_true.shape={tuple(y_true.shape)}, y_pred.shape={tuple(y_pred.shape)}."
            )
        unknown, invalid = cell_masks(y_true, ops)
        check_targets(y_true, invalid)
        known = ops.logical_not(unknown)
        target = ops.where(known, y_true, ops.zeros_like(y_true))
        return target, y_pred, known

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """The unweighted losses as `reduction="none"` gives them: `(batch, L)` per cell, zero on
        unknown cells (after the rejection of `LargeLossRejection`, with the scaling of
        `PartialBinaryCrossentropy`); `(L,)` per label for `MaskedSoftF1Loss`."""
        target, y_pred, known = self._prepare(y_true, y_pred)
        known_f = ops.cast(known, self.dtype)
        return self._reduce(target, y_pred, known, known_f, known_f, "none")

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        with keras.name_scope(self.name):
            target, y_pred, known = self._prepare(y_true, y_pred)
            weights = _cell_weights(sample_weight, y_pred, self.dtype)
            known_f = ops.cast(known, self.dtype)
            # Zero the weights of unknown cells so that a NaN/inf weight there cannot leak.
            weights = known_f if weights is None else ops.where(known, weights, ops.zeros_like(weights))
            return self._reduce(target, y_pred, known, known_f, weights, self.reduction)

    def _reduce(self, target: Any, y_pred: Any, known: Any, known_f: Any, weights: Any, reduction: Any) -> Any:
        cell = ops.where(known, self._elementwise(target, y_pred) * weights, ops.zeros_like(y_pred))
        return _apply_reduction(cell, reduction, ops.sum(known_f))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "reduction": self.reduction, "dtype": self._dtype_policy.name}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedBinaryCrossentropy(_MaskedLoss):
    """Binary cross-entropy on the known cells of a partially labelled batch.

    Element-wise loss with smoothed target `t = y * (1 - label_smoothing) + 0.5 * label_smoothing`:
    `-(pos_weight_j * t * log p + (1 - t) * log(1 - p))`, with `log p` computed stably from logits
    when `from_logits=True` and `p` clipped to `[eps, 1 - eps]` otherwise (as Keras does).
    See the module docstring for weights and normalisation.

    Args:
        from_logits: whether `y_pred` are logits rather than probabilities.
        label_smoothing: in `[0, 1]`; targets are squeezed towards 0.5.
        pos_weight: optional length-`L` sequence of non-negative floats multiplying the positive
            term of label `j` (as `torch.nn.BCEWithLogitsLoss(pos_weight=...)`).
        reduction: `"sum_over_batch_size"` (masked mean, default), `"sum"` or `"none"`.
        name: loss name.
        dtype: computation dtype, float32 or float64 (default `keras.config.floatx()`).

    Example:
        >>> loss = MaskedBinaryCrossentropy(from_logits=True, pos_weight=[2.0, 1.0])
        >>> value = loss([[1.0, -1.0]], [[0.0, 3.0]])  # only cell (0, 0) counts: 2 * log 2
    """

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        pos_weight: Sequence[float] | None = None,
        reduction: Any = "sum_over_batch_size",
        name: str = "masked_binary_crossentropy",
        dtype: Any = None,
    ):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.from_logits = _check_bool("from_logits", from_logits)
        self.label_smoothing = _check_float("label_smoothing", label_smoothing, 0.0, 1.0)
        self.pos_weight = _check_pos_weight(pos_weight)

    def _elementwise(self, target: Any, y_pred: Any) -> Any:
        if self.label_smoothing:
            target = target * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        _, log_p, log_1mp = _log_probs(y_pred, self.from_logits)
        pos = target * log_p
        if self.pos_weight is not None:
            n = y_pred.shape[-1]
            if n is not None and n != len(self.pos_weight):
                raise ValueError(
                    f"`pos_weight` has {len(self.pos_weight)} entries but `y_pred` has {n} labels."
                )
            pos = pos * ops.convert_to_tensor(self.pos_weight, dtype=self.dtype)
        return -(pos + (1.0 - target) * log_1mp)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
            "pos_weight": None if self.pos_weight is None else list(self.pos_weight),
        }


def _check_pos_weight(pos_weight: Any) -> list[float] | None:
    if pos_weight is None:
        return None
    try:
        values = [float(v) for v in list(pos_weight)]
    except (TypeError, ValueError):
        raise TypeError(
            "Invalid value for argument `pos_weight`. Expected a 1-D sequence of floats (one per "
            f"label) or None. Received: pos_weight={pos_weight!r}"
        ) from None
    if not values or any(not (v >= 0.0 and v < float("inf")) for v in values):
        raise ValueError(
            "Invalid value for argument `pos_weight`. Expected a non-empty 1-D sequence of finite "
            f"non-negative floats. Received: pos_weight={pos_weight!r}"
        )
    return values


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedFocalLoss(_MaskedLoss):
    """Binary focal loss (Lin et al., ICCV 2017) on the known cells.

    Element-wise, with `p_t = t * p + (1 - t) * (1 - p)` and `alpha_t = t * alpha + (1 - t) *
    (1 - alpha)` (which also covers soft targets `t`, as Keras' `BinaryFocalCrossentropy` does):
    `alpha_t * (1 - p_t) ** gamma * BCE(t, p)`. `alpha=None` disables the class balancing.

    Args:
        gamma: focusing parameter, `>= 0`.
        alpha: weight of the positive class in `[0, 1]`, or None.
        from_logits: whether `y_pred` are logits.
        reduction: `"sum_over_batch_size"` (masked mean, default), `"sum"` or `"none"`.
        name: loss name.
        dtype: computation dtype.

    Example:
        >>> loss = MaskedFocalLoss(gamma=2.0, alpha=0.25)
        >>> value = loss([[1.0, 0.0, -1.0]], [[0.8, 0.3, 0.5]])
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | None = 0.25,
        from_logits: bool = False,
        reduction: Any = "sum_over_batch_size",
        name: str = "masked_focal_loss",
        dtype: Any = None,
    ):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.gamma = _check_float("gamma", gamma, 0.0)
        self.alpha = None if alpha is None else _check_float("alpha", alpha, 0.0, 1.0)
        self.from_logits = _check_bool("from_logits", from_logits)

    def _elementwise(self, target: Any, y_pred: Any) -> Any:
        p, log_p, log_1mp = _log_probs(y_pred, self.from_logits)
        bce = -(target * log_p + (1.0 - target) * log_1mp)
        one_minus_pt = target * (1.0 - p) + (1.0 - target) * p
        loss = _focal_factor(one_minus_pt, self.gamma) * bce
        if self.alpha is not None:
            loss = (target * self.alpha + (1.0 - target) * (1.0 - self.alpha)) * loss
        return loss

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha, "from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AsymmetricLoss(_MaskedLoss):
    """Asymmetric loss, ASL (Ridnik et al., ICCV 2021), on the known cells.

    Element-wise, with `p_m = max(p - clip, 0)`:
    `-(t * (1 - p) ** gamma_pos * log p + (1 - t) * p_m ** gamma_neg * log(1 - p_m))`.
    For hard targets this is the paper's loss; soft targets mix the two terms linearly.
    Logarithms are floored at `log(eps)` as in the reference implementation.

    Args:
        gamma_pos: focusing exponent of the positive term, `>= 0`.
        gamma_neg: focusing exponent of the negative term, `>= 0`.
        clip: probability margin `m` in `[0, 1)` shifted off negatives (0 disables it).
        from_logits: whether `y_pred` are logits.
        reduction: `"sum_over_batch_size"` (masked mean, default), `"sum"` or `"none"`.
        name: loss name.
        dtype: computation dtype.

    Example:
        >>> loss = AsymmetricLoss(gamma_pos=0.0, gamma_neg=4.0, clip=0.05, from_logits=True)
        >>> value = loss([[1.0, 0.0, -1.0]], [[2.0, -1.0, 0.0]])
    """

    def __init__(
        self,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        clip: float = 0.05,
        from_logits: bool = False,
        reduction: Any = "sum_over_batch_size",
        name: str = "asymmetric_loss",
        dtype: Any = None,
    ):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.gamma_pos = _check_float("gamma_pos", gamma_pos, 0.0)
        self.gamma_neg = _check_float("gamma_neg", gamma_neg, 0.0)
        self.clip = _check_float("clip", clip, 0.0, 0.999)
        self.from_logits = _check_bool("from_logits", from_logits)

    def _elementwise(self, target: Any, y_pred: Any) -> Any:
        eps = keras.config.epsilon()
        p, log_p, log_1mp = _log_probs(y_pred, self.from_logits)
        log_p = ops.maximum(log_p, _LOG_EPS)
        if self.clip > 0.0:
            p_m = ops.maximum(p - self.clip, 0.0)
            # 1 - p_m >= clip > 0 here, so the log is finite; the floor mirrors the reference code.
            log_1mpm = ops.log(ops.maximum(1.0 - p_m, eps))
        else:
            p_m, log_1mpm = p, ops.maximum(log_1mp, _LOG_EPS)
        pos = target * _focal_factor(1.0 - p, self.gamma_pos) * log_p
        neg = (1.0 - target) * _focal_factor(p_m, self.gamma_neg) * log_1mpm
        return -(pos + neg)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "gamma_pos": self.gamma_pos,
            "gamma_neg": self.gamma_neg,
            "clip": self.clip,
            "from_logits": self.from_logits,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LargeLossRejection(MaskedBinaryCrossentropy):
    """Masked BCE that ignores the hard negatives with the largest losses (LL-R, Kim et al., CVPR 2022).

    For tables whose negatives are mostly assumed (single positive labels: every unknown cell of a
    label without a known negative is filled as 0), some of those negatives are hidden positives.
    Once the model has learnt the easy cells, they are the negatives it fits worst. In each batch,
    of the `n` known cells with target exactly 0, the `floor(rate * n)` with the largest
    element-wise BCE are treated as unknown: no loss, no gradient, not counted in `|K|` (ties
    broken by position). Soft targets (e.g. a teacher's 0.03) and positives are never rejected;
    human negatives are, like assumed ones, so use it where negatives are assumed. The paper
    raises the rate by a fixed step each epoch; here it is constant.

    Args:
        rate: share of the batch's hard negatives to ignore, in `[0, 1)`.
        from_logits, label_smoothing, pos_weight, reduction, name, dtype: as `MaskedBinaryCrossentropy`.

    Example:
        >>> loss = LargeLossRejection(rate=0.5)
        >>> value = loss([[1.0, 0.0, 0.0]], [[0.9, 0.8, 0.1]])  # cell (0, 1) rejected: mean of 2 cells
    """

    def __init__(
        self,
        rate: float = 0.1,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        pos_weight: Sequence[float] | None = None,
        reduction: Any = "sum_over_batch_size",
        name: str = "large_loss_rejection",
        dtype: Any = None,
    ):
        super().__init__(from_logits=from_logits, label_smoothing=label_smoothing, pos_weight=pos_weight,
                         reduction=reduction, name=name, dtype=dtype)
        self.rate = _check_float("rate", rate, 0.0, 1.0)
        if self.rate >= 1.0:
            raise ValueError(f"Invalid value for argument `rate`: expected a float in [0, 1). Received: rate={rate}")

    def _reduce(self, target: Any, y_pred: Any, known: Any, known_f: Any, weights: Any, reduction: Any) -> Any:
        cell = self._elementwise(target, y_pred)
        negative = ops.logical_and(known, ops.equal(target, 0.0))
        n_reject = ops.cast(ops.floor(self.rate * ops.sum(ops.cast(negative, self.dtype))), "int32")
        # Rank of every cell among the hard negatives by loss, largest first (others rank last).
        scores = ops.reshape(ops.where(negative, ops.stop_gradient(cell), ops.full_like(cell, -1.0)), (-1,))
        rank = ops.reshape(ops.argsort(ops.argsort(-scores)), ops.shape(cell))
        known = ops.logical_and(known, ops.logical_not(ops.logical_and(negative, rank < n_reject)))
        cell = ops.where(known, cell * weights, ops.zeros_like(cell))
        return _apply_reduction(cell, reduction, ops.sum(ops.cast(known, self.dtype)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate}


# log(1e-7): the floor of ASL's log terms (keras.config.epsilon() at import; fixed for reproducibility).
_LOG_EPS = -16.11809565095832


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PartialBinaryCrossentropy(MaskedBinaryCrossentropy):
    """Partial-BCE (Durand et al., CVPR 2019): BCE over known labels, normalised by known fraction.

    Per sample `i` with known fraction `p_i = |K_i| / L`:
    `loss_i = g(p_i) / L * sum_{j in K_i} w_ij * BCE_ij` with `g(p) = alpha * p**gamma + beta`;
    the batch loss is the mean of `loss_i` over the `B` samples of the batch (samples without
    known cells contribute 0). The defaults (`alpha=-4.45, beta=5.45, gamma=1`) give
    `g(1) = 1`, so a fully labelled batch gives the plain mean BCE. The known fraction counts
    known cells regardless of their weights.

    Args:
        alpha, beta, gamma: parameters of the normalisation `g`.
        from_logits: whether `y_pred` are logits.
        reduction: `"sum_over_batch_size"` (mean over samples, default), `"sum"` or `"none"`
            (per-cell terms `g(p_i) / L * w_ij * BCE_ij`).
        name: loss name.
        dtype: computation dtype.

    Example:
        >>> loss = PartialBinaryCrossentropy()
        >>> value = loss([[1.0, -1.0, 0.0, -1.0]], [[0.9, 0.5, 0.2, 0.5]])  # p = 0.5, g = 3.225
    """

    def __init__(
        self,
        alpha: float = -4.45,
        beta: float = 5.45,
        gamma: float = 1.0,
        from_logits: bool = False,
        reduction: Any = "sum_over_batch_size",
        name: str = "partial_binary_crossentropy",
        dtype: Any = None,
    ):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)
        self.alpha = _check_float("alpha", alpha)
        self.beta = _check_float("beta", beta)
        self.gamma = _check_float("gamma", gamma, 0.0)

    def _reduce(self, target: Any, y_pred: Any, known: Any, known_f: Any, weights: Any, reduction: Any) -> Any:
        n_labels = ops.cast(ops.shape(y_pred)[-1], self.dtype)
        fraction = ops.sum(known_f, axis=-1, keepdims=True) / n_labels
        # fraction ** gamma with gamma possibly < 1 and fraction = 0: keep the gradient path away.
        scale = (self.alpha * _focal_factor(fraction, self.gamma) + self.beta) / n_labels
        cell = ops.where(known, self._elementwise(target, y_pred) * weights * scale, ops.zeros_like(y_pred))
        n_samples = ops.cast(ops.size(y_pred) // ops.shape(y_pred)[-1], self.dtype)
        return _apply_reduction(cell, reduction, n_samples)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        for key in ("label_smoothing", "pos_weight"):
            config.pop(key)
        return {**config, "alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedSoftF1Loss(_MaskedLoss):
    """Macro soft-F1 loss on the known cells: `1 - mean_j 2 sum(p y) / (sum p + sum y)`.

    Sums run over the known cells of each label, weighted by the cell weights; labels without
    a known cell (of positive weight) in the batch are left out of the mean, and an all-unknown
    batch gives 0. `p` is a probability (`sigmoid(y_pred)` when `from_logits=True`).

    Args:
        from_logits: whether `y_pred` are logits.
        reduction: `"sum_over_batch_size"` (mean over labels, default), `"sum"` or `"none"`
            (per-label `1 - F1_j`, 0 for labels without known cells).
        name: loss name.
        dtype: computation dtype.

    Example:
        >>> loss = MaskedSoftF1Loss()
        >>> value = loss([[1.0, -1.0], [0.0, 1.0]], [[0.9, 0.1], [0.2, 0.7]])
    """

    def __init__(
        self,
        from_logits: bool = False,
        reduction: Any = "sum_over_batch_size",
        name: str = "masked_soft_f1_loss",
        dtype: Any = None,
    ):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.from_logits = _check_bool("from_logits", from_logits)

    def _reduce(self, target: Any, y_pred: Any, known: Any, known_f: Any, weights: Any, reduction: Any) -> Any:
        p = ops.sigmoid(y_pred) if self.from_logits else y_pred
        # `weights` is zero on unknown cells, so those cells drop out of every sum (and gradient).
        p = ops.where(known, p, ops.zeros_like(p))
        p = ops.reshape(p, (-1, ops.shape(p)[-1]))
        t = ops.reshape(target, ops.shape(p))
        w = ops.reshape(weights, ops.shape(p))
        tp = ops.sum(w * p * t, axis=0)
        denominator = ops.sum(w * p, axis=0) + ops.sum(w * t, axis=0) + _SOFT_F1_EPSILON
        f1 = 2.0 * tp / denominator
        present = ops.cast(ops.greater(ops.sum(w, axis=0), 0.0), self.dtype)
        per_label = present * (1.0 - f1)
        return _apply_reduction(per_label, reduction, ops.sum(present))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.from_logits}


_SHORT_NAMES = {
    "bce": MaskedBinaryCrossentropy,
    "focal": MaskedFocalLoss,
    "asl": AsymmetricLoss,
    "partial_bce": PartialBinaryCrossentropy,
    "soft_f1": MaskedSoftF1Loss,
    "ll_r": LargeLossRejection,
}


def get(identifier: str | dict[str, Any] | keras.losses.Loss) -> keras.losses.Loss:
    """Return a masked loss from a short name, a class name, a config dict or an instance.

    Args:
        identifier: one of `"bce"`, `"focal"`, `"asl"`, `"partial_bce"`, `"soft_f1"`, `"ll_r"` (or a class
            name such as `"MaskedFocalLoss"`); a dict `{"class_name": <short or class name>,
            "config": {...constructor arguments...}}` (the form `keras.saving.serialize_keras_object`
            produces, or a hand-written one); or a `keras.losses.Loss` instance (returned as is).

    Returns:
        A loss instance.

    Example:
        >>> get("focal").gamma
        2.0
        >>> get({"class_name": "asl", "config": {"gamma_neg": 2.0}}).gamma_neg
        2.0
    """
    if isinstance(identifier, keras.losses.Loss):
        return identifier
    by_class = {cls.__name__: cls for cls in _SHORT_NAMES.values()}
    if isinstance(identifier, str):
        cls = _SHORT_NAMES.get(identifier.lower()) or by_class.get(identifier)
        if cls is None:
            raise ValueError(
                f"Unknown loss {identifier!r}. Expected one of {sorted(_SHORT_NAMES)} or "
                f"{sorted(by_class)}."
            )
        return cls()
    if isinstance(identifier, dict):
        if "class_name" not in identifier:
            raise ValueError(
                "A loss config dict needs a 'class_name' key (and optionally 'config'). "
                f"Received keys: {sorted(identifier)}"
            )
        name = identifier["class_name"]
        cls = _SHORT_NAMES.get(str(name).lower()) or by_class.get(str(name).split(">")[-1])
        if cls is None:
            return keras.saving.deserialize_keras_object(identifier)
        config = dict(identifier.get("config") or {})
        return cls.from_config(config)
    raise TypeError(
        "Invalid value for argument `identifier`. Expected a str, a config dict or a "
        f"keras.losses.Loss. Received: {type(identifier).__name__}"
    )
