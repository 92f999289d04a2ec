"""`KNNLabelPropagation`: the scikit-learn-style estimator over `knn_graph` and `diffuse`.

It follows scikit-learn's `semi_supervised` conventions: `-1` marks an unknown cell, `fit(X, Y)`
learns `transduction_` and `label_distributions_` for the fitted points, and
`predict_proba(X_new)` scores new points from their neighbours among the fitted points. Unlike
`LabelSpreading` it takes a 2-D multi-label `Y` (every label solved at once) as well as a 1-D
binary `y`.
"""

from __future__ import annotations

import logging
import time
from numbers import Integral, Real
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, MultiOutputMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .defaults import DEFAULT_ALPHA, DEFAULT_GAMMA, DEFAULT_K, DEFAULT_METRIC
from .diffusion import _check_labels, diffuse
from .graph import NeighborIndex, _weights, affinity_from_neighbors, knn_search

__all__ = ["KNNLabelPropagation"]

logger = logging.getLogger(__name__)


class KNNLabelPropagation(MultiOutputMixin, ClassifierMixin, BaseEstimator):
    """Multi-label label propagation over a FAISS kNN graph (-1 marks an unknown cell).

    Every label is seeded with its own known positives and negatives and diffused over a
    symmetric kNN affinity (`knn_graph`); the two masses become a calibrated probability per
    cell (`diffuse`). New points are scored by the `s ** gamma`-weighted average over their
    `n_neighbors` nearest fitted points of the known value (known cells) or the diffused
    probability (unknown cells).

    Args:
        n_neighbors: k of the kNN graph.
        metric: `"l2"` (default, self-tuning Gaussian weights) or `"cosine"`.
        index: `"auto"` (exact up to 100,000 points; above, IVF with `nprobe` raised until
            recall@k on 1,000 sampled points reaches 0.95), `"flat"`, `"ivf"`, `"ivfpq"`
            (memory-bounded IVF-PQ, candidates re-ranked exactly during `fit`), `"hnsw"`.
        gamma: edge weight exponent (`s ** gamma`).
        alpha: diffusion strength in [0, 1).
        smoothing_steps: graph-filter steps applied to the seeds before the solve.
        prior_mass: shrinkage of weakly reached cells towards the label prior (diffusion), and
            the weight, in mean neighbour weights, of the prior pseudo-neighbour of
            `predict_proba`.
        tol: CG relative residual tolerance.
        max_iter: CG iteration cap.
        threshold: probability at or above which `predict` says positive.
        index_params: extra `NeighborIndex` arguments (`nlist`, `nprobe`, `pq_m`, `refine`,
            `hnsw_m`, `ef_search`, `ef_construction`, `train_size`), or None.
        n_threads: threads of the kNN search and the diffusion; None = all cores.
        progress: progress bars (`"auto"`: above 50,000 points).
        random_state: seed of the approximate index's training sample: an int, a
            `np.random.RandomState` or None (scikit-learn's convention; the last two draw a seed).
        dtype: precision of the diffusion solve, `"auto"` (float64 up to 10,000 points,
            float32 above), `"float32"` (about twice as fast, same rankings) or `"float64"`.

    Attributes:
        transduction_: int `(n, L)`: 0/1 for every cell of the fitted points; known cells keep
            their known value (rounded at 0.5). For 1-D `y`, `(n,)` in `classes_`.
        label_distributions_: float `(n, L)` probability of positive per cell (for 1-D `y`,
            `(n, 2)` with the probabilities of classes 0 and 1).
        confidence_: float `(n, L)`, `|2p - 1|` of the diffused probability.
        classes_: for 1-D `y`, the sorted known class values (`array([0, 1])` for 0 / 1 input);
            for 2-D `y`, `(n_labels, 2)`, a row `[0, 1]` per label, so that scikit-learn's scorers
            (`"average_precision"`, `"roc_auc"`, `make_scorer(..., response_method="predict_proba")`)
            read `predict_proba` as a label indicator matrix whatever the number of labels. Its
            `cross_val_predict(..., method="predict_proba")` works when every cell is known: it
            re-encodes each column of `y` and would turn -1 into a third class.
        n_iter_: CG iterations of the slowest label column.
        graph_: the CSR affinity the diffusion ran on.
        n_features_in_, feature_names_in_: as in scikit-learn.

    Example:
        >>> import numpy as np
        >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> Y = np.array([[1, 0], [-1, -1], [0, 1], [-1, -1]])
        >>> model = KNNLabelPropagation(n_neighbors=1).fit(X, Y)
        >>> model.transduction_.tolist()
        [[1, 0], [1, 0], [0, 1], [0, 1]]
    """

    _parameter_constraints: dict = {
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "metric": [StrOptions({"cosine", "l2"})],
        "index": [StrOptions({"auto", "flat", "ivf", "ivfpq", "hnsw"})],
        "gamma": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, 1, closed="left")],
        "smoothing_steps": [Interval(Integral, 0, None, closed="left")],
        "prior_mass": [Interval(Real, 0, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "threshold": [Interval(Real, 0, 1, closed="both")],
        "index_params": [dict, None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "progress": ["boolean", StrOptions({"auto"})],
        "random_state": ["random_state"],
        "dtype": [StrOptions({"auto", "float32", "float64"})],
    }

    def __init__(
        self,
        n_neighbors: int = DEFAULT_K,
        metric: str = DEFAULT_METRIC,
        index: str = "auto",
        gamma: float = DEFAULT_GAMMA,
        alpha: float = DEFAULT_ALPHA,
        smoothing_steps: int = 4,
        prior_mass: float = 0.3,
        tol: float = 1e-6,
        max_iter: int = 100,
        threshold: float = 0.5,
        index_params: dict | None = None,
        n_threads: int | None = None,
        progress: bool | str = "auto",
        random_state: Any = 0,
        dtype: str = "auto",
    ) -> None:
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.index = index
        self.gamma = gamma
        self.alpha = alpha
        self.smoothing_steps = smoothing_steps
        self.prior_mass = prior_mass
        self.tol = tol
        self.max_iter = max_iter
        self.threshold = threshold
        self.index_params = index_params
        self.n_threads = n_threads
        self.progress = progress
        self.random_state = random_state
        self.dtype = dtype

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # each label is binary
        tags.classifier_tags.multi_label = True
        tags.target_tags.multi_output = True
        tags.target_tags.two_d_labels = True
        return tags

    # === Fitting ===

    def _index_kwargs(self) -> dict[str, Any]:
        allowed = {"nlist", "nprobe", "pq_m", "refine", "hnsw_m", "ef_search", "ef_construction", "train_size"}
        params = dict(self.index_params or {})
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ValueError(
                f"The 'index_params' parameter of {type(self).__name__} has unknown keys "
                f"{unknown}; valid keys are {sorted(allowed)}."
            )
        seed = self.random_state
        if not isinstance(seed, Integral):  # None or a RandomState: a seed drawn from it, as scikit-learn does
            seed = int(check_random_state(seed).randint(np.iinfo(np.int32).max))
        return dict(params, seed=seed, n_threads=self.n_threads, progress=self.progress)

    def fit(self, X: Any, y: Any) -> "KNNLabelPropagation":
        """Build the kNN graph on `X` and diffuse the known cells of `y`.

        Args:
            X: features `(n_samples, n_features)`.
            y: `(n_samples, n_labels)` (or `(n_samples,)`) with 0 / 1 (soft values in [0, 1]
                allowed) for known cells and -1 for unknown ones, or a `PartialLabels` table.

        Returns:
            self.
        """
        self._validate_params()
        index_kwargs = self._index_kwargs()
        X = validate_data(self, X, dtype=[np.float32, np.float64], ensure_all_finite=False)
        Y, classes = _labels_2d(y, len(X))
        self._y_1d = classes is not None
        start = time.perf_counter()
        with np.errstate(all="ignore"):
            scores, indices, self.index_ = knn_search(  # k >= n_samples: n_samples - 1, with a warning
                X, self.n_neighbors, self.metric, self.index, **index_kwargs
            )
        self.graph_ = affinity_from_neighbors(scores, indices, self.metric, self.gamma)
        graph_time = time.perf_counter() - start
        result = diffuse(
            self.graph_,
            Y,
            alpha=self.alpha,
            smoothing_steps=self.smoothing_steps,
            tol=self.tol,
            max_iter=self.max_iter,
            prior_mass=self.prior_mass,
            progress=self.progress,
            dtype=self.dtype,
            n_threads=self.n_threads,
        )
        logger.info(
            "KNNLabelPropagation: graph %.2fs, diffusion %.2fs (%d iterations)",
            graph_time, time.perf_counter() - start - graph_time, result.n_iter,
        )
        known = Y != -1
        self.prior_ = result.prior
        self.n_iter_ = int(result.n_iter)
        self.confidence_ = result.confidence
        # New points average their neighbours' known values where known and diffused probabilities
        # elsewhere: the known value is the best estimate of a known cell, and on fully labelled
        # data this is the s^gamma-weighted kNN vote that ML-kNN approximates. (Averaging the
        # diffused, prior-calibrated probabilities instead cost 0.07-0.2 test LRAP on MULAN: the
        # per-label calibration reorders labels within a row.)
        self._scores = np.where(known, Y, result.probability.astype(np.float64))
        transduction = (self._scores >= self.threshold).astype(np.int64)
        # Known cells keep their known value even if a custom threshold would flip them.
        transduction = np.where(known, (Y >= 0.5).astype(np.int64), transduction)
        probability = result.probability.astype(np.float64)
        if self._y_1d:
            self.classes_ = classes
            if len(classes) == 2:
                self.transduction_ = classes[transduction[:, 0]]
            else:  # a single known class: every point gets it
                self.transduction_ = np.full(len(Y), classes[0] if len(classes) else 0)
            self.label_distributions_ = np.column_stack([1 - probability[:, 0], probability[:, 0]])
        else:
            # One row [0, 1] per label: scikit-learn's scorers then read predict_proba as a label
            # indicator matrix (arange(n_labels), MLPClassifier's choice, looks binary with 2 labels
            # and single-class with 1, and they took one column), and cross_val_predict finds one
            # class per column (it needs an array; a list, as multi-output classifiers keep, fails).
            self.classes_ = np.tile(np.array([0, 1]), (Y.shape[1], 1))
            self.transduction_ = transduction
            self.label_distributions_ = probability
        return self

    # === Prediction ===

    def _positive_probability(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float32, np.float64], ensure_all_finite=False, reset=False)
        n_fit = self.index_.n
        k = min(self.n_neighbors, n_fit)
        with np.errstate(all="ignore"):
            scores, indices = self.index_.search(X, k)
        keep = indices >= 0
        # The fitted index's metric: `set_params(metric=...)` takes effect at the next fit.
        weights = _weights(scores, keep, self.index_.metric, self.gamma).astype(np.float64)
        total = weights.sum(axis=1, keepdims=True)
        neighbours = self._scores[np.where(keep, indices, 0)]  # (m, k, L)
        weighted = np.einsum("mk,mkl->ml", weights, neighbours)
        # One pseudo-neighbour carrying the label prior, with `prior_mass` times the mean weight
        # of the query's neighbours (ML-kNN's Laplace smoothing in spirit): it keeps the
        # probabilities strictly inside (0, 1) and breaks ties between labels by their prior.
        count = np.maximum(keep.sum(axis=1, keepdims=True), 1)
        pseudo = self.prior_mass * total / count
        denominator = total + pseudo
        probability = np.where(
            denominator > 0,
            (weighted + pseudo * self.prior_) / np.where(denominator > 0, denominator, 1.0),
            self.prior_,
        )
        return np.clip(probability, 0.0, 1.0)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability of positive per label for new points, from their fitted neighbours.

        The score of a new point is the `s ** gamma`-weighted mean over its `n_neighbors`
        nearest fitted points of their scores (known value for known cells, diffused
        probability otherwise), plus one pseudo-neighbour scoring the label prior with weight
        `prior_mass` times the mean neighbour weight; with no weighted neighbour it is the
        label prior.

        Args:
            X: features `(m, n_features)`.

        Returns:
            `(m, n_labels)`; for a model fitted on 1-D `y`, `(m, 2)` with the probabilities of
            classes 0 and 1.
        """
        probability = self._positive_probability(X)
        if self._y_1d:
            return np.column_stack([1 - probability[:, 0], probability[:, 0]])
        return probability

    def predict(self, X: Any) -> np.ndarray:
        """0 / 1 per label for new points (`predict_proba >= threshold`).

        Args:
            X: features `(m, n_features)`.

        Returns:
            int `(m, n_labels)`, or `(m,)` for a model fitted on 1-D `y`.
        """
        labels = (self._positive_probability(X) >= self.threshold).astype(np.int64)
        if not self._y_1d:
            return labels
        if len(self.classes_) == 2:
            return self.classes_[labels[:, 0]]
        return np.full(len(labels), self.classes_[0] if len(self.classes_) else 0)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """scikit-learn's accuracy of `predict(X)` (subset accuracy for several labels), which
        needs every cell of `y` known. For partial labels, score `predict_proba(X)` with
        `ssl_multilabel.evaluate` (masked mAP; numpy only, no TensorFlow import), e.g. in a scorer for `GridSearchCV`."""
        array = _y_array(y)
        unknown = _unknown_cells(array)
        if unknown.any():
            raise ValueError(
                f"score: `y` has {int(unknown.sum())} unknown cells (-1); accuracy needs every cell known. "
                "For partial labels score the probabilities on the known cells: "
                "`ssl_multilabel.evaluate(y, estimator.predict_proba(X))` (masked mAP)."
            )
        return super().score(X, array, sample_weight=sample_weight)


def _y_array(y: Any) -> np.ndarray:
    """`y` as an array: a `PartialLabels` table as its cells (-1 unknown), a sparse matrix (e.g.
    `MultiLabelBinarizer(sparse_output=True)`: every cell known) as its dense array."""
    from ssl_multilabel.labels import PartialLabels

    if isinstance(y, PartialLabels):
        return y.to_array()
    if hasattr(y, "columns") and hasattr(y, "to_numpy"):
        import pandas as pd

        numbers = [pd.api.types.is_numeric_dtype(d) or pd.api.types.is_bool_dtype(d) for d in y.dtypes]
        if all(numbers) and any(isinstance(d, pd.api.extensions.ExtensionDtype) for d in y.dtypes):
            # pandas' nullable columns (`convert_dtypes()`: Int64, boolean, Float64), which numpy
            # reads as objects: their numbers (a missing cell as NaN, refused by name)
            return y.to_numpy(dtype=np.float64, na_value=np.nan)
    return y.toarray() if sp.issparse(y) else np.asarray(y)


def _unknown_cells(array: np.ndarray) -> np.ndarray:
    """Mask of the cells of `y` that are -1 (unknown), for numeric and for object / string arrays."""
    if array.dtype.kind in "iuf":
        return array == -1
    if array.dtype.kind == "O":
        return np.array([value == -1 for value in array.ravel().tolist()], dtype=bool).reshape(array.shape)
    return np.zeros(array.shape, dtype=bool)


def _labels_2d(y: Any, n: int) -> tuple[np.ndarray, np.ndarray | None]:  # noqa: C901
    """Validate `y` and return it as a 2-D float64 boundary array (-1 unknown).

    A 1-D `y` is one binary label; like scikit-learn's binary classifiers it may use any two
    class values (-1 stays "unknown"), which are encoded as 0 / 1 and returned as `classes`.
    A 2-D `y` must already hold values in [0, 1] or -1. Returns `(Y, classes)` with `classes`
    None for 2-D input (and an array, possibly of fewer than two classes, for 1-D input).
    """
    if y is None:
        raise ValueError(
            "KNNLabelPropagation requires y to be passed, but the target y is None: pass an "
            "(n_samples, n_labels) array with -1 for unknown cells."
        )
    array = _y_array(y)
    if array.ndim not in (1, 2):
        raise ValueError(f"`y` must be 1-D or 2-D (n_samples, n_labels); got shape {array.shape}.")
    if array.shape[0] != n:
        raise ValueError(f"`y` has {array.shape[0]} rows; `X` has {n} samples.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError("Input y contains NaN or infinity; use -1 for unknown cells.")
    if array.ndim == 1 and array.dtype.kind in "OUSb":
        known = ~_unknown_cells(array)
        try:
            classes = np.unique(array[known])
        except TypeError as error:
            raise ValueError(f"Unknown label type: `y` mixes values that cannot be ordered ({error}).") from None
    elif array.dtype.kind in "OUS":
        raise ValueError(
            f"Unknown label type: `y` must be numeric (0 / 1, -1 for unknown); got dtype {array.dtype}."
        )
    else:
        given, array = array, array.astype(np.float64)  # `given` keeps y's dtype for the classes
        known = array != -1
        values = array[known]
        if values.size == 0 or ((values >= 0) & (values <= 1)).all():
            Y = _check_labels(array if array.ndim == 2 else array[:, None], name="y")
            return Y, (np.array([0, 1]) if array.ndim == 1 else None)
        outside = known & ~((array >= 0) & (array <= 1))
        row, col = np.argwhere(outside if array.ndim == 2 else outside[:, None])[0]
        value = (array[row, col] if array.ndim == 2 else array[row]).item()
        if not np.all(values == np.round(values)):
            raise ValueError(
                "Unknown label type: continuous target. `y` holds 0 / 1 (or a soft value in "
                f"[0, 1]) per known cell and -1 for unknown; row {row}, column {col} is {value!r}."
            )
        classes = np.unique(given[known])
        if array.ndim == 2:
            raise ValueError(
                "Only binary classification is supported: each column of a 2-D `y` is one label "
                f"with 0 / 1 for known cells and -1 for unknown; row {row}, column {col} is {value!r} "
                f"(values in y: {classes[:10].tolist()})."
            )
    if len(classes) > 2:
        raise ValueError(
            "Only binary classification is supported: a 1-D `y` is one label with at most two "
            f"classes (-1 = unknown); got {len(classes)} classes {classes[:10].tolist()}."
        )
    encoded = np.full(n, -1.0)
    if len(classes):
        encoded[known] = (array[known] == classes[-1]).astype(np.float64) if len(classes) == 2 else 1.0
    return encoded[:, None], classes
