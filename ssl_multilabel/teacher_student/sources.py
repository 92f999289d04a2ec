"""Named sources of a round's pseudo-labelled cells, composed in an explicit order of precedence.

A student round starts from the human table (human and implied cells) and asks each source, in
the order given, for cells; a source only fills cells that are still unknown, so the **earlier
source wins** and **human cells always win** (nothing overwrites a known cell). The sources:

- :class:`TeacherCells`: the un-noised teacher's confident cells (`select_pseudo_labels` with the
  round's thresholds, soft targets, top-K balancing); recomputed every round from that round's
  teacher.
- :class:`KnnFill`: kNN label propagation on the round's teacher's penultimate features
  (FAISS graph, `propagation.fill_unknown` with thresholds fitted on held-out known cells);
  recomputed every round.
- :class:`FixedTable`: the cells of a given table (e.g. an earlier step's propagation), the same
  in every round.
- :class:`AssumeNegative`: every cell still unknown (of all labels, or of the listed ones) as a
  negative, with a weight (1, or less for weak negatives).

`compose_targets(inputs, sources)` applies them. Example, the teacher first, then a kNN fill,
then an earlier step's table, then negatives for what is left:

    sources = [TeacherCells(), KnnFill(images, k=10), FixedTable(table), AssumeNegative()]

This module needs only numpy, except `KnnFill.propose` (TensorFlow, FAISS).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from ssl_multilabel.labels import PartialLabels, Source
from ssl_multilabel.teacher_student.config import NoisyStudentConfig
from ssl_multilabel.teacher_student.pseudo_labels import PseudoLabels, select_pseudo_labels

__all__ = [
    "AssumeNegative", "FixedTable", "KnnFill", "PseudoLabelSource", "RoundInputs", "TeacherCells", "compose_targets",
]


@dataclasses.dataclass(frozen=True, eq=False)
class RoundInputs:
    """What a source may use to propose cells in one student round.

    Attributes:
        labels: the round's human table (human and implied cells; the cells that always win).
        teacher: the round's teacher model (the previous round's model).
        scores: float `(n, L)`, the teacher's un-noised probabilities for every training image.
        config: the run's settings.
        positive_threshold, negative_threshold: the round's per-label thresholds `(L,)` (fixed,
            or fitted for `config.target_precision` on the validation rows).
        round_index: 1, 2, ...
        trained_rows: bool `(n,)`, the rows the student trains on (None: every row); the others
            (held out for validation) lose whatever a source proposes for them.
    """

    labels: PartialLabels
    teacher: Any
    scores: np.ndarray
    config: NoisyStudentConfig
    positive_threshold: np.ndarray
    negative_threshold: np.ndarray
    round_index: int = 1
    trained_rows: np.ndarray | None = None


@runtime_checkable
class PseudoLabelSource(Protocol):
    """A named source of cells: `propose(inputs, current)` returns a table of the same shape.

    `current` is the table so far (human cells and the cells of earlier sources); only the cells
    the proposal knows and `current` does not are taken. `TeacherCells` returns a
    `PseudoLabels` (its `labels` are the proposal) so the round keeps its thresholds and repeats.
    """

    def propose(self, inputs: RoundInputs, current: PartialLabels) -> PartialLabels | PseudoLabels: ...


# === The sources ===


@dataclasses.dataclass(frozen=True)
class TeacherCells:
    """The teacher's confident cells: `score >= positive threshold` or `<= negative threshold`.

    Thresholds, soft targets, temperature and top-K balancing come from the run's settings
    (`NoisyStudentConfig`); cells carry source TEACHER and weight `max(p, 1 - p)`. Only the
    trained rows are pseudo-labelled, so a held-out row takes no top-K slot.
    """

    def propose(self, inputs: RoundInputs, current: PartialLabels) -> PseudoLabels:
        config = inputs.config
        return select_pseudo_labels(
            current, inputs.scores, positive_threshold=inputs.positive_threshold,
            negative_threshold=inputs.negative_threshold, soft=config.soft, temperature=config.temperature,
            top_k=config.top_k, max_duplication=config.max_duplication, rows=inputs.trained_rows,
        )


@dataclasses.dataclass(frozen=True, eq=False)
class KnnFill:
    """kNN label propagation on the round's teacher's embeddings (recomputed every round).

    The teacher's penultimate features of `images` (inference mode, clean images; for a teacher
    that is a head on feature vectors, `images` are those vectors and are used as they are) give a
    FAISS kNN graph; the human cells of the round are the seeds and `propagation.fill_unknown` fills the
    unknown cells where held-out known cells reach `target_precision`. Cells carry source
    PROPAGATED and, as weight, the probability that their value is right (`fill_unknown`).

    Args:
        images: the training images (the same as `noisy_student`'s).
        k: neighbours per point.
        target_precision: the precision held-out known cells must reach for a fill.
        soft: fill with probabilities instead of 0 / 1.
        batch_size: embedding batch size.
        image_size, channels: passed to `make_dataset`; None: the teacher's input size and channels.
        seed: seed of the held-out split.
        fill_kwargs: more arguments of `fill_unknown` (e.g. `{"alpha": 0.9}`).
    """

    images: Any
    k: int = 10
    target_precision: float | None = 0.9
    soft: bool = False
    batch_size: int = 256
    image_size: int | tuple[int, int] | None = None
    channels: int | None = None
    seed: int = 0
    fill_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def propose(self, inputs: RoundInputs, current: PartialLabels) -> PartialLabels:
        from ssl_multilabel.features import embed
        from ssl_multilabel.propagation import fill_unknown, knn_graph

        teacher = inputs.teacher
        # Image size and channels default to the teacher's input: it knows what it was trained on.
        shape = tuple(teacher.input_shape[1:])
        size, depth = self.image_size, self.channels
        if len(shape) == 3:  # an image model
            size, depth = size or shape[:2], depth or shape[2]
            features = embed(teacher, self.images, image_size=size, channels=depth, batch_size=self.batch_size)
        else:  # a head on feature vectors (`models.head_model`): the vectors are its embedding
            features = np.asarray(self.images, np.float32)
        graph = knn_graph(features, k=self.k)
        return fill_unknown(inputs.labels, graph, target_precision=self.target_precision, soft=self.soft,
                            seed=self.seed, **dict(self.fill_kwargs))


@dataclasses.dataclass(frozen=True, eq=False)
class FixedTable:
    """The known cells of `table` (any sources: propagated, implied, ...), the same every round."""

    table: PartialLabels

    def __post_init__(self) -> None:
        if not isinstance(self.table, PartialLabels):
            raise TypeError(f"FixedTable needs a PartialLabels. Received: {type(self.table).__name__}")

    def propose(self, inputs: RoundInputs, current: PartialLabels) -> PartialLabels:
        return self.table


@dataclasses.dataclass(frozen=True, eq=False)
class AssumeNegative:
    """Every cell still unknown, of all labels or of the listed ones, as a negative (source IMPLIED).

    Args:
        labels: label names to fill, or None for every label.
        weight: the weight of an assumed negative: one number, or a mapping from label name to
            weight (labels not in it get 1). Weak negatives (Cole et al., CVPR 2021) use
            `1 / (L - 1)`.
    """

    labels: Sequence[str] | None = None
    weight: float | Mapping[str, float] = 1.0

    def columns(self, label_names: Sequence[str]) -> np.ndarray:
        """bool `(L,)`: the labels this assumption fills."""
        if self.labels is None:
            return np.ones(len(label_names), bool)
        unknown = [name for name in self.labels if name not in label_names]
        if unknown:
            raise ValueError(f"AssumeNegative: label(s) {unknown} are not in the table's labels {list(label_names)}.")
        return np.isin(np.asarray(label_names, dtype=object), np.asarray(list(self.labels), dtype=object))

    def weights(self, label_names: Sequence[str]) -> np.ndarray:
        """float `(L,)`: the weight of each label's assumed negatives."""
        if isinstance(self.weight, Mapping):
            return np.array([float(self.weight.get(name, 1.0)) for name in label_names])
        return np.full(len(label_names), float(self.weight))

    def propose(self, inputs: RoundInputs, current: PartialLabels) -> PartialLabels:
        return assumed_negatives(current, self.columns(current.label_names), self.weights(current.label_names))


def assumed_negatives(labels: PartialLabels, columns: np.ndarray, weights: np.ndarray | float = 1.0) -> PartialLabels:
    """`labels` with the unknown cells of `columns` filled as negatives of weight `weights` (per label)."""
    values = np.where(np.asarray(columns, bool)[None, :] & ~labels.known, 0.0, -1.0)
    weight = np.broadcast_to(np.asarray(weights, np.float64), (labels.n_labels,))[None, :]
    return labels.fill(values, np.broadcast_to(weight, values.shape), Source.IMPLIED)


# === Composition ===


def compose_targets(
    inputs: RoundInputs, sources: Sequence[PseudoLabelSource]
) -> tuple[PartialLabels, PseudoLabels | None]:
    """The round's training table: `inputs.labels` filled by `sources`, the earlier source first.

    Each source sees the table so far and its proposal only fills cells that are still unknown,
    so a cell comes from the first source that proposes it, and the human cells of
    `inputs.labels` are never changed.

    Returns:
        `(table, pseudo)`: the composed table, and the `TeacherCells` pass (None without one).
    """
    current = inputs.labels
    pseudo: PseudoLabels | None = None
    for source in sources:
        proposal = source.propose(inputs, current)
        if isinstance(proposal, PseudoLabels):
            pseudo, proposal = proposal, proposal.labels
        name = type(source).__name__
        if not isinstance(proposal, PartialLabels):
            raise TypeError(f"Source {name}.propose must return a PartialLabels. Received: {type(proposal).__name__}")
        if proposal.known.shape != current.known.shape or proposal.label_names != current.label_names:
            raise ValueError(
                f"Source {name} proposed a table of shape {proposal.known.shape} with labels "
                f"{list(proposal.label_names)}; expected {current.known.shape} with {list(current.label_names)}."
            )
        current = current.merge(proposal.restrict(proposal.known & ~current.known))
    return current, pseudo


def check_sources(sources: Any) -> list[PseudoLabelSource]:
    """`sources` as a list, each with a `propose` method (checked before any training)."""
    if isinstance(sources, (str, bytes)) or not isinstance(sources, Sequence):
        raise TypeError(f"Argument `sources` must be a list of pseudo-label sources. Received: {type(sources).__name__}")
    for i, source in enumerate(sources):
        if not isinstance(source, PseudoLabelSource):
            raise TypeError(
                f"`sources[{i}]` ({type(source).__name__}) has no `propose(inputs, current)` method; use "
                "TeacherCells, KnnFill, FixedTable, AssumeNegative or a class of your own with that method."
            )
    return list(sources)
