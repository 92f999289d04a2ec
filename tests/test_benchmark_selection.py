"""The settings of the photo recipe are chosen without the test photos (issue "Honest quality").

`benchmarks/photos_ablation.py` picks the recipe's settings on a dev split of B7's training
photos. This test runs it on synthetic features twice: once with the true labels of the test
rows, once with every test cell unknown. Identical results mean the selection never read them.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

from ssl_multilabel.labels import PartialLabels

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.fixture()
def ablation(monkeypatch, tmp_path):
    import photos
    import photos_ablation

    import ssl_multilabel.features as features_module

    rng = np.random.default_rng(0)
    n, n_train = 80, 60
    truth = (rng.random((n, 3)) < 0.4).astype(np.float32)
    truth[np.arange(n), rng.integers(0, 3, n)] = 1.0
    features = (truth @ rng.normal(size=(3, 16)) + 0.5 * rng.normal(size=(n, 16))).astype(np.float32)

    def tiny_head_model():
        import keras

        from ssl_multilabel.models import build_classifier

        model = build_classifier("small_cnn", 3, (8, 8, 1), backbone_kwargs={"filters": (16,), "pool_after": ()})
        model.get_layer("backbone").trainable = False
        keras.utils.set_random_seed(0)
        return model

    monkeypatch.setattr(photos, "backbone_model", tiny_head_model)
    monkeypatch.setattr(photos, "EPOCHS", 4)
    monkeypatch.setattr(photos, "PATIENCE", 2)
    monkeypatch.setattr(photos_ablation, "N_DEV", 15)
    monkeypatch.setattr(features_module, "cached_features", lambda *args, **kwargs: features)

    def run(test_cells_known: bool) -> dict:
        y = truth.copy()
        if not test_cells_known:
            y[n_train:] = -1.0
        table = PartialLabels.from_array(y, ids=[f"{i}.jpg" for i in range(n)])
        monkeypatch.setattr(photos, "load_photos",
                            lambda: ([f"{i}.jpg" for i in range(n)], table, np.arange(n_train), np.arange(n_train, n)))
        results = tmp_path / f"ablation_{test_cells_known}.json"
        monkeypatch.setattr(photos_ablation, "RESULTS", results)
        photos_ablation.main(["--seeds", "0", "--protocols", "random-cells 0.3", "--variants", "b",
                              "bc+ns noise0.5 drop0.5 r1"])
        import json

        return json.loads(results.read_text())

    return run


def test_photo_ablation_never_reads_the_test_labels(ablation):
    with_test, without_test = ablation(True), ablation(False)
    assert set(with_test) == {"random-cells 0.3 | seed 0 | b", "random-cells 0.3 | seed 0 | bc+ns noise0.5 drop0.5 r1"}
    for key, value in with_test.items():
        assert np.isfinite(value)
        assert without_test[key] == pytest.approx(value, abs=1e-6)
