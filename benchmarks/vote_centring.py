"""The kNN vote on centred features, on B7's dev split: would it strengthen the baseline or the recipe?

    python benchmarks/vote_centring.py --seeds 0 1 2 3 4 5

The recipe's `NeighbourVote` compares photos by the cosine of their raw pooled features. Here the
vote is built as B7's rows build it (`photos.with_vote`: the step's settings and checks), once as
shipped and once with `centre=True` (features centred on the mean of the vote's memory), for two
models of `photos_ablation.py`:
- B7's best baseline: the head trained `photos.LAST_EPOCHS` epochs (last kept) with the vote of the
  photos that have a known cell;
- the recipe: its noisy student with the vote of every pool photo.
Dev mAP per seed and the paired difference centred - raw, in points. Only pool and dev photos are
read (`photos_ablation.pool_and_dev`); the test photos never are. Nothing is written.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import photos
from photos_ablation import pool_and_dev, student, teacher_variant


def main(argv: list[str] | None = None) -> int:
    from ssl_multilabel.teacher_student.pseudo_labels import predict_scores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--protocol", default="random-cells 0.05")
    parser.add_argument("--head-epochs", type=int, default=photos.LAST_EPOCHS)
    args = parser.parse_args(argv)

    paths, truth, train, _test = photos.load_photos()  # the test rows are never used here
    pool, dev = pool_and_dev(train)
    features = photos.photo_features(paths, photos.backbone_model())
    differences: dict[str, list[float]] = {"baseline": [], "recipe": []}
    for seed in args.seeds:
        partial = photos.hide(truth.subset(pool), args.protocol, seed)
        labeled = np.flatnonzero(partial.known.any(axis=1))
        head, _ = teacher_variant("b", features[pool], partial, seed, photos.recipe_head()["l2"], last=args.head_epochs)
        teacher, table = teacher_variant("bc", features[pool], partial, seed, photos.recipe_head()["l2"])
        kept = student(features[pool], partial, table, teacher, seed, feature_noise=0.5, dropout=0.5, rounds=1)
        models = {"baseline": (head, labeled), "recipe": (kept, np.arange(len(pool)))}
        for name, (model, rows) in models.items():
            scores = [photos.test_map(truth.subset(dev), predict_scores(photos.with_vote(
                model, features[pool][rows], partial.subset(rows), seed, centre=centre), features[dev]))
                for centre in (False, True)]
            differences[name].append(100 * (scores[1] - scores[0]))
            print(f"{args.protocol} | seed {seed} | {name}: dev mAP raw {scores[0]:.4f}, centred {scores[1]:.4f}",
                  flush=True)
    for name, values in differences.items():
        spread = np.std(values, ddof=1) if len(values) > 1 else 0.0
        print(f"{name}: centred - raw {np.mean(values):+.2f} ± {spread:.2f} points ({len(values)} seeds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
