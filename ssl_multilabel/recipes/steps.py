"""The built-in recipe steps: supervised round, propagation, noisy student, evaluation, export, report.

Each step is a frozen, validated `Step` whose `run(ctx, state)` reads the run state (data, current
label table, current model) and returns a `StepResult`; the runner persists it. Heavy imports
(TensorFlow, FAISS) happen inside `run`, so building and validating recipes stays cheap.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from ssl_multilabel._backbone_names import BACKBONE_NAMES
from ssl_multilabel.data.rows import take_rows
from ssl_multilabel.labels import PartialLabels, Source, given_cells, validation_split
from ssl_multilabel.propagation.defaults import DEFAULT_ALPHA, DEFAULT_K, DEFAULT_METRIC, VOTE_ALPHA, VOTE_WEIGHT
from ssl_multilabel.recipes.config import RecipeError, param
from ssl_multilabel.recipes.runner import RunState, Step, StepContext, StepResult
from ssl_multilabel.teacher_student.config import LossName, NoisyStudentConfig

__all__ = [
    "Evaluate", "Export", "FineTune", "NoisyStudent", "Propagate", "Report", "Supervised",
    "fill_from_scores", "propagate_table", "propagation_scores",
]

logger = logging.getLogger(__name__)

Backbone = Literal[BACKBONE_NAMES]  # every family of models.BACKBONES


# === Helpers shared by the training steps ===


class _ImageStep(Step):
    """A step that trains on images: refused before the run starts when the data are embeddings
    (it used to fail when reached, after the steps before it had run)."""

    def check_data(self, data: Any) -> None:
        if data.kind != "images":
            raise RecipeError(
                f"Step {self.name!r} ({type(self).__name__}) needs image data; the recipe's data are "
                f"{data.kind}. Use Propagate / Evaluate(split='hidden') on embeddings."
            )


def assume_negatives(labels: PartialLabels, *, features: np.ndarray | None = None, seed: int = 0,
                     rows: np.ndarray | None = None, log: bool = True) -> PartialLabels:
    """`labels` with the unknown cells of every label that has no known negative filled as negatives.

    A label whose known cells are all positive (single positive labels and similar) would train
    a model that can only say "yes"; for those labels the unknown cells become negatives (source
    IMPLIED) of weight 1 (assume negative), the training steps' rule. With `features`, the weight
    is instead chosen per label (`teacher_student.assumptions.choose_negative_assumption`): 1 or
    `1 / (L - 1)` (weak negatives), whichever ranks held-out known positives above the label's
    unlabeled cells better on them; the steps pass none, because on the photo recipe's dev split
    that choice (weak negatives on every label) scored below weight 1 (docs/noisy_student.md).
    One log line says which labels and what weight. Labels with a known negative are left as they
    are. Known cells never change. `rows` (default all) are the rows that decide which labels lack
    a known negative (and inform the choice); the fill applies to every row.
    """
    from ssl_multilabel.teacher_student.assumptions import choose_negative_assumption

    return choose_negative_assumption(labels, features, seed=seed, rows=rows, log=log).apply(labels)


def _features(ctx: StepContext, state: RunState, model: Any, split: Literal["train", "test"] = "train") -> np.ndarray | None:
    """The cached pooled features of a frozen backbone for the split's images, else None.

    A frozen backbone's features never change, so every step computes them at most once per
    image (`ssl_multilabel.features`, cache in `<run dir>/features/`).
    """
    from ssl_multilabel.features import cached_features
    from ssl_multilabel.models import frozen_backbone

    if state.data.kind != "images" or not frozen_backbone(model):
        return None
    inputs = state.data.inputs if split == "train" else state.data.test_inputs
    return cached_features(model, inputs, cache_dir=ctx.run_dir / "features", image_size=state.data.image_size,
                           channels=state.data.channels)


def _embeddings(ctx: StepContext, state: RunState, model: Any) -> np.ndarray:
    """The model's penultimate features of the training images (cached when the backbone is frozen)."""
    from ssl_multilabel.features import embed

    features = _features(ctx, state, model)
    if features is None:
        features = embed(model, state.data.inputs, image_size=state.data.image_size, channels=state.data.channels)
    return features


def _scores(ctx: StepContext, state: RunState, model: Any, split: Literal["train", "test"] = "train") -> np.ndarray:
    """The model's un-noised scores of the split's images (from cached features when frozen)."""
    from ssl_multilabel.models import head_model
    from ssl_multilabel.teacher_student.pseudo_labels import predict_scores

    features = _features(ctx, state, model, split)
    if features is not None:
        return predict_scores(head_model(model), features, batch_size=1024)
    inputs = state.data.inputs if split == "train" else state.data.test_inputs
    return predict_scores(model, inputs, batch_size=128, image_size=state.data.image_size,
                          channels=state.data.channels)


def _fit(
    ctx: StepContext,
    model: Any,
    state: RunState,
    labels: PartialLabels,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    loss: str,
    validation_fraction: float,
    patience: int | None,
    keep_epoch: str = "best",
    new_labels: np.ndarray | None = None,
    replay: float | None = None,
    flip_shift: float | None = None,
) -> tuple[Any, dict[str, list[float]]]:
    """One `training.train_round` on the known cells of `labels` (cell weights = confidence).

    `flip_shift`: weak input noise on the training images (`teacher_student.noise.weak_augment`),
    None for none; it never applies to cached features.

    With `replay`, an epoch is not every training row: it is one shuffled pass over the rows
    with a known cell (not an assumed negative) in a column of `new_labels` (bool per label; the
    pass's last partial batch is left out, a different one each epoch), in batches mixed with
    `replay` times as many of the other rows (at most as many as there are), drawn afresh each
    epoch from a new shuffle of them (`data.mixed_dataset`, every cell weighing the same). Without
    such a row, every row trains.

    Returns the trained model (its best validation epoch, or its last with `keep_epoch="last"`) and the
    Keras history dict.
    """
    from ssl_multilabel.data import make_dataset, mixed_dataset
    from ssl_multilabel.models import head_model
    from ssl_multilabel.training import default_verbosity, train_round

    data = state.data
    # The split depends on human cells only; which labels lack a known negative is read on the training rows.
    train_rows, val_rows = validation_split(labels, validation_fraction, ctx.split_seed)
    _warn_positives_only_in_validation(labels, train_rows, val_rows, ctx.step.name)
    labels = assume_negatives(labels, rows=train_rows)
    # Rows without any known cell carry no loss: leave them out of the training stream.
    train_rows = train_rows[labels.known[train_rows].any(axis=1)]
    if len(train_rows) == 0:
        raise RecipeError(f"Step {ctx.step.name!r}: no training row has a known label cell.")
    # A frozen backbone: train the head on cached features (it shares its layers with `model`).
    features = _features(ctx, state, model)
    inputs, trained = (data.inputs, model) if features is None else (features, head_model(model))
    common: dict[str, Any] = dict(batch_size=batch_size)
    if features is None:
        common.update(image_size=data.image_size, channels=data.channels)
    augment = None
    if features is not None and flip_shift is not None:
        logger.warning("%s: flip_shift=%g is not used: the backbone is frozen, so the head trains on the images' "
                       "cached features, which no image flip reaches.", ctx.step.name, flip_shift)
    if features is None and flip_shift is not None:
        from ssl_multilabel.teacher_student.noise import weak_augment

        augment = weak_augment(flip_shift, seed=ctx.seed)
    train_labels = labels.subset(train_rows)
    new_rows = None
    if replay is not None:
        # An assumed negative says nothing about a row: the rows that teach a new label hold another cell of it.
        informative = train_labels.known & (train_labels.source != Source.IMPLIED)
        new_rows = informative[:, new_labels].any(axis=1)
        if not new_rows.any():
            logger.info("%s: no training row has a known cell of a new label; every row trains each epoch.",
                        ctx.step.name)
            new_rows = None
    if new_rows is None:
        train_ds = make_dataset(take_rows(inputs, train_rows), train_labels, shuffle=True, seed=ctx.seed,
                                with_weights=True, augment=augment, **common)
    else:
        n_new, n_other = int(new_rows.sum()), int((~new_rows).sum())
        rows = np.broadcast_to(new_rows[:, None], train_labels.known.shape)
        train_ds = mixed_dataset(
            take_rows(inputs, train_rows), train_labels.restrict(rows), train_labels.restrict(~rows),
            batch_size=batch_size, unlabel_ratio=min(replay, max(n_other, 1) / n_new), balance="cells",
            confidence_weights=True, seed=ctx.seed, steps_per_epoch=max(1, n_new // batch_size), augment=augment,
            **{k: v for k, v in common.items() if k != "batch_size"},
        )
    val_ds = None
    if len(val_rows):
        # Scored against given cells only: a filled cell (the init model's teacher cells, a
        # propagated cell) in a validation row would score the model against a model.
        val_ds = make_dataset(take_rows(inputs, val_rows), given_cells(labels.subset(val_rows)), **common)
    trained_after, history = train_round(
        trained, train_ds, val_ds, loss=loss, epochs=epochs, learning_rate=learning_rate,
        patience=patience, keep_epoch=keep_epoch, labels=train_labels, callbacks=ctx.callbacks(),
        strategy=ctx.strategy, seed=ctx.seed, verbose=default_verbosity(),
    )
    if features is None:
        model = trained_after
    elif trained_after is not trained:  # rebuilt under a distribution strategy: copy the head back
        for layer in trained_after.layers[1:]:
            model.get_layer(layer.name).set_weights(layer.get_weights())
    return model, {k: [float(v) for v in vs] for k, vs in history.history.items()}


def _final_metrics(history: dict[str, list[float]]) -> dict[str, float]:
    """Last-epoch values, and the best validation mAP of any epoch (the kept epoch's, unless the step
    keeps its last epoch)."""
    final = {k: v[-1] for k, v in history.items() if v}
    if history.get("val_mAP"):
        final["best_val_mAP"] = max(history["val_mAP"])
    return final


def _input_shape(state: RunState) -> tuple[int, int, int]:
    h, w = state.data.image_size
    return (h, w, state.data.channels)


def propagation_scores(labels: PartialLabels, features: np.ndarray, *, k: int = DEFAULT_K, alpha: float = DEFAULT_ALPHA,
                       metric: str = DEFAULT_METRIC) -> np.ndarray:
    """Per-cell scores in [0, 1] from kNN label propagation of the known cells of `labels`.

    Args:
        labels: the table to propagate (its known cells are the seeds).
        features: `(n, d)` features, one row per row of `labels`.
        k, alpha, metric: see `propagation.knn_graph` and `propagation.diffuse`.

    Returns:
        float64 `(n, L)` scores.
    """
    from ssl_multilabel.propagation import diffuse

    result = diffuse(_graph(labels, features, k, metric), labels.to_array(), alpha=alpha)
    return np.clip(np.asarray(result.probability, np.float64), 0.0, 1.0)


def _graph(labels: PartialLabels, features: np.ndarray, k: int, metric: str) -> Any:
    from ssl_multilabel.propagation import knn_graph

    features = np.asarray(features, np.float32)
    if features.ndim != 2 or features.shape[0] != labels.n_samples:
        raise ValueError(
            f"`features` has shape {features.shape}; expected ({labels.n_samples}, d), one row per label row."
        )
    return knn_graph(features, k=k, metric=metric)


def propagate_table(
    labels: PartialLabels,
    features: np.ndarray,
    *,
    k: int = DEFAULT_K,
    alpha: float = DEFAULT_ALPHA,
    metric: str = DEFAULT_METRIC,
    target_precision: float | None = 0.9,
    precision_confidence: float | None = None,
    positive_threshold: float = 0.9,
    negative_threshold: float = 0.05,
    seed: int = 0,
    holdout_rows: np.ndarray | None = None,
) -> tuple[PartialLabels, np.ndarray, Any]:
    """Fill `labels` by kNN label propagation over `features`; also return the cell scores and,
    with `target_precision`, `fill_unknown`'s per-label report (thresholds, held-out precision and
    the held-out cells it rests on, filled counts; None with fixed thresholds).

    With `target_precision`, per-label thresholds are fitted on the known cells' out-of-fold scores
    (`propagation.fill_unknown`): a cell is filled only where those cells reach that precision
    (its lower confidence bound at `precision_confidence`, when given). With
    `target_precision=None`, the fixed `positive_threshold` / `negative_threshold` are used
    (`fill_from_scores`).

    `holdout_rows` (e.g. the validation rows of the training steps) are left out of the seeds
    and are not filled: their labels never reach a training target through the graph, so a
    validation score on them stays honest.

    Labels whose seeds hold no cell of a class (e.g. single positive labels) are named in one log
    line; the diffusion's own warning about them, which numbers labels instead, is not repeated.

    Only the cells a person gave (human and implied) are seeds and measure the target precision:
    cells an earlier step filled (a teacher's, an earlier propagation's) stay as they are, and a
    second propagation measured against them filled cells right half the time at a target of 0.9.

    Returns:
        `(filled table, (n, L) scores with every given cell outside holdout_rows as a seed, report)`.
    """
    from ssl_multilabel.propagation import diffuse, fill_unknown

    seeds = given_cells(labels)
    machine = labels.known & ~seeds.known
    if holdout_rows is not None and len(holdout_rows):
        outside = np.ones(labels.known.shape, bool)
        outside[holdout_rows] = False
        seeds = seeds.restrict(outside)
    _say_one_class(seeds, "Propagation", "the scores of those labels fall back to the label prior, and the "
                   "training steps decide what their unknown cells mean")
    W = _graph(labels, features, k, metric)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No known cells for", category=UserWarning)
        scores = np.clip(np.asarray(diffuse(W, seeds.to_array(), alpha=alpha).probability, np.float64), 0.0, 1.0)
        if target_precision is None:
            filled, report = fill_from_scores(seeds, scores, positive_threshold, negative_threshold), None
        else:
            filled, report = fill_unknown(seeds, W, target_precision=target_precision,
                                          precision_confidence=precision_confidence, seed=seed, alpha=alpha,
                                          return_report=True)
    if not machine.any() and (holdout_rows is None or not len(holdout_rows)):
        return filled, scores, report  # `seeds` is `labels`
    take = filled.known & ~seeds.known & ~labels.known
    if holdout_rows is not None:
        take[holdout_rows] = False
    filled = labels.fill(np.where(take, filled.values, -1.0), np.where(take, filled.weight, 0.0), Source.PROPAGATED)
    if report is not None:  # the counts of the table returned, not of the fill of the seeds
        report["filled_pos"] = (take & (filled.values >= 0.5)).sum(axis=0)
        report["filled_neg"] = (take & (filled.values < 0.5)).sum(axis=0)
        report["still_unknown"] = (~filled.known).sum(axis=0)
    return filled, scores, report


def _warn_positives_only_in_validation(labels: PartialLabels, train_rows: np.ndarray, val_rows: np.ndarray,
                                      who: str) -> None:
    """One warning naming the labels whose every known positive is among the validation rows: the
    model trains on none of them (the data's check, on the whole table, saw some)."""
    positive = labels.known & (labels.values >= 0.5)
    found = [name for j, name in enumerate(labels.label_names)
             if not positive[train_rows, j].any() and positive[val_rows, j].any()]
    if found:
        logger.warning("%s: every known positive of %s is among the %d validation rows, so training sees none and "
                       "the model cannot learn to find them. Label more positives of those labels (each needs one to "
                       "train on and one to validate).", who, ", ".join(repr(n) for n in found), len(val_rows))


def _say_one_class(seeds: PartialLabels, who: str, consequence: str) -> None:
    """One log line naming the labels without a known negative or positive (e.g. single positive
    labels), instead of the diffusion's warnings (the callers silence them)."""
    one_class = [f"{name} ({kind})" for name, row in seeds.summary().iterrows()
                 for kind, column in (("negative", "negatives"), ("positive", "positives")) if row[column] == 0]
    if one_class:
        logger.info("%s: no known cell to propagate for %s; %s.", who, ", ".join(one_class), consequence)


def fill_from_scores(labels: PartialLabels, scores: np.ndarray, positive_threshold: float,
                     negative_threshold: float) -> PartialLabels:
    """Fill unknown cells whose score is `>= positive_threshold` or `<= negative_threshold`.

    Filled cells keep the score as a soft value, weight `max(s, 1 - s)`, source PROPAGATED. A label
    without a known positive and a known negative is not filled (as `fill_unknown` leaves it): its
    scores are the label prior, which a fixed threshold would turn into the same answer for every
    cell (a label with only positives known: every cell positive).
    """
    from ssl_multilabel.propagation.fill import both_classes_known

    take = ((scores >= positive_threshold) | (scores <= negative_threshold)) & both_classes_known(labels)
    return labels.fill(np.where(take, scores, -1.0), np.maximum(scores, 1.0 - scores), Source.PROPAGATED)


# === Steps ===


#: The Supervised settings that build a new model (a step that continues a model does not use them).
_BUILD_SETTINGS = ("backbone", "width", "weights", "freeze", "dropout", "l2")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Supervised(_ImageStep):
    """One masked-loss training round on the known cells (human and already filled, weighted).

    Continues the current model when there is one (unless `from_scratch`), else builds
    `build_classifier(backbone, ...)`.

    With `init_model` (a `.keras` file with its `<model>.labels.json` beside it, as `Export`
    writes them), the round starts from that model instead, extended to the table's labels
    (`labeling.extend_model`: the old labels keep their output units, new labels get fresh
    ones), and the old model is the teacher of its labels: their unknown cells train on its
    scores as soft targets (source TEACHER, weight 1; human cells are never replaced), so the
    old outputs are not forgotten. Every model label must be a label of the table.
    With `init_model` and `freeze=True` the old model's backbone is frozen: only the output layer
    trains, on the backbone's features computed once (the cheap way to add labels, B8).
    With `init_model`, an epoch is one shuffled pass over the rows with a known cell of a new
    label, in batches mixed with `replay` (default 1) times as many of the other rows (rehearsal
    of the old labels, fresh rows every epoch) instead of every row: an epoch costs a fraction of
    a full one when the new labels are known on a few rows (B8: 4.6x less training time than a
    new model, new labels +5.3 points, old labels within 0.4). `replay=None`: every row.
    """

    epochs: int = param(100, ge=1, doc="maximum epochs (early stopping on validation mAP ends training sooner)")
    batch_size: int = param(64, ge=1, doc="batch size")
    learning_rate: float = param(1e-3, gt=0.0, doc="Adam learning rate")
    loss: LossName = param("bce", doc="masked loss (ssl_multilabel.losses.get name)")
    patience: int | None = param(10, ge=1, doc="epochs without a better validation epoch before stopping (none: off)")
    keep_epoch: Literal["best", "last"] = param(
        "best", doc="best: early stopping on validation mAP, the best epoch kept; last: train every epoch, keep the "
                    "last (a head regularized by l2, when the validation rows hold a few positives)")
    backbone: Backbone = param("small_cnn", doc="backbone of a new model")
    width: float = param(1.0, gt=0.0, doc="backbone width: MobileNet v1/v2 alpha, small_cnn filter multiplier")
    weights: str = param("", doc="backbone weights: '' (random), 'imagenet' or a *_notop .weights.h5 path")
    freeze: bool | None = param(None, doc="freeze the backbone (none: exactly when pretrained weights are loaded; "
                                          "with init_model: true freezes its backbone, else it stays as saved)")
    dropout: float = param(0.2, ge=0.0, lt=1.0, doc="dropout before the output layer")
    l2: float = param(0.0, ge=0.0, doc="L2 penalty on the output layer's kernel, l2 * sum(W**2) added to the loss "
                                       "(0: none; on a frozen backbone the strength of a per-label logistic regression)")
    validation_fraction: float = param(0.1, ge=0.0, lt=1.0, doc="labeled rows held out for validation")
    flip_shift: float | None = param(
        None, ge=0.0, le=0.5, doc="weak input noise on images: a random flip and a shift of up to this fraction of "
                                  "the size (none: off; never on cached features)")
    from_scratch: bool = param(False, doc="build a new model even if the run has one")
    init_model: str = param("", doc="start from this .keras model (+ its .labels.json), extended to the table's labels "
                                    "(its architecture replaces backbone, width, weights, dropout, l2)")
    replay: float | None = param(1.0, gt=0.0, doc="with init_model: an epoch is the rows with a known cell of a new "
                                                  "label plus replay times as many other rows (none: every row; "
                                                  "unused without init_model)")

    def validate(self) -> None:
        if self.init_model and not self.init_model.endswith(".keras"):
            raise RecipeError(f"Supervised: init_model must be the path of a .keras model; got {self.init_model!r}.")
        if self.init_model and self.from_scratch:
            raise RecipeError("Supervised: init_model and from_scratch=True contradict each other; set one of them.")
        if self.backbone == "small_cnn" and self.weights:
            raise RecipeError(f"Supervised: the small CNN has no pretrained weights; got weights={self.weights!r}.")
        if self.weights not in ("", "imagenet") and not self.weights.endswith(".h5"):
            raise RecipeError(
                f"Supervised: weights must be '', 'imagenet' or the path of a .weights.h5 file; got {self.weights!r}."
            )
        if self.width != 1.0 and self.backbone not in ("small_cnn", "mobilenet", "mobilenet_v2"):
            raise RecipeError(
                f"Supervised: width applies to small_cnn, mobilenet and mobilenet_v2; backbone {self.backbone!r} "
                f"grows by choosing a larger family member. Got width={self.width}."
            )

    def resolved(self) -> "Supervised":
        """A copy with relative weights / init_model paths made absolute (a resumed run finds the same
        files; the runner checks that they exist before a run, or the part of it still to run, starts)."""
        step = self
        if self.weights not in ("", "imagenet"):
            step = dataclasses.replace(step, weights=str(Path(self.weights).expanduser().resolve()))
        if self.init_model:
            step = dataclasses.replace(step, init_model=str(Path(self.init_model).expanduser().resolve()))
        return step

    def check_after(self, earlier: Sequence[Step]) -> None:
        """A Supervised step that continues the model of an earlier one (not `from_scratch`, no
        `init_model`) trains that model: settings of a new model that differ from those it was
        built with would be recorded and not applied."""
        producers = [s for s in earlier if isinstance(s, (Supervised, FineTune, NoisyStudent, NeighbourVote))]
        if self.from_scratch or self.init_model or not producers or not isinstance(producers[-1], Supervised):
            return
        builder = producers[-1]

        def setting(step: Supervised, key: str) -> Any:  # as the model is built: freeze=None is "when pretrained"
            value = getattr(step.resolved(), key)  # a weights path as the run records it (links resolved)
            return bool(step.weights) if key == "freeze" and value is None else value

        differ = [key for key in _BUILD_SETTINGS if setting(self, key) != setting(builder, key)]
        if differ:
            raise RecipeError(
                f"Step {self.name!r} continues the model of step {builder.name!r}, so its settings of a new model "
                + ", ".join(f"{key}={setting(self, key)!r} (the model has {setting(builder, key)!r})" for key in differ)
                + " would not apply: set them as in that step, or from_scratch=true to build a new model.")

    def run(self, ctx: StepContext, state: RunState) -> StepResult:
        from ssl_multilabel.models import build_classifier, width_kwargs

        ctx.seed_everything()
        labels, new_labels = state.labels, None
        if self.init_model:
            model, labels, old_names = self._init_from_model(ctx, state)
            new_labels = np.array([name not in old_names for name in labels.label_names])
        else:
            model = None if self.from_scratch else state.load_model()
        if model is None:
            model = build_classifier(
                self.backbone, state.labels.n_labels, _input_shape(state), weights=self.weights or None,
                freeze=self.freeze, dropout=self.dropout, l2=self.l2,
                backbone_kwargs=width_kwargs(self.backbone, self.width), seed=ctx.seed,
            )
        model, history = _fit(
            ctx, model, state, labels, epochs=self.epochs, batch_size=self.batch_size,
            learning_rate=self.learning_rate, loss=self.loss, validation_fraction=self.validation_fraction,
            patience=self.patience, keep_epoch=self.keep_epoch, new_labels=new_labels,
            replay=self.replay if self.init_model else None,
            flip_shift=self.flip_shift,
        )
        ctx.save_json("history.json", history)
        final = _final_metrics(history)
        if labels is state.labels:
            return StepResult(model=model, metrics=final, info={"history": "history.json"})
        final["teacher_cells"] = int((labels.known & ~state.labels.known).sum())
        return StepResult(labels=labels, model=model, metrics=final, info={"history": "history.json"})

    def _init_from_model(self, ctx: StepContext, state: RunState) -> tuple[Any, PartialLabels, list[str]]:
        """`init_model` extended to the table's labels, the table with the old model's scores
        filled into its labels' unknown cells (the labels are checked before the model is loaded),
        and the old model's label names."""
        from ssl_multilabel.labeling import check_model_labels, extend_model, labels_file, read_model_labels, teacher_fill
        from ssl_multilabel.models import check_classifier
        from ssl_multilabel.recipes.runner import load_keras_model

        path = Path(self.init_model)
        names_path = labels_file(path)
        try:
            names = read_model_labels(names_path)
            check_model_labels(names, state.labels.label_names, model_source=str(names_path),
                               table_source="the recipe's label table")
            old = load_keras_model(path, "init_model")
            check_classifier(old, f"init_model {str(path)!r}")
            read_model_labels(names_path, int(old.output_shape[-1]))
        except (ValueError, FileNotFoundError) as err:
            raise RecipeError(f"Step {self.name!r}: {err}") from None
        if tuple(old.input_shape[1:]) != _input_shape(state):
            raise RecipeError(f"Step {self.name!r}: init_model {str(path)!r} takes inputs of shape {tuple(old.input_shape[1:])}; "
                              f"the recipe's images are {_input_shape(state)} (data image_size and channels).")
        logger.info("%s: starting from %s (%d labels), extended to the table's %d labels.", self.name, path,
                    len(names), state.labels.n_labels)
        labels = teacher_fill(state.labels, _scores(ctx, state, old), names)
        model = extend_model(old, names, state.labels.label_names, seed=ctx.seed)
        if self.freeze:
            try:
                model.get_layer("backbone").trainable = False
            except ValueError:
                raise RecipeError(f"Step {self.name!r}: freeze=True needs an init_model with a 'backbone' layer "
                                  f"(a model built by build_classifier); {str(path)!r} has none.") from None
            logger.info("%s: the backbone of %s is frozen; only the output layer trains.", self.name, path.name)
        return model, labels, names


@dataclasses.dataclass(frozen=True, kw_only=True)
class FineTune(_ImageStep):
    """Fine-tune the top of a frozen pretrained backbone on images, then freeze it again.

    Put it after a `Supervised` step whose backbone is frozen (the cached head training): the top
    `layers` layers of the backbone are unfrozen and trained with the head at a low learning
    rate, on the images themselves (no feature cache: this costs a backbone pass per image per
    epoch). Batch-norm layers stay frozen and in inference mode (the model calls its frozen
    backbone with `training=False`), as in the Keras transfer-learning guide. Afterwards the
    backbone is frozen again, so later steps cache the fine-tuned features (a new cache key).
    """

    layers: int = param(20, ge=1, doc="top backbone layers to unfreeze (batch norm stays frozen)")
    epochs: int = param(10, ge=1, doc="maximum epochs")
    batch_size: int = param(32, ge=1, doc="batch size")
    learning_rate: float = param(1e-5, gt=0.0, doc="Adam learning rate (low: the weights are pretrained)")
    loss: LossName = param("bce", doc="masked loss (ssl_multilabel.losses.get name)")
    patience: int | None = param(3, ge=1, doc="early-stopping patience on validation mAP (none: off)")
    validation_fraction: float = param(0.1, ge=0.0, lt=1.0, doc="labeled rows held out for validation")

    def run(self, ctx: StepContext, state: RunState) -> StepResult:
        import keras

        from ssl_multilabel.models import frozen_backbone

        ctx.seed_everything()
        model = state.load_model()
        if model is None or not frozen_backbone(model):
            raise RecipeError(
                f"Step {self.name!r} fine-tunes a frozen pretrained backbone; put a Supervised step with "
                "pretrained weights (frozen) before it."
            )
        base = model.get_layer("backbone")
        base.trainable = True
        for layer in base.layers[: max(0, len(base.layers) - self.layers)]:
            layer.trainable = False
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
        model, history = _fit(
            ctx, model, state, state.labels, epochs=self.epochs, batch_size=self.batch_size,
            learning_rate=self.learning_rate, loss=self.loss, validation_fraction=self.validation_fraction,
            patience=self.patience,
        )
        model.get_layer("backbone").trainable = False
        ctx.save_json("history.json", history)
        return StepResult(model=model, metrics=_final_metrics(history), info={"history": "history.json"})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Propagate(Step):
    """kNN label propagation: diffuse known cells over a FAISS kNN graph, fill confident cells.

    Features are the data's embeddings (embedding data) or the current model's penultimate
    features (image data). With `target_precision` (default 0.9), per-label thresholds are fitted
    on the known cells' out-of-fold scores (`propagation.fill_unknown`), and with
    `precision_confidence` the precision must reach the target at that confidence; with
    `target_precision=None`, a cell becomes a propagated positive when its score is at least
    `positive_threshold` and a negative when at most `negative_threshold`. A filled cell's weight
    is the probability that its value is right (`fill_unknown`). Known cells never change. On image data, the rows the training
    steps hold out for validation (`validation_fraction`, the same seed) are neither seeds nor
    filled, so validation scores never see their own labels come back through the graph.
    """

    k: int = param(DEFAULT_K, ge=1, doc="neighbours per point")
    alpha: float = param(DEFAULT_ALPHA, gt=0.0, lt=1.0, doc="diffusion: weight of the graph vs the seeds")
    metric: Literal["cosine", "l2"] = param(DEFAULT_METRIC, doc="kNN metric")
    target_precision: float | None = param(
        0.9, ge=0.5, le=1.0, doc="fill where held-out known cells reach this precision (none: fixed thresholds)")
    precision_confidence: float | None = param(
        None, gt=0.0, lt=1.0, doc="the precision must reach target_precision at this confidence, a lower bound "
        "that weighs how many held-out cells it rests on (none: the measured precision)")
    positive_threshold: float = param(0.9, ge=0.0, le=1.0, doc="with target_precision=none: positive if score >= this")
    negative_threshold: float = param(0.05, ge=0.0, le=1.0, doc="with target_precision=none: negative if score <= this")
    validation_fraction: float = param(
        0.1, ge=0.0, lt=1.0, doc="the training steps' validation rows: not seeds, not filled (keep it equal to theirs)")

    def validate(self) -> None:
        if self.negative_threshold >= self.positive_threshold:
            raise RecipeError(
                f"Propagate: negative_threshold ({self.negative_threshold}) must be below "
                f"positive_threshold ({self.positive_threshold})."
            )
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        given = [name for name in ("positive_threshold", "negative_threshold") if getattr(self, name) != defaults[name]]
        if given and self.target_precision is not None:
            raise RecipeError(
                f"Propagate: {' and '.join(given)} appl{'y' if len(given) > 1 else 'ies'} with target_precision=none; with target_precision="
                f"{self.target_precision:g} the thresholds are fitted per label and yours would go unused. Set "
                "target_precision=none (--set propagate.target_precision=none) to use them."
            )
        if self.precision_confidence is not None and self.target_precision is None:
            raise RecipeError(
                f"Propagate: precision_confidence={self.precision_confidence:g} applies to target_precision, which is "
                "none (fixed thresholds): set a target_precision, or leave precision_confidence at none."
            )

    def run(self, ctx: StepContext, state: RunState) -> StepResult:
        if state.data.kind == "embeddings":
            features = np.asarray(state.data.inputs, np.float32)
        else:
            model = state.load_model()
            if model is None:
                raise RecipeError(
                    f"Step {self.name!r}: image data need a model for features; put a Supervised step before it."
                )
            ctx.seed_everything()
            features = _embeddings(ctx, state, model)
        labels = state.labels
        # The rows the training steps validate on (same fraction and seed give the same rows):
        # propagating their labels would put them into the training targets of their neighbours.
        _, val_rows = validation_split(labels, self.validation_fraction, ctx.split_seed)
        holdout = val_rows if state.data.kind == "images" else np.array([], dtype=int)
        filled, scores, report = propagate_table(
            labels, features, k=self.k, alpha=self.alpha, metric=self.metric,
            target_precision=self.target_precision, precision_confidence=self.precision_confidence,
            positive_threshold=self.positive_threshold, negative_threshold=self.negative_threshold, seed=ctx.seed,
            holdout_rows=holdout,
        )
        ctx.save_array("scores.npy", scores.astype(np.float32))
        info = {"scores": "scores.npy"}
        if report is not None:  # each label's thresholds and the held-out precision they rest on
            report.to_csv(ctx.path("fill_report.csv"))
            info["fill_report"] = "fill_report.csv"
        ctx.checkpoint("after_scores")
        n_new = int((filled.known & ~labels.known).sum())
        held_out = f"; the {len(holdout)} validation rows were held out and stay unfilled" if len(holdout) else ""
        logger.info("Propagation filled %d of %d unknown cells%s.", n_new, int((~labels.known).sum()), held_out)
        return StepResult(labels=filled, metrics={"cells_filled": n_new}, info=info)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoisyStudent(_ImageStep, NoisyStudentConfig):
    """Noisy-student rounds (`teacher_student.noisy_student`) starting from the current model.

    The un-noised teacher pseudo-labels confident unknown cells, a noised student (dropout,
    stochastic depth, RandAugment) trains on them and becomes the next teacher. Cells filled by
    earlier steps (propagation) are machine labels: they fill what the teacher's confident cells
    leave unknown, and train with them in the pseudo-labelled half of each batch (on B7's and B5's dev
    splits the other order gained nothing: docs/noisy_student.md). The step's label table is the one
    its kept model trained on (round 1's when the teacher is kept): human cells, teacher cells, then
    the earlier fills on the cells the teacher left unknown. Its model is the round's
    with the best validation mAP: a student that does not beat its teacher there is not kept.

    Its settings are those of `teacher_student.NoisyStudentConfig` (the same names, defaults and
    descriptions as `noisy_student()`'s), plus `validation_fraction`.
    """

    validation_fraction: float = param(0.1, ge=0.0, lt=1.0, doc="labeled rows held out for validation")

    def validate(self) -> None:
        try:
            self.check_across()
        except ValueError as err:
            raise RecipeError(str(err)) from None
        if self.target_precision is not None and self.validation_fraction == 0:
            raise RecipeError("NoisyStudent: target_precision needs validation rows; set validation_fraction > 0.")

    def run(self, ctx: StepContext, state: RunState) -> StepResult:
        from ssl_multilabel.teacher_student.loop import noisy_student
        from ssl_multilabel.training import default_verbosity

        ctx.seed_everything()
        teacher = state.load_model()
        if teacher is None:
            raise RecipeError(f"Step {self.name!r}: a teacher model is needed; put a Supervised step before it.")
        base = state.labels
        train_rows, val_rows = validation_split(base, self.validation_fraction, ctx.split_seed)
        has_val = len(val_rows) > 0
        if not has_val and self.target_precision is not None:
            logger.warning("%s: no validation rows (validation_fraction=%g), so target_precision=%g cannot fit "
                           "thresholds; the fixed positive_threshold / negative_threshold are used.",
                           self.name, self.validation_fraction, self.target_precision)
        train = base.subset(train_rows)
        human = given_cells(train)
        inputs, models, students, settings = self._student_setup(ctx, state, teacher)
        config = NoisyStudentConfig(**(self.settings() | settings | ({} if has_val else {"target_precision": None})))
        result = noisy_student(
            take_rows(inputs, train_rows), human, config, sources=self.sources(train, human),
            val_images=take_rows(inputs, val_rows) if has_val else None,
            val_labels=assume_negatives(given_cells(base.subset(val_rows)), log=False) if has_val else None,
            validation_fraction=0.0,  # the step's own split above (none when its validation_fraction is 0)
            seed=ctx.seed, strategy=ctx.strategy,
            train_kwargs={"callbacks": ctx.callbacks(), "verbose": default_verbosity()},
            **models,
        )
        chosen = _best_round(result.rounds) if has_val else result.rounds[-1]
        if chosen is not result.rounds[-1]:
            logger.info("%s: round %d scores the best validation mAP (%.4f, last round %.4f): keeping its model.",
                        self.name, chosen.index, _val_map(chosen), _val_map(result.rounds[-1]))
        # The training rows take the machine cells the kept student trained on (the kept teacher's own
        # confident cells, round 1's, when the teacher is kept): a rejected student's cells are not
        # findings. Teacher cells replace earlier fills; human cells stay; assumed negatives stay
        # unknown; validation rows keep theirs.
        labels = result.filled(base, round_index=max(chosen.index, 1))
        model = students.get(id(chosen.model), chosen.model)
        history: dict[str, list[float]] = {}
        for rnd in result.rounds[1:]:
            for key, series in rnd.history.items():
                history.setdefault(key, []).extend(float(v) for v in series)
        ctx.save_json("history.json", history)
        ctx.save_json("pseudo_labels.json", [r.pseudo.summary() for r in result.rounds if r.pseudo is not None])
        final = _final_metrics(history)
        final["round_kept"] = chosen.index
        final["cells_filled"] = int((labels.known & ~base.known).sum())
        final["teacher_cells"] = int((labels.known & (labels.source == Source.TEACHER)).sum())
        round_epochs = [len(next(iter(rnd.history.values()), [])) for rnd in result.rounds[1:]]
        return StepResult(labels=labels, model=model, metrics=final,
                          info={"history": "history.json", "round_epochs": round_epochs})

    @staticmethod
    def sources(train: PartialLabels, human: PartialLabels, negatives: Any = None) -> list[Any]:
        """The step's pseudo-label sources, in order of precedence (human cells always win).

        1. the round's teacher's confident cells;
        2. the cells earlier steps filled (propagation) on the training rows;
        3. for the labels whose known cells (human or filled) hold no negative, the remaining
           unknown cells as negatives, of weight 1 (the step's rule), or with the weights of
           `negatives` (an `AssumptionChoice` made on `train`, e.g. by
           `choose_negative_assumption`).
        """
        from ssl_multilabel.teacher_student.sources import AssumeNegative, FixedTable, TeacherCells

        sources: list[Any] = [TeacherCells()]
        if (train.known & ~human.known).any():
            sources.append(FixedTable(train))
        no_negative = ~(train.known & (train.values < 0.5)).any(axis=0)
        if no_negative.any():
            names = [train.label_names[j] for j in np.flatnonzero(no_negative)]
            sources.append(AssumeNegative(labels=names, weight=1.0 if negatives is None else negatives.weights()))
        return sources

    def _student_setup(self, ctx: StepContext, state: RunState,
                       teacher: Any) -> tuple[Any, dict[str, Any], dict[int, Any], dict[str, Any]]:
        """The inputs and model arguments of `noisy_student`, the full student of each head, and
        the settings that differ from the step's for these inputs (no RandAugment on features).

        A frozen backbone: the rounds run on cached features; the teacher is its head and every
        student a new head (`feature_noise`, `dropout`) over the same frozen backbone. Otherwise
        the rounds run on images: the small CNN's student is the residual CNN with stochastic
        depth and `width`; another family's student starts from the teacher's architecture and
        weights (a pretrained backbone keeps its pretraining), with RandAugment as input noise.
        """
        import keras

        from ssl_multilabel.models import backbone_family, head_model, with_new_head

        features = _features(ctx, state, teacher)
        if self.width != 1.0 and (features is not None or backbone_family(teacher) not in ("small_cnn", None)):
            logger.warning("%s: width=%g is not used: it widens a small CNN student, and this student %s.", self.name,
                           self.width, "is a new head over the teacher's frozen backbone" if features is not None
                           else "keeps the teacher's pretrained architecture")
        unused = [f"{key}={getattr(self, key)!r}" for key, off in (("augment_magnitude", 0.0), ("flip_shift", None))
                  if getattr(self, key) != off]
        if features is not None and unused:
            logger.warning("%s: %s not used: the backbone is frozen, so every student trains on the images' cached "
                           "features, which image noise does not reach (their noise is feature_noise and dropout).",
                           self.name, " and ".join(unused) + (" is" if len(unused) == 1 else " are"))
        if features is not None:
            students: dict[int, Any] = {}

            def build_student(k: int) -> Any:
                full = with_new_head(teacher, state.labels.n_labels, dropout=self.dropout,
                                     feature_noise=self.feature_noise, seed=ctx.seed + k)
                head = head_model(full)
                students[id(head)] = full
                return head

            teacher_head = head_model(teacher)
            students[id(teacher_head)] = teacher
            return features, {"teacher": teacher_head, "build_student": build_student}, students, {
                "augment_magnitude": 0.0, "flip_shift": None}
        models: dict[str, Any] = {"teacher": teacher, "image_size": state.data.image_size, "channels": state.data.channels}
        # The small CNN's student (None: a residual student of an earlier step) is the loop's default.
        if backbone_family(teacher) not in ("small_cnn", None):
            def build_student(k: int) -> Any:
                student = keras.models.clone_model(teacher)
                student.set_weights(teacher.get_weights())
                return student

            models["build_student"] = build_student
        return state.data.inputs, models, {}, {}


def vote_space(features: np.ndarray, centre: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The features a vote compares by cosine, and the mean subtracted from them: with `centre`,
    `features` minus their mean (the vote layer subtracts the same mean from every query), else
    `features` as they are and None."""
    if not centre:
        return features, None
    mean = np.asarray(features, np.float64).mean(axis=0)
    return np.asarray(features, np.float64) - mean, mean


def vote_seeds(labels: PartialLabels, features: np.ndarray, *, likely_positives: bool = True,
               seed: int = 0, log: bool = False) -> PartialLabels:
    """The cells a vote diffuses: a person's (`labeling.human_cells`), with the other cells of a
    label that has no known negative taken as negatives (`assume_negatives`, as the training steps
    do), except, with `likely_positives`, those that a cross-fitted positive-unlabeled estimate on
    `features` puts at 0.5 or more (`assumptions.likely_positive_cells`): those stay unknown, for
    the propagation to fill. `log`: one line saying how many cells of which labels that left."""
    from ssl_multilabel.labeling import human_cells
    from ssl_multilabel.teacher_student.assumptions import likely_positive_cells

    human = human_cells(labels)
    seeds = assume_negatives(human, log=False)
    if likely_positives:
        likely = likely_positive_cells(human, features, seed=seed)
        if log and likely.any():
            logger.info("NeighbourVote: %d unknown cells of %s (no known negative) are likely positives by a "
                        "cross-fitted positive-unlabeled estimate: the propagation fills them instead of taking "
                        "them as negatives.", int(likely.sum()),
                        ", ".join(repr(labels.label_names[j]) for j in np.flatnonzero(likely.any(axis=0))))
        seeds = seeds.restrict(~likely)
    return seeds


def add_neighbour_vote(model: Any, features: np.ndarray, labels: PartialLabels, *, k: int = DEFAULT_K,
                       alpha: float = VOTE_ALPHA, weight: float = VOTE_WEIGHT, likely_positives: bool = True,
                       centre: bool = False, seed: int = 0, seeds: PartialLabels | None = None) -> Any:
    """`model` blended with a kNN vote of the images of `features` (the `NeighbourVote` step).

    The cells a person gave in `labels` (`labeling.human_cells`; one row per row of `features`,
    the model's embeddings), with the other cells of a label that has no known negative taken as
    negatives (`assume_negatives`, as the training steps do) except its likely positives (with
    `likely_positives`; `vote_seeds`), are diffused by `KNNLabelPropagation` (cosine, `k`,
    `alpha`); `models.with_neighbour_vote` stores the embeddings with their known values and
    diffused probabilities. `seeds`: those cells when the caller has them already (as
    `vote_seeds(labels, features, likely_positives=..., seed=...)` makes them; the positive-unlabeled
    estimate is the costly part), else they are made here. `centre`: the vote compares embeddings
    minus the mean of `features` (`vote_space`; the layer stores that mean).
    """
    from ssl_multilabel.models import with_neighbour_vote
    from ssl_multilabel.propagation import KNNLabelPropagation

    human = seeds if seeds is not None else vote_seeds(labels, features, likely_positives=likely_positives,
                                                        seed=seed, log=True)
    _say_one_class(human, "NeighbourVote", "those labels vote their prior everywhere, which leaves their ranking "
                   "unchanged")
    Y = np.where(human.known, human.values, -1.0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No known cells for", category=UserWarning)
        space, mean = vote_space(features, centre)
        estimator = KNNLabelPropagation(n_neighbors=k, alpha=alpha, metric="cosine", random_state=seed).fit(space, Y)
    values = np.where(human.known, human.values, estimator.label_distributions_)
    return with_neighbour_vote(model, features, values, estimator.prior_, k=k, gamma=estimator.gamma,
                               prior_mass=estimator.prior_mass, weight=weight, mean=mean)


def _paired_label_means(pair: tuple[np.ndarray, np.ndarray], y: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                        n_labels: int, metric: Literal["AP", "AUC"], n_rows: int,
                        resampled: Any) -> tuple[float, float, float]:
    """The mean over labels of `metric` for two scores of the same known cells (flat: `y`, at
    `rows`, `cols`), and the standard error of their difference over `resampled` row weights
    (bootstrap counts, one per row of `n_rows`; consumed only when a label can be scored).
    Labels the first scores cannot score (no known positive or negative) are left out of both
    means; all NaN when none can be scored."""
    from ssl_multilabel.evaluation import average_precision_and_auc

    index = 0 if metric == "AP" else 1

    def means(row_weight: np.ndarray) -> tuple[float, float]:
        w = row_weight[rows]
        used = w > 0
        values = [average_precision_and_auc(s[used], y[used], w[used], cols[used], n_labels)[index] for s in pair]
        both = ~np.isnan(values[0])
        return (float(np.mean(values[0][both])), float(np.mean(values[1][both]))) if both.any() else (np.nan, np.nan)

    first, second = means(np.ones(n_rows))
    if np.isnan(first):
        return first, second, np.nan
    return first, second, float(np.nanstd([b - a for a, b in map(means, resampled)]))


def check_neighbour_vote(features: np.ndarray, labels: PartialLabels, *, k: int = DEFAULT_K,
                         alpha: float = VOTE_ALPHA, weight: float = VOTE_WEIGHT, likely_positives: bool = True,
                         centre: bool = False, seed: int = 0, folds: int = 5, resamples: int = 300,
                         max_rows: int = 5_000, seeds: PartialLabels | None = None) -> dict[str, Any]:
    """Would a vote over `features` (as `add_neighbour_vote` builds it) help a linear model on them?

    Cross-fitted on the rows with a person's cell (at most `max_rows`, a seeded sample), in
    `folds` folds: a weighted logistic regression per label on the features
    (`teacher_student.assumptions.logistic_scores`) and a vote (`KNNLabelPropagation`, cosine,
    which is what the vote layer computes) are fitted without the fold's rows and score them.
    The masked mAP of `(1 - weight) * probe + weight * vote` against the probe alone, on the
    cells the probe is fitted on (`vote_seeds` without the likely positives: the cells the
    training steps take, every other cell of a label without a known negative a negative), is the
    evidence; its standard error comes from `resamples` paired bootstrap resamples of the rows.
    The vote diffuses the seeds it is built with (with `likely_positives`, the likely positives
    stay unknown; `seeds`: those cells when the caller has them already, as for
    `add_neighbour_vote`; `centre`: the vote on centred features, as there). Scoring on those
    seeds instead would favour the probe: the cells a logistic
    probe ranks as likely positives would leave the scored negatives, and the hidden positives
    left among them are those a logistic probe misses. The probe stands in for the model, whose
    scores on its own training rows would flatter it. The vote is kept unless it lowers the
    cross-fitted mAP by more than twice that error, the bar a gain must clear.

    Returns a dict: `keep` (bool), `reason`, and when a label can be scored `mAP_probe`,
    `mAP_blend`, `difference` (blend minus probe), `difference_se`, `rows`.
    """
    from scipy.special import expit

    from ssl_multilabel.propagation import KNNLabelPropagation
    from ssl_multilabel.teacher_student.assumptions import logistic_scores

    cells = vote_seeds(labels, features, likely_positives=False)  # fitted and scored
    if seeds is None:  # diffused
        seeds = vote_seeds(labels, features, likely_positives=True, seed=seed) if likely_positives else cells
    rng = np.random.default_rng(seed)
    # The rows with a person's cell (every such cell is a seed).
    rows_with_cells = np.flatnonzero((labels.known & (labels.source == Source.HUMAN)).any(axis=1))
    rows_with_cells = np.sort(rng.permutation(rows_with_cells)[:max_rows])
    fold = np.full(len(features), -1)
    fold[rng.permutation(rows_with_cells)] = np.arange(len(rows_with_cells)) % folds
    probe = np.full(cells.known.shape, np.nan)
    vote = np.full(cells.known.shape, np.nan)
    Y = np.where(seeds.known, seeds.values, -1.0)
    space, _ = vote_space(features, centre)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No known cells for", category=UserWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="ssl_multilabel.propagation")
        warnings.filterwarnings("ignore", message=".*(lbfgs failed|max_iter)", category=Warning)
        for f in range(folds):
            held, rest = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
            if len(held) == 0:  # fewer rows than folds
                continue
            for j in range(cells.n_labels):
                train = rest[cells.known[rest, j]]
                y = cells.values[train, j] >= 0.5
                probe[held, j] = (expit(logistic_scores(features[train], y, np.ones(len(y)), features[held]))
                                  if 0 < y.sum() < len(y) else (y.mean() if len(y) else 0.5))
            estimator = KNNLabelPropagation(n_neighbors=k, alpha=alpha, metric="cosine", random_state=seed)
            vote[held] = estimator.fit(space[rest], Y[rest]).predict_proba(space[held])
    rows, cols = np.nonzero(cells.known & (fold >= 0)[:, None])
    y = (cells.values[rows, cols] >= 0.5).astype(np.float64)
    scores = (probe[rows, cols], (1.0 - weight) * probe[rows, cols] + weight * vote[rows, cols])

    resampled = (np.bincount(rng.choice(rows_with_cells, len(rows_with_cells)), minlength=len(features))
                 for _ in range(resamples))
    probe_map, blend_map, se = _paired_label_means(scores, y, rows, cols, cells.n_labels, "AP", len(features),
                                                   resampled)
    if np.isnan(probe_map):
        return {"keep": True, "reason": "no label has a known positive and a known negative to check it on"}
    difference = blend_map - probe_map
    keep = difference >= -2.0 * se
    return {
        "keep": bool(keep),
        "reason": "it does not lower the cross-fitted mAP" if keep else
                  "it lowers the cross-fitted mAP by more than twice the standard error",
        "mAP_probe": probe_map, "mAP_blend": blend_map, "difference": difference, "difference_se": se,
        "rows": len(rows_with_cells),
    }


def check_neighbour_vote_on_validation(features: np.ndarray, labels: PartialLabels, scores: np.ndarray,
                                       val_rows: np.ndarray, *, k: int = DEFAULT_K, alpha: float = VOTE_ALPHA,
                                       weight: float = VOTE_WEIGHT, likely_positives: bool = True,
                                       centre: bool = False, seed: int = 0, resamples: int = 300) -> dict[str, Any]:
    """Would a vote over `features` (as `add_neighbour_vote` builds it) help the model itself?

    `scores`: the model's probabilities of the rows `val_rows` of `labels`, the validation rows
    its training steps held out (`labels.validation_split`), so the model never trained on them.
    The vote is built as `add_neighbour_vote` builds it from the other rows alone (their
    `vote_seeds`; `centre` as there), and scores each validation row as it scores a new image.
    The evidence is the masked ROC-AUC (mean over labels) of `(1 - weight) * scores + weight * vote` against `scores`
    alone, on the validation rows' cells the training steps take (`vote_seeds` without the likely
    positives: every other cell of a label without a known negative a negative); its standard
    error comes from `resamples` paired bootstrap resamples of the validation rows. AUC, because
    where those negatives hide positives (single positive labels) the AUC of the known positives
    against the other cells is a fixed blend of the true AUC and 1/2 (the same for both scores),
    so a difference keeps its sign; average precision has no such property, and it varies more on
    a few hundred rows. The vote is kept unless it lowers that AUC by more than twice the error.

    `check_neighbour_vote` asks the same of a linear probe, cross-fitted on every labeled row: it
    has the rows to see neighbourhoods that ignore the labels, but a vote that lifts a weak probe
    can still lower a stronger model (docs/noisy_student.md); the `NeighbourVote` step runs both.

    Returns a dict: `keep` (bool), `reason`, and when a label can be scored `AUC_model`,
    `AUC_blend`, `difference` (blend minus model), `difference_se`, `rows`.
    """
    from ssl_multilabel.propagation import KNNLabelPropagation

    val_rows = np.asarray(val_rows, dtype=int)
    rest = np.setdiff1d(np.arange(len(features)), val_rows)
    cells = vote_seeds(labels, features, likely_positives=False).subset(val_rows)  # scored
    rows, cols = np.nonzero(cells.known)
    if len(rest) == 0 or len(rows) == 0:
        return {"keep": True, "reason": "no validation row with a known cell to check it on"}
    seeds = vote_seeds(labels.subset(rest), features[rest], likely_positives=likely_positives, seed=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No known cells for", category=UserWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="ssl_multilabel.propagation")
        space, _ = vote_space(features, centre)
        estimator = KNNLabelPropagation(n_neighbors=k, alpha=alpha, metric="cosine", random_state=seed)
        vote = estimator.fit(space[rest], np.where(seeds.known, seeds.values, -1.0)).predict_proba(space[val_rows])
    scores = np.asarray(scores, dtype=np.float64)
    y = (cells.values[rows, cols] >= 0.5).astype(np.float64)
    pair = (scores[rows, cols], (1.0 - weight) * scores[rows, cols] + weight * vote[rows, cols])

    rng = np.random.default_rng(seed)
    resampled = (np.bincount(rng.integers(0, len(val_rows), len(val_rows)), minlength=len(val_rows))
                 for _ in range(resamples))
    model_auc, blend_auc, se = _paired_label_means(pair, y, rows, cols, cells.n_labels, "AUC", len(val_rows),
                                                   resampled)
    if np.isnan(model_auc):
        return {"keep": True, "reason": "no label has a known positive and a known negative among the validation "
                                        "rows to check it on"}
    difference = blend_auc - model_auc
    keep = difference >= -2.0 * se
    return {
        "keep": bool(keep),
        "reason": "it does not lower the model's validation AUC" if keep else
                  "it lowers the model's validation AUC by more than twice the standard error",
        "AUC_model": model_auc, "AUC_blend": blend_auc, "difference": difference, "difference_se": se,
        "rows": len(val_rows),
    }


@dataclasses.dataclass(frozen=True, kw_only=True)
class NeighbourVote(_ImageStep):
    """Blend the model's scores with a kNN vote over the training images (`models.NeighbourVote`).

    Label propagation (`KNNLabelPropagation`, cosine) diffuses the cells a person gave in the
    training table over a kNN graph of the model's embeddings (`add_neighbour_vote`). A label
    without a known negative (single positive labels) takes its other cells as negatives, except
    the likely positives among them (`likely_positives`): the cells that a cross-fitted
    positive-unlabeled estimate on the embeddings puts at 0.5 or more are left unknown, for the
    propagation to fill (on the photo recipe's dev split under single positive labels, +0.28 dev
    mAP points over taking them all as negatives, docs/noisy_student.md). The step's model scores
    an image by `(1 - weight) * its own probability + weight * the vote of its k most similar
    training images` (their known value where known, the diffused probability elsewhere). The training
    images' embeddings are stored in the model (4 bytes per feature and label per image: about
    3 MB per 1,000 images with MobileNet-0.75's 768 features), so `ssl-multilabel predict` needs
    nothing else. The vote carries the unlabeled training images into every prediction: on the
    photo recipe's dev split it gained 1.7 to 3.6 mAP points over the noisy student alone
    (docs/noisy_student.md, "A kNN vote in the exported model").

    The vote can hurt: where the embeddings' neighbourhoods do not follow the labels (6 points on
    digit mosaics under ImageNet features), and where it lifts a weak model but not a strong one
    (1.2 points under single positive labels on Fashion-MNIST mosaics). So by default the step
    first checks the vote twice and leaves the model unchanged, with a warning, when either check
    shows the vote lowering its figure by more than twice the standard error:
    `check_neighbour_vote`, a linear probe on the embeddings with and without the vote,
    cross-fitted on every labeled image (mAP), and `check_neighbour_vote_on_validation`, the
    model itself with and without the vote on the validation rows its training steps held out
    (`validation_fraction`; AUC). The figures are in the step's metrics (the model's prefixed
    `validation_`).
    """

    k: int = param(DEFAULT_K, ge=1, doc="neighbours per image, of the graph and of the vote")
    alpha: float = param(VOTE_ALPHA, gt=0.0, lt=1.0, doc="diffusion: weight of the graph vs the seeds")
    weight: float = param(VOTE_WEIGHT, gt=0.0, le=1.0, doc="share of the vote in the blended score")
    likely_positives: bool = param(True, doc="a label without a known negative: leave its likely positives "
                                             "(assumptions.likely_positive_cells) to the propagation instead of "
                                             "taking them as negatives; False: every other cell is a negative")
    centre: bool = param(False, doc="compare images by the cosine of their embeddings minus the mean of the "
                                    "training images' (on B7's dev split: +0.66 points for a vote of the labeled "
                                    "photos alone, -0.45 for the photo recipe's vote of every photo)")
    check: bool = param(True, doc="blend only if neither check shows the vote hurting (check_neighbour_vote, "
                                  "check_neighbour_vote_on_validation); False: always blend")
    validation_fraction: float = param(
        0.1, ge=0.0, lt=1.0, doc="the training steps' validation rows: the model's check scores them (keep it "
                                 "equal to theirs)")

    def run(self, ctx: StepContext, state: RunState) -> StepResult:
        from ssl_multilabel.models import takes_a_vote

        model = state.load_model()
        if model is None:
            raise RecipeError(f"Step {self.name!r}: a model is needed; put a Supervised step before it.")
        if not takes_a_vote(model):  # before the embeddings and the propagation
            raise RecipeError(f"Step {self.name!r}: the model must output probabilities and have no "
                              "neighbour vote yet (one NeighbourVote step per recipe).")
        ctx.seed_everything()
        features = _embeddings(ctx, state, model)
        settings = dict(k=self.k, alpha=self.alpha, weight=self.weight, likely_positives=self.likely_positives,
                        centre=self.centre, seed=ctx.seed)
        metrics: dict[str, Any] = {}
        seeds = None
        if self.check:
            metrics, seeds = self._check(ctx, state, model, features, settings)
            if not metrics["keep"]:
                return StepResult(metrics=metrics | {"images_stored": 0})
        voted = add_neighbour_vote(model, features, state.labels, **settings, seeds=seeds)
        logger.info("%s: the model's scores are blended (weight %g) with the vote of the %d nearest of %d "
                    "training images.", self.name, self.weight, min(self.k, len(features)), len(features))
        return StepResult(model=voted, metrics=metrics | {"images_stored": len(features)})

    def _check(self, ctx: StepContext, state: RunState, model: Any, features: np.ndarray,
               settings: dict[str, Any]) -> tuple[dict[str, Any], PartialLabels | None]:
        """Both checks, logged: the model's on its validation rows (figures prefixed `validation_`),
        then, unless it refuses, the probe's, cross-fitted. Returns (metrics, with `keep` when both
        keep; the vote's seeds, made once for the probe's check and the vote, None when the model's
        check refused: the positive-unlabeled estimate is the costly part)."""
        from ssl_multilabel.models import head_model
        from ssl_multilabel.teacher_student.pseudo_labels import predict_scores

        _, val_rows = validation_split(state.labels, self.validation_fraction, ctx.split_seed)
        scores = (predict_scores(head_model(model), features[val_rows], batch_size=1024) if len(val_rows)
                  else np.zeros((0, state.labels.n_labels)))
        on_model = check_neighbour_vote_on_validation(features, state.labels, scores, val_rows, **settings)
        metrics = {f"validation_{key}": value for key, value in on_model.items()}
        figures, reasons = [], [f"the model's check: {on_model['reason']}"]
        keep, seeds = on_model["keep"], None
        if "rows" in on_model:
            figures.append(f"validation AUC of the model on its {on_model['rows']} validation images: "
                           f"{on_model['AUC_model']:.4f}, blended with the vote {on_model['AUC_blend']:.4f}, difference "
                           f"{on_model['difference']:+.4f} ± {on_model['difference_se']:.4f}")
        if on_model["keep"]:
            seeds = vote_seeds(state.labels, features, likely_positives=self.likely_positives, seed=ctx.seed, log=True)
            probe = check_neighbour_vote(features, state.labels, **settings, seeds=seeds)
            metrics |= probe
            keep = probe["keep"]
            reasons.append(f"the probe's check: {probe['reason']}")
            if "rows" in probe:
                figures.append(f"cross-fitted mAP on {probe['rows']} labeled images: linear probe "
                               f"{probe['mAP_probe']:.4f}, blended with the vote {probe['mAP_blend']:.4f}, difference "
                               f"{probe['difference']:+.4f} ± {probe['difference_se']:.4f}")
        if not keep:
            reasons = reasons[-1:]  # the check that refused
        said = "; ".join(reasons) + (f" ({'; '.join(figures)})" if figures else "")
        if keep:
            logger.info("%s: the vote is kept: %s.", self.name, said)
        else:
            logger.warning("%s: no vote: %s. The model is kept as it was; NeighbourVote(check=False) blends anyway.",
                           self.name, said)
        return metrics | {"keep": keep, "reason": "; ".join(reasons)}, seeds


def _val_map(round_result: Any) -> float:
    value = round_result.metrics.get("val", {}).get("summary", {}).get("mAP")
    return float(value) if value is not None and np.isfinite(value) else -np.inf


def _best_round(rounds: list[Any]) -> Any:
    """The round (teacher = round 0) with the best validation mAP; the later one on a tie.

    A student that does not beat its teacher on the validation rows is not kept: the step never
    hands on a model that its own validation data call worse than the one it started from.
    """
    return max(reversed(rounds), key=_val_map)


def _latest_scores(state: RunState) -> np.ndarray | None:
    from ssl_multilabel.recipes.data import load_embeddings

    for record in reversed(state.records):
        name = record.get("info", {}).get("scores")
        if name:
            path = state.run_dir / record["dir"] / str(name)
            redo = (f"it is damaged: delete the entries of step {record['name']!r} and the steps after it "
                    "from state.json and resume (they are rerun), or start a new run")
            if Path(str(name)).name != name:
                raise RecipeError(f"state.json names the scores file {name!r} of step {record['name']!r}; "
                                  f"expected a file name inside {record['dir']!r}; {redo}.")
            try:
                return load_embeddings(path, state.labels.n_samples, rows_of="the run's label table",
                                       what=f"Scores file of step {record['name']!r}")
            except (ValueError, FileNotFoundError) as err:
                raise RecipeError(f"{err} ({redo}.)") from None
    return None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Evaluate(Step):
    """Masked metrics (mAP, AUC, F1 ...) of the current model or fill.

    `split="test"`: the model's scores on the held-out test split. `split="hidden"`: the scores
    of the unknown training cells (the model's, else the last propagation's) against the true
    labels of the cells the data hid (needs data with a truth table).
    """

    split: Literal["test", "hidden"] = param("test", doc="what to score")
    threshold: float = param(0.5, ge=0.0, le=1.0, doc="score >= threshold is a predicted positive")
    n_examples: int = param(16, ge=0, le=64, doc="example images kept for the report grid")
    optional: bool = param(False, doc="data without this split (no test split / no truth table): skip the step "
                                      "with a log line instead of refusing the recipe")

    def _missing(self, data: Any) -> str | None:
        """Why the data cannot serve this split, or None."""
        if self.split == "test" and data.test_labels is None:
            return "the data have no test split"
        if self.split == "hidden" and data.truth is None:
            return "the data have no truth table"
        return None

    def check_data(self, data: Any) -> None:
        missing = self._missing(data)
        if missing is None or self.optional:
            return
        hint = ""
        if self.split == "test":
            other = f"set {self.name}.split=hidden" if data.truth is not None else f"set {self.name}.optional=true to skip it"
            hint = (" (an ImageFolder reads one from data.test_csv, or holds out about data.test_fraction of its "
                    "labeled rows, chosen by a hash of their id: with few labeled rows that can be none); give one, "
                    f"or {other}")
        raise RecipeError(f"Step {self.name!r} (Evaluate, split={self.split!r}): {missing}{hint}.")

    def run(self, ctx: StepContext, state: RunState) -> StepResult:
        from ssl_multilabel.evaluation import evaluate

        data = state.data
        self.check_data(data)
        missing = self._missing(data)  # only an optional step gets here without its split
        if missing:
            logger.info("%s: %s, so there is nothing to score (optional=true): skipped.", self.name, missing)
            return StepResult(info={"skipped": missing})
        model = state.load_model() if data.kind == "images" else None
        if self.split == "test":
            if model is None:
                raise RecipeError(f"Step {self.name!r}: split='test' needs a model; train one first.")
            inputs, truth = data.test_inputs, data.test_labels.to_array()
            scores = _scores(ctx, state, model, "test")
        else:
            hidden = data.truth.known & ~data.labels.known
            truth = np.where(hidden, data.truth.to_array(), -1.0).astype(np.float32)
            inputs = data.inputs
            if model is not None:
                scores = _scores(ctx, state, model, "train")
            else:
                scores = _latest_scores(state)
                if scores is None:
                    raise RecipeError(f"Step {self.name!r}: nothing to score; run Propagate or a training step first.")
        ctx.checkpoint("after_scores")
        summary, table = evaluate(truth, scores, label_names=state.labels.label_names, threshold=self.threshold)
        table.to_csv(ctx.path("per_label.csv"), index=False)
        np.savez_compressed(ctx.path("predictions.npz"), y_true=truth, y_score=np.asarray(scores, np.float32))
        if data.kind == "images" and self.n_examples:
            rows = np.arange(min(self.n_examples, len(inputs)))
            images = _example_images(take_rows(inputs, rows), data)
            np.savez_compressed(ctx.path("examples.npz"), images=images, y_true=truth[rows],
                                y_score=np.asarray(scores, np.float32)[rows])
        scored, n_labels = summary["n_labels_scored"], len(state.labels.label_names)
        if scored == 0:
            logger.warning("%s (%s): no label can be scored: each needs a known positive and a known negative among "
                           "the %s cells; mAP and AUC are reported as 0.", self.name, self.split, self.split)
        else:
            logger.info("%s (%s): mAP %.4f, AUC %.4f%s", self.name, self.split, summary["mAP"], summary["AUC"],
                        f" ({scored} of {n_labels} labels scored)" if scored < n_labels else "")
        return StepResult(metrics=summary, info={"split": self.split, "threshold": self.threshold,
                                                 "per_label": "per_label.csv",
                                                 "predictions": "predictions.npz"})


def _example_images(inputs: Any, data: Any) -> np.ndarray:
    """uint8 `(n, H, W, C)` thumbnails for the report, from arrays or files."""
    if isinstance(inputs, np.ndarray):
        arr = inputs if inputs.ndim == 4 else inputs[..., None]
        return np.clip(arr, 0, 255).astype(np.uint8)
    from ssl_multilabel.data.pipeline import make_dataset

    # Decoded as the model's input is (upright, 16-bit files at their high byte), in colour.
    ds = make_dataset(list(inputs), image_size=data.image_size or (64, 64), channels=3, batch_size=64)
    return np.clip(np.round(np.concatenate([np.asarray(x) for x in ds])), 0, 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Export(Step):
    """Write the final model (`.keras`, with a `<name>.labels.json` of label names) and the filled
    label table (`labels.csv`, named by the id column of the user's CSV, `data.id_column`)."""

    filename: str = param("model.keras", doc="model file name inside <run dir>/export/")

    def validate(self) -> None:
        if not self.filename.endswith(".keras") or "/" in self.filename:
            raise RecipeError(f"Export: filename must be a plain file name ending in .keras; got {self.filename!r}.")

    def run(self, ctx: StepContext, state: RunState) -> StepResult:
        from ssl_multilabel._files import atomic_path, atomic_write_json

        export_dir = ctx.run_dir / "export"
        export_dir.mkdir(exist_ok=True)
        state.labels.save(export_dir / "labels.csv", id_column=state.data.id_column)
        info: dict[str, Any] = {"labels": "export/labels.csv"}
        if state.data.test_labels is not None:
            logger.info("%s: export/labels.csv holds the %d training rows; the %d test rows are not in it (score "
                        "them with `ssl-multilabel predict`).", self.name, state.labels.n_samples,
                        state.data.test_labels.n_samples)
        model = state.load_model()
        if model is not None:
            with atomic_path(export_dir / self.filename) as tmp:
                model.save(tmp)
            atomic_write_json(export_dir / f"{self.filename}.labels.json", list(state.labels.label_names))
            info["model"] = f"export/{self.filename}"
        return StepResult(info=info)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Report(Step):
    """Write `<run dir>/report.html` (self-contained, plots as embedded PNG)."""

    title: str = param("", doc="report title (default: the recipe name)")

    def run(self, ctx: StepContext, state: RunState) -> StepResult:
        from ssl_multilabel.report import write_report

        path = write_report(ctx.run_dir, title=self.title or None)
        return StepResult(info={"report": path.name})
