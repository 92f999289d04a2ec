"""The pure helpers of benchmarks/label_curves.py and benchmarks/labeling.py, and the report's
per-label "labels needed" section, against numpy / hand-computed references."""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssl_multilabel.labels import PartialLabels, Source
from ssl_multilabel.recipes import Embeddings, Evaluate, Propagate, Recipe, Report, run_recipe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(Path(__file__).parent))

import label_curves  # noqa: E402
from test_recipe import _tiny_embeddings  # noqa: E402
from test_report import FakeImageTraining  # noqa: E402


# === label_curves helpers ===


def _record(dataset, fraction, seed, masked, recipe, positives, per_label):
    return {"dataset": dataset, "fraction": fraction, "seed": seed, "known_positives": positives,
            "masked": {"mAP": masked, "per_label_AP": per_label}, "recipe": {"mAP": recipe, "per_label_AP": per_label}}


def test_known_positives_counts_known_cells_at_or_above_half():
    values = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1]], np.float32)
    known = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]], bool)
    table = PartialLabels.from_array(np.where(known, values, -1.0), label_names=["a", "b", "c"])
    # Hand count: a -> rows 0, 1 known positive; b -> row 2; c -> row 2 (row 0 hidden, row 1 negative).
    assert label_curves.known_positives(table) == {"a": 2, "b": 1, "c": 1}


def test_curve_is_mean_and_sample_std_per_fraction_ascending():
    records = {
        "1": _record("photos", 0.1, 0, 0.5, 0.6, {"a": 3}, {"a": 0.5}),
        "2": _record("photos", 0.1, 1, 0.7, 0.8, {"a": 4}, {"a": 0.7}),
        "3": _record("photos", 0.01, 0, 0.2, 0.3, {"a": 1}, {"a": None}),
        "4": _record("mosaics", 0.1, 0, 0.9, 0.9, {"a": 9}, {"a": 0.9}),
    }
    points = label_curves.curve(records, "photos", "masked")
    assert [p[0] for p in points] == [0.01, 0.1]
    assert points[0] == (0.01, 0.2, 0.0, 1)
    assert points[1][1] == pytest.approx(0.6) and points[1][2] == pytest.approx(statistics.stdev([0.5, 0.7]))
    assert points[1][3] == 2
    # Per label: NaN / None AP are left out; sorted by known positives.
    assert label_curves.per_label_points(records, "photos", "recipe") == {"a": [(3, 0.5), (4, 0.7)]}


def test_positives_for_is_the_fewest_positives_reaching_the_target():
    points = [(2, 0.5), (5, 0.85), (9, 0.8), (20, 0.95)]
    assert label_curves.positives_for(points, 0.8) == 5
    assert label_curves.positives_for(points, 0.9) == 20
    assert label_curves.positives_for(points, 0.99) is None


def test_label_curves_rejects_a_fraction_outside_0_1(capsys):
    with pytest.raises(SystemExit):
        label_curves.main(["--fractions", "0", "--report-only"])
    assert "--fractions must be in (0, 1]; got 0.0" in capsys.readouterr().err


# === report.html: labels needed per label ===


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("labels_needed")
    labels_csv, emb, truth = _tiny_embeddings(folder / "in")
    recipe = Recipe(name="labels-needed", data=Embeddings(labels_csv=str(labels_csv), embeddings=str(emb),
                                                           truth_csv=str(truth)),
                    steps=[Propagate(k=4), Evaluate(split="hidden"), FakeImageTraining(), Report()])
    return run_recipe(recipe, folder / "run")


def test_report_labels_needed_table_matches_the_run_files(run_dir):
    import json

    state = json.loads((run_dir / "state.json").read_text())
    last_table = [r for r in state["finished"] if r.get("labels")][-1]
    labels = PartialLabels.load(run_dir / last_table["labels"])
    human_pos = (labels.known & (labels.source == Source.HUMAN) & (labels.values >= 0.5)).sum(axis=0)
    evals = [r for r in state["finished"] if (run_dir / r["dir"] / "per_label.csv").is_file()]
    page = (run_dir / "report.html").read_text()
    assert "<h2>How many labels does each label need?</h2>" in page
    section = page.split("<h2>How many labels does each label need?</h2>", 1)[1].split("<h2>", 1)[0]
    assert section.count('<img class="plot"') == 1
    rows = re.findall(r'<tr><td class="l">([^<]*)</td>(.*?)</tr>', section)
    assert [name for name, _ in rows] == list(labels.label_names)
    for j, (name, cells) in enumerate(rows):
        values = re.findall(r"<td[^>]*>([^<]*)</td>", cells)
        assert int(values[0]) == human_pos[j]
        for k, r in enumerate(evals):
            ap = pd.read_csv(run_dir / r["dir"] / "per_label.csv").set_index("label")["AP"][name]
            assert values[1 + k] == ("nan" if np.isnan(ap) else f"{ap:.4f}")
