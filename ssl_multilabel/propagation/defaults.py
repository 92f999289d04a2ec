"""The propagation defaults, shared by the functions, the estimator, the recipe steps and the CLI.

A module without imports, so the CLI can show them without importing FAISS or scikit-learn.
"""

#: Neighbours per point of the kNN graph.
DEFAULT_K = 10
#: kNN metric: "l2" (self-tuning Gaussian weights) or "cosine".
DEFAULT_METRIC = "l2"
#: Edge weight exponent, `s ** gamma` (Iscen et al. 2019).
DEFAULT_GAMMA = 3.0
#: Diffusion strength alpha of `(I - alpha S) F = Y`.
DEFAULT_ALPHA = 0.8
#: The neighbour vote of a trained model (`recipes.NeighbourVote`, `models.NeighbourVote`): its
#: diffusion strength and its share of the blended score (chosen on B7's dev split,
#: docs/noisy_student.md).
VOTE_ALPHA = 0.5
VOTE_WEIGHT = 0.7
