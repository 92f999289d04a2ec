"""Typed, frozen, validated configuration objects: the base of recipe steps and data sources.

A `Config` subclass is a frozen, keyword-only dataclass whose fields carry type hints (and
optional bounds declared with `param`). Construction checks every value against its hint, so a
misspelled parameter or a wrong type fails at once, with a message that names the class, the
parameter, what was expected and what was received, and lists the valid parameters.

Overrides (`--set supervised.epochs=3`) are parsed from text by the same type hints
(`parse_value`) and applied with `dataclasses.replace`, which re-runs the validation.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
import os
import re
import types
import typing
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Union

from ssl_multilabel.errors import RecipeError

__all__ = ["Config", "RecipeError", "param", "parse_value"]


# Every concrete Config subclass by class name, so a resolved recipe (JSON) can be rebuilt.
_REGISTRY: dict[str, type["Config"]] = {}


def param(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    doc: str = "",
) -> Any:
    """A config field with a default, numeric bounds and a one-line description.

    Args:
        default: the default value (tuples are fine: configs are frozen).
        ge, gt, le, lt: inclusive / exclusive bounds checked at construction for numbers.
        doc: description shown by `ssl-multilabel run RECIPE --help-params`.

    Returns:
        A `dataclasses.field`.

    Example:
        >>> @dataclasses.dataclass(frozen=True, kw_only=True)
        ... class Sgd(Config):
        ...     lr: float = param(0.1, gt=0, doc="learning rate")
        >>> Sgd(lr=0.5).lr
        0.5
    """
    metadata = {"ge": ge, "gt": gt, "le": le, "lt": lt, "doc": doc}
    return dataclasses.field(default=default, metadata=metadata)


def _describe(hint: Any) -> str:
    """Human wording of a type hint: 'an int', 'one of ['a', 'b']', 'a tuple of floats'."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return "any value"
    if hint is type(None):
        return "none"
    if hint is bool:
        return "a bool (true/false)"
    if hint is int:
        return "an int"
    if hint is float:
        return "a float"
    if hint is str:
        return "a string"
    if origin is Literal:
        return f"one of {list(typing.get_args(hint))}"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of ({_describe(args[0])})"
        return f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
    if origin is dict:
        return "a mapping"
    if isinstance(hint, type):
        return f"a {hint.__name__}"
    return str(hint)


class _NoMatch(Exception):
    pass


def _coerce(value: Any, hint: Any) -> Any:
    """`value` converted to `hint` (int -> float, list -> tuple, PathLike -> str), else _NoMatch."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if hint is type(None):
        if value is None:
            return None
        raise _NoMatch
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _NoMatch
    if hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise _NoMatch
    if hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        raise _NoMatch
    if hint is str:
        if isinstance(value, (str, os.PathLike)):
            return os.fspath(value)
        raise _NoMatch
    if origin is Literal:
        for choice in typing.get_args(hint):
            if value == choice and type(value) is type(choice):
                return choice
        raise _NoMatch
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(hint):
            try:
                return _coerce(value, arg)
            except _NoMatch:
                continue
        raise _NoMatch
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise _NoMatch
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        if len(args) != len(value):
            raise _NoMatch
        return tuple(_coerce(v, a) for v, a in zip(value, args))
    if origin is dict:
        if not isinstance(value, dict):
            raise _NoMatch
        key_hint, value_hint = typing.get_args(hint) or (Any, Any)
        return {_coerce(k, key_hint): _coerce(v, value_hint) for k, v in value.items()}
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise _NoMatch
    return value


def _parse_text(text: str, hint: Any) -> Any:
    """Parse command-line text as `hint`; raises _NoMatch."""
    origin = typing.get_origin(hint)
    low = text.strip().lower()
    if hint is Any:
        try:
            return json.loads(text)
        except ValueError:
            return text
    if hint is type(None):
        if low in ("none", "null"):
            return None
        raise _NoMatch
    if hint is bool:
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise _NoMatch
    if hint is int:
        try:
            return int(low)
        except ValueError:
            raise _NoMatch from None
    if hint is float:
        try:
            number = float(low)
        except ValueError:
            raise _NoMatch from None
        if math.isnan(number):
            raise _NoMatch
        return number
    if hint is str:
        return text
    if origin is Literal:
        for choice in typing.get_args(hint):
            if str(choice) == text or (isinstance(choice, str) and choice.lower() == low):
                return choice
        raise _NoMatch
    if origin in (Union, types.UnionType):
        # None first, then the most specific types, so "3" is an int rather than the string "3".
        args = sorted(typing.get_args(hint), key=lambda a: (a is not type(None), a is str))
        for arg in args:
            try:
                return _parse_text(text, arg)
            except _NoMatch:
                continue
        raise _NoMatch
    if origin is tuple:
        args = typing.get_args(hint)
        stripped = text.strip()
        if stripped.startswith("["):
            try:
                items = json.loads(stripped)
            except ValueError:
                raise _NoMatch from None
            return _coerce(items, hint)
        parts = [p.strip() for p in stripped.split(",")] if stripped else []
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse_text(p, args[0]) for p in parts)
        if len(parts) != len(args):
            raise _NoMatch
        return tuple(_parse_text(p, a) for p, a in zip(parts, args))
    raise _NoMatch


def parse_value(text: str, hint: Any, where: str) -> Any:
    """Parse an override value given as text according to a type hint.

    Args:
        text: the value as typed on the command line (`3`, `0.5`, `true`, `none`, `a,b`, `[1, 2]`).
        hint: the field's type hint.
        where: how to name the setting in an error, e.g. `"--set supervised.epochs=abc"`.

    Returns:
        The typed value.

    Raises:
        RecipeError: the text is not a value of that type.

    Example:
        >>> parse_value("3", int | None, "--set x=3")
        3
    """
    try:
        return _parse_text(text, hint)
    except _NoMatch:
        raise RecipeError(f"{where}: expected {_describe(hint)}; got {text!r}.") from None


class _ConfigMeta(type):
    """Checks keyword names before the dataclass `__init__` runs, for a better error."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if args:
            raise RecipeError(
                f"{cls.__name__} takes keyword arguments only; got {len(args)} positional "
                f"argument(s). Valid parameters: {cls.parameter_names()}."
            )
        unknown = [k for k in kwargs if k not in cls.parameter_names()]
        if unknown:
            raise RecipeError(_unknown_message(cls, unknown[0]))
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.init and f.name not in kwargs
            and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise RecipeError(
                f"{cls.__name__} is missing required parameter(s) {missing}. "
                f"Valid parameters: {cls.parameter_names()}."
            )
        return super().__call__(**kwargs)


def _unknown_message(cls: type, name: str) -> str:
    valid = cls.parameter_names()
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"{cls.__name__} has no parameter {name!r}.{hint} Valid parameters: {valid}."


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(metaclass=_ConfigMeta):
    """Base of steps and data sources: a frozen, keyword-only, type-checked dataclass.

    Subclasses declare fields with type hints (and `param(...)` for bounds and docs). Values are
    checked and normalised at construction (ints become floats for float fields, lists become
    tuples), so a config is always valid and hashable-by-value when it exists.
    """

    _kind: ClassVar[str] = "config"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            _REGISTRY[cls.__name__] = cls

    @classmethod
    def parameter_names(cls) -> list[str]:
        """The names of the parameters, in declaration order."""
        return [f.name for f in dataclasses.fields(cls) if f.init]

    @classmethod
    def _hints(cls) -> dict[str, Any]:
        # Each class of the MRO resolves its annotations in its own module's globals.
        cached = cls.__dict__.get("_hints_cache")
        if cached is None:
            cached = typing.get_type_hints(cls)
            cls._hints_cache = cached
        return cached

    def __post_init__(self) -> None:
        hints = self._hints()
        for f in dataclasses.fields(self):
            if not f.init:
                continue
            value = getattr(self, f.name)
            hint = hints.get(f.name, Any)
            try:
                value = _coerce(value, hint)
            except _NoMatch:
                raise RecipeError(
                    f"Invalid value for parameter `{f.name}` of {type(self).__name__}. Expected "
                    f"{_describe(hint)}. Received: {f.name}={value!r}"
                ) from None
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                for key, ok, word in (
                    ("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
                    ("le", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<"),
                ):
                    bound = f.metadata.get(key)
                    if bound is not None and not ok(value, bound):
                        raise RecipeError(
                            f"Invalid value for parameter `{f.name}` of {type(self).__name__}. "
                            f"Expected a number {word} {bound}. Received: {f.name}={value!r}"
                        )
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Checks across fields; subclasses override and raise `RecipeError`."""

    # === Overrides ===

    def with_override(self, key: str, text: str, where: str) -> "Config":
        """A copy with parameter `key` set from the text `text` (parsed by its type hint)."""
        return self.with_overrides([(key, text, where)])

    def with_overrides(self, items: Sequence[tuple[str, str, str]]) -> "Config":
        """A copy with every `(key, text, where)` set at once (a later key wins), so that settings
        that only make sense together (e.g. a backbone and its pretrained `weights`) can be given in any order."""
        values = {}
        for key, text, where in items:
            if key not in self.parameter_names():
                raise RecipeError(f"{where}: {_unknown_message(type(self), key)}")
            values[key] = parse_value(text, self._hints()[key], where)
        try:
            return dataclasses.replace(self, **values)
        except RecipeError as err:
            # The settings the message names (e.g. `test_fraction`), else all of them: a rule across settings.
            named = [where for key, _, where in items if re.search(rf"(?<![\w.]){re.escape(key)}\b", str(err))]
            raise RecipeError(f"{', '.join(named or [where for _, _, where in items])}: {err}") from None

    # === Serialization ===

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: `{"type": class name, parameter: value, ...}` (nested configs too)."""
        out: dict[str, Any] = {"type": type(self).__name__}
        for name in self.parameter_names():
            out[name] = _to_json(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        """Rebuild a config written by `to_dict`; the class is looked up by its `type` name."""
        data = dict(data)
        kind = data.pop("type", cls.__name__)
        target = _REGISTRY.get(kind)
        if target is None or not issubclass(target, cls):
            known = sorted(n for n, c in _REGISTRY.items() if issubclass(c, cls))
            raise RecipeError(f"Unknown {cls._kind} type {kind!r}; known types: {known}.")
        hints = target._hints()
        kwargs = {k: _from_json(v, hints.get(k, Any)) for k, v in data.items()}
        return target(**kwargs)

    def describe(self) -> str:
        """One line per parameter: name, type, default/current value and doc."""
        hints = self._hints()
        lines = []
        for f in dataclasses.fields(self):
            if f.init:
                doc = f.metadata.get("doc", "")
                lines.append(
                    f"  {f.name} = {getattr(self, f.name)!r}  ({_describe(hints.get(f.name, Any))})"
                    + (f"  {doc}" if doc else "")
                )
        return "\n".join(lines)


def _to_json(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    return value


def _from_json(value: Any, hint: Any) -> Any:
    if isinstance(value, dict) and "type" in value:
        base = hint if isinstance(hint, type) and issubclass(hint, Config) else Config
        return base.from_dict(value)
    if isinstance(value, list):
        args = typing.get_args(hint)
        inner = args[0] if args else Any
        return tuple(_from_json(v, inner) for v in value)
    return value
