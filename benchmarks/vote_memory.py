"""Where the photo recipe's kNN vote loses points, on B7's dev split: its memory or its blend?

    python benchmarks/vote_memory.py --seeds 0 1 2 3 4 5

The recipe's `NeighbourVote` stores every pool photo with its known cells and, for its unknown
cells, the probabilities diffused from the known ones. It outputs `0.3 · model + 0.7 · vote`. The
recipe (its noisy student with that vote, built as B7's rows build it: `photos.with_vote`) is
scored on the dev photos as shipped and with one part changed:
- the memory's cells that no person gave (under single positives also the assumed negatives,
  which the step stores as 0) filled otherwise: with the student's own scores of the pool photos,
  with the mean of those and what the step stores, or with the pool's truth. The last is an oracle
  no run has: it bounds what a better fill could give;
- the blend taken on logits, `0.3 · logit(model) + 0.7 · logit(vote)`.
Dev mAP per seed, the AP of each fill on those cells of the pool (against the pool's truth,
a diagnostic only), and the paired difference against the shipped vote, in points. Only pool and
dev photos are read (`photos_ablation.pool_and_dev`); the test photos never are. Nothing is written.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import photos
from photos_ablation import pool_and_dev, student, teacher_variant

VARIANTS = ("fill: the student's scores", "fill: mean of diffused and student", "fill: the truth (oracle)",
            "blend on logits")


def main(argv: list[str] | None = None) -> int:
    from scipy.special import logit

    from ssl_multilabel.models import NeighbourVote
    from ssl_multilabel.teacher_student.pseudo_labels import predict_scores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--protocol", default="random-cells 0.05")
    args = parser.parse_args(argv)

    paths, truth, train, _test = photos.load_photos()  # the test rows are never used here
    pool, dev = pool_and_dev(train)
    features = photos.photo_features(paths, photos.backbone_model())
    pool_truth = truth.subset(pool)
    differences: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for seed in args.seeds:
        partial = photos.hide(pool_truth, args.protocol, seed)
        teacher, table = teacher_variant("bc", features[pool], partial, seed, photos.recipe_head()["l2"])
        kept = student(features[pool], partial, table, teacher, seed, feature_noise=0.5, dropout=0.5, rounds=1)
        voted = photos.with_vote(kept, features[pool], partial, seed)
        layers = [layer for layer in voted.layers if isinstance(layer, NeighbourVote)]
        if not layers:
            print(f"{args.protocol} | seed {seed}: the vote's checks refused it; skipped", flush=True)
            continue
        layer = layers[0]
        shipped = layer.values.numpy()
        known = partial.known  # a person's cells; the rest (assumed negatives included) are filled
        own = predict_scores(kept, features[pool])
        fills = {VARIANTS[0]: own, VARIANTS[1]: 0.5 * (shipped + own), VARIANTS[2]: pool_truth.values}
        model_dev = predict_scores(kept, features[dev])
        blended = predict_scores(voted, features[dev])
        vote_dev = (blended - (1 - layer.weight) * model_dev) / layer.weight
        eps = 1e-6
        scores = {"shipped": blended, VARIANTS[3]: (1 - layer.weight) * logit(np.clip(model_dev, eps, 1 - eps))
                  + layer.weight * logit(np.clip(vote_dev, eps, 1 - eps))}
        for name, fill in fills.items():
            layer.values.assign(np.where(known, shipped, fill).astype("float32"))
            scores[name] = predict_scores(voted, features[dev])
        layer.values.assign(shipped)
        dev_truth = truth.subset(dev)
        figures = {name: photos.test_map(dev_truth, s) for name, s in scores.items()}
        fill_ap = {name: photos.test_map(pool_truth.restrict(~known), fill)
                   for name, fill in [("shipped", shipped)] + list(fills.items())[:2]}
        for name in VARIANTS:
            differences[name].append(100 * (figures[name] - figures["shipped"]))
        print(f"{args.protocol} | seed {seed} | dev mAP: " + ", ".join(f"{n} {v:.4f}" for n, v in figures.items())
              + " | AP of the fill on the cells no person gave: " + ", ".join(f"{n} {v:.4f}" for n, v in fill_ap.items()),
              flush=True)
    for name, values in differences.items():
        if values:
            spread = np.std(values, ddof=1) if len(values) > 1 else 0.0
            print(f"{name} - shipped: {np.mean(values):+.2f} ± {spread:.2f} points ({len(values)} seeds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
