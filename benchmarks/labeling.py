"""B8: the labeling loop on fashion-mosaics: adding labels to a trained model, and choosing cells to label.

    python benchmarks/labeling.py                       # both parts, full sizes, seeds 0 1 2
    python benchmarks/labeling.py --parts adding --seeds 0
    python benchmarks/labeling.py --quick               # 1,200 train / 600 test, 2-epoch steps, seed 0
    python benchmarks/labeling.py --report-only

Every model is trained by recipe steps run through `run_recipe` (the code of `ssl-multilabel
run`) on `TableMosaics`, a data source of this script: B5's fashion-mosaics (train pool from the
official train split, test set from t10k, fully known; mosaic seed 0) with a given training
table. The test split is read once per run, by its final `Evaluate()`.

*Adding labels.* The first 7 labels are the old ones, the last 3 the new ones.
1. The old model: `Supervised()` on the 7-label table with every cell known, then `Export()`
   (the `.keras` model and its `.labels.json`).
2. The combined table: every old cell known, `random-cells 0.02` on the new labels' cells.
3. Retraining from scratch: `Supervised()` on the combined table (a new model).
4. Extending: `Supervised(init_model=<old model>)` (the output layer grows to 10 labels, the old
   model teaches its labels' unknown cells), then the library's semi-supervised steps
   `Propagate()` and `Supervised()` (the extended model continues on the filled table).
5. Extending, one step: `Supervised(init_model=<old model>)` alone (no propagation, no second
   round).
6. Extending with the old backbone frozen: the same with `Supervised(init_model=..., freeze=True)`:
   only the output layer trains, on the backbone's features computed once, and `Propagate()`
   builds its graph on the same features.
7. Extending, then fine-tuning (LP-FT, Kumar et al., ICLR 2022): the output layer first trains alone on
   the frozen backbone's cached features (as in 6), then `FineTune` unfreezes every backbone layer
   and trains the whole model at a tenth of the learning rate (1e-4, at most 10 epochs, early
   stopping with patience 3 on validation mAP).
8. Extending with rehearsal: `Supervised(init_model=<old model>)` (its default `replay=1.0`; rows
   4-7 pass `replay=None`), one step: an epoch
   is one pass over the rows with a known cell of a new label, each batch mixed with as many other
   rows (which stream on from epoch to epoch), instead of every row; early stopping as shipped.
Reported: old-label and new-label test mAP (mean AP over those labels), and the wall time of the
training steps (the old model's training is not counted: it exists already).
Targets (issue 18), for (4) to (8) each: old-label mAP at most 1 point below the old model's;
new-label mAP >= (3)'s; at least 3x faster than (3).

*Choosing cells.* Start from `random-cells 0.02` on the 10 labels. Round 0 and every later
round is the same recipe, `Supervised()` (a new model trained as shipped: until its validation
mAP stops improving, best epoch restored; a reduced run caps it at E epochs without early
stopping, `--round-epochs`) -> `Propagate()` -> `Evaluate()`. After each round, 1 % of the
table's cells are chosen by `recipes.suggest.suggest_for_run(run_dir, budget, method)` -- the code of
`ssl-multilabel suggest` -- with method `suggest`, `uncertainty`, `random`, `typical` or `diverse`, or `suggest`
with `per_label=True` ("suggest per label": an equal share of the cells per label), answered from the
truth (`merge_answers`, as a person answering the suggestion CSV), and the next round trains on
the new table. 4 rounds. Target: `suggest` reaches random choice's final test mAP with at most
half of the added cells (2 rounds).

Results per (part, seed, row) in `benchmarks/results/labeling.json` (quick:
`labeling_quick.json`); an interrupted run resumes at the first missing row.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import os
import shutil
import sys
import time
from pathlib import Path
from typing import ClassVar

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import json  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from _report import beyond_twice_the_spread, markdown_table, mean_sd, save_merged, write_section  # noqa: E402
from ssl_multilabel.labels import PartialLabels  # noqa: E402
from ssl_multilabel.recipes.config import param  # noqa: E402
from ssl_multilabel.recipes.data import DataSource, RecipeData  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SSL_MULTILABEL_SHARED", ROOT.parent / "shared"))
RESULTS = ROOT / "benchmarks" / "results" / "labeling.json"
QUICK_RESULTS = ROOT / "benchmarks" / "results" / "labeling_quick.json"
WORK = ROOT / "benchmarks" / "results" / "cache" / "labeling"  # run directories (git-ignored)
N_OLD = 7
NEW_FRACTION = 0.02
START_FRACTION, ADD_FRACTION, ROUNDS = 0.02, 0.01, 4
METHODS = ("suggest", "uncertainty", "random", "typical", "suggest per label", "diverse")
PER_LABEL = " per label"  # a method name ending so: suggest_for_run(per_label=True)
EXTEND = "extend + Propagate + Supervised"
EXTEND_ONE = "extend (one Supervised step)"
EXTEND_FROZEN = "extend, backbone frozen + Propagate + Supervised"
EXTEND_LPFT = "extend, head on frozen features, then fine-tune every layer"
EXTEND_REPLAY = "extend with replay 1 (one Supervised step)"
ROW_DIRS = {"retrain from scratch": "retrain", EXTEND: "extend", EXTEND_ONE: "extend1", EXTEND_FROZEN: "frozen",
            EXTEND_LPFT: "lpft", EXTEND_REPLAY: "replay"}
SIZES = {"full": dict(n_train=10_000, n_test=4000, epochs=None, round_epochs=None, tag="full"),
         "quick": dict(n_train=1200, n_test=600, epochs=2, round_epochs=2, tag="quick")}


# === Data ===


@functools.lru_cache(maxsize=4)
def mosaics(split: str, n: int) -> tuple[np.ndarray, PartialLabels]:
    from ssl_multilabel.datasets import fashion_mosaics

    return fashion_mosaics(split, n=n, seed=0, source_dir=SHARED / "data" / "fashion-mnist")


def columns(table: PartialLabels, names: list[str] | tuple[str, ...]) -> PartialLabels:
    """The label columns `names` of a table of human cells (ids kept)."""
    index = [table.label_names.index(n) for n in names]
    return PartialLabels.from_array(table.to_array()[:, index], label_names=list(names), ids=list(table.ids))


def combined_table(truth: PartialLabels, n_old: int, new_fraction: float, seed: int) -> PartialLabels:
    """Every cell of the first `n_old` labels known; `random-cells new_fraction` on the others."""
    from ssl_multilabel.datasets import random_cells

    hidden = random_cells(truth, p=new_fraction, seed=seed)
    values = truth.to_array().copy()
    values[:, n_old:] = hidden.to_array()[:, n_old:]
    return PartialLabels.from_array(values, label_names=list(truth.label_names), ids=list(truth.ids))


def answered(suggestions: pd.DataFrame, truth: PartialLabels) -> pd.DataFrame:
    """The suggestion CSV with every answer filled from the truth (1 / 0), as a person would."""
    row = {i: k for k, i in enumerate(truth.ids)}
    col = {n: j for j, n in enumerate(truth.label_names)}
    values = truth.to_array()
    out = suggestions.copy()
    out["answer"] = [str(int(values[row[i], col[n]] >= 0.5)) for i, n in zip(out["id"], out["label"])]
    return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class TableMosaics(DataSource):
    """B5's fashion-mosaics with a given training table of the first `n_train` mosaics (B8)."""

    labels_file: str = param("", doc="training table (.npz) of the first n_train train-split mosaics")
    n_train: int = param(10_000, ge=1, doc="train-split mosaics")
    n_test: int = param(4000, ge=1, doc="test (t10k) mosaics, every cell known")
    path_fields: ClassVar[tuple[str, ...]] = ("labels_file",)

    def load(self, seed: int, run_dir: Path) -> RecipeData:
        x_train, truth = mosaics("train", self.n_train)
        x_test, test = mosaics("test", self.n_test)
        labels = PartialLabels.load(self.labels_file)
        if labels.ids != truth.ids:
            raise ValueError(f"data.labels_file {self.labels_file!r}: its ids are not those of the first "
                             f"{self.n_train} train mosaics.")
        return RecipeData(kind="images", inputs=x_train, labels=labels, truth=columns(truth, labels.label_names),
                          test_inputs=x_test, test_labels=columns(test, labels.label_names), image_size=(56, 56),
                          channels=1)


# === Runs ===


def _same_table(a: PartialLabels, b: PartialLabels) -> bool:
    return a.ids == b.ids and a.label_names == b.label_names and np.array_equal(a.to_array(), b.to_array())


def _is_recorded_run(run_dir: Path, record: dict) -> bool:
    """Whether `run_dir` holds the exported model whose test mAP is in `record` (not another run's)."""
    state = run_dir / "state.json"
    return ((run_dir / "export" / "model.keras").is_file() and state.is_file()
            and json.loads(state.read_text())["finished"][-1].get("metrics", {}).get("mAP") == record["mAP"])


def run_steps(steps: list, labels: PartialLabels, out: Path, seed: int, size: dict, reuse: bool = False) -> dict:
    """`steps` + `Evaluate()` on `labels` as a recipe in `out`; test mAP, per-label AP and step times.
    With `reuse`, a finished run of the same table already in `out` is read, not run again."""
    from ssl_multilabel.recipes import Evaluate, Recipe, run_recipe

    state_file = out / "run" / "state.json"
    finished = (reuse and state_file.is_file() and len(json.loads(state_file.read_text())["finished"]) == len(steps) + 1
                and _same_table(PartialLabels.load(out / "table.npz"), labels))
    if out.exists() and not finished:  # an interrupted run of this row: start it again
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "table.npz"
    if not finished:
        labels.save(table)
    data = TableMosaics(labels_file=str(table), n_train=size["n_train"], n_test=size["n_test"])
    recipe = Recipe(name="b8", data=data, steps=[*steps, Evaluate()], seed=seed)
    started = time.perf_counter()
    run_dir = out / "run" if finished else run_recipe(recipe, out / "run", command=["benchmarks/labeling.py"])
    wall = time.perf_counter() - started
    state = json.loads((run_dir / "state.json").read_text())
    if finished:  # read, not run: the steps' own times
        wall = float(sum(r["seconds"] for r in state["finished"]))
    final = state["finished"][-1]
    per_label = pd.read_csv(run_dir / final["dir"] / "per_label.csv")
    training = [r for r in state["finished"] if r["type"] not in ("Evaluate", "Export")]
    return {
        "run_dir": str(run_dir), "mAP": float(final["metrics"]["mAP"]), "wall_s": wall,
        "train_s": float(sum(r["seconds"] for r in training)),
        "steps": [{"name": r["name"], "seconds": r["seconds"], "metrics": r.get("metrics", {})} for r in state["finished"]],
        "AP": {str(n): float(a) for n, a in zip(per_label["label"], per_label["AP"])},
        "known_cells": int(labels.known.sum()),
    }


def mean_ap(record: dict, names) -> float:
    return float(np.mean([record["AP"][n] for n in names]))


def adding_labels(seed: int, size: dict, work: Path, results: dict, save, rows_run=tuple(ROW_DIRS)) -> None:
    from ssl_multilabel.recipes import Export, FineTune, Propagate, Supervised

    _, truth = mosaics("train", size["n_train"])
    names = list(truth.label_names)
    old, new = names[:N_OLD], names[N_OLD:]
    epochs = {} if size["epochs"] is None else {"epochs": size["epochs"]}
    combined = combined_table(truth, N_OLD, NEW_FRACTION, seed)
    prefix = f"{size['tag']} | adding | seed {seed}"
    recorded = results.get(f"{prefix} | old model")
    if recorded is None or not _is_recorded_run(Path(recorded["run_dir"]), recorded):
        # Not run yet, or its run directory is gone: the rows need the model itself. Training is
        # seeded with deterministic ops, so a rebuilt model must reproduce the recorded one.
        record = run_steps([Supervised(**epochs), Export()], columns(truth, old), work / f"old{seed}", seed, size,
                           reuse=True)
        record["old_mAP"] = mean_ap(record, old)
        stale = []
        if recorded is not None and abs(record["mAP"] - recorded["mAP"]) > 1e-4:
            # Every extension row of a seed starts from one old model: those of the recorded one run
            # again. Retraining from scratch does not use the old model and stays.
            stale = [f"{prefix} | {row}" for row in ROW_DIRS if row != "retrain from scratch"]
            print(f"{prefix}: the rebuilt old model scores test mAP {record['mAP']:.5f}, the recorded one "
                  f"{recorded['mAP']:.5f}; the extension rows of this seed are dropped and run again with it "
                  f"(those in --rows).", flush=True)
            for key in stale:
                results.pop(key, None)
        if recorded is not None:
            record["rebuilt_from"] = {k: recorded[k] for k in ("mAP", "train_s", "run_dir")}
        results[f"{prefix} | old model"] = record
        save(replaced=stale)
    old_model = Path(results[f"{prefix} | old model"]["run_dir"]) / "export" / "model.keras"
    rows = {
        "retrain from scratch": [Supervised(**epochs)],
        # replay=None: every image every epoch (the rows measured before replay existed).
        EXTEND: [Supervised(init_model=str(old_model), replay=None, **epochs), Propagate(), Supervised(**epochs)],
        EXTEND_ONE: [Supervised(init_model=str(old_model), replay=None, **epochs)],
        EXTEND_FROZEN: [Supervised(init_model=str(old_model), freeze=True, replay=None, **epochs), Propagate(),
                        Supervised(**epochs)],
        EXTEND_LPFT: [Supervised(init_model=str(old_model), freeze=True, replay=None, **epochs),
                      # layers=10: every layer of the small CNN's backbone
                      FineTune(layers=10, learning_rate=1e-4, batch_size=64, epochs=min(10, size["epochs"] or 10))],
        EXTEND_REPLAY: [Supervised(init_model=str(old_model), **epochs)],  # replay=1.0, the default
    }
    for row, steps in rows.items():
        if row not in rows_run or f"{prefix} | {row}" in results:
            continue
        record = run_steps(steps, combined, work / f"{ROW_DIRS[row]}{seed}", seed, size)
        record["old_mAP"], record["new_mAP"] = mean_ap(record, old), mean_ap(record, new)
        results[f"{prefix} | {row}"] = record
        save()
        print(f"{prefix} | {row}: old {record['old_mAP']:.4f}, new {record['new_mAP']:.4f}, "
              f"training {record['train_s']:.0f} s", flush=True)


def choosing_cells(seed: int, size: dict, work: Path, results: dict, save, methods=METHODS, last=ROUNDS) -> None:
    from ssl_multilabel.datasets import random_cells
    from ssl_multilabel.labeling import merge_answers
    from ssl_multilabel.recipes.suggest import suggest_for_run
    from ssl_multilabel.recipes import Propagate, Supervised

    _, truth = mosaics("train", size["n_train"])
    budget = int(round(ADD_FRACTION * truth.known.size))
    rounds = {} if size["round_epochs"] is None else {"epochs": size["round_epochs"], "patience": None}
    steps = [Supervised(**rounds), Propagate()]
    start = random_cells(truth, p=START_FRACTION, seed=seed)
    key0 = f"{size['tag']} | choosing | seed {seed} | round 0"
    recorded = results.get(key0)
    if recorded is None or not Path(recorded["run_dir"]).is_dir():
        # Not run yet, or its run directory is gone: the rounds after it choose their cells from its
        # model. A rebuilt round 0 that does not reproduce the recorded test mAP is a new model:
        # the rows recorded from the old one stay (random choice does not depend on the model).
        record = run_steps(steps, start, work / f"round0_{seed}", seed, size, reuse=True)
        if recorded is not None:  # the first record stays the reference: the rows run before any rebuild chose from it
            record["rebuilt_from"] = recorded.get("rebuilt_from") or {k: recorded[k] for k in ("mAP", "train_s", "run_dir")}
            print(f"{key0}: rebuilt, test mAP {record['mAP']:.5f} (recorded {recorded['mAP']:.5f})", flush=True)
        results[key0] = record
        save()
    for method in methods:
        table, previous = start, results[key0]
        for k in range(1, last + 1):
            key = f"{size['tag']} | choosing | seed {seed} | {method} | round {k}"
            folder = work / f"{method.replace(' ', '_')}{k}_{seed}"
            if key in results:
                table, previous = PartialLabels.load(folder / "table.npz"), results[key]
                continue
            if not Path(previous["run_dir"]).is_dir():
                raise SystemExit(f"{key}: the cells are chosen from the run before it, whose run directory "
                                 f"{previous['run_dir']} is gone; remove seed {seed}'s 'choosing' entries from "
                                 f"{RESULTS.name} to run them again.")
            started = time.perf_counter()
            frame, _ = suggest_for_run(previous["run_dir"], budget=budget, method=method.removesuffix(PER_LABEL),
                                       per_label=method.endswith(PER_LABEL), seed=seed * 100 + k)
            suggest_s = time.perf_counter() - started
            table = merge_answers(table, answered(frame, truth))
            record = run_steps(steps, table, folder, seed, size)
            record["suggest_s"], record["added"] = suggest_s, len(frame)
            record["added_positive_share"] = float(answered(frame, truth)["answer"].astype(int).mean())
            results[key], previous = record, record
            save()
            print(f"{key}: test mAP {record['mAP']:.4f} (cells {record['known_cells']}, "
                  f"{100 * record['added_positive_share']:.0f} % of the added cells positive)", flush=True)


# === Report ===


def _paired_line(results: dict, seeds: list[int], a: str, b: str, what: str) -> list[str]:
    """`what`, paired per seed (`a` and `b` are result keys with `{}` for the seed): mean ± std in mAP
    points and whether it lies beyond twice the spread; nothing with fewer than 2 seeds."""
    pairs = [(results[a.format(x)]["mAP"], results[b.format(x)]["mAP"]) for x in seeds
             if a.format(x) in results and b.format(x) in results]
    if len(pairs) < 2:
        return []
    m, sd, n = mean_sd(100 * (p - q) for p, q in pairs)
    return [f"Paired over {n} seeds: {what}: {m:+.2f} ± {sd:.2f} points"
            + ("." if beyond_twice_the_spread(m, sd) else " (within twice the spread over seeds: no difference shown)."),
            ""]


def _adding_over_seeds(results: dict, seeds: list[int]) -> list[str]:
    """Per extension row run on 2 or more seeds: the targets on the mean over seeds of the paired
    differences (each seed's row against that seed's old model and retrained model), with their spread."""
    lines = []
    for name in ROW_DIRS:
        if name == "retrain from scratch":
            continue
        paired = [(results[f"adding | seed {s} | old model"], results[f"adding | seed {s} | retrain from scratch"],
                   results[f"adding | seed {s} | {name}"]) for s in seeds
                  if all(f"adding | seed {s} | {r}" in results for r in ("old model", "retrain from scratch", name))]
        if len(paired) < 2:
            continue
        drop = mean_sd(100 * (old["old_mAP"] - r["old_mAP"]) for old, _, r in paired)
        gain = mean_sd(100 * (r["new_mAP"] - scratch["new_mAP"]) for _, scratch, r in paired)
        speed = mean_sd(scratch["train_s"] / r["train_s"] for _, scratch, r in paired)
        within = not beyond_twice_the_spread(gain[0], gain[1])
        lines.append(
            f"- {len(paired)} seeds, {name}: old-label mAP drop {drop[0]:+.2f} ± {drop[1]:.2f} points (target ≤ 1: "
            f"{'holds' if drop[0] <= 1 else 'fails'}); new-label mAP minus scratch {gain[0]:+.2f} ± {gain[1]:.2f} "
            f"points (target ≥ 0: {'holds' if gain[0] >= 0 else 'fails'}"
            + ("; within twice the spread over seeds: no difference shown" if within else "")
            + f"); training time scratch / extend {speed[0]:.2f}× ± {speed[1]:.2f} (target ≥ 3×: "
            f"{'holds' if speed[0] >= 3 else 'fails'})")
    if lines:
        lines = ["Over seeds (mean ± std of the per-seed differences):", *lines, ""]
    return lines


def report(results: dict, size: dict, write: bool) -> str:
    """The B8 section from the results of one size (`size["tag"]`); the verdicts on the issue's targets."""
    tag = size["tag"]
    results = {k[len(tag) + 3:]: v for k, v in results.items() if k.startswith(f"{tag} | ")}
    reduced = size["tag"] != "full"
    lines = ["## B8: the labeling loop" + (" (reduced run)" if reduced else ""), "",
             f"fashion-mosaics, train pool {size['n_train']:,} (train split), test {size['n_test']:,} (t10k, every "
             "cell known); every model is a recipe run by `run_recipe` on this pool with a given table, ending in "
             "`Evaluate()` (test read once per run). Protocol and rows: the docstring of `benchmarks/labeling.py`."
             + (f" **Reduced run, not the protocol's sizes (10,000 / 4,000, steps to convergence): train pool "
                f"{size['n_train']:,}, test {size['n_test']:,}, "
                + ("every step at the shipped defaults (early stopping)" if size["epochs"] is None else
                   f"every Supervised step capped at {size['epochs']} epochs (early stopping within the cap)")
                + ".**" if reduced else ""), ""]
    seeds = sorted({int(k.split("seed ")[1].split(" |")[0]) for k in results if k.startswith("adding")})
    adding = []
    targets = []
    for seed in seeds:
        p = f"adding | seed {seed}"
        old, scratch = results.get(f"{p} | old model"), results.get(f"{p} | retrain from scratch")
        if old:
            adding.append({"seed": seed, "row": "7-label model (all cells known)", "old-label mAP": old["old_mAP"],
                           "new-label mAP": "", "training s": old["train_s"]})
        for name in ROW_DIRS:
            r = results.get(f"{p} | {name}")
            if r:
                adding.append({"seed": seed, "row": name, "old-label mAP": r["old_mAP"], "new-label mAP": r["new_mAP"],
                               "training s": r["train_s"]})
            if not (old and scratch and r) or r is scratch:
                continue
            drop = 100 * (old["old_mAP"] - r["old_mAP"])
            targets.append(
                f"- seed {seed}, {name}: old-label mAP drop {drop:+.2f} points (target ≤ 1: "
                f"{'holds' if drop <= 1 else 'fails'}); new-label mAP {r['new_mAP']:.3f} vs scratch "
                f"{scratch['new_mAP']:.3f} (target ≥: {'holds' if r['new_mAP'] >= scratch['new_mAP'] else 'fails'}); "
                f"training time scratch / extend {scratch['train_s'] / r['train_s']:.2f}× (target ≥ 3×: "
                f"{'holds' if scratch['train_s'] >= 3 * r['train_s'] else 'fails'})")
    summary = _adding_over_seeds(results, seeds)
    if adding:
        lines += ["### Adding labels", "", "Targets:", *targets, "", *summary,
                  f"7 old labels (every cell known), 3 new labels with `random-cells {NEW_FRACTION}`; old / new-label "
                  "mAP: mean test AP over those labels; training s: the recipe's steps before its "
                  "test evaluation (Supervised, Propagate, FineTune; Export not counted). Seeds run: "
                  f"{seeds}."
                  + (f" With every Supervised step capped at {size['epochs']} epochs, the 7-label model is not "
                     "necessarily converged, and the extension trains it for up to two more such steps: a gain on "
                     "the old labels here says that, not that the extension keeps a converged model's outputs; "
                     "the drop target is only tested by the protocol's run." if size["epochs"] else ""),
                  "", markdown_table(adding), ""]
    choose_seeds = sorted({int(k.split("seed ")[1].split(" |")[0]) for k in results if k.startswith("choosing")})
    if choose_seeds:
        table, finals = [], {}
        for method in METHODS:
            row = {"method": method}
            for k in range(ROUNDS + 1):
                keys = [f"choosing | seed {s} | round 0" if k == 0 else f"choosing | seed {s} | {method} | round {k}"
                        for s in choose_seeds]
                values = [results[key]["mAP"] for key in keys if key in results]
                if values:
                    m, sd, n = mean_sd(values)
                    row[f"round {k} (+{k} %)"] = f"{m:.3f} ± {sd:.3f} ({n})"
                    finals.setdefault(method, {})[k] = m
            table.append(row)
        lines += ["### Choosing cells", "",
                  f"Start: `random-cells {START_FRACTION}`; each round adds {int(100 * ADD_FRACTION)} % of the cells "
                  f"({int(round(ADD_FRACTION * size['n_train'] * 10)):,}) chosen by `suggest_for_run(method=...)` "
                  "and answered from the truth; every round trains "
                  + ("`Supervised()` (until validation mAP stops improving, as shipped)" if size["round_epochs"] is None
                     else f"`Supervised(epochs={size['round_epochs']}, patience=None)`")
                  + " -> `Propagate()` on the table, a new model each round (the same training rule for every "
                  f"method). Test mAP, mean ± std over seeds (number of seeds in brackets); seeds run: {choose_seeds}.",
                  "", markdown_table(table), ""]
        rebuilt = [(x, results[f"choosing | seed {x} | round 0"]) for x in choose_seeds
                   if "rebuilt_from" in results.get(f"choosing | seed {x} | round 0", {})]
        if rebuilt:
            lines += ["Round 0 rebuilt (its run directory was gone) for seed(s) "
                      + ", ".join(f"{x} (test mAP {r['mAP']:.4f}, recorded {r['rebuilt_from']['mAP']:.4f})"
                                  for x, r in rebuilt)
                      + ": the round-0 column shows the rebuilt model; the rows of a ranking that uses the model "
                        "(every method but random) chose their first cells from the model there was when they ran "
                        "(docs/labeling.md says which); random choice does not depend on it.", ""]
        r = finals.get("random", {})
        for ranking in ("suggest", "suggest per label", "diverse"):  # the shipped ranking, --per-label, BADGE
            s = finals.get(ranking, {})
            if ROUNDS not in r or not s:
                continue
            reached = [k for k in sorted(s) if k >= 1 and s[k] >= r[ROUNDS]]
            verdict = (f"{ranking} reaches random's round-{ROUNDS} mAP {r[ROUNDS]:.3f} after round {reached[0]} "
                       f"({reached[0]} % added cells vs {ROUNDS} %)" if reached else
                       f"{ranking} never reaches random's round-{ROUNDS} mAP {r[ROUNDS]:.3f} within the {max(s)} rounds "
                       "run")
            ok = bool(reached) and reached[0] <= ROUNDS // 2
            lines += [f"Target ({ranking} reaches random's final mAP with at most half of the added cells): "
                      f"{verdict}: **{'holds' if ok else 'fails'}**.", ""]
        if ROUNDS in r and finals.get("suggest"):
            # Each seed's rows against the same seed's: the target at half the cells, then every pair of
            # methods with the same cells (the final round).
            for a, ka, b, kb in [("suggest", ROUNDS // 2, "random", ROUNDS), ("suggest", ROUNDS, "random", ROUNDS),
                                 ("uncertainty", ROUNDS, "random", ROUNDS), ("suggest", ROUNDS, "uncertainty", ROUNDS),
                                 ("typical", ROUNDS // 2, "random", ROUNDS), ("typical", ROUNDS, "random", ROUNDS),
                                 ("typical", ROUNDS, "uncertainty", ROUNDS),
                                 ("suggest per label", ROUNDS // 2, "random", ROUNDS),
                                 ("suggest per label", ROUNDS, "random", ROUNDS),
                                 ("suggest per label", ROUNDS, "suggest", ROUNDS),
                                 ("suggest per label", ROUNDS, "uncertainty", ROUNDS),
                                 ("diverse", ROUNDS // 2, "random", ROUNDS), ("diverse", ROUNDS, "random", ROUNDS),
                                 ("diverse", ROUNDS, "uncertainty", ROUNDS),
                                 ("diverse", ROUNDS, "suggest per label", ROUNDS)]:
                lines += _paired_line(results, choose_seeds, f"choosing | seed {{}} | {a} | round {ka}",
                                      f"choosing | seed {{}} | {b} | round {kb}",
                                      f"{a} after round {ka} minus {b} after round {kb}")
            if len(choose_seeds) < 3:
                steps = [abs(curve[k + 1] - curve[k]) for curve in finals.values() for k in range(ROUNDS)
                         if k in curve and k + 1 in curve]
                lines += [f"With {len(choose_seeds)} seed(s) (the protocol asks for 3) this verdict is not evidence "
                          f"either way: one method's test mAP moves by up to {100 * max(steps):.1f} points between "
                          "consecutive rounds, as much as the methods differ.", ""]
    flags = "" if not reduced else (f" --n-train {size['n_train']} --n-test {size['n_test']}"
                                     + (f" --epochs {size['epochs']}" if size["epochs"] else "")
                                     + (f" --round-epochs {size['round_epochs']}" if size["round_epochs"] else ""))
    ran = sorted(set(seeds) | set(choose_seeds))
    lines += [f"Runs: `python benchmarks/labeling.py --seeds {' '.join(map(str, ran))}{flags}` (the results file keeps "
              "every finished row; this section is written by `--report-only` with the same size flags).", ""]
    body = "\n".join(lines)
    print(body)
    if write:
        write_section("B8-reduced" if reduced else "B8", body)  # a reduced run never replaces the protocol's
    return body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,200 train / 600 test mosaics, 2-epoch steps, seed 0")
    parser.add_argument("--parts", nargs="+", default=["adding", "choosing"], choices=["adding", "choosing"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--rows", nargs="+", default=list(ROW_DIRS), choices=list(ROW_DIRS),
                        help="'adding' rows to run (default all)")
    parser.add_argument("--work", type=Path, default=None, help=f"folder of the run directories (default {WORK})")
    parser.add_argument("--n-train", type=int, default=None, help="train pool (a reduced run; default 10,000)")
    parser.add_argument("--n-test", type=int, default=None, help="test mosaics (a reduced run; default 4,000)")
    parser.add_argument("--epochs", type=int, default=None, help="cap of every Supervised step of 'adding' (reduced run)")
    parser.add_argument("--round-epochs", type=int, default=None, help="epochs of a 'choosing' round, no early stopping (reduced run; default: Supervised() as shipped)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, choices=range(1, ROUNDS + 1),
                        help=f"run the first ROUNDS rounds of 'choosing' (default {ROUNDS}; a later run resumes)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)
    size = dict(SIZES["quick" if args.quick else "full"])
    for name in ("n_train", "n_test", "epochs", "round_epochs"):
        if getattr(args, name) is not None:
            if getattr(args, name) < 1:
                parser.error(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
            size[name] = getattr(args, name)
    size["tag"] = "full" if size == SIZES["full"] else "quick" if args.quick else (
        f"n{size['n_train']} t{size['n_test']} e{size['epochs']} r{size['round_epochs']}")
    size_name = "quick" if args.quick else size["tag"]
    if args.quick:
        args.seeds = [0]
    path = QUICK_RESULTS if args.quick else RESULTS
    results = json.loads(path.read_text()) if path.is_file() else {}
    if not args.report_only:
        if not (SHARED / "data" / "fashion-mnist").is_dir():
            print(f"B8 needs {SHARED / 'data' / 'fashion-mnist'}; not found.")
            return 1
        work = (args.work or WORK) / size_name.replace(" ", "_")
        # Another part or seed may run at the same time: each save writes only this run's records.
        save = functools.partial(save_merged, path, results, copy.deepcopy(results))
        for seed in args.seeds:
            if "adding" in args.parts:
                adding_labels(seed, size, work / "adding", results, save, args.rows)
            if "choosing" in args.parts:
                choosing_cells(seed, size, work / "choosing", results, save, args.methods, args.rounds)
    report(results, size, write=not args.no_write and not args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
