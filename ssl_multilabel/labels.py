"""The partial-label table: every (sample, label) cell is positive, negative or unknown.

`PartialLabels` is the one type that the rest of the toolkit trains on (masked losses), measures on
(masked metrics) and fills in (propagation, teacher pseudo-labels). Each cell also carries a
confidence (`weight`) and a provenance (`source`), and filling never changes a known cell, so human
labels are never overwritten.
"""

from __future__ import annotations

import csv
import enum
import hashlib
import io
import json
import logging
import math
import os
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ssl_multilabel._files import atomic_path, atomic_write_bytes

__all__ = ["UNKNOWN_VALUE", "PartialLabels", "Source", "cell_masks", "given_cells", "unknown_mask", "validation_split"]

logger = logging.getLogger(__name__)


class Source(enum.IntEnum):
    """Where the value of a cell came from (stored per cell as uint8)."""

    UNKNOWN = 0
    HUMAN = 1
    IMPLIED = 2  # a negative implied by a known positive of the same exclusive group
    PROPAGATED = 3
    TEACHER = 4


# Cell spellings accepted from tables (CSV, DataFrame). Everything else is an error.
_POSITIVE = {"1", "1.0", "true"}
_NEGATIVE = {"0", "0.0", "false"}
_UNKNOWN = {"", "?", "nan", "na", "none"}
_MISSING_CHOICES = ("unknown", "negative")


# === Unknown cells in arrays ===

#: The value that marks an unknown cell in label arrays (scikit-learn's `semi_supervised`
#: convention); NaN marks one too.
UNKNOWN_VALUE = -1.0


def cell_masks(y: object, xp: object = np) -> tuple[object, object]:
    """`(unknown, invalid)` boolean masks of a label array: the package's one rule for cells.

    A cell is **unknown** when it is `-1` or NaN, **known** when it is in `[0, 1]` (soft values
    allowed), and **invalid** otherwise (`-0.5`, `2.0`, `inf`): callers raise on invalid cells
    rather than guess. Tables (`PartialLabels.from_array`, `PartialLabels.fill`), diffusion,
    thresholds, masked losses and masked metrics all use this function.

    Args:
        y: a numeric array, or a tensor when `xp` is `keras.ops`.
        xp: the array namespace, `numpy` (default) or `keras.ops`; both have the functions used.

    Returns:
        Two boolean arrays (or tensors) of the shape of `y`.
    """
    unknown = xp.logical_or(xp.isnan(y), xp.equal(y, UNKNOWN_VALUE))
    known = xp.logical_and(xp.greater_equal(y, 0.0), xp.less_equal(y, 1.0))
    return unknown, xp.logical_not(xp.logical_or(unknown, known))


def unknown_mask(y: object, name: str = "y") -> np.ndarray:
    """The boolean mask of unknown cells (`-1` or NaN) of a numeric label array.

    Args:
        y: array-like of numbers: `[0, 1]` for known cells, `-1` or NaN for unknown ones.
        name: the argument's name, for error messages.

    Returns:
        bool array of the shape of `y`, True on unknown cells.

    Raises:
        ValueError: a cell is neither in `[0, 1]` nor `-1` / NaN (e.g. `-0.5`, `2.0`, `inf`), or
            `y` is not numeric; the message names `name`, the cell and the value.

    Example:
        >>> unknown_mask([[1, -1], [float("nan"), 0.5]]).tolist()
        [[False, True], [True, False]]
    """
    array = np.asarray(y)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected numbers in [0, 1], or -1 / NaN for "
            f"unknown cells. Received an array of dtype {array.dtype}."
        )
    array = array.astype(np.float64, copy=False)
    unknown, invalid = cell_masks(array)
    if invalid.any():
        raise ValueError(invalid_cells_message(name, array, invalid))
    return unknown


def invalid_cells_message(name: str, y: np.ndarray, invalid: np.ndarray) -> str:
    """The error message for the invalid cells of the label array `y` passed as `name`."""
    index = tuple(int(i) for i in np.argwhere(invalid)[0])
    where = f"row {index[0]}, column {index[1]}" if len(index) == 2 else f"index {index}"
    return (
        f"`{name}` {where}: expected a value in [0, 1] for a known cell, or -1 or NaN for an "
        f"unknown one; got {float(y[index])!r} ({int(invalid.sum())} such cells)."
    )


def _is_missing(cell: object) -> bool:
    """None, NaN, `pd.NA` or `pd.NaT`: a cell that holds no value."""
    if cell is None or cell is pd.NA or cell is pd.NaT:
        return True
    return isinstance(cell, (float, np.floating)) and math.isnan(cell)


def _cell_value(cell: object) -> float | None:
    """1.0, 0.0 or None (unknown) for an accepted spelling; raises KeyError for anything else."""
    if _is_missing(cell):
        return None
    if isinstance(cell, (bool, np.bool_)):
        return 1.0 if cell else 0.0
    if isinstance(cell, (int, float, np.integer, np.floating)):
        if math.isnan(cell):
            return None
        if cell == 1:
            return 1.0
        if cell == 0:
            return 0.0
        raise KeyError(cell)
    text = str(cell).strip().lower()
    if text in _POSITIVE:
        return 1.0
    if text in _NEGATIVE:
        return 0.0
    if text in _UNKNOWN:
        return None
    number = _number(text)  # "1.00", "-0.0" (a spreadsheet's number format)
    if number in (0.0, 1.0):
        return number + 0.0  # -0.0 -> 0.0
    raise KeyError(cell)


def _check_names(label_names: Sequence[str], what: str = "label_names") -> tuple[str, ...]:
    if isinstance(label_names, (str, bytes)):
        raise ValueError(
            f"Invalid value for argument `{what}`. Expected a list of label names. "
            f"Received: {what}={label_names!r}"
        )
    names = tuple(str(name) for name in label_names)
    if not names:
        raise ValueError(f"`{what}` is empty: a label table needs at least one label.")
    empty = [j for j, name in enumerate(names) if not name.strip()]
    if empty:
        raise ValueError(
            f"`{what}` has an empty name at position {empty[0]} (of {list(names)}); every label "
            "needs a name."
        )
    spaced = [name for name in names if name != name.strip()]
    if spaced:
        raise ValueError(f"`{what}` has a name that starts or ends with a space, {spaced[0]!r} (of {list(names)}); "
                         f"expected names without one ({spaced[0].strip()!r}).")
    seen: set[str] = set()
    duplicates = [name for name in names if name in seen or seen.add(name)]
    if duplicates:
        raise ValueError(f"Duplicate label names in `{what}`: {sorted(set(duplicates))}.")
    return names


def _check_ids(ids: Sequence[object], n: int, where: str = "ids") -> tuple[str, ...]:
    if isinstance(ids, (str, bytes)):
        raise ValueError(f"Invalid value for argument `{where}`. Expected a list of row ids. Received: {ids!r}")
    # Written for 10^6 ids (a binary table's load): map / all / set run in C; the slower scans
    # that find the offending row only run when there is one.
    out = tuple(map(str, ids))
    if len(out) != n:
        raise ValueError(f"`{where}` has {len(out)} entries; expected one per row ({n}).")
    if not all(map(str.strip, out)):
        row = next(i for i, row_id in enumerate(out) if not row_id.strip())
        raise ValueError(f"`{where}`, row {row}: the id {out[row]!r} is empty; every row needs an id.")
    if len(set(out)) != len(out):
        seen: set[str] = set()
        duplicates = [i for i in out if i in seen or seen.add(i)]
        shown = sorted(set(duplicates))[:5]
        raise ValueError(f"Duplicate ids in `{where}`: {shown}; every row needs a unique id.")
    return out


def _check_groups(
    groups: Sequence[Sequence[str]], label_names: Sequence[str], what: str = "exclusive_groups"
) -> tuple[tuple[str, ...], ...]:
    """Exclusive groups as tuples of label names; a string where a list belongs is an error."""
    out = _group_lists(groups, what)
    for group in out:
        missing = [name for name in group if name not in label_names]
        if missing:
            raise ValueError(
                f"`{what}` names labels that are not in the table: {missing}; "
                f"valid labels are {list(label_names)}."
            )
    return out


def _group_lists(groups: Sequence[Sequence[str]], what: str = "exclusive_groups") -> tuple[tuple[str, ...], ...]:
    """`groups` as tuples of names, checked for shape only (not against a table's labels); None is
    no group."""
    if groups is None:
        return ()
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Iterable):
        raise ValueError(
            f"Invalid value for argument `{what}`. Expected a list of groups, each a list of label "
            f"names, e.g. [['cat', 'dog']]. Received: {what}={groups!r}"
        )
    groups = list(groups)
    out = []
    for k, group in enumerate(groups):
        if isinstance(group, (str, bytes)) or not isinstance(group, Iterable):
            hint = ""
            if len(groups) > 1 and all(isinstance(g, str) for g in groups):
                hint = f" Did you mean {what}={[list(map(str, groups))]!r}?"
            raise ValueError(
                f"Invalid value for argument `{what}`: group {k} is {group!r}; expected a list of label "
                f"names (a string is not split into letters).{hint} Received: {what}={groups!r}"
            )
        names = list(group)
        bad = [name for name in names if not isinstance(name, (str, np.str_))]
        if bad:
            raise ValueError(
                f"Invalid value for argument `{what}`: group {k} holds {bad[0]!r}; expected label names "
                f"(strings). Received: {what}={groups!r}"
            )
        out.append(tuple(str(name) for name in names))
    return tuple(out)


def _frozen(array: np.ndarray, dtype) -> np.ndarray:
    array = np.array(array, dtype=dtype, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False, kw_only=True)
class PartialLabels:
    """An immutable (n_samples × n_labels) table of positive / negative / unknown cells.

    Build it with one of the constructors (`from_dataframe`, `from_label_lists`, `from_filenames`,
    `from_array`, `load`) rather than directly; the constructor itself takes its seven fields by
    keyword only. Derive tables with the operations rather than by rebuilding them field by
    field: `subset` (rows, repeats allowed), `restrict` (cells), `reweight`, `fill` (unknown cells
    from values) and `merge` (unknown cells from another table, human cells never overwritten).

    Attributes:
        values: float32 `(n, L)`, the target of each known cell (1 / 0, or a soft value in [0, 1]
            for filled cells); 0 in unknown cells.
        known: bool `(n, L)`.
        weight: float32 `(n, L)`, the confidence of each cell: 1 for human and implied cells, the
            fill confidence for propagated and teacher cells, 0 for unknown cells.
        source: uint8 `(n, L)` with `Source` codes.
        label_names: the label (column) names.
        ids: the row ids, unique strings.
        exclusive_groups: groups of labels of which at most one can be positive per row.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"id": ["a", "b"], "cat": [1, None], "dog": [0, 1]})
        >>> labels = PartialLabels.from_dataframe(df, "id", ["cat", "dog"])
        >>> labels.to_array().tolist()
        [[1.0, 0.0], [-1.0, 1.0]]
    """

    values: np.ndarray
    known: np.ndarray
    weight: np.ndarray
    source: np.ndarray
    label_names: tuple[str, ...]
    ids: tuple[str, ...]
    exclusive_groups: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        known = _frozen(self.known, bool)
        if known.ndim != 2:
            raise ValueError(f"`known` must be 2-D (n_samples, n_labels); got shape {known.shape}.")
        for name in ("values", "weight", "source"):
            shape = np.shape(getattr(self, name))
            if shape != known.shape:
                raise ValueError(f"`{name}` has shape {shape}; expected {known.shape}.")
        values = np.where(known, np.asarray(self.values, dtype=np.float32), 0.0)
        weight = np.where(known, np.asarray(self.weight, dtype=np.float32), 0.0)
        source = np.where(known, np.asarray(self.source, dtype=np.uint8), Source.UNKNOWN)
        object.__setattr__(self, "known", known)
        object.__setattr__(self, "values", _frozen(values, np.float32))
        object.__setattr__(self, "weight", _frozen(weight, np.float32))
        object.__setattr__(self, "source", _frozen(source, np.uint8))
        self._check_fields()

    @classmethod
    def _adopt(cls, values, known, weight, source, label_names, ids, exclusive_groups) -> "PartialLabels":
        """A table that takes over the given arrays (made read-only here) instead of copying them.

        For readers of whole tables (`.npz`): the constructor's copies would hold the table in
        memory three times over at 10^6 rows. The caller owns the arrays, gives them up, and has
        checked what the constructor would otherwise enforce by masking: float32 / bool / float32 /
        uint8 of one 2-D shape, and 0 in every unknown cell.
        """
        table = object.__new__(cls)
        for name, array in (("values", values), ("known", known), ("weight", weight), ("source", source)):
            array.setflags(write=False)
            object.__setattr__(table, name, array)
        object.__setattr__(table, "label_names", label_names)
        object.__setattr__(table, "ids", ids)
        object.__setattr__(table, "exclusive_groups", exclusive_groups)
        table._check_fields()
        return table

    def _check_fields(self) -> None:
        """Names, ids, groups and known cells checked (and normalised to tuples of str)."""
        known = self.known
        object.__setattr__(self, "label_names", _check_names(self.label_names))
        if len(self.label_names) != known.shape[1]:
            raise ValueError(
                f"`label_names` has {len(self.label_names)} names; the table has {known.shape[1]} columns."
            )
        object.__setattr__(self, "ids", _check_ids(self.ids, known.shape[0]))
        object.__setattr__(self, "exclusive_groups", _check_groups(self.exclusive_groups, self.label_names))
        _check_cells(self.values, known, self.weight, self.source)

    # === Basic properties ===

    @property
    def n_samples(self) -> int:
        return self.known.shape[0]

    @property
    def n_labels(self) -> int:
        return self.known.shape[1]

    def __len__(self) -> int:
        return self.n_samples

    def __repr__(self) -> str:
        return (
            f"PartialLabels(n_samples={self.n_samples}, n_labels={self.n_labels}, "
            f"known_fraction={self.known.mean() if self.known.size else 0.0:.3f})"
        )

    # === Constructors ===

    @classmethod
    def from_array(
        cls,
        Y: np.ndarray,
        label_names: Sequence[str] | None = None,
        ids: Sequence[object] | None = None,
        exclusive_groups: Sequence[Sequence[str]] = (),
    ) -> "PartialLabels":
        """A table from an `(n, L)` array with `-1` (or NaN) for unknown and values in [0, 1] known.

        Known cells get source HUMAN and weight 1. Soft values in (0, 1) are accepted.

        Args:
            Y: array-like `(n_samples, n_labels)`.
            label_names: defaults to `"label_0"`, `"label_1"`, ...
            ids: row ids; default `"0"`, `"1"`, ...
            exclusive_groups: see the class docstring.

        Example:
            >>> PartialLabels.from_array([[1, -1], [0, 1]]).known.tolist()
            [[True, False], [True, True]]
        """
        Y = np.asarray(Y, dtype=np.float64)
        if Y.ndim != 2:
            raise ValueError(f"`Y` must be 2-D (n_samples, n_labels); got shape {Y.shape}.")
        unknown = unknown_mask(Y, "Y")
        n, n_labels = Y.shape
        label_names = [f"label_{j}" for j in range(n_labels)] if label_names is None else label_names
        ids = [str(i) for i in range(n)] if ids is None else ids
        known = ~unknown
        return cls._with_groups(
            values=np.where(known, Y, 0.0),
            known=known,
            label_names=label_names,
            ids=ids,
            exclusive_groups=exclusive_groups,
        )

    @classmethod
    def from_dataframe(
        cls,
        df: pd.DataFrame,
        id_column: str,
        label_columns: Sequence[str] | None = None,
        exclusive_groups: Sequence[Sequence[str]] = (),
    ) -> "PartialLabels":
        """A table from a wide DataFrame: one row per sample, one column per label.

        Cells may be 1 / 0 (also True / False, "1" / "0", 1.0 / 0.0) or unknown: blank, "",
        "?", NaN or None. Any other value raises a `ValueError` naming the row id, the column and
        the value received.

        Args:
            df: the table.
            id_column: the column with unique row ids.
            label_columns: the label columns; default every column but `id_column`.
            exclusive_groups: lists of labels of which at most one can be positive per row.

        Example:
            >>> df = pd.DataFrame({"id": ["x"], "a": ["1"], "b": ["?"]})
            >>> PartialLabels.from_dataframe(df, "id").to_array().tolist()
            [[1.0, -1.0]]
        """
        return cls._parse_wide(df, id_column, label_columns, exclusive_groups, where="the DataFrame")

    @classmethod
    def from_label_lists(
        cls,
        df: pd.DataFrame,
        id_column: str,
        positives_column: str,
        negatives_column: str | None = None,
        label_names: Sequence[str] | None = None,
        missing: str = "unknown",
        sep: str = "|",
        exclusive_groups: Sequence[Sequence[str]] = (),
    ) -> "PartialLabels":
        """A table from list columns, the `flow_from_dataframe` format.

        Each cell of `positives_column` (and `negatives_column`) is a list / tuple / set of label
        names, a string of names joined by `sep`, or empty / NaN.

        Args:
            df: the table.
            id_column: the column with unique row ids.
            positives_column: the column listing each row's positive labels.
            negatives_column: optional column listing each row's known negative labels.
            label_names: all labels; default the sorted union of the names in the list columns.
            missing: what an unlisted label is: `"unknown"` (partial labels, the default) or
                `"negative"` (closed world: everything not listed as positive is negative).
            sep: separator of names in string cells.
            exclusive_groups: see `from_dataframe`.

        Example:
            >>> df = pd.DataFrame({"id": ["a", "b"], "pos": [["cat"], "dog|cat"]})
            >>> PartialLabels.from_label_lists(df, "id", "pos").to_array().tolist()
            [[1.0, -1.0], [1.0, 1.0]]
        """
        if missing not in _MISSING_CHOICES:
            raise ValueError(
                f"Invalid value for argument `missing`. Expected one of {list(_MISSING_CHOICES)}. "
                f"Received: missing={missing!r}"
            )
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"Expected a pandas DataFrame; got {type(df).__name__}.")
        if not isinstance(sep, str) or not sep:
            raise ValueError(f"Invalid value for argument `sep`. Expected a non-empty string. Received: sep={sep!r}")
        columns = [id_column, positives_column] + ([negatives_column] if negatives_column else [])
        _require_columns(df, columns, "the DataFrame")
        ids = _check_ids(_id_values(df, id_column, "the DataFrame"), len(df), where=f"column {id_column!r}")

        def names_in(cell: object, row: int, column: str) -> list[str]:
            where = f"Row id {ids[row]!r} (row {row}), column {column!r}"
            if isinstance(cell, str):
                return [name.strip() for name in cell.split(sep) if name.strip()]
            if isinstance(cell, (list, tuple, set, frozenset, np.ndarray, pd.Series)):
                names = []
                for name in cell:
                    if isinstance(name, (bool, np.bool_)) or not isinstance(name, (str, int, np.integer)):
                        raise ValueError(
                            f"{where}: expected a list of label names (strings); got the element "
                            f"{name!r} in {cell!r}."
                        )
                    if not str(name).strip():
                        raise ValueError(
                            f"{where}: expected a list of label names; got an empty name in {cell!r}."
                        )
                    names.append(str(name).strip())
                return names
            if _is_missing(cell):
                return []
            raise ValueError(
                f"{where}: expected a list of label names or a {sep!r}-separated string; got {cell!r}."
            )

        positives = [names_in(c, i, positives_column) for i, c in enumerate(df[positives_column])]
        negatives = (
            [names_in(c, i, negatives_column) for i, c in enumerate(df[negatives_column])]
            if negatives_column
            else [[] for _ in ids]
        )
        if label_names is None:
            label_names = sorted({name for row in positives + negatives for name in row})
        names = _check_names(label_names)
        index = {name: j for j, name in enumerate(names)}
        n = len(ids)
        values = np.zeros((n, len(names)), dtype=np.float32)
        known = np.full((n, len(names)), missing == "negative")
        for i, (row_id, pos, neg) in enumerate(zip(ids, positives, negatives)):
            both = set(pos) & set(neg)
            if both:
                raise ValueError(
                    f"Row id {row_id!r}: labels {sorted(both)} are listed both in "
                    f"{positives_column!r} and in {negatives_column!r}."
                )
            for column, listed, value in ((positives_column, pos, 1.0), (negatives_column, neg, 0.0)):
                for name in listed:
                    if name not in index:
                        raise ValueError(
                            f"Row id {row_id!r}, column {column!r}: unknown label {name!r}; "
                            f"expected one of {list(names)}."
                        )
                    values[i, index[name]] = value
                    known[i, index[name]] = True
        return cls._with_groups(values, known, names, ids, exclusive_groups)

    @classmethod
    def from_filenames(
        cls,
        paths: Iterable[str | os.PathLike],
        parse: str | re.Pattern | Callable[[str], Mapping[str, object]],
        label_names: Sequence[str] | None = None,
        exclusive_groups: Sequence[Sequence[str]] = (),
    ) -> "PartialLabels":
        """A table from labels encoded in file names (UTKFace style).

        Args:
            paths: the image paths; they become the row ids.
            parse: either a regular expression with named groups, matched against the file name
                (not the folder): each named group is a categorical attribute, its matched value
                gives the positive label `"group=value"`, and the labels of one group form an
                exclusive group (so the other values of that group are known negatives); or a
                callable taking the file name and returning a mapping `label -> 1 / 0 / None`
                (missing labels stay unknown).
            label_names: all labels; default the sorted union of those found.
            exclusive_groups: more exclusive groups, added to those of a regular expression.

        Example:
            >>> names = ["25_0_2_x.jpg", "31_1_0_y.jpg"]
            >>> labels = PartialLabels.from_filenames(names, r"\\d+_(?P<gender>\\d)_")
            >>> labels.label_names
            ('gender=0', 'gender=1')
            >>> labels.to_array().tolist()
            [[1.0, 0.0], [0.0, 1.0]]
        """
        paths = [str(p) for p in paths]
        rows: list[dict[str, object]] = []
        groups: list[tuple[str, ...]] = []
        if callable(parse) and not isinstance(parse, re.Pattern):
            for path in paths:
                result = parse(os.path.basename(path))
                if not isinstance(result, Mapping):
                    raise ValueError(
                        f"File {path!r}: `parse` must return a mapping label -> 1/0/None; "
                        f"got {type(result).__name__}."
                    )
                rows.append(dict(result))
        else:
            pattern = re.compile(parse)
            if not pattern.groupindex:
                raise ValueError(
                    f"`parse` pattern {pattern.pattern!r} has no named groups; use (?P<name>...)."
                )
            found: dict[str, set[str]] = {group: set() for group in pattern.groupindex}
            for path in paths:
                match = pattern.search(os.path.basename(path))
                if match is None:
                    raise ValueError(
                        f"File {path!r}: its name does not match the `parse` pattern {pattern.pattern!r}."
                    )
                row = {}
                for group, value in match.groupdict().items():
                    if value is not None:
                        found[group].add(value)
                        row[f"{group}={value}"] = 1
                rows.append(row)
            groups = [tuple(f"{g}={v}" for v in sorted(vals)) for g, vals in found.items() if vals]
        if label_names is None:
            label_names = sorted({name for row in rows for name in row})
        df = pd.DataFrame(rows, columns=list(label_names), dtype=object)
        unexpected = sorted({name for row in rows for name in row} - set(label_names))
        if unexpected:
            raise ValueError(f"`parse` produced labels not in `label_names`: {unexpected}.")
        df.insert(0, "__path__", paths)
        return cls._parse_wide(
            df, "__path__", list(label_names), groups + list(_group_lists(exclusive_groups)),
            where="the parsed file names",
        )

    @classmethod
    def _parse_wide(
        cls,
        df: pd.DataFrame,
        id_column: str,
        label_columns: Sequence[str] | None,
        exclusive_groups: Sequence[Sequence[str]],
        where: str,
        soft: bool = False,
        hint: str = "",
    ) -> "PartialLabels":
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"Expected a pandas DataFrame; got {type(df).__name__}.")
        every_column = label_columns is None
        if every_column:
            label_columns = [c for c in df.columns if c != id_column]
        elif isinstance(label_columns, (str, bytes)):
            raise ValueError(
                f"Invalid value for argument `label_columns`. Expected a list of column names. "
                f"Received: label_columns={label_columns!r}"
            )
        keys = list(label_columns)
        _require_columns(df, [id_column, *keys], where)
        names = _check_names(keys, "label_columns")
        ids = _check_ids(_id_values(df, id_column, where), len(df), where=f"column {id_column!r} of {where}")
        values = np.zeros((len(df), len(names)), dtype=np.float32)
        known = np.zeros((len(df), len(names)), dtype=bool)
        columns = [df[key].to_numpy(dtype=object) for key in keys]
        for i in range(len(df)):  # row by row: an error names the first bad cell as the file reads
            for j, column in enumerate(names):
                cell = columns[j][i]
                try:
                    value = _cell_value(cell)
                except KeyError:
                    value = _soft_value(cell) if soft else None
                    if value is None:
                        number = _number(cell)
                        if _soft_value(cell) is not None:  # a soft value: a filled table without its sidecar
                            why = hint
                        elif number == -1:
                            why = (" -1 is the unknown mark of label arrays, not of a CSV, where it often means "
                                   "'uncertain' (CheXpert): write a blank for unknown, or decide 1 or 0.")
                        else:  # text or another number: maybe a column that is no label
                            why = (f" Every column but {id_column!r} is read as a label of 1 / 0 / blank cells: "
                                   "write its cells so, or remove the column if it is no label (notes, a split, a "
                                   "path, an age), or name the label columns (label_columns; data.label_columns "
                                   "in a recipe; --label-columns on the command line)."
                                   if every_column else "")
                        raise ValueError(
                            f"Row id {ids[i]!r} ({_row_name(df, i)}), column {column!r} of {where}: expected "
                            f"1, 0 or blank/'?' for unknown; got {cell!r}.{why}"
                        ) from None
                if value is not None:
                    values[i, j] = value
                    known[i, j] = True
        return cls._with_groups(values, known, names, ids, exclusive_groups)

    @classmethod
    def _with_groups(cls, values, known, label_names, ids, exclusive_groups) -> "PartialLabels":
        """Human cells plus the negatives implied by exclusive groups."""
        values = np.array(values, dtype=np.float32)
        known = np.array(known, dtype=bool)
        source = np.where(known, Source.HUMAN, Source.UNKNOWN).astype(np.uint8)
        table = cls(values=values, known=known, weight=known.astype(np.float32), source=source,
                    label_names=label_names, ids=ids, exclusive_groups=exclusive_groups)
        if not table.exclusive_groups:
            return table
        index = {name: j for j, name in enumerate(table.label_names)}
        for group in table.exclusive_groups:
            cols = [index[name] for name in group]
            positive = known[:, cols] & (values[:, cols] >= 0.5)
            count = positive.sum(axis=1)
            if (count > 1).any():
                row = int(np.argmax(count > 1))
                both = [group[k] for k in np.flatnonzero(positive[row])]
                raise ValueError(
                    f"Row id {table.ids[row]!r}: labels {both} are all positive, but they are in one "
                    f"exclusive group {list(group)}, of which at most one can be positive."
                )
        return table._implied_by_groups()

    # === Views ===

    def to_array(self) -> np.ndarray:
        """The `(n, L)` float32 array with `-1` for unknown cells (scikit-learn's convention)."""
        return np.where(self.known, self.values, np.float32(-1.0)).astype(np.float32)

    def subset(self, rows: Sequence[int] | np.ndarray, *, allow_repeats: bool = False) -> "PartialLabels":
        """The table restricted to `rows` (integer indices or a boolean mask), in that order.

        Args:
            rows: integer row indices in `[0, n_samples)`, or a bool mask `(n_samples,)`.
            allow_repeats: accept an index more than once (oversampling rows). Ids stay unique:
                every occurrence of a repeated row gets the id `"<id>#<k>"`, `k = 0, 1, ...`
                counting that row's occurrences (skipping a `k` whose id another row already
                has); rows taken once keep their id.

        Returns:
            A new `PartialLabels` with one row per entry of `rows`.

        Example:
            >>> table = PartialLabels.from_array([[1, -1], [0, 1]], ids=["a", "b"])
            >>> table.subset([1, 0, 1], allow_repeats=True).ids
            ('b#0', 'a', 'b#1')
        """
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if rows.shape != (self.n_samples,):
                raise ValueError(
                    f"Invalid value for argument `rows`. Expected a bool mask of shape ({self.n_samples},) "
                    f"or integer indices. Received a bool array of shape {rows.shape}."
                )
            rows = np.flatnonzero(rows)
        elif rows.size == 0:
            rows = rows.astype(np.int64).reshape(0)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
            raise ValueError(
                f"Invalid value for argument `rows`. Expected 1-D integer indices or a bool mask of shape "
                f"({self.n_samples},). Received an array of dtype {rows.dtype} and shape {rows.shape}."
            )
        outside = (rows < 0) | (rows >= self.n_samples)
        if outside.any():
            raise ValueError(
                f"Invalid value for argument `rows`. Expected indices in [0, {self.n_samples}). "
                f"Received {int(rows[outside][0])} at position {int(np.flatnonzero(outside)[0])}."
            )
        counts = np.bincount(rows, minlength=self.n_samples)
        if (counts > 1).any():
            if not allow_repeats:
                row = int(np.flatnonzero(counts > 1)[0])
                raise ValueError(
                    f"Invalid value for argument `rows`: row {row} (id {self.ids[row]!r}) appears "
                    f"{int(counts[row])} times; expected each row at most once. Pass allow_repeats=True "
                    "to repeat rows (each occurrence then gets its own id)."
                )
            seen = np.zeros(self.n_samples, dtype=np.int64)
            used = {self.ids[i] for i in np.flatnonzero(counts == 1)}  # kept as they are
            ids = []
            for i in rows.tolist():
                if counts[i] > 1:
                    while f"{self.ids[i]}#{seen[i]}" in used:  # e.g. an id "img#1" beside a repeated "img"
                        seen[i] += 1
                    used.add(f"{self.ids[i]}#{seen[i]}")
                    ids.append(f"{self.ids[i]}#{seen[i]}")
                else:
                    ids.append(self.ids[i])
                seen[i] += 1
        else:
            ids = [self.ids[i] for i in rows.tolist()]
        return PartialLabels(
            values=self.values[rows], known=self.known[rows], weight=self.weight[rows],
            source=self.source[rows], label_names=self.label_names, ids=ids,
            exclusive_groups=self.exclusive_groups,
        )

    def restrict(self, cells: np.ndarray) -> "PartialLabels":
        """The table with only the known cells in `cells` kept; every other cell becomes unknown.

        Kept cells keep their value, weight and source. Use it to score on the human cells only
        (`table.restrict(table.source == Source.HUMAN)`) or to keep the cells a step filled.

        Args:
            cells: bool `(n_samples, n_labels)`.

        Returns:
            A new `PartialLabels`; `self` is unchanged.

        Example:
            >>> table = PartialLabels.from_array([[1, 0], [0, 1]])
            >>> table.restrict(np.array([[True, False], [False, True]])).to_array().tolist()
            [[1.0, -1.0], [-1.0, 1.0]]
        """
        cells = np.asarray(cells)
        if cells.dtype != bool or cells.shape != self.known.shape:
            raise ValueError(
                f"Invalid value for argument `cells`. Expected a bool array of shape {self.known.shape}. "
                f"Received an array of dtype {cells.dtype} and shape {cells.shape}."
            )
        return self._replace(known=self.known & cells)

    def reweight(self, weight: np.ndarray | float) -> "PartialLabels":
        """The table with new weights on its known cells (unknown cells keep weight 0).

        Args:
            weight: `(n_samples, n_labels)`, or anything that broadcasts to it (a scalar, one weight
                per row `(n_samples, 1)`, one per label `(n_labels,)`); in [0, 1] on known cells,
                ignored on unknown cells.

        Returns:
            A new `PartialLabels` with the same values, sources and known cells.

        Example:
            >>> table = PartialLabels.from_array([[1, -1], [0, 1]])
            >>> table.reweight(0.5).weight.tolist()
            [[0.5, 0.0], [0.5, 0.5]]
        """
        try:
            weight = np.broadcast_to(np.asarray(weight, dtype=np.float64), self.known.shape)
        except (TypeError, ValueError):
            raise ValueError(
                f"Invalid value for argument `weight`. Expected numbers that broadcast to {self.known.shape}. "
                f"Received shape {np.shape(weight)}."
            ) from None
        bad = self.known & ~((weight >= 0) & (weight <= 1))
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"Invalid value for argument `weight`: row {row}, column {col} (a known cell) has "
                f"{float(weight[row, col])!r}; expected a weight in [0, 1]."
            )
        return self._replace(weight=weight)

    def summary(self) -> pd.DataFrame:
        """Per-label counts: positives, negatives, unknown, known fraction, and cells per source.

        Positives and negatives count known cells with value >= 0.5 and < 0.5.
        """
        positive = self.known & (self.values >= 0.5)
        negative = self.known & (self.values < 0.5)
        table = pd.DataFrame(
            {
                "positives": positive.sum(axis=0),
                "negatives": negative.sum(axis=0),
                "unknown": (~self.known).sum(axis=0),
                "known_fraction": self.known.mean(axis=0) if self.n_samples else 0.0,
            },
            index=pd.Index(self.label_names, name="label"),
        )
        for source in (Source.HUMAN, Source.IMPLIED, Source.PROPAGATED, Source.TEACHER):
            table[source.name.lower()] = (self.source == source).sum(axis=0)
        return table

    def _replace(self, **fields: object) -> "PartialLabels":
        """A new table with some of the seven fields replaced (validated by the constructor)."""
        current = {
            "values": self.values, "known": self.known, "weight": self.weight, "source": self.source,
            "label_names": self.label_names, "ids": self.ids, "exclusive_groups": self.exclusive_groups,
        }
        return PartialLabels(**{**current, **fields})

    # === Filling ===

    def fill(
        self,
        values: np.ndarray,
        confidence: np.ndarray | float = 1.0,
        source: Source | str = Source.PROPAGATED,
    ) -> "PartialLabels":
        """A new table in which unknown cells take the given values; known cells never change.

        Args:
            values: `(n, L)`; a cell is filled when it is unknown here and its value is in [0, 1];
                `-1` or NaN leaves it unknown. Any other value is an error (`unknown_mask`).
            confidence: `(n, L)` or a scalar in [0, 1]: the weight of each filled cell.
            source: the provenance of filled cells, "propagated" or "teacher" (or a `Source`);
                "implied" for negatives a rule implies (`teacher_student.AssumeNegative`). Never
                "human": a person's cells come in through the constructors or
                `labeling.merge_answers`.

        A row keeps at most one positive per exclusive group: filled positives that would make a
        second one (beside a known positive, or beside each other) stay unknown, with a log line.

        Returns:
            A new `PartialLabels`; `self` is unchanged.
        """
        source = _as_source(source)
        if source in (Source.HUMAN, Source.UNKNOWN):
            raise ValueError(f"Invalid value for argument `source`: filled cells are machine cells, 'propagated', "
                             f"'teacher' or 'implied'; got {source.name.lower()!r}. A person's labels come in through "
                             "the constructors or `labeling.merge_answers`.")
        values = np.asarray(values, dtype=np.float64)
        if values.shape != self.known.shape:
            raise ValueError(f"`values` has shape {values.shape}; expected {self.known.shape}.")
        try:
            confidence = np.broadcast_to(np.asarray(confidence, dtype=np.float64), values.shape)
        except ValueError:
            raise ValueError(f"`confidence` has shape {np.shape(confidence)}; expected a number or the shape of "
                             f"`values`, {values.shape}.") from None
        given = ~unknown_mask(values, "values")
        bad = given & ~((confidence >= 0) & (confidence <= 1))
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"`confidence` row {row}, column {col}: expected a value in [0, 1]; "
                f"got {float(confidence[row, col])!r}."
            )
        take = given & ~self.known
        if self.exclusive_groups:  # at most one positive per row and group, as the constructors ask
            filled = self._replace(values=np.where(given, values, 0.0), known=given, source=np.full(given.shape, source))
            take = self._without_second_positives(filled, take, "fill", "filled positives left unknown")
        return self._replace(
            values=np.where(take, values, self.values),
            known=self.known | take,
            weight=np.where(take, confidence, self.weight),
            source=np.where(take, source, self.source),
        )

    def merge(self, other: "PartialLabels", *, overwrite: bool = False) -> "PartialLabels":
        """A new table in which `other`'s known cells fill this table's cells, with their provenance.

        Rows are matched by id: `other` may hold all of this table's rows or some of them (in any
        order), e.g. the training rows of a step, whose table then goes back into the full one.

        Precedence: with `overwrite=False` (the default) this table's known cells win and
        `other` only fills its unknown cells, so `a.merge(b).merge(c)` takes each cell from the
        first of `a`, `b`, `c` that knows it. With `overwrite=True`, `other`'s known cells also
        replace this table's machine cells (sources `PROPAGATED` and `TEACHER`). Human cells
        (`HUMAN`, and the `IMPLIED` negatives that follow from them) are never overwritten.
        Each cell taken from `other` keeps its value, weight and source.

        Exclusive groups (this table's) hold as in the constructors and `fill`: a machine positive
        of `other` that would make a second positive in a group of its row is left out; a person's
        positive makes the other labels of its group negatives (source `IMPLIED`), also where they
        held a machine positive; two positives of a person in one group are an error naming the row.

        Args:
            other: a `PartialLabels` with the same label names (in the same order) and ids that
                are all ids of this table.
            overwrite: let `other` replace machine cells too (see above).

        Returns:
            A new `PartialLabels` with this table's ids and exclusive groups; both inputs are
            unchanged.

        Example:
            >>> human = PartialLabels.from_array([[1, -1], [-1, 0]])
            >>> guess = PartialLabels.from_array([[0, 1], [1, 1]]).reweight(0.5)
            >>> merged = human.merge(guess)
            >>> merged.to_array().tolist(), merged.weight.tolist()
            ([[1.0, 1.0], [1.0, 0.0]], [[1.0, 0.5], [0.5, 1.0]])
        """
        if not isinstance(other, PartialLabels):
            raise TypeError(f"Invalid value for argument `other`. Expected a PartialLabels. Received: {type(other).__name__}")
        if not isinstance(overwrite, bool):
            raise TypeError(f"Invalid value for argument `overwrite`. Expected a bool. Received: overwrite={overwrite!r}")
        if other.label_names != self.label_names:
            raise ValueError(
                f"Invalid value for argument `other`. Expected the label names {list(self.label_names)}. "
                f"Received {list(other.label_names)}."
            )
        if other.ids == self.ids:
            given = other
        else:
            index = {row_id: i for i, row_id in enumerate(self.ids)}
            missing = [row_id for row_id in other.ids if row_id not in index]
            if missing:
                raise ValueError(
                    f"Invalid value for argument `other`: its ids {missing[:5]} are not ids of this table "
                    f"({len(missing)} such rows); expected ids out of this table's {self.n_samples}."
                )
            rows = np.fromiter((index[row_id] for row_id in other.ids), dtype=np.int64, count=other.n_samples)
            arrays = {"values": np.zeros_like(self.values), "known": np.zeros_like(self.known),
                      "weight": np.zeros_like(self.weight), "source": np.zeros_like(self.source)}
            for name, array in arrays.items():
                array[rows] = getattr(other, name)
            given = self._replace(**arrays)
        take = given.known & ~self.known
        if overwrite:
            human = np.isin(self.source, (Source.HUMAN, Source.IMPLIED))
            take |= given.known & self.known & ~human
        if self.exclusive_groups:
            take = self._without_second_positives(given, take, "merge", "positives of the other table left out")
        merged = self._replace(
            values=np.where(take, given.values, self.values),
            known=self.known | take,
            weight=np.where(take, given.weight, self.weight),
            source=np.where(take, given.source, self.source),
        )
        return merged._implied_by_groups() if self.exclusive_groups else merged

    def _without_second_positives(self, given: "PartialLabels", take: np.ndarray, caller: str, dropped: str) -> np.ndarray:
        """`take` (cells of `given` to take into this table) without the machine positives that
        would make a second positive in an exclusive group of their row (they stay as they were; one
        log line per group, `"<caller>: <n> <dropped>: ..."`); two human positives in one group are
        an error naming the row, as in the constructors."""
        take = take.copy()
        index = {name: j for j, name in enumerate(self.label_names)}
        for group in self.exclusive_groups:
            cols = [index[name] for name in group]
            known = np.where(take[:, cols], given.known[:, cols], self.known[:, cols])
            values = np.where(take[:, cols], given.values[:, cols], self.values[:, cols])
            source = np.where(take[:, cols], given.source[:, cols], self.source[:, cols])
            positive = known & (values >= 0.5)
            clash = positive.sum(axis=1) > 1
            drop = clash[:, None] & take[:, cols] & positive & (source != Source.HUMAN)
            if drop.any():
                logger.info("%s: %d %s: each made a second positive in the exclusive group %s of its row.",
                            caller, int(drop.sum()), dropped, list(group))
                take[:, cols] &= ~drop
            person = (positive & ~drop & (source == Source.HUMAN)).sum(axis=1)
            if (person > 1).any():
                row = int(np.argmax(person > 1))
                both = [group[k] for k in np.flatnonzero(positive[row] & (source[row] == Source.HUMAN))]
                raise ValueError(
                    f"Row id {self.ids[row]!r}: after the merge labels {both} are all positive, but they are in one "
                    f"exclusive group {list(group)}, of which at most one can be positive."
                )
        return take

    def _implied_by_groups(self) -> "PartialLabels":
        """The table with a person's positive making the other labels of its exclusive group
        negatives (source IMPLIED, weight 1) where they are unknown or machine positives."""
        values, known = self.values.copy(), self.known.copy()
        weight, source = self.weight.copy(), self.source.copy()
        index = {name: j for j, name in enumerate(self.label_names)}
        for group in self.exclusive_groups:
            cols = np.array([index[name] for name in group])
            person = (known[:, cols] & (values[:, cols] >= 0.5) & (source[:, cols] == Source.HUMAN)).any(axis=1)
            sub_known, sub_values, sub_source = known[:, cols], values[:, cols], source[:, cols]
            implied = person[:, None] & ~(sub_known & (sub_source == Source.HUMAN)) & ~(sub_known & (sub_values < 0.5))
            rows, ks = np.nonzero(implied)
            values[rows, cols[ks]], known[rows, cols[ks]] = 0.0, True
            weight[rows, cols[ks]], source[rows, cols[ks]] = 1.0, Source.IMPLIED
        return self._replace(values=values, known=known, weight=weight, source=source)

    # === Files ===

    def save(self, path: str | os.PathLike, *, id_column: str = "id") -> None:
        """Write the table; the suffix of `path` chooses the format: `.npz` binary, else a wide CSV.

        - `.npz` (what run directories use): one uncompressed NumPy archive holding `values`,
          `known`, `weight` and `source` as they are in memory, the ids and label names as UTF-8
          bytes, the exclusive groups, and a format header; `load` gives back a bit-identical
          table. One file, no sidecar. Seconds at 10^6 rows x 100 labels (docs/benchmarks.md, B9).
        - any other suffix (`.csv`): the human-readable table, one row per id, one column per label,
          1 / 0, a soft value for filled cells, blank for unknown; and, beside it,
          `<path>.meta.json`, a JSON sidecar with the exclusive groups, the weight and source of
          every known cell that is not a plain human label (source human, weight 1, value 1 or 0),
          and the SHA-256 of the CSV bytes, so that `load` can tell when the two files were not
          written together. The sidecar is written first. A table of plain human labels without
          exclusive groups gets no sidecar (an old one at that path is removed): the CSV holds all
          of it, and a person may edit it.

        Every file is written atomically (temporary file beside it, then rename), with the mode the
        umask gives a new file. `id_column` names the CSV's column of ids (read it back with
        `load(path, id_column=...)`).

        Example:
            >>> table = PartialLabels.from_array([[1, -1], [0, 1]])
            >>> table.save("runs/t.npz")  # doctest: +SKIP
            >>> table.save("labels.csv")  # doctest: +SKIP
        """
        path = Path(path)
        if _is_binary(path):
            _write_npz(self, path)
            return
        if id_column in self.label_names:
            raise ValueError(
                f"Cannot save to {str(path)!r}: a label is named {id_column!r}, the name of the CSV's id "
                f"column. Rename that label. Labels: {list(self.label_names)}."
            )
        try:
            data = _write_csv(self, id_column).encode("utf-8")
        except UnicodeEncodeError:
            what, text = next(((f"the id of row {i}", t) for i, t in enumerate(self.ids) if not _encodes(t)), None) or next(
                (f"label {j}", t) for j, t in enumerate(self.label_names) if not _encodes(t))
            raise ValueError(
                f"Cannot save to {str(path)!r}: {what}, {text!r}, is not valid text (a file name in "
                "another encoding than UTF-8?), and a CSV is UTF-8. Save to a .npz table, which keeps it, or "
                "rename it."
            ) from None
        plain = (self.source == Source.HUMAN) & (self.weight == 1) & ((self.values == 0) | (self.values == 1))
        rows, cols = np.nonzero(self.known & ~plain)
        if not len(rows) and not self.exclusive_groups:  # a plain human table: the CSV says it all, and stays editable
            _meta_path(path).unlink(missing_ok=True)  # a sidecar of an earlier table would not match this CSV
            atomic_write_bytes(path, data)
            return
        meta = {
            "format": _SIDECAR_FORMAT,
            "version": _SIDECAR_VERSION,
            "csv_sha256": hashlib.sha256(data).hexdigest(),
            "n_samples": self.n_samples,
            "label_names": list(self.label_names),
            "exclusive_groups": [list(g) for g in self.exclusive_groups],
            "cells": {
                "row": rows.tolist(),
                "column": cols.tolist(),
                "source": [Source(int(s)).name.lower() for s in self.source[rows, cols]],
                "weight": [float(w) for w in self.weight[rows, cols]],
            },
        }
        atomic_write_bytes(_meta_path(path), json.dumps(meta).encode("utf-8"))
        atomic_write_bytes(path, data)

    @classmethod
    def load(cls, path: str | os.PathLike, *, require_sidecar: bool = False, id_column: str = "id",
             label_columns: Sequence[str] | None = None) -> "PartialLabels":
        """Read a table written by `save`, or any wide CSV with an id column and 1/0/blank cells.

        The suffix chooses the format, as in `save`: a `.npz` path is read as the binary table
        (every array's name, dtype and shape, the format header, the ids and each member's CRC-32
        are checked; a truncated, damaged or foreign file is a `ValueError` naming it). Any other
        path is read as a CSV: without a sidecar every known cell is a human label and must be 1
        or 0; with one, the CSV and the sidecar are checked against each other (the CSV's SHA-256,
        its rows and labels) and the sidecar's cells, weights, sources and exclusive groups are
        validated.

        Args:
            path: the `.npz` or the CSV.
            require_sidecar: for a CSV, fail when `<path>.meta.json` is missing instead of reading
                the CSV as plain human labels. Use it for every table the package wrote itself as
                a CSV (run directories from before the binary format): there, a lost sidecar would
                silently turn filled cells into human labels. A `.npz` holds its sources and
                weights itself, so the flag does not apply to it.
            id_column: for a CSV, the column that names the rows (e.g. `"image"`); every other
                column is a label, unless `label_columns` names them.
            label_columns: for a CSV of human labels (no sidecar), the label columns, in this
                order; the other columns (an age, a view, notes) are not read. None: every column
                but the id.

        Raises:
            FileNotFoundError: the file, or a required sidecar, does not exist.
            ValueError: the file or the sidecar is malformed, or they do not belong together; the
                message names the file and the row, column, key or array.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Label table {str(path)!r} does not exist.")
        meta_path = _meta_path(path)
        if label_columns is not None and (_is_binary(path) or meta_path.is_file()):
            raise ValueError(f"label_columns applies to a CSV of human labels; {str(path)!r} is a table the package "
                             "wrote (a .npz, or a CSV with its sidecar), whose columns are all labels.")
        if _is_binary(path):
            return _read_npz(path)
        data = path.read_bytes()
        frame = _read_csv(data, path, id_column)
        where = f"file {str(path)!r}"
        if not meta_path.is_file():
            if require_sidecar:
                raise FileNotFoundError(
                    f"Label table {str(path)!r} has no sidecar {str(meta_path)!r}. The package wrote "
                    "this table with its sidecar, which holds the source and weight of every filled "
                    "cell; without it those cells would be read as human labels. Restore the "
                    "sidecar, or delete this step's output and run it again."
                )
            hint = (
                f" (a table written by PartialLabels.save keeps soft values only with its sidecar "
                f"{str(meta_path)!r}, which is missing)"
            )
            return cls._parse_wide(frame, id_column, label_columns, (), where=where, hint=hint)

        meta = _read_sidecar(meta_path)
        pair = f"Label table {str(path)!r} and its sidecar {str(meta_path)!r}"
        found = (len(frame), [c for c in frame.columns if c != id_column])
        expected = (meta["n_samples"], meta["label_names"])
        if found != expected:
            raise ValueError(
                f"Label table {str(path)!r} has {found[0]} rows and labels {found[1]}, but its "
                f"sidecar {str(meta_path)!r} describes {expected[0]} rows and labels {expected[1]}."
            )
        if meta["csv_sha256"] is not None:
            digest = hashlib.sha256(data).hexdigest()
            if digest != meta["csv_sha256"]:
                raise ValueError(
                    f"{pair} do not belong together: the sidecar was written for a CSV with SHA-256 "
                    f"{meta['csv_sha256'][:12]}..., the CSV has {digest[:12]}... (one of the two was "
                    "replaced without the other, e.g. by an interrupted save or a hand edit). Restore "
                    "the pair; delete the sidecar only if every known cell of the CSV is a human label."
                )
        else:
            logger.warning(
                "Label sidecar %s has format version 1, which records no hash of its CSV: the pair "
                "cannot be checked against each other. Save the table again to upgrade it.",
                meta_path,
            )
        table = cls._parse_wide(frame, id_column, None, (), where=where, soft=True)
        return _apply_sidecar(table, meta, path, meta_path)


def validation_split(labels: PartialLabels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation row indices: `fraction` of the rows with a human cell, seeded.

    The one validation split of the library: every training step of a recipe (with the run's
    split seed) and `teacher_student.noisy_student` hold out these rows. Rows without a human
    cell always train.

    Example:
        >>> table = PartialLabels.from_array(np.array([[1.0], [0.0], [-1.0], [1.0]]))
        >>> train, val = validation_split(table, 0.34, seed=0)
        >>> len(val), 2 in val
        (1, False)
    """
    if fraction <= 0:
        return np.arange(labels.n_samples), np.array([], dtype=int)
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero((labels.known & (labels.source == Source.HUMAN)).any(axis=1))
    n_val = int(round(fraction * len(candidates)))
    val = np.sort(rng.permutation(candidates)[:n_val])
    return np.setdiff1d(np.arange(labels.n_samples), val), val


def given_cells(labels: PartialLabels) -> PartialLabels:
    """`labels` with only its human and implied cells: what validation may be scored against
    (a filled cell, from a teacher or propagation, would score a model against a model)."""
    return labels.restrict(np.isin(labels.source, [Source.HUMAN, Source.IMPLIED]))


def _check_cells(values: np.ndarray, known: np.ndarray, weight: np.ndarray, source: np.ndarray) -> None:
    """Known cells hold a value and a weight in [0, 1] and a source other than UNKNOWN."""
    # Each mask is built when its check runs, so that at 10^8 cells only one set of boolean
    # temporaries is alive at a time.
    checks = (
        ("values", values, lambda: ~((values >= 0) & (values <= 1)), "a value in [0, 1]", float),
        ("weight", weight, lambda: ~((weight >= 0) & (weight <= 1)), "a weight in [0, 1]", float),
        ("source", source, lambda: (source == Source.UNKNOWN) | (source > max(Source)),
         f"a source code in {[int(s) for s in Source if s]}", int),
    )
    for name, array, outside, expected, show in checks:
        bad = outside()
        bad &= known
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"`{name}` row {row}, column {col}: a known cell needs {expected}; got "
                f"{show(array[row, col])!r} ({int(bad.sum())} such cells)."
            )


def _as_source(source: Source | str | int) -> Source:
    if isinstance(source, str):
        try:
            return Source[source.upper()]
        except KeyError:
            pass
    else:
        try:
            return Source(int(source))
        except ValueError:
            pass
    valid = [s.name.lower() for s in Source]
    raise ValueError(
        f"Invalid value for argument `source`. Expected one of {valid}. Received: source={source!r}"
    )


def _number(cell: object) -> float | None:
    """The float spelled in a cell, or None for text that is no number (`'blurry'`, `'train'`)."""
    try:
        return float(str(cell).strip())
    except ValueError:
        return None


def _soft_value(cell: object) -> float | None:
    """A float in [0, 1] spelled in a cell, or None when it is not one."""
    value = _number(cell)
    return value if value is not None and 0.0 <= value <= 1.0 else None


def _row_name(df: pd.DataFrame, i: int) -> str:
    """Row `i` of `df` for a message: its line when `df` was read from a CSV (`_read_csv`; the
    header is line 1, as an editor shows it), else its 0-based position."""
    lines = df.attrs.get("csv_lines")
    return f"line {lines[i]}" if lines is not None else f"row {i}"


def _id_values(df: pd.DataFrame, id_column: str, where: str) -> list[str]:
    ids = df[id_column].tolist()
    for i, value in enumerate(ids):
        if _is_missing(value) or str(value).strip() == "":
            raise ValueError(f"{_row_name(df, i).capitalize()}, column {id_column!r} of {where}: the id is empty; every row needs an id.")
    return [str(value) for value in ids]


def _require_columns(df: pd.DataFrame, columns: Sequence[object], where: str) -> None:
    """Each of `columns` is exactly one column of `df` (a duplicated name is ambiguous)."""
    found = list(df.columns)
    missing = [c for c in columns if c not in found]
    if missing:
        raise ValueError(f"Missing column(s) {missing} in {where}; found columns {found}.")
    for column in dict.fromkeys(columns):
        count = sum(1 for c in found if c == column)
        if count > 1:
            raise ValueError(
                f"Column {column!r} appears {count} times in {where}; expected exactly one column of "
                f"that name. Found columns {found}."
            )


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


# === File formats ===

_SIDECAR_FORMAT = "ssl-multilabel partial labels"
_SIDECAR_VERSION = 2  # 2 added `csv_sha256`; version 1 sidecars are read without the hash check
_SIDECAR_SOURCES = tuple(s.name.lower() for s in Source if s)


def _csv_field(text: str) -> str:
    # Quoted when it holds a separator, a quote or a line break. (The csv module and pandas leave
    # a lone "\r" unquoted when the line terminator is "\n", and the file then reads back wrong.)
    if any(char in text for char in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _write_csv(table: PartialLabels, id_column: str = "id") -> str:
    """The wide CSV of `save`: `%.9g` (exact for float32) for known cells, blank for unknown."""
    cells = np.where(table.known, np.char.mod("%.9g", table.values), "")
    lines = [",".join(_csv_field(name) for name in (id_column, *table.label_names))]
    lines += [",".join((_csv_field(row_id), *row)) for row_id, row in zip(table.ids, cells.tolist())]
    return "\n".join(lines) + "\n"


def _csv_text(data: bytes, where: str) -> str:
    """A CSV file's bytes as text (UTF-8, a byte-order mark dropped), or an error naming `where`,
    the line of the first byte that is no UTF-8 and how to save the file from Excel."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ValueError(f"{where} is not UTF-8 text: line {line} holds the byte {data[err.start:err.start + 1]!r}. "
                         "Save it as CSV UTF-8 (in Excel: CSV UTF-8).") from None


def _read_csv(data: bytes, path: Path, id_column: str = "id", what: str = "Label table",
              expected: str | None = None) -> pd.DataFrame:
    """The CSV's cells as strings, after checking its structure.

    Read with the `csv` module rather than pandas, which pads a short row with blanks (turning
    the missing cells into unknown ones) and renames a duplicate or empty header (`cat.1`,
    `Unnamed: 1`) without a word.
    """
    where = f"{what} {str(path)!r}"
    if data.startswith(_ZIP_MAGIC):
        raise ValueError(
            f"{where} is a zip archive (a binary .npz label table?), not a CSV; binary tables are read "
            "from a path ending in .npz."
        )
    text = _csv_text(data, where)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []  # the line each row starts on, for messages (the header is line 1)
    end = 0  # the last line read: a row starts on the next (a quoted cell can span lines)
    try:
        for record in reader:
            start, end = end + 1, reader.line_num
            if not record:  # a blank line
                continue
            if header is None:
                header = _check_header(record, where, id_column)
                id_index = header.index(id_column)
                continue
            if len(record) != len(header):
                row_id = f"Row id {record[id_index]!r} " if id_index < len(record) else "Row "
                raise ValueError(
                    f"{row_id}(line {start}) of {where[0].lower() + where[1:]}: "
                    f"expected {len(header)} fields ({','.join(header)}); got {len(record)}."
                    + (" Write every field, blank for unknown: a short row is not padded." if len(record) < len(header) else "")
                )
            rows.append(record)
            lines.append(start)
    except csv.Error as err:
        raise ValueError(f"{where}, line {reader.line_num}: not a readable CSV ({err}).") from None
    if header is None:
        expected = expected or "a header line such as '" + id_column + ",cat,dog'"
        raise ValueError(f"{where} is empty; expected {expected}.")
    frame = pd.DataFrame(rows, columns=header, dtype=object)
    frame.attrs["csv_lines"] = lines
    return frame


def _check_header(header: list[str], where: str, id_column: str) -> list[str]:
    for j, name in enumerate(header):
        if not name.strip():
            raise ValueError(
                f"{where}: column {j + 1} of the header has an empty name ({','.join(header)}); "
                f"expected {id_column!r} and one name per label column."
            )
    if len(header) == 1 and (";" in header[0] or "\t" in header[0]):
        separator = "semicolons" if ";" in header[0] else "tabs"
        raise ValueError(f"{where}: expected comma-separated columns; the header {header[0]!r} is one column with "
                         f"{separator} in it. Save the table as comma-separated CSV (in Excel: CSV UTF-8).")
    for j, name in enumerate(header):
        if name != name.strip():
            raise ValueError(f"{where}: column {j + 1} of the header, {name!r}, starts or ends with a space; "
                             f"expected a name without one ({name.strip()!r}).")
    seen: dict[str, int] = {}
    for j, name in enumerate(header):
        if name in seen:
            raise ValueError(
                f"{where}: column {name!r} appears twice in the header (columns {seen[name] + 1} and "
                f"{j + 1}); expected unique column names."
            )
        seen[name] = j
    if id_column not in seen:
        raise ValueError(f"{where}: expected an {id_column!r} column (each row's image file name or key); got columns "
                         f"{header}. Name the column that names the rows (in a recipe: --set data.id_column=NAME; "
                         f"in a command: --id-column NAME; in Python: id_column=NAME), or rename it to {id_column!r}.")
    if len(header) < 2:
        raise ValueError(f"{where}: expected {id_column!r} and at least one label column; got only {header}.")
    return header


def _bad_field(field: str, expected: str, got: object) -> ValueError:
    """`<field> must be <expected>; got <repr, cut at 80 characters>.` for a JSON reader's error."""
    shown = repr(got)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return ValueError(f"{field} must be {expected}; got {shown}.")


def _read_sidecar(meta_path: Path) -> dict:
    """The sidecar's fields, each checked for type; raises a ValueError naming the sidecar."""
    where = f"Label sidecar {str(meta_path)!r}"
    try:
        meta = json.loads(meta_path.read_bytes())
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise ValueError(f"{where} is not valid JSON ({err}); expected the file PartialLabels.save writes.") from None

    def fail(key: str, expected: str, got: object) -> ValueError:
        return _bad_field(f"{where}: `{key}`", expected, got)

    if not isinstance(meta, dict):
        raise fail("(top level)", "a JSON object", meta)
    if meta.get("format") != _SIDECAR_FORMAT:
        raise fail("format", repr(_SIDECAR_FORMAT), meta.get("format"))
    version = meta.get("version")
    if isinstance(version, bool) or version not in (1, _SIDECAR_VERSION):
        raise fail("version", f"1 or {_SIDECAR_VERSION}", version)
    digest = meta.get("csv_sha256")
    if version >= 2 and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        raise fail("csv_sha256", "the hex SHA-256 of the CSV", digest)
    n_samples = meta.get("n_samples")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 0:
        raise fail("n_samples", "a count of rows", n_samples)
    names = meta.get("label_names")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise fail("label_names", "a list of strings", names)
    groups = meta.get("exclusive_groups")
    if not isinstance(groups, list) or not all(
        isinstance(g, list) and all(isinstance(name, str) for name in g) for g in groups
    ):
        raise fail("exclusive_groups", "a list of lists of label names", groups)
    cells = meta.get("cells")
    if not isinstance(cells, dict):
        raise fail("cells", "an object with lists `row`, `column`, `source`, `weight`", cells)
    out = {}
    for key, check, expected in (
        ("row", _is_int, "a list of row numbers"),
        ("column", _is_int, "a list of column numbers"),
        ("source", lambda v: isinstance(v, str), f"a list of sources ({', '.join(_SIDECAR_SOURCES)})"),
        ("weight", _is_number, "a list of weights in [0, 1]"),
    ):
        column = cells.get(key)
        if not isinstance(column, list) or not all(check(v) for v in column):
            bad = column if not isinstance(column, list) else next(v for v in column if not check(v))
            raise fail(f"cells.{key}", expected, bad)
        out[key] = column
    lengths = {key: len(column) for key, column in out.items()}
    if len(set(lengths.values())) > 1:
        raise fail("cells", "lists of one length", lengths)
    return {
        "csv_sha256": digest if version >= 2 else None,
        "n_samples": n_samples,
        "label_names": names,
        "exclusive_groups": groups,
        "cells": out,
    }


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _apply_sidecar(table: PartialLabels, meta: dict, path: Path, meta_path: Path) -> PartialLabels:
    """`table` (read from the CSV) with the sidecar's sources, weights and groups, each checked."""
    where = f"Label sidecar {str(meta_path)!r}"
    cells = meta["cells"]
    n, n_labels = table.known.shape
    source = np.array(table.source)
    weight = np.array(table.weight)
    listed = np.zeros_like(table.known)
    for row, col, name, w in zip(cells["row"], cells["column"], cells["source"], cells["weight"]):
        if not (0 <= row < n and 0 <= col < n_labels):
            raise ValueError(
                f"{where} names the cell (row {row}, column {col}), outside the table of {n} rows and "
                f"{n_labels} labels."
            )
        cell = f"{where}, row id {table.ids[row]!r} (row {row}), column {table.label_names[col]!r}"
        if listed[row, col]:
            raise ValueError(f"{cell}: the cell is listed twice; expected each cell once.")
        listed[row, col] = True
        if not table.known[row, col]:
            raise ValueError(f"{cell}: the sidecar gives a source to a cell that is blank (unknown) in {str(path)!r}.")
        if name not in _SIDECAR_SOURCES:
            raise ValueError(
                f"{cell}: expected a source in {list(_SIDECAR_SOURCES)} for a known cell; got {name!r}."
            )
        if not (math.isfinite(w) and 0 <= w <= 1):
            raise ValueError(f"{cell}: expected a weight in [0, 1]; got {w!r}.")
        source[row, col] = Source[name.upper()]
        weight[row, col] = w
    soft = table.known & ~listed & (table.values != 0) & (table.values != 1)
    if soft.any():
        row, col = np.argwhere(soft)[0]
        raise ValueError(
            f"Row id {table.ids[row]!r} (row {row}), column {table.label_names[col]!r} of file "
            f"{str(path)!r}: expected 1, 0 or blank for a human label; got {float(table.values[row, col])!r} "
            f"(its sidecar {str(meta_path)!r} does not list the cell as a filled one)."
        )
    try:
        groups = _check_groups(meta["exclusive_groups"], table.label_names)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    index = {name: j for j, name in enumerate(table.label_names)}
    given = table.known & np.isin(source, [Source.HUMAN, Source.IMPLIED]) & (table.values >= 0.5)
    for group in groups:
        count = given[:, [index[name] for name in group]].sum(axis=1)
        if (count > 1).any():
            row = int(np.argmax(count > 1))
            both = [name for name in group if given[row, index[name]]]
            raise ValueError(
                f"{where}: row id {table.ids[row]!r} (row {row}) has the human labels {both} of {str(path)!r} "
                f"all positive, but the sidecar puts them in one exclusive group {list(group)}, of which "
                "at most one can be positive."
            )
    return table._replace(weight=weight, source=source, exclusive_groups=groups)


# === Binary format (.npz) ===

_NPZ_FORMAT = "ssl-multilabel partial labels (npz)"
_NPZ_VERSION = 1
_ZIP_MAGIC = b"PK\x03\x04"
# Every member of the archive and its dtype (little-endian, so files read the same everywhere):
# header: UTF-8 JSON (format, version, n_samples, n_labels, exclusive_groups as lists of column
# numbers); values / known / weight / source: (n_samples, n_labels) as in memory; id_bytes: the
# ids' UTF-8 bytes concatenated; id_offsets: (n_samples + 1,), id i is
# id_bytes[id_offsets[i]:id_offsets[i + 1]]; label_bytes / label_offsets: the label names alike.
# Strings are not put in the JSON: it would join two lone surrogates "\ud800\udc00" into one
# character on reading, and the round trip must be exact for every Python string.
_NPZ_ARRAYS = {
    "header": np.dtype("|u1"),
    "values": np.dtype("<f4"),
    "known": np.dtype("|b1"),
    "weight": np.dtype("<f4"),
    "source": np.dtype("|u1"),
    "id_bytes": np.dtype("|u1"),
    "id_offsets": np.dtype("<i8"),
    "label_bytes": np.dtype("|u1"),
    "label_offsets": np.dtype("<i8"),
}


def _is_binary(path: Path) -> bool:
    return path.suffix.lower() == ".npz"


def _encode_strings(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes of all strings, concatenated, and the `(n + 1,)` offsets of each in them.

    "surrogatepass" keeps any Python string, also the lone surrogates `os.fsdecode` makes of file
    names that are not UTF-8.
    """
    encoded = [s.encode("utf-8", "surrogatepass") for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def _write_npz(table: PartialLabels, path: Path) -> None:
    id_bytes, id_offsets = _encode_strings(table.ids)
    label_bytes, label_offsets = _encode_strings(table.label_names)
    column = {name: j for j, name in enumerate(table.label_names)}
    header = {
        "format": _NPZ_FORMAT,
        "version": _NPZ_VERSION,
        "n_samples": table.n_samples,
        "n_labels": table.n_labels,
        "exclusive_groups": [[column[name] for name in group] for group in table.exclusive_groups],
    }
    arrays = {
        "header": np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8),
        "values": table.values,
        "known": table.known,
        "weight": table.weight,
        "source": table.source,
        "id_bytes": id_bytes,
        "id_offsets": id_offsets,
        "label_bytes": label_bytes,
        "label_offsets": label_offsets,
    }
    # What np.savez writes (stored members `<name>.npy`), but with a fixed timestamp in each zip
    # entry, so that one table always gives the same bytes (np.savez stamps the current time).
    # Uncompressed: about 10 bytes per cell, written and read at disk speed.
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, array in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with archive.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


def _read_npz(path: Path) -> PartialLabels:
    """The table of a `.npz` written by `save`; any other file is a ValueError naming `path`."""
    where = f"Label table {str(path)!r}"
    expected = "the .npz that PartialLabels.save writes"
    with open(path, "rb") as handle:
        magic = handle.read(len(_ZIP_MAGIC))
    if magic != _ZIP_MAGIC:
        raise ValueError(f"{where} is not a zip archive (it starts with {magic!r}); expected {expected}.")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{where} is not a readable .npz ({err}; truncated?); expected {expected}.") from None
    with archive:
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"{where} is not an .npz archive; expected {expected}.")
        names = sorted(archive.files)
        if names != sorted(_NPZ_ARRAYS):
            raise ValueError(
                f"{where} is not a label table: it holds the arrays {names}; expected {sorted(_NPZ_ARRAYS)} "
                f"({expected})."
            )

        def read(name: str, shape: tuple[int | None, ...]) -> np.ndarray:
            """The member `name`, checked for dtype and shape (None: any length)."""
            dtype = _NPZ_ARRAYS[name]
            if None not in shape:
                # Before reading: a member's own .npy header could claim any shape, and numpy
                # allocates what it claims. A .npy header takes 10 to 65,545 bytes (format 1.0).
                size = archive.zip.getinfo(f"{name}.npy").file_size - math.prod(shape) * dtype.itemsize
                if not 10 <= size <= 65_545:
                    raise ValueError(
                        f"{where}: the array `{name}` takes {size + math.prod(shape) * dtype.itemsize} bytes; "
                        f"expected {dtype.str} of shape {shape} ({expected})."
                    )
            try:
                array = _read_member(path, archive.zip.getinfo(f"{name}.npy"), dtype, shape) if None not in shape else None
                if array is None:
                    array = archive[name]
            except (OSError, ValueError, EOFError, MemoryError, zipfile.BadZipFile, zlib.error) as err:
                raise ValueError(f"{where}: the array `{name}` cannot be read ({err}); the file is damaged.") from None
            fits = len(array.shape) == len(shape) and all(e is None or e == s for e, s in zip(shape, array.shape))
            if array.dtype != dtype or not fits:
                shown = tuple("any" if e is None else e for e in shape)
                raise ValueError(
                    f"{where}: the array `{name}` has dtype {array.dtype.str} and shape {array.shape}; "
                    f"expected {dtype.str} and shape {shown} ({expected})."
                )
            return array

        header = _read_npz_header(read("header", (None,)), where)
        n, n_labels = header["n_samples"], header["n_labels"]
        id_offsets = _check_offsets(read("id_offsets", (n + 1,)), where, "id_offsets")
        id_bytes = read("id_bytes", (int(id_offsets[-1]),))
        label_offsets = _check_offsets(read("label_offsets", (n_labels + 1,)), where, "label_offsets")
        label_bytes = read("label_bytes", (int(label_offsets[-1]),))
        cells = {name: read(name, (n, n_labels)) for name in ("values", "known", "weight", "source")}
    ids = _decode_strings(id_bytes, id_offsets, where, "id of row")
    label_names = _decode_strings(label_bytes, label_offsets, where, "label name of column")
    groups = []
    for group in header["exclusive_groups"]:
        outside = [j for j in group if j >= n_labels]
        if outside:
            raise ValueError(f"{where}: header `exclusive_groups` names column {outside[0]}; the table has {n_labels}.")
        groups.append([label_names[j] for j in group])
    known = cells["known"]
    unknown = ~known
    for name in ("values", "weight", "source"):
        # Bits, not values: -0.0 or NaN in an unknown cell would not survive a round trip.
        # (`source` of known cells is checked by the constructor's `_check_cells`.)
        bits = cells[name].view(np.uint32 if cells[name].dtype.itemsize == 4 else np.uint8)
        stray = bits != 0
        stray &= unknown
        if stray.any():
            row, col = np.argwhere(stray)[0]
            raise ValueError(
                f"{where}: `{name}` is {cells[name][row, col].item()!r} in the unknown cell row {row}, column {col} "
                f"({int(stray.sum())} such cells); expected 0 in every unknown cell ({expected})."
            )
    del unknown, stray
    try:
        return PartialLabels._adopt(cells["values"], known, cells["weight"], cells["source"],
                                    label_names, ids, groups)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _read_member(path: Path, info: zipfile.ZipInfo, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray | None:
    """A stored (uncompressed) `.npy` member read straight into its array, CRC-32 checked; None if
    the member is compressed or not a plain C-order array of `dtype` and `shape` (the caller then
    reads it through numpy, which reports what is wrong).

    numpy's own reader goes through `zipfile` in 16 MiB `bytes` chunks copied into the array: at
    10^6 x 100 that was most of a load's CPU time. Here the bytes go from the file into the array.
    """
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
        if len(local) != 30 or local[:4] != _ZIP_MAGIC:
            raise zipfile.BadZipFile(f"bad local header of {info.filename}")
        name_length, extra_length = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
        handle.seek(info.header_offset + 30 + name_length + extra_length)
        start = handle.tell()
        version = np.lib.format.read_magic(handle)
        if version != (1, 0):
            return None
        found_shape, fortran, found_dtype = np.lib.format.read_array_header_1_0(handle)
        if fortran or found_dtype != dtype or found_shape != shape:
            return None
        array = np.empty(shape, dtype=dtype)
        data = memoryview(array.reshape(-1).view(np.uint8))  # the array's own bytes, writable
        if handle.tell() - start + data.nbytes != info.file_size:
            raise zipfile.BadZipFile(f"{info.filename} holds {info.file_size} bytes, not a {dtype.str} {shape} array")
        crc = zlib.crc32(local[:0])
        header_end = handle.tell()
        handle.seek(start)
        crc = zlib.crc32(handle.read(header_end - start), crc)
        if handle.readinto(data) != data.nbytes:
            raise EOFError(f"{info.filename} ends before its data")
    if zlib.crc32(data, crc) != info.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
    return array


def _read_npz_header(raw: np.ndarray, where: str) -> dict:
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise ValueError(f"{where}: the array `header` is not UTF-8 JSON ({err}).") from None

    def fail(key: str, expected: str, got: object) -> ValueError:
        return _bad_field(f"{where}: header `{key}`", expected, got)

    if not isinstance(header, dict):
        raise fail("(top level)", "a JSON object", header)
    if header.get("format") != _NPZ_FORMAT:
        raise fail("format", repr(_NPZ_FORMAT), header.get("format"))
    if header.get("version") != _NPZ_VERSION or isinstance(header.get("version"), bool):
        raise fail("version", f"{_NPZ_VERSION} (this package reads version {_NPZ_VERSION})", header.get("version"))
    for key in ("n_samples", "n_labels"):
        value = header.get(key)
        if not _is_int(value) or value < 0:
            raise fail(key, "a count", value)
    groups = header.get("exclusive_groups")
    if not isinstance(groups, list) or not all(
        isinstance(g, list) and all(_is_int(j) and j >= 0 for j in g) for g in groups
    ):
        raise fail("exclusive_groups", "a list of lists of column numbers", groups)
    return header


def _check_offsets(offsets: np.ndarray, where: str, name: str) -> np.ndarray:
    if offsets[0] != 0 or (np.diff(offsets) < 0).any():
        raise ValueError(f"{where}: the array `{name}` is not a non-decreasing list of offsets from 0.")
    return offsets


def _decode_strings(data: np.ndarray, offsets: np.ndarray, where: str, what: str) -> list[str]:
    """The strings `_encode_strings` wrote; `what` names one in errors ("id of row")."""
    bounds = offsets.tolist()
    raw = data.tobytes()
    try:
        return [raw[a:b].decode("utf-8", "surrogatepass") for a, b in zip(bounds, bounds[1:])]
    except UnicodeDecodeError:
        i = next(i for i, (a, b) in enumerate(zip(bounds, bounds[1:])) if not _utf8(raw[a:b]))
        raise ValueError(f"{where}: the {what} {i} is not UTF-8 ({raw[bounds[i]:bounds[i + 1]]!r}).") from None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return False
    return True
