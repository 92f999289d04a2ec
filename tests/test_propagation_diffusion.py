"""Diffusion against the dense closed form and hand-computed numbers."""

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

from ssl_multilabel.propagation import (
    KNNLabelPropagation,
    calibrate,
    conjugate_gradient,
    diffuse,
    knn_graph,
    normalized_affinity,
    seed_matrix,
)


def _random_graph(n, seed):
    rng = np.random.default_rng(seed)
    return knn_graph(rng.normal(size=(n, 4)), k=5, index="flat")


def _random_labels(n, n_labels, seed):
    rng = np.random.default_rng(seed)
    Y = rng.integers(0, 2, size=(n, n_labels)).astype(float)
    Y[rng.random((n, n_labels)) < 0.6] = -1
    Y[0], Y[1] = 1, 0  # every label has at least one known positive and negative
    return Y


@pytest.mark.parametrize("alpha, steps", [(0.99, 0), (0.9, 0), (0.5, 2), (0.99, 4)])
def test_diffusion_equals_dense_closed_form(alpha, steps):
    W = _random_graph(80, 0)
    Y = _random_labels(80, 3, 1)
    result = diffuse(W, Y, alpha=alpha, smoothing_steps=steps, tol=1e-12, max_iter=1000)
    # Independent reference: dense S, explicit seeds, np.linalg.solve.
    A = W.toarray().astype(np.float64)
    d = A.sum(1)
    S = A / np.sqrt(np.outer(d, d))
    known = Y != -1
    pos = np.where(known, Y, 0.0)
    neg = np.where(known, 1 - Y, 0.0)
    B = np.hstack([pos / pos.sum(0), neg / neg.sum(0)])
    F = np.linalg.solve(np.eye(80) - alpha * S, np.linalg.matrix_power(S, steps) @ B)
    np.testing.assert_allclose(result.positive_mass, F[:, :3], atol=1e-6, rtol=0)
    np.testing.assert_allclose(result.negative_mass, F[:, 3:], atol=1e-6, rtol=0)
    assert result.converged.all()


def test_block_cg_matches_solve_and_freezes_converged_columns():
    rng = np.random.default_rng(2)
    M = rng.normal(size=(30, 30))
    A = M @ M.T + 30 * np.eye(30)
    B = rng.normal(size=(30, 4))
    B[:, 2] = 0  # a zero right-hand side is solved by zero without iterating
    X, n_iter, converged = conjugate_gradient(lambda P: A @ P, B, tol=1e-12, max_iter=200)
    np.testing.assert_allclose(X, np.linalg.solve(A, B), atol=1e-9)
    assert converged.all() and 0 < n_iter <= 30
    assert (X[:, 2] == 0).all()


def test_cg_iteration_cap_warns():
    W = _random_graph(200, 3)
    with pytest.warns(Warning, match="did not reach tol"):
        result = diffuse(W, _random_labels(200, 2, 4), alpha=0.99, max_iter=2, tol=1e-12)
    assert result.n_iter == 2 and not result.converged.all()


def test_seed_matrix_hand_computed_with_soft_values():
    Y = np.array([[1, -1], [0.5, 0], [0, 1], [-1, 1]])
    B = seed_matrix(Y)
    expected_pos = np.array([[1 / 1.5, 0], [0.5 / 1.5, 0], [0, 0.5], [0, 0.5]])
    expected_neg = np.array([[0, 0], [0.5 / 1.5, 1], [1 / 1.5, 0], [0, 0]])
    np.testing.assert_allclose(B, np.hstack([expected_pos, expected_neg]))


def test_calibrate_hand_computed():
    # pi = 0.25; f+ = 0.4, f- = 0.1 in one cell, 0 in another; tau = 1 * mean(total).
    fp = np.array([[0.4], [0.0]])
    fn = np.array([[0.1], [0.0]])
    p, conf = calibrate(fp, fn, np.array([0.25]), prior_mass=1.0)
    total = 0.25 * 0.4 + 0.75 * 0.1  # 0.175
    tau = total / 2
    assert p[0, 0] == pytest.approx((0.1 + tau * 0.25) / (total + tau), rel=1e-6)
    assert p[1, 0] == pytest.approx(0.25)  # no mass: the prior
    assert conf[1, 0] == pytest.approx(0.5)
    p0, _ = calibrate(fp, fn, np.array([0.25]), prior_mass=0.0)
    assert p0[0, 0] == pytest.approx(0.1 / 0.175, rel=1e-6)


def test_label_without_negatives_warns_and_uses_prior():
    W = _random_graph(50, 5)
    Y = -np.ones((50, 1))
    Y[:5] = 1
    with pytest.warns(UserWarning, match=r"labels \[0\] have no known negative"):
        result = diffuse(W, Y)
    assert (result.negative_mass == 0).all()
    assert (result.probability >= result.prior[0] - 1e-6).all()


def test_two_clusters_are_separated():
    rng = np.random.default_rng(6)
    X = np.r_[rng.normal([4, 0], 1, (100, 2)), rng.normal([0, 4], 1, (100, 2))]
    Y = -np.ones((200, 1))
    Y[:10], Y[100:110] = 1, 0
    result = diffuse(knn_graph(X, k=8, metric="l2"), Y)
    assert (result.probability[10:100] > 0.5).mean() > 0.95
    assert (result.probability[110:] < 0.5).mean() > 0.95


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(alpha=1.0), r"`alpha` must be a number in \[0.0, 1.0\); got 1.0"),
        (dict(smoothing_steps=-1), "`smoothing_steps` must be an integer >= 0; got -1"),
        (dict(max_iter=0), "`max_iter` must be an integer >= 1; got 0"),
    ],
)
def test_parameter_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        diffuse(_random_graph(20, 7), _random_labels(20, 1, 8), **kwargs)


def test_label_errors_name_the_cell():
    Y = _random_labels(20, 2, 9)
    Y[7, 1] = 3
    with pytest.raises(ValueError, match=r"`Y` row 7, column 1: expected a value in \[0, 1\] for a known cell, or -1 or NaN for an unknown one; got 3.0"):
        diffuse(_random_graph(20, 7), Y)
    with pytest.raises(TypeError, match="scipy.sparse"):
        diffuse(np.eye(20), Y)


def test_normalized_affinity_isolated_rows_stay_zero():
    W = sp.csr_matrix(np.array([[0, 1.0, 0], [1.0, 0, 0], [0, 0, 0]]))
    np.testing.assert_allclose(normalized_affinity(W).toarray(), [[0, 1, 0], [1, 0, 0], [0, 0, 0]])


def test_memory_is_linear_in_n_k():
    # A dense n x n float64 would need 3.2 GB at n = 20,000; the whole fit must stay far below.
    rng = np.random.default_rng(10)
    n = 20_000
    X = rng.normal(size=(n, 16)).astype(np.float32)
    Y = np.where(rng.random((n, 5)) < 0.1, rng.integers(0, 2, (n, 5)), -1)
    tracemalloc.start()
    KNNLabelPropagation(n_neighbors=10, progress=False).fit(X, Y)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 150e6, f"peak traced memory {peak / 1e6:.0f} MB"


def test_float32_solve_matches_float64():
    W = _random_graph(300, 11)
    Y = _random_labels(300, 3, 12)
    r64 = diffuse(W, Y, dtype="float64")
    r32 = diffuse(W, Y, dtype="float32")
    np.testing.assert_allclose(r32.probability, r64.probability, atol=1e-4)
    with pytest.raises(ValueError, match="`dtype` must be one of"):
        diffuse(W, Y, dtype="float16")


def test_row_parallel_sparse_product_equals_scipy():
    from concurrent.futures import ThreadPoolExecutor

    from ssl_multilabel.propagation.diffusion import _sparse_product

    S = sp.random(500, 500, density=0.02, format="csr", random_state=0)
    P = np.random.default_rng(0).normal(size=(500, 6))
    with ThreadPoolExecutor(3) as pool:
        np.testing.assert_array_equal(_sparse_product(S, pool, 3)(P), S @ P)


def test_diffusion_result_does_not_depend_on_threads(monkeypatch):
    from ssl_multilabel.propagation import diffusion

    monkeypatch.setattr(diffusion, "_PARALLEL_NNZ", 100)  # small graph, still split over threads
    W = knn_graph(np.random.default_rng(3).normal(size=(400, 4)), k=8)
    rng = np.random.default_rng(4)
    Y = np.where(rng.random((400, 2)) < 0.2, (rng.random((400, 2)) < 0.5).astype(float), -1.0)
    one = diffuse(W, Y, n_threads=1)
    two = diffuse(W, Y, n_threads=2)
    np.testing.assert_array_equal(two.positive_mass, one.positive_mass)
    np.testing.assert_array_equal(two.probability, one.probability)


def test_auto_dtype_solves_in_float32_above_the_limit(monkeypatch):
    from ssl_multilabel.propagation import diffusion

    W = _random_graph(300, 11)
    Y = _random_labels(300, 3, 12)
    below = diffuse(W, Y, dtype="auto")
    np.testing.assert_array_equal(below.probability, diffuse(W, Y, dtype="float64").probability)
    monkeypatch.setattr(diffusion, "FLOAT32_LIMIT", 299)
    above = diffuse(W, Y, dtype="auto")
    np.testing.assert_array_equal(above.probability, diffuse(W, Y, dtype="float32").probability)


def test_an_asymmetric_graph_is_refused_and_its_symmetrised_form_solves_exactly():
    from sklearn.neighbors import kneighbors_graph

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    Y = np.where(rng.random((60, 2)) < 0.3, (X[:, :2] > 0).astype(float), -1.0)
    W = kneighbors_graph(X, 5)  # each point -> its own neighbours: not symmetric
    with pytest.raises(ValueError, match=r"`W` must be symmetric .* up to 1.*W\.maximum\(W\.T\)"):
        diffuse(W, Y)
    W = W.maximum(W.T)
    result = diffuse(W, Y, alpha=0.5, smoothing_steps=0, tol=1e-12, max_iter=1000)
    # The closed form with dense numpy: F = (I - alpha S)^-1 Y_seed, S = D^-1/2 W D^-1/2.
    d = np.asarray(W.sum(axis=1)).ravel()
    S = W.toarray() / np.sqrt(np.outer(d, d))
    F = np.linalg.solve(np.eye(60) - 0.5 * S, seed_matrix(Y))
    np.testing.assert_allclose(np.c_[result.positive_mass, result.negative_mass], F, rtol=1e-8, atol=1e-10)


def test_labels_without_a_known_class_are_named_with_what_their_probability_becomes():
    """A label with known positives only came out positive on every cell, and the warning said its
    probability "falls back to the label prior". Reference: the prior (P + 1) / (P + N + 2) by hand
    (3 positives: 4/5; 2 negatives: 1/4; nothing known: 1/2) bounds each label's probabilities."""
    W = _random_graph(30, 3)
    Y = np.full((30, 4), -1.0)
    Y[:3, 0] = 1.0  # positives only
    Y[3:5, 1] = 0.0  # negatives only
    Y[5, 3], Y[6, 3] = 1.0, 0.0  # both: not named
    with pytest.warns(UserWarning) as record:
        result = diffuse(W, Y)
    [message] = [str(w.message) for w in record if "No known cells" in str(w.message)]
    assert "labels [2] have no known cell" in message
    assert "labels [0] have no known negative" in message and "labels [1] have no known positive" in message
    np.testing.assert_allclose(result.prior[:3], [4 / 5, 1 / 4, 1 / 2])
    unknown = Y == -1
    assert (result.probability[unknown[:, 0], 0] >= 4 / 5 - 1e-12).all()
    assert (result.probability[unknown[:, 1], 1] <= 1 / 4 + 1e-12).all()
    np.testing.assert_allclose(result.probability[:, 2], 0.5)


def test_a_boolean_or_integer_sparse_graph_is_read_as_weights():
    from sklearn.neighbors import kneighbors_graph

    X = np.random.default_rng(0).normal(size=(50, 3))
    G = kneighbors_graph(X, 5)
    G = G.maximum(G.T)
    Y = _random_labels(50, 2, 1)
    expected = diffuse(G.astype(np.float64), Y).probability
    np.testing.assert_allclose(diffuse(G.astype(bool), Y).probability, expected)
    np.testing.assert_allclose(diffuse(G.astype(np.int32), Y).probability, expected)
