"""Issue 17 (part B): run directories, resume, image folders, the image pipeline and the report
under bad input: locking, what `resume` imports, damaged state, validation before anything is
created, paths that leave their folder, decompression bombs, mathtext in label names."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from _cli import one_error_line
from ssl_multilabel.cli import main
from ssl_multilabel.labels import PartialLabels, Source
from ssl_multilabel.recipes import Embeddings, Evaluate, ImageFolder, Propagate, Recipe, Report, read_run, resume_run, run_recipe
from ssl_multilabel.recipes.config import _REGISTRY, RecipeError
from ssl_multilabel.recipes.runner import RunState, load_recipe_file

sys.path.insert(0, str(Path(__file__).parent))
from test_recipe import _tiny_embeddings  # noqa: E402



def _quick_recipe(folder: Path, **kw) -> Recipe:
    labels_csv, emb, truth = _tiny_embeddings(folder / "in")
    data = Embeddings(labels_csv=str(labels_csv), embeddings=str(emb), truth_csv=str(truth))
    return Recipe(data=data, steps=[Propagate(k=3, target_precision=None, positive_threshold=0.7, negative_threshold=0.3)],
                  **kw)


# === Item 8: one process per run directory ===


def test_resume_refuses_a_run_directory_locked_by_another_process(tmp_path, capsys):
    run_dir = run_recipe(_quick_recipe(tmp_path), tmp_path / "run")
    state = (run_dir / "state.json").read_text()
    # flock locks belong to an open file: this second open conflicts like another process would.
    with open(run_dir / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["resume", str(run_dir), "-q"]) == 2
        assert one_error_line(capsys) == (
            f"error: Run directory {str(run_dir)!r} is in use by another ssl-multilabel process (it holds .lock); "
            "wait for that process to end, then resume."
        )
    assert (run_dir / "state.json").read_text() == state
    assert not list((run_dir / "steps").glob(".*.tmp"))
    assert main(["resume", str(run_dir), "-q"]) == 0  # the lock ended with its holder


def test_run_into_a_locked_empty_directory_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    with open(tmp_path / "run" / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RecipeError, match=r"is in use by another ssl-multilabel process"):
            run_recipe(_quick_recipe(tmp_path), tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]


# === Item 9: what resume imports ===


_SCRIPT = '''
import dataclasses
from ssl_multilabel.recipes import Embeddings, Recipe
from ssl_multilabel.recipes.runner import Step, StepResult

@dataclasses.dataclass(frozen=True, kw_only=True)
class ReliabilityNoOp(Step):
    def run(self, ctx, state):
        (ctx.run_dir / "imported_{tag}").write_text("x")
        return StepResult(metrics={{"ok": 1}})

RECIPE = Recipe(data=Embeddings(labels_csv={csv!r}, embeddings={emb!r}), steps=[ReliabilityNoOp()])
'''


def _custom_run(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """A run whose step type is defined in its recipe script, then forgotten by this process."""
    labels_csv, emb, _ = _tiny_embeddings(tmp_path / "in")
    script = tmp_path / "custom.py"
    script.write_text(_SCRIPT.format(tag="original", csv=str(labels_csv), emb=str(emb)))
    run_dir = run_recipe(load_recipe_file(script), tmp_path / "run", recipe_file=script)
    (run_dir / "imported_original").unlink()
    (run_dir / "state.json").unlink()  # so resume runs the step again
    monkeypatch.delitem(_REGISTRY, "ReliabilityNoOp")
    return run_dir, script


def test_resume_imports_the_recorded_script_when_its_hash_matches(tmp_path, monkeypatch):
    import hashlib

    run_dir, script = _custom_run(tmp_path, monkeypatch)
    meta, _ = read_run(run_dir)
    assert meta["recipe_file_sha256"] == hashlib.sha256(script.read_bytes()).hexdigest()
    resume_run(run_dir)
    assert (run_dir / "imported_original").is_file()


def test_resume_refuses_a_script_path_edited_into_recipe_json(tmp_path, monkeypatch):
    run_dir, script = _custom_run(tmp_path, monkeypatch)
    other = tmp_path / "other.py"
    other.write_text(_SCRIPT.format(tag="other", csv="", emb=""))
    meta = json.loads((run_dir / "recipe.json").read_text())
    meta["recipe_file"] = str(other)
    (run_dir / "recipe.json").write_text(json.dumps(meta))
    with pytest.raises(RecipeError, match=r"uses the types \['ReliabilityNoOp'\], which are not built in; the recipe "
                                          r"script '.*other\.py' is not the file the run was started with \(sha256 "):
        resume_run(run_dir)
    assert "ReliabilityNoOp" not in _REGISTRY  # nothing was imported
    assert not (run_dir / "imported_other").exists()


def test_resume_refuses_an_edited_script(tmp_path, monkeypatch):
    run_dir, script = _custom_run(tmp_path, monkeypatch)
    script.write_text(script.read_text() + "\n# edited\n")
    with pytest.raises(RecipeError, match=r"so resume will not import it; restore the script, or import the module"):
        resume_run(run_dir)
    assert "ReliabilityNoOp" not in _REGISTRY


def test_resume_refuses_a_script_without_a_recorded_hash(tmp_path, monkeypatch):
    run_dir, _ = _custom_run(tmp_path, monkeypatch)
    meta = json.loads((run_dir / "recipe.json").read_text())
    del meta["recipe_file_sha256"]
    (run_dir / "recipe.json").write_text(json.dumps(meta))
    with pytest.raises(RecipeError, match=r"records no sha256 of it, so resume will not import it"):
        resume_run(run_dir)


def test_resume_of_built_in_steps_imports_no_script(tmp_path):
    recipe = _quick_recipe(tmp_path)
    script = tmp_path / "never.py"
    script.write_text("raise SystemExit('this script must not be imported')\n")
    run_dir = run_recipe(recipe, tmp_path / "run", recipe_file=script)
    (run_dir / "state.json").unlink()
    assert resume_run(run_dir) == run_dir  # from the stored recipe: the script is not run


# === Item 10: damaged run files name themselves ===


@pytest.mark.parametrize("name, content, message", [
    ("state.json", "", r"'.*state\.json' is empty; restore it from a copy, or delete it to rerun every step"),
    ("state.json", '{"finished": 3}', r"'.*state\.json' is damaged: expected an object with a 'finished' list"),
    ("state.json", '{"finished": [{"dir": "steps/01_propagate", "labels": "../../x.csv"}]}',
     r"'.*state\.json' is damaged: entry 0 of 'finished' is not the record of a step folder under steps/"),
    ("recipe.json", "{not json", r"'.*recipe\.json' is not valid JSON \(Expecting property name"),
    ("recipe.json", "[]", r"'.*recipe\.json' is damaged: expected an object with a 'recipe' object; restore it"),
])
def test_damaged_run_files_are_named(tmp_path, name, content, message):
    run_dir = run_recipe(_quick_recipe(tmp_path), tmp_path / "run")
    (run_dir / name).write_text(content)
    with pytest.raises(RecipeError, match=message):
        resume_run(run_dir)


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY garbage", None])
def test_damaged_scores_file_is_named(tmp_path, content):
    from ssl_multilabel.recipes.steps import _latest_scores

    step_dir = tmp_path / "steps" / "01_propagate"
    step_dir.mkdir(parents=True)
    if content is None:
        np.save(step_dir / "scores.npy", np.zeros((3, 2)))  # the wrong number of rows
    else:
        (step_dir / "scores.npy").write_bytes(content)
    labels = PartialLabels.from_array(np.full((4, 2), -1.0))
    state = RunState(run_dir=tmp_path, data=None, labels=labels,
                     records=[{"name": "propagate", "dir": "steps/01_propagate", "info": {"scores": "scores.npy"}}])
    with pytest.raises(RecipeError, match=r"Scores file of step 'propagate' '.*scores\.npy' .*delete the entries of "
                                          r"step 'propagate' and the steps after it from state\.json and resume"):
        _latest_scores(state)


# === Item 11: validation before the run directory exists ===


@pytest.mark.parametrize("override, message", [
    ("seed=-5", r"--set seed=-5: Invalid value for parameter `seed` of Recipe\. Expected a number >= 0\. Received: seed=-5"),
    ("name=../../escape", r"--set name=\.\./\.\./escape: Invalid value for parameter `name` of Recipe"),
])
def test_bad_recipe_overrides_create_no_run_directory(tmp_path, override, message):
    with pytest.raises(RecipeError, match=message):
        run_recipe(_quick_recipe(tmp_path), tmp_path / "run", overrides=[override])
    assert not (tmp_path / "run").exists()


def test_zero_image_size_is_refused_before_the_run_directory(tmp_path):
    recipe = Recipe(data=ImageFolder(), steps=[Report()])
    with pytest.raises(RecipeError, match=r"--set data\.image_size=0,0: Invalid value for parameter `image_size` of "
                                          r"ImageFolder\. Expected \(height, width\) with each in \[1, 8192\]\. "
                                          r"Received: image_size=\(0, 0\)"):
        run_recipe(recipe, tmp_path / "run", overrides=["data.image_size=0,0"])
    assert not (tmp_path / "run").exists()


def test_missing_data_file_creates_no_run_directory(tmp_path):
    labels_csv, _, _ = _tiny_embeddings(tmp_path / "in")
    recipe = Recipe(data=Embeddings(labels_csv=str(labels_csv), embeddings=str(tmp_path / "nope.npy")), steps=[Propagate()])
    with pytest.raises(FileNotFoundError, match=r"data\.embeddings '.*nope\.npy' does not exist"):
        run_recipe(recipe, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_data_error_found_while_loading_leaves_nothing_and_the_same_command_works(tmp_path):
    """The labels CSV is read when the run loads its data, after the run directory exists: a bad
    table must still leave no run behind, so the user fixes the CSV and reruns the same command."""
    labels_csv, emb, _ = _tiny_embeddings(tmp_path / "in")
    good = labels_csv.read_text()
    labels_csv.write_text(good.replace("id,", "image,", 1))  # the id column misnamed
    labels_csv.with_name(labels_csv.name + ".meta.json").unlink(missing_ok=True)
    recipe = Recipe(data=Embeddings(labels_csv=str(labels_csv), embeddings=str(emb)), steps=[Propagate()])
    given = tmp_path / "given"
    given.mkdir()
    for out in (tmp_path / "new", given):
        with pytest.raises(ValueError, match="id"):
            run_recipe(recipe, out)
    assert not (tmp_path / "new").exists()
    assert [p.name for p in given.iterdir() if p.name != ".lock"] == []  # the given folder is emptied, not deleted
    labels_csv.write_text(good)
    for out in (tmp_path / "new", given):
        run_recipe(recipe, out)
        assert read_run(out)[1]["status"] == "finished"


def _run_failing_in_second_step(tmp_path, monkeypatch, steps) -> None:
    """Run `steps` (two Propagate steps) on tiny embeddings into tmp_path / "run"; the second fails."""
    labels_csv, emb, _ = _tiny_embeddings(tmp_path / "in")
    recipe = Recipe(data=Embeddings(labels_csv=str(labels_csv), embeddings=str(emb)), steps=steps)

    def fail_second(self, ctx, state, original=Propagate.run):
        if ctx.index == 1:
            raise RuntimeError("power cut")
        return original(self, ctx, state)

    monkeypatch.setattr(Propagate, "run", fail_second)
    with pytest.raises(RuntimeError, match="power cut"):
        run_recipe(recipe, tmp_path / "run")
    monkeypatch.undo()


def test_a_run_that_fails_inside_a_step_is_kept_for_resume(tmp_path, monkeypatch):
    _run_failing_in_second_step(tmp_path, monkeypatch, [Propagate(), Propagate()])
    assert [r["name"] for r in read_run(tmp_path / "run")[1]["finished"]] == ["propagate"]
    resume_run(tmp_path / "run")
    assert read_run(tmp_path / "run")[1]["status"] == "finished"


@pytest.mark.parametrize("stop, kept", [(RuntimeError("the backbone refuses width=1"), False), (KeyboardInterrupt(), True)])
def test_a_run_stopped_in_its_first_step(tmp_path, monkeypatch, stop, kept):
    # An error before any step finished left a run folder that the corrected command was refused
    # into ("exists ... resume"), and resume replayed the wrong setting: it is removed, with the
    # folders --out created. A run interrupted with Ctrl-C there is kept for resume.
    labels_csv, emb, _ = _tiny_embeddings(tmp_path / "in")
    recipe = Recipe(data=Embeddings(labels_csv=str(labels_csv), embeddings=str(emb)), steps=[Propagate(), Propagate()])

    def fail_first(self, ctx, state):
        raise stop

    monkeypatch.setattr(Propagate, "run", fail_first)
    with pytest.raises(type(stop)):
        run_recipe(recipe, tmp_path / "new" / "run")
    assert (tmp_path / "new").exists() == kept
    monkeypatch.undo()
    if kept:
        resume_run(tmp_path / "new" / "run")
    else:
        run_recipe(recipe, tmp_path / "new" / "run")  # the same command, once the setting is fixed
    assert read_run(tmp_path / "new" / "run")[1]["status"] == "finished"


def test_resume_removes_the_tensorboard_logs_of_unfinished_steps(tmp_path):
    # A training step interrupted and run again logged two curves in TensorBoard.
    from ssl_multilabel.recipes.runner import _clean_debris

    for folder in ("steps/01_supervised", "steps/02_noisy_student", "tensorboard/01_supervised/train",
                   "tensorboard/02_noisy_student/train"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "events").write_text("x")
    _clean_debris(tmp_path, {"01_supervised"})
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("events")) == [
        "steps/01_supervised/events", "tensorboard/01_supervised/train/events"]


def test_tensorboard_folders_follow_the_umask(tmp_path, umask):
    import importlib.util
    import stat

    from ssl_multilabel.recipes.runner import StepContext

    if importlib.util.find_spec("tensorboard") is None:
        pytest.skip("tensorboard is not installed: the logs go to a CSV file")
    umask(0o002)
    ctx = StepContext(tmp_path, tmp_path / "steps" / "01_propagate", Propagate(), 0, 0)
    ctx.callbacks()
    for split in ("train", "validation"):
        assert stat.S_IMODE((ctx.tensorboard_dir / split).stat().st_mode) == 0o775


def test_out_naming_a_file_is_refused_in_one_line(tmp_path):
    labels_csv, emb, _ = _tiny_embeddings(tmp_path / "in")
    recipe = Recipe(data=Embeddings(labels_csv=str(labels_csv), embeddings=str(emb)), steps=[Propagate()])
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for out in (notes, notes / "sub"):
        with pytest.raises(RecipeError, match=rf"--out '{out}': '{notes}' is a file; expected a new or empty run "
                                              "directory"):
            run_recipe(recipe, out)
    assert notes.read_text() == "mine"


def test_resume_refuses_recipe_json_edited_for_a_finished_step(tmp_path, monkeypatch):
    _run_failing_in_second_step(tmp_path, monkeypatch, [Propagate(name="first"), Propagate(name="second")])
    recipe_json = tmp_path / "run" / "recipe.json"
    original = recipe_json.read_text()
    meta = json.loads(original)
    # The unfinished step may be edited: it runs with what recipe.json says.
    meta["recipe"]["steps"][1]["k"] = 4
    recipe_json.write_text(json.dumps(meta))
    state_before = (tmp_path / "run" / "state.json").read_bytes()
    # The finished one may not: its outputs were made with k=10, and resume would not rerun it.
    meta["recipe"]["steps"][0]["k"] = 5
    meta["recipe"]["seed"] = 3
    recipe_json.write_text(json.dumps(meta))
    with pytest.raises(RecipeError, match=r"was changed for step 'first', which finished with other settings: "
                                          r"seed \(ran with 0, now 3\); step\.k \(ran with 10, now 5\)\. "
                                          r"Resume does not rerun a finished step"):
        resume_run(tmp_path / "run")
    assert (tmp_path / "run" / "state.json").read_bytes() == state_before
    meta["recipe"]["steps"][0]["k"] = 10
    meta["recipe"]["seed"] = 0
    recipe_json.write_text(json.dumps(meta))
    resume_run(tmp_path / "run")
    finished = read_run(tmp_path / "run")[1]["finished"]
    assert [r["settings"]["step"]["k"] for r in finished] == [10, 4]


def test_run_name_with_a_separator_is_refused():
    with pytest.raises(RecipeError, match=r"Expected a non-empty name without '/'.*Received: name='a/b'"):
        Recipe(data=Embeddings(), steps=[Propagate()], name="a/b")


# === Items 12 and 16: image ids and bad images of an image folder ===


def _image_folder(tmp_path: Path, ids: list[str], bad: dict[int, bytes] = {}) -> Path:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    for i, image_id in enumerate(ids):
        if ".." not in image_id and not Path(image_id).is_absolute():
            path = folder / image_id
            if i in bad:
                path.write_bytes(bad[i])
            else:
                Image.fromarray(np.full((6, 6), 10 * i, np.uint8)).save(path)
    values = np.tile([[1.0, 0.0]], (len(ids), 1))
    PartialLabels.from_array(values, ["cat", "dog"], ids).save(folder / "labels.csv")
    return folder / "labels.csv"


@pytest.mark.parametrize("image_id", ["../x.png", "/etc/passwd", "a/../../x.png"])
def test_image_ids_outside_the_image_folder_are_refused(tmp_path, image_id):
    csv = _image_folder(tmp_path, ["a.png", "b.png", image_id])
    with pytest.raises(ValueError, match=rf"Row 3 \(id {image_id!r}\) of '.*labels\.csv': expected an image path "
                                         r"relative to the image folder"):
        ImageFolder(labels_csv=str(csv), image_size=(6, 6), channels=1).load(0, tmp_path)


def test_a_separate_test_table_reads_its_images_from_test_image_dir(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    train_csv = _image_folder(tmp_path / "train", ["a.png", "b.png", "c.png"])
    test_csv = _image_folder(tmp_path / "test", ["t0.png", "t1.png"])
    data = ImageFolder(labels_csv=str(train_csv), test_csv=str(test_csv), test_image_dir=str(tmp_path / "test" / "images"),
                       image_size=(6, 6), channels=1).load(0, tmp_path)
    assert data.inputs == [str(tmp_path / "train" / "images" / i) for i in ("a.png", "b.png", "c.png")]  # all rows train
    assert data.test_inputs == [str(tmp_path / "test" / "images" / i) for i in ("t0.png", "t1.png")]
    assert data.test_labels.ids == ("t0.png", "t1.png")
    # Without test_image_dir the test ids are looked up in image_dir, where they are not.
    with pytest.raises(ValueError, match=r"2 of 2 images named in '.*test.*labels\.csv' cannot be used: id 't0\.png': file not found"):
        ImageFolder(labels_csv=str(train_csv), test_csv=str(test_csv), image_size=(6, 6), channels=1).load(0, tmp_path)
    with pytest.raises(RecipeError, match=r"`test_csv` is empty.*test_image_dir="):
        ImageFolder(labels_csv=str(train_csv), test_image_dir=str(tmp_path / "test"))


def test_id_column_names_the_images_of_labels_csv_and_test_csv(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    train_csv = _image_folder(tmp_path / "train", ["a.png", "b.png", "c.png"])
    test_csv = _image_folder(tmp_path / "test", ["t0.png", "t1.png"])
    for csv in (train_csv, test_csv):  # a user's CSV: the file names in a column called 'image', no sidecar
        csv.write_text(csv.read_text().replace("id,", "image,", 1))
        Path(f"{csv}.meta.json").unlink(missing_ok=True)
    with pytest.raises(ValueError, match=r"expected an 'id' column .* --set data\.id_column=NAME"):
        ImageFolder(labels_csv=str(train_csv), image_size=(6, 6), channels=1).load(0, tmp_path)
    data = ImageFolder(labels_csv=str(train_csv), test_csv=str(test_csv), test_image_dir=str(tmp_path / "test" / "images"),
                       id_column="image", image_size=(6, 6), channels=1).load(0, tmp_path)
    assert data.inputs == [str(tmp_path / "train" / "images" / i) for i in ("a.png", "b.png", "c.png")]
    assert data.test_labels.ids == ("t0.png", "t1.png") and data.labels.label_names == ("cat", "dog")
    with pytest.raises(RecipeError, match=r"`id_column` of ImageFolder.*Received: id_column=''"):
        ImageFolder(labels_csv=str(train_csv), id_column="")


def test_bad_images_are_listed_with_their_csv_rows_and_ids(tmp_path):
    ids = [f"{i}.png" for i in range(10)]
    csv = _image_folder(tmp_path, ids, bad={3: b"not an image", 8: b""})
    with pytest.raises(ValueError, match=r"2 of 10 images named in '.*labels\.csv' cannot be used: id '3\.png': "
                                         r".*; id '8\.png': .*--set data\.on_bad_image=skip"):
        ImageFolder(labels_csv=str(csv), image_size=(6, 6), channels=1, test_fraction=0.5).load(0, tmp_path)


def test_on_bad_image_skip_drops_those_rows(tmp_path, caplog):
    ids = [f"{i}.png" for i in range(10)]
    csv = _image_folder(tmp_path, ids, bad={3: b"not an image"})
    data = ImageFolder(labels_csv=str(csv), image_size=(6, 6), channels=1, test_fraction=0.5,
                       on_bad_image="skip").load(0, tmp_path)
    kept = set(data.labels.ids) | set(data.test_labels.ids)
    assert kept == set(ids) - {"3.png"}
    assert [Path(p).name for p in data.inputs] == list(data.labels.ids)
    assert "Skipping 1 of 10 rows" in caplog.text and "id '3.png'" in caplog.text


def test_on_bad_image_is_settable_from_the_command_line():
    recipe = Recipe(data=ImageFolder(), steps=[Report()])
    from ssl_multilabel.recipes.runner import apply_overrides

    assert apply_overrides(recipe, ["data.on_bad_image=skip"]).data.on_bad_image == "skip"


# === Item 14: decoded pixels are capped ===


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG signature and IHDR chunk declaring `width` x `height` (no pixel data follows)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))


def test_a_png_declaring_20000_by_20000_pixels_is_refused_without_decoding(tmp_path):
    from ssl_multilabel.data import BadImageError, make_dataset

    bomb = tmp_path / "bomb.png"
    _png_header(bomb, 20000, 20000)
    with pytest.raises(BadImageError, match=r"bomb\.png \(input row 0\): declares 20000 x 20000 = 400,000,000 pixels, "
                                            r"more than max_pixels=89,478,485"):
        make_dataset([str(bomb)], image_size=(8, 8))


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP", "JPEG"])
def test_max_pixels_is_configurable(tmp_path, fmt):
    from PIL import Image

    from ssl_multilabel.data import find_bad_images

    path = tmp_path / f"a.{fmt.lower()}"
    Image.fromarray(np.zeros((6, 9, 3), np.uint8)).save(path, format=fmt)  # 54 pixels
    assert find_bad_images([path], max_pixels=54) == []
    bad = find_bad_images([path], max_pixels=53)
    assert [b.reason for b in bad] == ["declares 9 x 6 = 54 pixels, more than max_pixels=53; downscale it, or raise the limit (max_pixels; `ssl-multilabel predict --max-pixels`)"]
    assert find_bad_images([path], max_pixels=None) == []


def test_max_pixels_must_be_positive():
    from ssl_multilabel.data import find_bad_images

    with pytest.raises(ValueError, match=r"Invalid value for argument `max_pixels`\. Expected None or a positive int\. "
                                         r"Received: max_pixels=0"):
        find_bad_images([], max_pixels=0)


# === Item 15: label names with $ in the report ===


def test_report_renders_labels_with_dollar_signs_as_text(tmp_path):
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [r"$\badcmd{x}$", "cost $5 and $10"]
    labels_csv, emb, truth = _tiny_embeddings(tmp_path / "in")
    for path in (labels_csv, truth):
        table = PartialLabels.load(path)
        PartialLabels.from_array(table.to_array(), names, table.ids).save(path)
    recipe = Recipe(data=Embeddings(labels_csv=str(labels_csv), embeddings=str(emb), truth_csv=str(truth)),
                    steps=[Propagate(k=3), Evaluate(split="hidden"), Report()])
    run_dir = run_recipe(recipe, tmp_path / "run")
    page = (run_dir / "report.html").read_text()
    assert "$\\badcmd{x}$" in page and "cost $5 and $10" in page  # the per-label table, as text
    # The reference: matplotlib's defaults refuse the name as mathtext, so the report did not parse it.
    figure = Figure()
    FigureCanvasAgg(figure)
    figure.text(0, 0, names[0])
    with pytest.raises(ValueError, match="badcmd"):
        figure.canvas.draw()
    assert matplotlib.rcParams["text.parse_math"] is True  # the report changed nothing globally


# === Item 16: features at the edge of float32 ===


def test_huge_l2_features_warn(caplog):
    from ssl_multilabel.propagation.graph import prepare_features

    x = np.random.default_rng(0).normal(size=(6, 3)) * 1e20
    with caplog.at_level(logging.WARNING):
        prepare_features(x, metric="l2")
    assert "`X` has rows of norm up to" in caplog.text and "squared l2 distances in float32 overflow" in caplog.text


def test_huge_cosine_features_keep_their_directions():
    from ssl_multilabel.propagation.graph import prepare_features

    x = np.random.default_rng(0).normal(size=(6, 3))
    expected = x / np.linalg.norm(x, axis=1, keepdims=True)  # float64 reference
    for scale in (1.0, 1e20, 1e-25):
        np.testing.assert_allclose(prepare_features(x * scale, metric="cosine"), expected, rtol=1e-6)


def test_validation_warning_names_labels_by_name():
    import keras

    from ssl_multilabel.training import BestMaskedMAP

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="sigmoid")])
    x = np.zeros((4, 2), np.float32)
    y = np.array([[1, 1], [0, 1], [1, 1], [0, 1]], np.float32)  # "dog" has no known negative
    callback = BestMaskedMAP((x, y), label_names=["cat", "dog"])
    callback.set_model(model)
    with pytest.warns(UserWarning, match=r"left out of the macro means: \['dog'\]"):
        callback.on_epoch_end(0, {})


def test_resume_accepts_a_run_recorded_before_a_setting_existed_and_refuses_a_changed_one(tmp_path):
    recipe = _quick_recipe(tmp_path)
    run_dir = run_recipe(recipe, tmp_path / "run")
    meta = json.loads((run_dir / "recipe.json").read_text())
    step = meta["recipe"]["steps"][0]
    assert step["metric"] == Propagate().metric  # recorded at its default
    del step["metric"]  # as written by a version whose Propagate had no `metric` yet
    del meta["recipe"]["strategy"]  # nor Recipe.strategy
    (run_dir / "recipe.json").write_text(json.dumps(meta))
    assert run_recipe(recipe, run_dir, resume=True) == run_dir
    step["k"] = 4  # a setting that was recorded with another value is another recipe
    (run_dir / "recipe.json").write_text(json.dumps(meta))
    with pytest.raises(RecipeError, match="The recipe differs from the one recorded"):
        run_recipe(recipe, run_dir, resume=True)


def test_an_evaluate_step_the_data_cannot_serve_fails_before_the_first_step_runs(tmp_path):
    labels_csv, emb, _ = _tiny_embeddings(tmp_path / "in")
    recipe = Recipe(data=Embeddings(labels_csv=str(labels_csv), embeddings=str(emb)),  # no truth, no test split
                    steps=[Propagate(k=3), Evaluate(split="test")])
    with pytest.raises(RecipeError, match=r"Step 'evaluate' \(Evaluate, split='test'\): the data have no test split"):
        run_recipe(recipe, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # Propagate never ran, so nothing is left to resume
    hidden = dataclasses.replace(recipe, steps=(Propagate(k=3), Evaluate(split="hidden")))
    with pytest.raises(RecipeError, match=r"split='hidden'\): the data have no truth table"):
        run_recipe(hidden, tmp_path / "run2")


# === New-user findings: empty label tables, test rows in training, unused photos, weights files, failed runs ===


def _photo_table(folder: Path, rows: dict[str, str], header: str = "id,cat,dog,bird") -> Path:
    """A folder with one tiny PNG per row id and `labels.csv` written as given (`rows`: id -> cells)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, image_id in enumerate(rows):
        Image.fromarray(np.full((6, 6), 20 * i, np.uint8)).save(folder / image_id)
    csv = folder / "labels.csv"
    csv.write_text("\n".join([header] + [f"{k},{v}" for k, v in rows.items()]) + "\n")
    return csv


@pytest.mark.parametrize("rows, problem", [
    ({"a.png": ",,", "b.png": ",,", "c.png": ",,"},
     "has no known label cell: all 3 rows are blank under every label ['cat', 'dog', 'bird']; expected at least one 1 or 0."),
    ({}, "has no rows; expected a header and one row per item, with 1, 0 or blank under each label."),
])
def test_a_labels_csv_without_a_known_cell_fails_at_load_and_leaves_nothing(tmp_path, rows, problem):
    csv = _photo_table(tmp_path / "photos", rows)
    before = csv.read_bytes()
    recipe = Recipe(data=ImageFolder(labels_csv=str(csv), image_size=(6, 6), channels=1), steps=[Propagate()])
    with pytest.raises(RecipeError) as caught:
        run_recipe(recipe, tmp_path / "run")
    assert str(caught.value) == f"Labels CSV (data.labels_csv) {str(csv)!r} {problem}"
    assert not (tmp_path / "run").exists() and csv.read_bytes() == before


def test_labels_without_a_known_positive_are_named_in_one_warning(tmp_path, caplog):
    csv = _photo_table(tmp_path / "photos", {"a.png": "1,0,", "b.png": "0,0,", "c.png": ",0,"})
    with caplog.at_level(logging.WARNING, logger="ssl_multilabel.recipes.data"):
        data = ImageFolder(labels_csv=str(csv), image_size=(6, 6), channels=1, test_fraction=0.0).load(0, tmp_path)
    (record,) = [r for r in caplog.records if "no known positive" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"Labels CSV (data.labels_csv) {csv} has no known positive for 2 of 3 labels: ['dog', 'bird'] (their cells "
        "are blank or 0); the model cannot learn them until a positive (1) is given, their scores mean nothing, and "
        "the completed table leaves their blank cells blank.")
    assert data.labels.ids == ("a.png", "b.png", "c.png")  # a warning, not a refusal: every row is used


def test_a_test_csv_sharing_images_with_the_labels_csv_is_refused(tmp_path):
    csv = _photo_table(tmp_path / "photos", {f"{c}.png": "1,0,0" for c in "abcde"})
    test_csv = tmp_path / "test.csv"
    test_csv.write_text("id,cat,dog,bird\ne.png,1,0,0\nz.png,0,1,0\nc.png,0,0,1\n")
    data = ImageFolder(labels_csv=str(csv), test_csv=str(test_csv), image_size=(6, 6), channels=1)
    with pytest.raises(RecipeError) as caught:
        data.load(0, tmp_path)
    assert str(caught.value) == (
        f"Test labels CSV (data.test_csv) {str(test_csv)!r} and labels CSV (data.labels_csv) {str(csv)!r} share 2 "
        "image(s), e.g. ['e.png', 'c.png']: test images must not be training images (their labels would leak into "
        "training and inflate the test scores); remove them from one of the two files.")
    # The same names in a test folder of their own are other photos: accepted.
    _photo_table(tmp_path / "test_photos", {"e.png": "", "z.png": "", "c.png": ""})
    separate = dataclasses.replace(data, test_image_dir=str(tmp_path / "test_photos")).load(0, tmp_path)
    assert separate.test_labels.ids == ("e.png", "z.png", "c.png") and len(separate.inputs) == 5


def test_images_no_csv_names_are_counted_in_one_info_line(tmp_path, caplog):
    from PIL import Image

    csv = _photo_table(tmp_path / "photos", {"a.png": "1,0,1", "b.png": "0,1,1"})
    folder = csv.parent
    for name in ("y.jpg", "x.png", "t.png", "sub/deep.png"):
        (folder / name).parent.mkdir(exist_ok=True)
        Image.fromarray(np.zeros((6, 6), np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    test_csv = tmp_path / "test.csv"
    test_csv.write_text("id,cat,dog,bird\nt.png,1,0,0\n")
    with caplog.at_level(logging.INFO, logger="ssl_multilabel.recipes.data"):
        data = ImageFolder(labels_csv=str(csv), test_csv=str(test_csv), image_size=(6, 6), channels=1).load(0, tmp_path)
    said = [r.getMessage() for r in caplog.records if "not used" in r.getMessage()]
    assert said == [f"2 images in {folder} are not in {csv} or {test_csv} and are not used, e.g. x.png, y.jpg. To "
                    f"train on them as unlabeled images, add a row for each to {csv} with every label cell blank."]
    assert data.inputs == [str(folder / "a.png"), str(folder / "b.png")] and data.test_inputs == [str(folder / "t.png")]


@pytest.mark.parametrize("content, problem", [
    (None, "does not exist"),
    (b"<html>404 Not Found</html>", "is not an HDF5 file (no HDF5 signature)"),
])
def test_a_weights_file_that_cannot_be_loaded_is_refused_before_the_run_directory(tmp_path, capsys, content, problem):
    weights = tmp_path / "mobilenet_notop.weights.h5"
    if content is not None:
        weights.write_bytes(content)
    photos = Path(__file__).resolve().parents[1] / "recipes" / "photos.py"
    assert main(["run", str(photos), "--out", str(tmp_path / "run"), "--set", f"supervised.weights={weights}"]) == 2
    assert one_error_line(capsys) == (
        f"error: Step setting supervised.weights: the file {str(weights)!r} {problem}; expected '' (random), "
        "'imagenet' or the path of an existing *_notop .weights.h5 file of the step's backbone.")
    assert not (tmp_path / "run").exists()
    if content is not None:
        assert weights.read_bytes() == content


@pytest.mark.parametrize("error, status", [(RuntimeError("power cut\nsecond line"), "failed"), (KeyboardInterrupt(), "interrupted")])
def test_a_failed_run_records_its_error_and_resume_clears_it(tmp_path, monkeypatch, error, status):
    labels_csv, emb, _ = _tiny_embeddings(tmp_path / "in")
    recipe = Recipe(data=Embeddings(labels_csv=str(labels_csv), embeddings=str(emb)), steps=[Propagate(), Propagate()])

    def fail_second(self, ctx, state, original=Propagate.run):
        if ctx.index == 1:
            raise error
        return original(self, ctx, state)

    monkeypatch.setattr(Propagate, "run", fail_second)
    with pytest.raises(type(error)):
        run_recipe(recipe, tmp_path / "run")
    state = read_run(tmp_path / "run")[1]
    assert state["status"] == status and [r["name"] for r in state["finished"]] == ["propagate"]
    assert state.get("error") == ("RuntimeError: power cut" if status == "failed" else None)
    # The traceback of an error is in log.txt (the command line prints one line): an error from
    # inside the library can be told from a user's and reported.
    log = (tmp_path / "run" / "log.txt").read_text()
    assert ("The run stopped with an error:" in log and "Traceback" in log and "in fail_second" in log
            and "RuntimeError: power cut" in log) == (status == "failed")
    monkeypatch.undo()
    resume_run(tmp_path / "run")
    state = read_run(tmp_path / "run")[1]
    assert state["status"] == "finished" and "error" not in state and len(state["finished"]) == 2


@pytest.mark.parametrize("data, named", [
    (ImageFolder(image_dir="photos"), "image_dir"),
    (Embeddings(embeddings="e.npy"), "embeddings"),
    (Embeddings(truth_csv="t.csv"), "truth_csv"),
])
def test_a_data_path_without_its_labels_csv_is_refused_before_the_run_directory(tmp_path, data, named):
    # Without data.labels_csv the source would run on its demo data and ignore the path given.
    recipe = Recipe(data=data, steps=[Propagate()])
    with pytest.raises(RecipeError, match=rf"^data.{named} is set but data.labels_csv is empty: give the labels CSV too"):
        run_recipe(recipe, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_image_size_whose_batch_would_not_fit_is_refused_before_the_run(tmp_path):
    from ssl_multilabel.recipes import ImageFolder, Supervised
    from ssl_multilabel.recipes.runner import _check_batch_bytes

    csv = _photo_table(tmp_path / "photos", {"a.png": "1,0,", "b.png": "0,1,"})
    data = ImageFolder(labels_csv=str(csv), image_size=(3000, 3000), channels=3)
    # 64 x 3000 x 3000 x 3 float32 = 6.44 GiB (by hand: 6,912,000,000 bytes / 2^30)
    with pytest.raises(RecipeError, match=r"data.image_size \(3000, 3000\) with supervised.batch_size 64: one batch of "
                                          r"images takes 6\.4 GiB as float32 .* expected at most 2 GiB"):
        run_recipe(Recipe(data=data, steps=[Supervised(batch_size=64)]), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    _check_batch_bytes(Recipe(data=data, steps=[Supervised(batch_size=8)]))  # 0.80 GiB: accepted


def test_a_folder_as_labels_csv_and_a_windows_path_as_id_say_what_is_wrong(tmp_path):
    csv = _photo_table(tmp_path / "photos", {"a.png": "1,0,1", "b.png": "0,1,0"})
    with pytest.raises(IsADirectoryError, match=r"data.labels_csv\) '.*photos' is a folder; expected the CSV file"):
        ImageFolder(labels_csv=str(csv.parent), image_size=(6, 6), channels=1, test_fraction=0.0).load(0, tmp_path)
    (tmp_path / "photos" / "sub").mkdir()
    csv.write_text("id,cat,dog,bird\na.png,1,0,1\nsub\\b.png,0,1,0\n")
    with pytest.raises(ValueError, match=r"Row 2 \(id 'sub\\\\b.png'\) of .*without '..' or a leading '/' \(write "
                                         r"sub-folders with '/', not '\\'\)"):
        ImageFolder(labels_csv=str(csv), image_size=(6, 6), channels=1, test_fraction=0.0).load(0, tmp_path)


@pytest.mark.parametrize("on_disk, hint", [
    ("cafe\u0301.png", "the same name with its accents encoded another way"),  # decomposed, as macOS writes it
    ("CAF\u00c9.png", "file names are case-sensitive"),
])
def test_a_missing_image_whose_name_differs_only_in_form_is_pointed_at(tmp_path, on_disk, hint):
    from PIL import Image

    csv = _photo_table(tmp_path / "photos", {"a.png": "1,0,1", "b.png": "0,1,0"})
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(tmp_path / "photos" / on_disk)
    csv.write_text("id,cat,dog,bird\na.png,1,0,1\nb.png,0,1,0\ncaf\u00e9.png,1,1,0\n")  # composed é
    with pytest.raises(FileNotFoundError, match=rf"e.g. '.*caf\u00e9.png' \(the folder holds {on_disk!r}.{{1,2}} {hint}"):
        ImageFolder(labels_csv=str(csv), image_size=(6, 6), channels=1, test_fraction=0.0).load(0, tmp_path)


# === New-user findings (2026-12-07): an edited table on resume, one photo under two ids, test folders ===


def test_resume_refuses_data_changed_since_the_finished_steps(tmp_path, monkeypatch, caplog):
    _run_failing_in_second_step(tmp_path, monkeypatch, [Propagate(name="first"), Propagate(name="second")])
    labels_csv = tmp_path / "in" / "labels.csv"
    original = labels_csv.read_text()
    table = PartialLabels.load(labels_csv)
    row = int(np.flatnonzero(table.known[:, 0])[0])
    edited = table.to_array()
    edited[row, 0] = 1 - edited[row, 0]  # one human cell turned over
    PartialLabels.from_array(edited, table.label_names, table.ids).save(labels_csv)
    finished_before = read_run(tmp_path / "run")[1]["finished"]
    with pytest.raises(RecipeError, match=r"changed since its finished steps ran \(the training table or the inputs differ "
                                          r"from what step 'first' was given: is .*labels\.csv edited, "
                                          r"or an image replaced\?\)"):
        resume_run(tmp_path / "run")
    assert read_run(tmp_path / "run")[1]["finished"] == finished_before  # the second step did not run
    labels_csv.write_text(original)
    with caplog.at_level(logging.INFO, logger="ssl_multilabel.recipes.runner"):
        resume_run(tmp_path / "run")
        assert read_run(tmp_path / "run")[1]["status"] == "finished"
        resume_run(tmp_path / "run")  # again: nothing left to run
    assert f"{tmp_path / 'run'} finished all 2 steps: nothing to resume." in caplog.text


def test_the_data_digest_sees_a_test_row_edited_and_a_photo_replaced(tmp_path):
    # A resumed run scored its two Evaluate steps on two test tables (a held-out row edited), and
    # kept training on features of a photo replaced under its name: the digest covers both now.
    import os

    from ssl_multilabel.recipes.runner import _data_digest

    rows = {f"{i}.png": ("1,0,1" if i % 2 else "0,1,0") for i in range(12)}
    csv = _photo_table(tmp_path / "photos", rows)
    source = ImageFolder(labels_csv=str(csv), image_dir=str(tmp_path / "photos"), image_size=(6, 6), channels=1,
                         test_fraction=0.3)
    data = source.load(0, tmp_path)
    before = _data_digest(data, source)
    assert _data_digest(source.load(0, tmp_path), source) == before  # nothing changed: the same digest
    held = data.test_labels.ids[0]
    assert held not in data.labels.ids  # a row of the test split, not of the training table
    original = csv.read_text()
    csv.write_text(original.replace(f"{held},{rows[held]}", f"{held},1,1,1"))
    edited = source.load(0, tmp_path)
    np.testing.assert_array_equal(edited.labels.values, data.labels.values)  # the training table is the same
    assert _data_digest(edited, source) != before
    csv.write_text(original)
    assert _data_digest(source.load(0, tmp_path), source) == before
    photo = tmp_path / "photos" / data.labels.ids[0]
    stamp = photo.stat().st_mtime_ns
    photo.write_bytes((tmp_path / "photos" / data.labels.ids[1]).read_bytes())  # another photo under its name
    os.utime(photo, ns=(stamp + 10**9, stamp + 10**9))
    assert _data_digest(source.load(0, tmp_path), source) != before


def test_the_data_digest_of_a_folder_moved_whole_is_the_same(tmp_path):
    """The digest hashed each image's absolute path: a run directory moved with its demo images
    inside could not be resumed ("the data changed"). Paths count relative to the images' folder;
    sizes and modification times still count."""
    import os
    import shutil

    from ssl_multilabel.recipes.runner import _data_digest

    rows = {f"{i}.png": ("1,0,1" if i % 2 else "0,1,0") for i in range(12)}
    csv = _photo_table(tmp_path / "a" / "photos", rows)

    def digest(folder):
        source = ImageFolder(labels_csv=str(folder / csv.name), image_dir=str(folder), image_size=(6, 6),
                             channels=1, test_fraction=0.3)
        return _data_digest(source.load(0, tmp_path), source)

    before = digest(tmp_path / "a" / "photos")
    shutil.copytree(tmp_path / "a", tmp_path / "moved" / "b")  # copy2: sizes and modification times kept
    assert digest(tmp_path / "moved" / "b" / "photos") == before
    photo = tmp_path / "moved" / "b" / "photos" / "0.png"
    stamp = photo.stat().st_mtime_ns
    os.utime(photo, ns=(stamp + 10**9, stamp + 10**9))
    assert digest(tmp_path / "moved" / "b" / "photos") != before


def test_machine_filled_cells_are_never_test_truth(tmp_path):
    # A run's filled table given as the next run's labels: rows whose known cells were all filled by
    # a model made the test split, and the report's test mAP scored a model against a model.
    from ssl_multilabel.labeling import test_side

    rows = {f"{i}.png": "1,0,1" for i in range(12)}
    csv = _photo_table(tmp_path / "photos", rows)
    table = PartialLabels.load(csv)
    human = np.arange(12) % 2 == 0
    machine = np.where(human[:, None], -1.0, table.to_array())
    filled = table.restrict(np.repeat(human[:, None], 3, axis=1)).fill(machine, 0.8, source="propagated")
    filled.save(csv)
    source = ImageFolder(labels_csv=str(csv), image_dir=str(tmp_path / "photos"), image_size=(6, 6), channels=1,
                         test_fraction=0.5)
    data = source.load(0, tmp_path)
    side = test_side(table.ids, 0.5, 0)
    assert sorted(data.test_labels.ids) == sorted(i for i, h, t in zip(table.ids, human, side) if h and t)
    assert (data.test_labels.source[data.test_labels.known] == Source.HUMAN).all()
    machine_only_on_test_side = [i for i, h, t in zip(table.ids, human, side) if t and not h]
    assert machine_only_on_test_side and set(machine_only_on_test_side) <= set(data.labels.ids)  # trained on


def test_one_image_under_two_ids_is_refused(tmp_path):
    csv = _photo_table(tmp_path / "photos", {"a.png": "1,0,1", "b.png": "0,1,0"})
    csv.write_text("id,cat,dog,bird\na.png,1,0,1\nb.png,0,1,0\n./a.png,1,0,1\n")
    with pytest.raises(ValueError) as caught:
        ImageFolder(labels_csv=str(csv), image_size=(6, 6), channels=1).load(0, tmp_path)
    assert str(caught.value) == (f"Rows 1 and 3 of {str(csv)!r} name the same image ('a.png' and './a.png'); "
                                 "expected one row per image: merge the two rows.")


def test_a_separate_test_folder_is_not_counted_as_unused_training_images(tmp_path, caplog):
    from PIL import Image

    csv = _photo_table(tmp_path / "photos", {"a.png": "1,0,1", "b.png": "0,1,0"})
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(csv.parent / "x.png")  # unused, in the training folder
    test_csv = _photo_table(tmp_path / "test_photos", {"t.png": "1,0,0", "u.png": "", "v.png": ""})
    test_csv.write_text("id,cat,dog,bird\nt.png,1,0,0\n")  # u.png and v.png: not in the test table
    with caplog.at_level(logging.INFO, logger="ssl_multilabel.recipes.data"):
        ImageFolder(labels_csv=str(csv), test_csv=str(test_csv), test_image_dir=str(test_csv.parent),
                    image_size=(6, 6), channels=1).load(0, tmp_path)
    said = [r.getMessage() for r in caplog.records if "not used" in r.getMessage()]
    assert said == [f"1 images in {csv.parent} are not in {csv} and are not used, e.g. x.png. To train on them as "
                    f"unlabeled images, add a row for each to {csv} with every label cell blank."]


def test_skipping_bad_images_that_leaves_no_known_cell_says_so(tmp_path):
    csv = _photo_table(tmp_path / "photos", {"a.png": "1,0,1", "b.png": ",,"})
    (csv.parent / "a.png").write_bytes(b"")  # the one labeled row's image is empty
    with pytest.raises(RecipeError) as caught:
        ImageFolder(labels_csv=str(csv), image_size=(6, 6), channels=1, on_bad_image="skip").load(0, tmp_path)
    assert str(caught.value) == (f"{str(csv)!r}: after skipping the 1 rows whose image cannot be used "
                                 "(on_bad_image=skip), no known label cell is left in its 1 other rows; expected at "
                                 "least one 1 or 0: fix or replace those images.")


def test_no_labeled_row_on_the_test_side_is_explained(tmp_path):
    from ssl_multilabel.labeling import test_side

    ids = [f"{i}.png" for i in range(12)]
    # Two labeled rows, both on the training side of data.test_fraction=0.2 (checked with the split's own hash).
    labeled = [i for i in ids if not test_side((i,), 0.2, 0)[0]][:2]
    csv = _photo_table(tmp_path / "photos", {i: ("1,0,1" if i in labeled else ",,") for i in ids})
    recipe = Recipe(data=ImageFolder(labels_csv=str(csv), image_size=(6, 6), channels=1), steps=[Evaluate()])
    with pytest.raises(RecipeError) as caught:
        run_recipe(recipe, tmp_path / "run")
    assert str(caught.value) == (
        "Step 'evaluate' (Evaluate, split='test'): the data have no test split (an ImageFolder reads one from "
        "data.test_csv, or holds out about data.test_fraction of its labeled rows, chosen by a hash of their id: with "
        "few labeled rows that can be none); give one, or set evaluate.optional=true to skip it.")
