"""MULAN multi-label data sets (scene, yeast, emotions, ...) from their ARFF and XML files.

A MULAN data set ``NAME`` is three files: ``NAME-train.arff``, ``NAME-test.arff`` (the
official split) and ``NAME.xml``, which names the label attributes. Label attributes are
found by name (in the MULAN files they are the last attributes); every other attribute is a
feature. The ARFF reader here is small and numpy-only: dense and sparse (``{index value,
...}``) data lines, numeric and nominal attributes, ``?`` for a missing value (NaN in a
feature, an unknown cell in a label), ``%`` comments. String and date attributes are not
supported (no MULAN data set uses them).
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssl_multilabel.labels import PartialLabels

logger = logging.getLogger(__name__)

__all__ = ["mulan"]

_SPLITS = ("train", "test")
_NUMERIC_TYPES = {"numeric", "real", "integer"}


@dataclass(frozen=True)
class _Attribute:
    name: str
    # None for numeric attributes; the category strings for nominal ones.
    categories: tuple[str, ...] | None = None
    # Value of each category: the number itself when every category is numeric (the {0,1} of
    # MULAN labels, so a label declared {1,0} still reads 1 as positive), else its index.
    category_values: tuple[float, ...] = ()


def _unquote(token: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return token[1:-1]
    return token


_ATTRIBUTE_RE = re.compile(r"""@attribute\s+('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+)\s+(.+)$""", re.IGNORECASE)


def _parse_attribute(line: str, path: Path, line_no: int) -> _Attribute:
    match = _ATTRIBUTE_RE.match(line)
    if not match:
        raise ValueError(f"{str(path)!r} line {line_no}: cannot parse attribute declaration {line!r}.")
    name, kind = _unquote(match.group(1)), match.group(2).strip()
    if kind.startswith("{"):
        if not kind.endswith("}"):
            raise ValueError(f"{str(path)!r} line {line_no}: nominal attribute {name!r} lacks a closing brace.")
        categories = tuple(_unquote(c) for c in kind[1:-1].split(",") if c.strip())
        try:
            values = tuple(float(c) for c in categories)
        except ValueError:
            values = tuple(float(i) for i in range(len(categories)))
        return _Attribute(name, categories, values)
    if kind.lower() in _NUMERIC_TYPES:
        return _Attribute(name, None)
    raise ValueError(
        f"{str(path)!r} line {line_no}: attribute {name!r} has type {kind!r}; expected numeric, real, integer or "
        "a nominal {a,b,...} list."
    )


def _convert(token: str, attribute: _Attribute, path: Path, line_no: int) -> float:
    """One ARFF value as a float: the number, the nominal category value, or NaN for ``?``."""
    token = _unquote(token)
    if token == "?":
        return np.nan
    if attribute.categories is None:
        try:
            return float(token)
        except ValueError:
            raise ValueError(
                f"{str(path)!r} line {line_no}: attribute {attribute.name!r} expects a number; received {token!r}."
            ) from None
    try:
        return attribute.category_values[attribute.categories.index(token)]
    except ValueError:
        raise ValueError(
            f"{str(path)!r} line {line_no}: attribute {attribute.name!r} expects one of {list(attribute.categories)}; "
            f"received {token!r}."
        ) from None


def _read_arff(path: Path) -> tuple[list[_Attribute], np.ndarray]:
    """Parse an ARFF file into its attributes and a float64 ``(n, n_attributes)`` array."""
    attributes: list[_Attribute] = []
    rows: list[np.ndarray] = []
    in_data = False
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith("%"):
                continue
            if not in_data:
                lower = line.lower()
                if lower.startswith("@attribute"):
                    attributes.append(_parse_attribute(line, path, line_no))
                elif lower.startswith("@data"):
                    in_data = True
                    if not attributes:
                        raise ValueError(f"{str(path)!r}: @data before any @attribute.")
                elif not lower.startswith("@relation"):
                    raise ValueError(f"{str(path)!r} line {line_no}: unexpected header line {line!r}.")
                continue
            rows.append(_parse_data_line(line, attributes, path, line_no))
    if not in_data:
        raise ValueError(f"{str(path)!r} has no @data section; is it an ARFF file?")
    data = np.vstack(rows) if rows else np.zeros((0, len(attributes)))
    return attributes, data


def _parse_data_line(line: str, attributes: list[_Attribute], path: Path, line_no: int) -> np.ndarray:
    row = np.zeros(len(attributes), dtype=np.float64)
    if line.startswith("{"):
        # Sparse line: "{index value, ...}"; omitted attributes are 0 (nominal: the first category).
        for i, attribute in enumerate(attributes):
            if attribute.categories:
                row[i] = attribute.category_values[0]
        if not line.endswith("}"):
            raise ValueError(f"{str(path)!r} line {line_no}: sparse data line lacks a closing brace.")
        body = line[1:-1].strip()
        for entry in body.split(",") if body else []:
            parts = entry.split(None, 1)
            if len(parts) != 2:
                raise ValueError(f"{str(path)!r} line {line_no}: sparse entry {entry.strip()!r} is not 'index value'.")
            try:
                index = int(parts[0])
            except ValueError:
                raise ValueError(f"{str(path)!r} line {line_no}: sparse index {parts[0]!r} is not an int.") from None
            if not 0 <= index < len(attributes):
                raise ValueError(
                    f"{str(path)!r} line {line_no}: sparse index {index} outside 0..{len(attributes) - 1}."
                )
            row[index] = _convert(parts[1], attributes[index], path, line_no)
        return row
    tokens = line.split(",")
    if len(tokens) != len(attributes):
        raise ValueError(
            f"{str(path)!r} line {line_no}: {len(tokens)} values; expected {len(attributes)} (one per attribute)."
        )
    if all(a.categories is None for a in attributes) and "?" not in line and "'" not in line and '"' not in line:
        # Fast path for all-numeric lines.
        try:
            return np.asarray(tokens, dtype=np.float64)
        except ValueError:
            pass  # fall through for a per-value error message
    for i, (token, attribute) in enumerate(zip(tokens, attributes)):
        row[i] = _convert(token, attribute, path, line_no)
    return row


def _read_label_names(path: Path) -> list[str]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"MULAN label file {str(path)!r} is not valid XML: {exc}") from exc
    # Tags carry the MULAN namespace ("{http://mulan.sourceforge.net/labels}label"); match the local name.
    names = [el.get("name") for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "label"]
    if not names or any(name is None for name in names):
        raise ValueError(f"MULAN label file {str(path)!r} has no <label name=...> elements.")
    return names  # type: ignore[return-value]


def _locate(data_dir: Path, name: str, filename: str) -> Path:
    for candidate in (data_dir / name / filename, data_dir / filename):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"MULAN file {filename!r} not found in {str(data_dir / name)!r} or {str(data_dir)!r}. Expected "
        f"{name}-train.arff, {name}-test.arff and {name}.xml in data_dir/{name}/ (or in data_dir)."
    )


def mulan(name: str, split: str = "train", data_dir: str | Path | None = None) -> tuple[np.ndarray, PartialLabels]:
    """Load one official split of a MULAN data set.

    Args:
        name: data set name, e.g. ``"scene"``, ``"yeast"``, ``"emotions"``; the files are
            ``{name}-{split}.arff`` and ``{name}.xml``.
        split: ``"train"`` or ``"test"``.
        data_dir: folder holding a ``{name}/`` subfolder with the files (or the files
            themselves). Required.

    Returns:
        ``(X, labels)``: ``X`` float32 ``(n, d)`` features (NaN where the ARFF has ``?``;
        nominal features as their value when numeric, else as category indices), ``labels`` a :class:`PartialLabels` with the
        label names of the XML, in the order of the ARFF columns, ids ``"{name}-{split}-{i}"``;
        fully known unless a label value is ``?``.

    Raises:
        ValueError: bad ``split``, missing ``data_dir``, malformed files, or XML labels absent
            from the ARFF.
        FileNotFoundError: a file is missing.

    Example:
        >>> X, labels = mulan("yeast", "train", data_dir="../shared/data/mulan")  # doctest: +SKIP
        >>> X.shape, labels.n_labels  # doctest: +SKIP
        ((1500, 103), 14)
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Argument `name` must be a data set name such as 'scene'. Received: name={name!r}")
    if split not in _SPLITS:
        raise ValueError(f"Invalid value for argument `split`. Expected one of {list(_SPLITS)}. Received: split={split!r}")
    if data_dir is None:
        raise ValueError(
            f"Argument `data_dir` is required: pass the folder holding {name}/{name}-{split}.arff and "
            f"{name}/{name}.xml (MULAN format)."
        )
    folder = Path(data_dir)
    arff_path = _locate(folder, name, f"{name}-{split}.arff")
    xml_path = _locate(folder, name, f"{name}.xml")

    label_names = _read_label_names(xml_path)
    attributes, data = _read_arff(arff_path)
    column_of = {a.name: i for i, a in enumerate(attributes)}
    missing = [label for label in label_names if label not in column_of]
    if missing:
        raise ValueError(f"Labels {missing} named in {str(xml_path)!r} are not attributes of {str(arff_path)!r}.")
    label_set = set(label_names)
    # ARFF column order, so that e.g. yeast reads Class1..Class14 even though its XML lists them shuffled.
    label_columns = [i for i, a in enumerate(attributes) if a.name in label_set]
    feature_columns = [i for i, a in enumerate(attributes) if a.name not in label_set]

    y = data[:, label_columns]
    bad = np.isfinite(y) & (y != 0) & (y != 1)
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            f"{str(arff_path)!r} data row {row}: label {attributes[label_columns[col]].name!r} is {y[row, col]!r}; "
            "expected 0, 1 or ?."
        )
    y = np.where(np.isnan(y), -1.0, y).astype(np.float32)
    X = data[:, feature_columns].astype(np.float32)
    labels = PartialLabels.from_array(
        y,
        label_names=tuple(attributes[i].name for i in label_columns),
        ids=tuple(f"{name}-{split}-{i}" for i in range(len(y))),
    )
    logger.info("Loaded MULAN %s/%s: %d samples, %d features, %d labels.", name, split, *X.shape, y.shape[1])
    return X, labels
