"""Fuzzers for the label-table readers (issue 17, acceptance 2).

For CSV text, DataFrames, list columns and sidecar JSON the only allowed outcomes are a correct
table (checked against a reference written here from the documented format, not from the reader)
or a `ValueError` / `FileNotFoundError` whose message names the file, the row or the column. The
round trip `save` -> `load` keeps values, known, weight, source, ids, label names and groups.

`FUZZ_EXAMPLES` sets the number of examples per fuzzer: small in CI, >= 1000 in a dedicated run
(`FUZZ_EXAMPLES=1000 python -m pytest -q tests/test_fuzz_labels.py`, see docs/design.md).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssl_multilabel.labels import PartialLabels, Source

fuzz = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 100)), deadline=None)

# === The reference: the documented cell spellings ===

POSITIVE, NEGATIVE, UNKNOWN = {"1", "1.0", "true"}, {"0", "0.0", "false"}, {"", "?", "nan", "na", "none"}


def reference_cell(cell) -> float | None | str:
    """1.0 / 0.0 / None (unknown), or "bad"."""
    if cell is None or cell is pd.NA:
        return None
    if isinstance(cell, bool):
        return float(cell)
    if isinstance(cell, (int, float)):
        if isinstance(cell, float) and math.isnan(cell):
            return None
        return float(cell) if cell in (0, 1) else "bad"
    if isinstance(cell, str):
        text = cell.strip().lower()
        return 1.0 if text in POSITIVE else 0.0 if text in NEGATIVE else None if text in UNKNOWN else "bad"
    return "bad"


def reference_table(header: list[str], rows: list[list]) -> tuple[list[str], np.ndarray] | None:
    """(ids, `to_array()`) of a wide table with an 'id' column, or None if it must be refused."""
    if any(not h.strip() or h != h.strip() for h in header) or len(set(header)) != len(header) or "id" not in header:
        return None  # a name with a space at either end is a typo ('cat ' for 'cat'): refused
    if len(header) < 2 or any(len(r) != len(header) for r in rows):
        return None
    j_id = header.index("id")
    ids = [r[j_id] for r in rows]
    if any(not isinstance(i, str) or not i.strip() for i in ids) or len(set(ids)) != len(ids):
        return None
    cols = [j for j in range(len(header)) if j != j_id]
    out = np.full((len(rows), len(cols)), -1.0, dtype=np.float32)
    for i, r in enumerate(rows):
        for k, j in enumerate(cols):
            value = reference_cell(r[j])
            if value == "bad":
                return None
            if value is not None:
                out[i, k] = value
    return ids, out


def names_place(message: str, *places: str) -> bool:
    return any(place in message for place in places)


# === CSV text ===

csv_cells = st.one_of(
    st.sampled_from(["1", "0", "", "?", "true", "False", " 1 ", "NaN", "none", "0.5", "2", "-1", "yes", "a,b", 'q"t', "x\ny"]),
    st.text(alphabet='01?ab ,"\n\r.', max_size=4),
)
header_names = st.one_of(st.sampled_from(["id", "cat", "dog", "", " ", "cat "]), st.text(alphabet="ab ,\"\n", max_size=3))


@fuzz
@given(data=st.data(), n_rows=st.integers(0, 5), n_cols=st.integers(1, 4))
def test_fuzz_csv_table(data, n_rows, n_cols):
    header = ["id"] + [data.draw(header_names) for _ in range(n_cols)]
    if data.draw(st.booleans()):
        header = data.draw(st.permutations(header))
    rows = []
    for i in range(n_rows):
        length = len(header) if data.draw(st.integers(0, 9)) else data.draw(st.integers(1, len(header) + 2))
        row = [data.draw(csv_cells) for _ in range(length)]
        if "id" in header and header.index("id") < length and data.draw(st.integers(0, 5)):
            row[header.index("id")] = f"r{i}"
        rows.append(row)
    buffer = io.StringIO()
    # The csv module quotes a field holding "\r" only when "\r" is in the line terminator.
    has_cr = any("\r" in field for record in [header, *rows] for field in record)
    terminator = "\r\n" if has_cr else data.draw(st.sampled_from(["\n", "\r\n"]))
    quoting = data.draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    csv.writer(buffer, lineterminator=terminator, quoting=quoting).writerows([header, *rows])
    expected = reference_table(header, rows)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.csv"
        path.write_text(buffer.getvalue(), encoding="utf-8")
        if expected is None:
            with pytest.raises(ValueError) as err:
                PartialLabels.load(path)
            assert str(path) in str(err.value), str(err.value)
            return
        table = PartialLabels.load(path)
    ids, values = expected
    assert list(table.ids) == ids
    assert list(table.label_names) == [h for h in header if h != "id"]
    np.testing.assert_array_equal(table.to_array(), values)
    assert np.all(table.source[table.known] == Source.HUMAN) and np.all(table.weight[table.known] == 1)


@fuzz
@given(content=st.one_of(st.binary(max_size=60), st.text(alphabet='id,ca\n\r"01? \x00', max_size=60)))
def test_fuzz_csv_arbitrary_bytes(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.csv"
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        try:
            table = PartialLabels.load(path)
        except ValueError as err:
            assert str(path) in str(err), str(err)
            return
    # Accepted: then it is a table that the reference reader agrees with.
    records = [r for r in csv.reader(io.StringIO(content if isinstance(content, str) else content.decode("utf-8-sig"), newline="")) if r]
    if isinstance(content, str) and content.startswith("\ufeff"):
        records[0][0] = records[0][0][1:]
    expected = reference_table(records[0], records[1:])
    assert expected is not None
    assert list(table.ids) == expected[0]
    np.testing.assert_array_equal(table.to_array(), expected[1])


# === DataFrame ===

frame_cells = st.one_of(
    st.sampled_from([1, 0, 1.0, 0.0, True, False, None, np.nan, pd.NA, "1", "0", "?", "", " true ",
                     2, -1, 0.5, "yes", "x", ["a"], {"a": 1}]),
    st.text(max_size=3),
)
frame_columns = st.one_of(st.sampled_from(["id", "cat", "dog", "", "1", 1, 0]), st.text(alphabet="ab ", max_size=2))


@fuzz
@given(data=st.data(), n_rows=st.integers(0, 5), n_cols=st.integers(1, 4))
def test_fuzz_from_dataframe(data, n_rows, n_cols):
    columns = ["id"] + [data.draw(frame_columns) for _ in range(n_cols)]
    rows = [[data.draw(st.sampled_from([f"r{i}", f"r{i}", "", None, "r0"]))] + [data.draw(frame_cells) for _ in range(n_cols)]
            for i in range(n_rows)]
    df = pd.DataFrame(rows, columns=columns, dtype=object) if rows else pd.DataFrame(columns=columns, dtype=object)
    try:
        table = PartialLabels.from_dataframe(df, "id")
    except ValueError as err:
        message = str(err)
        assert names_place(message, "Row", "Column", "column", "label_columns"), message
        assert _frame_reference(columns, rows) is None, f"refused a valid frame: {message}"
        return
    expected = _frame_reference(columns, rows)
    assert expected is not None, "accepted a frame the reference refuses"
    assert list(table.ids) == expected[0]
    np.testing.assert_array_equal(table.to_array(), expected[1])


def _frame_reference(columns, rows):
    names = [str(c) for c in columns]
    if columns.count("id") != 1 or len({(type(c), c) for c in columns}) != len(columns) or len(set(names)) != len(names):
        return None
    rows = [[r[0] if isinstance(r[0], str) else "" if r[0] is None else str(r[0])] + r[1:] for r in rows]
    return reference_table(names, rows)


# === List columns ===

list_items = st.one_of(st.sampled_from(["cat", "dog", " cat ", "", 3, None, 1.5, ["cat"], True]), st.text(alphabet="cd |", max_size=3))
list_cells = st.one_of(
    st.lists(list_items, max_size=3),
    st.sampled_from(["cat", "dog|cat", "cat||", "", None, np.nan, pd.NA, 5, "bird"]),
    st.text(alphabet="cd|og", max_size=6),
)


@fuzz
@given(data=st.data(), n_rows=st.integers(0, 4), closed=st.booleans(), named=st.booleans())
def test_fuzz_from_label_lists(data, n_rows, closed, named):
    pos = [data.draw(list_cells) for _ in range(n_rows)]
    neg = [data.draw(list_cells) for _ in range(n_rows)]
    df = pd.DataFrame({"id": [f"r{i}" for i in range(n_rows)], "pos": pos, "neg": neg}, dtype=object)
    label_names = ["cat", "dog", "3"] if named else None
    try:
        table = PartialLabels.from_label_lists(df, "id", "pos", "neg", label_names=label_names,
                                               missing="negative" if closed else "unknown")
    except ValueError as err:
        message = str(err)
        assert names_place(message, "Row id", "label_names"), message
        assert _lists_reference(pos, neg, label_names, closed) is None, f"refused valid lists: {message}"
        return
    expected = _lists_reference(pos, neg, label_names, closed)
    assert expected is not None, "accepted lists the reference refuses"
    assert list(table.label_names) == expected[0]
    np.testing.assert_array_equal(table.to_array(), expected[1])


def _lists_reference(pos, neg, label_names, closed):
    def names(cell):
        if isinstance(cell, str):
            return [p.strip() for p in cell.split("|") if p.strip()]
        if isinstance(cell, list):
            out = []
            for item in cell:
                if isinstance(item, bool) or not isinstance(item, (str, int)) or not str(item).strip():
                    return None
                out.append(str(item).strip())
            return out
        if cell is None or cell is pd.NA or (isinstance(cell, float) and math.isnan(cell)):
            return []
        return None

    pos, neg = [names(c) for c in pos], [names(c) for c in neg]
    if any(p is None for p in pos + neg):
        return None
    labels = sorted({n for row in pos + neg for n in row}) if label_names is None else list(label_names)
    if not labels:
        return None
    out = np.full((len(pos), len(labels)), 0.0 if closed else -1.0, dtype=np.float32)
    for i, (p, n) in enumerate(zip(pos, neg)):
        if set(p) & set(n) or not set(p + n) <= set(labels):
            return None
        for name in n:
            out[i, labels.index(name)] = 0.0
        for name in p:
            out[i, labels.index(name)] = 1.0
    return labels, out


# === Round trip ===

label_text = st.text(min_size=1, max_size=5).filter(lambda s: s.strip() == s and s and s != "id")  # no space at an end


@st.composite
def tables(draw):
    n = draw(st.integers(0, 5))
    names = draw(st.lists(label_text, min_size=1, max_size=4, unique=True))
    ids = draw(st.lists(st.text(min_size=1, max_size=5).filter(str.strip), min_size=n, max_size=n, unique=True))
    shape = (n, len(names))
    cells = st.lists(st.lists(st.booleans(), min_size=shape[1], max_size=shape[1]), min_size=n, max_size=n)
    known = np.array(draw(cells), dtype=bool).reshape(shape)
    unit = st.floats(0, 1, width=32)
    grid = lambda element: np.array(draw(st.lists(st.lists(element, min_size=shape[1], max_size=shape[1]), min_size=n, max_size=n))).reshape(shape)
    values = np.where(grid(st.booleans()), grid(unit), grid(st.sampled_from([0.0, 1.0])))
    source = grid(st.sampled_from([s for s in Source if s])).astype(np.uint8)
    weight = np.where(grid(st.booleans()), 1.0, grid(unit))
    given = known & np.isin(source, [Source.HUMAN, Source.IMPLIED]) & (values >= 0.5)
    groups = []
    for group in draw(st.lists(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True), max_size=2)):
        cols = [names.index(name) for name in group]
        if n == 0 or given[:, cols].sum(axis=1).max() <= 1:  # no conflict, as `load` requires
            groups.append(group)
    return PartialLabels(values=values, known=known, weight=weight, source=source, label_names=names, ids=ids,
                         exclusive_groups=groups)


@fuzz
@given(table=tables())
def test_fuzz_save_load_round_trip(table):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.csv"
        table.save(path)
        plain = (table.source == Source.HUMAN) & (table.weight == 1) & np.isin(table.values, (0, 1))
        sidecar = bool((table.known & ~plain).any() or table.exclusive_groups)  # else the CSV holds it all
        loaded = PartialLabels.load(path, require_sidecar=sidecar)
        assert sorted(p.name for p in Path(folder).iterdir()) == ["t.csv"] + ["t.csv.meta.json"] * sidecar
    for name in ("values", "known", "weight", "source"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(table, name), err_msg=name)
    assert loaded.ids == table.ids and loaded.label_names == table.label_names
    assert loaded.exclusive_groups == table.exclusive_groups


# === Sidecar JSON ===

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 9), st.floats(allow_nan=True), st.text(max_size=4),
              st.sampled_from(["human", "implied", "propagated", "teacher", "unknown", "a"])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)


# Values close to valid ones, per list of the sidecar's `cells`.
NEAR_MISSES = {
    "row": [-1, 0, 1, 2, 3, 99, 1.0, "1", True],
    "column": [-1, 0, 1, 2, 3, 2.0, "0", False],
    "source": ["unknown", "human", "implied", "propagated", "teacher", "Teacher", "", 3, None],
    "weight": [5, -0.1, float("nan"), float("inf"), 1.5, 0.0, 0.5, 1, "0.5", True, None],
}


def _fixed_table() -> PartialLabels:
    return PartialLabels.from_array(
        [[1, -1, -1], [-1, 0, -1], [0, -1, 1]], label_names=["a", "b", "c"], ids=["x", "y", "z"],
        exclusive_groups=[["b", "c"]],
    ).fill(np.array([[-1, 1, -1], [0.25, -1, -1], [-1, -1, -1]]), confidence=0.4, source="teacher")


@fuzz
@given(data=st.data())
def test_fuzz_sidecar_json(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.csv"
        _fixed_table().save(path)
        meta_path = path.with_name("t.csv.meta.json")
        meta = json.loads(meta_path.read_text())
        kind = data.draw(st.sampled_from(["key", "cell", "cell", "cell", "drop", "text"]))
        if kind == "key":
            meta[data.draw(st.sampled_from(sorted(meta)))] = data.draw(json_values)
        elif kind == "drop":
            del meta[data.draw(st.sampled_from(sorted(meta)))]
        elif kind == "cell":
            for _ in range(data.draw(st.integers(1, 3))):
                key = data.draw(st.sampled_from(sorted(NEAR_MISSES)))
                column = meta["cells"][key]
                near = st.sampled_from(NEAR_MISSES[key])
                column[data.draw(st.integers(0, len(column) - 1))] = data.draw(st.one_of(near, near, json_values))
        text = data.draw(st.text(max_size=30)) if kind == "text" else json.dumps(meta)
        meta_path.write_text(text)
        try:
            loaded = PartialLabels.load(path)
        except ValueError as err:
            assert str(meta_path) in str(err), str(err)
            return
    # Accepted: the CSV's cells, and exactly the sources and weights the sidecar lists.
    table = _fixed_table()
    np.testing.assert_array_equal(loaded.values, table.values)
    np.testing.assert_array_equal(loaded.known, table.known)
    expected_source = np.where(table.known, Source.HUMAN, Source.UNKNOWN)
    expected_weight = table.known.astype(np.float32)
    cells = meta["cells"]
    for row, col, source, weight in zip(cells["row"], cells["column"], cells["source"], cells["weight"]):
        expected_source[row, col] = Source[source.upper()]
        expected_weight[row, col] = weight
    np.testing.assert_array_equal(loaded.source, expected_source)
    np.testing.assert_array_equal(loaded.weight, expected_weight)
    assert loaded.exclusive_groups == tuple(tuple(g) for g in meta["exclusive_groups"])
