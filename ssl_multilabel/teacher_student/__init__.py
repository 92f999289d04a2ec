"""Noisy-student teacher–student training for partial multi-label data.

- `pseudo_labels`: the un-noised teacher's scores, per-label thresholds (fixed or for a target
  precision), soft/hard targets, per-label positive balancing -> a `PartialLabels` with
  source "teacher" (numpy only, except `predict_scores`).
- `noise`: student noise: the `StochasticDepth` layer, RandAugment for student inputs, a
  residual small-CNN student.
- `config`: `NoisyStudentConfig`, the settings shared by `noisy_student()` and the recipe step.
- `sources`: the named sources of a round's pseudo-labelled cells (`TeacherCells`, `KnnFill`,
  `FixedTable`, `AssumeNegative`), composed in order of precedence.
- `assumptions`: for labels whose known cells hold no negative, the negative assumption chosen
  on held-out positives (`choose_negative_assumption`).
- `scoring`: round callbacks for benchmarks (`hidden_and_test`).
- `loop`: `noisy_student(...)`, rounds in which the student becomes the next teacher.

Names are resolved lazily so that importing this package does not import TensorFlow.
"""

from __future__ import annotations

from ssl_multilabel._lazy import lazy_exports

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
    "noisy_student": "loop",
    "student_round": "loop",
    "NoisyStudentConfig": "config",
    "settings_table": "config",
    "AssumeNegative": "sources",
    "FixedTable": "sources",
    "KnnFill": "sources",
    "PseudoLabelSource": "sources",
    "RoundInputs": "sources",
    "TeacherCells": "sources",
    "compose_targets": "sources",
    "hidden_and_test": "scoring",
    "AssumptionChoice": "assumptions",
    "choose_negative_assumption": "assumptions",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
