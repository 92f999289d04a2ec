"""The settings of a noisy-student run, defined once for `noisy_student()` and the recipe step.

`NoisyStudentConfig` is a frozen, validated dataclass. `teacher_student.noisy_student(images,
labels, config, **overrides)` takes it (or its fields as keyword arguments), and the recipe step
`recipes.NoisyStudent` *is* one (it inherits these fields, so `--set noisy_student.width=1.5`
addresses the same setting under the same name, with the same default and the same one-line
description). The descriptions are the `doc` of each field; `settings_table()` renders them as
the Markdown table of docs/noisy_student.md.

Fields carry the metadata of `recipes.config.param` (`ge`, `gt`, `le`, `lt`, `doc`), so the
step's own validation checks the same bounds. This module imports neither TensorFlow nor the
recipes package (which imports it).
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import types
import typing
from typing import Any, Literal, Union

__all__ = ["LossName", "NoisyStudentConfig", "settings_table"]

# Names of `ssl_multilabel.losses.get`.
LossName = Literal["bce", "focal", "asl", "partial_bce", "soft_f1", "ll_r"]
Balance = Literal["halves", "cells"]

# Arguments of noisy_student() that were renamed or replaced, with what to use instead.
RENAMED = {
    "student_width": "width",
    "student_dropout": "dropout",
    "randaugment_magnitude": "augment_magnitude",
    "randaugment_ops": "augment_ops",
    "propagate": "sources=[TeacherCells(), KnnFill(images), ...] (teacher_student.sources)",
    "true_labels": "on_round_end=teacher_student.scoring.hidden_and_test(labels, true_labels=...)",
    "test_images": "on_round_end=teacher_student.scoring.hidden_and_test(labels, test_images=..., test_labels=...)",
    "test_labels": "on_round_end=teacher_student.scoring.hidden_and_test(labels, test_images=..., test_labels=...)",
}


def _setting(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
             lt: float | None = None, doc: str) -> Any:
    # The metadata of recipes.config.param: the step checks these bounds with its own machinery.
    return dataclasses.field(default=default, metadata={"ge": ge, "gt": gt, "le": le, "lt": lt, "doc": doc})


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoisyStudentConfig:
    """The settings of noisy-student rounds (one definition for the function and the recipe step).

    Every field has a default; construction checks types, bounds and the rules across fields and
    raises `ValueError` naming the setting, what was expected and what was received. Use
    `config.replace(**changes)` for a changed copy.

    Example:
        >>> config = NoisyStudentConfig(rounds=2, width=1.5)
        >>> config.replace(epochs=8).epochs
        8
    """

    # === Rounds and optimisation ===
    rounds: int = _setting(1, ge=1, doc="teacher -> student rounds")
    epochs: int = _setting(100, ge=1, doc="maximum student epochs per round (early stopping ends them sooner)")
    batch_size: int = _setting(64, ge=1, doc="labeled rows per batch (B_l)")
    learning_rate: float = _setting(1e-3, gt=0.0, doc="Adam learning rate")
    ema_momentum: float | None = _setting(
        None, gt=0.0, lt=1.0, doc="validate and keep a moving average of the weights of each trained model (none: off)")
    loss: LossName = _setting("bce", doc="masked loss (ssl_multilabel.losses.get name)")
    patience: int | None = _setting(
        10, ge=1, doc="epochs without a better validation epoch before stopping (none: off; needs validation data)")
    # === Teacher cells ===
    target_precision: float | None = _setting(
        None, gt=0.0, le=1.0, doc="per-label thresholds from the validation rows for this precision (none: fixed ones)")
    positive_threshold: float = _setting(
        0.9, ge=0.0, le=1.0, doc="with target_precision=none: pseudo-positive when score >= this")
    negative_threshold: float = _setting(
        0.1, ge=0.0, le=1.0, doc="with target_precision=none: pseudo-negative when score <= this")
    soft: bool = _setting(True, doc="soft targets (teacher probability) instead of 1 / 0")
    temperature: float = _setting(1.0, gt=0.0, doc="soft-target temperature (1: the teacher's probabilities)")
    top_k: int | None = _setting(
        None, ge=1, doc="at most this many pseudo-positives per label; rows of under-filled labels repeat (none: off)")
    max_duplication: int = _setting(4, ge=1, doc="with top_k: the largest repeat factor of a row")
    # === The student's batches ===
    unlabel_ratio: float = _setting(1.0, gt=0.0, doc="pseudo-labelled rows per labeled row in a batch (B_u / B_l)")
    balance: Balance = _setting(
        "halves", doc="halves: the paper's L_l + unlabel_ratio * L_u; cells: one mean over every known cell")
    steps_per_epoch: int | None = _setting(
        None, ge=1, doc="batches per student epoch (none: every labeled and pseudo-labelled row once)")
    confidence_weights: bool = _setting(False, doc="weight machine cells by their confidence instead of 1")
    # === The student's noise ===
    width: float = _setting(1.0, ge=0.1, doc="student width multiplier (a small CNN student's filters; a pretrained or frozen backbone's student keeps the teacher's)")
    dropout: float = _setting(0.3, ge=0.0, lt=1.0, doc="student head dropout")
    survival_probability: float = _setting(0.9, gt=0.0, le=1.0, doc="stochastic depth, last block")
    feature_noise: float = _setting(
        0.5, ge=0.0, doc="frozen backbone: std of Gaussian noise on the student's features (B7 dev split)")
    augment_magnitude: float = _setting(0.0, ge=0.0, le=1.0, doc="RandAugment magnitude (0: off)")
    augment_ops: int = _setting(2, ge=0, doc="RandAugment operations per image (the paper's N = 2)")
    flip_shift: float | None = _setting(
        None, ge=0.0, le=0.5, doc="weak input noise: a random flip and a shift of up to this fraction of the size (none: off)")

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(NoisyStudentConfig)
        for f in dataclasses.fields(NoisyStudentConfig):
            value = _checked(type(self).__name__, f, getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
        self.check_across()

    def check_across(self) -> None:
        """The rules between settings (the step calls this from its own validation)."""
        if self.negative_threshold >= self.positive_threshold:
            raise ValueError(
                f"{type(self).__name__}: negative_threshold ({self.negative_threshold}) must be below "
                f"positive_threshold ({self.positive_threshold})."
            )

    # === Copies ===

    @classmethod
    def setting_names(cls) -> list[str]:
        """The names of the settings, in declaration order."""
        return [f.name for f in dataclasses.fields(NoisyStudentConfig)]

    def settings(self) -> dict[str, Any]:
        """The settings as a dict (only those of this class, not a subclass's extra fields)."""
        return {name: getattr(self, name) for name in self.setting_names()}

    def replace(self, **changes: Any) -> "NoisyStudentConfig":
        """A copy (of the same class) with `changes` applied and validated; an unknown name is an error."""
        valid = [f.name for f in dataclasses.fields(self) if f.init]
        for name in changes:
            if name not in valid:
                raise TypeError(unknown_setting(name, where=f"{type(self).__name__}.replace()", extra=valid))
        return dataclasses.replace(self, **changes)


def unknown_setting(name: str, *, where: str = "noisy_student()", extra: typing.Sequence[str] = ()) -> str:
    """The message for an argument that is not a setting: what it was renamed to, or a close name."""
    if name in RENAMED:
        return f"{where} has no argument {name!r}: use {RENAMED[name]}."
    valid = list(dict.fromkeys(NoisyStudentConfig.setting_names() + list(extra)))
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"{where} has no argument {name!r}.{hint} Valid settings: {valid}."


# === Validation ===


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if hint is type(None):
        return "none"
    if origin is Literal:
        return f"one of {list(typing.get_args(hint))}"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    return {bool: "a bool", int: "an int", float: "a float", str: "a string"}.get(hint, str(hint))


def _coerce(value: Any, hint: Any) -> tuple[bool, Any]:
    """(True, value converted to `hint`) or (False, None); ints are accepted for floats."""
    origin = typing.get_origin(hint)
    if hint is type(None):
        return value is None, None
    if origin is Literal:
        return (value in typing.get_args(hint) and isinstance(value, str)), value
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(hint):
            ok, converted = _coerce(value, arg)
            if ok:
                return True, converted
        return False, None
    if isinstance(value, bool):
        return hint is bool, value
    if hint is int:
        return isinstance(value, numbers.Integral), int(value) if isinstance(value, numbers.Integral) else None
    if hint is float:
        ok = isinstance(value, numbers.Real) and value == value  # not NaN
        return ok, float(value) if ok else None
    return isinstance(value, hint), value


def _checked(owner: str, f: dataclasses.Field, value: Any, hint: Any) -> Any:
    ok, converted = _coerce(value, hint)
    if not ok:
        raise ValueError(
            f"Invalid value for argument `{f.name}` of {owner}. Expected {_describe(hint)}. Received: {f.name}={value!r}"
        )
    if isinstance(converted, numbers.Real) and not isinstance(converted, bool):
        for key, word, good in (("ge", ">=", lambda v, b: v >= b), ("gt", ">", lambda v, b: v > b),
                                ("le", "<=", lambda v, b: v <= b), ("lt", "<", lambda v, b: v < b)):
            bound = f.metadata.get(key)
            if bound is not None and not good(converted, bound):
                raise ValueError(
                    f"Invalid value for argument `{f.name}` of {owner}. Expected a number {word} {bound}. "
                    f"Received: {f.name}={value!r}"
                )
    return converted


# === Documentation ===


def settings_table() -> str:
    """The settings as a Markdown table (name, default, meaning): the table of docs/noisy_student.md."""
    lines = ["| setting | default | meaning |", "| --- | --- | --- |"]
    for f in dataclasses.fields(NoisyStudentConfig):
        default = "none" if f.default is None else str(f.default).lower() if isinstance(f.default, bool) else f.default
        lines.append(f"| `{f.name}` | {default} | {f.metadata['doc']} |")
    return "\n".join(lines)
