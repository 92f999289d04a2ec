"""The noisy-student loop for partial multi-label data: teacher, pseudo-labels, noised student.

Round 0 trains a teacher on the known cells (or takes a given teacher). Each later round
(:func:`student_round`):

1. the un-noised teacher's scores of every image (`training=False`, no augmentation; computed
   when the teacher's round ended) and the round's thresholds (fixed, or fitted on the
   validation rows for `target_precision`);
2. the pseudo-labelled targets: the round's named sources (`teacher_student.sources`: by default
   the teacher's confident cells; also a kNN fill recomputed from the teacher, a fixed table,
   assumed negatives) fill the unknown cells, the earlier source first; human cells always win;
3. a fresh, equal-or-larger, noised student (RandAugment on its inputs, head dropout,
   stochastic depth) trains on batches that mix `B_l` labelled rows with
   `B_u = unlabel_ratio * B_l` pseudo-labelled rows (`data.mixed_dataset`);
4. its clean scores and masked metrics (plus what `on_round_end` adds); it becomes the next
   round's teacher.

Without validation data, `noisy_student` holds out a share of the labeled rows
(`validation_fraction`, the split of the recipe steps): they are the validation rows of every
round (early stopping, best epoch, `target_precision` thresholds) and are never trained on nor
pseudo-labelled.

Every round writes `round_<k>/model.keras`, `round_<k>/pseudo_labels.npz` (the table the
model was trained on; `PartialLabels.save`, binary: values, weights and sources bit-exact) and
`round_<k>/metrics.json` (written last: a round is complete when it exists), each through the
package's atomic writer. :func:`noisy_student` returns the same artefacts in memory.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ssl_multilabel._backbone_names import BACKBONE_NAMES
from ssl_multilabel._files import atomic_path, atomic_write_text
from ssl_multilabel.data.rows import take_rows
from ssl_multilabel.labels import PartialLabels, Source, given_cells, validation_split
from ssl_multilabel.teacher_student.config import NoisyStudentConfig, unknown_setting
from ssl_multilabel.teacher_student.pseudo_labels import PseudoLabels, predict_scores, thresholds_for_precision
from ssl_multilabel.teacher_student.scoring import evaluate_scores
from ssl_multilabel.teacher_student.sources import (
    PseudoLabelSource,
    RoundInputs,
    TeacherCells,
    check_sources,
    compose_targets,
)

logger = logging.getLogger(__name__)

__all__ = ["NoisyStudentResult", "RoundResult", "noisy_student", "student_round"]


@dataclass
class RoundResult:
    """The artefacts of one round.

    Attributes:
        index: 0 for the initial teacher, then 1, 2, ... for the students.
        model: the trained model of this round (the teacher of the next one).
        labels: the table it was trained on (base cells plus, from round 1, the sources' cells;
            the rows held out for validation have no known cell).
        pseudo: the teacher's pseudo-labelling pass of the round (None in round 0, or without
            a `TeacherCells` source).
        metrics: masked metrics (what `metrics.json` holds).
        directory: the round's folder, or None when nothing is written.
        scores: float32 `(n, L)`, the model's un-noised probabilities for every image of
            `images` (`model(x, training=False)` on clean images; held-out validation rows
            included): the next round's teacher scores.
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
    """All rounds of a run; `rounds[-1].model` is the final student.

    Attributes:
        rounds: round `k`'s artefacts at index `k`.
        validation_rows: int64, sorted: the rows of `images` / `labels` that `noisy_student`
            held out for validation (`validation_fraction`); empty when validation data were
            passed or nothing was held out.
    """

    rounds: list[RoundResult]
    validation_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def model(self) -> Any:
        """The last round's model."""
        return self.rounds[-1].model

    @property
    def labels(self) -> PartialLabels:
        """The last round's training table: its targets, assumed negatives included, without the
        validation rows' cells. For the completed table, use `filled(labels)`."""
        return self.rounds[-1].labels

    def filled(self, labels: PartialLabels, round_index: int = -1) -> PartialLabels:
        """`labels` (the table given to `noisy_student`, or one holding its rows) with the machine
        cells (teacher, propagated) of round `round_index`'s training table (default the last round;
        round 0, the given teacher, trained on no such table) in its unknown cells, or in place of
        its own machine cells. Every cell a person gave stays, the held-out validation rows' included; the
        negatives a rule assumed to train (`AssumeNegative`) stay unknown: they are targets, not findings.
        So do the machine cells of a label without a known positive in `labels`: a model taught such
        a label by assumed negatives alone restates the assumption."""
        n = len(self.rounds)
        if not 1 <= (round_index + n if round_index < 0 else round_index) < n:
            raise ValueError(f"`round_index` must name a student round, 1 to {n - 1} (or -1, the last). "
                             f"Received: round_index={round_index!r}")
        last = self.rounds[round_index].labels
        learnt = (labels.summary()["positives"] > 0).to_numpy()
        machine = np.isin(last.source, (Source.TEACHER, Source.PROPAGATED)) & learnt[None, :]
        return labels.merge(last.restrict(machine), overwrite=True)


# === What every round shares ===


@dataclass(eq=False)
class _Run:
    """The inputs, settings and services that every round of one `noisy_student` call shares."""

    images: Any
    labels: PartialLabels
    config: NoisyStudentConfig
    sources: list[PseudoLabelSource]
    build_student: Callable[[int], Any]
    val_images: Any
    val_labels: PartialLabels | None
    out: Path | None
    strategy: Any
    seed: int
    train_kwargs: dict[str, Any]
    pipe: dict[str, Any]
    on_round_end: Callable[[RoundResult], dict[str, Any]] | None
    held_out: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    augment: Any = None
    val_ds: Any = None

    def training_rows(self) -> np.ndarray | None:
        """The rows a model may train on (None: every row; else all but the held-out ones)."""
        if not self.held_out.size:
            return None
        return np.setdiff1d(np.arange(self.labels.n_samples), self.held_out)

    def without_held_out(self, table: PartialLabels,
                         pseudo: PseudoLabels | None) -> tuple[PartialLabels, PseudoLabels | None]:
        """`table` and `pseudo` with every cell of the held-out rows unknown (not trained on)."""
        if not self.held_out.size:
            return table, pseudo
        keep = np.ones(table.known.shape, dtype=bool)
        keep[self.held_out] = False
        table = table.restrict(keep)
        if pseudo is not None:
            repeats = pseudo.repeats.copy()
            repeats[self.held_out] = 1
            pseudo = dataclasses.replace(pseudo, labels=pseudo.labels.restrict(keep), repeats=repeats,
                                         positive=pseudo.positive & keep)
        return table, pseudo

    def scores(self, model: Any, images: Any) -> np.ndarray:
        """The model's clean, inference-mode probabilities (the un-noised teacher)."""
        from ssl_multilabel.models import outputs_logits

        return predict_scores(model, images, from_logits=outputs_logits(model), **self.pipe)

    def build(self, builder: Callable[[int], Any], k: int) -> Any:
        if self.strategy is None:
            return builder(k)
        with self.strategy.scope():
            return builder(k)

    def train(self, model: Any, train_ds: Any, table: PartialLabels, epochs: int, seed: int) -> tuple[Any, dict]:
        from ssl_multilabel.training import train_round

        config = self.config
        model, fit = train_round(
            model, train_ds, self.val_ds, loss=config.loss, epochs=epochs, learning_rate=config.learning_rate,
            patience=config.patience, ema_momentum=config.ema_momentum, strategy=self.strategy, seed=seed,
            labels=table, **self.train_kwargs,
        )
        return model, {key: [float(v) for v in values] for key, values in fit.history.items()}

    def finish(self, k: int, model: Any, table: PartialLabels, pseudo: PseudoLabels | None, scores: np.ndarray,
               history: dict[str, list[float]], started: float) -> RoundResult:
        """Metrics (the loop's, then the callback's), files, and the round's result."""
        result = RoundResult(k, model, table, pseudo, {}, None, scores, history)
        metrics: dict[str, Any] = {"round": k, "role": "teacher" if k == 0 else "student"}
        metrics["train_known"] = evaluate_scores(self.labels, scores)
        if self.val_labels is not None:
            metrics["val"] = evaluate_scores(self.val_labels, self.scores(model, self.val_images))
        if pseudo is not None:
            metrics["pseudo_labels"] = pseudo.summary()
        metrics["label_summary"] = {
            "known_cells": int(table.known.sum()),
            "by_source": {s.name.lower(): int(((table.source == s) & table.known).sum()) for s in Source if s},
        }
        if self.on_round_end is not None:
            metrics.update(self.on_round_end(result))
        metrics["seconds"] = round(time.perf_counter() - started, 3)
        result.metrics = _jsonable(metrics)
        result.directory = self.save(k, model, table, result.metrics)
        logger.info("round %d (%s) done: %s", k, metrics["role"], _headline(result.metrics))
        return result

    # === Files ===

    def folder(self, k: int) -> Path | None:
        return None if self.out is None else self.out / f"round_{k}"

    def save(self, k: int, model: Any, table: PartialLabels, metrics: dict[str, Any]) -> Path | None:
        folder = self.folder(k)
        if folder is None:
            return None
        with atomic_path(folder / "model.keras") as tmp:
            model.save(tmp)
        table.save(folder / "pseudo_labels.npz")
        atomic_write_text(folder / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False))
        return folder

    def remove_rounds(self) -> None:
        """Delete the `round_<k>` folders an earlier run left in `out`: a fresh run replaces them all, so
        that a later `resume=True` cannot pick up a round whose teacher was another run's."""
        stale = sorted(p for p in self.out.glob("round_*") if p.is_dir() and p.name[6:].isdigit())
        if stale:
            logger.info("out_dir %s: removing the rounds of an earlier run (%s); pass resume=True to reuse them.",
                        self.out, ", ".join(p.name for p in stale))
        for folder in stale:
            shutil.rmtree(folder)

    def reload(self, k: int) -> RoundResult | None:
        """Round `k` read back from `out_dir`, or None when it is not complete there."""
        from ssl_multilabel.models import load_model

        folder = self.folder(k)
        if folder is None or not (folder / "metrics.json").is_file():
            return None
        model = load_model(folder / "model.keras", compile=False)
        path = folder / "pseudo_labels.npz"
        if not path.is_file() and (folder / "pseudo_labels.csv").is_file():
            path = folder / "pseudo_labels.csv"  # a round written before the binary format
        table = PartialLabels.load(path, require_sidecar=True)
        if table.known.shape != self.labels.known.shape:
            raise ValueError(f"Cannot resume: {path} has shape {table.known.shape}; expected {self.labels.known.shape}.")
        metrics = json.loads((folder / "metrics.json").read_text())
        logger.info("round %d: reusing the completed round in %s", k, folder)
        return RoundResult(k, model, table, None, metrics, folder, self.scores(model, self.images), {}, reloaded=True)


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


def _headline(metrics: dict[str, Any]) -> str:
    parts = []
    for split in ("train_known", "val", "test", "train_hidden"):
        if split in metrics:
            summary = metrics[split]["summary"]
            # e.g. single positive labels: no label has a known negative, so no AP is defined.
            value = f"{summary['mAP']:.4f}" if summary["n_labels_scored"] else "n/a (no label has both classes known)"
            parts.append(f"{split} mAP {value}")
    return ", ".join(parts)


# === The rounds ===


def _seed_shuffles(seed: int) -> None:
    """Set the global seed before a round's training dataset is built: TensorFlow derives a seeded
    shuffle's order from it too, so without this a second call in one process (a notebook cell run
    again) shuffled differently from the first. Round k uses the seed round k - 1 trained with, the
    global seed its dataset was built under before (so recipe runs keep their batches)."""
    import keras

    keras.utils.set_random_seed(seed)


def teacher_round(run: _Run, teacher: Any, build_teacher: Callable[[int], Any] | None, epochs: int) -> RoundResult:
    """Round 0: train the teacher on the known cells (or take the given one), score, measure."""
    from ssl_multilabel.data.pipeline import make_dataset

    started = time.perf_counter()
    history: dict[str, list[float]] = {}
    if teacher is None:
        model = run.build(build_teacher, 0)
        rows = run.training_rows()  # the held-out validation rows are not even unlabeled inputs
        images = run.images if rows is None else take_rows(run.images, rows)
        table = run.labels if rows is None else run.labels.subset(rows)
        _seed_shuffles(run.seed)
        train_ds = make_dataset(images, table, batch_size=run.config.batch_size, shuffle=True, seed=run.seed,
                                with_weights=True, **run.pipe)
        model, history = run.train(model, train_ds, table, epochs, run.seed)
    else:
        model = teacher
    return run.finish(0, model, run.labels, None, run.scores(model, run.images), history, started)


def student_round(run: _Run, k: int, previous: RoundResult) -> RoundResult:
    """Round `k >= 1`: pseudo-label with `previous.model` -> targets -> student -> scores -> metrics."""
    from ssl_multilabel.data.pipeline import mixed_dataset

    config = run.config
    started = time.perf_counter()
    n_labels = run.labels.n_labels
    pos_t, neg_t = np.full(n_labels, config.positive_threshold), np.full(n_labels, config.negative_threshold)
    if config.target_precision is not None:
        pos_t, neg_t = thresholds_for_precision(run.val_labels, run.scores(previous.model, run.val_images),
                                                config.target_precision)
    trained = np.ones(run.labels.n_samples, dtype=bool)
    trained[run.held_out] = False
    inputs = RoundInputs(labels=run.labels, teacher=previous.model, scores=previous.scores, config=config,
                         positive_threshold=pos_t, negative_threshold=neg_t, round_index=k, trained_rows=trained)
    table, pseudo = compose_targets(inputs, run.sources)
    table, pseudo = run.without_held_out(table, pseudo)  # sources see every row; held-out ones are dropped
    # Human cells feed the labelled half; the machine cells (every source's) the other.
    _seed_shuffles(run.seed + k - 1)  # the seed round k - 1 trained with (the caller's seed for round 1)
    train_ds = mixed_dataset(
        run.images, run.labels, table.restrict(~run.labels.known), repeats=None if pseudo is None else pseudo.repeats,
        batch_size=config.batch_size, unlabel_ratio=config.unlabel_ratio, balance=config.balance,
        steps_per_epoch=config.steps_per_epoch, augment=run.augment, confidence_weights=config.confidence_weights,
        seed=run.seed + k, **run.pipe,
    )
    model = run.build(run.build_student, k)
    model, history = run.train(model, train_ds, table, config.epochs, run.seed + k)
    return run.finish(k, model, table, pseudo, run.scores(model, run.images), history, started)


# === The driver ===


def noisy_student(
    images: np.ndarray | Sequence[str],
    labels: PartialLabels,
    config: NoisyStudentConfig | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    teacher: Any = None,
    build_teacher: Callable[[int], Any] | None = None,
    build_student: Callable[[int], Any] | None = None,
    val_images: np.ndarray | Sequence[str] | None = None,
    val_labels: PartialLabels | None = None,
    sources: Sequence[PseudoLabelSource] | None = None,
    on_round_end: Callable[[RoundResult], dict[str, Any]] | None = None,
    teacher_epochs: int | None = None,
    teacher_backbone: str = "small_cnn",
    student_backbone: str = "small_cnn",
    teacher_dropout: float = 0.2,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    strategy: Any = None,
    seed: int = 0,
    train_kwargs: dict[str, Any] | None = None,
    resume: bool = False,
    validation_fraction: float | None = 0.1,
    **settings: Any,
) -> NoisyStudentResult:
    """Run noisy-student rounds on a partial label table and keep every round's artefacts.

    Round 0 trains the teacher with `build_teacher(0)` on the known cells of `labels`
    (masked loss, no input noise), unless `teacher` (a trained model or the path of a
    `.keras` file) is given. Rounds 1..`rounds` (:func:`student_round`) each fill unknown
    cells from `sources` with the previous round's model (un-noised) and train a fresh noised
    student `build_student(k)` on mixed batches (`data.mixed_dataset`); the student becomes the
    next teacher.

    The settings (rounds, epochs, thresholds, noise, ...) are those of `NoisyStudentConfig`, the
    same names and defaults as the recipe step `NoisyStudent` (docs/noisy_student.md has the
    table): pass a `config`, or its fields as keyword arguments (`rounds=2, width=1.5`), or both
    (keywords win).

    Every round trains until its validation mAP stops improving (`patience`) and keeps its best
    epoch. The validation rows are `val_images` / `val_labels` when given; otherwise
    `validation_fraction` of the rows of `labels` with a human cell, drawn with `seed` by the
    split the recipe steps use (`labels.validation_split`). Held-out rows are scored on
    their human and implied cells; they are not in the teacher's training data, their cells are
    unknown in every round's table (no source fills them, no student trains on them), and
    `result.validation_rows` lists them. One log line says how many rows were held out. (A
    given `teacher` may have trained on them: its own validation figures are then optimistic.)

    Args:
        images: `(n, H, W[, C])` array in [0, 255] (or image paths), one per row of `labels`.
        labels: the partial table (human cells; propagated cells allowed: a round can start
            from propagated labels).
        config: the settings; None: `NoisyStudentConfig()`.
        out_dir: folder for `round_<k>/{model.keras, pseudo_labels.npz, metrics.json}`; None
            keeps artefacts in memory only. A run without `resume` first deletes the `round_<k>`
            folders an earlier run left there.
        teacher: a trained teacher (skips round 0's training; round 0 still records it).
        build_teacher: `round -> new keras.Model` for round 0; default the package's
            `build_classifier(teacher_backbone, dropout=teacher_dropout)` (random init).
        build_student: `round -> new keras.Model` for rounds >= 1. Default: a new head over the
            teacher's frozen backbone (`models.with_new_head`, `dropout`, `feature_noise`) when
            `teacher` has one; else for `student_backbone="small_cnn"` the residual small CNN
            with stochastic depth (`width`, `dropout`, `survival_probability`); else
            `build_classifier(student_backbone)` with `width` and stochastic depth where the
            family has them.
        val_images, val_labels: held-out data: best-epoch selection and early stopping in every
            round, the thresholds when `target_precision` is set, and metrics. None (both):
            rows of `labels` are held out instead (`validation_fraction`).
        sources: the pseudo-label sources of each student round, the earlier one winning
            (`teacher_student.sources`); default `[TeacherCells()]`. E.g.
            `[TeacherCells(), KnnFill(images), AssumeNegative()]`.
        on_round_end: `callback(round_result) -> dict`, merged into each round's metrics
            (e.g. `teacher_student.scoring.hidden_and_test(labels, true_labels=..., test_images=...,
            test_labels=...)` for benchmarks).
        teacher_epochs: epochs of round 0 (default `epochs`).
        teacher_backbone, student_backbone: backbones of the default models (`models.BACKBONES`).
        teacher_dropout: head dropout of the default teacher.
        image_size, channels: passed to `make_dataset`.
        strategy: a `tf.distribute.Strategy` for training (models are built in its scope).
        seed: base seed; round `k` uses `seed + k`.
        train_kwargs: more arguments of `ssl_multilabel.training.train_round` (e.g.
            `pos_weight`, `callbacks`, `verbose`).
        resume: reuse the rounds already complete in `out_dir` (a round is complete when its
            `metrics.json`, written last, exists) and continue from the first missing one.
            Reloaded rounds have `pseudo=None` and `history={}`; their scores are recomputed.
            The caller is responsible for resuming with the same arguments.
        validation_fraction: without `val_images`, the share of the rows with a human cell held
            out as validation rows (a number in [0, 1); the count is rounded). 0 or None: no
            rows are held out and, without validation data, every round trains all `epochs`
            (no early stopping, the last epoch is kept). When the fraction of few labeled rows
            rounds to 0 rows, a warning says so and the rounds train without validation.
            Ignored when `val_images` is given.
        **settings: fields of `NoisyStudentConfig`, overriding `config`'s.

    Returns:
        A `NoisyStudentResult` whose `rounds[k]` holds round `k`'s model, training table,
        pseudo-labels, metrics and folder, and whose `validation_rows` are the held-out rows.

    Raises:
        ValueError: invalid arguments (before any training), e.g. `validation_fraction` outside
            [0, 1), or a split that leaves no labeled row to train on.

    Example:
        >>> result = noisy_student(images, labels, out_dir="runs/ns", rounds=2, epochs=3)  # doctest: +SKIP
        >>> result.rounds[-1].metrics["val"]["summary"]["mAP"]  # doctest: +SKIP
    """
    from ssl_multilabel.teacher_student.noise import student_augment, weak_augment
    from ssl_multilabel.training import default_verbosity

    # --- arguments: everything that can be checked is checked before the teacher trains ---
    for name in settings:
        if name not in NoisyStudentConfig.setting_names():
            raise TypeError(unknown_setting(name))
    if config is not None and not isinstance(config, NoisyStudentConfig):
        raise TypeError(f"Argument `config` must be a NoisyStudentConfig or None. Received: {type(config).__name__}")
    # A subclass (the recipe step) counts with its NoisyStudentConfig fields only.
    config = NoisyStudentConfig(**((config or NoisyStudentConfig()).settings() | settings))
    if not isinstance(labels, PartialLabels):
        raise TypeError(f"Argument `labels` must be a PartialLabels. Received: {type(labels).__name__}")
    if len(images) != labels.n_samples:
        raise ValueError(f"`images` has {len(images)} entries but `labels` has {labels.n_samples} rows; they must match one to one.")
    if not labels.known.any():
        raise ValueError("`labels` has no known cell: a teacher needs some labels to start from.")
    if teacher_epochs is None:
        teacher_epochs = config.epochs
    elif isinstance(teacher_epochs, bool) or not isinstance(teacher_epochs, int) or teacher_epochs < 1:
        raise ValueError(
            f"Invalid value for argument `teacher_epochs`. Expected None or an int >= 1. Received: teacher_epochs={teacher_epochs!r}"
        )
    if (val_images is None) != (val_labels is None):
        raise ValueError("Pass both `val_images` and `val_labels`, or neither.")
    if val_labels is not None and len(val_images) != val_labels.n_samples:
        raise ValueError(f"`val_images` has {len(val_images)} entries but `val_labels` has {val_labels.n_samples} rows.")
    if val_labels is not None and val_labels.label_names != labels.label_names:
        raise ValueError(
            f"`val_labels` has labels {list(val_labels.label_names)}; expected those of `labels`: {list(labels.label_names)}."
        )
    if validation_fraction is not None and (
        isinstance(validation_fraction, bool) or not isinstance(validation_fraction, numbers.Real)
        or not 0 <= validation_fraction < 1
    ):
        raise ValueError(
            "Invalid value for argument `validation_fraction`. Expected None or a number in [0, 1). "
            f"Received: validation_fraction={validation_fraction!r}"
        )
    held_out = np.zeros(0, dtype=np.int64)
    if val_labels is None and validation_fraction:
        labels, val_images, val_labels, held_out = _hold_out(images, labels, float(validation_fraction), seed)
    if config.target_precision is not None and val_labels is None:
        raise ValueError(
            "`target_precision` needs held-out data: pass `val_images` and `val_labels`, or a "
            "`validation_fraction` that holds out at least one labeled row."
        )
    if on_round_end is not None and not callable(on_round_end):
        raise TypeError(f"Argument `on_round_end` must be callable. Received: {type(on_round_end).__name__}")
    sources = check_sources([TeacherCells()] if sources is None else sources)
    train_kwargs = dict(train_kwargs or {})
    for reserved in ("loss", "epochs", "learning_rate", "patience", "strategy", "seed", "labels"):
        if reserved in train_kwargs:
            raise ValueError(f"`train_kwargs` may not set {reserved!r}: it is a setting of noisy_student.")
    train_kwargs.setdefault("verbose", default_verbosity())
    if resume and out_dir is None:
        raise ValueError("`resume=True` needs `out_dir`: completed rounds are read from it.")
    for name, backbone in (("teacher_backbone", teacher_backbone), ("student_backbone", student_backbone)):
        if backbone not in BACKBONE_NAMES:
            raise ValueError(
                f"Invalid value for argument `{name}`. Expected one of {list(BACKBONE_NAMES)}. Received: {name}={backbone!r}"
            )
    if isinstance(teacher, (str, os.PathLike)):  # loaded here: the default student looks at its backbone
        from ssl_multilabel.models import load_model

        teacher = load_model(teacher, compile=False)
    if teacher is not None and int(teacher.output_shape[-1]) != labels.n_labels:
        raise ValueError(
            f"`teacher` has {int(teacher.output_shape[-1])} outputs but `labels` has {labels.n_labels} labels "
            f"{list(labels.label_names)[:10]}: pass a teacher trained on these labels (or grow it with "
            "`ssl_multilabel.labeling.extend_model`)."
        )
    if (teacher is None and build_teacher is None) or build_student is None:
        default_teacher, default_student = _default_builders(
            labels.n_labels, _input_shape(images, image_size, channels), config, teacher=teacher,
            teacher_backbone=teacher_backbone, student_backbone=student_backbone, teacher_dropout=teacher_dropout,
            seed=seed,
        )
        build_teacher = build_teacher or default_teacher
        build_student = build_student or default_student

    # --- the rounds ---
    from ssl_multilabel.data.pipeline import make_dataset

    pipe = dict(image_size=image_size, channels=channels)
    run = _Run(images=images, labels=labels, config=config, sources=sources, build_student=build_student,
               val_images=val_images, val_labels=val_labels, out=None if out_dir is None else Path(out_dir),
               strategy=strategy, seed=seed, train_kwargs=train_kwargs, pipe=pipe, on_round_end=on_round_end,
               held_out=held_out)
    if val_labels is not None:
        run.val_ds = make_dataset(val_images, val_labels, batch_size=256, shuffle=False, **pipe)
    if config.augment_magnitude > 0 and config.augment_ops > 0:  # at strength 0 RandAugment still computes every op
        run.augment = student_augment(config.augment_magnitude, config.augment_ops, seed=seed)
    if config.flip_shift is not None:
        weak = weak_augment(config.flip_shift, seed=seed)
        strong = run.augment
        run.augment = weak if strong is None else (lambda x: strong(weak(x)))

    if not resume and run.out is not None:
        run.remove_rounds()
    rounds = [(run.reload(0) if resume else None) or teacher_round(run, teacher, build_teacher, teacher_epochs)]
    for k in range(1, config.rounds + 1):
        # Only a contiguous prefix of rounds is reused: a retrained teacher changes every later round.
        reloaded = run.reload(k) if resume and rounds[-1].reloaded else None
        rounds.append(reloaded or student_round(run, k, rounds[-1]))
    return NoisyStudentResult(rounds, validation_rows=held_out)


def _hold_out(images: Any, labels: PartialLabels, fraction: float,
              seed: int) -> tuple[PartialLabels, Any, PartialLabels | None, np.ndarray]:
    """`(training table, val_images, val_labels, held-out rows)` for `validation_fraction`.

    The rows are those of the recipe steps' split (`labels.validation_split`: `fraction`
    of the rows with a human cell, seeded). The rounds keep every row of `images` (sources and
    callbacks index them); the training table loses the held-out rows' cells, and the validation
    table keeps their human and implied cells. No row held out: `val_*` are None and a warning
    says why.
    """
    _, held = validation_split(labels, fraction, seed)
    held = held.astype(np.int64)
    if not held.size:
        logger.warning(
            "validation_fraction=%g holds out no row (too few rows with a human cell): every round trains "
            "all epochs without early stopping. Pass val_images / val_labels or more labeled rows.", fraction)
        return labels, None, None, held
    keep = np.ones(labels.known.shape, dtype=bool)
    keep[held] = False
    training = labels.restrict(keep)
    if not training.known.any():
        raise ValueError(
            f"validation_fraction={fraction:g} holds out all {held.size} labeled rows, leaving no known cell to "
            "train on; lower `validation_fraction` or pass `val_images` and `val_labels`."
        )
    logger.info("Held out %d labeled rows as validation rows (validation_fraction=%g, seed %d): early stopping "
                "and thresholds use them; they are neither trained on nor pseudo-labelled.", held.size, fraction, seed)
    return training, take_rows(images, held), given_cells(labels.subset(held)), held


def _input_shape(images: Any, image_size: Any, channels: int | None) -> tuple[int, int, int]:
    """The default models' input shape: the images' (or `image_size` / `channels`)."""
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
    return tuple(int(d) for d in shape)


def _default_builders(
    num_labels: int,
    input_shape: tuple[int, int, int],
    config: NoisyStudentConfig,
    *,
    teacher: Any,
    teacher_backbone: str,
    student_backbone: str,
    teacher_dropout: float,
    seed: int,
) -> tuple[Callable[[int], Any], Callable[[int], Any]]:
    from ssl_multilabel.models import build_classifier, frozen_backbone, stochastic_depth_kwargs, width_kwargs
    from ssl_multilabel.teacher_student.noise import build_student_classifier

    def build_teacher(round_index: int) -> Any:
        return build_classifier(teacher_backbone, num_labels, input_shape, dropout=teacher_dropout,
                                seed=seed + round_index)

    def build_student(round_index: int) -> Any:
        if teacher is not None and frozen_backbone(teacher):
            from ssl_multilabel.models import with_new_head

            return with_new_head(teacher, num_labels, dropout=config.dropout, feature_noise=config.feature_noise,
                                 seed=seed + round_index)
        if student_backbone == "small_cnn":
            return build_student_classifier(
                num_labels, input_shape, width=config.width, dropout=config.dropout,
                survival_probability=config.survival_probability, seed=seed + round_index,
            )
        kwargs = width_kwargs(student_backbone, config.width) | stochastic_depth_kwargs(
            student_backbone, config.survival_probability)
        return build_classifier(student_backbone, num_labels, input_shape, dropout=config.dropout,
                                backbone_kwargs=kwargs, seed=seed + round_index)

    return build_teacher, build_student
