"""Issue 17, items 1-5: label tables never silently change provenance or lose cells.

Each test pins one bad input (or one damaged pair of files) to a one-line error that names the
file, the row or the column; the references are hand-written CSV texts and hand-computed tables.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ssl_multilabel.labels as labels_module
from _tables import tiny_embedding_inputs
from ssl_multilabel.labels import PartialLabels, Source
from ssl_multilabel.recipes import Embeddings, Propagate, Recipe, resume_run, run_recipe

U = -1


def _filled(path: Path | None = None) -> PartialLabels:
    """CSV rows `x,1,1,` `y,0.25,0,` `z,0,0,1` `w,,,`: labels a, b, c; one exclusive group (b, c);
    a hard (x, b) and a soft (y, a) propagated cell; (z, b) implied by (z, c)."""
    table = PartialLabels.from_array(
        [[1, U, U], [U, 0, U], [0, U, 1], [U, U, U]], label_names=["a", "b", "c"], ids=["x", "y", "z", "w"],
        exclusive_groups=[["b", "c"]],
    ).fill(np.array([[U, 1, U], [0.25, U, U], [U, U, U], [U, U, U]]), confidence=0.4, source="propagated")
    if path is not None:
        table.save(path)
    return table


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def _edit_sidecar(path: Path, edit) -> None:
    meta_path = _sidecar(path)
    meta = json.loads(meta_path.read_text())
    edit(meta)
    meta_path.write_text(json.dumps(meta))


# === 1. A deleted sidecar ===


def test_load_with_require_sidecar_names_the_missing_sidecar(tmp_path):
    path = tmp_path / "t.csv"
    _filled(path)
    _sidecar(path).unlink()
    with pytest.raises(FileNotFoundError, match=r"Label table '.*t\.csv' has no sidecar '.*t\.csv\.meta\.json'"):
        PartialLabels.load(path, require_sidecar=True)


def test_soft_cells_without_sidecar_are_an_error_that_names_the_sidecar(tmp_path):
    path = tmp_path / "t.csv"
    _filled(path)
    _sidecar(path).unlink()
    with pytest.raises(ValueError, match=r"Row id 'y' \(line 3\), column 'a'.*got '0.25'.*t\.csv\.meta\.json'?, which is missing"):
        PartialLabels.load(path)


def test_plain_user_csv_without_sidecar_still_loads(tmp_path):
    path = tmp_path / "user.csv"
    path.write_text("id,cat,dog\na.png,1,\nb.png,?,0\n")
    table = PartialLabels.load(path)
    np.testing.assert_array_equal(table.to_array(), [[1, U], [U, 0]])
    np.testing.assert_array_equal(table.source, [[Source.HUMAN, 0], [0, Source.HUMAN]])


def _tiny_run(folder: Path) -> Path:
    tiny_embedding_inputs(folder)
    recipe = Recipe(
        data=Embeddings(labels_csv=str(folder / "labels.csv"), embeddings=str(folder / "emb.npy")),
        steps=[Propagate(k=3, target_precision=None, positive_threshold=0.55, negative_threshold=0.45)],
    )
    return run_recipe(recipe, folder / "run")


def test_resume_refuses_a_step_table_whose_sidecar_was_deleted(tmp_path):
    run_dir = _tiny_run(tmp_path / "in")
    # Runs write labels.npz now; a run from before the binary format has labels.csv + sidecar.
    binary = run_dir / "steps" / "01_propagate" / "labels.npz"
    step_table = binary.with_suffix(".csv")
    PartialLabels.load(binary).save(step_table)
    binary.unlink()
    state = json.loads((run_dir / "state.json").read_text())
    state["finished"][0]["labels"] = "steps/01_propagate/labels.csv"
    (run_dir / "state.json").write_text(json.dumps(state))
    assert PartialLabels.load(step_table).source.max() == Source.PROPAGATED  # the run filled cells
    _sidecar(step_table).unlink()
    with pytest.raises(FileNotFoundError, match=r"01_propagate/labels\.csv' has no sidecar '.*labels\.csv\.meta\.json'"):
        resume_run(run_dir)


# === 2. A CSV and a sidecar that were not written together ===


def test_failed_csv_write_leaves_a_pair_that_load_rejects(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    PartialLabels.from_array([[1, 0], [0, 1]], label_names=["a", "b"], ids=["x", "y"]).save(path)
    write = labels_module.atomic_write_bytes

    def csv_write_fails(target, data):
        if Path(target) == path:
            raise OSError(errno.EFBIG, "File too large")
        write(target, data)

    monkeypatch.setattr(labels_module, "atomic_write_bytes", csv_write_fails)
    new = PartialLabels.from_array([[1, U], [U, 1]], ["a", "b"], ["x", "y"]).fill(np.full((2, 2), 0.5), 0.3)
    with pytest.raises(OSError, match="File too large"):
        new.save(path)
    with pytest.raises(ValueError, match=r"Label table '.*t\.csv' and its sidecar '.*t\.csv\.meta\.json' do not belong together"):
        PartialLabels.load(path)


def test_hand_edited_csv_is_not_paired_with_its_old_sidecar(tmp_path):
    path = tmp_path / "t.csv"
    _filled(path)
    path.write_text(path.read_text().replace("z,0,0,1", "z,1,0,1"))
    with pytest.raises(ValueError, match=r"do not belong together: the sidecar was written for a CSV with SHA-256"):
        PartialLabels.load(path)


def test_csv_truncated_at_a_line_end_is_caught_by_its_sidecar(tmp_path):
    path = tmp_path / "t.csv"
    _filled(path)
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:4]))  # header and 3 of 4 rows
    with pytest.raises(ValueError, match=r"has 3 rows and labels \['a', 'b', 'c'\], but its sidecar .* describes 4 rows"):
        PartialLabels.load(path)


def test_version_1_sidecar_without_hash_still_loads(tmp_path, caplog):
    path = tmp_path / "t.csv"
    table = _filled(path)

    def downgrade(meta):
        meta["version"] = 1
        del meta["csv_sha256"]

    _edit_sidecar(path, downgrade)
    loaded = PartialLabels.load(path)
    np.testing.assert_array_equal(loaded.source, table.source)
    assert "format version 1" in caplog.text


# === 3. Short rows and truncated files ===


def test_short_row_is_an_error_naming_the_row(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,cat,dog\na.png,1,0\nb.png,1\n")
    with pytest.raises(ValueError, match=r"Row id 'b\.png' \(line 3\) of label table '.*t\.csv': expected 3 fields \(id,cat,dog\); got 2"):
        PartialLabels.load(path)


def test_long_row_is_an_error_naming_the_row(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,cat,dog\na.png,1,0,1\n")
    with pytest.raises(ValueError, match=r"Row id 'a\.png' \(line 2\).*expected 3 fields \(id,cat,dog\); got 4"):
        PartialLabels.load(path)


def test_csv_cut_inside_a_quoted_field_names_the_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('id,cat\n"a.png,1\n')
    with pytest.raises(ValueError, match=r"Label table '.*t\.csv', line 2: not a readable CSV \(unexpected end of data\)"):
        PartialLabels.load(path)


def test_saved_table_cut_in_its_last_row_names_that_row(tmp_path):
    path = tmp_path / "t.csv"
    _filled(path)
    text = path.read_text()
    assert text.endswith("z,0,0,1\nw,,,\n")
    path.write_text(text[: -len(",\n")])  # "w,," : the last label's field is gone
    with pytest.raises(ValueError, match=r"Row id 'w' \(line 5\).*expected 4 fields \(id,a,b,c\); got 3"):
        PartialLabels.load(path)


def test_empty_file_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("")
    with pytest.raises(ValueError, match=r"Label table '.*t\.csv' is empty; expected a header line"):
        PartialLabels.load(path)


def test_non_utf8_file_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "t.csv"
    # Excel's default "CSV (Comma delimited)" on Windows writes cp1252: 'é' is the byte 0xE9.
    path.write_bytes(b"id,cat\na.jpg,1\ncaf\xe9.jpg,1\n")
    with pytest.raises(ValueError, match=r"Label table '.*t\.csv' is not UTF-8 text: line 3 holds the byte "
                                         r"b'\\xe9'\. Save it as CSV UTF-8 \(in Excel: CSV UTF-8\)"):
        PartialLabels.load(path)


# === 4. Headers and DataFrame columns ===


def test_duplicate_csv_header_names_the_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,cat,cat\na,1,0\n")
    with pytest.raises(ValueError, match=r"column 'cat' appears twice in the header \(columns 2 and 3\)"):
        PartialLabels.load(path)


def test_empty_csv_header_names_its_position(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,,dog\na,1,0\n")
    with pytest.raises(ValueError, match=r"'.*t\.csv': column 2 of the header has an empty name \(id,,dog\)"):
        PartialLabels.load(path)


@pytest.mark.parametrize("header, expected", [
    ("id;cat;dog", r"the header 'id;cat;dog' is one column with semicolons in it\. Save the table as comma-separated"),
    ("id\tcat\tdog", r"the header 'id\\tcat\\tdog' is one column with tabs in it"),
    ("id,cat , dog", r"column 2 of the header, 'cat ', starts or ends with a space; expected a name without one \('cat'\)"),
])
def test_csv_header_of_another_separator_or_with_spaced_names_is_refused(tmp_path, header, expected):
    path = tmp_path / "t.csv"
    separator = ";" if ";" in header else "\t" if "\t" in header else ","
    path.write_text(header + "\n" + separator.join(["a", "1", "0"]) + "\n")
    with pytest.raises(ValueError, match=expected):
        PartialLabels.load(path)


def test_csv_with_another_id_column_reads_with_id_column_and_names_it_when_missing(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("image,cat,dog\na.jpg,1,\nb.jpg,,0\n")
    table = PartialLabels.load(path, id_column="image")
    assert table.ids == ("a.jpg", "b.jpg") and table.label_names == ("cat", "dog")
    assert table.to_array().tolist() == [[1.0, -1.0], [-1.0, 0.0]]
    with pytest.raises(ValueError, match=r"'.*t\.csv': expected an 'id' column .*got columns \['image', 'cat', 'dog'\]\. "
                                         r"Name the column that names the rows \(in a recipe: --set data\.id_column=NAME"):
        PartialLabels.load(path)
    # save writes the id column under the name given, and a table with a sidecar reads back the same
    soft = PartialLabels(values=np.array([[1.0, 0.25], [0.0, 1.0]], np.float32), known=np.ones((2, 2), bool),
                         weight=np.ones((2, 2), np.float32), source=np.array([[1, 3], [1, 1]], np.uint8),
                         label_names=["cat", "dog"], ids=["a.jpg", "b.jpg"])
    soft.save(tmp_path / "s.csv", id_column="image")
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == "image,cat,dog"
    back = PartialLabels.load(tmp_path / "s.csv", id_column="image")
    np.testing.assert_array_equal(back.values, soft.values)
    np.testing.assert_array_equal(back.source, soft.source)
    with pytest.raises(ValueError, match=r"a label is named 'cat', the name of the CSV's id column"):
        soft.save(tmp_path / "x.csv", id_column="cat")


def test_a_bad_cell_or_empty_id_names_its_line_as_an_editor_counts_it(tmp_path):
    path = tmp_path / "t.csv"
    # line 1 header, 2 blank, 3 'a', 4-5 a quoted id over two lines, 6 the bad cell
    path.write_text('id,cat,dog\n\na,1,0\n"b\nc",0,\nd,1,yes\n')
    with pytest.raises(ValueError, match=r"Row id 'd' \(line 6\), column 'dog' of file '.*t\.csv': expected 1, 0"):
        PartialLabels.load(path)
    path.write_text("id,cat\na,1\n\n,0\n")
    with pytest.raises(ValueError, match=r"Line 4, column 'id' of file '.*t\.csv': the id is empty"):
        PartialLabels.load(path)
    # A DataFrame has no lines: its rows are named by position.
    with pytest.raises(ValueError, match=r"Row id 'b' \(row 1\), column 'cat' of the DataFrame: expected 1, 0"):
        PartialLabels.from_dataframe(pd.DataFrame({"id": ["a", "b"], "cat": [1, 7]}), id_column="id")


def test_a_text_cell_says_every_other_column_is_a_label_and_a_soft_one_names_the_sidecar(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("image,cat,notes\na.jpg,1,\nb.jpg,0,blurry\n")
    with pytest.raises(ValueError, match=r"Row id 'b\.jpg' \(line 3\), column 'notes' of file '.*t\.csv': expected 1, 0 "
                                         r"or blank/'\?' for unknown; got 'blurry'\. Every column but 'image' is read "
                                         r"as a label of 1 / 0 / blank cells.*remove the column if it is no label"):
        PartialLabels.load(path, id_column="image")
    path.write_text("id,cat\na,0.25\n")
    with pytest.raises(ValueError, match=r"got '0\.25'\. \(a table written by PartialLabels\.save keeps soft values "
                                         r"only with its sidecar") as err:
        PartialLabels.load(path)
    assert "Every column" not in str(err.value)


def test_dataframe_with_two_id_columns_names_the_column():
    df = pd.DataFrame([["a", 1, "b"]], columns=["id", "cat", "id"])
    with pytest.raises(ValueError, match=r"Column 'id' appears 2 times in the DataFrame"):
        PartialLabels.from_dataframe(df, "id")


def test_dataframe_with_duplicate_label_columns_names_the_column():
    df = pd.DataFrame([["a", 1, 0]], columns=["id", "cat", "cat"])
    with pytest.raises(ValueError, match=r"Column 'cat' appears 2 times in the DataFrame"):
        PartialLabels.from_dataframe(df, "id")


def test_list_table_with_two_id_columns_names_the_column():
    df = pd.DataFrame([["a", "cat", "b"]], columns=["id", "pos", "id"])
    with pytest.raises(ValueError, match=r"Column 'id' appears 2 times in the DataFrame"):
        PartialLabels.from_label_lists(df, "id", "pos")


def test_dataframe_with_an_empty_label_column_name_is_an_error():
    df = pd.DataFrame([["a", 1, 0]], columns=["id", "", "dog"])
    with pytest.raises(ValueError, match=r"`label_columns` has an empty name at position 0"):
        PartialLabels.from_dataframe(df, "id")


def test_dataframe_with_integer_column_names_reads_them():
    df = pd.DataFrame({"id": ["a", "b"], 0: [1, None], 1: [0, 1]})
    table = PartialLabels.from_dataframe(df, "id")
    assert table.label_names == ("0", "1")
    np.testing.assert_array_equal(table.to_array(), [[1, 0], [U, 1]])


def test_pd_na_cell_is_unknown():
    df = pd.DataFrame({"id": ["a", "b"], "cat": pd.array([1, pd.NA], dtype="Int64")})
    np.testing.assert_array_equal(PartialLabels.from_dataframe(df, "id").to_array(), [[1], [U]])


# === 5. Exclusive groups, list cells and sidecar contents ===


def test_exclusive_groups_of_one_string_is_not_split_into_letters():
    with pytest.raises(ValueError, match=r"group 0 is 'cat'; expected a list of label names \(a string is not split into letters\)"):
        PartialLabels.from_array([[1, 0, 0]], label_names=["c", "a", "t"], exclusive_groups=["cat"])


def test_exclusive_groups_as_a_bare_string_is_an_error():
    with pytest.raises(ValueError, match=r"Invalid value for argument `exclusive_groups`. Expected a list of groups.*Received: exclusive_groups='ab'"):
        PartialLabels.from_array([[1, 0]], label_names=["a", "b"], exclusive_groups="ab")


def test_exclusive_groups_of_names_suggests_one_group():
    with pytest.raises(ValueError, match=r"Did you mean exclusive_groups=\[\['a', 'b'\]\]\?"):
        PartialLabels.from_array([[1, 0]], label_names=["a", "b"], exclusive_groups=["a", "b"])


def test_from_filenames_exclusive_groups_of_one_string_is_an_error():
    with pytest.raises(ValueError, match=r"group 0 is 'ab'; expected a list of label names"):
        PartialLabels.from_filenames(["x.png"], lambda name: {"a": 1, "b": 0}, exclusive_groups=["ab"])


def test_list_cell_with_an_empty_name_names_the_row():
    df = pd.DataFrame({"id": ["a", "b"], "pos": [["cat"], ["dog", ""]]})
    with pytest.raises(ValueError, match=r"Row id 'b' \(row 1\), column 'pos': expected a list of label names; got an empty name"):
        PartialLabels.from_label_lists(df, "id", "pos")


def test_list_cell_with_a_nested_list_names_the_row():
    df = pd.DataFrame({"id": ["a"], "pos": [["dog", ["cat"]]]})
    with pytest.raises(ValueError, match=r"Row id 'a' \(row 0\), column 'pos'.*got the element \['cat'\]"):
        PartialLabels.from_label_lists(df, "id", "pos")


def test_sidecar_weight_above_one_names_the_sidecar_and_cell(tmp_path):
    path = tmp_path / "t.csv"
    _filled(path)
    _edit_sidecar(path, lambda meta: meta["cells"]["weight"].__setitem__(0, 5))
    with pytest.raises(ValueError, match=r"Label sidecar '.*t\.csv\.meta\.json', row id 'x' \(row 0\), column 'b': expected a weight in \[0, 1\]; got 5"):
        PartialLabels.load(path)


def test_sidecar_nan_weight_names_the_sidecar(tmp_path):
    path = tmp_path / "t.csv"
    _filled(path)
    _edit_sidecar(path, lambda meta: meta["cells"]["weight"].__setitem__(0, float("nan")))
    with pytest.raises(ValueError, match=r"Label sidecar '.*t\.csv\.meta\.json', row id 'x'.*expected a weight in \[0, 1\]; got nan"):
        PartialLabels.load(path)


def test_sidecar_source_unknown_on_a_known_cell_names_the_sidecar(tmp_path):
    path = tmp_path / "t.csv"
    _filled(path)
    _edit_sidecar(path, lambda meta: meta["cells"]["source"].__setitem__(0, "unknown"))
    with pytest.raises(ValueError, match=r"Label sidecar '.*', row id 'x'.*expected a source in \['human', 'implied', 'propagated', 'teacher'\] for a known cell; got 'unknown'"):
        PartialLabels.load(path)


def test_sidecar_exclusive_group_conflict_names_the_sidecar_and_row(tmp_path):
    path = tmp_path / "t.csv"
    PartialLabels.from_array([[1, 1, U]], label_names=["a", "b", "c"], ids=["x"]).fill(
        np.array([[U, U, 0]]), confidence=0.5, source="propagated").save(path)  # a machine cell: a sidecar
    _edit_sidecar(path, lambda meta: meta.__setitem__("exclusive_groups", [["a", "b"]]))
    with pytest.raises(ValueError, match=r"Label sidecar '.*': row id 'x' \(row 0\) has the human labels \['a', 'b'\].*exclusive group \['a', 'b'\]"):
        PartialLabels.load(path)


def test_sidecar_group_given_as_a_string_names_the_sidecar(tmp_path):
    path = tmp_path / "t.csv"
    _filled(path)
    _edit_sidecar(path, lambda meta: meta.__setitem__("exclusive_groups", ["bc"]))
    with pytest.raises(ValueError, match=r"Label sidecar '.*': `exclusive_groups` must be a list of lists of label names; got \['bc'\]"):
        PartialLabels.load(path)


def test_sidecar_source_on_a_blank_cell_names_the_cell(tmp_path):
    path = tmp_path / "t.csv"
    _filled(path)

    def point_at_blank(meta):  # (row 3 'w', column 1 'b') is blank in the CSV
        meta["cells"]["row"][0], meta["cells"]["column"][0] = 3, 1

    _edit_sidecar(path, point_at_blank)
    with pytest.raises(ValueError, match=r"row id 'w' \(row 3\), column 'b': the sidecar gives a source to a cell that is blank"):
        PartialLabels.load(path)


def test_sidecar_cell_outside_the_table_names_the_sidecar(tmp_path):
    path = tmp_path / "t.csv"
    _filled(path)
    _edit_sidecar(path, lambda meta: meta["cells"]["row"].__setitem__(0, 7))
    with pytest.raises(ValueError, match=r"Label sidecar '.*' names the cell \(row 7, column 1\), outside the table of 4 rows and 3 labels"):
        PartialLabels.load(path)


def test_sidecar_listing_a_cell_twice_names_it(tmp_path):
    path = tmp_path / "t.csv"
    _filled(path)

    def repeat_first(meta):
        for key in ("row", "column", "source", "weight"):
            meta["cells"][key].append(meta["cells"][key][0])

    _edit_sidecar(path, repeat_first)
    with pytest.raises(ValueError, match=r"row id 'x' \(row 0\), column 'b': the cell is listed twice"):
        PartialLabels.load(path)


def test_sidecar_that_is_not_json_names_the_sidecar(tmp_path):
    path = tmp_path / "t.csv"
    _filled(path)
    _sidecar(path).write_text("{not json")
    with pytest.raises(ValueError, match=r"Label sidecar '.*t\.csv\.meta\.json' is not valid JSON"):
        PartialLabels.load(path)


def test_sidecar_with_unknown_version_names_the_key(tmp_path):
    path = tmp_path / "t.csv"
    _filled(path)
    _edit_sidecar(path, lambda meta: meta.__setitem__("version", 3))
    with pytest.raises(ValueError, match=r"Label sidecar '.*': `version` must be 1 or 2; got 3"):
        PartialLabels.load(path)


def test_sidecar_keeps_the_weight_of_a_human_cell_that_is_not_one(tmp_path):
    # A human cell with weight 0.5 is not a plain human label, so the sidecar must carry it.
    table = PartialLabels.from_array([[1, 0]], label_names=["a", "b"])
    table = table.reweight([[0.5, 1.0]])
    table.save(tmp_path / "t.csv")
    np.testing.assert_array_equal(PartialLabels.load(tmp_path / "t.csv").weight, [[0.5, 1.0]])


# === The table itself ===


def test_known_cell_with_source_unknown_is_rejected_by_the_constructor():
    with pytest.raises(ValueError, match=r"`source` row 0, column 1: a known cell needs a source code in \[1, 2, 3, 4\]; got 0"):
        PartialLabels(values=np.zeros((1, 2)), known=np.ones((1, 2), bool), weight=np.ones((1, 2)), source=[[1, 0]],
                      label_names=["a", "b"], ids=["x"])


def test_known_cell_with_weight_above_one_is_rejected_by_the_constructor():
    with pytest.raises(ValueError, match=r"`weight` row 0, column 0: a known cell needs a weight in \[0, 1\]; got 2.0"):
        PartialLabels(values=np.zeros((1, 1)), known=np.ones((1, 1), bool), weight=[[2.0]], source=[[1]],
                      label_names=["a"], ids=["x"])


def test_empty_row_id_is_rejected_by_the_constructor():
    with pytest.raises(ValueError, match=r"`ids`, row 1: the id ' ' is empty"):
        PartialLabels.from_array([[1], [0]], ids=["a", " "])


def test_save_refuses_a_label_named_id(tmp_path):
    table = PartialLabels.from_array([[1, 0]], label_names=["id", "b"])
    with pytest.raises(ValueError, match=r"Cannot save to '.*t\.csv': a label is named 'id'"):
        table.save(tmp_path / "t.csv")
    assert list(tmp_path.iterdir()) == []


def test_an_id_that_is_not_utf8_text_is_a_clear_error_for_csv_and_kept_by_npz(tmp_path):
    table = PartialLabels.from_array(np.array([[1.0, -1.0], [0.0, 1.0]]), ids=["ok", "a\udcff"], label_names=["x", "y"])
    with pytest.raises(ValueError, match=r"the id of row 1, 'a\\udcff', is not valid text") as err:
        table.save(tmp_path / "t.csv")
    assert str(tmp_path / "t.csv") in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file
    table.save(tmp_path / "t.npz")
    assert PartialLabels.load(tmp_path / "t.npz").ids == ("ok", "a\udcff")


def test_a_table_of_plain_human_labels_gets_no_sidecar_and_stays_editable(tmp_path):
    path = tmp_path / "t.csv"
    _filled(path)  # machine cells and a group: a sidecar
    assert _sidecar(path).is_file()
    human = PartialLabels.from_array([[1, U], [0, 1]], label_names=["a", "b"], ids=["x", "y"])
    human.save(path)  # the same path: the earlier table's sidecar would not match, so it goes
    assert not _sidecar(path).exists()
    assert path.read_text() == "id,a,b\nx,1,\ny,0,1\n"
    path.write_text("id,a,b\nx,1,0\ny,0,1\n")  # a person fills in a cell
    assert PartialLabels.load(path).to_array().tolist() == [[1, 0], [0, 1]]
    grouped = PartialLabels.from_array([[1, 0]], label_names=["a", "b"], ids=["x"], exclusive_groups=[["a", "b"]])
    grouped.save(path)  # human cells, but a group to keep: a sidecar
    assert PartialLabels.load(path).exclusive_groups == (("a", "b"),)
