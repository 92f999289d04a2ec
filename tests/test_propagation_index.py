"""IVF / IVF-PQ internals and `index="auto"`'s recall check, against numpy brute force."""

import logging
import pickle

import numpy as np
import pytest

from ssl_multilabel.propagation import NeighborIndex, knn_search, recall_at_k
from ssl_multilabel.propagation import graph


def _clustered(n=2000, d=16, centres=20, noise=0.3, seed=5):
    rng = np.random.default_rng(seed)
    middle = rng.normal(size=(centres, d))
    return (middle[rng.integers(0, centres, n)] + noise * rng.normal(size=(n, d))).astype(np.float32)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_nearest_centroid_matches_brute_force(metric):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(3000, 6)).astype(np.float32)
    centroids = rng.normal(size=(37, 6)).astype(np.float32)
    if metric == "cosine":
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        expected = np.argmax(points.astype(np.float64) @ centroids.T.astype(np.float64), axis=1)
    else:
        d2 = ((points[:, None, :].astype(np.float64) - centroids[None]) ** 2).sum(-1)
        expected = np.argmin(d2, axis=1)
    found = graph._nearest_centroid(points, centroids, metric, n_threads=2)
    np.testing.assert_array_equal(found, expected)


def test_kmeans_recovers_well_separated_centres():
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=np.float32)
    points = (centres[rng.integers(0, 3, 600)] + 0.1 * rng.normal(size=(600, 2))).astype(np.float32)
    found = graph._kmeans(points, 3, "l2", seed=0)
    # Each true centre has one k-means centroid within the noise level.
    distance = np.linalg.norm(found[:, None, :] - centres[None], axis=-1)
    assert sorted(distance.argmin(axis=0).tolist()) == [0, 1, 2]
    assert distance.min(axis=0).max() < 0.05


def test_ivfpq_reranked_scores_are_exact_squared_distances():
    X = _clustered()
    scores, indices, neighbor_index = knn_search(X, k=5, index="ivfpq", nlist=20, nprobe=8)
    assert neighbor_index.kind == "ivfpq"
    rows = np.repeat(np.arange(len(X)), 5)[indices.ravel() >= 0]
    cols = indices.ravel()[indices.ravel() >= 0]
    exact = ((X[rows].astype(np.float64) - X[cols]) ** 2).sum(1)
    np.testing.assert_allclose(scores.ravel()[indices.ravel() >= 0], exact, rtol=1e-4, atol=1e-4)


def test_ivfpq_reaches_recall_on_clustered_data():
    X = _clustered()
    _, exact, _ = knn_search(X, k=10, index="flat")
    _, approx, _ = knn_search(X, k=10, index="ivfpq", nlist=20, nprobe=8)
    assert recall_at_k(approx, exact) >= 0.95


def test_ivfpq_stores_codes_not_features():
    X = _clustered(n=4000, d=32)
    index = NeighborIndex(X, index="ivfpq", nlist=20)
    assert index.pq_m == 8  # largest divisor of 32 that is at most 32 / 4
    assert index._index.code_size == 8
    assert graph._faiss().serialize_index(index._index).nbytes < X.nbytes / 2


def test_ivfpq_pickles():
    X = _clustered(n=600)
    index = NeighborIndex(X, index="ivfpq", nlist=4)
    clone = pickle.loads(pickle.dumps(index))
    for a, b in zip(index.search(X[:10], 5), clone.search(X[:10], 5)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pq_m": 5}, r"`pq_m` must be a positive divisor of n_features=16; got 5"),
        ({"refine": 0}, r"`refine` must be a positive integer; got 0"),
    ],
)
def test_ivfpq_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NeighborIndex(_clustered(n=600), index="ivfpq", nlist=4, **kwargs)


def test_ivfpq_needs_256_training_points():
    with pytest.raises(ValueError, match=r"index='ivfpq' needs at least 256 points to train its codebooks; got 200"):
        NeighborIndex(_clustered(n=200), index="ivfpq", nlist=2)


def test_auto_raises_nprobe_until_sampled_recall_reaches_target(monkeypatch):
    monkeypatch.setattr(graph, "EXACT_SEARCH_LIMIT", 100)
    X = _clustered(n=3000, centres=60, noise=1.5)
    _, exact, _ = knn_search(X, k=10, index="flat")
    _, at_16, _ = knn_search(X, k=10, index="ivf", nlist=200, nprobe=16)
    assert recall_at_k(at_16, exact) < graph.AUTO_RECALL_TARGET  # the default nprobe is not enough here
    _, approx, neighbor_index = knn_search(X, k=10, nlist=200)
    assert neighbor_index.kind == "ivf" and neighbor_index.nprobe > 16
    assert neighbor_index.recall_estimate >= graph.AUTO_RECALL_TARGET
    # The sampled estimate holds for the whole graph (up to sampling noise).
    assert recall_at_k(approx, exact) >= graph.AUTO_RECALL_TARGET - 0.02


def test_auto_warns_when_the_nprobe_cap_does_not_reach_the_target(monkeypatch, caplog):
    monkeypatch.setattr(graph, "EXACT_SEARCH_LIMIT", 100)
    X = np.random.default_rng(3).normal(size=(3000, 32)).astype(np.float32)  # no clusters at all
    with caplog.at_level(logging.WARNING, logger=graph.__name__):
        _, _, neighbor_index = knn_search(X, k=10, nlist=64)
    assert neighbor_index.nprobe == 16  # the cap nlist / 4
    assert neighbor_index.recall_estimate < graph.AUTO_RECALL_TARGET
    assert "below 0.95" in caplog.text and "index='flat'" in caplog.text


def test_explicit_ivf_keeps_its_nprobe(monkeypatch):
    monkeypatch.setattr(graph, "EXACT_SEARCH_LIMIT", 100)
    X = np.random.default_rng(3).normal(size=(1000, 32)).astype(np.float32)
    _, _, neighbor_index = knn_search(X, k=10, index="ivf", nlist=64, nprobe=2)
    assert neighbor_index.nprobe == 2 and neighbor_index.recall_estimate is None


def test_ivf_needs_a_training_point_per_cell():
    with pytest.raises(ValueError, match=r"`train_size` must be at least nlist=20; got 10"):
        NeighborIndex(_clustered(n=600), index="ivf", nlist=20, train_size=10)
