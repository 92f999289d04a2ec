"""Tests of ssl_multilabel.models: preprocessing, classifier, embedding model, pretrained weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ssl_multilabel.models import (
    BACKBONES,
    BackbonePreprocessing,
    build_classifier,
    build_embedding_model,
    build_small_cnn,
    load_model,
    outputs_logits,
)



def _images(n: int, size: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, channels)).astype("float32")


# === Preprocessing ===


@pytest.mark.parametrize(
    "mode, reference",
    [
        ("unit", lambda x: x / 255.0),
        ("tf", lambda x: keras.applications.mobilenet.preprocess_input(x.copy())),
        ("caffe", lambda x: keras.applications.resnet50.preprocess_input(x.copy())),
        ("none", lambda x: x),
    ],
)
def test_preprocessing_matches_keras_applications(mode, reference):
    x = _images(3, 5, 3)
    out = np.asarray(BackbonePreprocessing(mode)(x))
    np.testing.assert_allclose(out, reference(x), rtol=1e-6, atol=1e-4)


def test_preprocessing_repeats_grayscale_to_rgb():
    x = _images(2, 4, 1)
    out = np.asarray(BackbonePreprocessing("tf", channels=3)(x))
    np.testing.assert_allclose(out, np.repeat(x, 3, axis=-1) / 127.5 - 1.0, rtol=1e-6, atol=1e-6)


def test_preprocessing_rejects_unknown_mode():
    with pytest.raises(ValueError, match="`mode`.*Received: mode='imagenet'"):
        BackbonePreprocessing("imagenet")


# === Classifier and embedding ===


def test_small_cnn_classifier_shapes_and_embedding_is_pooled_backbone():
    model = build_classifier("small_cnn", num_labels=4, input_shape=(16, 16, 1), dropout=0.0)
    assert model.output_shape == (None, 4)
    x = _images(5, 16, 1)
    scores = model.predict(x, verbose=0)
    assert np.all((scores > 0) & (scores < 1))  # sigmoid probabilities

    embedding = build_embedding_model(model).predict(x, verbose=0)
    feature_map = np.asarray(model.get_layer("backbone")(x / 255.0))  # rescaling happens in-model
    np.testing.assert_allclose(embedding, feature_map.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    # The head is a plain dense layer on the embedding.
    kernel, bias = model.get_layer("scores").get_weights()
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-(embedding @ kernel + bias))), rtol=1e-4, atol=1e-6)


def test_logit_output_and_outputs_logits():
    assert outputs_logits(build_classifier("small_cnn", 2, (8, 8, 1), activation=None))
    assert not outputs_logits(build_classifier("small_cnn", 2, (8, 8, 1)))


def test_same_seed_same_initial_weights():
    a = build_classifier("small_cnn", 3, (8, 8, 1), seed=5).get_weights()
    b = build_classifier("small_cnn", 3, (8, 8, 1), seed=5).get_weights()
    c = build_classifier("small_cnn", 3, (8, 8, 1), seed=6).get_weights()
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


def test_small_cnn_default_geometry():
    cnn = build_small_cnn((56, 56, 1))
    assert cnn.output_shape == (None, 7, 7, 128)
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in cnn.layers) == 6


def test_keras_round_trip_with_custom_layers(tmp_path):
    # freeze=True also covers the nested backbone called with training=False.
    model = build_classifier("small_cnn", 3, (16, 16, 1), freeze=True)
    x = _images(2, 16, 1)
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = load_model(path)
    assert isinstance(reloaded.get_layer("preprocessing"), BackbonePreprocessing)
    assert not reloaded.get_layer("backbone").trainable
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # A truncated copy (an interrupted download): Keras said "File not found" of a file that exists.
    damaged = tmp_path / "damaged.keras"
    damaged.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"damaged\.keras' is not a \.keras model .*it is damaged"):
        load_model(damaged)


# One family per preprocessing mode (EfficientNetB1-B3 share B0's code path and take seconds each).
@pytest.mark.parametrize("backbone", ["mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "resnet50"])
def test_families_build_and_use_their_preprocessing(backbone):
    model = build_classifier(backbone, num_labels=3, input_shape=(32, 32, 1), freeze=False)
    assert model.output_shape == (None, 3)
    assert model.get_layer("preprocessing").mode == BACKBONES[backbone].mode
    assert model.get_layer("backbone").input_shape[-1] == 3  # grayscale repeated inside


# === Input errors ===


def test_unknown_backbone():
    with pytest.raises(ValueError, match="`backbone`.*Received: backbone='vgg'"):
        build_classifier("vgg", 3)


def test_bad_num_labels_and_shape():
    with pytest.raises(ValueError, match="num_labels=0"):
        build_classifier("small_cnn", 0)
    with pytest.raises(ValueError, match="at least 32x32"):
        build_classifier("mobilenet", 3, (16, 16, 3))
    with pytest.raises(ValueError, match="1 \\(grayscale.*or 3 channels"):
        build_classifier("resnet50", 3, (32, 32, 4))


def test_missing_weights_file(tmp_path):
    with pytest.raises(ValueError, match="file not found"):
        build_classifier("mobilenet", 3, (32, 32, 3), weights=tmp_path / "nope.weights.h5")
    with pytest.raises(ValueError, match="small CNN has no pretrained weights"):
        build_classifier("small_cnn", 3, weights="imagenet")


def test_imagenet_download_without_a_network_says_what_to_do(monkeypatch, capsys):
    """Keras raises a bare Exception when the download fails; the library turns it into one
    ConnectionError that names the backbone and the local-file way, and the CLI prints one line."""
    failure = "URL fetch failure on https://storage.googleapis.com/x_no_top.h5: None -- [Errno -3] name resolution"

    def offline(**kwargs):
        if kwargs.get("weights") == "imagenet":
            raise Exception(failure)
        raise AssertionError("only the imagenet download is faked")

    monkeypatch.setattr(keras.applications, "MobileNet", offline)
    with pytest.raises(ConnectionError) as caught:
        build_classifier("mobilenet", 3, (32, 32, 3), weights="imagenet")
    assert str(caught.value) == (
        f"Downloading the ImageNet weights of backbone 'mobilenet' failed ({failure}). Without a network, give a local "
        "weights file of the same architecture instead of 'imagenet' (a *_notop .weights.h5 file; in a recipe: "
        "--set supervised.weights=PATH).")
    monkeypatch.setattr(keras.applications, "MobileNet", lambda **kwargs: (_ for _ in ()).throw(Exception("other")))
    with pytest.raises(Exception, match="^other$"):  # any other failure is Keras' own
        build_classifier("mobilenet", 3, (32, 32, 3), weights="imagenet")


def test_embedding_model_needs_embedding_layer():
    inputs = keras.Input((3,))
    with pytest.raises(ValueError, match="no layer named 'embedding'"):
        build_embedding_model(keras.Model(inputs, keras.layers.Dense(2)(inputs)))


# === Pretrained weights from ../shared/weights ===

NOTOP = "mobilenet_v1_0.75_224_imagenet_notop.weights.h5"


@pytest.mark.shared
def test_weights_path_matches_keras_applications(weights_dir):
    path = weights_dir / NOTOP
    if not path.is_file():
        pytest.skip(f"{path} not found")
    x = _images(3, 64, 1)
    model = build_classifier("mobilenet", 5, (64, 64, 1), weights=path, backbone_kwargs={"alpha": 0.75}, dropout=0.0)
    ours = build_embedding_model(model).predict(x, verbose=0)

    reference = keras.applications.MobileNet(
        alpha=0.75, include_top=False, weights=str(path), input_shape=(64, 64, 3), pooling="avg"
    )
    expected = reference.predict(keras.applications.mobilenet.preprocess_input(np.repeat(x, 3, axis=-1)), verbose=0)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)

    # Different from a random initialisation, so the file really was loaded.
    random = build_classifier("mobilenet", 5, (64, 64, 1), backbone_kwargs={"alpha": 0.75}, freeze=True)
    assert not np.allclose(build_embedding_model(random).predict(x, verbose=0), expected, atol=1e-2)


@pytest.mark.shared
def test_pretrained_backbone_is_frozen_in_inference_mode(weights_dir):
    path = weights_dir / NOTOP
    if not path.is_file():
        pytest.skip(f"{path} not found")
    model = build_classifier("mobilenet", 4, (32, 32, 3), weights=path, backbone_kwargs={"alpha": 0.75}, dropout=0.0)
    assert not model.get_layer("backbone").trainable
    assert [w.path for w in model.trainable_weights] == ["scores/kernel", "scores/bias"]
    x = _images(4, 32, 3)
    # training=True would use batch statistics in the batch-norm layers if they were not frozen.
    np.testing.assert_allclose(np.asarray(model(x, training=True)), np.asarray(model(x, training=False)), atol=1e-6)


def test_registry_lists_the_required_families():
    required = {"mobilenet", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "resnet50"}
    required |= {f"efficientnet_b{i}" for i in range(4)}
    assert required <= set(BACKBONES)


@pytest.mark.shared
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_wrong_width_weights_file_names_the_file(weights_dir):
    path = weights_dir / NOTOP
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with pytest.raises(ValueError, match=r"notop\.weights\.h5'.*expected the weights of mobilenet, alpha=1\.0 without its top"):
        build_classifier("mobilenet", 3, (32, 32, 3), weights=path)  # alpha=1.0 does not fit


def test_recipe_backbone_choices_are_the_families_of_build_classifier():
    import typing

    from ssl_multilabel._backbone_names import BACKBONE_NAMES
    from ssl_multilabel.models import BACKBONES
    from ssl_multilabel.recipes import Supervised

    assert tuple(BACKBONES) == BACKBONE_NAMES
    hint = typing.get_type_hints(Supervised)["backbone"]
    assert typing.get_args(hint) == BACKBONE_NAMES
    assert Supervised(backbone="efficientnet_b3").backbone == "efficientnet_b3"
