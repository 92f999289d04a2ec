"""Does the NeighbourVote step's check keep the vote on B7's tables? (no test label is read)

    python benchmarks/vote_check.py [--seeds 0 1 2 3 4 5]

`recipes.steps.check_neighbour_vote`, with the photo recipe's shipped settings, on the training
tables B7 builds: the dev split's pool (`photos_ablation.py`) and the 1,500 training photos
(`photos.py`), under each protocol and seed, for the recipe's vote (every training photo), for
the baseline "(b) + vote of the labeled photos" (the photos with a known cell) and for the oracle's
vote (every cell known), each with the seed its row passes to the check. It reads the
cached MobileNet features and the training rows' hidden tables only. It covers the probe's
check; the step's second check (`check_neighbour_vote_on_validation`, since 2026-12-06) needs each
row's model, so the rows with a vote were run again to see what both checks decide. Prints a
Markdown table and writes it to `benchmarks/results/vote_check.md`; docs/noisy_student.md
summarises it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import photos  # noqa: E402  (B7's data and backbone)
import photos_ablation  # noqa: E402  (the dev split)

from ssl_multilabel._files import atomic_write_text  # noqa: E402

RESULTS = photos.ROOT / "benchmarks" / "results" / "vote_check.md"


def main(argv: list[str] | None = None) -> int:
    from ssl_multilabel.recipes import NeighbourVote
    from ssl_multilabel.recipes.runner import step_seed
    from ssl_multilabel.recipes.steps import check_neighbour_vote

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--protocols", nargs="+", default=list(photos.PROTOCOLS))
    args = parser.parse_args(argv)
    if not photos.DATA.is_dir() or not photos.WEIGHTS.is_file():
        print(f"needs {photos.DATA} and {photos.WEIGHTS}; not found.")
        return 1
    paths, truth, train, _test = photos.load_photos()  # the test rows are never used here
    pool, _dev = photos_ablation.pool_and_dev(train)
    features = photos.photo_features(paths)
    step = photos.recipe_step(NeighbourVote)
    settings = photos.vote_settings()
    # `run_recipe` seeds a step by its index (`runner.step_seed`); B7's head rows and the dev
    # ablation pass the seed itself (`photos.with_vote`). The check runs with the seed each row uses.
    step_index = photos.shipped_recipe().steps.index(step)
    lines = [f"check_neighbour_vote, {settings} (`python benchmarks/vote_check.py {shlex.join(sys.argv[1:] if argv is None else argv)}`)",
             "", "| table | protocol | seed | vote of | check seed | rows checked | probe mAP | blended mAP | "
             "difference (points) | kept |", "|---|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    refused = 0

    def row(table_name: str, protocol: str, seed: int, who: str, check_seed: int, features_: np.ndarray,
            labels) -> None:
        nonlocal refused
        r = check_neighbour_vote(features_, labels, seed=check_seed, **settings)
        refused += not r["keep"]
        lines.append(f"| {table_name} | {protocol} | {seed} | {who} | {check_seed} | {r.get('rows', 0)} | "
                     f"{r.get('mAP_probe', float('nan')):.3f} | {r.get('mAP_blend', float('nan')):.3f} | "
                     f"{100 * r.get('difference', float('nan')):+.1f} ± {100 * r.get('difference_se', float('nan')):.1f} | "
                     f"{'yes' if r['keep'] else 'no'} |")
        print(lines[-1], flush=True)

    for protocol in args.protocols:  # the dev ablation: one seed for the recipe's and the baseline's vote
        for seed in args.seeds:
            partial = photos.hide(truth.subset(pool), protocol, seed)
            labeled = np.flatnonzero(partial.known.any(axis=1))
            both = len(labeled) == len(pool)
            row("dev pool (1,200)", protocol, seed, "all photos (recipe)" + (", = labeled photos ((b) + vote)"
                if both else ""), seed, features[pool], partial)
            if not both:
                row("dev pool (1,200)", protocol, seed, "labeled photos ((b) + vote)", seed, features[pool][labeled],
                    partial.subset(labeled))
    rows = np.sort(train)
    for protocol in args.protocols:  # B7: the recipe row runs the step, the head rows call with_vote
        for seed in args.seeds:
            partial = photos.hide(truth.subset(rows), protocol, seed)
            labeled = np.flatnonzero(partial.known.any(axis=1))
            row("B7 training (1,500)", protocol, seed, "all photos (recipe)", step_seed(seed, step_index),
                features[rows], partial)
            row("B7 training (1,500)", protocol, seed, "labeled photos ((b) + vote)", seed, features[rows][labeled],
                partial.subset(labeled))
    for seed in args.seeds:
        row("B7 training (1,500)", "every cell known", seed, "all photos ((f) oracle + vote)", seed, features[rows],
            truth.subset(rows))
    lines += ["", f"Refused: {refused} of {len(lines) - 4}."]
    print("\n".join(lines[-2:]))
    atomic_write_text(RESULTS, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
