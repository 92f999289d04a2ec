"""Named pseudo-label sources: precedence, human cells always win, the step's composition."""

import numpy as np
import pytest

from ssl_multilabel.labels import PartialLabels, Source
from ssl_multilabel.recipes.steps import NoisyStudent, assume_negatives
from ssl_multilabel.teacher_student.config import NoisyStudentConfig
from ssl_multilabel.teacher_student.pseudo_labels import select_pseudo_labels
from ssl_multilabel.teacher_student.sources import (
    AssumeNegative,
    FixedTable,
    RoundInputs,
    TeacherCells,
    compose_targets,
)


def _inputs(labels, scores, config=None):
    config = config or NoisyStudentConfig()
    n_labels = labels.n_labels
    return RoundInputs(labels=labels, teacher=None, scores=scores, config=config,
                       positive_threshold=np.full(n_labels, config.positive_threshold),
                       negative_threshold=np.full(n_labels, config.negative_threshold))


def _random_table(rng, n, n_labels, known, source="human"):
    """Cells known with probability `known`, values 0 / 1; machine cells get random weights."""
    values = np.where(rng.random((n, n_labels)) < known, (rng.random((n, n_labels)) < 0.4).astype(float), -1.0)
    if source == "human":
        return PartialLabels.from_array(values)
    empty = PartialLabels.from_array(np.full((n, n_labels), -1.0))
    return empty.fill(values, rng.uniform(0.1, 1.0, (n, n_labels)), source)


def test_human_cells_are_never_changed_and_the_earlier_source_wins():
    # Property test over random tables and random orders of sources: every human cell keeps its
    # value, weight and source, and every other cell comes from the first source that proposes it.
    for seed in range(200):
        rng = np.random.default_rng(seed)
        n, n_labels = int(rng.integers(1, 12)), int(rng.integers(1, 5))
        human = _random_table(rng, n, n_labels, known=rng.uniform(0, 1))
        scores = rng.random((n, n_labels))
        tables = [_random_table(rng, n, n_labels, known=rng.uniform(0, 1), source="propagated") for _ in range(2)]
        choices = [TeacherCells(), FixedTable(tables[0]), FixedTable(tables[1]),
                   AssumeNegative(weight=float(rng.uniform(0.05, 1.0)))]
        order = [choices[i] for i in rng.permutation(len(choices))[: int(rng.integers(1, 5))]]
        out, _ = compose_targets(_inputs(human, scores), order)

        np.testing.assert_array_equal(out.values[human.known], human.values[human.known])
        np.testing.assert_array_equal(out.weight[human.known], human.weight[human.known])
        assert (out.source[human.known] == Source.HUMAN).all()
        # Reference: walk the sources cell by cell, each proposing on the cells still unknown.
        expected_values = np.where(human.known, human.values, -1.0)
        known = human.known.copy()
        for source in order:
            if isinstance(source, TeacherCells):
                current = PartialLabels.from_array(np.where(known, 0.0, -1.0))
                proposal = select_pseudo_labels(current, scores, positive_threshold=0.9, negative_threshold=0.1).labels
                proposed, values = proposal.known & ~current.known, scores
            elif isinstance(source, FixedTable):
                proposed, values = source.table.known, source.table.values
            else:
                proposed, values = np.ones_like(known), np.zeros(known.shape)
            take = proposed & ~known
            expected_values[take] = values[take]
            known |= take
        np.testing.assert_array_equal(out.known, known)
        np.testing.assert_allclose(out.values[known], expected_values[known], rtol=0, atol=1e-6)


def test_assume_negative_fills_only_the_listed_labels_with_their_weights():
    table = PartialLabels.from_array([[1, -1, -1], [-1, 0, -1]], label_names=["a", "b", "c"])
    out, pseudo = compose_targets(_inputs(table, np.full((2, 3), 0.5)),
                                  [AssumeNegative(labels=["a", "c"], weight={"c": 0.25})])
    assert pseudo is None
    np.testing.assert_array_equal(out.to_array(), [[1, -1, 0], [0, 0, 0]])
    np.testing.assert_allclose(out.weight, [[1, 0, 0.25], [1, 1, 0.25]])
    assert out.source[0, 2] == Source.IMPLIED and out.source[1, 1] == Source.HUMAN
    with pytest.raises(ValueError, match=r"label\(s\) \['z'\] are not in"):
        compose_targets(_inputs(table, np.full((2, 3), 0.5)), [AssumeNegative(labels=["z"])])


def test_a_source_of_the_wrong_shape_is_an_error_naming_it():
    table = PartialLabels.from_array([[1, -1]])
    other = PartialLabels.from_array([[1, -1, 0]])
    with pytest.raises(ValueError, match="Source FixedTable proposed a table of shape"):
        compose_targets(_inputs(table, np.full((1, 2), 0.5)), [FixedTable(other)])


@pytest.mark.parametrize("seed", range(5))
def test_the_steps_sources_give_the_table_of_the_former_propagate_hook(seed):
    # Random-cells data with an earlier propagation fill on some cells, and one label whose known
    # cells hold no negative. Reference: the step's former rule, written out: the teacher's
    # confident cells (select_pseudo_labels on the human table), then `assume_negatives(train)`
    # (earlier fills, then assumed negatives) on the cells the teacher left unknown.
    rng = np.random.default_rng(seed)
    n, n_labels = 60, 4
    truth = (rng.random((n, n_labels)) < 0.3).astype(float)
    truth[:, 3] = 1.0  # label 3: every known cell positive
    human_cells = np.where(rng.random((n, n_labels)) < 0.1, truth, -1.0)
    train = PartialLabels.from_array(human_cells, label_names=list("abcd"))
    fill = np.where((rng.random((n, n_labels)) < 0.2) & ~train.known, truth, -1.0)
    fill[:, 3] = -1.0
    train = train.fill(fill, rng.uniform(0.5, 1.0, (n, n_labels)), Source.PROPAGATED)
    human = train.restrict(train.source == Source.HUMAN)
    scores = rng.random((n, n_labels))
    config = NoisyStudentConfig(positive_threshold=0.8, negative_threshold=0.2)

    out, pseudo = compose_targets(_inputs(human, scores, config), NoisyStudent.sources(train, human))

    former = select_pseudo_labels(human, scores, positive_threshold=0.8, negative_threshold=0.2)
    reference = former.labels.merge(assume_negatives(train, log=False))
    for name in ("known", "values", "weight", "source"):
        np.testing.assert_array_equal(getattr(out, name), getattr(reference, name), err_msg=name)
    np.testing.assert_array_equal(pseudo.repeats, former.repeats)
    assert (out.source == Source.IMPLIED).any()  # the assumed negatives of label d are there
