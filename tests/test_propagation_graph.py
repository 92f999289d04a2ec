"""knn_graph / NeighborIndex against brute-force numpy references."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from ssl_multilabel.propagation import NeighborIndex, knn_graph, knn_search, recall_at_k


def _brute_force_graph(X, k, gamma, metric="cosine"):
    """Dense reference: exact neighbours, s**gamma weights, max-symmetrised."""
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    if metric == "cosine":
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        sim = Xn @ Xn.T
        np.fill_diagonal(sim, -np.inf)
        order = np.argsort(-sim, axis=1)[:, :k]
        weights = np.clip(np.take_along_axis(sim, order, axis=1), 0, 1) ** gamma
    else:
        d2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(d2, np.inf)
        order = np.argsort(d2, axis=1)[:, :k]
        near = np.take_along_axis(d2, order, axis=1)
        weights = np.exp(-near / near[:, -1:]) ** gamma
    W = np.zeros((n, n))
    W[np.repeat(np.arange(n), k), order.ravel()] = weights.ravel()
    return np.maximum(W, W.T)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_knn_graph_matches_brute_force(metric):
    X = np.random.default_rng(0).normal(size=(60, 5))
    W = knn_graph(X, k=4, metric=metric, index="flat", gamma=3.0)
    assert sp.isspmatrix_csr(W) or isinstance(W, sp.csr_array)
    np.testing.assert_allclose(W.toarray(), _brute_force_graph(X, 4, 3.0, metric), rtol=1e-5, atol=1e-6)
    assert abs(W - W.T).max() == 0
    assert W.diagonal().max() == 0


def test_sum_symmetrisation_is_w_plus_wt():
    X = np.random.default_rng(1).normal(size=(40, 3))
    W_max = knn_graph(X, k=3, metric="cosine", index="flat", gamma=3.0, symmetrize="max").toarray()
    W_sum = knn_graph(X, k=3, metric="cosine", index="flat", gamma=3.0, symmetrize="sum").toarray()
    # Edges found in one direction only are equal in both; mutual edges are doubled by "sum".
    directed = _brute_force_graph(X, 3, 3.0)
    mutual = (W_sum > W_max + 1e-7)
    np.testing.assert_allclose(W_sum[mutual], 2 * directed[mutual], rtol=1e-5)


def test_duplicates_drop_self_and_keep_k_neighbours():
    base = np.random.default_rng(2).normal(size=(10, 4))
    X = np.repeat(base, 4, axis=0)  # every point has 3 exact duplicates
    scores, indices, _ = knn_search(X, k=3, metric="cosine", index="flat")
    rows = np.arange(len(X))[:, None]
    assert (indices != rows).all() and (indices >= 0).all()
    # The 3 nearest other points are the duplicates (similarity 1).
    np.testing.assert_array_equal(indices // 4, np.repeat(np.arange(10), 4)[:, None].repeat(3, 1))
    np.testing.assert_allclose(scores, 1.0, atol=1e-6)
    W = knn_graph(X, k=3, index="flat")
    assert W.diagonal().max() == 0
    assert (np.diff(W.indptr) == 3).all()


def test_k_at_least_n_warns_and_links_everyone():
    X = np.random.default_rng(3).normal(size=(5, 3))
    with pytest.warns(UserWarning, match="k=10 >= n_samples=5"):
        W = knn_graph(X, k=10, metric="l2", index="flat")
    off_diagonal = ~np.eye(5, dtype=bool)
    assert (W.toarray()[off_diagonal] > 0).all()


def test_faiss_padding_is_dropped():
    # HNSW on 3 points asked for more neighbours than exist pads with -1.
    index = NeighborIndex(np.eye(3), index="flat")
    _, raw = index.search(np.eye(3), 5)
    assert (raw == -1).any()
    scores, indices, _ = knn_search(np.eye(3) + 0.01, k=2, index="hnsw")
    assert (indices >= 0).all() and (indices != np.arange(3)[:, None]).all()


def test_nan_and_inf_rejected_with_row():
    X = np.ones((6, 2))
    X[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"`X` row 4 contains NaN or inf"):
        knn_graph(X, k=2)
    X[4, 1] = 1.0
    X[2, 0] = np.inf
    with pytest.raises(ValueError, match=r"`X` row 2 contains NaN or inf"):
        knn_graph(X, k=2)
    # float64 values beyond float32's range become inf on conversion and are rejected too.
    X[2, 0] = 1e300
    with pytest.raises(ValueError, match=r"row 2 .*after conversion to float32"):
        knn_graph(X, k=2)


def test_input_not_modified_and_any_layout_accepted():
    X = np.asfortranarray(np.random.default_rng(4).normal(size=(30, 4)))
    copy = X.copy()
    W1 = knn_graph(X, k=3, index="flat")
    W2 = knn_graph(np.ascontiguousarray(X, dtype=np.float32), k=3, index="flat")
    np.testing.assert_array_equal(X, copy)
    np.testing.assert_allclose(W1.toarray(), W2.toarray(), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(k=0), "`k` must be a positive integer; got 0"),
        (dict(metric="manhattan"), r"`metric` must be one of \['cosine', 'l2'\]; got 'manhattan'"),
        (dict(index="lsh"), r"`index` must be one of"),
        (dict(gamma=-1.0), "`gamma` must be a positive number; got -1.0"),
        (dict(symmetrize="min"), "`symmetrize` must be one of"),
        # FAISS checks none of these: hnsw_m=1 was a segfault, -1 a hang, nprobe=0 a FAISS error
        (dict(index="hnsw", hnsw_m=1), r"`hnsw_m` must be an integer >= 2; got 1"),
        (dict(index="hnsw", hnsw_m=True), r"`hnsw_m` must be an integer >= 2; got True"),
        (dict(index="hnsw", ef_search=-5), r"`ef_search` must be an integer >= 1; got -5"),
        (dict(index="hnsw", ef_construction=0), r"`ef_construction` must be an integer >= 1; got 0"),
        (dict(index="ivf", nprobe=0), r"`nprobe` must be an integer >= 1; got 0"),
    ],
)
def test_parameter_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        knn_graph(np.ones((4, 2)), **kwargs)


def test_recall_at_k_hand_computed():
    approx = np.array([[1, 2, 3], [0, -1, -1]])
    exact = np.array([[3, 2, 4], [0, 2, 3]])
    assert recall_at_k(approx, exact) == pytest.approx(3 / 6)


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_approximate_indexes_reach_recall(index):
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(20, 16))
    X = (centres[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 16))).astype(np.float32)
    _, exact, _ = knn_search(X, k=10, index="flat")
    _, approx, neighbor_index = knn_search(X, k=10, index=index, nlist=40, nprobe=8)
    assert neighbor_index.kind == index
    assert recall_at_k(approx, exact) >= 0.9


def test_auto_uses_exact_search_for_small_n():
    _, _, neighbor_index = knn_search(np.random.default_rng(6).normal(size=(50, 3)), k=3)
    assert neighbor_index.kind == "flat"


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_neighbor_index_pickles(kind):
    X = np.random.default_rng(7).normal(size=(100, 8))
    index = NeighborIndex(X, index=kind, **({"nlist": 2} if kind == "ivf" else {}))
    clone = pickle.loads(pickle.dumps(index))
    for a, b in zip(index.search(X[:10], 5), clone.search(X[:10], 5)):
        np.testing.assert_array_equal(a, b)


def test_multithreaded_block_search_matches_brute_force():
    # 3,000 queries with 2 threads run as several single-threaded FAISS blocks in a thread pool;
    # the result must be exactly what a numpy brute force finds, in every block.
    X = np.random.default_rng(7).normal(size=(3000, 6)).astype(np.float32)
    index = NeighborIndex(X, metric="l2", index="flat", n_threads=2)
    scores, indices = index.search(X, 4)
    X64 = X.astype(np.float64)
    d2 = (X64**2).sum(1)[:, None] + (X64**2).sum(1)[None, :] - 2 * X64 @ X64.T
    expected = np.argsort(d2, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(np.sort(indices, axis=1), np.sort(expected, axis=1))
    np.testing.assert_allclose(scores, np.take_along_axis(d2, expected, axis=1), atol=1e-4)


def test_exact_cosine_search_over_several_blocks_matches_brute_force():
    # More points and queries than one 1,024-row block of the exact search, a k that spans
    # blocks, and scores recomputed per pair: cosine similarities as numpy finds them.
    rng = np.random.default_rng(8)
    X = rng.normal(size=(2500, 5)).astype(np.float32)
    Q = rng.normal(size=(1100, 5)).astype(np.float32)
    scores, indices = NeighborIndex(X, metric="cosine", index="flat", n_threads=1).search(Q, 7)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    sim = Qn.astype(np.float64) @ Xn.astype(np.float64).T
    expected = np.argsort(-sim, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(sim, expected, axis=1), atol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()  # best first


def test_exact_search_scores_do_not_depend_on_the_other_queries():
    # A query's scores are the same whether it is searched alone or in a block of others.
    X = np.random.default_rng(9).normal(size=(300, 16)).astype(np.float32)
    index = NeighborIndex(X, metric="l2", index="flat", n_threads=1)
    all_scores, all_indices = index.search(X, 5)
    for i in (0, 17, 299):
        one_scores, one_indices = index.search(X[i : i + 1], 5)
        np.testing.assert_array_equal(one_indices[0], all_indices[i])
        np.testing.assert_array_equal(one_scores[0], all_scores[i])


def _brute_force_neighbours(X, Q, k, exclude_self=False):
    d2 = ((np.asarray(Q, np.float64)[:, None, :] - np.asarray(X, np.float64)[None, :, :]) ** 2).sum(-1)
    if exclude_self:
        np.fill_diagonal(d2, np.inf)
    return np.argsort(d2, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("index", ["flat", "ivf"])
def test_l2_neighbours_do_not_change_with_a_large_common_offset(index):
    # |x|^2 - 2 q.x in float32 lost the points' differences to an offset of 3,000 (14 % of the exact
    # 10 nearest neighbours were found); distances, and so neighbours, do not depend on it.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 16)) + 3000.0
    Q = rng.normal(size=(50, 16)) + 3000.0
    kwargs = {"nlist": 8, "nprobe": 8} if index == "ivf" else {}  # every IVF cell probed: exact
    _, indices, neighbor_index = knn_search(X, 10, metric="l2", index=index, **kwargs)
    np.testing.assert_array_equal(np.sort(indices, axis=1), np.sort(_brute_force_neighbours(X, X, 10, True), axis=1))
    found = neighbor_index.search(Q, 10)[1]
    np.testing.assert_array_equal(np.sort(found, axis=1), np.sort(_brute_force_neighbours(X, Q, 10), axis=1))


def test_l2_centroid_assignment_and_exact_check_do_not_change_with_a_large_offset():
    from ssl_multilabel.propagation.graph import _exact_neighbours, _nearest_centroid

    rng = np.random.default_rng(1)
    points = (rng.normal(size=(300, 8)) + 5000.0).astype(np.float32)
    centroids = points[:20].copy()
    nearest = _brute_force_neighbours(centroids, points, 1)[:, 0]
    np.testing.assert_array_equal(_nearest_centroid(points, centroids, "l2"), nearest)
    rows = np.arange(0, 300, 7)
    exact = _exact_neighbours(points, rows, 5, "l2", 1)
    reference = _brute_force_neighbours(points, points, 5, True)[rows]
    np.testing.assert_array_equal(np.sort(exact, axis=1), np.sort(reference, axis=1))


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_faiss_thread_count_of_the_process_is_restored(index):
    # FAISS and scikit-learn share one OpenMP runtime: `n_threads=1` used to leave the whole
    # process at one OpenMP thread (KMeans, HistGradientBoosting ... after it).
    import faiss

    before = faiss.omp_get_max_threads()
    X = np.random.default_rng(0).normal(size=(400, 8)).astype(np.float32)
    kwargs = {"nlist": 4} if index == "ivf" else {}
    _, _, neighbor_index = knn_search(X, 5, index=index, n_threads=before + 1, **kwargs)
    assert faiss.omp_get_max_threads() == before
    neighbor_index.search(X[:10], 3)
    assert faiss.omp_get_max_threads() == before


def test_default_thread_count_follows_omp_num_threads(monkeypatch):
    # joblib's workers (GridSearchCV(n_jobs=2)) set OMP_NUM_THREADS=1: two workers at two threads
    # each would oversubscribe two cores.
    import os

    from ssl_multilabel.propagation.graph import _n_threads

    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _n_threads(None) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", str(cores + 3))
    assert _n_threads(None) == cores
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    assert _n_threads(None) == cores
    assert _n_threads(3) == 3  # an explicit count wins
