"""PartialLabels: constructors against hand-built arrays, filling, files, and fuzzed bad input."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ssl_multilabel.labels import PartialLabels, Source

U = -1.0  # unknown, for readability of the hand-built arrays


# === Constructors ===


def test_from_dataframe_accepts_every_spelling():
    df = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "cat": [1, 0, None, np.nan],
            "dog": ["1", "0", "", "?"],
            "emu": [True, False, "true", " 0 "],
            "fox": [1.0, 0.0, "1.0", "NaN"],
        }
    )
    labels = PartialLabels.from_dataframe(df, "id", ["cat", "dog", "emu", "fox"])
    expected = np.array(
        [[1, 1, 1, 1], [0, 0, 0, 0], [U, U, 1, 1], [U, U, 0, U]], dtype=np.float32
    )
    np.testing.assert_array_equal(labels.to_array(), expected)
    np.testing.assert_array_equal(labels.known, expected != U)
    np.testing.assert_array_equal(labels.weight, (expected != U).astype(np.float32))
    assert (labels.source[expected != U] == Source.HUMAN).all()
    assert (labels.source[expected == U] == Source.UNKNOWN).all()
    assert labels.ids == ("a", "b", "c", "d")
    assert labels.label_names == ("cat", "dog", "emu", "fox")


def test_from_dataframe_label_columns_default_to_all_but_id():
    df = pd.DataFrame({"x": [1, 0], "id": [7, 8], "y": [None, 1]})
    labels = PartialLabels.from_dataframe(df, "id")
    assert labels.label_names == ("x", "y")
    assert labels.ids == ("7", "8")
    np.testing.assert_array_equal(labels.to_array(), [[1, U], [0, 1]])


def test_from_dataframe_bad_cell_names_row_column_and_value():
    df = pd.DataFrame({"id": ["a", "b"], "cat": [1, "yes"]})
    with pytest.raises(ValueError, match=r"Row id 'b'.*column 'cat'.*'yes'"):
        PartialLabels.from_dataframe(df, "id", ["cat"])


@pytest.mark.parametrize(
    "df, columns, message",
    [
        (pd.DataFrame({"id": ["a", "a"], "x": [1, 0]}), ["x"], r"Duplicate ids.*'a'"),
        (pd.DataFrame({"id": ["a"]}), [], r"empty"),
        (pd.DataFrame({"id": ["a"], "x": [1]}), ["x", "x"], r"Duplicate label names.*'x'"),
        (pd.DataFrame({"id": ["a"], "x": [1]}), ["x", "y"], r"Missing column.*'y'"),
        (pd.DataFrame({"id": ["a", None], "x": [1, 0]}), ["x"], r"Row 1, column 'id'.*empty"),
    ],
)
def test_from_dataframe_structural_errors(df, columns, message):
    with pytest.raises(ValueError, match=message):
        PartialLabels.from_dataframe(df, "id", columns)


def test_from_label_lists_partial_and_closed_world():
    df = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "pos": [["cat"], "dog|emu", None],
            "neg": [["dog"], [], "cat"],
        }
    )
    partial = PartialLabels.from_label_lists(df, "id", "pos", "neg")
    assert partial.label_names == ("cat", "dog", "emu")
    np.testing.assert_array_equal(partial.to_array(), [[1, 0, U], [U, 1, 1], [0, U, U]])

    closed = PartialLabels.from_label_lists(df, "id", "pos", missing="negative")
    np.testing.assert_array_equal(closed.to_array(), [[1, 0, 0], [0, 1, 1], [0, 0, 0]])


def test_from_label_lists_errors():
    df = pd.DataFrame({"id": ["a"], "pos": [["cat"]], "neg": [["cat"]]})
    with pytest.raises(ValueError, match=r"Row id 'a'.*\['cat'\].*both"):
        PartialLabels.from_label_lists(df, "id", "pos", "neg")
    with pytest.raises(ValueError, match=r"Row id 'a', column 'pos'.*unknown label 'cat'"):
        PartialLabels.from_label_lists(df, "id", "pos", label_names=["dog"])
    with pytest.raises(ValueError, match=r"Invalid value for argument `missing`.*missing='maybe'"):
        PartialLabels.from_label_lists(df, "id", "pos", missing="maybe")


def test_from_filenames_regex_groups_are_exclusive():
    paths = ["faces/25_0_2_x.jpg", "faces/31_1_0_y.jpg", "faces/40_1_2_z.jpg"]
    labels = PartialLabels.from_filenames(paths, r"^\d+_(?P<gender>\d)_(?P<race>\d)_")
    assert labels.label_names == ("gender=0", "gender=1", "race=0", "race=2")
    np.testing.assert_array_equal(
        labels.to_array(), [[1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 0, 1]]
    )
    # the matched value is human, the other values of the group are implied negatives
    assert labels.source[0, 0] == Source.HUMAN and labels.source[0, 1] == Source.IMPLIED
    assert labels.ids == tuple(paths)


def test_from_filenames_callable_and_no_match():
    parse = lambda name: {"cat": 1} if name.startswith("cat") else {"cat": 0, "dog": None}  # noqa: E731
    labels = PartialLabels.from_filenames(["cat1.png", "dog2.png"], parse, label_names=["cat", "dog"])
    np.testing.assert_array_equal(labels.to_array(), [[1, U], [0, U]])
    with pytest.raises(ValueError, match=r"File 'x/bad.png'.*does not match"):
        PartialLabels.from_filenames(["x/bad.png"], r"(?P<a>\d+)_")


def test_from_array_round_trip_and_errors():
    Y = np.array([[1, U, 0.25], [0, 1, U]], dtype=np.float32)
    labels = PartialLabels.from_array(Y, label_names=["a", "b", "c"], ids=["r0", "r1"])
    np.testing.assert_array_equal(labels.to_array(), Y)
    np.testing.assert_array_equal(labels.known, Y != U)
    nan_unknown = PartialLabels.from_array([[np.nan, 1.0]])
    np.testing.assert_array_equal(nan_unknown.to_array(), [[U, 1]])
    with pytest.raises(ValueError, match=r"row 1, column 0.*got 2.0"):
        PartialLabels.from_array([[1, 0], [2, 0]])
    with pytest.raises(ValueError, match=r"2-D"):
        PartialLabels.from_array([1, 0])


def test_exclusive_groups_imply_negatives_and_reject_two_positives():
    df = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "shirt": [1, None, None],
            "pants": [None, 0, None],
            "skirt": [None, None, None],
            "red": [None, 1, None],
        }
    )
    labels = PartialLabels.from_dataframe(df, "id", exclusive_groups=[["shirt", "pants", "skirt"]])
    np.testing.assert_array_equal(
        labels.to_array(), [[1, 0, 0, U], [U, 0, U, 1], [U, U, U, U]]
    )
    expected_source = np.array(
        [[Source.HUMAN, Source.IMPLIED, Source.IMPLIED, 0], [0, Source.HUMAN, 0, Source.HUMAN], [0, 0, 0, 0]]
    )
    np.testing.assert_array_equal(labels.source, expected_source)

    df.loc[2, ["shirt", "skirt"]] = 1
    with pytest.raises(ValueError, match=r"Row id 'c'.*\['shirt', 'skirt'\].*exclusive group"):
        PartialLabels.from_dataframe(df, "id", exclusive_groups=[["shirt", "pants", "skirt"]])
    with pytest.raises(ValueError, match=r"not in the table: \['hat'\]"):
        PartialLabels.from_dataframe(df, "id", exclusive_groups=[["shirt", "hat"]])


def test_summary_counts_match_numpy():
    Y = np.array([[1, U], [0, U], [1, 1], [U, 0]], dtype=np.float32)
    labels = PartialLabels.from_array(Y, label_names=["a", "b"])
    summary = labels.summary()
    assert summary.loc["a", "positives"] == 2 and summary.loc["a", "negatives"] == 1
    assert summary.loc["a", "unknown"] == 1 and summary.loc["b", "unknown"] == 2
    np.testing.assert_allclose(summary["known_fraction"], (Y != U).mean(axis=0))
    np.testing.assert_array_equal(summary["human"], (Y != U).sum(axis=0))


def test_subset_by_index_and_mask():
    labels = PartialLabels.from_array([[1, U], [0, 1], [U, 0]], ids=["a", "b", "c"])
    picked = labels.subset([2, 0])
    assert picked.ids == ("c", "a")
    np.testing.assert_array_equal(picked.to_array(), [[U, 0], [1, U]])
    masked = labels.subset(np.array([False, True, True]))
    assert masked.ids == ("b", "c")


def test_arrays_are_read_only():
    labels = PartialLabels.from_array([[1, U]])
    with pytest.raises(ValueError):
        labels.values[0, 0] = 0


# === Filling ===


def test_fill_changes_only_unknown_cells():
    labels = PartialLabels.from_array([[1, U, U], [U, 0, U]])
    filled = labels.fill(
        np.array([[0.0, 0.9, -1], [0.2, 1.0, np.nan]]),
        confidence=np.array([[1.0, 0.8, 0.5], [0.6, 1.0, 1.0]]),
        source="teacher",
    )
    np.testing.assert_allclose(filled.to_array(), [[1, 0.9, U], [0.2, 0, U]])
    np.testing.assert_allclose(filled.weight, [[1, 0.8, 0], [0.6, 1, 0]])
    np.testing.assert_array_equal(
        filled.source, [[Source.HUMAN, Source.TEACHER, 0], [Source.TEACHER, Source.HUMAN, 0]]
    )
    np.testing.assert_array_equal(labels.to_array(), [[1, U, U], [U, 0, U]])  # unchanged


def test_fill_rejects_bad_values_and_sources():
    labels = PartialLabels.from_array([[U, U]])
    with pytest.raises(ValueError, match=r"row 0, column 1.*got 1.5"):
        labels.fill(np.array([[0.5, 1.5]]))
    with pytest.raises(ValueError, match=r"`confidence` row 0, column 0"):
        labels.fill(np.array([[0.5, 0.5]]), confidence=np.array([[2.0, 1.0]]))
    with pytest.raises(ValueError, match=r"Invalid value for argument `source`.*'oracle'"):
        labels.fill(np.array([[0.5, 0.5]]), source="oracle")
    for source in ("human", Source.HUMAN, "unknown"):  # filled cells are never a person's
        with pytest.raises(ValueError, match=r"filled cells are machine cells, 'propagated', 'teacher' or 'implied'; "
                                             rf"got '{Source[str(getattr(source, 'name', source)).upper()].name.lower()}'"):
            labels.fill(np.array([[0.5, 0.5]]), source=source)
    with pytest.raises(ValueError, match=r"`confidence` has shape \(3,\); expected a number or the shape of `values`, \(1, 2\)"):
        labels.fill(np.array([[0.5, 0.5]]), confidence=np.ones(3))
    assert labels.fill(np.array([[0.0, -1]]), source="implied").source.tolist() == [[Source.IMPLIED, Source.UNKNOWN]]


cell_tables = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 8), st.integers(1, 5)),
    elements=st.sampled_from([-1.0, 0.0, 1.0]),
)


@given(
    Y=cell_tables,
    data=st.data(),
)
def test_fill_never_changes_known_cells(Y, data):
    labels = PartialLabels.from_array(Y)
    fill_values = data.draw(
        hnp.arrays(np.float64, Y.shape, elements=st.one_of(st.just(-1.0), st.floats(0, 1)))
    )
    confidence = data.draw(hnp.arrays(np.float64, Y.shape, elements=st.floats(0, 1)))
    filled = labels.fill(fill_values, confidence, source=data.draw(st.sampled_from(["propagated", "teacher"])))
    known = Y != -1
    np.testing.assert_array_equal(filled.values[known], labels.values[known])
    np.testing.assert_array_equal(filled.source[known], labels.source[known])
    np.testing.assert_array_equal(filled.weight[known], labels.weight[known])
    newly = ~known & (fill_values != -1)
    np.testing.assert_array_equal(filled.known, known | newly)
    np.testing.assert_allclose(filled.values[newly], fill_values[newly].astype(np.float32))


# === Files ===


def test_save_load_round_trip_with_provenance(tmp_path):
    labels = PartialLabels.from_array(
        [[1, U, U], [U, 0, U]], label_names=["a", "b", "c"], ids=["x", "y"],
        exclusive_groups=[["b", "c"]],
    ).fill(np.array([[U, 0.7, U], [0.123456789, U, U]]), confidence=0.4, source="propagated")
    path = tmp_path / "labels.csv"
    labels.save(path)
    loaded = PartialLabels.load(path)
    for name in ("values", "known", "weight", "source"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(labels, name))
    assert loaded.ids == labels.ids and loaded.label_names == labels.label_names
    assert loaded.exclusive_groups == (("b", "c"),)
    # the CSV itself is the readable wide table with blanks for unknown
    lines = path.read_text().splitlines()
    assert lines[0] == "id,a,b,c" and lines[1] == "x,1,0.699999988,"
    assert not list(tmp_path.glob("*.tmp"))


def test_load_plain_csv_without_sidecar(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("id,cat,dog\nimg1,1,\nimg2,?,0\n")
    labels = PartialLabels.load(path)
    np.testing.assert_array_equal(labels.to_array(), [[1, U], [U, 0]])
    path.write_text("id,cat,dog\nimg1,1,\nimg2,0.5,0\n")
    with pytest.raises(ValueError, match=r"Row id 'img2'.*column 'cat'.*'0.5'"):
        PartialLabels.load(path)


def test_load_rejects_mismatched_sidecar(tmp_path):
    labels = PartialLabels.from_array([[1, 0]], label_names=["a", "b"], exclusive_groups=[["a", "b"]])  # a sidecar
    path = tmp_path / "t.csv"
    labels.save(path)
    meta = json.loads((tmp_path / "t.csv.meta.json").read_text())
    meta["label_names"] = ["a", "z"]
    (tmp_path / "t.csv.meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"sidecar.*describes 1 rows and labels \['a', 'z'\]"):
        PartialLabels.load(path)
    with pytest.raises(FileNotFoundError, match=r"missing.csv"):
        PartialLabels.load(tmp_path / "missing.csv")


# === Fuzzing: bad cells may only ever raise a ValueError naming the row and the column ===

good_cells = st.sampled_from([1, 0, "1", "0", "", "?", None, np.nan, True, False, 1.0, 0.0])
bad_cells = st.one_of(
    st.sampled_from(["yes", "2", "-1", "0.5", "x", " 11", 2, -1, 0.5]),
    st.text(min_size=1, max_size=4).filter(lambda s: not _is_good(s)),
)


@given(data=st.data(), n_rows=st.integers(1, 6), n_cols=st.integers(1, 4))
def test_fuzz_from_dataframe_errors_name_row_and_column(data, n_rows, n_cols):
    columns = [f"c{j}" for j in range(n_cols)]
    cells = [[data.draw(st.one_of(good_cells, bad_cells)) for _ in columns] for _ in range(n_rows)]
    df = pd.DataFrame(cells, columns=columns, dtype=object)
    df.insert(0, "id", [f"r{i}" for i in range(n_rows)])
    bad = [
        (i, j) for i in range(n_rows) for j in range(n_cols)
        if not _is_good(cells[i][j])
    ]
    if not bad:
        PartialLabels.from_dataframe(df, "id", columns)
        return
    with pytest.raises(ValueError) as err:
        PartialLabels.from_dataframe(df, "id", columns)
    # the first bad cell in row-major order (as the file reads) is the one reported
    i, j = min(bad)
    assert f"Row id 'r{i}'" in str(err.value) and f"column 'c{j}'" in str(err.value)


@given(data=st.data(), n_rows=st.integers(1, 6), n_cols=st.integers(1, 4))
def test_fuzz_load_errors_name_row_and_column(data, n_rows, n_cols, tmp_path_factory):
    columns = [f"c{j}" for j in range(n_cols)]
    text_cells = st.one_of(
        st.sampled_from(["1", "0", "", "?", "yes", "2", "0.5", "-1", "x"]),
        st.text(alphabet="01?abc.-", max_size=3),
    )
    cells = [[data.draw(text_cells) for _ in columns] for _ in range(n_rows)]
    path = tmp_path_factory.mktemp("fuzz") / "labels.csv"
    pd.DataFrame(cells, columns=columns).assign(id=[f"r{i}" for i in range(n_rows)])[
        ["id", *columns]
    ].to_csv(path, index=False)
    bad = [(i, j) for i in range(n_rows) for j in range(n_cols) if not _is_good(cells[i][j])]
    if not bad:
        loaded = PartialLabels.load(path)
        assert loaded.n_samples == n_rows
        return
    with pytest.raises(ValueError) as err:
        PartialLabels.load(path)
    i, j = min(bad)  # the first bad cell as the file reads (row by row)
    assert re.search(rf"Row id 'r{i}'.*column 'c{j}'", str(err.value)), str(err.value)


def _is_good(cell) -> bool:
    """The independent statement of the accepted spellings (the test's reference)."""
    if cell is None or cell is True or cell is False:
        return True
    if isinstance(cell, float) and np.isnan(cell):
        return True
    if isinstance(cell, (int, float)):
        return cell in (0, 1)
    if cell.strip().lower() in {"1", "0", "1.0", "0.0", "true", "false", "", "?", "nan", "na", "none"}:
        return True
    try:  # another spelling of the number 0 or 1 ("1.00", "-0"), as a spreadsheet formats it
        return float(cell.strip()) in (0.0, 1.0)
    except ValueError:
        return False


def test_merge_keeps_exclusive_groups(tmp_path):
    # merge used to ignore the groups: two positives in one group came out of it, and the saved CSV
    # would not load again. Reference: the rule the constructors and `fill` apply, cell by cell.
    groups, names = [["shirt", "pants", "skirt"]], ["shirt", "pants", "skirt", "red"]
    human = PartialLabels.from_array([[1, -1, -1, -1], [-1, -1, -1, 1], [-1, -1, -1, -1]], label_names=names,
                                     ids=list("abc"), exclusive_groups=groups)
    teacher = human.fill([[-1, -1, -1, -1], [0.95, -1, -1, -1], [-1, -1, -1, 0.9]], 0.9, "teacher")
    knn = human.fill([[-1, 1, -1, -1], [-1, 1, -1, -1], [-1, -1, 1, -1]], 0.8, "propagated")
    merged = human.merge(teacher).merge(knn)  # the chain of docs/concepts.md
    np.testing.assert_allclose(merged.to_array(), [[1, 0, 0, -1], [0.95, -1, -1, 1], [-1, -1, 1, 0.9]], rtol=1e-6)
    assert merged.source[1, 1] == Source.UNKNOWN  # knn's pants would be a second positive beside the teacher's shirt
    merged.save(tmp_path / "t.csv")
    np.testing.assert_allclose(PartialLabels.load(tmp_path / "t.csv").to_array(), merged.to_array(), rtol=1e-6)
    # A person's positive from the other table makes the rest of its group negatives, a machine
    # positive there included; two of a person's positives in one group are an error naming the row.
    person = PartialLabels.from_array([[-1, -1, -1, -1], [-1, -1, 1, -1], [-1, -1, -1, -1]], label_names=names,
                                      ids=list("abc"))
    answered = merged.merge(person)
    np.testing.assert_array_equal(answered.to_array()[1], [0, 0, 1, 1])
    np.testing.assert_array_equal(answered.source[1], [Source.IMPLIED, Source.IMPLIED, Source.HUMAN, Source.HUMAN])
    clash = PartialLabels.from_array([[-1, 1, -1, -1], [-1, -1, -1, -1], [1, 1, -1, -1]], label_names=names,
                                     ids=list("abc"))
    with pytest.raises(ValueError, match=r"Row id 'c': after the merge labels \['shirt', 'pants'\] are all positive"):
        human.merge(clash)
    first_row = clash.restrict(np.broadcast_to(np.arange(3)[:, None] < 1, (3, 4)))
    assert human.merge(first_row).to_array()[0].tolist() == [1, 0, 0, -1]  # the table's cells win


def test_repeated_rows_get_ids_no_other_row_has():
    # "img" repeated beside a row whose id is "img#1": the suffixes skip it (was: duplicate ids).
    table = PartialLabels.from_array([[1, 0], [0, 1], [1, 1]], ids=["img", "img#1", "img#0#0"])
    out = table.subset([0, 0, 1, 0, 2, 2], allow_repeats=True)
    assert out.ids == ("img#0", "img#2", "img#1", "img#3", "img#0#0#0", "img#0#0#1")
    np.testing.assert_array_equal(out.values, table.values[[0, 0, 1, 0, 2, 2]])


def test_csv_cells_spelled_as_a_spreadsheet_formats_them_and_a_chexpert_minus_one(tmp_path):
    """"1.00" and "-0.0" are the numbers 1 and 0 (they were refused with a hint about sidecars);
    -1 (CheXpert's "uncertain") is refused with what to write instead, naming the first bad cell
    as the file reads; another number (an age column) gets the hint to remove the column."""
    path = tmp_path / "labels.csv"
    path.write_text("id,a,b\nx,1.00,-0.0\ny,0.000,1\n")
    np.testing.assert_array_equal(PartialLabels.load(path).to_array(), [[1, 0], [0, 1]])
    path.write_text("id,a,b\nx,1,-1.0\ny,-1,0\n")
    with pytest.raises(ValueError, match=r"Row id 'x' \(line 2\), column 'b'.*got '-1\.0'\. -1 is the unknown mark of "
                                         r"label arrays, not of a CSV.*write a blank for unknown, or decide 1 or 0"):
        PartialLabels.load(path)
    path.write_text("id,a,age\nx,1,31\n")
    with pytest.raises(ValueError, match=r"column 'age'.*got '31'\..*remove the column if it is no label"):
        PartialLabels.load(path)


def test_load_reads_only_the_label_columns_it_is_given(tmp_path):
    path = tmp_path / "cxr.csv"
    path.write_text("Path,Sex,Age,Edema,No Finding\na.jpg,Male,31,1,\nb.jpg,Female,64,,0\n")
    table = PartialLabels.load(path, id_column="Path", label_columns=["No Finding", "Edema"])
    assert table.label_names == ("No Finding", "Edema") and table.ids == ("a.jpg", "b.jpg")
    np.testing.assert_array_equal(table.to_array(), [[-1, 1], [0, -1]])
    with pytest.raises(ValueError, match=r"column 'Sex'"):
        PartialLabels.load(path, id_column="Path")
    with pytest.raises(ValueError, match=r"Missing column\(s\) \['Oedema'\]"):
        PartialLabels.load(path, id_column="Path", label_columns=["Edema", "Oedema"])
    table.save(tmp_path / "t.npz")
    with pytest.raises(ValueError, match="label_columns applies to a CSV of human labels"):
        PartialLabels.load(tmp_path / "t.npz", label_columns=["Edema"])
