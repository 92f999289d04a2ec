"""Photos with a frozen pretrained backbone: cached features, backbone choices, the photo path.

The backbone is a MobileNet (alpha 0.25) at 32 px with a weights file written by the test, so
nothing is downloaded; `../shared/weights` is used only by the test that names it.
"""

import json
import logging
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from _photos import SIZE, write_photo_folder
from ssl_multilabel.features import cached_features, embed, feature_key
from ssl_multilabel.labels import PartialLabels
from ssl_multilabel.models import build_classifier, frozen_backbone, head_model, with_new_head
from ssl_multilabel.teacher_student.pseudo_labels import predict_scores


def frozen_model(weights_file: Path, num_labels: int = 2) -> keras.Model:
    return build_classifier("mobilenet", num_labels, (*SIZE, 3), weights=weights_file,
                            backbone_kwargs={"alpha": 0.25}, seed=0)


def test_weights_of_another_width_name_file_and_expected_architecture(weights_file):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one clear error, not a warning per layer
        with pytest.raises(ValueError, match=r"mobilenet_0\.25_notop\.weights\.h5.*mobilenet, alpha=0\.5"):
            build_classifier("mobilenet", 2, (*SIZE, 3), weights=weights_file, backbone_kwargs={"alpha": 0.5})
        with pytest.raises(ValueError, match=r"expected the weights of mobilenet, alpha=1\.0"):
            build_classifier("mobilenet", 2, (*SIZE, 3), weights=weights_file)


def test_shared_imagenet_weights_load_at_alpha_075(weights_dir):
    path = weights_dir / "mobilenet_v1_0.75_224_imagenet_notop.weights.h5"
    model = build_classifier("mobilenet", 3, (64, 64, 3), weights=path, backbone_kwargs={"alpha": 0.75})
    reference = keras.applications.MobileNet(include_top=False, weights=None, input_shape=(64, 64, 3), alpha=0.75)
    reference.load_weights(path)
    for got, expected in zip(model.get_layer("backbone").get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(got, expected)
    assert frozen_backbone(model)


def test_head_shares_layers_and_cached_scores_equal_full_model_scores(tmp_path, weights_file):
    csv = write_photo_folder(tmp_path / "photos")
    paths = [str(tmp_path / "photos" / line.split(",")[0]) for line in csv.read_text().split()[1:]]
    model = frozen_model(weights_file)
    head = head_model(model)
    head.get_layer("scores").set_weights([np.full((head.input_shape[-1], 2), 0.01, np.float32),
                                          np.array([0.3, -0.2], np.float32)])
    features = cached_features(model, paths, cache_dir=tmp_path / "cache", image_size=SIZE, channels=3)
    cached = predict_scores(head, features)
    full = predict_scores(model, paths, image_size=SIZE, channels=3)  # raw images through backbone + head
    np.testing.assert_allclose(cached, full, atol=1e-5)
    # The closed form of the head on the features: sigmoid(0.01 * sum(f) + b).
    expected = 1.0 / (1.0 + np.exp(-(0.01 * features.astype(np.float64).sum(axis=1, keepdims=True) + [0.3, -0.2])))
    np.testing.assert_allclose(cached, expected, atol=1e-5)


def test_cache_is_reused_and_invalidated_by_what_features_depend_on(tmp_path, weights_file, monkeypatch):
    csv = write_photo_folder(tmp_path / "photos", n=6)
    paths = [str(tmp_path / "photos" / line.split(",")[0]) for line in csv.read_text().split()[1:]]
    model = frozen_model(weights_file)
    cache = tmp_path / "cache"
    first = cached_features(model, paths, cache_dir=cache, image_size=SIZE, channels=3)
    assert len(list(cache.glob("*.npy"))) == 1

    import ssl_multilabel.features as features_module

    def no_compute(*args, **kwargs):
        raise AssertionError("features were computed again")

    monkeypatch.setattr(features_module, "embed", no_compute)
    again = cached_features(frozen_model(weights_file), paths, cache_dir=cache, image_size=SIZE, channels=3)
    np.testing.assert_array_equal(again, first)  # an identical rebuilt model hits the cache
    monkeypatch.undo()

    key = feature_key(model, paths, image_size=SIZE, channels=3)
    # The same files under another path (a moved run directory, a relative spelling) share the key;
    # the rows in another order do not (features are per row).
    import shutil

    shutil.copytree(tmp_path / "photos", tmp_path / "moved")
    moved = [path.replace(str(tmp_path / "photos"), str(tmp_path / "moved")) for path in paths]
    assert feature_key(model, moved, image_size=SIZE, channels=3) == key
    assert feature_key(model, moved[::-1], image_size=SIZE, channels=3) != key
    assert feature_key(model, paths, image_size=(40, 40), channels=3) != key
    assert feature_key(model, paths, image_size=SIZE, channels=1) != key
    other = frozen_model(weights_file)
    conv = other.get_layer("backbone").get_layer("conv1")
    conv.set_weights([w + 1e-3 for w in conv.get_weights()])
    assert feature_key(other, paths, image_size=SIZE, channels=3) != key
    Image.open(paths[0]).transpose(Image.FLIP_LEFT_RIGHT).save(paths[0])  # an image file changes
    assert feature_key(model, paths, image_size=SIZE, channels=3) != key


def test_cache_refuses_a_trainable_backbone(weights_file):
    model = build_classifier("mobilenet", 2, (*SIZE, 3), weights=weights_file, backbone_kwargs={"alpha": 0.25},
                             freeze=False)
    assert not frozen_backbone(model)
    with pytest.raises(ValueError, match="trainable"):
        cached_features(model, np.zeros((2, *SIZE, 3), np.uint8), cache_dir=None)


def test_new_head_shares_the_frozen_backbone_and_adds_noise_only_in_training(weights_file):
    teacher = frozen_model(weights_file)
    student = with_new_head(teacher, 2, dropout=0.5, feature_noise=0.3, seed=1)
    assert student.get_layer("backbone") is teacher.get_layer("backbone")
    x = np.random.default_rng(0).uniform(0, 255, size=(4, *SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(embed(student, x), embed(teacher, x), atol=1e-6)
    head = head_model(student)
    f = embed(student, x)
    inference = np.asarray(head(f, training=False))
    np.testing.assert_allclose(np.asarray(head(f, training=False)), inference)  # deterministic
    assert not np.allclose(np.asarray(head(f, training=True)), inference)  # noised in training


def test_make_dataset_takes_feature_vectors():
    from ssl_multilabel.data import make_dataset

    features = np.arange(12, dtype=np.float32).reshape(6, 2)
    labels = PartialLabels.from_array(np.array([[1, -1], [0, 1], [-1, -1], [1, 0], [0, 0], [1, 1]], np.float32))
    x, y, w = next(iter(make_dataset(features, labels, batch_size=6, with_weights=True)))
    np.testing.assert_array_equal(x, features)
    np.testing.assert_array_equal(y, labels.to_array())
    np.testing.assert_array_equal(w, labels.weight)
    with pytest.raises(ValueError, match="feature vectors"):
        make_dataset(features, labels, image_size=(8, 8))


def test_fine_tune_trains_only_the_top_layers_keeps_batch_norm_and_refreezes(tmp_path, weights_file):
    import json

    from ssl_multilabel.models import load_model
    from ssl_multilabel.recipes import FineTune, ImageFolder, Recipe, Supervised, run_recipe

    csv = write_photo_folder(tmp_path / "photos", n=20)
    recipe = Recipe(
        data=ImageFolder(labels_csv=str(csv), image_size=SIZE, channels=3, test_fraction=0.2),
        steps=[Supervised(backbone="mobilenet", width=0.25, weights=str(weights_file), epochs=1),
               FineTune(layers=4, epochs=1, learning_rate=1e-2, patience=None)],
    )
    run_dir = run_recipe(recipe, tmp_path / "run")
    records = json.loads((run_dir / "state.json").read_text())["finished"]
    before, after = (load_model(run_dir / r["dir"] / "model.keras", compile=False).get_layer("backbone")
                     for r in records)
    assert not after.trainable  # frozen again: later steps cache the fine-tuned features
    top = {layer.name for layer in before.layers[-4:]}
    changed = set()
    for old, new in zip(before.layers, after.layers):
        for w_old, w_new in zip(old.get_weights(), new.get_weights()):
            if not np.array_equal(w_old, w_new):
                changed.add(old.name)
    batch_norm = {layer.name for layer in before.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert changed and changed <= top - batch_norm  # moving statistics and lower layers untouched


def test_test_backbone_gives_features_of_order_one(tmp_path, weights_file):
    """Guards the other tests: their weights file must give features that depend on the images."""
    csv = write_photo_folder(tmp_path / "photos", n=8)
    paths = [str(tmp_path / "photos" / line.split(",")[0]) for line in csv.read_text().split()[1:]]
    features = embed(frozen_model(weights_file), paths, image_size=SIZE, channels=3)
    assert 0.05 < float(features.std(axis=0).mean()) < 20.0


def test_resume_reuses_the_feature_cache_of_the_interrupted_run(tmp_path, weights_file, monkeypatch):
    import ssl_multilabel.features as features_module
    import ssl_multilabel.recipes.steps as steps_module
    from ssl_multilabel.recipes import Evaluate, ImageFolder, Recipe, Supervised, resume_run, run_recipe

    csv = write_photo_folder(tmp_path / "photos", n=20)
    recipe = Recipe(
        data=ImageFolder(labels_csv=str(csv), image_size=SIZE, channels=3, test_fraction=0.2),
        steps=[Supervised(backbone="mobilenet", width=0.25, weights=str(weights_file), epochs=1), Evaluate()],
    )

    def crash(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(steps_module, "_example_images", crash)  # Evaluate dies after scoring the test photos
    with pytest.raises(RuntimeError, match="interrupted"):
        run_recipe(recipe, tmp_path / "run")
    cached = sorted((tmp_path / "run" / "features").glob("*.npy"))
    assert len(cached) == 2  # train and test photos, each computed once
    monkeypatch.undo()
    monkeypatch.setattr(features_module, "embed", crash)  # resume must not compute features again
    resume_run(tmp_path / "run")
    assert sorted((tmp_path / "run" / "features").glob("*.npy")) == cached


def test_knn_fill_reads_photos_at_the_teachers_input_size(tmp_path):
    from ssl_multilabel.propagation import fill_unknown, knn_graph
    from ssl_multilabel.teacher_student.sources import KnnFill, RoundInputs

    csv = write_photo_folder(tmp_path / "photos", n=24)  # mixed sizes: no image_size given below
    labels = PartialLabels.load(csv)
    paths = [str(tmp_path / "photos" / i) for i in labels.ids]
    teacher = build_classifier("small_cnn", 2, (*SIZE, 3), seed=0)
    inputs = RoundInputs(labels=labels, teacher=teacher, scores=None, config=None, positive_threshold=None,
                         negative_threshold=None)
    filled = KnnFill(paths, k=5).propose(inputs, labels)
    reference = fill_unknown(labels, knn_graph(embed(teacher, paths, image_size=SIZE, channels=3), k=5),
                             target_precision=0.9, seed=0)
    np.testing.assert_array_equal(filled.known, reference.known)
    np.testing.assert_array_equal(filled.values, reference.values)


def test_a_damaged_cache_file_is_computed_again(tmp_path, weights_file):
    csv = write_photo_folder(tmp_path / "photos", n=4)
    paths = [str(tmp_path / "photos" / line.split(",")[0]) for line in csv.read_text().split()[1:]]
    model = frozen_model(weights_file)
    first = cached_features(model, paths, cache_dir=tmp_path / "cache", image_size=SIZE, channels=3)
    (cache_file,) = (tmp_path / "cache").glob("*.npy")
    cache_file.write_bytes(cache_file.read_bytes()[:50])  # truncated
    np.testing.assert_array_equal(cached_features(model, paths, cache_dir=tmp_path / "cache", image_size=SIZE,
                                                  channels=3), first)
    np.save(cache_file, np.zeros((3, 5)))  # wrong shape and dtype
    np.testing.assert_array_equal(cached_features(model, paths, cache_dir=tmp_path / "cache", image_size=SIZE,
                                                  channels=3), first)


def test_l2_adds_its_penalty_to_the_head_training_loss(weights_file, tmp_path):
    """`l2` reaches the loss the head trains on (numpy reference) and survives a save."""
    from ssl_multilabel.data import make_dataset
    from ssl_multilabel.models import load_model
    from ssl_multilabel.training import train_round

    rng = np.random.default_rng(0)
    features = rng.normal(size=(32, 256)).astype(np.float32)  # stand-ins for cached features (alpha 0.25: 256)
    values = rng.integers(0, 2, size=(32, 2)).astype(np.float32)
    values[rng.random((32, 2)) < 0.3] = -1.0  # unknown cells
    labels = PartialLabels.from_array(values)
    losses = {}
    for l2 in (0.0, 0.5):
        model = build_classifier("mobilenet", 2, (*SIZE, 3), weights=weights_file, backbone_kwargs={"alpha": 0.25},
                                 dropout=0.0, l2=l2, seed=0)
        head, _ = train_round(head_model(model), make_dataset(features, labels, batch_size=32), epochs=1,
                              pos_weight=None, seed=0, verbose=0)
        losses[l2] = float(head.evaluate(features, values, batch_size=32, verbose=0, return_dict=True)["loss"])
        p = np.clip(np.asarray(head.predict(features, verbose=0), np.float64), 1e-7, 1 - 1e-7)
        known = values >= 0
        bce = -(values * np.log(p) + (1 - values) * np.log(1 - p))[known].mean()
        kernel = model.get_layer("scores").get_weights()[0].astype(np.float64)
        np.testing.assert_allclose(losses[l2], bce + l2 * np.sum(kernel ** 2), rtol=1e-4)
    assert losses[0.5] > losses[0.0]
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras", compile=False).get_layer("scores").kernel_regularizer
    assert loaded.get_config()["l2"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"`l2`.*Received: l2=-1"):
        with_new_head(model, 2, l2=-1)


def test_neighbour_vote_layer_is_the_propagation_estimator_blended_and_survives_saving(tmp_path, weights_file):
    from ssl_multilabel.labeling import extend_model
    from ssl_multilabel.models import load_model, with_neighbour_vote
    from ssl_multilabel.propagation import KNNLabelPropagation

    csv = write_photo_folder(tmp_path / "photos", n=24)
    paths = [str(tmp_path / "photos" / line.split(",")[0]) for line in csv.read_text().split()[1:]]
    model = frozen_model(weights_file)
    features = embed(model, paths, image_size=SIZE, channels=3)
    y = PartialLabels.load(csv).to_array()[:16]
    estimator = KNNLabelPropagation(n_neighbors=4, alpha=0.5, metric="cosine").fit(features[:16], y)
    values = np.where(y >= 0, y, estimator.label_distributions_)
    voted = with_neighbour_vote(model, features[:16], values, estimator.prior_, k=4, weight=0.3)
    expected = 0.7 * predict_scores(model, paths[16:], image_size=SIZE, channels=3) + \
        0.3 * estimator.predict_proba(features[16:])
    np.testing.assert_allclose(predict_scores(voted, paths[16:], image_size=SIZE, channels=3), expected, atol=1e-5)
    # On cached features (the steps' path) and after a save / load round trip: the same scores.
    np.testing.assert_allclose(predict_scores(head_model(voted), features[16:]), expected, atol=1e-5)
    voted.save(tmp_path / "voted.keras")
    loaded = load_model(tmp_path / "voted.keras")
    np.testing.assert_allclose(predict_scores(loaded, paths[16:], image_size=SIZE, channels=3), expected, atol=1e-5)
    assert frozen_backbone(loaded)
    # Extending the model to more labels starts from its head: the vote holds the old labels only.
    extended = extend_model(loaded, ["red", "blue"], ["green", "red", "blue"])
    np.testing.assert_allclose(predict_scores(extended, paths[16:], image_size=SIZE, channels=3)[:, 1:],
                               predict_scores(model, paths[16:], image_size=SIZE, channels=3), atol=1e-6)
    with pytest.raises(ValueError, match=r"values \(16, 3\).*\(n, 2\)"):
        with_neighbour_vote(model, features[:16], np.zeros((16, 3)), estimator.prior_)
    with pytest.raises(ValueError, match="without a neighbour vote"):
        with_neighbour_vote(voted, features[:16], values, estimator.prior_)


def test_neighbour_vote_step_blends_the_previous_model_with_a_vote_of_the_training_photos(tmp_path, weights_file,
                                                                                        caplog):
    from ssl_multilabel.models import load_model
    from ssl_multilabel.propagation import KNNLabelPropagation
    from ssl_multilabel.recipes import Evaluate, Export, ImageFolder, NeighbourVote, Recipe, Supervised, run_recipe

    csv = write_photo_folder(tmp_path / "photos", n=30)
    recipe = Recipe(
        data=ImageFolder(labels_csv=str(csv), image_dir=str(csv.parent), image_size=SIZE, channels=3, test_fraction=0.2),
        steps=[Supervised(backbone="mobilenet", width=0.25, weights=str(weights_file), epochs=2),
               NeighbourVote(k=4, alpha=0.5, weight=0.5, check=False), Evaluate(), Export()],
    )
    with caplog.at_level(logging.INFO, logger="ssl_multilabel.recipes.steps"):
        run_dir = run_recipe(recipe, tmp_path / "run")
    given = PartialLabels.load(csv)
    train_ids = PartialLabels.load(run_dir / "export" / "labels.csv").ids
    test_ids = [i for i in given.ids if i not in set(train_ids)]
    assert test_ids and f"the {len(train_ids)} training rows; the {len(test_ids)} test rows are not in it" in caplog.text
    supervised = load_model(next(run_dir.glob("steps/*supervised/model.keras")))
    photo = {i: str(csv.parent / i) for i in given.ids}
    train_features = embed(supervised, [photo[i] for i in train_ids], image_size=SIZE, channels=3)
    test_paths = [photo[i] for i in test_ids]
    y = given.to_array()[[list(given.ids).index(i) for i in train_ids]]  # human cells of the training rows
    vote = KNNLabelPropagation(n_neighbors=4, alpha=0.5, metric="cosine").fit(train_features, y)
    expected = 0.5 * predict_scores(supervised, test_paths, image_size=SIZE, channels=3) + \
        0.5 * vote.predict_proba(embed(supervised, test_paths, image_size=SIZE, channels=3))
    evaluated = np.load(next(run_dir.glob("steps/*evaluate/predictions.npz")))["y_score"]
    np.testing.assert_allclose(evaluated, expected, atol=1e-5)


def test_neighbour_vote_step_without_validation_rows_checks_on_the_probe_only(tmp_path, weights_file, caplog):
    from ssl_multilabel.recipes import ImageFolder, NeighbourVote, Recipe, Supervised, run_recipe

    csv = write_photo_folder(tmp_path / "photos", n=30)
    recipe = Recipe(
        data=ImageFolder(labels_csv=str(csv), image_dir=str(csv.parent), image_size=SIZE, channels=3, test_fraction=0.2),
        steps=[Supervised(backbone="mobilenet", width=0.25, weights=str(weights_file), epochs=2),
               NeighbourVote(k=4, validation_fraction=0.0)],
    )
    with caplog.at_level(logging.INFO, logger="ssl_multilabel.recipes.steps"):
        run_dir = run_recipe(recipe, tmp_path / "run")
    metrics = json.loads(next(run_dir.glob("steps/*neighbour_vote/metrics.json")).read_text())
    assert metrics["validation_reason"] == "no validation row with a known cell to check it on"
    assert "the probe's check" in caplog.text  # the cross-fitted check still ran


def test_neighbour_vote_step_keeps_the_model_when_the_check_refuses_the_vote(tmp_path, weights_file, monkeypatch,
                                                                             caplog):
    from ssl_multilabel.models import load_model
    from ssl_multilabel.recipes import (
        Evaluate, Export, ImageFolder, NeighbourVote, Recipe, Report, Supervised, run_recipe, steps,
    )

    refused = {"keep": False, "reason": "it lowers the cross-fitted mAP by more than twice the standard error",
               "mAP_probe": 0.8, "mAP_blend": 0.7, "difference": -0.1, "difference_se": 0.01, "rows": 24}
    monkeypatch.setattr(steps, "check_neighbour_vote", lambda *args, **kwargs: refused)
    csv = write_photo_folder(tmp_path / "photos", n=30)
    recipe = Recipe(
        data=ImageFolder(labels_csv=str(csv), image_dir=str(csv.parent), image_size=SIZE, channels=3, test_fraction=0.2),
        steps=[Supervised(backbone="mobilenet", width=0.25, weights=str(weights_file), epochs=2),
               NeighbourVote(k=4), Evaluate(), Export(), Report()],
    )
    run_dir = run_recipe(recipe, tmp_path / "run")
    assert "no vote: the probe's check: it lowers the cross-fitted mAP" in caplog.text
    assert "no vote: the check showed it hurting (cross-fitted mAP -10.0 ± 1.0 points" in (
        run_dir / "report.html").read_text()
    assert not list(run_dir.glob("steps/*neighbour_vote/model.keras"))
    record = next(r for r in json.loads((run_dir / "state.json").read_text())["finished"] if r["name"] == "neighbour_vote")
    assert record["metrics"]["keep"] is False and record["metrics"]["images_stored"] == 0
    # Evaluate scored the supervised model itself, and Export wrote it.
    given = PartialLabels.load(csv)
    train_ids = set(PartialLabels.load(run_dir / "export" / "labels.csv").ids)
    test_paths = [str(csv.parent / i) for i in given.ids if i not in train_ids]
    supervised = load_model(next(run_dir.glob("steps/*supervised/model.keras")))
    expected = predict_scores(supervised, test_paths, image_size=SIZE, channels=3)
    evaluated = np.load(next(run_dir.glob("steps/*evaluate/predictions.npz")))["y_score"]
    np.testing.assert_allclose(evaluated, expected, atol=1e-6)
    exported = load_model(run_dir / "export" / "model.keras")
    np.testing.assert_allclose(predict_scores(exported, test_paths, image_size=SIZE, channels=3), expected, atol=1e-6)


def test_neighbour_vote_step_checks_the_model_on_the_validation_rows_its_training_held_out(tmp_path, weights_file,
                                                                                           monkeypatch, caplog):
    from ssl_multilabel.labels import validation_split
    from ssl_multilabel.models import load_model
    from ssl_multilabel.recipes import Evaluate, ImageFolder, NeighbourVote, Recipe, Supervised, run_recipe, steps
    from ssl_multilabel.recipes.runner import step_seed

    seen = {}

    def refuse(features, labels, scores, val_rows, **settings):
        seen.update(labels=labels, scores=scores, val_rows=val_rows, settings=settings)
        return {"keep": False, "reason": "it lowers the model's validation AUC by more than twice the standard error",
                "AUC_model": 0.9, "AUC_blend": 0.8, "difference": -0.1, "difference_se": 0.02, "rows": len(val_rows)}

    monkeypatch.setattr(steps, "check_neighbour_vote", lambda *args, **kwargs: {"keep": True, "reason": "kept"})
    monkeypatch.setattr(steps, "check_neighbour_vote_on_validation", refuse)
    csv = write_photo_folder(tmp_path / "photos", n=40)
    recipe = Recipe(
        data=ImageFolder(labels_csv=str(csv), image_dir=str(csv.parent), image_size=SIZE, channels=3, test_fraction=0.2),
        steps=[Supervised(backbone="mobilenet", width=0.25, weights=str(weights_file), epochs=2, validation_fraction=0.2),
               NeighbourVote(k=4, validation_fraction=0.2), Evaluate()],
        seed=3,
    )
    run_dir = run_recipe(recipe, tmp_path / "run")
    assert "no vote: the model's check: it lowers the model's validation AUC" in caplog.text
    assert not list(run_dir.glob("steps/*neighbour_vote/model.keras"))
    record = next(r for r in json.loads((run_dir / "state.json").read_text())["finished"] if r["name"] == "neighbour_vote")
    assert record["metrics"]["keep"] is False and record["metrics"]["validation_difference"] == -0.1
    # The rows the Supervised step held out (the one validation split, the run's split seed) and the
    # model's own scores of those photos.
    table = seen["labels"]
    _, expected_rows = validation_split(table, 0.2, step_seed(3, 0))
    assert len(expected_rows) > 0
    np.testing.assert_array_equal(seen["val_rows"], expected_rows)
    supervised = load_model(next(run_dir.glob("steps/*supervised/model.keras")))
    paths = [str(csv.parent / table.ids[i]) for i in expected_rows]
    np.testing.assert_allclose(seen["scores"], predict_scores(supervised, paths, image_size=SIZE, channels=3), atol=1e-5)
    assert seen["settings"]["seed"] == step_seed(3, 1)


def test_a_student_width_on_a_frozen_backbone_is_named_as_unused(tmp_path, weights_file, caplog):
    from ssl_multilabel.recipes import ImageFolder, NoisyStudent, Recipe, Supervised, run_recipe

    csv = write_photo_folder(tmp_path / "photos", n=20)
    recipe = Recipe(
        data=ImageFolder(labels_csv=str(csv), image_size=SIZE, channels=3, test_fraction=0.0),
        steps=[Supervised(backbone="mobilenet", width=0.25, weights=str(weights_file), epochs=1, flip_shift=0.2),
               NoisyStudent(epochs=1, rounds=1, width=1.5, augment_magnitude=0.5, flip_shift=0.125)],
    )
    with caplog.at_level(logging.WARNING, logger="ssl_multilabel.recipes.steps"):
        run_recipe(recipe, tmp_path / "run")
    assert ("noisy_student: width=1.5 is not used: it widens a small CNN student, and this student is a new head "
            "over the teacher's frozen backbone.") in caplog.text
    # The image noise of both steps cannot reach cached features: named too (it was dropped silently).
    assert "supervised: flip_shift=0.2 is not used: the backbone is frozen" in caplog.text
    assert ("noisy_student: augment_magnitude=0.5 and flip_shift=0.125 are not used: the backbone is frozen"
            in caplog.text)
