"""Noisy-student teacher–student training for partial multi-label data.

- `pseudo_labels`: the un-noised teacher's scores, per-label thresholds (fixed or for a target
  precision), soft/hard targets, per-label positive balancing -> a `PartialLabels` with
  source "teacher" (numpy only, except `predict_scores`).
- `noise`: student noise: the `StochasticDepth` layer, RandAugment for student inputs, a
  residual small-CNN student.
- `loop`: `noisy_student(...)`, rounds in which the student becomes the next teacher.

Names are resolved lazily so that importing this package does not import TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PseudoLabels": "pseudo_labels",
    "predict_scores": "pseudo_labels",
    "select_pseudo_labels": "pseudo_labels",
    "thresholds_for_precision": "pseudo_labels",
    "StochasticDepth": "noise",
    "build_residual_cnn": "noise",
    "build_student_classifier": "noise",
    "student_augment": "noise",
    "survival_probabilities": "noise",
    "NoisyStudentResult": "loop",
    "RoundResult": "loop",
    "mixed_dataset": "loop",
    "noisy_student": "loop",
    "propagate_from_embeddings": "loop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
