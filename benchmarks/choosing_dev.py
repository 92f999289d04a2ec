"""Choose how `suggest` ranks cells on a dev split of B7's photos (never the test set).

    python benchmarks/choosing_dev.py [--seeds 0 ... 11] [--methods ...] [--heads 3]

B8's "choosing cells" loop (benchmarks/labeling.py) on the photo recipe's data, cheap enough to
compare rankings over many seeds: the dev split of `photos_ablation.py` (1,200 pool photos, 300
fully labeled dev photos, cached MobileNet-0.75 features; the 500 test photos are never read).
Start: `random-cells 0.02` on the pool; 4 rounds, each adding 1 % of the pool's cells (60), chosen
by a ranking and answered from the truth (`labeling.merge_answers`). Every round trains the photo
recipe's teacher head (its `Supervised` step, `photos.recipe_head()`) and its
`Propagate(k=10, target_precision=0.9)`; the next round's cells are ranked from that head's scores
of the pool, the propagation scores and the kNN graph, as `ssl-multilabel suggest` ranks them
from a run. Scored: the head's dev mAP after each round.

Rankings: the methods of `labeling.suggest_cells` ("suggest", "uncertainty", "random",
"typical": TypiClust per label on the cached features, and "diverse": BADGE per label, uncertain
cells spread over the cached features; both an equal share of the budget per label)
and two candidates that spend an equal share of the budget on every label by a score ranking
(`suggest_cells(per_label=True)`; mAP weighs every label the same, and a ranking over all cells
can spend the budget on one label):
- "uncertainty per label": each label's most uncertain cells (the `u` term of `suggest`);
- "suggest per label": each label's cells by the `suggest` priority.
Results: `benchmarks/results/choosing_dev.json`, one dev mAP per (seed, method, round).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import photos  # noqa: E402  (B7's data, backbone and head training)
import photos_ablation  # noqa: E402  (its pool / dev split)
from _report import beyond_twice_the_spread, mean_sd, save_merged  # noqa: E402

RESULTS = photos.ROOT / "benchmarks" / "results" / "choosing_dev.json"
START_FRACTION, ADD_FRACTION, ROUNDS = 0.02, 0.01, 4  # B8's
K = 10  # the photo recipe's Propagate(k=10)
METHODS = ("random", "uncertainty", "suggest", "typical", "uncertainty per label", "suggest per label", "diverse")


def choose(method: str, table, scores, propagation, graph, budget: int, seed: int, features) -> pd.DataFrame:
    """The suggestion frame of `method` ("<ranking> per label": `per_label=True`)."""
    from ssl_multilabel.labeling import suggest_cells

    return suggest_cells(table, scores, budget=budget, graph=graph, propagation=propagation, features=features,
                         method=method.removesuffix(" per label"), per_label=method.endswith(" per label"), seed=seed)


def train_round(features: np.ndarray, table, seed: int):
    """The recipe's teacher head on `table`, its scores of the pool, the propagation scores and the graph."""
    from ssl_multilabel.labels import validation_split
    from ssl_multilabel.propagation import knn_graph
    from ssl_multilabel.recipes.steps import propagate_table
    from ssl_multilabel.teacher_student.pseudo_labels import predict_scores

    head, _ = photos.train_head(features, table, table, seed, **photos.recipe_head())
    scores = np.clip(np.asarray(predict_scores(head, features), np.float64), 0.0, 1.0)
    _, val_rows = validation_split(table, photos.VALIDATION, seed)  # held out, as the recipe's Propagate does
    propagation = propagate_table(table, features, k=K, target_precision=0.9, seed=seed, holdout_rows=val_rows)[1]
    return head, scores, np.clip(propagation, 0.0, 1.0), knn_graph(features, k=K)


def main(argv: list[str] | None = None) -> int:
    from ssl_multilabel.datasets import random_cells
    from ssl_multilabel.labeling import merge_answers
    from ssl_multilabel.teacher_student.pseudo_labels import predict_scores

    from labeling import answered  # B8's: the suggestion frame answered from the truth

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(12)))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--heads", type=int, default=1,
                        help="dev mAP of a round: the mean of this many heads trained on its table (the first one "
                             "ranks the next round's cells); records under '<N> heads | '")
    args = parser.parse_args(argv)

    paths, truth, train, _test = photos.load_photos()  # the test rows are never used here
    pool, dev = photos_ablation.pool_and_dev(train)
    features = photos.photo_features(paths)
    pool_truth, dev_truth = truth.subset(pool), truth.subset(dev)
    budget = int(round(ADD_FRACTION * pool_truth.known.size))
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}

    def save(key: str, record: dict) -> None:
        results[key] = record
        save_merged(RESULTS, {key: record}, {})  # into the file as it is now: another run may be adding to it
        print(f"{key}: dev mAP {record['dev_mAP']:.4f}", flush=True)

    prefix = f"{args.heads} heads | " if args.heads > 1 else ""

    def dev_map(head, table, seed) -> tuple[float, list[float]]:
        """Dev mAP of `head` and of `args.heads - 1` more heads trained on `table` (other seeds: other
        validation rows and initial weights), and their mean."""
        values = [photos.test_map(dev_truth, predict_scores(head, features[dev]))]
        for h in range(1, args.heads):
            other, _ = photos.train_head(features[pool], table, table, seed + 1000 * h, **photos.recipe_head())
            values.append(photos.test_map(dev_truth, predict_scores(other, features[dev])))
        return float(np.mean(values)), values

    for seed in args.seeds:
        key0 = f"{prefix}seed {seed} | round 0"
        methods = [m for m in args.methods
                   if not all(f"{prefix}seed {seed} | {m} | round {k}" in results for k in range(1, ROUNDS + 1))]
        if key0 in results and not methods:
            continue  # every record of the seed exists: nothing to train
        start = random_cells(pool_truth, p=START_FRACTION, seed=seed)
        first = train_round(features[pool], start, seed)
        if key0 not in results:
            mean, values = dev_map(first[0], start, seed)
            save(key0, {"dev_mAP": mean, "dev_mAP_heads": values, "known_cells": int(start.known.sum())})
        for method in methods:
            table, (_, scores, propagation, graph) = start, first
            for k in range(1, ROUNDS + 1):
                frame = answered(choose(method, table, scores, propagation, graph, budget, seed * 100 + k,
                                       features[pool]), pool_truth)
                table = merge_answers(table, frame)
                head, scores, propagation, graph = train_round(features[pool], table, seed)
                mean, values = dev_map(head, table, seed)
                save(f"{prefix}seed {seed} | {method} | round {k}", {
                    "dev_mAP": mean, "dev_mAP_heads": values,
                    "known_cells": int(table.known.sum()),
                    "added_positive_share": float(frame["answer"].astype(int).mean()),
                    "added_per_label": {str(n): int(c) for n, c in frame["label"].value_counts().items()},
                })
    report(results, prefix)
    return 0


def report(results: dict, prefix: str = "") -> None:
    """Dev mAP per method and round, and paired differences (`prefix`: the records of `--heads N`)."""
    mine = {k.removeprefix(prefix): v for k, v in results.items()
            if (k.startswith(prefix) if prefix else k.startswith("seed "))}
    seeds = sorted({int(k.split(" | ")[0].split()[1]) for k in mine})
    print(f"\n{prefix}dev mAP, mean ± std over seeds {seeds} (start: random-cells {START_FRACTION}; "
          f"+{ADD_FRACTION:.0%} of the cells per round):")
    for method in METHODS:
        cells = []
        for k in range(ROUNDS + 1):
            key = "seed {} | round 0" if k == 0 else f"seed {{}} | {method} | round {k}"
            values = [mine[key.format(s)]["dev_mAP"] for s in seeds if key.format(s) in mine]
            if values:
                m, sd, n = mean_sd(values)
                cells.append(f"r{k} {m:.3f} ± {sd:.3f} ({n})")
        print(f"  {method:22s} " + "  ".join(cells))
    print("\nPaired per seed, in points (mean over rounds 1-4: the area under the curve):")

    def curve(method: str, s: int, rounds) -> float | None:
        keys = [f"seed {s} | {method} | round {k}" for k in rounds]
        return float(np.mean([mine[k]["dev_mAP"] for k in keys])) if all(k in mine for k in keys) else None

    for method in METHODS:
        for rounds, versus, versus_rounds in (((2,), "random", (4,)), ((4,), "random", (4,)),
                                              ((1, 2, 3, 4), "random", (1, 2, 3, 4)),
                                              ((1, 2, 3, 4), "suggest", (1, 2, 3, 4))):
            if method == versus:
                continue
            pairs = [(curve(method, s, rounds), curve(versus, s, versus_rounds)) for s in seeds]
            pairs = [100 * (a - b) for a, b in pairs if a is not None and b is not None]
            if len(pairs) >= 2:
                m, sd, n = mean_sd(pairs)
                what = "rounds 1-4" if len(rounds) > 1 else f"round {rounds[0]}"
                print(f"  {method} {what} - {versus} {'rounds 1-4' if len(versus_rounds) > 1 else f'round {versus_rounds[0]}'}: "
                      f"{m:+.2f} ± {sd:.2f} ({n} seeds, {sum(p > 0 for p in pairs)} ahead)"
                      + (" beyond twice the spread" if beyond_twice_the_spread(m, sd) else ""))


if __name__ == "__main__":
    sys.exit(main())
