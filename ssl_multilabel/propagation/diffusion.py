"""Per-label diffusion on a kNN affinity graph, all labels solved together by block CG.

For every label `c` two seed columns are built from the known cells of that label only: `1/|P_c|`
on its known positives and `1/|N_c|` on its known negatives (soft known values split their cell
between the two). With `S = D^-1/2 W D^-1/2` the diffused masses are

    F = (I - alpha S)^-1  S^m  Y          (Zhou et al. 2004; Iscen et al. 2019 with m = 0)

solved by conjugate gradient over the `(n, 2L)` right-hand side at once, each column stopping
when its relative residual falls below `tol`. `S^m Y` spreads each seed over its m-hop
neighbourhood before the solve: a low-pass graph filter (Li et al., "Label efficient
semi-supervised learning via graph filtering", CVPR 2019) that suppresses the noise of the
few direct neighbours of a sparse kNN graph; on B1 at k = 10 and alpha 0.99 it moves hidden-cell
mAP from 0.51 (m = 0) to 0.60 (m = 4). `m = 0` is exactly the classic closed form.

The positive and negative masses `f+`, `f-` of a cell become a probability with the label's
prior `pi` (smoothed share of positives among its known cells) and a prior mass `tau` that
shrinks cells reached by little mass towards the prior:

    p = (pi f+ + tau pi) / (pi f+ + (1 - pi) f- + tau),      confidence = |2p - 1|.

`tau` is `prior_mass` times the average mass per cell, so it is scale free.
"""

from __future__ import annotations

import logging
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from ..labels import unknown_mask
from .defaults import DEFAULT_ALPHA
from .graph import _is_int_at_least, _n_threads, _show_progress

__all__ = [
    "DiffusionResult",
    "calibrate",
    "conjugate_gradient",
    "diffuse",
    "label_prior",
    "normalized_affinity",
    "seed_matrix",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiffusionResult:
    """What `diffuse` returns; all arrays are `(n_samples, n_labels)`.

    Attributes:
        probability: calibrated probability that each cell is positive (known cells included:
            they are scored like any other cell; the caller decides whether to keep them).
        confidence: `|2 p - 1|` in [0, 1].
        positive_mass, negative_mass: the diffused masses `f+`, `f-` (float64, >= 0).
        prior: `(n_labels,)` smoothed share of positives among each label's known cells.
        n_iter: CG iterations of the slowest column.
        converged: `(2 * n_labels,)` bool, per right-hand-side column (positives then negatives).
    """

    probability: np.ndarray
    confidence: np.ndarray
    positive_mass: np.ndarray
    negative_mass: np.ndarray
    prior: np.ndarray
    n_iter: int
    converged: np.ndarray


def _check_affinity(W: Any) -> sp.csr_matrix:
    if not sp.issparse(W):
        raise TypeError(f"`W` must be a scipy.sparse affinity matrix; got {type(W).__name__}.")
    W = sp.csr_matrix(W)
    if W.dtype.kind != "f":  # a boolean or integer graph (kneighbors_graph(...).astype(bool)): 0/1 weights
        W = W.astype(np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"`W` must be square (n, n); got shape {W.shape}.")
    if W.nnz and (not np.isfinite(W.data).all() or W.data.min() < 0):
        raise ValueError("`W` must have finite, non-negative weights.")
    return W


def _asymmetry(W: sp.csr_matrix, sample: int = 10_000) -> float:
    """The largest |W[i, j] - W[j, i]| over `sample` stored entries drawn with a fixed seed (all of
    them when there are fewer): a kNN graph that is not symmetrised differs on most entries, and
    the check costs no copy of W (at 10^6 points W - W.T would take half a gigabyte)."""
    if not W.nnz:
        return 0.0
    picks = np.random.default_rng(0).choice(W.nnz, sample, replace=False) if W.nnz > sample else np.arange(W.nnz)
    rows = np.searchsorted(W.indptr, picks, side="right") - 1
    cols = W.indices[picks]
    return float(np.abs(W.data[picks] - np.asarray(W[cols, rows]).ravel()).max())


def normalized_affinity(W: Any) -> sp.csr_matrix:
    """`S = D^-1/2 W D^-1/2` with `D` the degrees; rows of isolated points stay zero.

    Args:
        W: symmetric non-negative sparse affinity `(n, n)`.

    Returns:
        float64 CSR `(n, n)`.

    Example:
        >>> import scipy.sparse as sp
        >>> normalized_affinity(sp.csr_matrix([[0, 2.0], [2.0, 0]])).toarray().round(6).tolist()
        [[0.0, 1.0], [1.0, 0.0]]
    """
    W = _check_affinity(W).astype(np.float64)
    degree = np.asarray(W.sum(axis=1)).ravel()
    scale = np.zeros_like(degree)
    np.divide(1.0, np.sqrt(degree), out=scale, where=degree > 0)
    S = sp.diags(scale) @ W @ sp.diags(scale)
    S = sp.csr_matrix(S)
    S.sort_indices()
    return S


#: `dtype="auto"` solves in float64 up to this many points and in float32 above (B1, n = 20,000:
#: 0.37 s instead of 0.64 s, hidden-cell mAP equal to 5 digits).
FLOAT32_LIMIT = 10_000

#: Graphs with fewer stored entries than this are multiplied in one thread (a product takes
#: well under a millisecond there, so thread hand-offs would dominate).
_PARALLEL_NNZ = 100_000


def _sparse_product(S: sp.csr_matrix, pool: Any, n_threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """`P -> S @ P` with the rows of `S` split over `n_threads` threads of `pool`.

    scipy's sparse products are single-threaded but release the GIL, so row blocks multiplied
    in a thread pool use every core (about 1.7x on 2 cores for a 20,000-point kNN-sized matrix).
    """
    if n_threads == 1:
        return lambda P: S @ P
    # Row blocks of about equal numbers of stored entries.
    bounds = np.searchsorted(S.indptr, np.linspace(0, S.nnz, n_threads + 1))
    bounds[0], bounds[-1] = 0, S.shape[0]
    blocks = [(S[a:b], a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

    def product(P: np.ndarray) -> np.ndarray:
        out = np.empty((S.shape[0], P.shape[1]), dtype=np.result_type(S.dtype, P.dtype))

        def run(block: tuple[sp.csr_matrix, int, int]) -> None:
            rows, a, b = block
            out[a:b] = rows @ P

        list(pool.map(run, blocks))
        return out

    return product


def _check_labels(Y: Any, n: int | None = None, name: str = "Y") -> np.ndarray:
    Y = np.asarray(Y)
    if Y.dtype == object or not (np.issubdtype(Y.dtype, np.number) or Y.dtype == np.bool_):
        raise ValueError(f"`{name}` must be numeric with -1 or NaN for unknown; got dtype {Y.dtype}.")
    Y = Y.astype(np.float64)
    if Y.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D (n_samples, n_labels); got shape {Y.shape}.")
    if n is not None and Y.shape[0] != n:
        raise ValueError(f"`{name}` has {Y.shape[0]} rows; the graph has {n} points.")
    # NaN marks an unknown cell as -1 does (`labels.unknown_mask`); below, -1 alone does.
    return np.where(unknown_mask(Y, name), -1.0, Y)


def label_prior(Y: np.ndarray) -> np.ndarray:
    """Per-label share of positives among known cells, Laplace-smoothed: (P + 1) / (P + N + 2).

    Args:
        Y: `(n, L)` with -1 or NaN for unknown and values in [0, 1] for known cells.

    Returns:
        `(L,)` float64 in (0, 1).
    """
    Y = _check_labels(Y)
    known = Y != -1
    positive = np.where(known, Y, 0.0).sum(axis=0)
    return (positive + 1.0) / (known.sum(axis=0) + 2.0)


def seed_matrix(Y: Any) -> np.ndarray:
    """The `(n, 2L)` seeds: `y / sum(y)` over known positives, `(1-y) / sum(1-y)` over negatives.

    Columns `0..L-1` are the positive seeds of each label, `L..2L-1` the negative seeds; a label
    with no known positive (negative) gets an all-zero column.

    Args:
        Y: `(n, L)` with -1 or NaN for unknown and values in [0, 1] (soft allowed) for known cells.

    Returns:
        float64 `(n, 2 * L)`.

    Example:
        >>> seed_matrix([[1, -1], [0, 1], [1, 0]]).tolist()
        [[0.5, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.5, 0.0, 0.0, 1.0]]
    """
    Y = _check_labels(Y)
    known = Y != -1
    positive = np.where(known, Y, 0.0)
    negative = np.where(known, 1.0 - Y, 0.0)
    seeds = np.hstack([positive, negative])
    total = seeds.sum(axis=0)
    np.divide(seeds, total, out=seeds, where=total > 0)
    return seeds


def conjugate_gradient(
    matvec: Callable[[np.ndarray], np.ndarray],
    B: np.ndarray,
    tol: float = 1e-6,
    max_iter: int = 100,
    progress: bool = False,
) -> tuple[np.ndarray, int, np.ndarray]:
    """Solve `A X = B` for a symmetric positive definite `A` and many right-hand sides at once.

    Plain CG run independently per column but vectorised over columns: one sparse product
    `A @ P` per iteration serves every column still running; a column stops once
    `||b - A x|| <= tol * ||b||`.

    Args:
        matvec: `P -> A @ P` for a `(n, m)` array `P`.
        B: `(n, c)` right-hand sides; float32 input is solved in float32 (half the memory
            traffic of the sparse products), anything else in float64.
        tol: relative residual tolerance per column.
        max_iter: iteration cap.
        progress: show a tqdm bar over iterations.

    Returns:
        `(X, n_iter, converged)`: the `(n, c)` solution, the iterations of the slowest column
        and a `(c,)` bool array.

    Example:
        >>> A = np.array([[4.0, 1.0], [1.0, 3.0]])
        >>> X, _, ok = conjugate_gradient(lambda P: A @ P, np.eye(2), tol=1e-12)
        >>> bool(np.allclose(A @ X, np.eye(2))), bool(ok.all())
        (True, True)
    """
    B = np.asarray(B)
    if B.dtype not in (np.float32, np.float64):
        B = B.astype(np.float64)
    dtype = B.dtype
    X = np.zeros_like(B)
    # Column norms and inner products accumulate in float64 even for float32 storage.
    b_norm2 = np.einsum("ij,ij->j", B, B, dtype=np.float64)
    threshold = (tol**2) * b_norm2
    converged = b_norm2 == 0  # zero columns are solved by X = 0
    active = np.flatnonzero(~converged)
    R = B[:, active].copy()
    P = R.copy()
    rr = np.einsum("ij,ij->j", R, R, dtype=np.float64)
    n_iter = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_iter, desc="diffusion (CG)", unit="it")
    Xa = np.zeros_like(R)  # solution of the still-active columns, written back when they stop
    try:
        while active.size and n_iter < max_iter:
            n_iter += 1
            AP = matvec(P)
            step = (rr / np.einsum("ij,ij->j", P, AP, dtype=np.float64)).astype(dtype)
            Xa += P * step
            R -= AP * step
            rr_new = np.einsum("ij,ij->j", R, R, dtype=np.float64)
            done = rr_new <= threshold[active]
            if bar is not None:
                bar.update(1)
            if done.any():
                converged[active[done]] = True
                X[:, active[done]] = Xa[:, done]
                still = ~done
                active, Xa, R, P = active[still], Xa[:, still], R[:, still], P[:, still]
                rr, rr_new = rr[still], rr_new[still]
            P *= (rr_new / rr).astype(dtype)
            P += R
            rr = rr_new
    finally:
        if bar is not None:
            bar.close()
    X[:, active] = Xa
    return X, n_iter, converged


def calibrate(
    positive_mass: np.ndarray,
    negative_mass: np.ndarray,
    prior: np.ndarray,
    prior_mass: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Turn diffused masses into a probability and a confidence per cell.

    `p = (pi f+ + tau pi) / (pi f+ + (1 - pi) f- + tau)` where `tau = prior_mass` times the mean
    of `pi f+ + (1 - pi) f-` over cells of the label; `confidence = |2p - 1|`.

    Args:
        positive_mass, negative_mass: `(n, L)` non-negative masses (each label's seeds sum to 1).
        prior: `(L,)` share of positives per label, in (0, 1).
        prior_mass: strength of the shrinkage towards the prior (0 = the plain mass ratio).

    Returns:
        `(probability, confidence)`, both float32 `(n, L)`.
    """
    fp = np.maximum(positive_mass, 0.0) * prior
    fn = np.maximum(negative_mass, 0.0) * (1.0 - prior)
    total = fp + fn
    tau = prior_mass * total.mean(axis=0)
    denominator = total + tau
    probability = np.full(total.shape, 0.5)
    np.divide(fp + tau * prior, denominator, out=probability, where=denominator > 0)
    # Cells no mass reached and with tau = 0 fall back to the prior, not to 0.5.
    probability = np.where(denominator > 0, probability, prior)
    probability = np.clip(probability, 0.0, 1.0)
    return probability.astype(np.float32), np.abs(2 * probability - 1).astype(np.float32)


def _check_number(name: str, value: object, low: float, high: float, *, closed_high: bool) -> float:
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if ok:
        ok = low <= float(value) <= high if closed_high else low <= float(value) < high
    if not ok:
        interval = f"[{low}, {high}]" if closed_high else f"[{low}, {high})"
        raise ValueError(f"`{name}` must be a number in {interval}; got {value!r}.")
    return float(value)


def diffuse(
    W: Any,
    Y: Any,
    alpha: float = DEFAULT_ALPHA,
    smoothing_steps: int = 4,
    *,
    tol: float = 1e-6,
    max_iter: int = 100,
    prior_mass: float = 0.3,
    progress: bool | str = "auto",
    dtype: str = "auto",
    n_threads: int | None = None,
) -> DiffusionResult:
    """Spread every label's known positives and negatives over the graph and calibrate.

    Args:
        W: symmetric non-negative sparse affinity `(n, n)` (e.g. from `knn_graph`); an
            asymmetric one is an error (the solver needs symmetry).
        Y: `(n, L)` labels with -1 or NaN for unknown, values in [0, 1] for known cells.
        alpha: diffusion strength in [0, 1); larger spreads farther. The default 0.8 beat
            Iscen et al.'s 0.99 on B1's MULAN sets and tied on its synthetic data
            (docs/propagation.md, "Choice of the defaults").
        smoothing_steps: m, the number of `S` products applied to the seeds before the solve
            (0 = the classic closed form `(I - alpha S)^-1 Y`).
        tol: relative residual at which a CG column stops.
        max_iter: CG iteration cap (a ConvergenceWarning is issued when it is hit).
        prior_mass: shrinkage of weakly reached cells towards the label prior (see `calibrate`).
        progress: tqdm bar over CG iterations; `"auto"` above 50,000 points.
        dtype: `"float64"`, `"float32"` or `"auto"` (float64 up to 10,000 points, float32
            above: the sparse products are memory bound, so float32 halves the solve time and
            the memory of the `(n, 2L)` CG arrays; rankings are unaffected).
        n_threads: threads for the sparse products; None = all cores available.

    Returns:
        A `DiffusionResult` (masses as float64 arrays).

    Example:
        >>> import scipy.sparse as sp
        >>> W = sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, .1, 0], [0, .1, 0, 1], [0, 0, 1, 0.]]))
        >>> result = diffuse(W, [[1], [-1], [-1], [0]], smoothing_steps=0)
        >>> bool(result.probability[1, 0] > 0.5 > result.probability[2, 0])
        True
    """
    W = _check_affinity(W)
    asymmetry = _asymmetry(W)
    if asymmetry > 1e-6 * (W.data.max() if W.nnz else 0.0):  # conjugate gradient needs a symmetric system
        raise ValueError(
            f"`W` must be symmetric (W[i, j] == W[j, i]); it differs from its transpose by up to {asymmetry:.3g}. "
            "A kNN graph such as scikit-learn's kneighbors_graph links each point to its own neighbours only: "
            "symmetrise it, e.g. `W.maximum(W.T)`, or build it with `ssl_multilabel.propagation.knn_graph`."
        )
    n = W.shape[0]
    Y = _check_labels(Y, n)
    alpha = _check_number("alpha", alpha, 0.0, 1.0, closed_high=False)
    tol = _check_number("tol", tol, 0.0, np.inf, closed_high=False)
    prior_mass = _check_number("prior_mass", prior_mass, 0.0, np.inf, closed_high=False)
    for name, value, low in (("smoothing_steps", smoothing_steps, 0), ("max_iter", max_iter, 1)):
        if not _is_int_at_least(value, low):
            raise ValueError(f"`{name}` must be an integer >= {low}; got {value!r}.")
    if dtype not in ("auto", "float32", "float64"):
        raise ValueError(f"`dtype` must be one of ['auto', 'float32', 'float64']; got {dtype!r}.")
    if dtype == "auto":
        dtype = "float64" if n <= FLOAT32_LIMIT else "float32"
    n_labels = Y.shape[1]
    S = normalized_affinity(W).astype(dtype)
    seeds = seed_matrix(Y).astype(dtype)
    empty = seeds.sum(axis=0) == 0
    if empty.any():
        no_pos, no_neg = empty[:n_labels], empty[n_labels:]
        cases = [(no_pos & no_neg, "no known cell (probability 0.5 everywhere, so no label to predict)"),
                 (no_neg & ~no_pos, "no known negative (probability at least its prior, above 0.5, "
                                    "everywhere: every cell comes out positive)"),
                 (no_pos & ~no_neg, "no known positive (probability at most its prior, below 0.5, everywhere)")]
        said = [f"labels {np.flatnonzero(mask)[:10].tolist()}{' ...' if mask.sum() > 10 else ''} have {what}"
                for mask, what in cases if mask.any()]
        warnings.warn(
            f"No known cells for some classes: {'; '.join(said)}. Give such labels known cells of both kinds "
            "(for labels whose unknown cells are mostly negative, 0 in those cells assumes them negative).",
            UserWarning,
            stacklevel=2,
        )
    threads = min(_n_threads(n_threads), max(1, S.nnz // _PARALLEL_NNZ))
    with ThreadPoolExecutor(threads) as pool:
        product = _sparse_product(S, pool, threads)
        for _ in range(smoothing_steps):
            seeds = product(seeds)
        X, n_iter, converged = conjugate_gradient(
            lambda P: P - alpha * product(P), seeds, tol=tol, max_iter=max_iter, progress=_show_progress(progress, n)
        )
    if not converged.all():
        from sklearn.exceptions import ConvergenceWarning

        warnings.warn(
            f"Diffusion CG did not reach tol={tol} in max_iter={max_iter} iterations for "
            f"{int((~converged).sum())} of {converged.size} columns; increase `max_iter`.",
            ConvergenceWarning,
            stacklevel=2,
        )
    logger.info("Diffusion: n=%d, %d labels, %d CG iterations", n, n_labels, n_iter)
    X = X.astype(np.float64, copy=False)
    positive, negative = X[:, :n_labels], X[:, n_labels:]
    prior = label_prior(Y)
    probability, confidence = calibrate(positive, negative, prior, prior_mass)
    return DiffusionResult(probability, confidence, positive, negative, prior, n_iter, converged)

