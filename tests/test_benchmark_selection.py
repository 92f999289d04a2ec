"""The settings of the photo recipe are chosen without the test photos (issue "Honest quality").

`benchmarks/photos_ablation.py` picks the recipe's settings on a dev split of B7's training
photos. This test runs it on synthetic features and records every row it takes from the label
table: none may be a test row. (Comparing scores of runs with and without the test labels would
say the same, but TensorFlow's multi-threaded CPU kernels are not bit-reproducible across runs.)
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

    table = PartialLabels.from_array(truth, ids=[f"{i}.jpg" for i in range(n)])
    monkeypatch.setattr(photos, "load_photos",
                        lambda: ([f"{i}.jpg" for i in range(n)], table, np.arange(n_train), np.arange(n_train, n)))
    monkeypatch.setattr(photos_ablation, "RESULTS", tmp_path / "ablation.json")
    rows_read: list[int] = []
    subset = PartialLabels.subset

    def spy(self, rows, **kwargs):
        if self is table:
            rows_read.extend(np.asarray(rows).ravel().tolist())
        return subset(self, rows, **kwargs)

    monkeypatch.setattr(PartialLabels, "subset", spy)

    def run() -> tuple[dict, list[int]]:
        photos_ablation.main(["--seeds", "0", "--protocols", "random-cells 0.3", "--variants", "b",
                              "bc+ns noise0.5 drop0.5 r1"])
        import json

        return json.loads((tmp_path / "ablation.json").read_text()), rows_read

    return run, n_train


def test_photo_ablation_never_reads_the_test_labels(ablation):
    run, n_train = ablation
    results, rows_read = run()
    assert set(results) == {"random-cells 0.3 | seed 0 | b", "random-cells 0.3 | seed 0 | bc+ns noise0.5 drop0.5 r1"}
    assert all(np.isfinite(v) for v in results.values())
    assert rows_read and max(rows_read) < n_train  # only training rows (pool and dev) were taken
