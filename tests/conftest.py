"""Shared test fixtures: hypothesis profiles and the optional ../shared folder."""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# CI runs at least 200 examples per property; locally the default profile is faster.
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

_SHARED = Path(os.environ.get("SSL_MULTILABEL_SHARED", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The optional ../shared folder; tests that use it skip cleanly when it is absent."""
    if not _SHARED.is_dir():
        pytest.skip(f"shared data folder not found at {_SHARED}")
    return _SHARED


@pytest.fixture(scope="session")
def fashion_mnist_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "fashion-mnist"
    if not (path / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST raw files not found in {path}")
    return path


@pytest.fixture(scope="session")
def mulan_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "mulan"
    if not path.is_dir():
        pytest.skip(f"MULAN data not found in {path}")
    return path


@pytest.fixture(scope="session")
def weights_dir(shared_dir: Path) -> Path:
    path = shared_dir / "weights"
    if not path.is_dir():
        pytest.skip(f"pretrained weight files not found in {path}")
    return path


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory) -> Path:
    """A local `*_notop.weights.h5` of MobileNet alpha 0.25 at 32 px (random weights, fixed seed).

    The photo-path tests load it as a user loads a downloaded ImageNet file; nothing is fetched.
    """
    import keras

    import numpy as np

    keras.utils.set_random_seed(0)
    backbone = keras.applications.MobileNet(include_top=False, weights=None, input_shape=(32, 32, 3), alpha=0.25)
    # Random weights shrink activations to ~1e-18 by the last block; batch-norm statistics taken
    # from a batch of noise (data-dependent initialisation) keep the features of order 1, so the
    # tests see features, gradients and fine-tuning that depend on the images.
    x = np.random.default_rng(0).uniform(-1, 1, size=(32, 32, 32, 3)).astype(np.float32)
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            inputs = np.asarray(keras.Model(backbone.input, layer.input)(x))
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, inputs.mean(axis=(0, 1, 2)), inputs.var(axis=(0, 1, 2)) + 1e-3])
    path = tmp_path_factory.mktemp("weights") / "mobilenet_0.25_notop.weights.h5"
    backbone.save_weights(path)
    return path


@pytest.fixture(autouse=True)
def _drop_cli_log_handler():
    """`cli.main` logs to the stderr of its test; later log calls must not write to that closed stream."""
    yield
    import logging

    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, "_ssl_multilabel", False)]


@pytest.fixture
def umask():
    """Set the process umask for one test, and restore it after (yields `os.umask` to set it)."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)
