"""ssl-multilabel: semi-supervised multi-label image classification from partial labels.

Every (sample, label) cell is positive, negative or unknown. The toolkit trains on the known
cells (masked Keras losses), measures on them (masked metrics) and fills unknown cells with a
confidence and a provenance (FAISS kNN label propagation, noisy-student teachers).

Public names are resolved lazily, so `import ssl_multilabel` and the TensorFlow-free parts
(`labels`, `datasets`, `propagation`) never import TensorFlow.
"""

from __future__ import annotations

from ssl_multilabel._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    "PartialLabels": "labels",
    "Source": "labels",
    "unknown_mask": "labels",
    "precision_thresholds": "thresholds",
    "best_f1_thresholds": "thresholds",
    "FASHION_MNIST_CLASSES": "datasets",
    "fashion_mosaics": "datasets",
    "labeled_subset": "datasets",
    "load_quickstart": "datasets",
    "mulan": "datasets",
    "random_cells": "datasets",
    "single_positive": "datasets",
    "MaskedBinaryCrossentropy": "losses",
    "MaskedFocalLoss": "losses",
    "AsymmetricLoss": "losses",
    "PartialBinaryCrossentropy": "losses",
    "MaskedSoftF1Loss": "losses",
    "MaskedAveragePrecision": "metrics",
    "MaskedAUC": "metrics",
    "MaskedF1Score": "metrics",
    "MaskedPrecision": "metrics",
    "MaskedRecall": "metrics",
    "evaluate": "evaluation",
    "make_dataset": "data",
    "find_bad_images": "data",
    "BadImage": "data",
    "BadImageError": "data",
    "Recipe": "recipes",
    "Step": "recipes",
    "StepResult": "recipes",
    "RecipeError": "errors",
    "Supervised": "recipes",
    "Propagate": "recipes",
    "NoisyStudent": "recipes",
    "Evaluate": "recipes",
    "Export": "recipes",
    "Report": "recipes",
    "Quickstart": "recipes",
    "ImageFolder": "recipes",
    "Embeddings": "recipes",
    "run_recipe": "recipes",
    "resume_run": "recipes",
    "apply_overrides": "recipes",
    "load_recipe_file": "recipes",
    "run_cli": "cli",
    "write_report": "report",
    "knn_graph": "propagation",
    "diffuse": "propagation",
    "KNNLabelPropagation": "propagation",
    "fill_unknown": "propagation",
    "NeighborIndex": "propagation",
    "recall_at_k": "propagation",
    "PseudoLabels": "teacher_student",
    "select_pseudo_labels": "teacher_student",
    "thresholds_for_precision": "teacher_student",
    "predict_scores": "teacher_student",
    "StochasticDepth": "models",
    "student_augment": "teacher_student",
    "build_student_classifier": "teacher_student",
    "noisy_student": "teacher_student",
    "NoisyStudentResult": "teacher_student",
    "RoundResult": "teacher_student",
    "mixed_dataset": "data",
    "NoisyStudentConfig": "teacher_student",
    "KnnFill": "teacher_student",
    "build_classifier": "models",
    "build_embedding_model": "models",
    "build_small_cnn": "models",
    "BackbonePreprocessing": "models",
    "BACKBONES": "models",
    "load_model": "models",
    "train_round": "training",
    "export_model": "training",
    "pos_weight_from_labels": "training",
    "BestMaskedMAP": "training",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
__all__ += ["__version__"]
