"""Issue 17 (part B): the command line answers bad input and a failing environment with one line.

A user error or an environment error (missing or unreadable file, disk full, permission denied,
a file removed while TensorFlow reads it, a damaged model or label file) prints one `error:` line
and exits with status 2; `--debug` raises the original exception instead.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from _cli import one_error_line
from ssl_multilabel import cli
from ssl_multilabel.cli import main
from ssl_multilabel.labels import PartialLabels

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from test_recipe import _tiny_embeddings  # noqa: E402



def _propagate(tmp_path: Path, *extra: str, out: str | None = None, embeddings: str | None = None) -> list[str]:
    labels_csv, emb, _ = _tiny_embeddings(tmp_path / "in")
    return ["propagate", "--labels", str(labels_csv), "--embeddings", embeddings or str(emb),
            "--out", str(tmp_path / "filled.csv") if out is None else out, "--k", "4", "-q", *extra]


# === Item 7: propagate --out ===


def test_propagate_out_naming_a_directory_is_refused_and_leaves_nothing(tmp_path, capsys):
    target = tmp_path / "prop"
    target.mkdir()
    before = set(os.listdir(tmp_path))
    assert main(_propagate(tmp_path, out=str(target))) == 2
    assert one_error_line(capsys) == f"error: --out {str(target)!r} is a directory; expected the path of a file to write, e.g. {str(target)}/out.csv."
    assert set(os.listdir(tmp_path)) == before | {"in"} and os.listdir(target) == []


def test_propagate_empty_out_is_refused(tmp_path, capsys):
    before = set(os.listdir(tmp_path))
    assert main(_propagate(tmp_path, out="")) == 2
    assert one_error_line(capsys) == "error: --out is empty; expected the path of the file to write."
    assert set(os.listdir(tmp_path)) == before | {"in"}


def test_propagate_refuses_an_existing_out_unless_overwrite(tmp_path, capsys):
    existing = tmp_path / "mine.csv"
    existing.write_bytes(b"id,a\nx,1\n")
    assert main(_propagate(tmp_path, out=str(existing))) == 2
    assert one_error_line(capsys) == f"error: --out {str(existing)!r} exists; choose a new file or pass --overwrite."
    assert existing.read_bytes() == b"id,a\nx,1\n"
    assert main(_propagate(tmp_path, "--overwrite", out=str(existing))) == 0
    assert PartialLabels.load(existing).ids == PartialLabels.load(tmp_path / "in" / "labels.csv").ids
    # The table's sidecar counts too: a user's own `x.csv.meta.json` is not replaced.
    sidecar = tmp_path / "new.csv.meta.json"
    sidecar.write_text("mine")
    assert main(_propagate(tmp_path, out=str(tmp_path / "new.csv"))) == 2
    assert one_error_line(capsys) == (f"error: --out {str(tmp_path / 'new.csv')!r}: {str(sidecar)!r} exists; choose a "
                                      "new file or pass --overwrite.")
    assert sidecar.read_text() == "mine" and not (tmp_path / "new.csv").exists()


def test_propagate_thresholds_need_target_precision_none(tmp_path, capsys):
    # With a target precision the thresholds are fitted per label, so fixed ones would be ignored.
    assert main(_propagate(tmp_path, "--positive-threshold", "0.99", "--negative-threshold", "0.01")) == 2
    assert one_error_line(capsys) == (
        "error: --positive-threshold and --negative-threshold apply with --target-precision none; with "
        "--target-precision 0.9 (the default 0.9) the thresholds are fitted per label. Pass --target-precision none "
        "to use yours.")
    assert not (tmp_path / "filled.csv").exists()
    assert main(_propagate(tmp_path, "--target-precision", "none", "--precision-confidence", "0.8")) == 2
    assert one_error_line(capsys) == ("error: --precision-confidence applies to --target-precision, which is none: pass a "
                                      "target precision, or leave --precision-confidence out.")
    assert main(_propagate(tmp_path, "--target-precision", "none", "--positive-threshold", "0.99")) == 0


# === Item 11: numbers are checked by the parser, before anything is read ===


@pytest.mark.parametrize("flag, value, expected", [
    ("--seed", "-1", "argument --seed: expected an int >= 0; got '-1'"),
    ("--k", "0", "argument --k: expected an int >= 1; got '0'"),
    ("--alpha", "1", "argument --alpha: expected a number in (0, 1); got '1'"),
    ("--precision-confidence", "1", "argument --precision-confidence: expected a number in (0, 1); got '1'"),
    ("--target-precision", "0.3", "argument --target-precision: expected a number in [0.5, 1] or 'none'; got '0.3'"),
])
def test_propagate_bad_numbers_are_usage_errors(tmp_path, capsys, flag, value, expected):
    assert main(_propagate(tmp_path, flag, value)) == 2
    assert one_error_line(capsys) == f"error: ssl-multilabel propagate: {expected}"
    assert not (tmp_path / "filled.csv").exists()


# === Item 13: embeddings that are not one .npy array ===


def test_npz_embeddings_are_one_line(tmp_path, capsys):
    npz = tmp_path / "emb.npz"
    np.savez(npz, features=np.zeros((40, 3)))
    assert main(_propagate(tmp_path, embeddings=str(npz))) == 2
    line = one_error_line(capsys)
    assert f"--embeddings file {str(npz)!r} is an .npz archive (arrays ['features'])" in line
    assert "np.save('emb.npy', np.load(file)['features'])" in line


def test_empty_npy_embeddings_are_one_line(tmp_path, capsys):
    empty = tmp_path / "emb.npy"
    empty.write_bytes(b"")
    assert main(_propagate(tmp_path, embeddings=str(empty))) == 2
    assert f"--embeddings file {str(empty)!r} is empty (0 bytes)" in one_error_line(capsys)


# === Acceptance 3: environment errors ===


def test_disk_full_is_one_line_and_debug_raises(tmp_path, capsys, monkeypatch):
    def full(self, path, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    args = _propagate(tmp_path)
    monkeypatch.setattr(PartialLabels, "save", full)
    out = tmp_path / "filled.csv"
    assert main(args) == 2
    assert one_error_line(capsys) == (
        f"error: No space left on device writing {str(out)!r} (errno {errno.ENOSPC}): free disk space or raise "
        "the limit, then run again (`ssl-multilabel resume RUN_DIR` continues an interrupted run)"
    )
    with pytest.raises(OSError, match="No space left on device"):
        main(args + ["--debug"])


def test_file_size_limit_is_one_line(tmp_path, capsys, monkeypatch):
    def too_big(self, path, **kwargs):
        raise OSError(errno.EFBIG, "File too large", str(path))

    args = _propagate(tmp_path)
    monkeypatch.setattr(PartialLabels, "save", too_big)
    assert main(args) == 2
    assert f"File too large writing {str(tmp_path / 'filled.csv')!r} (errno {errno.EFBIG})" in one_error_line(capsys)


def test_permission_denied_is_one_line(tmp_path, capsys, monkeypatch):
    def denied(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(PartialLabels, "load", denied)
    args = _propagate(tmp_path)
    assert main(args) == 2
    assert one_error_line(capsys) == f"error: [Errno 13] Permission denied: {args[2]!r}"


def _deleted_image_error(tmp_path: Path) -> Exception:
    """The real error TensorFlow raises when an image disappears after the dataset was built."""
    from PIL import Image

    from ssl_multilabel.data import make_dataset

    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(paths[-1])
    ds = make_dataset(paths, batch_size=2)
    os.remove(paths[1])
    with pytest.raises(Exception) as info:
        for _ in ds:
            pass
    return info.value


def test_image_deleted_while_training_is_one_line(tmp_path, capsys, monkeypatch):
    import tensorflow as tf

    error = _deleted_image_error(tmp_path)
    assert isinstance(error, tf.errors.NotFoundError)

    def command(args):
        raise error

    monkeypatch.setitem(cli._COMMANDS, "labels", command)
    assert main(["labels", "x.csv"]) == 2
    assert one_error_line(capsys) == (
        f"error: cannot read {str(tmp_path / '1.png')!r}: No such file or directory (the file was removed or "
        "changed while it was in use); restore it, or remove its row, and run again"
    )
    with pytest.raises(tf.errors.NotFoundError):
        main(["labels", "x.csv", "--debug"])


def test_damaged_run_state_is_one_line_naming_the_file(tmp_path, capsys):
    (tmp_path / "recipe.json").write_text(json.dumps({"recipe": {"steps": []}}))
    (tmp_path / "state.json").write_text('{"finished": [')
    assert main(["report", str(tmp_path)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {str(tmp_path / 'state.json')!r} is not valid JSON (Expecting value: line 1")
    assert line.endswith("delete it to rerun every step (resume then removes the outputs of the steps it does not list).")


def test_one_line_and_debug_traceback_in_a_real_process(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="2")
    csv = tmp_path / "labels.csv"
    csv.write_bytes(b"id,cat\n\xff\xfe,1\n")  # not UTF-8
    command = [sys.executable, "-m", "ssl_multilabel.cli", "labels", str(csv)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ")
    assert str(csv) in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(command + ["--debug"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr


# === Item 13: predict with a damaged model or label-names file ===


def test_predict_with_a_damaged_model_file_is_one_line(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "imgs" / "a.png")
    model = tmp_path / "m.keras"
    model.write_bytes(b"PK\x03\x04 this is not a whole zip archive")
    assert main(["predict", "--model", str(model), "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "s.csv")]) == 2
    assert one_error_line(capsys) == (
        f"error: --model file {str(model)!r} is not a .keras model (expected a zip archive holding config.json): "
        "it is damaged or another kind of file; save or export the model again."
    )
    with zipfile.ZipFile(model, "w") as archive:  # a zip, but not a Keras archive
        archive.writestr("weights.h5", b"")
    assert main(["predict", "--model", str(model), "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "s.csv")]) == 2
    assert "is not a .keras model" in one_error_line(capsys)
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("content, message", [
    ("['x', 'y', 'z']", "is not valid JSON"),
    ('["x", "y"]', "expected a JSON list of 3 non-empty strings (the model has 3 outputs); got a list of 2 items"),
    ('{"x": 1}', "expected a JSON list of 3 non-empty strings (the model has 3 outputs); got dict"),
    ('["x", "x", "z"]', "duplicate label names ['x']"),
])
def test_predict_with_a_bad_labels_json_is_one_line(tmp_path, capsys, content, message):
    from PIL import Image

    from ssl_multilabel.models import build_classifier

    build_classifier("small_cnn", 3, (8, 8, 1), seed=0).save(tmp_path / "m.keras")
    names = tmp_path / "m.keras.labels.json"
    names.write_text(content)
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "imgs" / "a.png")
    assert main(["predict", "--model", str(tmp_path / "m.keras"), "--images", str(tmp_path / "imgs"),
                 "--out", str(tmp_path / "s.csv")]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: Label names file {str(names)!r}") and message in line


# === Item 16: a table without rows ===


def test_labels_command_on_a_table_without_rows_prints_no_nan(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("id,cat,dog\n")
    assert main(["labels", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out and out.strip().splitlines()[-1] == "0 rows, 2 labels, no cells"
