"""Issue 17, item 6: the one atomic writer gives files the umask's mode (or keeps an existing
file's mode) and leaves nothing behind when a write fails."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from ssl_multilabel._files import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    current_umask,
    make_temp_dir,
)
from ssl_multilabel.labels import PartialLabels
from ssl_multilabel.recipes import Embeddings, Export, Propagate, Recipe, run_recipe


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_current_umask_reads_the_umask_without_changing_it(umask):
    umask(0o027)
    assert current_umask() == 0o027
    assert current_umask() == 0o027


def test_new_file_under_umask_022_is_0644(umask, tmp_path):
    umask(0o022)
    atomic_write_text(tmp_path / "a.txt", "x")
    assert _mode(tmp_path / "a.txt") == 0o644


def test_new_file_under_umask_077_is_0600(umask, tmp_path):
    umask(0o077)
    atomic_write_text(tmp_path / "a.txt", "x")
    assert _mode(tmp_path / "a.txt") == 0o600


def test_rewritten_file_keeps_its_mode_0640(umask, tmp_path):
    umask(0o022)
    path = tmp_path / "a.json"
    path.write_text("{}")
    os.chmod(path, 0o640)
    atomic_write_json(path, {"a": np.float32(0.5)})
    assert _mode(path) == 0o640
    assert path.read_text() == '{\n  "a": 0.5\n}\n'


def test_failing_writer_leaves_the_old_file_and_no_debris(tmp_path):
    path = tmp_path / "model.keras"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_path(path) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("writer failed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_failing_writer_of_a_new_file_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "sub" / "x.npy"):
            raise RuntimeError("writer failed")
    assert list((tmp_path / "sub").iterdir()) == []


def test_temporary_name_keeps_the_suffix_writers_need(tmp_path):
    # np.save appends ".npy" to a name without it, and Keras refuses a name without ".keras".
    with atomic_path(tmp_path / "emb.npy") as tmp:
        assert tmp.name.endswith(".npy") and tmp.parent == tmp_path
        np.save(tmp, np.arange(3))
    np.testing.assert_array_equal(np.load(tmp_path / "emb.npy"), [0, 1, 2])
    assert [p.name for p in tmp_path.iterdir()] == ["emb.npy"]


def test_temporary_folder_follows_the_umask(umask, tmp_path):
    umask(0o027)
    assert _mode(make_temp_dir(tmp_path, ".x-")) == 0o750


def test_saved_label_table_and_sidecar_follow_the_umask(umask, tmp_path):
    umask(0o022)
    PartialLabels.from_array([[1, 0]], exclusive_groups=[["label_0", "label_1"]]).save(tmp_path / "t.csv")  # a group: a sidecar
    assert _mode(tmp_path / "t.csv") == 0o644
    assert _mode(tmp_path / "t.csv.meta.json") == 0o644


def test_resaved_label_table_keeps_its_mode(umask, tmp_path):
    umask(0o022)
    table = PartialLabels.from_array([[1, 0]])
    table.save(tmp_path / "t.csv")
    os.chmod(tmp_path / "t.csv", 0o640)
    table.save(tmp_path / "t.csv")
    assert _mode(tmp_path / "t.csv") == 0o640


def test_run_directory_outputs_follow_the_umask(umask, tmp_path):
    umask(0o027)
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    y = np.where(rng.random((12, 2)) < 0.5, (np.arange(12)[:, None] + np.arange(2)) % 2, -1)
    y[:2] = [[0, 1], [1, 0]]
    PartialLabels.from_array(y, ["a", "b"], [f"r{i}" for i in range(12)]).save(folder / "labels.csv")
    np.save(folder / "emb.npy", rng.normal(size=(12, 3)))
    recipe = Recipe(
        data=Embeddings(labels_csv=str(folder / "labels.csv"), embeddings=str(folder / "emb.npy")),
        steps=[Propagate(k=3, target_precision=None, positive_threshold=0.6, negative_threshold=0.4), Export()],
    )
    run_dir = run_recipe(recipe, tmp_path / "run")
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    folders = [p for p in run_dir.rglob("*") if p.is_dir()]
    names = {str(p.relative_to(run_dir)) for p in files}
    assert {"recipe.json", "state.json", "labels.npz", "export/labels.csv", "export/labels.csv.meta.json",
            "steps/01_propagate/labels.npz"} <= names
    assert {str(p.relative_to(run_dir)): oct(_mode(p)) for p in files if _mode(p) != 0o640} == {}
    assert {str(p.relative_to(run_dir)): oct(_mode(p)) for p in folders if _mode(p) != 0o750} == {}
