"""Noisy student: stochastic depth, student augmentation, the mixed batches and the round loop."""

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from sklearn.metrics import average_precision_score  # noqa: E402

from ssl_multilabel.labels import PartialLabels, Source  # noqa: E402
from ssl_multilabel.losses import MaskedBinaryCrossentropy  # noqa: E402
from ssl_multilabel.data import mixed_dataset  # noqa: E402
from ssl_multilabel.teacher_student.loop import noisy_student  # noqa: E402
from ssl_multilabel.teacher_student.noise import (  # noqa: E402
    StochasticDepth,
    build_residual_cnn,
    build_student_classifier,
    student_augment,
    survival_probabilities,
)
from ssl_multilabel.teacher_student.pseudo_labels import predict_scores  # noqa: E402
from ssl_multilabel.teacher_student.scoring import hidden_and_test  # noqa: E402
from ssl_multilabel.teacher_student.sources import KnnFill, RoundInputs, TeacherCells  # noqa: E402

# === Stochastic depth ===


def test_stochastic_depth_is_a_plain_sum_at_inference():
    rng = np.random.default_rng(0)
    shortcut, residual = rng.normal(size=(2, 5, 4, 4, 3)).astype("float32")
    out = StochasticDepth(0.5, seed=0)([shortcut, residual], training=False)
    np.testing.assert_allclose(np.asarray(out), shortcut + residual, rtol=0, atol=1e-6)


def test_stochastic_depth_drops_whole_residual_branches_in_training():
    rng = np.random.default_rng(1)
    shortcut, residual = rng.normal(size=(2, 64, 3, 3, 2)).astype("float32")
    p = 0.5
    out = np.asarray(StochasticDepth(p, seed=3)([shortcut, residual], training=True))
    dropped = np.all(np.isclose(out, shortcut, atol=1e-6), axis=(1, 2, 3))
    kept = np.all(np.isclose(out, shortcut + residual / p, atol=1e-5), axis=(1, 2, 3))
    # Every sample is exactly one of the two (per-sample Bernoulli, inverted scaling) ...
    np.testing.assert_array_equal(dropped | kept, True)
    # ... and with 64 samples at p = 0.5 both occur.
    assert dropped.any() and kept.any()
    # survival 1.0 never drops.
    out = np.asarray(StochasticDepth(1.0)([shortcut, residual], training=True))
    np.testing.assert_allclose(out, shortcut + residual, atol=1e-6)


def test_stochastic_depth_config_round_trip():
    layer = StochasticDepth(0.7, seed=5, name="sd")
    config = layer.get_config()
    assert config["survival_probability"] == 0.7 and config["seed"] == 5
    clone = StochasticDepth.from_config(config)
    assert clone.get_config() == config
    assert keras.saving.get_registered_name(StochasticDepth) == "ssl_multilabel>StochasticDepth"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, StochasticDepth) and restored.get_config() == config


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.2])
def test_stochastic_depth_rejects_invalid_probability(bad):
    with pytest.raises(ValueError, match="survival_probability.*\\(0, 1\\]"):
        StochasticDepth(bad)


def test_survival_probabilities_decay_linearly():
    assert survival_probabilities(4, 0.8) == [0.95, 0.9, 0.85, 0.8]
    assert survival_probabilities(1, 0.5) == [0.5]
    assert survival_probabilities(0) == []
    with pytest.raises(ValueError, match="last"):
        survival_probabilities(3, 0.0)


def test_student_model_saves_and_predicts_deterministically(tmp_path):
    student = build_student_classifier(3, (28, 28, 1), width=1.0, filters=(4, 8, 8), pool_after=(0, 2))
    kinds = {type(layer).__name__ for layer in student.get_layer("backbone").layers}
    assert "StochasticDepth" in kinds
    x = np.random.default_rng(0).uniform(0, 255, (6, 28, 28, 1)).astype("float32")
    a = np.asarray(student(x, training=False))
    np.testing.assert_array_equal(np.asarray(student(x, training=False)), a)
    assert not np.allclose(np.asarray(student(x, training=True)), a)  # dropout + stochastic depth
    student.save(tmp_path / "student.keras")
    loaded = keras.models.load_model(tmp_path / "student.keras")
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), a, atol=1e-6)


def test_student_width_makes_an_equal_or_larger_network():
    base = build_residual_cnn((28, 28, 1), filters=(4, 8), pool_after=(0,))
    wide = build_residual_cnn((28, 28, 1), filters=(4, 8), pool_after=(0,), width=2.0)
    assert base.output_shape == (None, 14, 14, 8) and wide.output_shape == (None, 14, 14, 16)
    # conv1 3*3*1*4+4, conv2 3*3*4*8+8, projection 4*8: counted by hand.
    assert base.count_params() == (9 * 4 + 4) + (9 * 4 * 8 + 8) + 4 * 8
    assert wide.count_params() > base.count_params()
    with pytest.raises(ValueError, match="width"):
        build_residual_cnn((28, 28, 1), width=0.0)


# === Student augmentation ===


def test_student_augment_works_on_one_channel_images_in_tf_data():
    from ssl_multilabel.data import make_dataset

    images = np.random.default_rng(0).uniform(0, 255, (8, 28, 28, 1)).astype("float32")
    ds = make_dataset(images, None, batch_size=8, augment=student_augment(0.5, seed=0))
    x = np.asarray(next(iter(ds)))
    assert x.shape == images.shape and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 255.0
    changed = ~np.all(np.isclose(x, images), axis=(1, 2, 3))
    assert changed.sum() >= 6  # two random ops per image: (almost) every image changes
    assert student_augment(0.5).layer.num_ops == 2
    with pytest.raises(ValueError, match="magnitude"):
        student_augment(2.0)


def test_weak_augment_flips_and_shifts_within_its_bound():
    # One bright pixel per image: after the noise it must sit where a mirror (or not) and a shift
    # of at most `shift * size` put it, computed with numpy.
    from ssl_multilabel.teacher_student.noise import weak_augment

    size, row, col = 32, 10, 6
    images = np.zeros((64, size, size, 1), dtype="float32")
    images[:, row, col] = 255.0
    flipped_only = np.asarray(weak_augment(0.0, seed=0)(images))
    mirror = images[:, :, ::-1]
    same = np.all(flipped_only == images, axis=(1, 2, 3))
    mirrored = np.all(flipped_only == mirror, axis=(1, 2, 3))
    assert np.all(same | mirrored) and 10 < same.sum() < 54  # each image is itself or its mirror, both occur

    shifted = np.asarray(weak_augment(0.125, seed=0)(images))
    limit = 0.125 * size
    rows, cols = np.unravel_index(shifted.reshape(64, -1).argmax(axis=1), (size, size))
    assert np.all(np.abs(rows - row) <= limit + 1)
    assert np.all(np.minimum(np.abs(cols - col), np.abs(cols - (size - 1 - col))) <= limit + 1)
    assert (rows != row).sum() > 32  # most images moved
    with pytest.raises(ValueError, match="shift"):
        weak_augment(0.6)


def test_teacher_scores_are_clean_inference_outputs():
    # A model with dropout: predict_scores must equal model(x, training=False) on raw images.
    model = build_student_classifier(2, (28, 28, 1), filters=(4, 8), pool_after=(0,), dropout=0.5)
    images = np.random.default_rng(2).uniform(0, 255, (20, 28, 28, 1)).astype("float32")
    expected = np.asarray(model(images, training=False))
    scores = predict_scores(model, images, batch_size=7)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)


# === Mixed batches ===


def _masked_mean_bce(y, p):
    known = y >= 0
    p = np.clip(p, 1e-7, 1 - 1e-7)
    cell = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return cell[known].sum() / known.sum()


def _two_streams(rng):
    """8 images: rows 0-3 carry human cells, rows 4-7 teacher cells (soft), nothing else."""
    images = rng.uniform(0, 255, (8, 4, 4, 1)).astype("float32")
    labeled = PartialLabels.from_array([[1, -1], [0, 1], [-1, 0], [1, 1], [-1, -1], [-1, -1], [-1, -1], [-1, -1]])
    teacher_cells = np.full((8, 2), -1.0)
    teacher_cells[4:] = [[0.9, 0.2], [0.1, -1], [0.8, 0.7], [-1, 0.05]]
    return images, labeled, teacher_cells, PartialLabels.from_array(teacher_cells)


def test_mixed_batches_give_the_paper_loss_combination():
    rng = np.random.default_rng(0)
    images, labeled, teacher_cells, pseudo = _two_streams(rng)
    ds = mixed_dataset(images, labeled, pseudo, batch_size=2, unlabel_ratio=2.0, seed=0)
    batches = list(ds)
    assert len(batches) == 2  # ceil(max(4 / 2, 4 / 4))
    for x, y, w in batches:
        x, y, w = np.asarray(x), np.asarray(y), np.asarray(w)
        assert x.shape == (6, 4, 4, 1) and y.shape == (6, 2)
        # The first B_l rows come from the labelled stream, the next B_u from the pseudo one.
        assert all(any(np.array_equal(row, r) for r in labeled.to_array()[:4]) for row in y[:2])
        assert all(any(np.array_equal(row, r) for r in teacher_cells[4:].astype("float32")) for row in y[2:])
        p = rng.uniform(0.05, 0.95, y.shape).astype("float32")
        expected = _masked_mean_bce(y[:2], p[:2]) + 2.0 * _masked_mean_bce(y[2:], p[2:])
        value = float(MaskedBinaryCrossentropy()(y, p, sample_weight=w))
        assert value == pytest.approx(expected, rel=1e-5)


def test_cell_balance_weighs_every_known_cell_of_the_batch_the_same():
    rng = np.random.default_rng(1)
    images, labeled, _, pseudo = _two_streams(rng)
    for x, y, w in mixed_dataset(images, labeled, pseudo, batch_size=2, unlabel_ratio=2.0, balance="cells", seed=0):
        y, w = np.asarray(y), np.asarray(w)
        np.testing.assert_array_equal(w, (y >= 0).astype("float32"))
        p = rng.uniform(0.05, 0.95, y.shape).astype("float32")
        value = float(MaskedBinaryCrossentropy()(y, p, sample_weight=w))
        assert value == pytest.approx(_masked_mean_bce(y, p), rel=1e-5)  # one mean over both halves
    with pytest.raises(ValueError, match="balance"):
        mixed_dataset(images, labeled, pseudo, balance="rows")


def test_assumed_negatives_keep_their_weight_and_machine_cells_weigh_one():
    images = np.arange(4 * 2 * 2, dtype="float32").reshape(4, 2, 2, 1)
    labeled = PartialLabels.from_array([[1, -1], [0, -1], [-1, -1], [-1, -1]])
    machine = PartialLabels.from_array(np.full((4, 2), -1.0)).fill(
        np.array([[-1, -1], [-1, -1], [0.9, -1], [0.2, -1]]), 0.6, Source.TEACHER)
    machine = machine.fill(np.array([[-1, 0], [-1, 0], [-1, 0], [-1, 0]]), 0.25, Source.IMPLIED)
    (x, y, w), = list(mixed_dataset(images, labeled, machine, batch_size=2, unlabel_ratio=2.0, balance="cells"))
    y, w = np.asarray(y), np.asarray(w)
    np.testing.assert_array_equal(w[:2], (y[:2] >= 0).astype("float32"))  # human cells: 1
    # The pseudo half holds the 4 machine rows once: teacher cells weigh 1 without
    # confidence_weights (their confidence is 0.6), assumed negatives keep their 0.25.
    np.testing.assert_array_equal(w[2:, 0], (y[2:, 0] >= 0).astype("float32"))
    assert (y[2:, 0] >= 0).sum() == 2
    np.testing.assert_array_equal(w[2:, 1], 0.25)


def test_mixed_batches_repeat_balanced_rows():
    images = np.arange(4 * 2 * 2, dtype="float32").reshape(4, 2, 2, 1)
    labeled = PartialLabels.from_array([[1], [0], [-1], [-1]])
    pseudo = PartialLabels.from_array([[-1], [-1], [0.9], [0.2]])
    ds = mixed_dataset(images, labeled, pseudo, repeats=np.array([1, 1, 3, 1]), batch_size=2, unlabel_ratio=2.0)
    (x, y, _), = list(ds)  # one batch: 2 labelled rows + 4 pseudo rows = row 2 three times, row 3 once
    np.testing.assert_allclose(np.sort(np.asarray(y)[2:, 0]), [0.2, 0.9, 0.9, 0.9], rtol=1e-6)
    np.testing.assert_array_equal(np.sort(np.asarray(x)[2:, 0, 0, 0]), [8, 8, 8, 12])  # first pixel of rows 2, 3


def test_mixed_batches_steps_per_epoch_and_batch_level_augment():
    images = np.arange(4 * 2 * 2, dtype="float32").reshape(4, 2, 2, 1)
    labeled = PartialLabels.from_array([[1], [0], [-1], [-1]])
    pseudo = PartialLabels.from_array([[-1], [-1], [0.9], [0.2]])
    ranks = []

    def negate(x):  # records the rank it is called with: one call per batch, not per image
        ranks.append(len(x.shape))
        return -x

    ds = mixed_dataset(images, labeled, pseudo, batch_size=2, unlabel_ratio=1.0, steps_per_epoch=5, augment=negate)
    batches = list(ds)
    assert len(batches) == 5  # the default would be ceil(max(2 / 2, 2 / 2)) = 1
    assert set(ranks) == {4}
    for x, y, _ in batches:
        # Every image went through `negate`: each batch image is minus one of the originals.
        first = -np.asarray(x)[:, 0, 0, 0]
        expected = {float(images[i, 0, 0, 0]) for i in range(4)}
        assert set(first.tolist()) <= expected
    with pytest.raises(ValueError, match="steps_per_epoch"):
        mixed_dataset(images, labeled, pseudo, steps_per_epoch=0)


def test_mixed_batches_are_the_same_in_every_epoch_of_two_builds():
    """Two datasets built alike give the same batches in every epoch, not only the first.

    Each epoch is a new iterator; each stream's reshuffle seed comes from one generator per shuffle,
    advanced at every pass. A parallel map reading past the epoch's last batch started the next
    pass (a seed draw) or not, by a race: the recipe's second epoch then differed from run to run.
    Here every pass of both streams is one batch (4 labelled rows, B_l = 4; 8 pseudo rows, B_u = 8), the worst case.
    """
    n = 12
    features = np.arange(n * 2, dtype="float32").reshape(n, 2)  # (n, d): cached backbone features
    labeled = PartialLabels.from_array(np.where(np.arange(n)[:, None] < 4, np.arange(n)[:, None] % 2, -1.0))
    pseudo = PartialLabels.from_array(np.full((n, 1), -1.0)).fill(
        np.where(np.arange(n)[:, None] >= 4, 0.9, -1.0), 0.6, Source.TEACHER)

    def epochs(count=8):
        keras.utils.set_random_seed(0)
        ds = mixed_dataset(features, labeled, pseudo, batch_size=4, unlabel_ratio=2.0, seed=3)
        return [[np.asarray(x)[:, 0].tolist() for x, _, _ in ds] for _ in range(count)]

    first = epochs()
    assert len({str(epoch) for epoch in first}) > 1  # the streams do reshuffle between epochs
    for _ in range(3):
        assert epochs() == first


def test_mixed_dataset_invalid_arguments():
    images = np.zeros((2, 2, 2, 1), "float32")
    labeled = PartialLabels.from_array([[1], [-1]])
    with pytest.raises(ValueError, match="unlabel_ratio"):
        mixed_dataset(images, labeled, None, unlabel_ratio=0)
    with pytest.raises(ValueError, match="no known cell"):
        mixed_dataset(images, PartialLabels.from_array([[-1], [-1]]), None)


# === The loop ===


def _tiny_teacher(round_index):
    from ssl_multilabel.models import build_classifier

    return build_classifier("small_cnn", 3, (28, 28, 1), backbone_kwargs={"filters": (4, 8), "pool_after": (0, 1)},
                            seed=round_index)


def _tiny_student(round_index):
    return build_student_classifier(3, (28, 28, 1), width=1.5, filters=(4, 8), pool_after=(0, 1), seed=round_index)


class _FillLabelZero:
    """A stand-in for label propagation: label 0 of every unknown row is 1, confidence 0.7."""

    def propose(self, inputs, current):
        values = np.full(current.known.shape, -1.0)
        values[:, 0] = 1.0
        return current.fill(values, 0.7, source="propagated")


_SOURCES = [TeacherCells(), _FillLabelZero()]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    rng = np.random.default_rng(0)
    n, n_labels = 64, 3
    images = rng.uniform(0, 255, (n, 28, 28, 1)).astype("float32")
    truth = (rng.random((n, n_labels)) < 0.4).astype("float32")
    truth[:4] = [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]]  # every label has both classes
    labels = PartialLabels.from_array(np.where(rng.random((n, n_labels)) < 0.5, truth, -1))
    val_labels = PartialLabels.from_array(truth[:16])
    out = tmp_path_factory.mktemp("noisy_student")
    result = noisy_student(
        images, labels, out_dir=out, rounds=2, epochs=1, batch_size=16, unlabel_ratio=1.0,
        build_teacher=_tiny_teacher, build_student=_tiny_student, sources=_SOURCES,
        val_images=images[:16], val_labels=val_labels,
        on_round_end=hidden_and_test(labels, true_labels=PartialLabels.from_array(truth)),
        # Thresholds that select cells whatever a one-epoch teacher predicts.
        positive_threshold=0.5, negative_threshold=0.499, top_k=20, max_duplication=2, seed=0,
        augment_magnitude=0.5, flip_shift=0.1,  # off by default; on here so that the student's inputs are noised
        ema_momentum=0.5,  # off by default; on here so that the averaged weights are saved and reloaded
    )
    return dict(result=result, images=images, labels=labels, val_labels=val_labels, out=out, truth=truth)


def test_loop_keeps_every_round_artefact(run):
    result, out = run["result"], run["out"]
    assert [r.index for r in result.rounds] == [0, 1, 2]
    for r in result.rounds:
        folder = out / f"round_{r.index}"
        assert r.directory == folder
        for name in ("model.keras", "pseudo_labels.npz", "metrics.json"):
            assert (folder / name).is_file(), name
        assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left
        loaded = keras.models.load_model(folder / "model.keras")
        np.testing.assert_allclose(
            np.asarray(loaded(run["images"], training=False)), r.scores, rtol=0, atol=1e-5
        )
        table = PartialLabels.load(folder / "pseudo_labels.npz")
        np.testing.assert_array_equal(table.source, r.labels.source)
        np.testing.assert_array_equal(table.values, r.labels.values)
        np.testing.assert_array_equal(table.weight, r.labels.weight)
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["round"] == r.index and metrics["role"] == ("teacher" if r.index == 0 else "student")
        # The recorded validation mAP is scikit-learn's mean AP of the saved model.
        val_scores = np.asarray(loaded(run["images"][:16], training=False))
        truth = run["val_labels"].values
        expected = np.mean([average_precision_score(truth[:, j], val_scores[:, j]) for j in range(3)])
        assert metrics["val"]["summary"]["mAP"] == pytest.approx(expected, abs=1e-5)
        # The callback's metrics are merged in: the mean AP over the cells `labels` hid.
        hidden = ~run["labels"].known
        expected = np.mean([average_precision_score(run["truth"][hidden[:, j], j], r.scores[hidden[:, j], j])
                            for j in range(3)])
        assert metrics["train_hidden"]["summary"]["mAP"] == pytest.approx(expected, abs=1e-5)
        assert ("pseudo_label_quality" in metrics) == (r.index > 0)
    assert result.model is result.rounds[-1].model
    for r in result.rounds:  # every trained model was averaged with the configured momentum
        assert (r.model.optimizer.use_ema, r.model.optimizer.ema_momentum) == (True, 0.5)


def test_loop_never_changes_human_cells_and_fills_with_teacher(run):
    labels = run["labels"]
    for r in run["result"].rounds[1:]:
        known = labels.known
        np.testing.assert_array_equal(r.labels.values[known], labels.values[known])
        np.testing.assert_array_equal(r.labels.source[known], labels.source[known])
        # The teacher's confident cells come first; propagation filled the rest of label 0.
        teacher = r.pseudo.teacher_cells
        assert teacher.any()
        np.testing.assert_array_equal(r.labels.source == Source.TEACHER, teacher)
        expected = np.zeros_like(known)
        expected[:, 0] = ~known[:, 0] & ~teacher[:, 0]
        np.testing.assert_array_equal(r.labels.source == Source.PROPAGATED, expected)
        np.testing.assert_array_equal(r.labels.known, known | teacher | expected)


def test_loop_teacher_inputs_are_never_augmented(run):
    rounds, images = run["result"].rounds, run["images"]
    for previous, current in zip(rounds[:-1], rounds[1:]):
        clean = np.asarray(previous.model(images, training=False))
        np.testing.assert_allclose(current.pseudo.scores, clean, rtol=0, atol=1e-5)
    # No augmentation layer is part of any saved model's inference path.
    def layer_types(model):
        for layer in model.layers:
            yield type(layer).__name__
            if isinstance(layer, keras.Model):
                yield from layer_types(layer)

    for r in rounds:
        assert not {"RandAugment", "RandomFlip", "RandomTranslation"} & set(layer_types(r.model))


def test_loop_resumes_completed_rounds(run):
    images, labels = run["images"], run["labels"]
    again = noisy_student(
        images, labels, out_dir=run["out"], rounds=2, resume=True,
        build_teacher=_tiny_teacher, build_student=_tiny_student, sources=_SOURCES,
    )
    assert [r.reloaded for r in again.rounds] == [True, True, True]
    for old, new in zip(run["result"].rounds, again.rounds):
        np.testing.assert_allclose(new.scores, old.scores, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(new.labels.source, old.labels.source)
        assert new.metrics["round"] == old.metrics["round"]


def test_loop_invalid_arguments():
    images = np.zeros((4, 28, 28, 1), "float32")
    labels = PartialLabels.from_array([[1], [0], [-1], [-1]])
    with pytest.raises(ValueError, match="rounds"):
        noisy_student(images, labels, rounds=0)
    with pytest.raises(ValueError, match="3 rows"):
        noisy_student(images, labels.subset([0, 1, 2]))
    with pytest.raises(ValueError, match="target_precision.*val_images"):
        noisy_student(images, labels, target_precision=0.9)
    with pytest.raises(ValueError, match="resume.*out_dir"):
        noisy_student(images, labels, resume=True)
    with pytest.raises(ValueError, match="train_kwargs.*epochs"):
        noisy_student(images, labels, train_kwargs={"epochs": 3})
    with pytest.raises(ValueError, match="balance.*Received: balance='rows'"):
        noisy_student(images, labels, balance="rows")  # before any teacher is trained
    with pytest.raises(TypeError, match="no argument 'student_width': use width"):
        noisy_student(images, labels, student_width=1.5)
    with pytest.raises(TypeError, match="no argument 'epoch'.*Did you mean 'epochs'"):
        noisy_student(images, labels, epoch=3)
    with pytest.raises(TypeError, match=r"sources\[0\].*propose"):
        noisy_student(images, labels, sources=[lambda teacher, labels: labels])
    with pytest.raises(ValueError, match="test_labels"):
        hidden_and_test(labels, test_images=images)
    with pytest.raises(ValueError, match="student_backbone.*Received: student_backbone='resnet'"):
        noisy_student(images, labels, student_backbone="resnet")  # before any teacher is trained


def test_knn_fill_fills_only_unknown_cells_from_the_teachers_embeddings():
    # Two well separated clusters of images: propagation on any embedding fills their cells.
    rng = np.random.default_rng(0)
    images = np.concatenate([rng.uniform(0, 20, (30, 28, 28, 1)), rng.uniform(235, 255, (30, 28, 28, 1))]).astype("float32")
    y = np.full((60, 1), -1.0)
    y[:10], y[30:40] = 0.0, 1.0
    labels = PartialLabels.from_array(y)
    from ssl_multilabel.propagation import fill_unknown, knn_graph

    teacher = _tiny_teacher(0)
    inputs = RoundInputs(labels=labels, teacher=teacher, scores=None, config=None, positive_threshold=None,
                         negative_threshold=None)
    filled = KnnFill(images, k=5).propose(inputs, labels)
    np.testing.assert_array_equal(filled.values[labels.known], labels.values[labels.known])
    np.testing.assert_array_equal(filled.source[labels.known], Source.HUMAN)
    # Same as calling the propagation module directly on the teacher's clean embeddings.
    from ssl_multilabel.models import build_embedding_model

    features = build_embedding_model(teacher).predict(images, batch_size=256, verbose=0)  # inference mode
    expected = fill_unknown(labels, knn_graph(features, k=5), target_precision=0.9, seed=0)
    np.testing.assert_array_equal(filled.known, expected.known)
    np.testing.assert_array_equal(filled.source, expected.source)


def test_round_headline_says_na_when_no_label_has_both_classes_known():
    """Single positive labels: the log line must not print an mAP of 0 that no AP stands behind."""
    from ssl_multilabel.teacher_student.loop import _headline
    from ssl_multilabel.teacher_student.scoring import evaluate_scores

    scores = np.array([[0.9, 0.2], [0.4, 0.7], [0.6, 0.1], [0.3, 0.8]])
    single_positive = np.array([[1, -1], [-1, 1], [-1, -1], [-1, 1]], dtype=float)
    full = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=float)
    line = _headline({"train_known": evaluate_scores(single_positive, scores), "val": evaluate_scores(full, scores)})
    expected = np.mean([average_precision_score(full[:, j], scores[:, j]) for j in range(2)])
    assert line == f"train_known mAP n/a (no label has both classes known), val mAP {expected:.4f}"


def _tiny_problem(n=48, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (n, 28, 28, 1)).astype("float32")
    truth = (rng.random((n, 3)) < 0.4).astype("float32")
    truth[:4] = [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]]
    return images, PartialLabels.from_array(np.where(rng.random((n, 3)) < 0.5, truth, -1))


_TINY = dict(epochs=2, batch_size=8, unlabel_ratio=1.0, positive_threshold=0.5, negative_threshold=0.499,
             validation_fraction=0.0, train_kwargs={"verbose": 0})


def test_same_seed_twice_in_one_process_gives_the_same_student():
    # The student's batches were shuffled under whatever global seed the process last set, so a
    # notebook cell run again gave another student (up to 0.135 apart in a user's check).
    images, labels = _tiny_problem()
    teacher = _tiny_teacher(0)
    runs = [noisy_student(images, labels, teacher=teacher, build_student=_tiny_student, seed=3, **_TINY)
            for _ in range(2)]
    keras.utils.set_random_seed(99)  # and after the process state moved on
    runs.append(noisy_student(images, labels, teacher=teacher, build_student=_tiny_student, seed=3, **_TINY))
    for other in runs[1:]:
        np.testing.assert_array_equal(other.rounds[1].scores, runs[0].rounds[1].scores)


def test_teacher_given_as_a_path_is_the_teacher_given_as_a_model(tmp_path):
    # A `.keras` path skipped the default student's check for a frozen backbone: the student was a
    # small CNN from scratch instead of a new head on the teacher's backbone.
    from ssl_multilabel.models import build_classifier

    images, labels = _tiny_problem()
    teacher = build_classifier("small_cnn", 3, (28, 28, 1), backbone_kwargs={"filters": (4, 8), "pool_after": (0, 1)},
                               freeze=True, seed=0)
    teacher.save(tmp_path / "teacher.keras")
    students = [noisy_student(images, labels, teacher=t, seed=0, **_TINY).rounds[1].model
                for t in (teacher, tmp_path / "teacher.keras")]
    for student in students:
        backbone = student.get_layer("backbone")
        assert not backbone.trainable
        for got, want in zip(backbone.get_weights(), teacher.get_layer("backbone").get_weights()):
            np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(students[1].predict(images, verbose=0), students[0].predict(images, verbose=0),
                               rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="`teacher` has 3 outputs but `labels` has 2 labels"):
        noisy_student(images, PartialLabels.from_array(labels.to_array()[:, :2]), teacher=tmp_path / "teacher.keras")


def test_fresh_run_replaces_the_rounds_an_earlier_run_left(tmp_path):
    # A 1-round run into the folder of a 2-round run left its round_2; resuming 2 rounds then
    # returned that round, whose teacher was the other run's round 1.
    images, labels = _tiny_problem()
    common = dict(out_dir=tmp_path, build_teacher=_tiny_teacher, build_student=_tiny_student, **_TINY)
    noisy_student(images, labels, rounds=2, seed=0, **common)
    noisy_student(images, labels, rounds=1, seed=1, **common)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["round_0", "round_1"]
    resumed = noisy_student(images, labels, rounds=2, seed=1, resume=True, **common)
    assert [r.reloaded for r in resumed.rounds] == [True, True, False]


def test_knn_fill_on_a_head_over_cached_features_uses_the_features():
    from ssl_multilabel.models import head_model
    from ssl_multilabel.propagation import fill_unknown, knn_graph

    rng = np.random.default_rng(1)
    features = np.concatenate([rng.normal(0, 1, (30, 8)), rng.normal(6, 1, (30, 8))]).astype("float32")
    y = np.full((60, 1), -1.0)
    y[:10], y[30:40] = 0.0, 1.0
    labels = PartialLabels.from_array(y)
    from ssl_multilabel.models import build_classifier

    head = head_model(build_classifier("small_cnn", 1, (16, 16, 1),
                                       backbone_kwargs={"filters": (4, 8), "pool_after": (0, 1)}))
    assert head.input_shape == (None, 8)
    inputs = RoundInputs(labels=labels, teacher=head, scores=None, config=None, positive_threshold=None,
                         negative_threshold=None)
    filled = KnnFill(features, k=5).propose(inputs, labels)
    expected = fill_unknown(labels, knn_graph(features, k=5), target_precision=0.9, seed=0)
    np.testing.assert_array_equal(filled.known, expected.known)
    np.testing.assert_array_equal(filled.values, expected.values)
    assert (filled.known & ~labels.known).any()
