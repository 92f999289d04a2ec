"""One masked-loss training round: compile, fit, keep the best epoch by masked validation mAP.

`train_round` is the supervised step every method builds on (masked supervised, the teacher and
the student of noisy student, training after propagation fills). It is plain Keras: `compile`
and `fit` with callbacks, so user callbacks, `tf.distribute` strategies and `model.export` work
unchanged.

Example:
    >>> from ssl_multilabel.models import build_classifier
    >>> from ssl_multilabel.data import make_dataset
    >>> model = build_classifier("small_cnn", num_labels=10)  # doctest: +SKIP
    >>> train = make_dataset(x_train, labels_train, batch_size=64, shuffle=True, seed=0)  # doctest: +SKIP
    >>> val = make_dataset(x_val, labels_val, batch_size=256)  # doctest: +SKIP
    >>> model, history = train_round(model, train, val, epochs=8, labels=labels_train)  # doctest: +SKIP
    >>> export_model(model, "runs/supervised")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf

from ssl_multilabel import losses as _losses
from ssl_multilabel._files import atomic_path, make_temp_dir
from ssl_multilabel import metrics as _metrics
from ssl_multilabel.labels import unknown_mask
from ssl_multilabel.models import outputs_logits

logger = logging.getLogger(__name__)

__all__ = ["BestMaskedMAP", "export_model", "pos_weight_from_labels", "train_round"]

#: Bounds of the automatic per-label positive weight: a label with 1 positive among 10,000
#: known cells would otherwise get a weight of 10,000 and dominate every batch it appears in.
POS_WEIGHT_RANGE = (0.01, 100.0)


# === Positive weights ===


def _known_array(labels: Any, name: str = "labels") -> np.ndarray:
    """`(n, L)` float array with NaN for unknown cells, from a PartialLabels or a -1 array."""
    if hasattr(labels, "known") and hasattr(labels, "values"):
        values = np.asarray(labels.values, np.float64)
        return np.where(np.asarray(labels.known, bool), values, np.nan)
    try:
        array = np.asarray(labels, np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"Invalid value for argument `{name}`. Expected a PartialLabels table or an (n, L) array "
            f"with -1 for unknown cells. Received: {type(labels).__name__}"
        ) from None
    if array.ndim != 2:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a 2-D (n, L) array with -1 for unknown "
            f"cells. Received an array of shape {array.shape}"
        )
    return np.where(unknown_mask(array, name), np.nan, array)


def pos_weight_from_labels(labels: Any) -> np.ndarray:
    """Per-label positive weights `n_neg / n_pos` counted on known cells only.

    This is the usual binary class weight (`pos_weight` of `torch.nn.BCEWithLogitsLoss`) done
    per label; unknown cells count neither as positives nor as negatives. Soft targets count
    fractionally (`y` positive and `1 - y` negative). A label with no known positive or no known
    negative gets 1.0 (nothing to balance), and weights are clipped to `POS_WEIGHT_RANGE`.

    Args:
        labels: a `PartialLabels` table or an `(n, L)` array with `-1` for unknown cells.

    Returns:
        float32 array `(L,)`.

    Example:
        >>> pos_weight_from_labels(np.array([[1, 0], [0, -1], [0, 1], [0, -1]]))  # 3 / 1 and 1 / 1
        array([3., 1.], dtype=float32)
    """
    y = _known_array(labels)
    n_pos = np.nansum(y, axis=0)
    n_neg = np.nansum(1.0 - y, axis=0)
    weight = np.ones(y.shape[1], np.float64)
    both = (n_pos > 0) & (n_neg > 0)
    weight[both] = np.clip(n_neg[both] / n_pos[both], *POS_WEIGHT_RANGE)
    return weight.astype(np.float32)


def _labels_from_dataset(dataset: tf.data.Dataset) -> np.ndarray:
    """Concatenate the `y` of every batch (one pass over the dataset)."""
    return np.concatenate([np.asarray(y) for y in dataset.map(lambda *batch: batch[1])])


# === Validation mAP ===


def _split_batch(batch: Any) -> tuple[Any, Any, Any]:
    """`(x, y, w)` of a validation batch; `w` is None for an `(x, y)` batch."""
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise ValueError(
            "Invalid value for argument `val_data`. Expected a dataset of (x, y) or (x, y, w) "
            f"batches with y = -1 for unknown cells. Received elements of type {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        )
    return batch[0], batch[1], batch[2] if len(batch) == 3 else None


def _masked_bce(truth: np.ndarray, score: np.ndarray, weight: np.ndarray | None = None, *,
                from_logits: bool = False) -> float:
    """Binary cross-entropy over the known cells (`labels.cell_masks`), their `weight`ed mean
    (`(n,)` or `(n, L)`; weight-0 cells are left out); NaN when no cell is left. `from_logits`:
    `score` holds logits (computed without rounding them to probabilities)."""
    known = ~unknown_mask(truth, "y_true")
    w = np.ones(truth.shape) if weight is None else np.broadcast_to(
        np.asarray(weight, np.float64).reshape(len(truth), -1), truth.shape)
    known &= w > 0
    if not known.any():
        return float("nan")
    y, s, w = truth[known].astype(np.float64), score[known].astype(np.float64), w[known]
    if from_logits:
        cell = np.logaddexp(0.0, s) - y * s  # -y log sigmoid(s) - (1 - y) log(1 - sigmoid(s))
    else:
        p = np.clip(s, 1e-7, 1 - 1e-7)
        cell = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float(np.sum(w * cell) / np.sum(w))


class BestMaskedMAP(keras.callbacks.Callback):
    """Compute exact masked mAP/AUC on validation data every epoch and keep the best weights.

    The scores are computed in numpy by `ssl_multilabel.evaluation.evaluate` on the known cells
    of the validation labels (`-1` = unknown), in one pass over the data so a shuffled dataset
    stays aligned, with the masked binary cross-entropy of the known cells; they are added to
    the epoch logs as `val_mAP`, `val_AUC` and `val_masked_bce` (`History` sees them). An epoch
    is best when its mAP is higher, or equal with a lower masked loss (a small validation set
    often reaches one mAP value early and keeps it). With `patience`, training stops after that
    many epochs without a best one. At the end of training the best epoch's weights are restored.

    Args:
        val_data: a `tf.data.Dataset` of `(x, y)` or `(x, y, w)` batches (`w` weighs the cells
            in the mAP, AUC and loss; cells of weight 0 are left out), or a tuple `(x, y)` of arrays.
            A model that outputs logits is scored on its logits (mAP and AUC rank them).
        restore_best: restore the best epoch's weights when training ends.
        batch_size: batch size for array inputs.
        label_names: names of the labels, for warnings (default: their indices).
        patience: epochs without a best epoch before training stops; None: never stop early.

    Example:
        >>> callback = BestMaskedMAP(val_ds)  # doctest: +SKIP
        >>> model.fit(train_ds, epochs=5, callbacks=[callback])  # doctest: +SKIP
        >>> callback.best_epoch, callback.best  # doctest: +SKIP
    """

    def __init__(self, val_data: Any, *, restore_best: bool = True, batch_size: int = 256,
                 label_names: Sequence[str] | None = None, patience: int | None = None) -> None:
        super().__init__()
        if not isinstance(val_data, (tf.data.Dataset, tuple, list)):
            raise TypeError(
                "Invalid value for argument `val_data`. Expected a tf.data.Dataset or a tuple "
                f"(x, y). Received: {type(val_data).__name__}"
            )
        self.val_data = val_data
        self.restore_best = restore_best
        self.batch_size = batch_size
        self.label_names = None if label_names is None else [str(n) for n in label_names]
        self.patience = patience
        self.wait = 0
        self.best = -np.inf
        self.best_loss = np.inf
        self.best_epoch: int | None = None
        self.best_weights: list[np.ndarray] | None = None
        self.history: list[dict[str, float]] = []
        self._predict: Any = None
        self._predict_for: keras.Model | None = None

    def scores(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """`(y_true, y_score, weight)` on the validation data with the current weights (the model's
        outputs: logits for a model that outputs logits); `weight` is None without `w` in the batches."""
        if isinstance(self.val_data, tf.data.Dataset):
            # A plain tf.function rather than predict_on_batch: under a MirroredStrategy,
            # predict_on_batch returns one copy of the outputs per replica.
            if self._predict_for is not self.model:  # trace once per model, not once per epoch
                model = self.model
                self._predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
                self._predict_for = model
            predict = self._predict
            truth, score, weight = [], [], []
            for batch in self.val_data:
                x, y, w = _split_batch(batch)
                score.append(np.asarray(predict(x)))
                truth.append(np.asarray(y))
                if w is not None:
                    weight.append(np.asarray(w, np.float64).reshape(len(truth[-1]), -1))
            if weight and len(weight) != len(truth):
                raise ValueError("Invalid value for argument `val_data`: some batches have weights and some do not.")
            return np.concatenate(truth), np.concatenate(score), np.concatenate(weight) if weight else None
        x, y = self.val_data
        return np.asarray(y), np.asarray(self.model.predict(x, batch_size=self.batch_size, verbose=0)), None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.best, self.best_epoch, self.best_weights, self.history = -np.inf, None, None, []
        self.best_loss, self.wait = np.inf, 0

    def _improved(self, value: float, loss: float) -> bool:
        """Better mAP; on equal mAP (or none), lower masked validation loss.

        A small validation set ranks its few known positives perfectly after a few epochs, and
        its mAP then stays at one value: the loss tells which of those epochs is best, where
        ties alone would keep the first of them (an under-trained model).
        """
        if np.isfinite(value) and np.isfinite(self.best) and not np.isclose(value, self.best, rtol=0.0, atol=1e-9):
            return value > self.best
        if np.isfinite(value) and not np.isfinite(self.best):
            return True
        return loss < self.best_loss

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        truth, score, weight = self.scores()
        names = self.label_names if self.label_names is not None and len(self.label_names) == truth.shape[1] else None
        # mAP and AUC rank the scores, so logits rank as they are: a float32 sigmoid rounds every
        # logit above about 17 to 1.0, which would tie a confident model's best cells.
        summary, _ = _metrics.evaluate(truth, score, label_names=names, sample_weight=weight)
        value = float(summary["mAP"])
        self._mAP_scorable = summary["n_labels_scored"] > 0  # else mAP is 0.0 at every epoch: the loss decides
        loss = _masked_bce(truth, score, weight, from_logits=outputs_logits(self.model))
        entry = {"val_mAP": value, "val_AUC": float(summary["AUC"]), "val_masked_bce": loss}
        self.history.append(entry)
        if logs is not None:
            logs.update(entry)
        improved = self._improved(value, loss)
        if improved:
            self.best, self.best_loss, self.best_epoch, self.wait = value, loss, epoch, 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.patience is not None and self.wait >= self.patience:
                self.model.stop_training = True
        logger.info(
            "epoch %d: val_mAP %s val_AUC %s val_masked_bce %.4f%s", epoch + 1,
            *((f"{value:.4f}", f"{entry['val_AUC']:.4f}") if summary["n_labels_scored"] else
              ("n/a", "n/a (no validation label has a known positive and a known negative)")),
            loss, " (best)" if improved else "",
        )

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.restore_best and self.best_weights is not None:
            chosen_by = (f"val_mAP {self.best:.4f}" if getattr(self, "_mAP_scorable", True)
                         else f"val_masked_bce {self.best_loss:.4f}: no validation label was scorable for mAP")
            logger.info("restoring the weights of epoch %d (%s)", self.best_epoch + 1, chosen_by)
            self.model.set_weights(self.best_weights)


# === Training round ===


def default_verbosity() -> int:
    """Keras `fit` verbosity: a progress bar on a terminal, one line per epoch in logs and CI, and
    nothing when logging is set up to show only warnings for this package (the CLI's `-q`); with
    no logging set up at all (plain Python), the progress shows."""
    if logging.getLogger().handlers and not logging.getLogger("ssl_multilabel").isEnabledFor(logging.INFO):
        return 0
    return 1 if sys.stderr.isatty() else 2


def _check_positive(name: str, value: Any, kind: type = int) -> Any:
    ok = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool) and value > 0
    if not ok:
        expected = "a positive int" if kind is int else "a positive float"
        raise ValueError(f"Invalid value for argument `{name}`. Expected {expected}. Received: {name}={value!r}")
    return value


def _make_loss(loss: Any, from_logits: bool, pos_weight: np.ndarray | None, pos_weight_given: bool) -> keras.losses.Loss:
    if isinstance(loss, keras.losses.Loss):
        declared = getattr(loss, "from_logits", None)
        if declared is not None and bool(declared) != from_logits:
            raise ValueError(
                f"Invalid value for argument `loss`: the loss has from_logits={declared} but the model "
                f"returns {'logits' if from_logits else 'probabilities'}. Build the loss with "
                f"from_logits={from_logits}."
            )
        if pos_weight_given:
            raise ValueError(
                "Invalid value for argument `pos_weight`: an explicit pos_weight applies only when "
                "`loss` is given by name; set it on the loss instance instead. "
                f"Received: loss={type(loss).__name__}"
            )
        return loss
    if not isinstance(loss, (str, dict)):
        raise TypeError(
            "Invalid value for argument `loss`. Expected a loss name (e.g. 'bce', 'focal', 'asl', "
            f"'partial_bce', 'soft_f1', 'll_r'), a config dict or a keras Loss. Received: {type(loss).__name__}"
        )
    cls = type(_losses.get(loss))
    accepted = inspect.signature(cls.__init__).parameters
    config: dict[str, Any] = dict(loss.get("config", {})) if isinstance(loss, dict) else {}
    if "from_logits" in accepted:
        config["from_logits"] = from_logits
    elif from_logits:
        raise ValueError(
            f"Invalid value for argument `loss`: {cls.__name__} takes probabilities but the model "
            "returns logits; build the model with activation='sigmoid'."
        )
    if pos_weight is not None:
        if "pos_weight" in accepted:
            config["pos_weight"] = [float(v) for v in pos_weight]
        elif pos_weight_given:
            raise ValueError(
                f"Invalid value for argument `pos_weight`: loss {cls.__name__} has no pos_weight. "
                "Use pos_weight=None."
            )
        else:
            logger.debug("loss %s has no pos_weight; automatic positive weights are not used", cls.__name__)
    return cls(**config)


def _created_under(model: keras.Model, strategy: tf.distribute.Strategy) -> bool:
    owner = getattr(model, "_distribute_strategy", None)
    if owner is None:  # built outside any strategy scope: fine for the default strategy only
        return strategy is tf.distribute.get_strategy()
    return owner is strategy


def _rebuild_under(model: keras.Model, strategy: tf.distribute.Strategy) -> keras.Model:
    """Clone `model` (architecture + weights + trainable flags) inside `strategy.scope()`."""
    with strategy.scope():
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
    return clone


def _multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """A `MultiWorkerMirroredStrategy` whose cluster has more than one worker."""
    in_multi_worker_mode = getattr(strategy.extended, "_in_multi_worker_mode", None)
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(
        callable(in_multi_worker_mode) and in_multi_worker_mode())


@contextlib.contextmanager
def _multi_worker_fit(model: keras.Model, train_ds: tf.data.Dataset) -> Any:
    """Let Keras 3 `fit` run under a multi-worker `MultiWorkerMirroredStrategy`.

    Keras 3 (3.15 here; keras-team/keras#20585) fails there twice: before the first epoch it
    reduces the first distributed batch across workers only to learn its shapes (a nested
    `strategy.reduce` this strategy refuses), and after every step it reduces each scalar log
    with `strategy.reduce("MEAN", value, axis=0)`, which a scalar has no axis for. Within this
    context the model is built from the dataset's element spec instead, and each scalar log gets
    a length-1 axis (the cross-replica mean of the logs is unchanged). Both overrides are
    instance attributes, removed on exit.
    """
    spec = train_ds.element_spec
    strategy = model.distribute_strategy
    train_step = model.train_step

    def symbolic_build(iterator: Any = None, data_batch: Any = None) -> None:
        with strategy.scope():
            model._symbolic_build(data_batch=spec)

    def step_with_axis(data: Any) -> Any:
        return tf.nest.map_structure(lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, train_step(data))

    model._maybe_symbolic_build = symbolic_build
    model.train_step = step_with_axis
    try:
        yield
    finally:
        del model._maybe_symbolic_build
        del model.train_step


def _check_label_count(num_labels: int, train_ds: tf.data.Dataset, labels: Any) -> None:
    """The model's outputs against the labels of `train_ds` (and `labels`): one error naming both."""
    spec = train_ds.element_spec
    found = []
    if isinstance(spec, tuple) and len(spec) >= 2 and spec[1].shape.rank and spec[1].shape[-1] is not None:
        found.append(("the batches of `train_ds`", int(spec[1].shape[-1])))
    if labels is not None:
        names = getattr(labels, "label_names", None)
        count = len(names) if names is not None else int(np.shape(labels)[-1])
        found.append(("`labels`", count))
    for where, count in found:
        if count != num_labels:
            raise ValueError(
                f"The model has {num_labels} outputs but {where} hold {count} labels: it was built for another "
                "label set. Build a model for these labels, or grow it with `ssl_multilabel.labeling.extend_model`."
            )


def train_round(
    model: keras.Model,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset | tuple | None = None,
    *,
    loss: str | dict | keras.losses.Loss = "bce",
    epochs: int = 100,
    learning_rate: float = 1e-3,
    patience: int | None = 10,
    keep_epoch: Literal["best", "last"] = "best",
    pos_weight: str | Sequence[float] | np.ndarray | None = "auto",
    labels: Any = None,
    optimizer: keras.optimizers.Optimizer | None = None,
    ema_momentum: float | None = None,
    metrics: Sequence[Any] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    strategy: tf.distribute.Strategy | None = None,
    seed: int | None = 0,
    verbose: str | int = "auto",
) -> tuple[keras.Model, keras.callbacks.History]:
    """Train `model` on the known cells of `train_ds` for one round.

    Compiles the model with a masked loss and Adam, fits it with Keras callbacks, computes the
    exact masked mAP on `val_ds` after every epoch (`BestMaskedMAP`), stops early when it has
    not improved for `patience` epochs, and restores the weights of the best epoch.

    Args:
        model: a classifier (e.g. from `build_classifier`) returning probabilities or logits
            (detected from its `scores` layer). With a `strategy`, a model that was not built
            under `strategy.scope()` is cloned there (weights copied): use the returned model.
        train_ds: `tf.data.Dataset` of `(x, y)` or `(x, y, w)` batches, `y` with `-1` for
            unknown cells, `w` per-cell weights (`make_dataset(..., with_weights=True)`).
        val_ds: validation batches like `train_ds` (or a tuple `(x, y)`); `None` trains for
            `epochs` epochs without model selection.
        loss: a name of `ssl_multilabel.losses.get` (`"bce"`, `"focal"`, `"asl"`,
            `"partial_bce"`, `"soft_f1"`, `"ll_r"`), a config dict, or a `keras.losses.Loss` instance
            (used as is). Named losses get `from_logits` matching the model.
        epochs: maximum number of epochs. With `val_ds`, training stops once `patience` epochs
            bring no better validation epoch, so the default trains until the validation mAP
            stops improving; without it, every epoch is trained.
        learning_rate: Adam learning rate (ignored when `optimizer` is given).
        patience: epochs without a better validation mAP before stopping; `None` disables
            early stopping (the best epoch is still restored).
        keep_epoch: `"best"` (default): early stopping on `val_ds` as above, the best epoch's
            weights returned. `"last"`: every one of `epochs` epochs trains and the last epoch's
            weights are returned (`patience` is unused; `val_ds` is still scored every epoch, for
            the history). For a model that a penalty regularizes rather than early stopping, e.g.
            a head with an `l2` penalty on frozen features (a logistic regression per label): a
            validation set with a few known positives chooses its epoch by chance (docs/recipes.md).
        pos_weight: `"auto"` (per-label `n_neg / n_pos` over known cells, see
            `pos_weight_from_labels`; from `labels`, else one pass over `train_ds`), `None`, or
            an explicit length-`L` array. Used by losses that take a `pos_weight`.
        labels: the training labels (`PartialLabels` or array with `-1`) for `pos_weight="auto"`.
        optimizer: a Keras optimizer instead of `Adam(learning_rate)`; one built with
            `use_ema=True` is validated and returned like `ema_momentum` below.
        ema_momentum: keep an exponential moving average of the weights with this momentum
            (Adam's `use_ema`); every epoch is validated with the averaged weights, and the
            best epoch's averaged weights are the ones returned. `None`: plain weights.
        metrics: extra Keras metrics to compile, as `weighted_metrics` so that they weigh each cell as
            the loss does (streaming metrics slow each step down).
        callbacks: extra Keras callbacks, run after the validation-mAP and early-stopping ones.
        strategy: any `tf.distribute.Strategy` (e.g. `MirroredStrategy`, or
            `MultiWorkerMirroredStrategy` with every worker calling `train_round` on the same
            dataset); `None` uses the current (default) strategy.
        seed: global seed (`keras.utils.set_random_seed`) for dropout and other random ops;
            `None` leaves the random state alone. Shuffling is seeded by the dataset itself,
            together with the global seed at the time the dataset was built (`make_dataset`).
        verbose: Keras `fit` verbosity.

    Returns:
        `(model, history)`: the trained model (the clone when it was rebuilt for `strategy`)
        with the best epoch's weights, and the Keras `History` (`loss`, `val_mAP`, `val_AUC`).

    Example:
        >>> model, history = train_round(model, train_ds, val_ds, epochs=8, labels=y_train)  # doctest: +SKIP
        >>> max(history.history["val_mAP"])  # doctest: +SKIP
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"Invalid value for argument `model`. Expected a keras.Model. Received: {type(model).__name__}")
    if not isinstance(train_ds, tf.data.Dataset):
        raise TypeError(
            "Invalid value for argument `train_ds`. Expected a tf.data.Dataset of (x, y) or (x, y, w) "
            f"batches (see ssl_multilabel.data.make_dataset). Received: {type(train_ds).__name__}"
        )
    _check_positive("epochs", epochs, int)
    _check_positive("learning_rate", learning_rate, float)
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 0):
        raise ValueError(f"Invalid value for argument `patience`. Expected a non-negative int or None. Received: patience={patience!r}")
    if keep_epoch not in ("best", "last"):
        raise ValueError(f"Invalid value for argument `keep_epoch`. Expected 'best' or 'last'. Received: keep_epoch={keep_epoch!r}")
    if ema_momentum is not None:
        if isinstance(ema_momentum, bool) or not isinstance(ema_momentum, (int, float)) or not 0.0 < ema_momentum < 1.0:
            raise ValueError(
                f"Invalid value for argument `ema_momentum`. Expected a float in (0, 1) or None. Received: ema_momentum={ema_momentum!r}")
        if optimizer is not None:
            raise ValueError(
                "Invalid arguments: `ema_momentum` builds its own Adam optimizer; pass `use_ema=True` to your "
                "`optimizer` instead of giving both.")
    if strategy is not None and not isinstance(strategy, tf.distribute.Strategy):
        raise TypeError(
            f"Invalid value for argument `strategy`. Expected a tf.distribute.Strategy or None. Received: {type(strategy).__name__}"
        )
    if seed is not None:
        keras.utils.set_random_seed(int(seed))

    # Positive weights are counted on known cells only (the seed's class weights, per label).
    num_labels = int(model.output_shape[-1])
    _check_label_count(num_labels, train_ds, labels)
    pos_weight_given = not (pos_weight is None or isinstance(pos_weight, str))
    if isinstance(pos_weight, str):
        if pos_weight != "auto":
            raise ValueError(
                f"Invalid value for argument `pos_weight`. Expected 'auto', None or an array of "
                f"{num_labels} floats. Received: pos_weight={pos_weight!r}"
            )
        pos_weight = pos_weight_from_labels(labels if labels is not None else _labels_from_dataset(train_ds))
    if pos_weight is not None:
        pos_weight = np.asarray(pos_weight, np.float32).reshape(-1)
        if pos_weight.shape != (num_labels,):
            raise ValueError(
                f"Invalid value for argument `pos_weight`: the model has {num_labels} labels but "
                f"pos_weight has shape {pos_weight.shape}."
            )

    strategy = strategy or tf.distribute.get_strategy()
    if not _created_under(model, strategy):
        logger.info("rebuilding the model under %s", type(strategy).__name__)
        model = _rebuild_under(model, strategy)

    with strategy.scope():
        compiled_loss = _make_loss(loss, outputs_logits(model), pos_weight, pos_weight_given)
        if optimizer is None:
            ema = {} if ema_momentum is None else {"use_ema": True, "ema_momentum": ema_momentum}
            optimizer = keras.optimizers.Adam(learning_rate, **ema)
        model.compile(
            optimizer=optimizer,
            loss=compiled_loss,
            weighted_metrics=list(metrics) if metrics else None,  # `metrics=` would never see the cell weights
        )

    round_callbacks: list[keras.callbacks.Callback] = []
    if getattr(optimizer, "use_ema", False):
        # First, so that the validation below scores (and keeps) the averaged weights.
        round_callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if val_ds is not None:
        best = keep_epoch == "best"
        round_callbacks.append(BestMaskedMAP(val_ds, label_names=getattr(labels, "label_names", None),
                                             patience=patience if best else None, restore_best=best))
    round_callbacks.extend(callbacks or [])
    # shuffle=False: a dataset shuffles itself; Keras would only warn that it ignores the flag.
    with _multi_worker_fit(model, train_ds) if _multi_worker(strategy) else contextlib.nullcontext():
        history = model.fit(train_ds, epochs=epochs, callbacks=round_callbacks, verbose=verbose, shuffle=False)
    return model, history


# === Export ===


def export_model(model: keras.Model, directory: str | os.PathLike) -> dict[str, Path]:
    """Write `model.keras` and a TensorFlow SavedModel (`saved_model/`) into `directory`.

    Both are written under temporary names in `directory` and renamed into place, so a crash
    never leaves a half-written model where a reader expects a complete one. The SavedModel
    (`model.export(..., format="tf_saved_model")`) serves with TF Serving or
    `tf.saved_model.load(path).serve(images)` without this package.

    Args:
        model: the model to write.
        directory: output folder (created if missing); existing exports there are replaced.

    Returns:
        `{"keras": <dir>/model.keras, "saved_model": <dir>/saved_model}`.

    Example:
        >>> paths = export_model(model, "runs/quickstart")  # doctest: +SKIP
        >>> reloaded = keras.models.load_model(paths["keras"])  # doctest: +SKIP
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"Invalid value for argument `model`. Expected a keras.Model. Received: {type(model).__name__}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"Invalid value for argument `directory`: {str(directory)!r} exists and is not a folder.")
    directory.mkdir(parents=True, exist_ok=True)
    keras_path = directory / "model.keras"
    saved_path = directory / "saved_model"

    with atomic_path(keras_path) as tmp:  # its temporary name keeps the .keras suffix Keras requires
        model.save(tmp)

    tmp_dir = make_temp_dir(directory, ".saved_model-")
    old_dir = None
    try:
        model.export(str(tmp_dir / "export"), format="tf_saved_model", verbose=False)
        if saved_path.exists():
            old_dir = directory / f".saved_model-old-{os.getpid()}"
            os.replace(saved_path, old_dir)
        os.replace(tmp_dir / "export", saved_path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if old_dir is not None:
            shutil.rmtree(old_dir, ignore_errors=True)
    logger.info("exported %s and %s", keras_path, saved_path)
    return {"keras": keras_path, "saved_model": saved_path}
