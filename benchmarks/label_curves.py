"""How many labels do I need? Test mAP against the fraction of known cells, and per label against known positives.

    python benchmarks/label_curves.py                  # both datasets, 7 fractions, seeds 0 1 2
    python benchmarks/label_curves.py --datasets photos --seeds 0
    python benchmarks/label_curves.py --quick          # photos, fractions 0.05 and 1.0, seed 0
    python benchmarks/label_curves.py --report-only    # figures and docs from the results file

Every run is one shipped recipe run by `run_recipe` (the code of `ssl-multilabel run`) on a table
made by `random-cells p` from the fully known training labels, p in 1, 2, 5, 10, 20, 50, 100 %:

- photos: `recipes/photos.py` on `../shared/data/miml-scenes` (frozen MobileNet-0.75 with the
  ImageNet weights of `../shared/weights`, 1,500 train / 500 test photos, B7's split);
- mosaics: `recipes/quickstart.py` (the bundled fashion-mosaics, small CNN, 3,000 train /
  1,000 test mosaics).

One run gives both curves: its `evaluate_supervised` step scores the masked supervised model
(the `Supervised` step: known cells only, early stopping on masked validation mAP of held-out
labeled rows, best epoch restored) and its final `evaluate` step the full semi-supervised recipe
(then `Propagate`, `NoisyStudent` and, in the photo recipe, `NeighbourVote`). Every setting is
the recipe's own; validation rows come from the training table; the test split is read once per
step, by the two `Evaluate` steps.

The frozen backbone's features depend only on the photo and the weights, so every photo run
reads them from one shared cache (`benchmarks/results/.photos_features`) instead of its run
directory: that saves the minute of feature extraction per run and changes no number.

Results are kept per (dataset, p, seed) in `benchmarks/results/label_curves.json` (quick:
`label_curves_quick.json`), so an interrupted run resumes. The figures go to
`docs/img/labeling_curve_*.png` and `docs/img/labeling_per_label_*.png` and the tables between
the markers of docs/labeling.md ("How many labels do I need?"); `--quick` writes its figures to
`benchmarks/results/cache/label_curves/` and touches no doc.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from _report import markdown_table, mean_sd  # noqa: E402
from ssl_multilabel._files import atomic_path, atomic_write_json  # noqa: E402
from ssl_multilabel.labels import PartialLabels  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "label_curves.json"
QUICK_RESULTS = ROOT / "benchmarks" / "results" / "label_curves_quick.json"
IMG = ROOT / "docs" / "img"
DOC = ROOT / "docs" / "labeling.md"
QUICK_IMG = ROOT / "benchmarks" / "results" / "cache" / "label_curves"  # git-ignored
FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
DATASETS = ("photos", "mosaics")
METHODS = {"masked": "evaluate_supervised", "recipe": "evaluate"}
METHOD_NAMES = {"masked": "masked supervised (Supervised step)", "recipe": "full recipe (all its steps)"}
RECIPES = {"photos": ROOT / "recipes" / "photos.py", "mosaics": ROOT / "recipes" / "quickstart.py"}


# === Pure helpers (tested) ===


def known_positives(labels: PartialLabels) -> dict[str, int]:
    """Known positive cells per label name."""
    counts = (labels.known & (labels.values >= 0.5)).sum(axis=0)
    return {name: int(c) for name, c in zip(labels.label_names, counts)}


def run_key(dataset: str, fraction: float, seed: int) -> str:
    return f"{dataset} | p {fraction:g} | seed {seed}"


def curve(records: dict, dataset: str, method: str) -> list[tuple[float, float, float, int]]:
    """(fraction, mean mAP, std over seeds, seeds) per fraction with at least one run, ascending."""
    points = []
    for fraction in sorted({r["fraction"] for r in records.values() if r["dataset"] == dataset}):
        values = [r[method]["mAP"] for r in records.values()
                  if r["dataset"] == dataset and r["fraction"] == fraction and method in r]
        if values:
            points.append((fraction, *mean_sd(values)))
    return points


def per_label_points(records: dict, dataset: str, method: str) -> dict[str, list[tuple[int, float]]]:
    """Per label: (known positives, test AP) of every run, sorted by known positives; NaN AP left out."""
    out: dict[str, list[tuple[int, float]]] = {}
    for r in records.values():
        if r["dataset"] != dataset or method not in r:
            continue
        for name, ap in r[method]["per_label_AP"].items():
            if ap is not None and np.isfinite(ap):
                out.setdefault(name, []).append((int(r["known_positives"][name]), float(ap)))
    return {name: sorted(points) for name, points in out.items()}


def positives_for(points: list[tuple[int, float]], target: float) -> int | None:
    """The fewest known positives at which a label's AP reached `target` (None if never)."""
    reached = [n for n, ap in points if ap >= target]
    return min(reached) if reached else None


# === Runs ===


def _shared_feature_cache(shared_dir: Path) -> None:
    """Make every recipe run read frozen-backbone features from `shared_dir` (see the module docstring)."""
    import ssl_multilabel.features as features

    original = features.cached_features
    if getattr(original, "_label_curves", False):
        return

    def wrapper(model, inputs, *, cache_dir=None, **kwargs):  # noqa: ARG001 (the run's folder, replaced)
        return original(model, inputs, cache_dir=shared_dir, **kwargs)

    wrapper._label_curves = True  # type: ignore[attr-defined]
    features.cached_features = wrapper


def _step_outputs(run_dir: Path) -> dict[str, dict]:
    """name -> (metrics, per-label table) of every finished Evaluate step of a run."""
    import pandas as pd

    state = json.loads((run_dir / "state.json").read_text())
    out = {}
    for record in state["finished"]:
        if record["name"] in METHODS.values():
            table = pd.read_csv(run_dir / record["dir"] / "per_label.csv") if "dir" in record else None
            out[record["name"]] = {"metrics": record["metrics"], "table": table}
    return out


def run_one(dataset: str, fraction: float, seed: int, overrides: list[str]) -> dict:
    """One recipe run at `random-cells fraction`; the record kept in the results file."""
    import photos  # B7's data loading

    from ssl_multilabel.datasets import random_cells
    from ssl_multilabel.recipes import load_recipe_file, run_recipe

    recipe = load_recipe_file(RECIPES[dataset])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if dataset == "photos":
            _shared_feature_cache(photos.CACHE)
            _paths, truth, train, test = photos.load_photos()
            partial = random_cells(truth.subset(train), p=fraction, seed=seed)
            partial.save(tmp / "train.csv")
            truth.subset(test).save(tmp / "test.csv")
            sets = [f"data.labels_csv={tmp / 'train.csv'}", f"data.test_csv={tmp / 'test.csv'}",
                    f"data.image_dir={photos.DATA / 'images'}", f"supervised.weights={photos.WEIGHTS}"]
        else:
            sets = ["data.protocol=random_cells", f"data.known_fraction={fraction}"]
            partial = None
        sets += [f"seed={seed}", *overrides]
        started = time.perf_counter()
        run_dir = run_recipe(recipe, tmp / "run", overrides=sets)
        wall = time.perf_counter() - started
        if partial is None:  # the table the Quickstart data source hid, by its own code
            from ssl_multilabel.recipes import apply_overrides

            partial = apply_overrides(recipe, sets).data.load(seed, run_dir).labels
        record = {"dataset": dataset, "fraction": fraction, "seed": seed, "wall_s": wall, "overrides": overrides,
                  "train_rows": partial.n_samples, "known_cells": int(partial.known.sum()),
                  "known_positives": known_positives(partial)}
        state = json.loads((run_dir / "state.json").read_text())
        record["steps"] = {r["name"]: {k: v for k, v in (r.get("metrics") or {}).items()
                                       if k in ("round_kept", "cells_filled", "best_val_mAP", "teacher_cells",
                                                "keep", "difference", "difference_se")}
                           for r in state["finished"]
                           if r["type"] in ("Supervised", "Propagate", "NoisyStudent", "NeighbourVote")}
        for method, step in METHODS.items():
            outputs = _step_outputs(run_dir)[step]
            table = outputs["table"]
            record[method] = {
                "mAP": float(outputs["metrics"]["mAP"]),
                "AUC": float(outputs["metrics"]["AUC"]),
                "per_label_AP": {str(n): (None if not np.isfinite(a) else float(a))
                                 for n, a in zip(table["label"], table["AP"])},
                "test_rows": int(table["n_known"].max()),
            }
    return record


# === Figures and docs ===


def plot(records: dict, dataset: str, suffix: str = "", folder: Path = IMG) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, style in (("masked", "o--"), ("recipe", "s-")):
        points = curve(records, dataset, method)
        if points:
            x, y, e, _ = zip(*points)
            ax.errorbar([100 * v for v in x], y, yerr=e, fmt=style, capsize=3, label=METHOD_NAMES[method])
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks([100 * f for f in FRACTIONS], [f"{100 * f:g}" for f in FRACTIONS])
    ax.set_xlabel("known cells of the training table (%)")
    ax.set_ylabel("test mAP")
    ax.set_title(f"{dataset}: test mAP against labeled cells")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    written.append(_save(fig, folder / f"labeling_curve_{dataset}{suffix}.png"))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, method in zip(axes, ("masked", "recipe")):
        for name, points in sorted(per_label_points(records, dataset, method).items()):
            by_n: dict[int, list[float]] = {}
            for n, ap in points:
                by_n.setdefault(n, []).append(ap)
            xs = sorted(by_n)
            ax.plot([max(n, 0.8) for n in xs], [statistics.mean(by_n[n]) for n in xs], ".-", label=name)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("known positives of the label in the training table")
        ax.set_title(METHOD_NAMES[method])
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("test AP of the label")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{dataset}: per-label AP against known positives")
    written.append(_save(fig, folder / f"labeling_per_label_{dataset}{suffix}.png"))
    return written


def _save(fig, path: Path) -> Path:
    """Write `fig` as a PNG (atomically) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def tables(records: dict) -> str:
    """Markdown: the curve table per dataset, and per label the known positives needed for AP 0.8 / 0.9."""
    out = []
    for dataset in DATASETS:
        rows = []
        masked, recipe = dict((p[0], p) for p in curve(records, dataset, "masked")), \
            dict((p[0], p) for p in curve(records, dataset, "recipe"))
        for fraction in sorted(set(masked) | set(recipe)):
            runs = [r for r in records.values() if r["dataset"] == dataset and r["fraction"] == fraction]
            row = {"known cells (%)": f"{100 * fraction:g}",
                   "known cells": f"{statistics.mean(r['known_cells'] for r in runs):.0f}",
                   "known positives per label (min-max)": "{}-{}".format(
                       min(min(r["known_positives"].values()) for r in runs),
                       max(max(r["known_positives"].values()) for r in runs))}
            for method, points in (("masked", masked), ("recipe", recipe)):
                if fraction in points:
                    _, mean, spread, n = points[fraction]
                    row[f"test mAP, {METHOD_NAMES[method]}"] = f"{mean:.3f} ± {spread:.3f} ({n})"
            row["wall s per run (mean)"] = f"{statistics.mean(r['wall_s'] for r in runs):.0f}"
            rows.append(row)
        if not rows:
            continue
        seeds = sorted({r["seed"] for r in records.values() if r["dataset"] == dataset})
        pools = sorted({r["train_rows"] for r in records.values() if r["dataset"] == dataset})
        sets = sorted({" ".join(r.get("overrides", [])) for r in records.values() if r["dataset"] == dataset})
        out.append(f"**{dataset}**: `{RECIPES[dataset].relative_to(ROOT)}`, training rows {pools}, "
                   f"recipe overrides {[x for x in sets if x] or 'none'}, seeds {seeds}; test mAP mean ± std over "
                   "seeds (number of seeds in brackets)\n")
        out.append(markdown_table(rows) + "\n")
        label_rows = []
        for method in ("masked", "recipe"):
            for name, points in sorted(per_label_points(records, dataset, method).items()):
                best = max(ap for _, ap in points)
                label_rows.append({"method": METHOD_NAMES[method], "label": name,
                                   "positives for AP ≥ 0.5": positives_for(points, 0.5) or "not reached",
                                   "positives for AP ≥ 0.8": positives_for(points, 0.8) or "not reached",
                                   "positives for AP ≥ 0.9": positives_for(points, 0.9) or "not reached",
                                   "best AP": f"{best:.3f}"})
        out.append("Per label: the fewest known positives of any run at which the label's test AP reached "
                   "0.5 / 0.8 / 0.9 (single runs, not a guarantee):\n")
        out.append(markdown_table(label_rows) + "\n")
    return "\n".join(out)


def write_doc(records: dict) -> None:
    """Put the tables (and the command, date, versions) between the markers of docs/labeling.md."""
    from _report import versions

    from ssl_multilabel._files import atomic_write_text

    begin, end = "<!-- BEGIN label_curves -->", "<!-- END label_curves -->"
    command = "python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    block = (f"{begin}\n{tables(records)}\nTables written by `{command}` from "
             f"`benchmarks/results/label_curves.json` -- {time.strftime('%Y-%m-%d')} -- {versions()}\n{end}")
    text = DOC.read_text() if DOC.is_file() else "# Labeling\n\n## How many labels do I need?\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    atomic_write_text(DOC, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="photos only, fractions 0.05 and 1.0, seed 0")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="recipe override KEY=VALUE for every run (recorded with the run)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite the tables of docs/labeling.md")
    args = parser.parse_args(argv)
    for fraction in args.fractions:
        if not 0 < fraction <= 1:
            parser.error(f"--fractions must be in (0, 1]; got {fraction}")
    results_path = QUICK_RESULTS if args.quick else RESULTS
    if args.quick:
        args.datasets, args.fractions, args.seeds = ["photos"], [0.05, 1.0], [0]
    records = json.loads(results_path.read_text()) if results_path.is_file() else {}
    if not args.report_only:
        import photos

        if "photos" in args.datasets and (not photos.DATA.is_dir() or not photos.WEIGHTS.is_file()):
            print(f"The photo curves need {photos.DATA} and {photos.WEIGHTS}; not found.")
            return 1
        for seed in args.seeds:  # seed outermost: a stopped run leaves whole curves of the first seeds
            for dataset in args.datasets:
                for fraction in args.fractions:
                    key = run_key(dataset, fraction, seed)
                    if key in records:
                        continue
                    records[key] = run_one(dataset, fraction, seed, args.overrides)
                    atomic_write_json(results_path, records)
                    r = records[key]
                    print(f"{key}: masked {r['masked']['mAP']:.4f}, recipe {r['recipe']['mAP']:.4f} "
                          f"({r['wall_s']:.0f} s)", flush=True)
    suffix, folder = ("_quick", QUICK_IMG) if args.quick else ("", IMG)
    for dataset in DATASETS:
        if any(r["dataset"] == dataset for r in records.values()):
            for path in plot(records, dataset, suffix, folder):
                print(f"wrote {path.relative_to(ROOT)}")
    print(tables(records))
    if not args.quick and not args.no_write:
        write_doc(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
