"""The pure helpers of benchmarks/label_curves.py and benchmarks/labeling.py, and the report's
per-label "labels needed" section, against numpy / hand-computed references."""

from __future__ import annotations

import json
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


def test_report_labels_needed_without_any_ap_has_no_plot(run_dir, tmp_path):
    # A small test split (a few photos of one class) gives every label an undefined AP: the log-scaled
    # plot then had no point, and the whole report step failed ("cannot be log-scaled").
    import json
    import shutil

    from ssl_multilabel.report import write_report

    copy = Path(shutil.copytree(run_dir, tmp_path / "run"))
    state = json.loads((copy / "state.json").read_text())
    evals = [r for r in state["finished"] if (copy / r["dir"] / "per_label.csv").is_file()]
    for r in evals:
        table = pd.read_csv(copy / r["dir"] / "per_label.csv")
        table["AP"] = np.nan
        table.to_csv(copy / r["dir"] / "per_label.csv", index=False)
    page = write_report(copy).read_text()
    section = page.split("<h2>How many labels does each label need?</h2>", 1)[1].split("<h2>", 1)[0]
    assert '<img class="plot"' not in section and "No label has an AP in these evaluations" in section
    rows = re.findall(r'<tr><td class="l">([^<]*)</td>(.*?)</tr>', section)
    assert len(rows) == len(pd.read_csv(copy / evals[0]["dir"] / "per_label.csv"))
    assert all(re.findall(r"<td[^>]*>([^<]*)</td>", cells)[1:] == ["nan"] * len(evals) for _, cells in rows)


# === labeling (B8) helpers ===

import labeling  # noqa: E402


def _truth(n=40, seed=0):
    rng = np.random.default_rng(seed)
    values = (rng.random((n, 10)) < 0.3).astype(np.float32)
    return PartialLabels.from_array(values, label_names=[f"l{j}" for j in range(10)], ids=[f"r{i}" for i in range(n)])


def test_combined_table_keeps_old_labels_and_hides_new_ones_like_random_cells():
    from ssl_multilabel.datasets import random_cells

    truth = _truth()
    table = labeling.combined_table(truth, 7, 0.3, seed=5)
    reference = random_cells(truth, p=0.3, seed=5)
    assert table.known[:, :7].all()
    np.testing.assert_array_equal(table.known[:, 7:], reference.known[:, 7:])
    np.testing.assert_array_equal(table.values[table.known], truth.values[table.known])
    assert table.label_names == truth.label_names and table.ids == truth.ids


def test_columns_and_answered_read_the_truth():
    truth = _truth()
    sub = labeling.columns(truth, ["l3", "l1"])
    np.testing.assert_array_equal(sub.to_array(), truth.to_array()[:, [3, 1]])
    frame = pd.DataFrame({"id": ["r0", "r5", "r7"], "label": ["l2", "l9", "l0"], "score": [0.1, 0.2, 0.3],
                          "answer": ["", "", ""]})
    expected = [str(int(truth.values[0, 2])), str(int(truth.values[5, 9])), str(int(truth.values[7, 0]))]
    assert labeling.answered(frame, truth)["answer"].tolist() == expected


def test_choosing_rebuilds_a_round_0_whose_run_directory_is_gone(monkeypatch, tmp_path):
    truth = _truth()
    runs = []

    def fake_run_steps(steps, labels, out, seed, size, reuse=False):
        runs.append((out.name, reuse, int(labels.known.sum())))
        (out / "run").mkdir(parents=True, exist_ok=True)
        return {"run_dir": str(out / "run"), "mAP": 0.6, "train_s": 2.0, "known_cells": int(labels.known.sum())}

    def fake_suggest(run_dir, *, budget, method, per_label, seed):  # random unknown cells of the start table
        from ssl_multilabel.labeling import suggest_cells

        assert Path(run_dir).is_dir()  # chosen from the rebuilt round 0
        return suggest_cells(start, np.full(start.known.shape, 0.5), budget=budget, method="random",
                             per_label=per_label, seed=seed), {}

    monkeypatch.setattr(labeling, "mosaics", lambda split, n: (None, truth))
    monkeypatch.setattr(labeling, "run_steps", fake_run_steps)
    import ssl_multilabel.recipes.suggest as suggest_module

    monkeypatch.setattr(suggest_module, "suggest_for_run", fake_suggest)
    from ssl_multilabel.datasets import random_cells

    start = random_cells(truth, p=labeling.START_FRACTION, seed=0)
    size = dict(labeling.SIZES["full"], n_train=len(truth.ids))
    key0 = "full | choosing | seed 0 | round 0"
    results = {key0: {"run_dir": str(tmp_path / "gone"), "mAP": 0.7, "train_s": 1.0}}
    labeling.choosing_cells(0, size, tmp_path, results, lambda **kwargs: None, methods=("random",), last=1)
    # round 0 trained again (a finished run of the same table would be read), then round 1
    assert [r[:2] for r in runs] == [("round0_0", True), ("random1_0", False)]
    assert results[key0]["rebuilt_from"] == {"mAP": 0.7, "train_s": 1.0, "run_dir": str(tmp_path / "gone")}
    budget = round(labeling.ADD_FRACTION * truth.known.size)
    assert runs[1][2] == runs[0][2] + budget and "full | choosing | seed 0 | random | round 2" not in results
    # rebuilt a second time: the first record stays the one the earlier rows chose from
    results[key0]["run_dir"] = str(tmp_path / "gone again")
    labeling.choosing_cells(0, size, tmp_path, results, lambda **kwargs: None, methods=(), last=1)
    assert results[key0]["rebuilt_from"] == {"mAP": 0.7, "train_s": 1.0, "run_dir": str(tmp_path / "gone")}


def _choosing_results(suggest, random, uncertainty):
    out = {"full | choosing | seed 0 | round 0": {"mAP": 0.5}}
    for method, values in (("suggest", suggest), ("random", random), ("uncertainty", uncertainty)):
        for k, v in enumerate(values, start=1):
            out[f"full | choosing | seed 0 | {method} | round {k}"] = {"mAP": v}
    return out


def test_report_target_of_choosing_cells():
    # suggest reaches random's final 0.60 at round 2 (half of the 4 rounds' cells): holds.
    body = labeling.report(_choosing_results([0.55, 0.61, 0.62, 0.63], [0.52, 0.55, 0.58, 0.60], [0.5] * 4),
                           labeling.SIZES["full"], write=False)
    assert "after round 2" in body and "**holds**" in body
    # Only at round 3: fails.
    body = labeling.report(_choosing_results([0.55, 0.58, 0.61, 0.63], [0.52, 0.55, 0.58, 0.60], [0.5] * 4),
                           labeling.SIZES["full"], write=False)
    assert "after round 3" in body and "**fails**" in body


def test_report_targets_of_adding_labels():
    results = {
        "full | adding | seed 0 | old model": {"old_mAP": 0.900, "train_s": 100.0},
        "full | adding | seed 0 | retrain from scratch": {"old_mAP": 0.880, "new_mAP": 0.60, "train_s": 90.0},
        "full | adding | seed 0 | extend + Propagate + Supervised": {"old_mAP": 0.895, "new_mAP": 0.65, "train_s": 30.0},
    }
    body = labeling.report(results, labeling.SIZES["full"], write=False)
    # drop 0.5 points (holds), new 0.65 >= 0.60 (holds), 90 / 30 = 3.00x (holds)
    assert "old-label mAP drop +0.50 points (target ≤ 1: holds)" in body
    assert "(target ≥: holds)" in body and "3.00× (target ≥ 3×: holds)" in body
    results["full | adding | seed 0 | extend + Propagate + Supervised"].update(old_mAP=0.880, train_s=31.0)
    body = labeling.report(results, labeling.SIZES["full"], write=False)
    assert "drop +2.00 points (target ≤ 1: fails)" in body and "(target ≥ 3×: fails)" in body


def test_report_summarises_adding_labels_over_seeds_with_paired_differences():
    results = {}
    # (old model, scratch new, extend old, extend new, scratch s, extend s) per seed
    for seed, (old, scratch_new, ext_old, ext_new, s_s, e_s) in enumerate(
            [(0.90, 0.60, 0.895, 0.65, 90.0, 30.0), (0.92, 0.70, 0.900, 0.68, 120.0, 30.0)]):
        p = f"full | adding | seed {seed}"
        results[f"{p} | old model"] = {"old_mAP": old, "train_s": 100.0}
        results[f"{p} | retrain from scratch"] = {"old_mAP": 0.88, "new_mAP": scratch_new, "train_s": s_s}
        results[f"{p} | extend (one Supervised step)"] = {"old_mAP": ext_old, "new_mAP": ext_new, "train_s": e_s}
    body = labeling.report(results, labeling.SIZES["full"], write=False)
    # drops 0.5 and 2.0 points: mean 1.25, sample std 1.0607; gains +5 and -2: mean 1.5, std 4.9497;
    # speed-ups 3 and 4: mean 3.5, std 0.7071
    assert ("2 seeds, extend (one Supervised step): old-label mAP drop +1.25 ± 1.06 points (target ≤ 1: fails); "
            "new-label mAP minus scratch +1.50 ± 4.95 points (target ≥ 0: holds; within twice the spread over seeds: "
            "no difference shown); training time scratch / extend 3.50× ± 0.71 (target ≥ 3×: holds)") in body
    # A row run on one seed only gets no summary line.
    assert "seeds, extend + Propagate" not in body


def test_report_of_choosing_cells_pairs_suggest_at_half_budget_with_random_at_the_end():
    results = _choosing_results([0.55, 0.61, 0.62, 0.63], [0.52, 0.55, 0.58, 0.60], [0.5] * 4)
    seed1 = _choosing_results([0.55, 0.58, 0.62, 0.63], [0.52, 0.55, 0.58, 0.61], [0.5] * 4)
    results.update({k.replace("seed 0", "seed 1"): v for k, v in seed1.items()})
    body = labeling.report(results, labeling.SIZES["full"], write=False)
    # round 2 of suggest minus round 4 of random: +1 and -3 points: mean -1.00, sample std 2.83
    assert "Paired over 2 seeds: suggest after round 2 minus random after round 4: -1.00 ± 2.83 points (within" in body
    # the same cells: suggest minus random after round 4, +3 and +2 points: mean 2.50, std 0.71, a difference
    assert "Paired over 2 seeds: suggest after round 4 minus random after round 4: +2.50 ± 0.71 points.\n" in body
    # uncertainty (0.5) minus random after round 4: -10 and -11 points; suggest minus uncertainty: +13 twice
    assert "uncertainty after round 4 minus random after round 4: -10.50 ± 0.71 points." in body
    assert "suggest after round 4 minus uncertainty after round 4: +13.00 ± 0.00 points." in body


def test_save_merged_keeps_records_another_run_wrote_meanwhile(tmp_path):
    path = tmp_path / "labeling.json"
    path.write_text(json.dumps({"full | choosing | seed 1 | round 0": {"mAP": 0.1}}))
    mine = json.loads(path.read_text())
    base = json.loads(path.read_text())  # what this run read
    mine["full | adding | seed 1 | old model"] = {"mAP": 0.9}
    labeling.save_merged(path, mine, base)
    # another process adds a record and replaces one this run had read
    other = json.loads(path.read_text())
    other["full | choosing | seed 0 | round 0"] = {"mAP": 0.5}
    other["full | choosing | seed 1 | round 0"] = {"mAP": 0.2}
    path.write_text(json.dumps(other))
    mine["full | adding | seed 1 | retrain from scratch"] = {"mAP": 0.8}
    labeling.save_merged(path, mine, base)
    assert json.loads(path.read_text()) == {"full | adding | seed 1 | old model": {"mAP": 0.9},
                                            "full | adding | seed 1 | retrain from scratch": {"mAP": 0.8},
                                            "full | choosing | seed 0 | round 0": {"mAP": 0.5},
                                            "full | choosing | seed 1 | round 0": {"mAP": 0.2}}  # not the stale 0.1
    # a record this run replaces (--again) is dropped from the file until this run makes it
    labeling.save_merged(path, {}, {}, replaced={"full | choosing | seed 0 | round 0"})
    assert "full | choosing | seed 0 | round 0" not in json.loads(path.read_text())


def test_photos_save_result_keeps_rows_another_run_wrote_meanwhile(tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import photos

    monkeypatch.setattr(photos, "RESULTS", tmp_path / "photos.json")
    mine = photos.load_results()  # this run reads an empty file
    # another run (other seeds) records a row after this one read the file
    photos.save_result(photos.load_results(), "single-positive | seed 9 | (b) masked", {"mAP": 0.5})
    photos.save_result(mine, "random-cells 0.05 | seed 0 | (b) masked", {"mAP": 0.8})
    photos.save_result(mine, "epoch_time", {"ratio": 100.0})
    assert json.loads((tmp_path / "photos.json").read_text()) == {
        "epoch_time": {"ratio": 100.0},
        "rows": {"single-positive | seed 9 | (b) masked": {"mAP": 0.5},
                 "random-cells 0.05 | seed 0 | (b) masked": {"mAP": 0.8}}}
    assert mine == {"epoch_time": {"ratio": 100.0}, "rows": {"random-cells 0.05 | seed 0 | (b) masked": {"mAP": 0.8}}}
