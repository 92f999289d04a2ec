"""The labeling loop: extend a trained model with new labels, and choose the cells to label next.

- `extend_model` grows the output layer of a trained classifier to the label table's labels:
  the units of the labels the model already has keep their kernel columns and biases exactly,
  the units of new labels start fresh. Everything before the output layer (preprocessing,
  backbone, frozen or not, `embedding`, `feature_noise`, `dropout`) is copied unchanged.
- `suggest_cells` ranks the unknown (row, label) cells of a table for a person to check, from a
  model's scores, optionally propagation scores and the kNN graph (score formula below).
- `merge_answers` puts the answers a person wrote into the suggestion CSV back into a table as
  human cells.
- `read_model_labels` reads the `<model>.labels.json` that the `Export` step writes beside a model.

The command line is `ssl-multilabel suggest RUN_DIR` and `ssl-multilabel answers RUN_DIR`
(docs/labeling.md); `ssl_multilabel.recipes.suggest` computes a run's scores and graph for them.
This module imports neither TensorFlow (only `extend_model` does, when called) nor the recipes.

Priority of a cell (`method="suggest"`). For an unknown cell `(i, j)` with model score `s`,
label threshold `t_j`, propagation score `p` (when given) and graph `W` (when given):

    uncertainty   u = 1 - |s - t_j| / max(t_j, 1 - t_j)          in [0, 1], 1 at the threshold
    disagreement  d = |s - p|                                      in [0, 1], 0 without propagation
    reach         r = n_ij / max(n)                                in [0, 1], 0 without a graph
                  n_ij = number of graph neighbours of row i whose label j is unknown
                  (the cells the answer informs through propagation); max over the candidates
    need          q_j = 1 + 1 / (1 + P_j)                          in (1, 2]
                  P_j = known positives of label j

    priority = max(u, d) * (1 + r) * q_j                            in [0, 4]

A cell is worth asking when the model is unsure of it (near its threshold) or the model and the
propagation disagree on it; more when its answer spreads to many unknown neighbours; more for a
label with few known positives. The need boost fades as a label gains positives (x2 with none,
x1.1 with 9), so it puts a label with almost no positives first without starving the others; a
boost relative to the label with the fewest positives would keep well-known labels out of the
ranking on balanced data. Ties rank by row, then label order.

`method="uncertainty"` ranks by `u` alone and `method="random"` draws the cells uniformly
(seeded): the baselines benchmark B8 compares the ranking with.

`method="typical"` needs no model scores, only features (`typical_priorities`): TypiClust
(Hacohen, Dekel and Weinshall, ICML 2022, "Active learning on a budget"), per label. With few
labels, typical examples teach a model more than the uncertain ones it would ask about. Every
label gets an equal share of the budget; for label `j`, the rows are clustered by k-means on
their L2-normalised features into (known cells of `j` + its share, at most 500) clusters, and from each
cluster that holds no known cell of `j`, largest first, the most typical row whose cell `j` is
unknown is asked (typicality: the inverse of the mean distance to its 20 nearest neighbours in
its cluster).

`method="diverse"` is BADGE (Ash et al., ICLR 2020, "Deep batch active learning by diverse,
uncertain gradient lower bounds") per label: uncertain cells, but not many of the same kind. For
label `j`, the gradient of the cell's loss with respect to the label's output weights is, up to its
sign, `u_ij * x_i` (`u`: the uncertainty term above; `x`: the row's L2-normalised features). Its
equal share of the budget is drawn by k-means++ seeding on these vectors among the rows whose cell
`j` is unknown: first the longest vector (the most uncertain cell), then each next row with
probability proportional to its squared distance to the nearest row already drawn. Uncertain rows
far from every drawn row are likely; near-certain rows (short vectors, near the origin) and
repeats of a drawn row are not.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd

from ssl_multilabel.labels import PartialLabels, Source, _cell_value, _read_csv
from ssl_multilabel.teacher_student.pseudo_labels import check_scores

__all__ = [
    "check_model_labels",
    "extend_model",
    "human_cells",
    "human_table",
    "merge_answers",
    "read_answers",
    "read_model_labels",
    "saved_run_inputs",
    "suggest_cells",
    "teacher_fill",
    "test_side",
    "without_rows_held_for_test",
]

logger = logging.getLogger(__name__)

SUGGESTION_COLUMNS = ("id", "label", "score", "answer")
_METHODS = ("suggest", "uncertainty", "random", "typical", "diverse")
TYPICAL_NEIGHBOURS, TYPICAL_MAX_CLUSTERS = 20, 500  # TypiClust's K and its cap on the clusters


# === Model label files ===


def labels_file(model_path: str | os.PathLike) -> Path:
    """The label-names file of a model: `<model>.labels.json` beside it (written by `Export`)."""
    return Path(f"{os.fspath(model_path)}.labels.json")


def read_model_labels(path: str | os.PathLike, n_labels: int | None = None) -> list[str]:
    """The label names of a model from its JSON label file: a list of distinct non-empty strings.

    Args:
        path: the `<model>.labels.json` file (see `labels_file`).
        n_labels: the number of outputs of the model, when known: the list must have that length.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON, not a list of `n_labels` non-empty strings, or duplicate names.
    """
    import json

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Label names file {str(path)!r} does not exist: a model needs the JSON list of its label names "
            "beside it (the Export step writes <model>.labels.json)."
        )
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"Label names file {str(path)!r} is not valid JSON ({err}); delete it or write a "
                         f"JSON list of the model's label names.") from None
    count = "" if n_labels is None else f"{n_labels} "
    if not isinstance(names, list) or (n_labels is not None and len(names) != n_labels) or \
            not all(isinstance(n, str) and n for n in names) or not names:
        got = f"a list of {len(names)} items" if isinstance(names, list) else type(names).__name__
        has = "" if n_labels is None else f" (the model has {n_labels} outputs)"
        raise ValueError(f"Label names file {str(path)!r}: expected a JSON list of {count}non-empty strings{has}; "
                         f"got {got}.")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"Label names file {str(path)!r}: duplicate label names {dupes}.")
    return names


def check_model_labels(
    model_labels: Sequence[str],
    table_labels: Sequence[str],
    *,
    model_source: str = "`model_labels`",
    table_source: str = "`table_labels`",
) -> None:
    """Raise one `ValueError` unless every model label is a label of the table.

    Args:
        model_labels, table_labels: label names.
        model_source, table_source: where each list comes from (file names), for the message.
    """
    for names, what in ((model_labels, model_source), (table_labels, table_source)):
        if isinstance(names, (str, bytes)) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"Label names from {what}: expected a list of non-empty strings; got {names!r}.")
        if len(set(names)) != len(names):
            raise ValueError(f"Label names from {what}: duplicate names {sorted({n for n in names if list(names).count(n) > 1})}.")
    missing = [name for name in model_labels if name not in set(table_labels)]
    if missing:
        raise ValueError(
            f"The model's labels {missing} (from {model_source}) are not labels of the table (from {table_source}); "
            f"a model can only be extended to a table that keeps every label it has, under the same name. "
            f"Model labels: {list(model_labels)}; table labels: {list(table_labels)}. Add the "
            "missing or renamed column back to the table (blank cells where unknown), or train a new model (leave "
            "init_model empty)."
        )


# === Extending a model ===


def extend_model(
    model: Any,
    model_labels: Sequence[str],
    table_labels: Sequence[str],
    *,
    seed: int = 0,
) -> Any:
    """A copy of `model` whose output layer has one unit per label of `table_labels`, in that order.

    The units of the labels in `model_labels` keep their kernel columns and biases exactly, so
    before any training the new model gives the old labels the scores the old model gives them
    (for a model with a neighbour vote, `NeighbourVote`, the scores of its head: the vote is left out).
    The units of the other labels start fresh: Keras' default initialisation of a `Dense` kernel
    (Glorot uniform, seeded with `seed`) and zero biases. Every layer before the output layer is a
    copy of the model's (same weights; a frozen backbone stays frozen and runs in inference mode),
    so `models.head_model`, `models.frozen_backbone` and `models.build_embedding_model` work on
    the result as on the original. `model` itself is not changed.

    Args:
        model: a classifier with an `embedding` layer whose last layer is the `Dense` layer
            named `scores` (every `models.build_classifier` model and noisy student).
        model_labels: the names of the model's outputs, in output order (its `.labels.json`).
        table_labels: the labels of the table to train on; must contain every model label.
        seed: seed of the new units' initialisation.

    Returns:
        A new `keras.Model` with `len(table_labels)` outputs and the name of `model`.

    Raises:
        ValueError: `model` has no `embedding` layer or `scores` output layer, `model_labels` does not have one name
            per output, or a model label is not in `table_labels` (one message naming them).

    Example:
        >>> clf = build_classifier("small_cnn", 2)  # doctest: +SKIP
        >>> bigger = extend_model(clf, ["cat", "dog"], ["cat", "bird", "dog"])  # doctest: +SKIP
        >>> bigger.output_shape  # doctest: +SKIP
        (None, 3)
    """
    import keras

    from ssl_multilabel.models import check_classifier

    check_model_labels(model_labels, table_labels)  # before list(): a string is refused, not split into letters
    model_labels, table_labels = list(model_labels), list(table_labels)
    layer_names = [layer.name for layer in getattr(model, "layers", [])]
    if isinstance(model, keras.Model) and layer_names[-1:] == ["neighbour_vote"]:
        # The vote stores the old table's labels; the extended model starts from the head alone.
        logger.info("Model %r: its neighbour vote is left out of the extended model (a NeighbourVote step after "
                    "training votes again, with the new table).", model.name)
        model = keras.Model(model.input, model.get_layer("scores").output, name=model.name)
    check_classifier(model, "argument `model`")
    old_scores = model.get_layer("scores")
    n_old = int(old_scores.units)
    if len(model_labels) != n_old:
        raise ValueError(
            f"Invalid value for argument `model_labels`: the model has {n_old} outputs; got {len(model_labels)} "
            f"label names {model_labels}."
        )
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for original, cloned in zip(model.layers, copy.layers):  # clone_model keeps trainable flags; make sure
        cloned.trainable = original.trainable
    features = copy.get_layer("scores").input
    scores = keras.layers.Dense(
        len(table_labels), activation=old_scores.activation, name="scores",
        kernel_initializer=keras.initializers.GlorotUniform(seed=int(seed)), bias_initializer="zeros",
        kernel_regularizer=old_scores.kernel_regularizer, dtype=old_scores.dtype_policy,
    )
    outputs = scores(features)
    kernel, bias = (np.array(w) for w in scores.get_weights())
    old_kernel, old_bias = (np.asarray(w) for w in old_scores.get_weights())
    for a, name in enumerate(model_labels):
        b = table_labels.index(name)
        kernel[:, b] = old_kernel[:, a]
        bias[b] = old_bias[a]
    scores.set_weights([kernel, bias])
    extended = keras.Model(copy.input, outputs, name=model.name)
    new = [name for name in table_labels if name not in model_labels]
    logger.info("Extended model %r from %d to %d labels; new labels: %s.", model.name, n_old, len(table_labels), new)
    return extended


def teacher_fill(labels: PartialLabels, old_scores: np.ndarray, model_labels: Sequence[str]) -> PartialLabels:
    """`labels` with the unknown cells of the model's labels filled with the old model's scores.

    The old model is the teacher of its own labels: each unknown cell of a label in
    `model_labels` takes the old model's score as a soft target, weight 1, source TEACHER, so
    training the extended model on the table keeps those outputs instead of forgetting them.
    Known cells (human or filled) never change.

    Args:
        labels: the table to train on.
        old_scores: `(n, len(model_labels))` scores of the old model on the table's rows.
        model_labels: the old model's labels, in output order (all in `labels.label_names`).
    """
    old_scores = np.asarray(old_scores, np.float64)
    if old_scores.shape != (labels.n_samples, len(model_labels)):
        raise ValueError(f"`old_scores` has shape {old_scores.shape}; expected ({labels.n_samples}, {len(model_labels)}).")
    values = np.full(labels.known.shape, -1.0)
    for a, name in enumerate(model_labels):
        values[:, labels.label_names.index(name)] = np.clip(old_scores[:, a], 0.0, 1.0)
    return labels.fill(values, 1.0, Source.TEACHER)


# === Suggesting cells ===


def default_thresholds(labels: PartialLabels, scores: np.ndarray) -> np.ndarray:
    """Per-label thresholds for the uncertainty term: the best-F1 cut on the known cells
    (`thresholds.best_f1_thresholds`), 0.5 for a label without both classes among its known cells."""
    from ssl_multilabel import thresholds

    # The thresholds module warns about labels it cannot fit ("held-out cells of one class"): here
    # they get 0.5, as documented, so its warnings would only mislead.
    log = logging.getLogger(thresholds.__name__)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        t_pos, _ = thresholds.best_f1_thresholds(labels, scores)
    finally:
        log.setLevel(level)
    fallback = [name for name, t in zip(labels.label_names, t_pos) if not np.isfinite(t)]
    if fallback:
        logger.info("Labels %s have known cells of one class only (or none): threshold 0.5 for their uncertainty.", fallback)
    return np.where(np.isfinite(t_pos), t_pos, 0.5)


def _thresholds(thresholds: Any, labels: PartialLabels, scores: np.ndarray) -> np.ndarray:
    if thresholds is None:
        return default_thresholds(labels, scores)
    try:
        t = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (labels.n_labels,))
    except (TypeError, ValueError):
        t = np.array([np.nan])
    if t.shape != (labels.n_labels,) or not ((t >= 0) & (t <= 1)).all():
        raise ValueError(f"Invalid value for argument `thresholds`. Expected None, a float in [0, 1] or one per label "
                         f"({labels.n_labels}). Received: thresholds={thresholds!r}")
    return np.array(t)


def cell_priorities(
    labels: PartialLabels,
    scores: np.ndarray,
    *,
    thresholds: Any = None,
    propagation: np.ndarray | None = None,
    graph: Any = None,
    method: Literal["suggest", "uncertainty"] = "suggest",
) -> np.ndarray:
    """`(n, L)` priorities of the formula in the module docstring; NaN on known cells."""
    shape = labels.known.shape
    scores = check_scores(scores, shape, "scores")
    t = _thresholds(thresholds, labels, scores)
    unknown = ~labels.known
    u = 1.0 - np.abs(scores - t) / np.maximum(t, 1.0 - t)
    if method == "uncertainty":
        return np.where(unknown, u, np.nan)
    d = np.zeros(shape) if propagation is None else np.abs(scores - check_scores(propagation, shape, "propagation"))
    r = np.zeros(shape)
    if graph is not None:
        import scipy.sparse as sp

        if not sp.issparse(graph) and not isinstance(graph, np.ndarray):
            raise ValueError(f"Invalid value for argument `graph`. Expected a sparse (n, n) affinity matrix "
                             f"(propagation.knn_graph). Received {type(graph).__name__}.")
        if graph.shape != (shape[0], shape[0]):
            raise ValueError(f"Invalid value for argument `graph`. Expected shape ({shape[0]}, {shape[0]}), one row "
                             f"and column per row of `labels`. Received shape {graph.shape}.")
        adjacency = sp.csr_matrix(graph) != 0
        adjacency.setdiag(False)
        # n[i, j] = sum_k A[k, i] * unknown[k, j]: the neighbours of i (edges into i) whose cell j is unknown.
        n = np.asarray(adjacency.T.astype(np.float64) @ unknown.astype(np.float64))
        top = n[unknown].max() if unknown.any() else 0.0
        if top > 0:
            r = n / top
    positives = (labels.known & (labels.values >= 0.5)).sum(axis=0).astype(np.float64)
    q = 1.0 + 1.0 / (1.0 + positives)
    priority = np.maximum(u, d) * (1.0 + r) * q[None, :]
    return np.where(unknown, priority, np.nan)


def _typicality(x: np.ndarray, neighbours: int) -> np.ndarray:
    """Inverse mean Euclidean distance of each row of unit vectors `x` to its `neighbours` nearest
    other rows (0 for a single row)."""
    k = min(neighbours, len(x) - 1)
    out = np.zeros(len(x))
    if k < 1:
        return out
    for start in range(0, len(x), 1024):  # (chunk, m) distances: memory bounded for large clusters
        d = np.sqrt(np.maximum(2.0 - 2.0 * x[start:start + 1024] @ x.T, 0.0))
        nearest = np.partition(d, k, axis=1)[:, : k + 1]  # itself (distance 0) and its k nearest
        out[start:start + 1024] = 1.0 / np.maximum((nearest.sum(axis=1)) / k, 1e-12)
    return out


def _unit_rows(features: Any, n: int) -> np.ndarray:
    """`features` as an `(n, d)` float array with every row scaled to length 1 (`typical` and
    `diverse` compare directions only); a clear error for any other shape."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) != n:
        raise ValueError(f"Invalid value for argument `features`. Expected an (n, d) array with one row per row of the "
                         f"table ({n}). Received shape {features.shape}.")
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def typical_priorities(known: np.ndarray, features: np.ndarray, budget: int, *, seed: int = 0,
                       neighbours: int = TYPICAL_NEIGHBOURS) -> np.ndarray:
    """`(n, L)` priorities of `method="typical"` (module docstring); NaN on known cells.

    For label `j` the rows chosen by TypiClust (one per cluster without a known cell of `j`) rank
    above every other row, the largest cluster's first; the other rows rank by typicality.
    `per_label_order` then takes an equal share of `budget` per label.
    """
    from sklearn.cluster import KMeans

    known = np.asarray(known, bool)
    x = _unit_rows(features, known.shape[0])
    n, n_labels = known.shape
    share = -(-int(budget) // max(n_labels, 1))
    priority = np.full(known.shape, np.nan)
    clusterings: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # labels with as many clusters share one
    for j in range(n_labels):
        if known[:, j].all():
            continue
        clusters = max(1, min(n, int(known[:, j].sum()) + share, TYPICAL_MAX_CLUSTERS))
        if clusters not in clusterings:
            assign = KMeans(clusters, n_init=1, random_state=seed).fit_predict(x)
            typicality = np.zeros(n)
            for c in range(clusters):
                members = np.flatnonzero(assign == c)
                typicality[members] = _typicality(x[members], neighbours)
            clusterings[clusters] = assign, typicality
        assign, typicality = clusterings[clusters]
        sizes = np.bincount(assign, minlength=clusters)
        uncovered = np.setdiff1d(np.arange(clusters), assign[known[:, j]])
        first = np.zeros(n)
        for rank, c in enumerate(sorted(uncovered, key=lambda c: (-sizes[c], c))):
            candidates = np.flatnonzero(assign == c)  # none is known: the cluster is uncovered
            first[candidates[np.argmax(typicality[candidates])]] = clusters - rank
        top = typicality.max() + 1.0
        priority[:, j] = np.where(known[:, j], np.nan, np.where(first > 0, top * (1.0 + first), typicality))
    return priority


def diverse_priorities(uncertainty: np.ndarray, features: np.ndarray, budget: int, *, seed: int = 0) -> np.ndarray:
    """`(n, L)` priorities of `method="diverse"` (module docstring); NaN where `uncertainty` is NaN
    (known cells).

    For label `j` the rows drawn by k-means++ seeding on `uncertainty[:, j] * unit(features)` rank
    above every other row, in the order drawn (an equal share of `budget` per label); the other
    rows rank by their uncertainty. `per_label_order` then takes each label's share in turn.
    """
    uncertainty = np.asarray(uncertainty, np.float64)
    x = _unit_rows(features, uncertainty.shape[0])
    rng = np.random.default_rng(seed)
    n_labels = uncertainty.shape[1]
    share = -(-int(budget) // max(n_labels, 1))
    priority = uncertainty.copy()
    for j in range(n_labels):
        candidates = np.flatnonzero(~np.isnan(uncertainty[:, j]))
        if not len(candidates):
            continue
        g = uncertainty[candidates, j, None] * x[candidates]
        sq = np.einsum("ij,ij->i", g, g)  # |g|^2; |g - g_p|^2 = |g|^2 - 2 g.g_p + |g_p|^2 (one product per draw)
        # Squared distance to the nearest drawn row; the first row drawn is the longest vector.
        nearest = np.full(len(candidates), np.inf)
        pick = int(np.argmax(sq))
        for rank in range(min(share, len(candidates))):
            priority[candidates[pick], j] = 2.0 + share - rank  # above every uncertainty (<= 1)
            distance = np.maximum(sq - 2.0 * (g @ g[pick]) + sq[pick], 0.0)
            distance[pick] = 0.0  # exactly, whatever the rounding
            nearest = np.minimum(nearest, distance)
            total = nearest.sum()
            if total <= 0:  # every row coincides with a drawn one: the rest by uncertainty
                break
            pick = int(rng.choice(len(candidates), p=nearest / total))
    return priority


def _tie_safe(priority: np.ndarray) -> np.ndarray:
    """Priorities rounded to 12 decimals, so that two equal by their formula tie (and rank by row,
    then label) whatever the last bit of their floating-point arithmetic (0.6 vs 0.6000000000000001)."""
    return np.round(priority, 12)


def per_label_order(priority: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the non-NaN cells of `priority`, each label's best cell in turn: the best cell
    of every label (in label order), then the second best of every label, and so on (ties by row)."""
    rows, cols, ranks = [], [], []
    for j in range(priority.shape[1]):
        candidates = np.flatnonzero(~np.isnan(priority[:, j]))
        order = candidates[np.argsort(-_tie_safe(priority[candidates, j]), kind="stable")]
        rows.append(order)
        cols.append(np.full(len(order), j))
        ranks.append(np.arange(len(order)))
    rows, cols, ranks = (np.concatenate(a) for a in (rows, cols, ranks))
    order = np.lexsort((cols, ranks))
    return rows[order], cols[order]


def suggest_cells(
    labels: PartialLabels,
    scores: np.ndarray | None,
    *,
    budget: int,
    thresholds: Any = None,
    graph: Any = None,
    propagation: np.ndarray | None = None,
    features: np.ndarray | None = None,
    method: Literal["suggest", "uncertainty", "random", "typical", "diverse"] = "suggest",
    per_label: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
    """The `budget` unknown cells of `labels` most worth a person's answer, best first.

    Args:
        labels: the table; only its unknown cells are ranked (pass the human cells of a run's
            table, e.g. `table.restrict(table.source == Source.HUMAN)`, to rank every cell no person
            has labeled).
        scores: `(n, L)` model scores in [0, 1] (the teacher's probabilities); may be None for
            `method="typical"` (the CSV's score column is then empty).
        budget: the number of cells to suggest (fewer when fewer cells are unknown).
        thresholds: per-label thresholds of the uncertainty term: None (the best-F1 cut of the
            known cells, `default_thresholds`), a float, or one per label.
        graph: optional `(n, n)` kNN affinity (`propagation.knn_graph`) for the reach term.
        propagation: optional `(n, L)` propagation scores for the disagreement term.
        features: `(n, d)` features of the rows (a model's embeddings), for `method="typical"` and
            `method="diverse"`.
        method: `"suggest"` (the formula of the module docstring), `"uncertainty"` (closeness to
            the threshold only), `"random"` (uniform, seeded), `"typical"` (TypiClust per
            label on `features`) or `"diverse"` (BADGE per label: uncertain cells spread over
            `features`); module docstring.
        per_label: spend an equal share of the budget on every label: each label's best cell by the
            ranking in turn, in label order (`per_label_order`), instead of the best cells over all
            labels. mAP weighs every label the same, and a ranking over all cells can spend most of
            the budget on one label. `method="typical"` and `method="diverse"` always do this.
        seed: seed of `method="random"`, of the k-means of `method="typical"` and of the draws of
            `method="diverse"`.

    Returns:
        A DataFrame with columns `id`, `label`, `score` (the model's score of the cell) and
        `answer` (empty strings, for the person to fill with 1 or 0), one row per cell.

    Example:
        >>> table = PartialLabels.from_array([[1, -1], [0, -1]], ["a", "b"], ["x", "y"])
        >>> suggest_cells(table, [[0.9, 0.5], [0.1, 0.9]], budget=1, thresholds=0.5)["id"].tolist()
        ['x']
    """
    if not isinstance(labels, PartialLabels):
        raise TypeError(f"Invalid value for argument `labels`. Expected a PartialLabels. Received: {type(labels).__name__}")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
        raise ValueError(f"Invalid value for argument `budget`. Expected an int >= 0. Received: budget={budget!r}")
    if method not in _METHODS:
        raise ValueError(f"Invalid value for argument `method`. Expected one of {_METHODS}. Received: method={method!r}")
    shape = labels.known.shape
    if method in ("typical", "diverse") and features is None:
        raise ValueError(f"Invalid value for argument `features`. method={method!r} ranks rows by their features; "
                         "pass an (n, d) array (e.g. the model's embeddings). Received: features=None")
    if method == "typical":
        scores = None if scores is None else check_scores(scores, shape, "scores")
    elif scores is None:
        raise ValueError(f"Invalid value for argument `scores`. method={method!r} ranks cells by the model's scores; "
                         f"pass an array of shape {shape} (only method='typical' ranks without them). Received: scores=None")
    else:
        scores = check_scores(scores, shape, "scores")
    unknown = ~labels.known
    n_unknown = int(unknown.sum())
    if budget > n_unknown:
        logger.warning("budget=%d but only %d cells are unknown: suggesting all of them.", budget, n_unknown)
    if method == "typical":
        rows, cols = per_label_order(typical_priorities(labels.known, features, budget, seed=seed))
        order = np.arange(len(rows))
    elif method == "diverse":
        uncertainty = cell_priorities(labels, scores, thresholds=thresholds, method="uncertainty")
        rows, cols = per_label_order(diverse_priorities(uncertainty, features, budget, seed=seed))
        order = np.arange(len(rows))
    else:
        rows, cols = np.nonzero(unknown)  # row-major: ties rank by row, then label
        if method == "random":
            priority = np.full(shape, np.nan)
            drawn = np.random.default_rng(seed).permutation(len(rows))
            priority[rows[drawn], cols[drawn]] = -np.arange(len(rows), dtype=np.float64)  # the draw order
        else:
            priority = cell_priorities(labels, scores, thresholds=thresholds, propagation=propagation, graph=graph,
                                       method=method)
        if per_label:
            rows, cols = per_label_order(priority)
            order = np.arange(len(rows))
        else:
            order = np.argsort(-_tie_safe(priority[rows, cols]), kind="stable")
    order = order[: int(budget)]
    rows, cols = rows[order], cols[order]
    return pd.DataFrame({
        "id": [labels.ids[i] for i in rows],
        "label": [labels.label_names[j] for j in cols],
        "score": scores[rows, cols].round(6) if scores is not None else np.full(len(rows), np.nan),
        "answer": [""] * len(rows),
    }, columns=list(SUGGESTION_COLUMNS))


# === Answers ===


def read_answers(path: str | os.PathLike, where: str | None = None) -> pd.DataFrame:
    """The cells CSV `suggest` writes, as strings, read by the label tables' reader: the line each
    row starts on (blank lines and cells over several lines counted, as an editor does) is in
    `attrs["csv_lines"]`, and a row with a field too many or too few is an error naming its line.
    `where` names the file in messages (default: the path)."""
    path = Path(path)
    where = where or str(path)
    if not path.is_file():
        raise FileNotFoundError(f"Answers file {where!r} does not exist.")
    return _read_csv(path.read_bytes(), Path(where), "id", what="Answers file",
                     expected="the columns id, label, score, answer, run written by `ssl-multilabel suggest`, "
                              "with 1 or 0 in the answer column")


def merge_answers(labels: PartialLabels, answers: pd.DataFrame | str | os.PathLike, *, where: str | None = None) -> PartialLabels:
    """`labels` with the answered cells of a suggestion CSV as human cells; nothing else changes.

    Each row of `answers` names a cell (`id`, `label`) and its `answer`: `1` (positive), `0`
    (negative) or blank (not answered: the cell stays as it is). Answered cells become human
    cells (weight 1), also where the table held a machine-filled (propagated / teacher) value.

    Args:
        labels: the table to merge into.
        answers: the CSV written by `ssl-multilabel suggest` (a path) or its DataFrame; columns
            `id`, `label`, `answer` (others, such as `score`, are ignored).
        where: the name of the answers file for messages (default: the path, or "answers").

    Raises:
        ValueError: a missing column, an answer other than 1 / 0 / blank, an id or label not in
            the table, the same cell answered twice differently, or an answer contradicting a
            human cell of the table; the message names the CSV line (header = line 1).
    """
    if isinstance(answers, (str, os.PathLike)):
        where = where or str(answers)
        answers = read_answers(answers, where)
    where = where or "answers"
    if not isinstance(answers, pd.DataFrame):
        raise TypeError(f"Invalid value for argument `answers`. Expected a DataFrame or a CSV path. Received: {type(answers).__name__}")
    missing = [c for c in ("id", "label", "answer") if c not in answers.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; expected the columns id, label, score, answer, run "
                         f"written by `ssl-multilabel suggest`. Got {list(answers.columns)}.")
    row_of = {row_id: i for i, row_id in enumerate(labels.ids)}
    col_of = {name: j for j, name in enumerate(labels.label_names)}
    values = np.full(labels.known.shape, -1.0)
    line_of: dict[tuple[int, int], int] = {}
    human = labels.known & np.isin(labels.source, (Source.HUMAN, Source.IMPLIED))
    lines = answers.attrs.get("csv_lines") or list(range(2, len(answers) + 2))  # a DataFrame: header = line 1
    for line, row_id, label, answer in zip(lines, answers["id"], answers["label"], answers["answer"]):
        cell = f"{where} line {line} (id {str(row_id)!r}, label {str(label)!r})"
        try:
            value = _cell_value(answer)  # the spellings a label table's cell takes (1.00, TRUE, pd.NA ...)
        except KeyError:
            raise ValueError(f"{cell}: answer {str(answer).strip()!r} is not 1, 0 or blank (or true / false, "
                             "? for no answer).") from None
        if value is None:
            continue
        text = str(answer).strip()
        i = row_of.get(str(row_id))  # as the table holds it (an id may end in a space), else stripped
        i = row_of.get(str(row_id).strip()) if i is None else i
        j = col_of.get(str(label).strip())
        if i is None:
            raise ValueError(f"{cell}: id {str(row_id)!r} is not a row of the label table ({labels.n_samples} rows).")
        if j is None:
            raise ValueError(f"{cell}: label {str(label)!r} is not a label of the table; labels: {list(labels.label_names)}.")
        if (i, j) in line_of and values[i, j] != value:
            raise ValueError(f"{cell}: answer {text!r} contradicts line {line_of[(i, j)]}, which answers the same cell "
                             f"{int(values[i, j])}.")
        if human[i, j] and labels.values[i, j] != value:
            given_as = (f"a person labeled this cell {labels.values[i, j]:g}" if labels.source[i, j] == Source.HUMAN
                        else "this cell is a negative implied by a person's positive of its exclusive group")
            raise ValueError(f"{cell}: answer {text!r} contradicts the table, where {given_as}; remove the line or "
                             "correct the table.")
        values[i, j] = value
        line_of[(i, j)] = line
    answered = values >= 0
    if not labels.exclusive_groups:
        return labels.merge(PartialLabels.from_array(values, label_names=labels.label_names, ids=labels.ids),
                             overwrite=True)
    # Exclusive groups: a person's positives after the answers, at most one per group, and the
    # negatives an answered positive implies for the rest of its group.
    person = np.where(answered, values, np.where(labels.known & (labels.source == Source.HUMAN), labels.values, -1.0))
    try:
        implied = PartialLabels.from_array(person, label_names=labels.label_names, ids=labels.ids,
                                           exclusive_groups=labels.exclusive_groups)
    except ValueError as err:
        raise ValueError(f"{where}: the answers break an exclusive group. {err}") from None
    return labels.merge(implied.restrict(answered | (implied.known & ~human)), overwrite=True)


def save_answered(merged: PartialLabels, out: str | os.PathLike, id_column: str, source: str | os.PathLike) -> list[str]:
    """Write the table `answers` merged to `out`. When `source` (the table merged into) is a CSV of
    human labels with other columns beside the labels (read with `label_columns`: a group, a
    photographer, notes) and `out` a CSV, `out` is that CSV with the label cells replaced, every
    other column and cell as it was; else `merged.save(out)`. Returns the other columns kept."""
    from ssl_multilabel._files import atomic_write_bytes
    from ssl_multilabel.labels import _csv_field, _is_binary, _meta_path

    out, source = Path(out), Path(source)
    plain = (merged.source == Source.HUMAN) & (merged.weight == 1) & np.isin(merged.values, (0.0, 1.0))
    if (_is_binary(out) or not source.is_file() or _is_binary(source) or _meta_path(source).is_file()
            or merged.exclusive_groups
            or (merged.known & ~plain).any()):
        merged.save(out, id_column=id_column)
        return []
    frame = _read_csv(source.read_bytes(), source, id_column)
    others = [c for c in frame.columns if c != id_column and c not in merged.label_names]
    if not others or [str(i) for i in frame[id_column]] != list(merged.ids):
        merged.save(out, id_column=id_column)
        return []
    for j, name in enumerate(merged.label_names):
        frame[name] = np.where(merged.known[:, j], np.where(merged.values[:, j] >= 0.5, "1", "0"), "")
    lines = [",".join(_csv_field(str(c)) for c in frame.columns)]
    lines += [",".join(_csv_field(str(cell)) for cell in row) for row in frame.itertuples(index=False)]
    _meta_path(out).unlink(missing_ok=True)  # a sidecar of an earlier table would not match this CSV
    atomic_write_bytes(out, ("\n".join(lines) + "\n").encode("utf-8"))
    return others


# === Run directories (what the steps saved; no recipes, no TensorFlow) ===


def final_model_path(run_dir: Path, records: list[dict[str, Any]]) -> Path | None:
    """The model file of the last step that wrote one, or None."""
    for record in reversed(records):
        if record.get("model"):
            return Path(run_dir) / record["model"]
    return None


def _final_labels(run_dir: Path, records: list[dict[str, Any]]) -> PartialLabels | None:
    for record in reversed(records):
        if record.get("labels"):
            return PartialLabels.load(run_dir / record["labels"], require_sidecar=True)
    return None


def _latest_propagation_scores(run_dir: Path, records: list[dict[str, Any]], n: int) -> np.ndarray | None:
    for record in reversed(records):
        name = (record.get("info") or {}).get("scores")
        if name and Path(str(name)).name == name and (run_dir / record["dir"] / name).is_file():
            scores = np.load(run_dir / record["dir"] / name)
            if scores.ndim == 2 and scores.shape[0] == n:
                return np.clip(scores.astype(np.float64), 0.0, 1.0)
    return None


def _saved_model_scores(run_dir: Path, records: list[dict[str, Any]], n: int) -> np.ndarray | None:
    """The final model's scores of the training rows, when an `Evaluate(split="hidden")` after the
    last model-producing step saved them."""
    for record in reversed(records):
        if record.get("model"):
            return None
        if (record.get("info") or {}).get("split") == "hidden":
            path = run_dir / record["dir"] / "predictions.npz"
            if path.is_file():
                with np.load(path) as npz:
                    scores = npz["y_score"]
                if scores.ndim == 2 and scores.shape[0] == n:
                    return np.clip(scores.astype(np.float64), 0.0, 1.0)
    return None


def human_cells(table: PartialLabels) -> PartialLabels:
    """The cells a person gave: `table`'s human cells and the negatives their exclusive groups imply.

    Machine cells (propagated, teacher, and assume-negative cells a training step marked implied)
    become unknown again: no person has checked them, so they are candidates for `suggest_cells`.
    """
    human = table.restrict(table.source == Source.HUMAN)
    if not table.exclusive_groups:
        return human
    return PartialLabels.from_array(human.to_array(), label_names=table.label_names, ids=table.ids,
                                    exclusive_groups=table.exclusive_groups)


def test_side(ids: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """Which rows lie on the test side of a `fraction` split (bool per id), by a hash of the seed
    and the id alone: a row keeps its side when the table grows or gains labels (a labeling
    round), so successive runs score the same test rows. Each id falls there with probability
    `fraction`. `ImageFolder`'s `test_fraction` split holds out the rows with a known cell there."""
    draws = [int.from_bytes(hashlib.sha256(f"{seed}\0{row_id}".encode()).digest()[:8], "big") for row_id in ids]
    return np.array(draws, dtype=np.float64) / 2.0**64 < fraction


def without_rows_held_for_test(inputs: dict[str, Any], data: dict[str, Any], seed: int) -> dict[str, Any]:
    """`inputs` (as `saved_run_inputs` gives them, row-aligned arrays included) without the
    unlabeled rows that the test split of the run's data (`data`: its resolved settings, as in
    recipe.json; `seed`: the recipe's) will hold out once they gain a known cell (`test_side`): an
    answer there would move its row into the test split, which would then no longer be the sample
    the user chose. Only an `ImageFolder` split by `test_fraction` (no `test_csv`) holds rows out.
    `inputs["held_for_test"]` is how many rows were left out."""
    labels = inputs["labels"]
    fraction = data.get("test_fraction") or 0.0
    if labels is None or data.get("type") != "ImageFolder" or data.get("test_csv") or not fraction:
        return {**inputs, "held_for_test": 0}
    held = test_side(labels.ids, fraction, seed) & ~labels.known.any(axis=1)
    if not held.any():
        return {**inputs, "held_for_test": 0}
    keep = ~held
    out = {key: (value[keep] if isinstance(value, np.ndarray) and len(value) == len(keep) else value)
           for key, value in inputs.items()}
    out["labels"] = labels.subset(keep)
    out["held_for_test"] = int(held.sum())
    return out


def saved_run_inputs(run_dir: str | os.PathLike, labels: PartialLabels | None = None,
                     model_scores: np.ndarray | None = None) -> dict[str, Any]:
    """What `suggest_cells` can take from the files of a run directory, without computing anything.

    Returns a dict with `labels` (`human_cells` of `labels` when given, the table as it reads now:
    answers merged into it since the run are known cells; else of the run's final table; None
    when no step wrote a table and none is given), `scores` (`model_scores`; else the final
    model's scores of the training rows if an `Evaluate(split="hidden")` saved them after the
    last training step; else the last propagation's), `propagation` (the last propagation's
    scores, when the model gives `scores`), `graph` (None) and `what` (where they came from).
    `ssl_multilabel.recipes.suggest.run_inputs` adds the model's scores and the kNN graph.
    """
    from ssl_multilabel.run_dir import read_run

    run_dir = Path(run_dir)
    _, state = read_run(run_dir)
    records = state.get("finished", [])
    final = labels if labels is not None else _final_labels(run_dir, records)
    out: dict[str, Any] = {"labels": None, "scores": None, "propagation": None, "graph": None, "what": ""}
    if final is None:
        return out
    human = human_cells(final)
    out["labels"] = human
    propagation = _latest_propagation_scores(run_dir, records, human.n_samples)
    model_path = final_model_path(run_dir, records)
    if model_scores is None and model_path is not None:
        model_scores = _saved_model_scores(run_dir, records, human.n_samples)
    if model_scores is not None:
        out["scores"], out["propagation"] = model_scores, propagation
        where = model_path.relative_to(run_dir) if model_path is not None else "?"
        out["what"] = f"scores of the final model ({where})" + (" and of the last propagation" if propagation is not None else "")
    elif propagation is not None:
        out["scores"] = propagation
        out["what"] = "scores of the last propagation"
    return out


def human_table(run_dir: str | os.PathLike, labels: str | os.PathLike | None = None, *,
                label_columns: Sequence[str] | None = None) -> tuple[PartialLabels, str, str]:
    """The human label table of a run, to merge answers into, where it comes from, and its id column.

    `labels` when given (a CSV of human labels read with `label_columns`, as in
    `PartialLabels.load`); else the recipe's `data.labels_csv` (the table the user gave, all its
    rows, including those the recipe held out for testing); else, for demo data, the table the run
    wrote beside its demo images or embeddings (all rows too); else (built-in data) the human cells
    of the run's final table. A CSV is read with the recipe's `data.id_column` (default
    `id`), the name to write the merged table with; `data.labels_csv` also with the recipe's
    `data.label_columns` (the merged table holds those columns only).
    """
    from ssl_multilabel.run_dir import DEMO_DIRS, read_run

    run_dir = Path(run_dir)
    meta, state = read_run(run_dir)
    data = meta["recipe"].get("data")
    data = data if isinstance(data, dict) else {}
    id_column = data.get("id_column") or "id"
    if labels is not None:
        if not Path(labels).is_file():
            raise FileNotFoundError(f"--labels table {str(labels)!r} does not exist.")
        return PartialLabels.load(labels, id_column=id_column, label_columns=label_columns), str(labels), id_column
    csv = data.get("labels_csv")
    if csv:
        if not Path(csv).is_file():
            raise FileNotFoundError(f"The run's label table (data.labels_csv) {csv!r} does not exist; pass --labels.")
        return PartialLabels.load(csv, id_column=id_column, label_columns=data.get("label_columns") or None), \
            str(csv), id_column
    # Demo data: the table the run wrote beside its demo inputs, every row (test rows included).
    demo = run_dir / DEMO_DIRS[data["type"]] / "labels.csv" if data.get("type") in DEMO_DIRS else None
    if demo is not None and demo.is_file():
        return PartialLabels.load(demo), str(demo), "id"
    final = _final_labels(run_dir, state.get("finished", []))
    if final is None:
        raise ValueError(f"Run {str(run_dir)!r} has no label table of its own (no step wrote one and its data name no "
                         "labels_csv); pass the table to merge into with --labels.")
    path = run_dir / "labels.npz"
    return human_cells(final), str(path if path.is_file() else run_dir), "id"
