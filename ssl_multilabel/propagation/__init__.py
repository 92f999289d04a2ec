"""FAISS kNN label propagation for partial multi-label tables (no TensorFlow import).

- `knn_graph`: features -> symmetric sparse kNN affinity (FAISS exact / IVF / HNSW).
- `diffuse`: every label's known positives and negatives spread over the graph at once
  (block conjugate gradient), calibrated into a probability and a confidence per cell.
- `KNNLabelPropagation`: the scikit-learn estimator (`-1` marks unknown cells).
- `fill_unknown`: fill a `PartialLabels` table with thresholds fitted on held-out known cells.

See docs/propagation.md for the guide.
"""

from ssl_multilabel._lazy import lazy_exports

from .defaults import DEFAULT_ALPHA, DEFAULT_GAMMA, DEFAULT_K, DEFAULT_METRIC

# public name -> submodule that defines it (imported on first use: `--help` needs no FAISS)
_EXPORTS = {
    "DiffusionResult": "diffusion",
    "calibrate": "diffusion",
    "conjugate_gradient": "diffusion",
    "diffuse": "diffusion",
    "normalized_affinity": "diffusion",
    "seed_matrix": "diffusion",
    "KNNLabelPropagation": "estimator",
    "fill_unknown": "fill",
    "fold_ids": "fill",
    "select_thresholds": "fill",
    "NeighborIndex": "graph",
    "affinity_from_neighbors": "graph",
    "knn_graph": "graph",
    "knn_search": "graph",
    "recall_at_k": "graph",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
__all__ += ["DEFAULT_ALPHA", "DEFAULT_GAMMA", "DEFAULT_K", "DEFAULT_METRIC"]
