"""KNNLabelPropagation: scikit-learn conventions, new-point prediction, quality vs LabelSpreading.

Common checks not run (reported by `parametrize_with_checks` as skipped or expected to fail):
- check_classifiers_classes (expected failure): it fits the classes {-1, 1}, but -1 marks an
  unknown cell (scikit-learn's `semi_supervised` convention), so a class named -1 cannot exist.
- check_array_api_input: skipped by scikit-learn unless SCIPY_ARRAY_API=1; FAISS needs numpy.
- check_classifiers_multilabel_output_format_decision_function: skipped, the estimator has no
  `decision_function` (probabilities are its scores).
"""

import numpy as np
import pytest
from sklearn.datasets import make_multilabel_classification
from sklearn.metrics import average_precision_score
from sklearn.semi_supervised import LabelSpreading
from sklearn.utils.estimator_checks import parametrize_with_checks

from ssl_multilabel.propagation import KNNLabelPropagation

EXPECTED_FAILED_CHECKS = {
    "check_classifiers_classes": "-1 marks an unknown cell, so the class -1 used by this check cannot be learnt",
}


@parametrize_with_checks(
    [KNNLabelPropagation(n_neighbors=5, n_threads=1, progress=False)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_common_checks(estimator, check):
    check(estimator)


def _partial_problem(n=600, seed=0, known=0.2):
    X, Y = make_multilabel_classification(n, n_features=20, n_classes=4, n_labels=2, random_state=seed)
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    mask = np.random.default_rng(seed).random(Y.shape) < known
    return X, Y, np.where(mask, Y, -1), mask


def test_fit_learns_attributes_and_keeps_known_cells():
    X, _, Y, mask = _partial_problem()
    model = KNNLabelPropagation(n_neighbors=10).fit(X, Y)
    assert model.transduction_.shape == Y.shape and model.label_distributions_.shape == Y.shape
    np.testing.assert_array_equal(model.transduction_[mask], Y[mask])
    assert set(np.unique(model.transduction_)) <= {0, 1}
    assert ((model.label_distributions_ > 0) & (model.label_distributions_ < 1)).all()
    assert model.n_iter_ >= 1 and model.n_features_in_ == X.shape[1]
    np.testing.assert_array_equal(
        model.transduction_[~mask], (model.label_distributions_[~mask] >= 0.5).astype(int)
    )


def test_predict_proba_is_weighted_mean_of_fitted_neighbours():
    X, _, Y, _ = _partial_problem(300, 1)
    rng = np.random.default_rng(2)
    X_new = rng.random((7, X.shape[1]))
    model = KNNLabelPropagation(n_neighbors=6, metric="cosine", gamma=2.0).fit(X, Y)
    # Brute-force reference: cosine similarities, top 6, weights s**2.
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Qn = X_new / np.linalg.norm(X_new, axis=1, keepdims=True)
    sim = Qn @ Xn.T
    top = np.argsort(-sim, axis=1)[:, :6]
    w = np.take_along_axis(sim, top, axis=1) ** 2
    # Neighbours contribute their known value on known cells, their diffused probability elsewhere.
    fitted = np.where(Y != -1, Y, model.label_distributions_)
    # Plus one pseudo-neighbour scoring the prior, weighted prior_mass x the mean weight.
    pseudo = model.prior_mass * w.mean(1, keepdims=True)
    expected = (np.einsum("mk,mkl->ml", w, fitted[top]) + pseudo * model.prior_) / (w.sum(1, keepdims=True) + pseudo)
    np.testing.assert_allclose(model.predict_proba(X_new), expected, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(X_new), (expected >= 0.5).astype(int))


def test_predict_proba_on_fully_labelled_data_is_weighted_knn_vote():
    # Fully labelled training data: predict_proba is exactly the s**gamma-weighted vote of the
    # neighbours' labels (the quantity ML-kNN builds on), independent of the diffusion.
    X, Ytrue, _, _ = _partial_problem(200, 5)
    X_new = np.random.default_rng(6).random((5, X.shape[1]))
    model = KNNLabelPropagation(n_neighbors=4, metric="cosine", gamma=3.0, prior_mass=0.0).fit(X, Ytrue)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Qn = X_new / np.linalg.norm(X_new, axis=1, keepdims=True)
    sim = Qn @ Xn.T
    top = np.argsort(-sim, axis=1)[:, :4]
    w = np.take_along_axis(sim, top, axis=1) ** 3
    expected = np.einsum("mk,mkl->ml", w, Ytrue[top].astype(float)) / w.sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict_proba(X_new), expected, rtol=1e-5)


def test_one_dimensional_y_like_label_spreading():
    X, Ytrue, _, mask = _partial_problem(400, 3)
    y = np.where(mask[:, 0], Ytrue[:, 0], -1)
    model = KNNLabelPropagation(n_neighbors=10).fit(X, y)
    assert model.transduction_.shape == (400,)
    assert model.label_distributions_.shape == (400, 2)
    np.testing.assert_allclose(model.label_distributions_.sum(1), 1.0)
    np.testing.assert_array_equal(model.classes_, [0, 1])
    np.testing.assert_array_equal(model.transduction_[mask[:, 0]], y[mask[:, 0]])


def test_one_dimensional_y_keeps_the_dtype_of_its_classes():
    X, Ytrue, _, mask = _partial_problem(200, 5)
    y01 = np.where(mask[:, 0], Ytrue[:, 0], -1)
    y = np.where(y01 == 1, 5, np.where(y01 == 0, 2, -1))  # int classes 2 and 5, -1 unknown
    model = KNNLabelPropagation(n_neighbors=10).fit(X, y)
    reference = KNNLabelPropagation(n_neighbors=10).fit(X, y01)
    assert model.classes_.dtype == y.dtype and model.classes_.tolist() == [2, 5]
    predicted = model.predict(X)
    assert predicted.dtype == y.dtype
    np.testing.assert_array_equal(predicted, np.where(reference.predict(X) == 1, 5, 2))


def test_hidden_cell_map_beats_label_spreading():
    X, Ytrue, Y, mask = _partial_problem(1500, 4, known=0.1)
    ours = KNNLabelPropagation(n_neighbors=10).fit(X, Y).label_distributions_
    aps_ours, aps_ls = [], []
    for c in range(Y.shape[1]):
        baseline = LabelSpreading(kernel="knn", n_neighbors=10, alpha=0.99, max_iter=30)
        scores = baseline.fit(X, Y[:, c]).label_distributions_[:, 1]
        hidden = ~mask[:, c]
        aps_ours.append(average_precision_score(Ytrue[hidden, c], ours[hidden, c]))
        aps_ls.append(average_precision_score(Ytrue[hidden, c], scores[hidden]))
    assert np.mean(aps_ours) > np.mean(aps_ls)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(alpha=2), r"The 'alpha' parameter of KNNLabelPropagation must be a float in the range \[0.0, 1.0\). Got 2 instead."),
        (dict(metric="jaccard"), r"The 'metric' parameter of KNNLabelPropagation must be a str among"),
        (dict(n_neighbors=0), r"The 'n_neighbors' parameter of KNNLabelPropagation must be an int in the range \[1, inf\). Got 0 instead."),
        (dict(index_params={"nprobes": 3}), r"'index_params' parameter of KNNLabelPropagation has unknown keys \['nprobes'\]"),
    ],
)
def test_parameter_errors_in_sklearn_format(params, match):
    X, _, Y, _ = _partial_problem(50)
    with pytest.raises(ValueError, match=match):
        KNNLabelPropagation(**params).fit(X, Y)


def test_label_errors():
    X, _, Y, _ = _partial_problem(50)
    bad = Y.astype(float)
    bad[3, 1] = 0.5 + 3
    with pytest.raises(ValueError, match=r"Only binary classification is supported.*row 3, column 1 is 4.0"):
        KNNLabelPropagation().fit(X, bad.round())
    with pytest.raises(ValueError, match="Unknown label type: continuous.*row 3, column 1 is 3.5"):
        KNNLabelPropagation().fit(X, bad)
    with pytest.raises(ValueError, match="`y` has 49 rows; `X` has 50 samples"):
        KNNLabelPropagation().fit(X, Y[:49])


def test_ivfpq_index_params_reach_the_index():
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(10, 16))
    X = (centres[rng.integers(0, 10, 600)] + 0.2 * rng.normal(size=(600, 16))).astype(np.float32)
    Y = np.where(rng.random((600, 2)) < 0.3, rng.integers(0, 2, (600, 2)), -1)
    model = KNNLabelPropagation(index="ivfpq", index_params={"nlist": 4, "pq_m": 8, "refine": 3}, progress=False)
    model.fit(X, Y)
    assert (model.index_.kind, model.index_.pq_m, model.index_.refine) == ("ivfpq", 8, 3)
    assert model.predict_proba(X[:5]).shape == (5, 2)


def test_a_partial_labels_table_fits_as_its_array_and_score_needs_known_cells():
    from sklearn.metrics import accuracy_score

    from ssl_multilabel.labels import PartialLabels

    X, Y_full, Y, _ = _partial_problem(200, 3)
    table = PartialLabels.from_array(Y)
    from_table = KNNLabelPropagation(n_neighbors=8).fit(X, table)
    from_array = KNNLabelPropagation(n_neighbors=8).fit(X, Y)
    np.testing.assert_array_equal(from_table.label_distributions_, from_array.label_distributions_)
    with pytest.raises(ValueError, match=r"score: `y` has \d+ unknown cells \(-1\); accuracy needs every cell known"):
        from_array.score(X, Y)
    assert from_array.score(X, Y_full) == accuracy_score(Y_full, from_array.predict(X))  # scikit-learn's subset accuracy


def test_more_neighbours_than_samples_warns_and_uses_them_all():
    X, _, Y, _ = _partial_problem(6, 4, known=0.5)
    with pytest.warns(UserWarning, match=r"k=10 >= n_samples=6: using k=5 neighbours"):
        model = KNNLabelPropagation(n_neighbors=10).fit(X, Y)
    assert (model.graph_ != 0).sum(axis=1).max() <= 5  # no point links to more than the 5 others


# === scikit-learn tools a user's pipeline calls (found by a new-user run, 2026-12-07) ===


def test_cross_val_predict_proba_on_multilabel_y_equals_the_folds_by_hand():
    from sklearn.model_selection import KFold, cross_val_predict

    X, Y, _, _ = _partial_problem(120)
    model = KNNLabelPropagation(n_neighbors=5, n_threads=1, progress=False)
    got = cross_val_predict(model, X, Y, cv=KFold(3), method="predict_proba")
    expected = np.zeros(Y.shape)
    for train, test in KFold(3).split(X):
        expected[test] = KNNLabelPropagation(n_neighbors=5, n_threads=1, progress=False).fit(
            X[train], Y[train]).predict_proba(X[test])
    np.testing.assert_allclose(got, expected)
    assert model.fit(X, Y).classes_.tolist() == [[0, 1]] * 4  # one row per column of predict_proba


def test_random_state_takes_none_and_a_random_state_as_scikit_learn_does():
    X, _, Y, _ = _partial_problem(200)
    fitted = {name: KNNLabelPropagation(index="ivf", index_params={"nlist": 4}, random_state=seed, n_threads=1,
                                        progress=False).fit(X, Y)
              for name, seed in [("int", 3), ("again", 3), ("none", None), ("rs", np.random.RandomState(0))]}
    np.testing.assert_array_equal(fitted["int"].label_distributions_, fitted["again"].label_distributions_)
    for name in ("none", "rs"):
        assert fitted[name].label_distributions_.shape == Y.shape
    with pytest.raises(ValueError, match="The 'random_state' parameter of KNNLabelPropagation must be"):
        KNNLabelPropagation(random_state="seven").fit(X, Y)


def test_a_sparse_label_matrix_fits_as_its_dense_array():
    import scipy.sparse as sp

    X, Y, _, _ = _partial_problem(100)  # every cell known, as a MultiLabelBinarizer(sparse_output=True) gives
    sparse = KNNLabelPropagation(n_neighbors=5).fit(X, sp.csr_matrix(Y))
    dense = KNNLabelPropagation(n_neighbors=5).fit(X, Y)
    np.testing.assert_array_equal(sparse.label_distributions_, dense.label_distributions_)
    np.testing.assert_array_equal(sparse.predict_proba(X[:7]), dense.predict_proba(X[:7]))


@pytest.mark.parametrize("n_labels", [1, 2, 3])
def test_scikit_learn_scorers_read_every_label_whatever_their_number(n_labels):
    # With classes_ = arange(n_labels) scikit-learn took 2 labels for a binary problem (one column
    # scored) and 1 label for a single class (an error). Reference: the folds scored by hand.
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import KFold, cross_val_score

    X, Y, _, _ = _partial_problem(150)
    Y = Y[:, :n_labels]
    model = KNNLabelPropagation(n_neighbors=5, n_threads=1, progress=False)
    got = cross_val_score(model, X, Y, cv=KFold(3), scoring="average_precision")
    expected = [average_precision_score(Y[test], KNNLabelPropagation(n_neighbors=5, n_threads=1, progress=False)
                                        .fit(X[train], Y[train]).predict_proba(X[test]))
                for train, test in KFold(3).split(X)]
    np.testing.assert_allclose(got, expected)


def test_score_names_the_unknown_cells_of_string_labels():
    # A 1-D y of class names with -1 for unknown fits; accuracy needs every cell known, so score
    # refuses it as it refuses numeric y (it failed inside numpy comparing -1 with a string).
    X, _, Y, _ = _partial_problem(50)
    y = np.where(Y[:, 0] == 1, "cat", "dog").astype(object)
    y[Y[:, 0] == -1] = -1
    model = KNNLabelPropagation(n_neighbors=5).fit(X, y)
    assert set(model.classes_) == {"cat", "dog"}
    with pytest.raises(ValueError, match=f"`y` has {int((Y[:, 0] == -1).sum())} unknown cells"):
        model.score(X, y)


def test_nullable_pandas_columns_fit_as_their_numbers():
    """`convert_dtypes()` makes Int64 columns, which numpy reads as objects: the fit refused them
    as "dtype object". Reference: the same frame as a float array."""
    import pandas as pd

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    Y = rng.choice([-1, 0, 1], size=(40, 2))
    Y[0], Y[1] = 1, 0
    frame = pd.DataFrame(Y, columns=["a", "b"]).convert_dtypes()
    assert str(frame.dtypes["a"]) == "Int64"
    expected = KNNLabelPropagation(n_neighbors=3).fit(X, Y.astype(float)).predict_proba(X)
    np.testing.assert_allclose(KNNLabelPropagation(n_neighbors=3).fit(X, frame).predict_proba(X), expected)
    frame.loc[3, "a"] = pd.NA
    with pytest.raises(ValueError, match="use -1 for unknown cells"):
        KNNLabelPropagation(n_neighbors=3).fit(X, frame)


def test_a_metric_changed_after_fit_applies_at_the_next_fit():
    """`set_params(metric="cosine")` without a refit read the fitted L2 distances as cosine
    similarities. Reference: the predictions of the fitted L2 model before the change."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 4))
    Y = np.where(rng.random((60, 2)) < 0.4, (X[:, :2] > 0).astype(float), -1.0)
    model = KNNLabelPropagation(n_neighbors=5, metric="l2").fit(X, Y)
    before = model.predict_proba(X[:10])
    model.set_params(metric="cosine")
    np.testing.assert_array_equal(model.predict_proba(X[:10]), before)
