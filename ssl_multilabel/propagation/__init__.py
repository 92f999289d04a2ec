"""FAISS kNN label propagation for partial multi-label tables (no TensorFlow import).

- `knn_graph`: features -> symmetric sparse kNN affinity (FAISS exact / IVF / HNSW).
- `diffuse`: every label's known positives and negatives spread over the graph at once
  (block conjugate gradient), calibrated into a probability and a confidence per cell.
- `KNNLabelPropagation`: the scikit-learn estimator (`-1` marks unknown cells).
- `fill_unknown`: fill a `PartialLabels` table with thresholds fitted on held-out known cells.

See docs/propagation.md for the guide.
"""

from .diffusion import DiffusionResult, calibrate, conjugate_gradient, diffuse, normalized_affinity, seed_matrix
from .estimator import KNNLabelPropagation
from .fill import fill_unknown, holdout_mask, select_thresholds
from .graph import NeighborIndex, affinity_from_neighbors, knn_graph, knn_search, recall_at_k

__all__ = [
    "DiffusionResult",
    "KNNLabelPropagation",
    "NeighborIndex",
    "affinity_from_neighbors",
    "calibrate",
    "conjugate_gradient",
    "diffuse",
    "fill_unknown",
    "holdout_mask",
    "knn_graph",
    "knn_search",
    "normalized_affinity",
    "recall_at_k",
    "seed_matrix",
    "select_thresholds",
]
