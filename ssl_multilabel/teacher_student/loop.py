"""The noisy-student loop for partial multi-label data: teacher, pseudo-labels, noised student.

Round 0 trains a teacher on the known cells (or takes a given teacher). Each later round:

1. the un-noised teacher scores every image (`training=False`, no augmentation) and the
   confident unknown cells become soft (or hard) pseudo-labels
   (:func:`~ssl_multilabel.teacher_student.pseudo_labels.select_pseudo_labels`);
2. optionally `propagate(teacher, labels)` (e.g. FAISS kNN label propagation on the teacher's
   embeddings) fills unknown cells the teacher was not confident about; teacher and
   propagated cells together are the pseudo-labelled targets, human cells the labelled ones;
3. a fresh, equal-or-larger, noised student (RandAugment on its inputs, head dropout,
   stochastic depth) trains on batches that mix `B_l` labelled rows with
   `B_u = unlabel_ratio * B_l` pseudo-labelled rows, with the paper's loss
   `(L_l * B_l + L_u * B_u) / B_l = L_l + unlabel_ratio * L_u`;
4. the student becomes the next round's teacher.

Every round writes `round_<k>/model.keras`, `round_<k>/pseudo_labels.npz` (the table the
model was trained on; `PartialLabels.save`, binary: values, weights and sources bit-exact) and
`round_<k>/metrics.json` (masked metrics), each atomically. :func:`noisy_student` returns the
same artefacts in memory, so benchmarks can call it directly.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ssl_multilabel._files import atomic_path, atomic_write_text
from ssl_multilabel.labels import PartialLabels, Source
from ssl_multilabel.teacher_student.pseudo_labels import (
    PseudoLabels,
    predict_scores,
    select_pseudo_labels,
    thresholds_for_precision,
)

logger = logging.getLogger(__name__)

__all__ = ["NoisyStudentResult", "RoundResult", "noisy_student", "propagate_from_embeddings"]


@dataclass
class RoundResult:
    """The artefacts of one round.

    Attributes:
        index: 0 for the initial teacher, then 1, 2, ... for the students.
        model: the trained model of this round (the teacher of the next one).
        labels: the table it was trained on (base cells plus, from round 1, teacher cells).
        pseudo: the pseudo-labelling pass that produced `labels` (None in round 0).
        metrics: masked metrics (what `metrics.json` holds).
        directory: the round's folder, or None when nothing is written.
        scores: float32 `(n, L)`, the model's un-noised probabilities for every training image
            (`model(x, training=False)` on clean images): the next round's teacher scores.
        history: the Keras history of the round's training (`{}` for a given teacher).
        reloaded: True when the round was read back from `out_dir` (`resume=True`).
    """

    index: int
    model: Any
    labels: PartialLabels
    pseudo: PseudoLabels | None
    metrics: dict[str, Any]
    directory: Path | None
    scores: np.ndarray
    history: dict[str, list[float]] = field(default_factory=dict)
    reloaded: bool = False


@dataclass
class NoisyStudentResult:
    """All rounds of a run; `rounds[-1].model` is the final student."""

    rounds: list[RoundResult]

    @property
    def model(self) -> Any:
        """The last round's model."""
        return self.rounds[-1].model

    @property
    def labels(self) -> PartialLabels:
        """The last round's training table."""
        return self.rounds[-1].labels


# === Files ===


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return None
        return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    return value


# === Metrics ===


def _evaluate(labels: PartialLabels | np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    from ssl_multilabel.metrics import evaluate

    with warnings.catch_warnings():
        # Labels without both classes among the known cells are listed in `labels_left_out`
        # of the saved metrics; the warning would repeat it for every round and split.
        warnings.simplefilter("ignore", UserWarning)
        summary, table = evaluate(labels, scores)
    return {"summary": summary, "per_label": table.to_dict(orient="list")}


# === Propagation at the start of a round ===


def propagate_from_embeddings(
    images: np.ndarray | Sequence[str],
    *,
    k: int = 10,
    target_precision: float | None = 0.9,
    soft: bool = False,
    batch_size: int = 256,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    seed: int = 0,
    **fill_kwargs: Any,
) -> Callable[[Any, PartialLabels], PartialLabels]:
    """A `propagate` callable for :func:`noisy_student`: kNN label propagation on the teacher's embeddings.

    At the start of a round it embeds `images` with the teacher's penultimate layer
    (`models.build_embedding_model`, inference mode, clean images), builds a FAISS kNN graph
    (`propagation.knn_graph`) and fills the confident unknown cells with
    `propagation.fill_unknown` (thresholds fitted on held-out known cells); the teacher then
    pseudo-labels what is still unknown.

    Args:
        images: the training images (the same as `noisy_student`'s).
        k: neighbours per point.
        target_precision: the precision held-out known cells must reach for a fill.
        soft: fill with probabilities instead of 0 / 1.
        batch_size: embedding batch size.
        image_size, channels: passed to `make_dataset`; None: the teacher's input size and channels.
        seed: seed of the held-out split.
        **fill_kwargs: more arguments of `fill_unknown` (e.g. `alpha`, `holdout`).

    Returns:
        `propagate(teacher, labels) -> PartialLabels`.

    Example:
        >>> result = noisy_student(images, labels, propagate=propagate_from_embeddings(images))  # doctest: +SKIP
    """

    def propagate(teacher: Any, labels: PartialLabels) -> PartialLabels:
        from ssl_multilabel.data.pipeline import make_dataset
        from ssl_multilabel.features import embed
        from ssl_multilabel.propagation import fill_unknown, knn_graph

        # Image size and channels default to the teacher's input: it knows what it was trained on.
        shape = tuple(teacher.input_shape[1:])
        size, depth = image_size, channels
        if len(shape) == 3:  # an image model (a head on feature vectors has no size or channels)
            size, depth = size or shape[:2], depth or shape[2]
        features = embed(teacher, images, image_size=size, channels=depth, batch_size=batch_size)
        graph = knn_graph(features, k=k)
        return fill_unknown(labels, graph, target_precision=target_precision, soft=soft, seed=seed, **fill_kwargs)

    return propagate


# === The loop ===


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"Invalid value for argument `{name}`. Expected an int >= {low}. Received: {name}={value!r}")
    return int(value)


def _default_builders(
    num_labels: int,
    input_shape: tuple[int, int, int],
    *,
    teacher_backbone: str,
    student_backbone: str,
    student_width: float,
    student_dropout: float,
    survival_probability: float,
    teacher_dropout: float,
    seed: int,
) -> tuple[Callable[[int], Any], Callable[[int], Any]]:
    from ssl_multilabel.models import build_classifier, stochastic_depth_kwargs, width_kwargs
    from ssl_multilabel.teacher_student.noise import build_student_classifier

    def teacher(round_index: int) -> Any:
        return build_classifier(teacher_backbone, num_labels, input_shape, dropout=teacher_dropout,
                                seed=seed + round_index)

    def student(round_index: int) -> Any:
        if student_backbone == "small_cnn":
            return build_student_classifier(
                num_labels, input_shape, width=student_width, dropout=student_dropout,
                survival_probability=survival_probability, seed=seed + round_index,
            )
        kwargs = width_kwargs(student_backbone, student_width) | stochastic_depth_kwargs(student_backbone,
                                                                                          survival_probability)
        return build_classifier(student_backbone, num_labels, input_shape, dropout=student_dropout,
                                backbone_kwargs=kwargs, seed=seed + round_index)

    return teacher, student


def noisy_student(
    images: np.ndarray | Sequence[str],
    labels: PartialLabels,
    *,
    out_dir: str | os.PathLike | None = None,
    rounds: int = 3,
    teacher: Any = None,
    build_teacher: Callable[[int], Any] | None = None,
    build_student: Callable[[int], Any] | None = None,
    val_images: np.ndarray | Sequence[str] | None = None,
    val_labels: PartialLabels | None = None,
    test_images: np.ndarray | Sequence[str] | None = None,
    test_labels: PartialLabels | None = None,
    true_labels: PartialLabels | None = None,
    propagate: Callable[[Any, PartialLabels], PartialLabels] | None = None,
    loss: Any = "bce",
    epochs: int = 5,
    teacher_epochs: int | None = None,
    batch_size: int = 32,
    unlabel_ratio: float = 1.0,
    balance: str = "halves",
    steps_per_epoch: int | None = None,
    positive_threshold: float | Sequence[float] = 0.9,
    negative_threshold: float | Sequence[float] = 0.1,
    target_precision: float | None = None,
    soft: bool = True,
    temperature: float = 1.0,
    top_k: int | None = None,
    max_duplication: int = 4,
    confidence_weights: bool = False,
    randaugment_magnitude: float = 0.0,
    randaugment_ops: int = 2,
    teacher_backbone: str = "small_cnn",
    student_backbone: str = "small_cnn",
    student_width: float = 1.0,
    student_dropout: float = 0.3,
    survival_probability: float = 0.9,
    teacher_dropout: float = 0.2,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    strategy: Any = None,
    seed: int = 0,
    train_kwargs: dict[str, Any] | None = None,
    resume: bool = False,
) -> NoisyStudentResult:
    """Run noisy-student rounds on a partial label table and keep every round's artefacts.

    Round 0 trains the teacher with `build_teacher(0)` on the known cells of `labels`
    (masked loss, no input noise), unless `teacher` (a trained model or the path of a
    `.keras` file) is given. Rounds 1..`rounds` each pseudo-label the unknown cells with the
    previous round's model (un-noised) and train a fresh noised student `build_student(k)` on
    mixed batches (see :func:`mixed_dataset`); the student becomes the next teacher.

    Args:
        images: `(n, H, W[, C])` array in [0, 255] (or image paths), one per row of `labels`.
        labels: the partial table (human cells; propagated cells allowed: a round can start
            from propagated labels).
        out_dir: folder for `round_<k>/{model.keras, pseudo_labels.npz, metrics.json}`; None
            keeps artefacts in memory only.
        rounds: number of student rounds (the paper's 3 iterations), >= 1.
        teacher: a trained teacher (skips round 0's training; round 0 still records it).
        build_teacher: `round -> new keras.Model` for round 0; default the package's small
            CNN (`build_classifier("small_cnn", dropout=teacher_dropout)`).
        build_student: `round -> new keras.Model` for rounds >= 1; default
            `build_student_classifier` (residual small CNN with stochastic depth, head
            dropout `student_dropout`, width `student_width` >= 1: equal or larger).
        val_images, val_labels: held-out data: best-epoch selection in every round, the
            thresholds when `target_precision` is set, and metrics.
        test_images, test_labels: metrics only.
        true_labels: the fully known training table, when known (benchmarks): the metrics
            then also score every round's model and pseudo-labels on the cells `labels` hid.
        propagate: `(teacher_model, labels) -> table` run in every student round, e.g.
            `propagate_from_embeddings(images)` (kNN label propagation on the teacher's
            embeddings). Its cells fill what the teacher's confident cells left unknown and
            join the pseudo-labelled half of the batches (on B5 letting propagated cells
            override the teacher's cost test mAP: they are less precise). Its result must keep
            `labels`' known cells. To start from propagated labels, pass them as `labels`.
        loss: the masked loss (name, config or instance) for every round.
        epochs: epochs of each student round.
        teacher_epochs: epochs of round 0 (default `epochs`).
        batch_size: `B_l`, labelled rows per batch.
        unlabel_ratio: `B_u / B_l`.
        balance: `"halves"` (the paper's `L_l + unlabel_ratio * L_u`) or `"cells"` (every known
            cell of a batch weighs the same); see `mixed_dataset`.
        steps_per_epoch: batches per student epoch (`mixed_dataset`); None: every labelled and
            pseudo-labelled row once per epoch.
        positive_threshold, negative_threshold: fixed per-label thresholds (used when
            `target_precision` is None or no validation data is given).
        target_precision: choose the thresholds on the teacher's scores of `val_labels`' known
            cells for this precision (`thresholds_for_precision`).
        soft: soft pseudo-labels (temperature `temperature`) or hard ones.
        temperature: soft-target temperature (1: the teacher's probabilities).
        top_k: per-label positive balancing (most confident `top_k`, duplication of
            under-filled labels up to `max_duplication` times), None to disable.
        max_duplication: bound on the repeat factor of a row.
        confidence_weights: weight pseudo-labelled (and propagated) cells by their confidence.
        randaugment_magnitude: RandAugment strength in [0, 1] for the student's inputs; 0
            (the default) turns it off: at 8 epochs per round it cost 0.04-0.07 test mAP on
            B5 (docs/noisy_student.md). Try 0.2-0.5 for long student rounds, as in the paper.
        randaugment_ops: RandAugment operations per image (the paper's N = 2).
        teacher_backbone: backbone of the default teacher (`models.BACKBONES`, random init).
        student_backbone: backbone of the default student: `"small_cnn"` gives the residual
            small CNN with stochastic depth; an EfficientNet gets stochastic depth through its
            `drop_connect_rate`; choose a family member at least as large as the teacher's.
        student_width: width multiplier (>= 1 for an equal-or-larger student) of the small
            CNN, or MobileNet v1/v2's `alpha`.
        student_dropout: head dropout of the default student (the paper's 0.2-0.5).
        survival_probability: stochastic-depth survival of the student's last block.
        teacher_dropout: head dropout of the default teacher.
        image_size, channels: passed to `make_dataset`.
        strategy: a `tf.distribute.Strategy` for training (models are built in its scope).
        seed: base seed; round `k` uses `seed + k`.
        train_kwargs: extra arguments of `ssl_multilabel.training.train_round` (e.g.
            `learning_rate`, `patience`, `pos_weight`, `verbose`).
        resume: reuse the rounds already complete in `out_dir` (a round is complete when its
            `metrics.json`, written last, exists) and continue from the first missing one.
            Reloaded rounds have `pseudo=None` and `history={}`; their scores are recomputed.
            The caller is responsible for resuming with the same arguments.

    Returns:
        A `NoisyStudentResult` whose `rounds[k]` holds round `k`'s model, training table,
        pseudo-labels, metrics and folder.

    Example:
        >>> result = noisy_student(images, labels, out_dir="runs/ns", rounds=2, epochs=3)  # doctest: +SKIP
        >>> result.rounds[-1].metrics["val"]["summary"]["mAP"]  # doctest: +SKIP
    """
    from ssl_multilabel.data.pipeline import _check_balance, make_dataset, mixed_dataset
    from ssl_multilabel.models import load_model, outputs_logits
    from ssl_multilabel.teacher_student.noise import student_augment  # also registers StochasticDepth
    from ssl_multilabel.training import default_verbosity, train_round

    # --- arguments ---
    if not isinstance(labels, PartialLabels):
        raise TypeError(f"Argument `labels` must be a PartialLabels. Received: {type(labels).__name__}")
    n = len(images)
    if n != labels.n_samples:
        raise ValueError(f"`images` has {n} entries but `labels` has {labels.n_samples} rows; they must match one to one.")
    if not labels.known.any():
        raise ValueError("`labels` has no known cell: a teacher needs some labels to start from.")
    rounds = _check_int("rounds", rounds, 1)
    epochs = _check_int("epochs", epochs, 1)
    teacher_epochs = epochs if teacher_epochs is None else _check_int("teacher_epochs", teacher_epochs, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    _check_balance(balance)  # before the teacher trains, not at round 1
    for name, images_, table in (("val", val_images, val_labels), ("test", test_images, test_labels)):
        if (images_ is None) != (table is None):
            raise ValueError(f"Pass both `{name}_images` and `{name}_labels`, or neither.")
        if table is not None and len(images_) != table.n_samples:
            raise ValueError(f"`{name}_images` has {len(images_)} entries but `{name}_labels` has {table.n_samples} rows.")
        if table is not None and table.label_names != labels.label_names:
            raise ValueError(
                f"`{name}_labels` has labels {list(table.label_names)}; expected those of `labels`: {list(labels.label_names)}."
            )
    if true_labels is not None and true_labels.known.shape != labels.known.shape:
        raise ValueError(f"`true_labels` has shape {true_labels.known.shape}; expected {labels.known.shape}.")
    if target_precision is not None and val_labels is None:
        raise ValueError("`target_precision` needs held-out data: pass `val_images` and `val_labels`.")
    if (teacher is None and build_teacher is None) or build_student is None:
        if isinstance(images, np.ndarray):
            shape = images.shape[1:] if images.ndim == 4 else (*images.shape[1:], 1)
        elif image_size is None or channels is None:
            raise ValueError(
                "The default models take their input shape from `image_size` and `channels` when `images` "
                f"are file paths; pass both. Received: image_size={image_size!r}, channels={channels!r}"
            )
        else:
            shape = (0, 0, channels)
        if image_size is not None:
            size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
            shape = (*size, shape[-1])
        if channels is not None:
            shape = (*shape[:2], channels)
        default_teacher, default_student = _default_builders(
            labels.n_labels, tuple(int(d) for d in shape), teacher_backbone=teacher_backbone,
            student_backbone=student_backbone, student_width=student_width, student_dropout=student_dropout,
            survival_probability=survival_probability, teacher_dropout=teacher_dropout, seed=seed,
        )
        build_teacher = build_teacher or default_teacher
        build_student = build_student or default_student
    out = None if out_dir is None else Path(out_dir)
    train_kwargs = dict(train_kwargs or {})
    for reserved in ("loss", "epochs", "strategy", "seed", "labels"):
        if reserved in train_kwargs:
            raise ValueError(f"`train_kwargs` may not set {reserved!r}: it is an argument of noisy_student.")
    train_kwargs.setdefault("verbose", default_verbosity())

    if resume and out is None:
        raise ValueError("`resume=True` needs `out_dir`: completed rounds are read from it.")
    pipe = dict(image_size=image_size, channels=channels)

    def scores_of(model: Any, images_: Any) -> np.ndarray:
        # Clean images, inference mode: the un-noised teacher.
        return predict_scores(model, images_, from_logits=outputs_logits(model), **pipe)

    def reload(k: int) -> RoundResult | None:
        folder = None if out is None else out / f"round_{k}"
        if not resume or folder is None or not (folder / "metrics.json").is_file():
            return None
        model = load_model(folder / "model.keras", compile=False)
        path = folder / "pseudo_labels.npz"
        if not path.is_file() and (folder / "pseudo_labels.csv").is_file():
            path = folder / "pseudo_labels.csv"  # a round written before the binary format
        table = PartialLabels.load(path, require_sidecar=True)
        if table.known.shape != labels.known.shape:
            raise ValueError(f"Cannot resume: {path} has shape {table.known.shape}; expected {labels.known.shape}.")
        metrics = json.loads((folder / "metrics.json").read_text())
        logger.info("round %d: reusing the completed round in %s", k, folder)
        return RoundResult(k, model, table, None, metrics, folder, scores_of(model, images), {}, reloaded=True)
    val_ds = None if val_labels is None else make_dataset(val_images, val_labels, batch_size=256, shuffle=False, **pipe)

    def build(builder: Callable[[int], Any], k: int) -> Any:
        if strategy is None:
            return builder(k)
        with strategy.scope():
            return builder(k)

    def measure(model: Any, k: int, train_table: PartialLabels, pseudo: PseudoLabels | None, scores: np.ndarray) -> dict[str, Any]:
        metrics: dict[str, Any] = {"round": k, "role": "teacher" if k == 0 else "student"}
        metrics["train_known"] = _evaluate(labels, scores)
        if val_labels is not None:
            metrics["val"] = _evaluate(val_labels, scores_of(model, val_images))
        if test_labels is not None:
            metrics["test"] = _evaluate(test_labels, scores_of(model, test_images))
        if true_labels is not None:
            hidden = true_labels.known & ~labels.known
            truth = np.where(hidden, true_labels.values, -1.0)
            metrics["train_hidden"] = _evaluate(truth, scores)
            if pseudo is not None:
                cells = pseudo.teacher_cells & hidden
                filled = np.where(cells, truth, -1.0)
                agree = pseudo.positive[cells] == (truth[cells] >= 0.5)
                metrics["pseudo_label_quality"] = {
                    "cells": int(cells.sum()),
                    "accuracy": float(agree.mean()) if agree.size else None,
                    "teacher_scores": _evaluate(filled, pseudo.scores)["summary"],
                }
        if pseudo is not None:
            metrics["pseudo_labels"] = pseudo.summary()
        metrics["label_summary"] = {
            "known_cells": int(train_table.known.sum()),
            "by_source": {s.name.lower(): int(((train_table.source == s) & train_table.known).sum()) for s in Source if s},
        }
        return _jsonable(metrics)

    def save(k: int, model: Any, table: PartialLabels, metrics: dict[str, Any]) -> Path | None:
        if out is None:
            return None
        folder = out / f"round_{k}"
        with atomic_path(folder / "model.keras") as tmp:
            model.save(tmp)
        table.save(folder / "pseudo_labels.npz")
        atomic_write_text(folder / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False))
        return folder

    # --- round 0: the teacher ---
    results: list[RoundResult] = []
    reloaded = reload(0)
    if reloaded is not None:
        results.append(reloaded)
    else:
        started = time.perf_counter()
        history: dict[str, list[float]] = {}
        if teacher is None:
            model = build(build_teacher, 0)
            train_ds = make_dataset(images, labels, batch_size=batch_size, shuffle=True, seed=seed, with_weights=True,
                                    **pipe)
            model, fit = train_round(model, train_ds, val_ds, loss=loss, epochs=teacher_epochs, strategy=strategy,
                                     seed=seed, labels=labels, **train_kwargs)
            history = {key: [float(v) for v in values] for key, values in fit.history.items()}
        else:
            model = load_model(teacher, compile=False) if isinstance(teacher, (str, os.PathLike)) else teacher
        scores = scores_of(model, images)
        metrics = measure(model, 0, labels, None, scores)
        metrics["seconds"] = round(time.perf_counter() - started, 3)
        results.append(RoundResult(0, model, labels, None, metrics, save(0, model, labels, metrics), scores, history))
        logger.info("round 0 (teacher) done: %s", _headline(metrics))

    # --- rounds 1..R: noised students ---
    augment = student_augment(randaugment_magnitude, randaugment_ops, seed=seed)
    if randaugment_magnitude == 0 or randaugment_ops == 0:
        augment = None  # RandAugment at strength 0 still computes every operation: skip it
    for k in range(1, rounds + 1):
        # Only a contiguous prefix of rounds is reused: a retrained teacher changes every later round.
        reloaded = reload(k) if results[-1].directory is not None and results[-1].reloaded else None
        if reloaded is not None:
            results.append(reloaded)
            continue
        started = time.perf_counter()
        teacher_model = results[-1].model
        # The un-noised teacher's scores: inference mode on clean images (`predict_scores`),
        # computed when the teacher's round ended.
        scores = results[-1].scores
        pos_t, neg_t = positive_threshold, negative_threshold
        if target_precision is not None:
            pos_t, neg_t = thresholds_for_precision(val_labels, scores_of(teacher_model, val_images), target_precision)
        pseudo = select_pseudo_labels(
            labels, scores, positive_threshold=pos_t, negative_threshold=neg_t, soft=soft, temperature=temperature,
            top_k=top_k, max_duplication=max_duplication,
        )
        table = pseudo.labels
        if propagate is not None:
            table = _add_propagated(table, labels, propagate(teacher_model, labels))
        # Human cells feed the labelled half; the machine cells (teacher, propagated) the other.
        machine_table = table.restrict(~labels.known)
        train_ds = mixed_dataset(
            images, labels, machine_table, repeats=pseudo.repeats, batch_size=batch_size,
            unlabel_ratio=unlabel_ratio, balance=balance, steps_per_epoch=steps_per_epoch, augment=augment, confidence_weights=confidence_weights, seed=seed + k, **pipe,
        )
        model = build(build_student, k)
        model, fit = train_round(model, train_ds, val_ds, loss=loss, epochs=epochs, strategy=strategy, seed=seed + k,
                                 labels=table, **train_kwargs)
        history = {key: [float(v) for v in values] for key, values in fit.history.items()}
        student_scores = scores_of(model, images)
        metrics = measure(model, k, table, pseudo, student_scores)
        metrics["seconds"] = round(time.perf_counter() - started, 3)
        results.append(RoundResult(k, model, table, pseudo, metrics, save(k, model, table, metrics), student_scores, history))
        logger.info("round %d (student) done: %s", k, _headline(metrics))
    return NoisyStudentResult(results)


def _add_propagated(table: PartialLabels, labels: PartialLabels, propagated: Any) -> PartialLabels:
    """`table` (human + teacher cells) plus the propagated cells the teacher left unknown."""
    if not isinstance(propagated, PartialLabels) or propagated.known.shape != labels.known.shape:
        raise ValueError("`propagate` must return a PartialLabels with the shape of `labels`.")
    changed = labels.known & ((~propagated.known) | (propagated.values != labels.values))
    if changed.any():
        row, col = np.argwhere(changed)[0]
        raise ValueError(f"`propagate` changed the known cell (row {row}, column {col}) of `labels`; it may only fill unknown cells.")
    return table.merge(propagated)


def _headline(metrics: dict[str, Any]) -> str:
    parts = []
    for split in ("train_known", "val", "test", "train_hidden"):
        if split in metrics:
            parts.append(f"{split} mAP {metrics[split]['summary']['mAP']:.4f}")
    return ", ".join(parts)
