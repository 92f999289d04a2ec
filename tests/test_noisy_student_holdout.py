"""`noisy_student()` without validation data holds out labeled rows (`validation_fraction`).

The held-out rows are those of the recipe steps' split (`labels.validation_split`, seeded
by `seed`); they stop every round early and are never trained on nor pseudo-labelled.
"""

import json
import logging

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

import ssl_multilabel.data.pipeline as pipeline  # noqa: E402
import ssl_multilabel.teacher_student.loop as loop  # noqa: E402
from ssl_multilabel.labels import PartialLabels, Source  # noqa: E402
from ssl_multilabel.labels import validation_split  # noqa: E402
from ssl_multilabel.teacher_student.loop import noisy_student  # noqa: E402
from ssl_multilabel.teacher_student.sources import TeacherCells  # noqa: E402

N, L, SIZE = 48, 2, 8


def _teacher(k):
    from ssl_multilabel.models import build_classifier

    return build_classifier("small_cnn", L, (SIZE, SIZE, 1), backbone_kwargs={"filters": (4,), "pool_after": (0,)},
                            seed=k)


def _student(k):
    from ssl_multilabel.teacher_student.noise import build_student_classifier

    return build_student_classifier(L, (SIZE, SIZE, 1), filters=(4,), pool_after=(0,), seed=k)


def _data(n=N):
    """Images whose pixels identify their row (row i: values in [4i, 4i + 1]), and a partial table."""
    rng = np.random.default_rng(0)
    images = (4.0 * np.arange(n, dtype="float32")[:, None, None, None]
              + rng.uniform(0, 1, (n, SIZE, SIZE, 1)).astype("float32"))
    truth = (rng.random((n, L)) < 0.5).astype(float)
    truth[:2] = [[1, 0], [0, 1]]
    y = np.where(rng.random((n, L)) < 0.6, truth, -1.0)
    y[:2] = truth[:2]
    return images, PartialLabels.from_array(y)


def _rows_of(images):
    """The row indices of `images` made by `_data` (each row's pixels identify it)."""
    return np.unique(np.floor(np.asarray(images).reshape(len(images), -1).min(axis=1) / 4.0).astype(int))


def _run(images, labels, **kwargs):
    args = dict(rounds=1, epochs=1, batch_size=8, build_teacher=_teacher, build_student=_student, seed=3,
                train_kwargs={"verbose": 0})
    return noisy_student(images, labels, **(args | kwargs))


def test_held_out_rows_are_the_shared_split_and_are_never_trained_on(monkeypatch, tmp_path, caplog):
    images, labels = _data()
    calls = {"make": [], "mixed": []}
    make, mixed = pipeline.make_dataset, pipeline.mixed_dataset

    def record_make(images, labels=None, **kwargs):
        calls["make"].append((images, labels, kwargs))
        return make(images, labels, **kwargs)

    def record_mixed(images, labeled, pseudo, **kwargs):
        calls["mixed"].append((images, labeled, pseudo))
        return mixed(images, labeled, pseudo, **kwargs)

    monkeypatch.setattr(pipeline, "make_dataset", record_make)
    monkeypatch.setattr(pipeline, "mixed_dataset", record_mixed)
    with caplog.at_level(logging.INFO, logger="ssl_multilabel.teacher_student.loop"):
        # Thresholds at which the teacher fills every unknown cell it is given.
        result = _run(images, labels, out_dir=tmp_path, validation_fraction=0.25, sources=[TeacherCells()],
                      positive_threshold=0.5, negative_threshold=0.499)

    # The rows of the recipe steps' split, with the same fraction and `seed`.
    _, expected = validation_split(labels, 0.25, 3)
    assert len(expected) == round(0.25 * labels.known.any(axis=1).sum()) > 0
    np.testing.assert_array_equal(result.validation_rows, expected)
    assert any(f"Held out {len(expected)} labeled rows" in r.getMessage() for r in caplog.records)
    held = np.zeros(N, dtype=bool)
    held[expected] = True

    # No round's table (in memory or on disk) knows a cell of a held-out row; every other unknown
    # cell was filled by the teacher, so the held-out rows were dropped, not just left unselected.
    for r in result.rounds:
        saved = PartialLabels.load(tmp_path / f"round_{r.index}" / "pseudo_labels.npz")
        for table in (r.labels, saved):
            assert not table.known[held].any()
            human = labels.known & ~held[:, None]
            np.testing.assert_array_equal(table.values[human], labels.values[human])
    student = result.rounds[1]
    assert student.labels.known[~held].all()
    assert (student.labels.source[~held] == Source.TEACHER).sum() == (~labels.known[~held]).sum()
    assert not student.pseudo.teacher_cells[held].any()
    assert json.loads((tmp_path / "round_1" / "metrics.json").read_text())["pseudo_labels"] == student.pseudo.summary()

    # No training dataset (the teacher's; the student's labelled and pseudo-labelled streams, which
    # `mixed_dataset` builds with `make_dataset`) holds a held-out image or cell.
    (_, labeled, pseudo), = calls["mixed"]
    assert not labeled.known[held].any() and not pseudo.known[held].any()
    training = [c for c in calls["make"] if c[2].get("shuffle")]
    assert len(training) == 3
    teacher_images, teacher_labels, _ = training[0]
    np.testing.assert_array_equal(_rows_of(teacher_images), np.flatnonzero(~held))
    assert teacher_labels.n_samples == (~held).sum()
    for train_images, _, _ in training:
        assert not np.isin(_rows_of(train_images), expected).any()
    assert np.isin(_rows_of(training[2][0]), np.flatnonzero(~labels.known.all(axis=1) & ~held)).all()
    # The validation data are the held-out rows with their human cells.
    (val_images, val_labels, _), = [c for c in calls["make"] if not c[2].get("shuffle") and c[1] is not None]
    np.testing.assert_array_equal(_rows_of(val_images), expected)
    np.testing.assert_array_equal(val_labels.known, labels.known[expected])
    np.testing.assert_array_equal(val_labels.values[val_labels.known], labels.values[expected][labels.known[expected]])
    assert all("val" in r.metrics for r in result.rounds)


# Three held-out rows: a label may lack a known negative there (a warning, not a failure).
@pytest.mark.filterwarnings("ignore:.*left out of the macro means")
def test_rounds_stop_early_by_default_and_train_every_epoch_without_holdout(monkeypatch):
    images, labels = _data()
    fitted = []
    thresholds = loop.thresholds_for_precision

    def record(val_labels, scores, precision):
        fitted.append(val_labels.n_samples)
        return thresholds(val_labels, scores, precision)

    monkeypatch.setattr(loop, "thresholds_for_precision", record)
    epochs = 20
    default = _run(images, labels, epochs=epochs, patience=1, learning_rate=0.01, target_precision=0.6)
    assert len(default.validation_rows) == round(0.1 * labels.known.any(axis=1).sum())
    assert fitted == [len(default.validation_rows)]  # target_precision's thresholds: the held-out rows
    for r in default.rounds:
        assert 1 <= len(r.history["loss"]) < epochs, r.index

    none = _run(images, labels, epochs=epochs, patience=1, learning_rate=0.01, validation_fraction=0)
    assert len(none.validation_rows) == 0
    for r in none.rounds:
        assert len(r.history["loss"]) == epochs, r.index
        assert "val" not in r.metrics
    np.testing.assert_array_equal(none.rounds[0].labels.known, labels.known)  # every labeled row trained on


@pytest.mark.parametrize("value", [1.0, 1.5, -0.1, float("nan"), "0.1", True])
def test_invalid_validation_fraction(value):
    images, labels = _data(8)
    with pytest.raises(ValueError, match=r"argument `validation_fraction`. Expected None or a number in \[0, 1\)"
                                         r"\. Received: validation_fraction="):
        noisy_student(images, labels, validation_fraction=value)


def test_too_few_labeled_rows(caplog):
    images, labels = _data(8)
    one = PartialLabels.from_array(np.where(np.arange(8)[:, None] == 0, labels.values, -1.0))
    # Holding out the only labeled row leaves nothing to train on.
    with pytest.raises(ValueError, match="validation_fraction=0.9 holds out all 1 labeled rows"):
        noisy_student(images, one, validation_fraction=0.9)
    # A fraction that rounds to no row: a warning, and target_precision (which needs validation
    # rows) is refused before any training.
    with caplog.at_level(logging.WARNING, logger="ssl_multilabel.teacher_student.loop"):
        with pytest.raises(ValueError, match="target_precision.*val_images.*validation_fraction"):
            noisy_student(images, one, validation_fraction=0.1, target_precision=0.9)
    assert any("validation_fraction=0.1 holds out no row" in r.getMessage() for r in caplog.records)


def test_filled_keeps_every_human_cell_adds_machine_cells_and_no_assumed_negative():
    from ssl_multilabel.teacher_student.sources import AssumeNegative

    images, labels = _data()
    y = labels.to_array()
    y[:, 1] = np.where(y[:, 1] == 1, 1.0, -1.0)  # label 1 has no known negative: AssumeNegative fills it
    labels = PartialLabels.from_array(y)
    result = _run(images, labels, sources=[TeacherCells(), AssumeNegative()], positive_threshold=0.6,
                  negative_threshold=0.4, target_precision=None)
    last = result.labels
    assert len(result.validation_rows) and (last.known & (last.source == Source.IMPLIED)).any()
    table = result.filled(labels)
    # Reference, cell by cell: a person's cell as given (held-out rows included), else the last
    # round's teacher cell of that row, else unknown.
    teacher = last.known & (last.source == Source.TEACHER)
    expected = np.where(labels.known, y, np.where(teacher, last.values, -1.0))
    np.testing.assert_allclose(table.to_array(), expected)
    assert set(np.unique(table.source[table.known])) <= {Source.HUMAN, Source.TEACHER}
    assert teacher.any()


def test_filled_leaves_a_label_without_a_known_positive_unknown():
    # A label column nobody has filled in: the teacher learned it from assumed negatives only, so its
    # "confident" cells restate the assumption. They may train the student, but they are no finding:
    # the completed table leaves them unknown (they used to come out as teacher negatives).
    from ssl_multilabel.teacher_student.loop import NoisyStudentResult, RoundResult

    given = PartialLabels.from_array([[1, -1, 0], [0, -1, -1], [-1, -1, 1], [-1, -1, -1]])
    machine = np.array([[-1, 0.1, -1], [-1, 0.2, 0.9], [0.8, 0.1, -1], [0.1, 0.3, 0.7]])
    last = given.fill(machine, np.ones(machine.shape), Source.TEACHER)
    result = NoisyStudentResult([RoundResult(0, None, given, None, {}, None, np.zeros(machine.shape)),
                                 RoundResult(1, None, last, None, {}, None, np.zeros(machine.shape))])
    expected = np.where(given.known, given.to_array(), machine)
    expected[:, 1] = -1.0  # label 1 has no known positive
    np.testing.assert_allclose(result.filled(given).to_array(), expected)


def test_top_k_slots_go_to_the_rows_the_student_trains_on():
    # Held-out rows used to compete for a label's top-K pseudo-positives and were dropped after:
    # labels got fewer than top_k. Reference: the candidates among the trained rows, counted by hand.
    images, labels = _data()
    result = _run(images, labels, top_k=3, positive_threshold=0.5, negative_threshold=0.49, target_precision=None)
    held = result.validation_rows
    assert len(held)
    teacher_scores, pseudo = result.rounds[0].scores, result.rounds[1].pseudo
    candidates = ~labels.known & (teacher_scores >= 0.5)
    candidates[held] = False
    assert not pseudo.positive[held].any()
    np.testing.assert_array_equal(pseudo.positive.sum(axis=0), np.minimum(3, candidates.sum(axis=0)))
