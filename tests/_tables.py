"""A tiny labels CSV + embeddings pair (two clusters, 30 % of cells known) for run-directory tests."""

from pathlib import Path

import numpy as np

from ssl_multilabel.labels import PartialLabels


def tiny_embedding_inputs(folder: Path) -> tuple[Path, Path]:
    """Write `labels.csv` (20 rows, labels a / b) and `emb.npy` into a new `folder`; return both paths."""
    rng = np.random.default_rng(0)
    cluster = np.arange(20) % 2
    x = rng.normal(size=(20, 3)) * 0.1 + (2.0 * cluster[:, None] - 1.0) * 3.0
    truth = np.stack([cluster, 1 - cluster], axis=1).astype(float)
    partial = np.where(rng.random(truth.shape) < 0.3, truth, -1.0)
    partial[:2] = truth[:2]
    folder.mkdir()
    PartialLabels.from_array(partial, ["a", "b"], [f"r{i}" for i in range(20)]).save(folder / "labels.csv")
    np.save(folder / "emb.npy", x)
    return folder / "labels.csv", folder / "emb.npy"
