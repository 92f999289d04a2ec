"""The binary label table (`.npz`, issue 19 item 1): exact round trip, self-checking reads, atomic
umask-respecting writes, and run directories that keep their tables in it.

References are independent of the module's writer: the arrays a table was built from, and files
written here with plain `np.savez` in the layout docs/design.md documents.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _tables import tiny_embedding_inputs
from ssl_multilabel.labels import PartialLabels, Source
from ssl_multilabel.recipes import Embeddings, Export, Propagate, Recipe, RecipeError, resume_run, run_recipe

FORMAT = "ssl-multilabel partial labels (npz)"  # the documented header `format`

# === Helpers ===


def _bits(array: np.ndarray) -> np.ndarray:
    """The raw bits, so that -0.0 differs from 0.0 and NaN payloads count."""
    return array.view(np.uint32 if array.dtype.itemsize == 4 else np.uint8)


def _assert_identical(loaded: PartialLabels, table: PartialLabels) -> None:
    for name in ("values", "known", "weight", "source"):
        a, b = getattr(loaded, name), getattr(table, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_array_equal(_bits(a), _bits(b), err_msg=name)
    assert loaded.ids == table.ids and loaded.label_names == table.label_names
    assert loaded.exclusive_groups == table.exclusive_groups


def _small_table() -> PartialLabels:
    table = PartialLabels.from_array([[1, -1, 0], [-1, 1, -1]], ["cat", "dog", "fox"], ["a.jpg", "b.jpg"],
                                     exclusive_groups=[["cat", "dog"]])
    return table.fill(np.array([[0.3, 0.25, 0.1], [0.75, 0.2, -1]]), 0.5, Source.TEACHER)  # (1, 2) stays unknown


def _documented_arrays(table: PartialLabels, **header_changes) -> dict[str, np.ndarray]:
    """The members of the documented layout, built here from the table's fields."""
    ids = [i.encode("utf-8") for i in table.ids]
    names = [name.encode("utf-8") for name in table.label_names]
    groups = [[table.label_names.index(name) for name in g] for g in table.exclusive_groups]
    header = {"format": FORMAT, "version": 1, "n_samples": table.n_samples, "n_labels": table.n_labels,
              "exclusive_groups": groups}
    header.update(header_changes)
    return {
        "header": np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8),
        "values": np.array(table.values), "known": np.array(table.known),
        "weight": np.array(table.weight), "source": np.array(table.source),
        "id_bytes": np.frombuffer(b"".join(ids), dtype=np.uint8),
        "id_offsets": np.cumsum([0] + [len(b) for b in ids]).astype(np.int64),
        "label_bytes": np.frombuffer(b"".join(names), dtype=np.uint8),
        "label_offsets": np.cumsum([0] + [len(b) for b in names]).astype(np.int64),
    }


# === Round trip ===

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=[])
text = st.text(st.characters() | surrogates, min_size=1, max_size=6).filter(str.strip)


@st.composite
def tables(draw):
    n = draw(st.integers(0, 6))
    names = draw(st.lists(text.filter(lambda name: name == name.strip()), min_size=1, max_size=4, unique=True))
    ids = draw(st.lists(text, min_size=n, max_size=n, unique=True))
    shape = (n, len(names))

    def grid(element) -> np.ndarray:
        rows = st.lists(st.lists(element, min_size=shape[1], max_size=shape[1]), min_size=n, max_size=n)
        return np.array(draw(rows), dtype=object).reshape(shape)

    known = grid(st.booleans()).astype(bool)
    unit = st.floats(0, 1, width=32) | st.just(-0.0)
    values = grid(unit | st.sampled_from([0.0, 1.0])).astype(np.float32)
    weight = grid(unit | st.just(1.0)).astype(np.float32)
    source = grid(st.sampled_from([s for s in Source if s])).astype(np.uint8)
    groups = draw(st.lists(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True), max_size=2))
    return PartialLabels(values=values, known=known, weight=weight, source=source, label_names=names, ids=ids,
                         exclusive_groups=groups)


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 100)), deadline=None)
@given(table=tables())
def test_round_trip_is_bit_exact(table, tmp_path_factory):
    path = tmp_path_factory.mktemp("rt") / "t.npz"
    table.save(path)
    loaded = PartialLabels.load(path)
    _assert_identical(loaded, table)
    assert sorted(p.name for p in path.parent.iterdir()) == ["t.npz"]  # one file, no sidecar, no debris


def test_every_source_weight_and_soft_value_survives(tmp_path):
    values = np.array([[1, 0, 0.3, 0.7, 0]], dtype=np.float32)
    known = np.array([[True, True, True, True, False]])
    weight = np.array([[1, 1, 0.123456789, 0.5, 0]], dtype=np.float32)
    source = np.array([[Source.HUMAN, Source.IMPLIED, Source.PROPAGATED, Source.TEACHER, Source.UNKNOWN]], dtype=np.uint8)
    table = PartialLabels(values=values, known=known, weight=weight, source=source, label_names=["a", "b", "c", "d", "e"],
                          ids=["ünï,\"\n"], exclusive_groups=[["a", "b"]])
    table.save(tmp_path / "t.npz")
    loaded = PartialLabels.load(tmp_path / "t.npz", require_sidecar=True)  # the flag is for CSVs only
    np.testing.assert_array_equal(_bits(loaded.weight), _bits(weight))
    np.testing.assert_array_equal(loaded.source, source)
    assert loaded.ids == ("ünï,\"\n",) and loaded.exclusive_groups == (("a", "b"),)
    assert not loaded.values.flags.writeable  # as immutable as a constructed table


def test_a_file_written_with_numpy_in_the_documented_layout_loads(tmp_path):
    table = _small_table()
    np.savez(tmp_path / "t.npz", **_documented_arrays(table))
    _assert_identical(PartialLabels.load(tmp_path / "t.npz"), table)


def test_a_compressed_npz_in_the_documented_layout_loads(tmp_path):
    table = _small_table()
    np.savez_compressed(tmp_path / "t.npz", **_documented_arrays(table))  # read through numpy, not the fast path
    _assert_identical(PartialLabels.load(tmp_path / "t.npz"), table)


def test_the_same_table_gives_the_same_bytes(tmp_path, monkeypatch):
    table = _small_table()
    table.save(tmp_path / "a.npz")
    monkeypatch.setattr("time.time", lambda: 2_000_000_000.0)  # a zip entry stamped "now" would differ
    monkeypatch.setattr("time.localtime", lambda *a: (2033, 5, 18, 3, 33, 20, 2, 138, 0))
    table.save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


# === Self-checking reads ===


@pytest.mark.parametrize("keep", [0, 3, 0.5, -1])
def test_truncated_file_is_an_error_naming_it(tmp_path, keep):
    path = tmp_path / "t.npz"
    _small_table().save(path)
    data = path.read_bytes()
    size = {0.5: len(data) // 2, -1: len(data) - 1}.get(keep, keep)
    path.write_bytes(data[:size])
    with pytest.raises(ValueError, match=rf"^Label table '{re.escape(str(path))}' is not a (zip archive|readable \.npz)"):
        PartialLabels.load(path)


def test_a_flipped_byte_is_an_error_naming_the_file_and_array(tmp_path):
    path = tmp_path / "t.npz"
    table = _small_table()
    table.save(path)
    data = bytearray(path.read_bytes())
    at = bytes(data).find(table.weight.tobytes())
    assert at > 0
    data[at + 9] ^= 0x40  # inside the weight array
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"'{re.escape(str(path))}': the array `weight` cannot be read \(Bad CRC-32"):
        PartialLabels.load(path)


def test_foreign_npz_is_an_error_naming_it_and_its_arrays(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, embeddings=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=rf"'{re.escape(str(path))}' is not a label table: it holds the arrays \['embeddings'\]"):
        PartialLabels.load(path)


@pytest.mark.parametrize("content", [b"id,cat\na,1\n", b"", None])
def test_a_csv_or_npy_named_npz_is_an_error_naming_it(tmp_path, content):
    path = tmp_path / "t.npz"
    if content is None:
        with open(path, "wb") as handle:
            np.save(handle, np.zeros(3))
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"^Label table '{re.escape(str(path))}' is not a zip archive"):
        PartialLabels.load(path)


def test_another_format_in_the_header_is_an_error(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, **_documented_arrays(_small_table(), format="something else"))
    with pytest.raises(ValueError, match=rf"'{re.escape(str(path))}': header `format` must be '{re.escape(FORMAT)}'; got 'something else'"):
        PartialLabels.load(path)


@pytest.mark.parametrize("name, array, shown", [
    ("values", lambda t: t.values.astype(np.float64), r"dtype <f8 and shape \(2, 3\); expected <f4"),
    ("values", lambda t: t.values.astype(">f4"), r"dtype >f4 and shape \(2, 3\); expected <f4"),
    ("known", lambda t: t.known.astype(np.uint8), r"dtype \|u1 and shape \(2, 3\); expected \|b1"),
    ("source", lambda t: t.source.astype(np.int64), r"dtype <i8 and shape \(2, 3\); expected \|u1"),
    ("weight", lambda t: t.weight[:1], r"dtype <f4 and shape \(1, 3\); expected <f4 and shape \(2, 3\)"),
    ("id_offsets", lambda t: np.array([0, 5, 10], dtype=np.int32), r"dtype <i4 and shape \(3,\); expected <i8"),
])
def test_wrong_dtype_or_shape_is_an_error_naming_file_and_array(tmp_path, name, array, shown):
    table = _small_table()
    arrays = _documented_arrays(table)
    arrays[name] = array(table)
    path = tmp_path / "t.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=rf"'{re.escape(str(path))}': the array `{name}` has {shown}"):
        PartialLabels.load(path)


@pytest.mark.parametrize("claimed", [(10**6, 10**6), (10**9, 3)])
def test_a_member_claiming_a_huge_shape_is_an_error_not_an_allocation(tmp_path, claimed):
    path = tmp_path / "t.npz"
    np.savez(path, **_documented_arrays(_small_table()))
    # Rewrite values.npy: a .npy header claiming `claimed`, followed by the 24 bytes of a (2, 3) array.
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    import io
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": claimed})
    members["values.npy"] = member.getvalue() + np.zeros(6, np.float32).tobytes()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match=rf"^Label table '{re.escape(str(path))}': the array `values` (cannot be read|has dtype <f4 and shape)"):
        PartialLabels.load(path)


def test_header_counts_that_do_not_match_the_members_are_an_error(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, **_documented_arrays(_small_table(), n_samples=10**9))
    with pytest.raises(ValueError, match=rf"'{re.escape(str(path))}': the array `id_offsets` takes \d+ bytes; expected <i8 of shape \(1000000001,\)"):
        PartialLabels.load(path)


def test_object_array_is_refused_without_unpickling(tmp_path):
    arrays = _documented_arrays(_small_table())
    arrays["id_bytes"] = np.array(["a.jpg", "b.jpg"], dtype=object)
    path = tmp_path / "t.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=rf"'{re.escape(str(path))}': the array `id_bytes` cannot be read \(Object arrays"):
        PartialLabels.load(path)


@pytest.mark.parametrize("change, message", [
    (lambda a: a["values"].__setitem__((1, 2), 0.5), r"`values` is 0\.5 in the unknown cell row 1, column 2"),
    (lambda a: a["weight"].__setitem__((1, 2), -0.0), r"`weight` is -0\.0 in the unknown cell row 1, column 2"),
    (lambda a: a["source"].__setitem__((0, 0), Source.UNKNOWN), r"`source` row 0, column 0: a known cell needs a source code"),
    (lambda a: a["values"].__setitem__((0, 0), 1.5), r"`values` row 0, column 0: a known cell needs a value in \[0, 1\]"),
    (lambda a: a.update(id_bytes=np.frombuffer(b"a.jpga.jpg", np.uint8)), r"Duplicate ids"),
    (lambda a: a.update(id_bytes=np.frombuffer(b"a.jp\xffb.jpg", np.uint8)), r"the id of row 0 is not UTF-8"),
    (lambda a: a.update(id_offsets=np.array([0, 6, 5], dtype=np.int64)), r"`id_offsets` is not a non-decreasing"),
    (lambda a: a.update(label_bytes=np.frombuffer(b"catdogcat", np.uint8)), r"Duplicate label names"),
    (lambda a: a.update(header=np.frombuffer(json.dumps({"format": FORMAT, "version": 1, "n_samples": 2, "n_labels": 3,
                                                         "exclusive_groups": [[0, 3]]}).encode(), np.uint8)),
     r"header `exclusive_groups` names column 3; the table has 3"),
])
def test_inconsistent_content_is_an_error_naming_the_file(tmp_path, change, message):
    arrays = _documented_arrays(_small_table())
    arrays = {k: np.array(v) for k, v in arrays.items()}
    change(arrays)
    path = tmp_path / "t.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=rf"^Label table '{re.escape(str(path))}': .*{message}"):
        PartialLabels.load(path)


def test_a_binary_table_read_as_csv_says_so(tmp_path):
    path = tmp_path / "t.csv"
    _small_table().save(tmp_path / "t.npz")
    path.write_bytes((tmp_path / "t.npz").read_bytes())
    with pytest.raises(ValueError, match=rf"'{re.escape(str(path))}' is a zip archive \(a binary \.npz label table\?\)"):
        PartialLabels.load(path)


# === Writes: atomic, through _files, mode from the umask ===


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_new_file_mode_follows_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    _small_table().save(tmp_path / "t.npz")
    assert (tmp_path / "t.npz").stat().st_mode & 0o777 == mode


def test_failed_write_leaves_the_old_file_and_no_debris(tmp_path, monkeypatch):
    path = tmp_path / "t.npz"
    old = PartialLabels.from_array([[1, 0]], ["x", "y"], ["r"])
    old.save(path)
    before = path.read_bytes()
    write = np.lib.format.write_array

    calls = []

    def fails_on_the_fourth_array(fp, array, *args, **kwargs):
        calls.append(array.shape)
        if len(calls) == 4:  # after part of the archive was written
            raise OSError(28, "No space left on device")
        return write(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", fails_on_the_fourth_array)
    with pytest.raises(OSError, match="No space left"):
        _small_table().save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.npz"]


# === Run directories ===


def _tiny_recipe(labels_csv: Path, emb: Path) -> Recipe:
    return Recipe(
        data=Embeddings(labels_csv=str(labels_csv), embeddings=str(emb)),
        steps=[Propagate(k=3, target_precision=None, positive_threshold=0.55, negative_threshold=0.45), Export()],
    )


def test_run_directory_keeps_binary_tables_and_exports_a_csv(tmp_path):
    labels_csv, emb = tiny_embedding_inputs(tmp_path / "in")
    run_dir = run_recipe(_tiny_recipe(labels_csv, emb), tmp_path / "run")
    state = json.loads((run_dir / "state.json").read_text())
    assert state["finished"][0]["labels"] == "steps/01_propagate/labels.npz"
    step, final = run_dir / "steps" / "01_propagate" / "labels.npz", run_dir / "labels.npz"
    assert zipfile.is_zipfile(step) and zipfile.is_zipfile(final)
    assert not list(run_dir.glob("labels.csv*")) and not list(run_dir.glob("steps/*/labels.csv*"))
    table = PartialLabels.load(final)
    given = PartialLabels.load(labels_csv)
    np.testing.assert_array_equal(table.values[given.known], given.values[given.known])  # human cells kept
    filled = table.known & ~given.known
    assert filled.any() and np.all(table.source[filled] == Source.PROPAGATED)
    # The people's format: export/labels.csv + sidecar, the same table.
    exported = PartialLabels.load(run_dir / "export" / "labels.csv", require_sidecar=True)
    _assert_identical(exported, table)


def test_run_from_before_the_binary_format_resumes_from_its_csv_tables(tmp_path):
    labels_csv, emb = tiny_embedding_inputs(tmp_path / "in")
    recipe = _tiny_recipe(labels_csv, emb)
    run_dir = run_recipe(recipe, tmp_path / "run")
    expected = PartialLabels.load(run_dir / "labels.npz")
    # Rewrite it as an older run: step 1's table as labels.csv + sidecar, step 2 not yet run.
    step_dir = run_dir / "steps" / "01_propagate"
    PartialLabels.load(step_dir / "labels.npz").save(step_dir / "labels.csv")
    (step_dir / "labels.npz").unlink()
    (run_dir / "labels.npz").unlink()
    state = json.loads((run_dir / "state.json").read_text())
    state["finished"] = state["finished"][:1]
    state["finished"][0]["labels"] = "steps/01_propagate/labels.csv"
    (run_dir / "state.json").write_text(json.dumps(state))

    resume_run(run_dir)

    _assert_identical(PartialLabels.load(run_dir / "labels.npz"), expected)
    assert [r["name"] for r in json.loads((run_dir / "state.json").read_text())["finished"]] == ["propagate", "export"]


def test_resume_with_a_damaged_step_table_names_it_and_what_to_do(tmp_path):
    labels_csv, emb = tiny_embedding_inputs(tmp_path / "in")
    run_dir = run_recipe(_tiny_recipe(labels_csv, emb), tmp_path / "run")
    step_table = run_dir / "steps" / "01_propagate" / "labels.npz"
    step_table.write_bytes(step_table.read_bytes()[:100])
    with pytest.raises(RecipeError, match=rf"'{re.escape(str(step_table))}' is not a readable \.npz .* delete the "
                                          r"entries of step 'propagate' and the steps after it from state\.json"):
        resume_run(run_dir)


def test_cli_propagate_writes_the_format_its_out_names(tmp_path, capsys):
    from ssl_multilabel.cli import main

    labels_csv, emb = tiny_embedding_inputs(tmp_path / "in")
    args = ["propagate", "--labels", str(labels_csv), "--embeddings", str(emb), "--target-precision", "none",
            "--positive-threshold", "0.55", "--negative-threshold", "0.45", "--out"]
    assert main(args + [str(tmp_path / "filled.npz")]) == 0
    assert main(args + [str(tmp_path / "filled.csv")]) == 0
    assert zipfile.is_zipfile(tmp_path / "filled.npz") and not zipfile.is_zipfile(tmp_path / "filled.csv")
    binary = PartialLabels.load(tmp_path / "filled.npz")
    _assert_identical(binary, PartialLabels.load(tmp_path / "filled.csv", require_sidecar=True))
    assert (binary.source == Source.PROPAGATED).any()
    capsys.readouterr()
    assert main(["labels", str(tmp_path / "filled.npz")]) == 0
    assert "20 rows, 2 labels" in capsys.readouterr().out


# === B9 benchmark script ===


def test_benchmark_runs_both_formats_and_finds_exact_round_trips(capsys):
    import importlib.util
    import sys

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("bench_label_table", root / "benchmarks" / "label_table.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    doc = root / "docs" / "benchmarks.md"
    before = doc.read_bytes() if doc.exists() else None

    results = bench.main(["--no-write", "--rows", "500:csv,npz", "--repeats", "1"])

    assert (doc.read_bytes() if doc.exists() else None) == before
    assert [(r["n"], r["format"]) for r in results] == [(500, "csv"), (500, "npz")]
    assert all(r["exact"] for r in results)
    assert results[1]["array_bytes"] == 500 * 100 * 10  # float32 + bool + float32 + uint8 per cell
    assert results[1]["array_bytes"] < results[1]["file_bytes"] < 1.1 * results[1]["array_bytes"]
    assert "| 500 |" in capsys.readouterr().out
