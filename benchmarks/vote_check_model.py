"""The vote's check on the model itself, on B7's dev split: does it keep the vote where the vote helps?

    python benchmarks/vote_check_model.py [--seeds 0 1 2 3 4 5] [--protocols ...]

For each protocol and seed of the dev ablation (`photos_ablation.py`: the 1,200-photo pool, the
300 fully labeled dev photos), the photo recipe's `Supervised` head (`photos.recipe_head()`) is
trained on the pool, and `recipes.steps.check_neighbour_vote_on_validation` runs on the validation
rows that training held out, with the recipe's `NeighbourVote` settings. Beside its decision, the
vote's dev gain: dev mAP of the head blended with the vote of every pool photo minus the head's.

`--recipe-seeds S ...`: also B7's training tables (the 1,500 training photos, each of B7's
protocols among `--protocols`, those seeds), through the shipped `recipes/photos.py` up to its `NeighbourVote` step (its `Evaluate`,
`Export` and `Report` steps dropped, no test split): what both of the step's checks decide for B7's
row (e), with the run's own model. No test photo is read. Prints Markdown tables and writes them
to `benchmarks/results/vote_check_model.md`; docs/noisy_student.md summarises them.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import photos  # noqa: E402  (B7's data, backbone and head training)
import photos_ablation  # noqa: E402  (the dev split)

from ssl_multilabel._files import atomic_write_text  # noqa: E402

RESULTS = photos.ROOT / "benchmarks" / "results" / "vote_check_model.md"


def main(argv: list[str] | None = None) -> int:
    from ssl_multilabel.labels import validation_split
    from ssl_multilabel.recipes.steps import check_neighbour_vote_on_validation
    from ssl_multilabel.teacher_student.pseudo_labels import predict_scores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--protocols", nargs="+", default=list(photos.PROTOCOLS))
    parser.add_argument("--recipe-seeds", type=int, nargs="*", default=[])
    args = parser.parse_args(argv)
    if not photos.DATA.is_dir() or not photos.WEIGHTS.is_file():
        print(f"needs {photos.DATA} and {photos.WEIGHTS}; not found.")
        return 1
    paths, truth, train, _test = photos.load_photos()  # the test rows are never used here
    pool, dev = photos_ablation.pool_and_dev(train)
    features = photos.photo_features(paths)
    settings = photos.vote_settings()
    head_settings = photos.recipe_head()
    lines = [f"check_neighbour_vote_on_validation, {settings}, head: {photos.head_description(head_settings)} "
             f"(`python benchmarks/vote_check_model.py {shlex.join(sys.argv[1:] if argv is None else argv)}`)", "",
             "| protocol | seed | validation rows | model AUC | blended AUC | difference (points) | kept | "
             "dev mAP, head | dev mAP, head + vote | vote's dev gain (points) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for protocol in args.protocols:
        for seed in args.seeds:
            partial = photos.hide(truth.subset(pool), protocol, seed)
            head, _ = photos.train_head(features[pool], partial, partial, seed, **head_settings)
            _, val_rows = validation_split(partial, photos.VALIDATION, seed)  # the rows train_head held out
            r = check_neighbour_vote_on_validation(features[pool], partial, predict_scores(head, features[pool][val_rows]),
                                                   val_rows, seed=seed, **settings)
            voted = photos.with_vote(head, features[pool], partial, seed, check=False)
            dev_truth = truth.subset(dev)
            plain, blended = (photos.test_map(dev_truth, predict_scores(h, features[dev])) for h in (head, voted))
            lines.append(f"| {protocol} | {seed} | {len(val_rows)} | {r.get('AUC_model', float('nan')):.4f} | "
                         f"{r.get('AUC_blend', float('nan')):.4f} | {100 * r.get('difference', float('nan')):+.2f} ± "
                         f"{100 * r.get('difference_se', float('nan')):.2f} | {'yes' if r['keep'] else 'no'} | "
                         f"{plain:.4f} | {blended:.4f} | {100 * (blended - plain):+.2f} |")
            print(lines[-1], flush=True)
    if args.recipe_seeds:
        lines += ["", "B7's training tables, the shipped photo recipe up to its `NeighbourVote` step:", "",
                  "| protocol | seed | model's check (validation AUC, points) | probe's check (cross-fitted mAP, "
                  "points) | vote kept |", "|---|---|---|---|---|"]
        print("\n".join(lines[-4:]), flush=True)
        rows = np.sort(train)
        for protocol in [p for p in args.protocols if p in photos.PROTOCOLS]:  # B7's protocols
            for seed in args.recipe_seeds:
                m = recipe_vote_metrics(photos.hide(truth.subset(rows), protocol, seed), seed)
                figure = ("{:+.2f} ± {:.2f}".format(100 * m[key + "difference"], 100 * m[key + "difference_se"])
                          if key + "difference" in m else "not run" for key in ("validation_", ""))
                lines.append(f"| {protocol} | {seed} | {' | '.join(figure)} | {'yes' if m['keep'] else 'no'} |")
                print(lines[-1], flush=True)
    atomic_write_text(RESULTS, "\n".join(lines) + "\n")
    return 0


def recipe_vote_metrics(partial, seed: int) -> dict:
    """The metrics of the shipped photo recipe's `NeighbourVote` step on the table `partial` (B7's
    training photos), run without its evaluation steps and without a test split."""
    import dataclasses
    import json
    import tempfile

    from ssl_multilabel.recipes import Evaluate, Export, Report, run_recipe

    recipe = photos.shipped_recipe()
    recipe = dataclasses.replace(recipe, steps=[s for s in recipe.steps if not isinstance(s, (Evaluate, Export, Report))])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        partial.save(tmp / "train.csv")  # ids are the photos' file names
        run_dir = run_recipe(recipe, tmp / "run", overrides=[
            f"data.labels_csv={tmp / 'train.csv'}", f"data.image_dir={photos.DATA / 'images'}", "data.test_fraction=0",
            f"supervised.weights={photos.WEIGHTS}", f"seed={seed}",
        ])
        state = json.loads((run_dir / "state.json").read_text())
    return next(r for r in state["finished"] if r["type"] == "NeighbourVote")["metrics"]


if __name__ == "__main__":
    sys.exit(main())
