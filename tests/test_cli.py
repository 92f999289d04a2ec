"""The `ssl-multilabel` command line: help, one-line user errors, run / resume after kill -9,
propagate, predict, labels."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from _cli import one_error_line
from ssl_multilabel.cli import get_args_parser, main
from ssl_multilabel.labels import PartialLabels, Source

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from test_recipe import _tiny_embeddings  # noqa: E402

COMMANDS = ["run", "resume", "report", "propagate", "predict", "labels"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _tiny_recipe(folder: Path) -> Path:
    """A recipe script: two propagation steps, a hidden-cell evaluation and an export."""
    labels_csv, emb, truth = _tiny_embeddings(folder / "in", n=60)
    script = folder / "tiny.py"
    script.write_text(
        "from ssl_multilabel.cli import run_cli\n"
        "from ssl_multilabel.recipes import Embeddings, Evaluate, Export, Propagate, Recipe\n"
        f"RECIPE = Recipe(name='tiny', data=Embeddings(labels_csv={str(labels_csv)!r}, "
        f"embeddings={str(emb)!r}, truth_csv={str(truth)!r}),\n"
        "    steps=[Propagate(name='coarse', k=3, target_precision=None, positive_threshold=0.7, negative_threshold=0.3),\n"
        "           Propagate(name='fine', k=6, target_precision=0.9),\n"
        "           Evaluate(split='hidden'), Export()], seed=3)\n"
        "if __name__ == '__main__':\n    run_cli(RECIPE)\n"
    )
    return script


# === Help and errors ===


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: ssl-multilabel {command}" in capsys.readouterr().out


def test_parser_lists_the_commands():
    text = get_args_parser().format_help()
    assert all(command in text for command in COMMANDS)



def test_missing_recipe_file_is_one_line(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.py")]) == 2
    assert "nope.py' does not exist" in one_error_line(capsys)


def test_bad_override_is_one_line(tmp_path, capsys):
    script = _tiny_recipe(tmp_path)
    assert main(["run", str(script), "--out", str(tmp_path / "run"), "--set", "fine.k=many"]) == 2
    assert one_error_line(capsys) == "error: --set fine.k=many: expected an int; got 'many'."
    assert not (tmp_path / "run").exists()


def test_unknown_step_parameter_in_recipe_file_is_one_line(tmp_path, capsys):
    script = tmp_path / "bad.py"
    script.write_text("from ssl_multilabel.recipes import *\nRECIPE = Recipe(data=Embeddings(), steps=[Propagate(kk=3)])\n")
    assert main(["run", str(script)]) == 2
    line = one_error_line(capsys)
    assert "Propagate has no parameter 'kk'" in line and "Valid parameters: ['name', 'k', 'alpha'" in line


def test_missing_argument_is_one_line(capsys):
    assert main(["propagate", "--labels", "x.csv"]) == 2
    assert "the following arguments are required: --embeddings, --out" in one_error_line(capsys)


def test_recipe_script_error_in_a_real_process(tmp_path):
    """`python recipes/x.py --set ...` with a bad value: one stderr line, exit 2, no traceback."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "propagate_embeddings.py"), "--out", str(tmp_path / "r"),
         "--set", "propagate.alpha=1.5"],
        capture_output=True, text=True, env=_env(), timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --set propagate.alpha=1.5: Invalid value for parameter `alpha` of Propagate. "
        "Expected a number < 1.0. Received: alpha=1.5"
    ]


def test_a_bad_value_names_only_its_own_set(tmp_path, capsys):
    # Several settings of one data source or step are applied together; the error names the bad one.
    assert main(["run", str(ROOT / "recipes" / "photos.py"), "--out", str(tmp_path / "r"), "--set", "data.labels_csv=a.csv",
                 "--set", "data.id_column=image", "--set", "data.test_fraction=1.5"]) == 2
    assert one_error_line(capsys) == (
        "error: --set data.test_fraction=1.5: Invalid value for parameter `test_fraction` of ImageFolder. "
        "Expected a number < 1.0. Received: test_fraction=1.5")
    assert not (tmp_path / "r").exists()
    # A step's own rule names the setting in plain words: still only that --set is named.
    assert main(["run", str(ROOT / "recipes" / "photos.py"), "--out", str(tmp_path / "r"), "--set", "supervised.epochs=3",
                 "--set", f"supervised.init_model={tmp_path}"]) == 2
    assert one_error_line(capsys) == (
        f"error: --set supervised.init_model={tmp_path}: Supervised: init_model must be the path of a .keras model; "
        f"got {str(tmp_path)!r}.")
    # A rule across two settings names both.
    assert main(["run", str(ROOT / "recipes" / "photos.py"), "--out", str(tmp_path / "r"), "--set", "supervised.epochs=3",
                 "--set", "supervised.init_model=m.keras", "--set", "supervised.from_scratch=true"]) == 2
    assert one_error_line(capsys).startswith(
        "error: --set supervised.init_model=m.keras, --set supervised.from_scratch=true: Supervised: init_model and "
        "from_scratch=True contradict each other")


def test_show_prints_resolved_parameters(tmp_path, capsys):
    script = _tiny_recipe(tmp_path)
    assert main(["run", str(script), "--show", "--set", "fine.k=9"]) == 0
    out = capsys.readouterr().out
    assert "step fine: Propagate" in out and "k = 9" in out


# === Run, kill -9, resume ===


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        try:  # wait on the process itself between checks, so an early exit is seen at once
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"process ended early: {proc.communicate()}")


def test_resume_after_kill_matches_uninterrupted_run(tmp_path, capsys):
    script = _tiny_recipe(tmp_path)
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"

    env = _env()
    env["SSL_MULTILABEL_PAUSE_AT"] = "fine:after_scores"  # inside step 2, after a partial output
    proc = subprocess.Popen([sys.executable, str(script), "--out", str(killed_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(killed_dir / ".paused", proc)
    assert (killed_dir / "steps" / ".02_fine.tmp" / "scores.npy").is_file()
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    state = json.loads((killed_dir / "state.json").read_text())
    assert [r["name"] for r in state["finished"]] == ["coarse"] and state["status"] == "running"
    coarse_labels = (killed_dir / "steps" / "01_coarse" / "labels.npz").read_bytes()

    assert main(["resume", str(killed_dir)]) == 0
    assert main(["run", str(script), "--out", str(clean_dir)]) == 0
    capsys.readouterr()

    # The finished step was kept as it was, the killed one restarted and completed.
    assert (killed_dir / "steps" / "01_coarse" / "labels.npz").read_bytes() == coarse_labels
    assert not (killed_dir / "steps" / ".02_fine.tmp").exists()
    state = json.loads((killed_dir / "state.json").read_text())
    assert [r["name"] for r in state["finished"]] == ["coarse", "fine", "evaluate", "export"]
    for name in ("labels.npz", "export/labels.csv", "export/labels.csv.meta.json"):
        assert (killed_dir / name).read_bytes() == (clean_dir / name).read_bytes(), name
    metrics = [json.loads((d / "steps" / "03_evaluate" / "metrics.json").read_text()) for d in (killed_dir, clean_dir)]
    assert metrics[0] == metrics[1]
    # And the run is right: both clusters are separable, so hidden cells are ranked perfectly.
    assert metrics[0]["mAP"] == pytest.approx(1.0)


def test_resume_of_a_non_run_directory_is_one_line(tmp_path, capsys):
    assert main(["resume", str(tmp_path)]) == 2
    assert "is not a run directory: recipe.json is missing" in one_error_line(capsys)


def test_ctrl_c_names_the_run_directory_to_resume(tmp_path, capsys, monkeypatch):
    from ssl_multilabel.recipes.runner import StepContext

    script = _tiny_recipe(tmp_path)

    def ctrl_c(self, point):  # Ctrl-C inside step 2, after step 1 finished
        if f"{self.step.name}:{point}" == "fine:after_scores":
            raise KeyboardInterrupt

    monkeypatch.setattr(StepContext, "checkpoint", ctrl_c)
    monkeypatch.chdir(tmp_path)  # no --out: the default runs/tiny-<time>, which the line must name
    assert main(["run", str(script)]) == 130
    [run_dir] = (tmp_path / "runs").iterdir()
    assert one_error_line(capsys) == f"error: interrupted; continue with `ssl-multilabel resume {run_dir}`"
    assert main(["resume", str(run_dir)]) == 130  # interrupted again, in resume
    assert one_error_line(capsys) == f"error: interrupted; continue with `ssl-multilabel resume {run_dir}`"
    monkeypatch.undo()
    assert main(["resume", str(run_dir)]) == 0  # the printed command continues the run
    state = json.loads((run_dir / "state.json").read_text())
    assert [r["name"] for r in state["finished"]] == ["coarse", "fine", "evaluate", "export"]


def test_ctrl_c_line_without_a_run_to_resume(tmp_path):
    from ssl_multilabel.cli import _interrupted_line, _Interrupted

    assert _interrupted_line(KeyboardInterrupt()) == "error: interrupted"  # not a run (predict, suggest, ...)
    # stopped before its first step: the runner removed the run directory, there is nothing to resume
    assert _interrupted_line(_Interrupted(tmp_path / "new run")).startswith("error: interrupted before the run started")
    (tmp_path / "my run").mkdir()
    (tmp_path / "my run" / "recipe.json").write_text("{}")
    assert _interrupted_line(_Interrupted(tmp_path / "my run")) == (
        f"error: interrupted; continue with `ssl-multilabel resume '{tmp_path / 'my run'}'`")  # quoted for the shell


# === propagate, labels, predict ===


@pytest.mark.parametrize("mode", [["--target-precision", "none", "--positive-threshold", "0.55",
                                   "--negative-threshold", "0.45"], []])
def test_propagate_command_fills_only_unknown_cells(tmp_path, capsys, mode):
    labels_csv, emb, truth_csv = _tiny_embeddings(tmp_path / "in")
    out = tmp_path / "filled.csv"
    assert main(["propagate", "--labels", str(labels_csv), "--embeddings", str(emb), "--out", str(out),
                 "--k", "4", *mode]) == 0
    assert "Filled" in capsys.readouterr().out
    given, filled, truth = (PartialLabels.load(p) for p in (labels_csv, out, truth_csv))
    assert np.array_equal(filled.values[given.known], given.values[given.known])
    assert np.all(filled.source[given.known] == Source.HUMAN)
    new = filled.known & ~given.known
    assert new.sum() > 0 and np.all(filled.source[new] == Source.PROPAGATED)
    assert np.all((filled.values[new] >= 0.5) == (truth.values[new] >= 0.5))


def test_propagate_command_reads_and_writes_the_given_id_column(tmp_path, capsys):
    labels_csv, emb, _ = _tiny_embeddings(tmp_path / "in")
    text = labels_csv.read_text()
    assert text.startswith("id,")
    renamed = tmp_path / "in" / "images.csv"
    renamed.write_text("image," + text[len("id,"):])
    out = tmp_path / "filled.csv"
    args = ["propagate", "--labels", str(renamed), "--embeddings", str(emb), "--k", "4"]
    assert main([*args, "--out", str(out), "--id-column", "image"]) == 0
    assert out.read_text().splitlines()[0] == "image,a,b"
    filled, reference = PartialLabels.load(out, id_column="image"), tmp_path / "reference.csv"
    assert main(["propagate", "--labels", str(labels_csv), "--embeddings", str(emb), "--k", "4",
                 "--out", str(reference)]) == 0
    expected = PartialLabels.load(reference)  # the same table under its `id` column fills the same cells
    assert filled.ids == expected.ids and np.array_equal(filled.known, expected.known)
    np.testing.assert_array_equal(filled.values, expected.values)
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "x.csv")]) == 2  # without it: the id column is missing, one line
    assert "'id'" in capsys.readouterr().err


def test_propagate_command_rejects_mismatched_embeddings(tmp_path, capsys):
    labels_csv, _, _ = _tiny_embeddings(tmp_path / "in")
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 2)))
    assert main(["propagate", "--labels", str(labels_csv), "--embeddings", str(bad), "--out", str(tmp_path / "o.csv")]) == 2
    assert "has shape (3, 2); expected (40, d)" in one_error_line(capsys)


def test_label_columns_option_leaves_metadata_columns_out(tmp_path, capsys):
    """`propagate` and `labels` read a CSV that also holds an age and a 0/1 view column with
    `--label-columns`: the same cells as the CSV of the labels alone; without it the age is one
    error line that names the option, and a 0/1 column would be read as a label."""
    import pandas as pd

    labels_csv, emb, _ = _tiny_embeddings(tmp_path / "in")
    frame = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)
    wide = frame.assign(age=[str(20 + i) for i in range(len(frame))], frontal=["1", "0"] * (len(frame) // 2))
    wide = wide[["id", "age", "b", "frontal", "a"]]
    wide_csv = tmp_path / "wide.csv"
    wide.to_csv(wide_csv, index=False)
    common = ["--embeddings", str(emb), "--k", "4"]
    assert main(["propagate", "--labels", str(labels_csv), *common, "--out", str(tmp_path / "ref.csv")]) == 0
    assert main(["propagate", "--labels", str(wide_csv), *common, "--out", str(tmp_path / "w.csv"),
                 "--label-columns", "a, b"]) == 0
    reference, filled = PartialLabels.load(tmp_path / "ref.csv"), PartialLabels.load(tmp_path / "w.csv")
    assert filled.label_names == ("a", "b") and np.array_equal(filled.known, reference.known)
    np.testing.assert_array_equal(filled.values, reference.values)
    capsys.readouterr()
    assert main(["propagate", "--labels", str(wide_csv), *common, "--out", str(tmp_path / "x.csv")]) == 2
    assert "column 'age'" in (line := one_error_line(capsys)) and "--label-columns" in line
    assert main(["labels", str(wide_csv), "--label-columns", "b,frontal"]) == 0
    out = capsys.readouterr().out
    n_pos = {line.split()[0]: int(line.split()[1]) for line in out.splitlines() if line.startswith(("b ", "frontal"))}
    assert n_pos == {"b": int((frame["b"] == "1").sum()), "frontal": len(frame) // 2}
    assert main(["labels", str(wide_csv), "--label-columns", "a,,b"]) == 2  # argparse: an empty name
    assert "comma-separated column names" in capsys.readouterr().err


def test_labels_command_prints_counts(tmp_path, capsys):
    PartialLabels.from_array([[1, -1], [0, 1], [-1, -1]], ["cat", "dog"]).save(tmp_path / "t.csv")
    assert main(["labels", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:4] for line in out.splitlines() if line.startswith(("cat", "dog"))}
    assert rows == {"cat": ["1", "1", "1"], "dog": ["1", "0", "2"]}  # positives, negatives, unknown
    assert "3 rows, 2 labels, 50.0% of cells known" in out


def _predict(tmp_path, model, images):
    """Save `model` and the grey `images` as PNGs under `tmp_path`, run `predict`; the CSV as a frame."""
    import pandas as pd
    from PIL import Image

    model.save(tmp_path / "m.keras")
    (tmp_path / "imgs").mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / "imgs" / f"{i}.png")
    out = tmp_path / "scores.csv"
    assert main(["predict", "--model", str(tmp_path / "m.keras"), "--images", str(tmp_path / "imgs"),
                 "--out", str(out)]) == 0
    return pd.read_csv(out)


def test_predict_command_matches_model_predict(tmp_path, capsys):
    from ssl_multilabel.models import build_classifier

    model = build_classifier("small_cnn", 3, (28, 28, 1), seed=0)
    (tmp_path / "m.keras.labels.json").write_text(json.dumps(["x", "y", "z"]))
    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    frame = _predict(tmp_path, model, images)
    assert list(frame.columns) == ["id", "x", "y", "z"] and list(frame["id"]) == ["0.png", "1.png", "2.png"]
    expected = model.predict(images[..., None].astype(np.float32), verbose=0)
    np.testing.assert_allclose(frame[["x", "y", "z"]].to_numpy(), expected, rtol=1e-4, atol=1e-5)


def test_predict_command_keeps_the_ranking_of_saturated_scores(tmp_path):
    # Scores near 1 differ only in the 7th significant digit: the CSV must keep them apart (with
    # 6 significant digits they became ties, and AP computed from the CSV differed from the step's).
    from ssl_multilabel.models import build_classifier

    model = build_classifier("small_cnn", 1, (28, 28, 1), seed=0)
    kernel, bias = model.get_layer("scores").get_weights()
    model.get_layer("scores").set_weights([kernel, bias + 14.0])  # sigmoid(14) = 1 - 8.3e-7
    images = np.random.default_rng(1).integers(0, 256, size=(8, 28, 28), dtype=np.uint8)
    written = _predict(tmp_path, model, images)["label_0"].to_numpy()
    expected = model.predict(images[..., None].astype(np.float32), verbose=0)[:, 0]
    assert expected.min() > 0.99999 and len(np.unique(expected)) > 1  # saturated, yet not all equal
    assert len(np.unique(written)) == len(np.unique(expected))
    np.testing.assert_array_equal(np.argsort(written, kind="stable"), np.argsort(expected, kind="stable"))


def test_predict_names_a_missing_label_file_and_a_file_or_folder_in_the_wrong_place(tmp_path, capsys):
    from ssl_multilabel.models import build_classifier

    model = build_classifier("small_cnn", 2, (28, 28, 1), seed=0)
    images = np.random.default_rng(0).integers(0, 256, size=(2, 28, 28), dtype=np.uint8)
    frame = _predict(tmp_path, model, images)  # no m.keras.labels.json beside the model
    assert list(frame.columns) == ["id", "label_0", "label_1"]
    err = capsys.readouterr().err
    assert "m.keras.labels.json' (the label names Export writes beside a model) does not exist" in err
    out = ["--out", str(tmp_path / "other.csv")]
    assert main(["predict", "--model", str(tmp_path), "--images", str(tmp_path / "imgs"), *out]) == 2
    assert one_error_line(capsys) == f"error: --model {str(tmp_path)!r} is a folder; give the .keras file (e.g. RUN_DIR/export/model.keras)."
    assert main(["predict", "--model", str(tmp_path / "m.keras"), "--images", str(tmp_path / "imgs" / "0.png"), *out]) == 2
    assert one_error_line(capsys).startswith(f"error: --images {str(tmp_path / 'imgs' / '0.png')!r} is a file; give the folder")
    # The id column named as the user's tables name it; a label's name is refused.
    assert main(["predict", "--model", str(tmp_path / "m.keras"), "--images", str(tmp_path / "imgs"), *out,
                 "--id-column", "image"]) == 0
    assert (tmp_path / "other.csv").read_text().splitlines()[0] == "image,label_0,label_1"
    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "m.keras"), "--images", str(tmp_path / "imgs"), "--out",
                 str(tmp_path / "third.csv"), "--id-column", "label_1"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --id-column 'label_1' is the name of one of the model's labels; choose another.")
    assert not (tmp_path / "third.csv").exists()


def test_predict_command_scores_subfolders_and_webp_with_relative_ids_and_says_what_it_left_out(tmp_path, capsys):
    import pandas as pd
    from PIL import Image, ImageOps

    from ssl_multilabel.data.pipeline import SUPPORTED_FORMATS
    from ssl_multilabel.models import build_classifier

    model = build_classifier("small_cnn", 2, (28, 28, 1), seed=0)
    model.save(tmp_path / "m.keras")
    images = np.random.default_rng(3).integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    folder = tmp_path / "photos"
    (folder / "sub dir").mkdir(parents=True)
    # WebP if TF decodes it; a phone photo stored sideways with the EXIF tag that says so (6: turn it clockwise).
    names = ["a.png", "sub dir/b.png", "c.webp" if "WEBP" in SUPPORTED_FORMATS else "c.bmp", "d.jpg"]
    exif = Image.Exif()
    exif[0x0112] = 6
    for name, image in zip(names, images):
        options = {"lossless": True} if name.endswith(".webp") else {"exif": exif} if name.endswith(".jpg") else {}
        Image.fromarray(image).save(folder / name, **options)
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # what a file browser leaves behind: hidden, not read
    (folder / "sub dir" / "notes.txt").write_text("not an image")
    (folder / "IMG_0002.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    out = tmp_path / "scores.csv"
    assert main(["predict", "--model", str(tmp_path / "m.keras"), "--images", str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Scored 4 images" in printed
    assert "2 files that are not" in printed and "DS_Store" not in printed and "'sub dir/notes.txt'" in printed
    assert "1 of them are HEIC/HEIF/AVIF photos" in printed and "convert them to JPEG" in printed
    frame = pd.read_csv(out)
    # Ids are the paths under the folder (as a labels CSV names them), sorted; scores as the model gives them
    # for the pixels PIL reads back, turned upright by their EXIF orientation.
    order = sorted(range(4), key=lambda i: names[i])
    assert list(frame["id"]) == [names[i] for i in order]
    pixels = np.stack([np.asarray(ImageOps.exif_transpose(Image.open(folder / names[i])).convert("L")) for i in order])
    turned = pixels[[names[i] for i in order].index("d.jpg")]
    assert not np.array_equal(turned, np.asarray(Image.open(folder / "d.jpg").convert("L")))  # PIL did turn it
    expected = model.predict(pixels[..., None].astype(np.float32), verbose=0)
    np.testing.assert_allclose(frame[["label_0", "label_1"]].to_numpy(), expected, rtol=1e-4, atol=1e-5)
    # A folder of HEIC photos only: one line that says what to do.
    heic = tmp_path / "iphone"
    heic.mkdir()
    (heic / "IMG_0003.heic").write_bytes((folder / "IMG_0002.HEIC").read_bytes())
    assert main(["predict", "--model", str(tmp_path / "m.keras"), "--images", str(heic),
                 "--out", str(tmp_path / "heic_scores.csv")]) != 0
    assert "convert them to JPEG" in capsys.readouterr().err


def test_cli_logging_drops_only_the_retracing_warning_and_shows_it_with_verbose(capsys):
    import logging

    from ssl_multilabel.cli import _setup_logging

    retracing = "5 out of the last 5 calls to <function f> triggered tf.function retracing. Tracing is expensive"
    log = logging.getLogger("tensorflow")
    _setup_logging(0)
    log.warning(retracing)
    log.warning("another TensorFlow warning")
    err = capsys.readouterr().err
    assert "retracing" not in err and "another TensorFlow warning" in err
    _setup_logging(1)
    log.warning(retracing)
    assert "retracing" in capsys.readouterr().err
    assert not log.filters  # set up again, not stacked


def test_predict_command_names_unreadable_files_and_skips_them_only_when_asked(tmp_path, capsys):
    import pandas as pd
    from ssl_multilabel.models import build_classifier

    model = build_classifier("small_cnn", 2, (28, 28, 1), seed=0)
    images = np.random.default_rng(2).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    frame = _predict(tmp_path, model, images)  # writes imgs/0.png .. 2.png and m.keras
    good = (tmp_path / "imgs" / "0.png").read_bytes()
    (tmp_path / "imgs" / "1b_cut.png").write_bytes(good[: len(good) // 2])  # a truncated PNG
    out = tmp_path / "again.csv"
    argv = ["predict", "--model", str(tmp_path / "m.keras"), "--images", str(tmp_path / "imgs"), "--out", str(out)]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 of 4 image files" in err[0] and "1b_cut.png" in err[0] and "--skip-bad-images" in err[0]
    assert not out.exists()
    assert main([*argv, "--skip-bad-images"]) == 0
    assert "(1 unreadable files left out)" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(out), frame)  # the three good images, as scored without the bad one


def test_predict_command_with_every_file_unreadable_fails_even_when_skipping(tmp_path, capsys):
    from ssl_multilabel.models import build_classifier

    build_classifier("small_cnn", 2, (28, 28, 1), seed=0).save(tmp_path / "m.keras")
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "empty.png").write_bytes(b"")
    out = tmp_path / "s.csv"
    assert main(["predict", "--model", str(tmp_path / "m.keras"), "--images", str(tmp_path / "imgs"), "--out", str(out),
                 "--skip-bad-images"]) == 2
    err = one_error_line(capsys)
    assert "None of the 1 image files in --images folder" in err and "empty.png" in err
    assert not out.exists()


def test_predict_refuses_an_existing_out_unless_overwrite(tmp_path, capsys):
    import pandas as pd
    from PIL import Image

    from ssl_multilabel.models import build_classifier

    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "imgs" / "a.png")
    out = tmp_path / "labels.csv"  # e.g. the user's own labels
    out.write_bytes(b"id,cat\na.png,1\n")
    command = ["predict", "--model", str(tmp_path / "m.keras"), "--images", str(tmp_path / "imgs"), "--out", str(out)]
    assert main(command) == 2  # refused before the model is looked at: it does not exist yet
    assert one_error_line(capsys) == f"error: --out {str(out)!r} exists; choose a new file or pass --overwrite."
    build_classifier("small_cnn", 2, (8, 8, 1), seed=0).save(tmp_path / "m.keras")
    assert main(command) == 2
    assert "--out" in one_error_line(capsys)
    assert out.read_bytes() == b"id,cat\na.png,1\n"
    assert main([*command, "--overwrite"]) == 0
    assert list(pd.read_csv(out).columns) == ["id", "label_0", "label_1"]


def test_predict_never_overwrites_a_run_s_files_and_drops_a_stale_sidecar(tmp_path, capsys):
    """`predict --out RUN/export/labels.csv --overwrite` replaced a run's filled table with scores
    and left its sidecar, so the run's table no longer loaded; suggest and answers refused it."""
    import pandas as pd
    from PIL import Image

    from ssl_multilabel.labels import PartialLabels
    from ssl_multilabel.models import build_classifier

    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "imgs" / "a.png")
    build_classifier("small_cnn", 2, (8, 8, 1), seed=0).save(tmp_path / "m.keras")
    run = tmp_path / "run"
    (run / "export").mkdir(parents=True)
    for name in ("recipe.json", "state.json"):
        (run / name).write_text("{}")
    table = PartialLabels.from_array([[1, 0]], ["label_0", "label_1"], ["a.png"], exclusive_groups=[["label_0", "label_1"]])
    table.save(run / "export" / "labels.csv")  # with a sidecar
    before = (run / "export" / "labels.csv").read_bytes()
    command = ["predict", "--model", str(tmp_path / "m.keras"), "--images", str(tmp_path / "imgs"), "--overwrite"]
    assert main([*command, "--out", str(run / "export" / "labels.csv")]) == 2
    assert "is inside the run directory" in one_error_line(capsys)
    assert (run / "export" / "labels.csv").read_bytes() == before
    # Outside a run, --overwrite replaces the user's table, and the sidecar that described it goes too.
    own = tmp_path / "mine.csv"
    table.save(own)
    assert Path(f"{own}.meta.json").is_file()
    assert main([*command, "--out", str(own)]) == 0
    assert list(pd.read_csv(own).columns) == ["id", "label_0", "label_1"] and not Path(f"{own}.meta.json").exists()


def test_run_again_from_a_run_s_recipe_json_gives_the_same_run(tmp_path, capsys):
    """`ssl-multilabel run RUN_DIR/recipe.json` ("is not a Python file" before): the recorded,
    resolved recipe runs again, overrides included, and gives the same tables and metrics."""
    from ssl_multilabel.labels import PartialLabels

    script = _tiny_recipe(tmp_path)
    assert main(["run", str(script), "--out", str(tmp_path / "a"), "--set", "fine.k=5"]) == 0
    assert main(["run", str(tmp_path / "a" / "recipe.json"), "--out", str(tmp_path / "b")]) == 0
    first, again = (json.loads((tmp_path / r / "recipe.json").read_text()) for r in "ab")
    assert again["recipe"] == first["recipe"] and again["recipe"]["steps"][1]["k"] == 5
    a, b = (PartialLabels.load(tmp_path / r / "labels.npz") for r in "ab")
    for name in ("values", "known", "weight", "source"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    metrics = [json.loads((tmp_path / r / "steps" / "03_evaluate" / "metrics.json").read_text()) for r in "ab"]
    assert metrics[0] == metrics[1]
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "recipe.json").write_text("[1, 2]")
    assert main(["run", str(tmp_path / "x" / "recipe.json"), "--out", str(tmp_path / "c")]) == 2
    assert "recipe.json' is damaged: expected an object with a 'recipe' object" in one_error_line(capsys)


def test_predict_max_pixels_sets_the_limit_its_error_names(tmp_path, capsys):
    """The error for a too large image advised `max_pixels`, which predict did not take."""
    import pandas as pd
    from PIL import Image

    from ssl_multilabel.models import build_classifier

    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "imgs" / "big.png")  # 120 pixels
    build_classifier("small_cnn", 2, (8, 8, 1), seed=0).save(tmp_path / "m.keras")
    command = ["predict", "--model", str(tmp_path / "m.keras"), "--images", str(tmp_path / "imgs"),
               "--out", str(tmp_path / "s.csv")]
    assert main([*command, "--max-pixels", "119"]) == 2
    line = one_error_line(capsys)
    assert "12 x 10 = 120 pixels, more than max_pixels=119" in line and "--max-pixels" in line
    assert main([*command, "--max-pixels", "120"]) == 0
    assert list(pd.read_csv(tmp_path / "s.csv")["id"]) == ["big.png"]


def test_predict_scores_the_images_of_symlinked_subfolders_once(tmp_path, capsys):
    import pandas as pd
    from PIL import Image

    from ssl_multilabel.models import build_classifier

    real = tmp_path / "elsewhere" / "real"
    real.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(real / "b.png")
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "imgs" / "a.png")
    (tmp_path / "imgs" / "linked").symlink_to(real, target_is_directory=True)
    (real / "loop").symlink_to(tmp_path / "imgs", target_is_directory=True)  # a cycle ends
    build_classifier("small_cnn", 2, (8, 8, 1), seed=0).save(tmp_path / "m.keras")
    assert main(["predict", "--model", str(tmp_path / "m.keras"), "--images", str(tmp_path / "imgs"),
                 "--out", str(tmp_path / "s.csv")]) == 0
    assert sorted(pd.read_csv(tmp_path / "s.csv")["id"]) == ["a.png", "linked/b.png"]


def test_predict_leaves_hidden_files_out_and_reads_jfif(tmp_path, capsys):
    """macOS writes `._NAME` beside each photo on a card (no image): predict refused the folder.
    Hidden folders (`.thumbnails`) hold no photos of the set; `.jfif` is a JPEG name."""
    import pandas as pd
    from PIL import Image

    from ssl_multilabel.models import build_classifier

    (tmp_path / "imgs" / ".thumbnails").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "imgs" / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "imgs" / ".thumbnails" / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "imgs" / "c.jfif", format="JPEG")
    (tmp_path / "imgs" / "._a.png").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # AppleDouble
    build_classifier("small_cnn", 2, (8, 8, 1), seed=0).save(tmp_path / "m.keras")
    assert main(["predict", "--model", str(tmp_path / "m.keras"), "--images", str(tmp_path / "imgs"),
                 "--out", str(tmp_path / "s.csv")]) == 0
    assert sorted(pd.read_csv(tmp_path / "s.csv")["id"]) == ["a.png", "c.jfif"]


@pytest.mark.parametrize("script", ["quickstart.py", "from_folder.py", "propagate_embeddings.py"])
def test_bundled_recipes_load_and_validate(script, capsys):
    assert main(["run", str(ROOT / "recipes" / script), "--show"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("recipe '") and "step report: Report" in out


def test_debug_keeps_the_log_and_adds_the_traceback(tmp_path, capsys):
    # --debug used to skip the logging set-up: log.txt and the console lost every INFO line.
    import logging

    script = _tiny_recipe(tmp_path)
    for flags, run in ((["--debug"], "debug"), ([], "plain")):
        logging.getLogger().setLevel(logging.WARNING)  # as in a fresh process
        assert main(["run", str(script), "--out", str(tmp_path / run), *flags]) == 0
    logged = {run: (tmp_path / run / "log.txt").read_text() for run in ("plain", "debug")}
    for run in ("plain", "debug"):
        assert "Step 1/4: coarse" in logged[run] and "Step 4/4: export" in logged[run]
    assert "Step 1/4: coarse" in capsys.readouterr().err
    # A user error still prints one line without --debug, and raises with it.
    assert main(["run", str(script), "--out", str(tmp_path / "x"), "--set", "fine.k=many"]) == 2
    with pytest.raises(Exception, match="fine.k"):
        main(["run", str(script), "--out", str(tmp_path / "x"), "--set", "fine.k=many", "--debug"])


def test_tensorflow_is_imported_without_its_start_up_lines():
    # TensorFlow >= 2.19 writes oneDNN / CUDA probing lines ("E0000 ... failed call to cuInit")
    # through absl, past TF_CPP_MIN_LOG_LEVEL; the commands import it with those lines held back.
    env = {k: v for k, v in _env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = "from ssl_multilabel.cli import _quiet_tensorflow; _quiet_tensorflow(); import tensorflow as tf; print(tf.constant(2).numpy())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "2"
    noise = [line for line in done.stderr.splitlines() if line[:5] in ("I0000", "W0000", "E0000") or "absl::InitializeLog" in line]
    assert noise == []


def test_a_user_error_inside_a_step_names_the_step_and_how_to_continue(tmp_path, capsys):
    """A ValueError from inside a step was one line naming neither the step nor `resume`."""
    script = tmp_path / "recipe.py"
    script.write_text(textwrap.dedent("""
        import dataclasses
        from ssl_multilabel.recipes import Embeddings, Propagate, Recipe, Step, StepResult

        @dataclasses.dataclass(frozen=True, kw_only=True)
        class Check(Step):
            def run(self, ctx, state):
                raise ValueError("the table has too few rows")

        RECIPE = Recipe(data=Embeddings(), steps=[Propagate(), Check()])
    """))
    run = tmp_path / "run"
    assert main(["run", str(script), "--out", str(run)]) == 2
    assert one_error_line(capsys) == (f"error: step 'check': the table has too few rows (once fixed, "
                                      f"`ssl-multilabel resume {run}` reruns the step)")


def test_predict_names_file_names_that_are_no_utf8_before_scoring(tmp_path, capsys):
    """A name from a Windows zip (byte 0xE9) was scored, then the CSV write failed with a codec error
    naming no file. Reference: the names listed by bytes."""
    import pandas as pd
    from PIL import Image

    from ssl_multilabel.models import build_classifier

    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "imgs" / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(os.fsencode(str(tmp_path / "imgs")) + b"/caf\xe9.png", format="PNG")
    build_classifier("small_cnn", 2, (8, 8, 1), seed=0).save(tmp_path / "m.keras")
    args = ["predict", "--model", str(tmp_path / "m.keras"), "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "s.csv")]
    assert main(args) == 2
    line = one_error_line(capsys)
    assert "1 image file names in --images folder" in line and "b'caf\\xe9.png'" in line and "--skip-bad-images" in line
    assert not (tmp_path / "s.csv").exists()
    assert main([*args, "--skip-bad-images"]) == 0
    assert list(pd.read_csv(tmp_path / "s.csv")["id"]) == ["a.png"]
    assert "(1 unreadable files left out)" in capsys.readouterr().out
