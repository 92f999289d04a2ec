"""Every bundled recipe in recipes/ runs end to end, as shipped, on tiny data (not only --show).

Each test runs the script's `RECIPE` through the CLI (`ssl-multilabel run recipes/X.py`) with
overrides that only shrink sizes and epochs, then checks what a user gets: a finished run,
the filled label table with every human cell unchanged, the exported model scoring raw images
as the last evaluation did, and the report.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _photos import SIZE, write_photo_folder
from ssl_multilabel.cli import main
from ssl_multilabel.labels import PartialLabels, Source

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def run(recipe: str, out: Path, *overrides: str) -> Path:
    argv = ["run", str(RECIPES / recipe), "--out", str(out)]
    for item in overrides:
        argv += ["--set", item]
    assert main(argv) == 0
    state = json.loads((out / "state.json").read_text())
    assert state["status"] == "finished"
    return out


def test_every_bundled_recipe_has_an_end_to_end_test():
    tested = {"quickstart.py", "from_folder.py", "propagate_embeddings.py", "photos.py"}
    assert {p.name for p in RECIPES.glob("*.py")} == tested


def _check_human_cells_kept(run_dir: Path, given: PartialLabels) -> None:
    final = PartialLabels.load(run_dir / "export" / "labels.csv")
    rows = [final.ids.index(i) for i in given.ids if i in final.ids]
    kept = given.subset([given.ids.index(final.ids[r]) for r in rows])
    out = final.subset(rows)
    human = kept.known
    np.testing.assert_array_equal(out.values[human], kept.values[human])
    assert (out.source[human] == Source.HUMAN).all()


def test_quickstart_runs_end_to_end(tmp_path):
    run_dir = run("quickstart.py", tmp_path / "q", "data.n_train=120", "data.n_test=40", "supervised.epochs=1",
                  "noisy_student.epochs=1", "noisy_student.rounds=1")
    assert (run_dir / "report.html").is_file()
    assert (run_dir / "export" / "model.keras").is_file()


def test_from_folder_runs_on_its_demo_folder(tmp_path):
    run_dir = run("from_folder.py", tmp_path / "demo", "supervised.epochs=1", "noisy_student.epochs=1")
    given = PartialLabels.load(run_dir / "data" / "folder" / "labels.csv")
    _check_human_cells_kept(run_dir, given)
    assert (run_dir / "report.html").is_file()


def _predict_matches_last_evaluation(run_dir: Path, folder: Path) -> None:
    """`ssl-multilabel predict` on the raw test photos gives the scores the final evaluation computed."""
    records = json.loads((run_dir / "state.json").read_text())["finished"]
    evaluate = [r for r in records if r["name"] == "evaluate"][-1]
    predictions = np.load(run_dir / evaluate["dir"] / "predictions.npz")
    train_ids = set(PartialLabels.load(run_dir / "export" / "labels.csv").ids)
    given = PartialLabels.load(folder / "labels.csv")
    test_ids = [i for i in given.ids if i not in train_ids]  # the test split, in table order
    test_folder = run_dir.parent / "test_photos"
    test_folder.mkdir()
    for i in test_ids:
        (test_folder / i).write_bytes((folder / i).read_bytes())
    out = run_dir.parent / "predicted.csv"
    assert main(["predict", "--model", str(run_dir / "export" / "model.keras"), "--images", str(test_folder),
                 "--out", str(out)]) == 0
    predicted = pd.read_csv(out).set_index("id").loc[test_ids, list(given.label_names)]
    np.testing.assert_allclose(predicted.to_numpy(np.float32), predictions["y_score"], atol=1e-5)


@pytest.mark.parametrize("channels", [3, 1])
def test_from_folder_runs_on_a_folder_of_rgb_photos_of_mixed_sizes(tmp_path, channels):
    csv = write_photo_folder(tmp_path / "photos", n=30)
    run_dir = run("from_folder.py", tmp_path / "run", f"data.labels_csv={csv}", f"data.image_dir={csv.parent}",
                  f"data.image_size={SIZE[0]},{SIZE[1]}", f"data.channels={channels}", "supervised.epochs=1",
                  "noisy_student.epochs=1")
    _check_human_cells_kept(run_dir, PartialLabels.load(csv))
    assert (run_dir / "report.html").is_file()


def test_photos_recipe_runs_end_to_end_with_a_local_weights_file(tmp_path, weights_file):
    csv = write_photo_folder(tmp_path / "photos", n=30)
    run_dir = run("photos.py", tmp_path / "run", f"data.labels_csv={csv}", f"data.image_dir={csv.parent}",
                  f"data.image_size={SIZE[0]},{SIZE[1]}", f"supervised.weights={weights_file}",
                  "supervised.width=0.25", "supervised.epochs=2", "noisy_student.epochs=2")
    _check_human_cells_kept(run_dir, PartialLabels.load(csv))
    # Features were computed once per image set (train, test) and reused by every step.
    assert len(list((run_dir / "features").glob("*.npy"))) == 2
    _predict_matches_last_evaluation(run_dir, csv.parent)
    assert (run_dir / "report.html").is_file()
    # The labeling loop from the exported model (which carries a neighbour vote): extend it, rank cells.
    again = run("photos.py", tmp_path / "again", f"data.labels_csv={csv}", f"data.image_dir={csv.parent}",
                f"data.image_size={SIZE[0]},{SIZE[1]}", f"supervised.init_model={run_dir / 'export' / 'model.keras'}",
                "supervised.epochs=1", "noisy_student.epochs=1")
    _check_human_cells_kept(again, PartialLabels.load(csv))
    cells = tmp_path / "cells.csv"
    assert main(["suggest", str(again), "--budget", "5", "--out", str(cells)]) == 0
    assert len(pd.read_csv(cells)) == 5


def test_propagate_embeddings_runs_end_to_end(tmp_path):
    run_dir = run("propagate_embeddings.py", tmp_path / "p")
    given = PartialLabels.load(run_dir / "data" / "embeddings" / "labels.csv")
    _check_human_cells_kept(run_dir, given)


def test_propagate_embeddings_runs_on_your_own_table_without_a_truth_table(tmp_path):
    """The documented command for your own data: a labels CSV and embeddings, no truth table. The
    hidden-cell evaluation has nothing to score and is skipped; every other step runs."""
    rng = np.random.default_rng(0)
    cluster = np.arange(60) % 2
    X = rng.normal(size=(60, 8)) + 4.0 * cluster[:, None]
    y = np.where(rng.random((60, 2)) < 0.3, np.stack([cluster, 1 - cluster], 1), -1.0)
    y[:2] = [[0, 1], [1, 0]]
    PartialLabels.from_array(y, ["a", "b"], [f"r{i}" for i in range(60)]).save(tmp_path / "labels.csv")
    np.save(tmp_path / "e.npy", X)
    run_dir = run("propagate_embeddings.py", tmp_path / "p", f"data.labels_csv={tmp_path / 'labels.csv'}",
                  f"data.embeddings={tmp_path / 'e.npy'}")
    state = json.loads((run_dir / "state.json").read_text())
    evaluate = next(r for r in state["finished"] if r["name"] == "evaluate")
    assert evaluate["info"] == {"skipped": "the data have no truth table"}
    _check_human_cells_kept(run_dir, PartialLabels.load(tmp_path / "labels.csv"))
    filled = PartialLabels.load(run_dir / "export" / "labels.csv")
    assert (filled.known & ~PartialLabels.load(tmp_path / "labels.csv").known).any()  # the propagation filled cells
