"""How many cells does the vote's positive-unlabeled rule leave unknown, and does it cost the vote?

    python benchmarks/likely_positives.py [--seeds 0 1 2]

`NeighbourVote(likely_positives=True)` leaves the unknown cells of a label without a known
negative that `assumptions.likely_positive_cells` puts at g/c >= 0.5 to the propagation, instead
of taking them as negatives. The Elkan-Noto estimate of c (the mean of g over the known
positives) assumes the probe separates the classes; where the features carry little of the
label, g is nearly constant, c is estimated as that constant and almost every cell passes.
This measures what that does, under single positive labels (`datasets.single_positive`):
- synthetic tables (3,000 rows, 5 labels, each present with probability 0.25, 64 Gaussian
  features of which the first 5 are shifted by `separation` where the label is present), from
  features that carry no label (separation 0) to features that separate the labels well;
- B7's dev pool (`photos_ablation.py`: 1,200 training photos, the cached MobileNet-0.75
  features), when `../shared` is there. No test photo is read.
Per table: the share of the unknown cells marked, the share of hidden positives among the
marked cells and among all unknown cells (the base rate), the share of hidden positives found;
the AP of the vote's diffused scores (`KNNLabelPropagation`, the shipped `k`, `alpha`, cosine)
on the unknown cells against the truth, with the former seeds (every other cell a negative)
and with the shipped ones; and whether `check_neighbour_vote` keeps the vote. Prints a Markdown
table and writes it to `benchmarks/results/likely_positives.md`; docs/noisy_student.md
summarises it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import photos  # noqa: E402  (B7's data and backbone)
import photos_ablation  # noqa: E402  (the dev split)

from ssl_multilabel._files import atomic_write_text  # noqa: E402

RESULTS = photos.ROOT / "benchmarks" / "results" / "likely_positives.md"
SEPARATIONS = (0.0, 0.3, 0.6, 1.0, 1.5, 3.0)


def synthetic(separation: float, seed: int):
    """(features, truth) of a synthetic table: 3,000 rows, 5 labels, 64 features."""
    from ssl_multilabel.labels import PartialLabels

    rng = np.random.default_rng([seed, 1])  # a stream apart from the protocol's, which `seed` drives
    y = (rng.random((3000, 5)) < 0.25).astype(float)
    y[y.sum(axis=1) == 0, 0] = 1.0  # every row has a positive to give
    features = rng.normal(size=(3000, 64))
    features[:, :5] += separation * y
    return features, PartialLabels.from_array(y)


def measure(features: np.ndarray, truth, seed: int, k: int, alpha: float) -> dict:
    from sklearn.metrics import average_precision_score

    from ssl_multilabel.datasets import single_positive
    from ssl_multilabel.propagation import KNNLabelPropagation
    from ssl_multilabel.recipes.steps import check_neighbour_vote, vote_seeds

    partial = single_positive(truth, seed=seed)
    y = truth.values >= 0.5
    unknown = ~partial.known
    hidden = unknown & y
    former, shipped = (vote_seeds(partial, features, likely_positives=likely, seed=seed) for likely in (False, True))
    aps = []
    for seeds in (former, shipped):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            diffused = KNNLabelPropagation(n_neighbors=k, alpha=alpha, metric="cosine", random_state=seed).fit(
                features, np.where(seeds.known, seeds.values, -1.0)).label_distributions_
        aps.append(np.mean([average_precision_score(y[unknown[:, j], j], diffused[unknown[:, j], j])
                            for j in range(truth.n_labels) if hidden[:, j].any()]))
    marked = unknown & ~shipped.known  # the likely positives, left to the propagation
    check = check_neighbour_vote(features, partial, k=k, alpha=alpha, seed=seed, seeds=shipped)
    return {"marked": marked.sum() / unknown.sum(), "precision": (marked & hidden).sum() / max(marked.sum(), 1),
            "base": hidden.sum() / unknown.sum(), "recall": (marked & hidden).sum() / hidden.sum(),
            "ap_former": aps[0], "ap_shipped": aps[1], "kept": check["keep"]}


def main(argv: list[str] | None = None) -> int:
    from ssl_multilabel.recipes import NeighbourVote

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    step = NeighbourVote()  # the shipped k and alpha
    tables = [(f"synthetic, separation {s:g}", lambda seed, s=s: synthetic(s, seed)) for s in SEPARATIONS]
    if photos.DATA.is_dir() and photos.WEIGHTS.is_file():
        paths, truth, train, _test = photos.load_photos()  # the test rows are never used here
        pool, _dev = photos_ablation.pool_and_dev(train)
        features = photos.photo_features(paths)
        tables.append(("B7 dev pool (1,200 photos)", lambda seed: (features[pool], truth.subset(pool))))
    else:
        print(f"{photos.DATA} or {photos.WEIGHTS} not found: synthetic tables only.")
    lines = [f"`python benchmarks/likely_positives.py {shlex.join(sys.argv[1:] if argv is None else argv)}`; "
             f"single positive labels; mean over seeds {args.seeds}; AP: mean over labels, unknown cells only.", "",
             "| table | unknown cells marked | hidden positives among them | among all unknown cells | hidden "
             "positives found | vote AP, former seeds | vote AP, shipped seeds | shipped - former (points) | "
             "check keeps the vote |", "|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for name, make in tables:
        rows = [measure(*make(seed), seed, step.k, step.alpha) for seed in args.seeds]
        mean = {key: float(np.mean([r[key] for r in rows])) for key in rows[0] if key != "kept"}
        gain = [100 * (r["ap_shipped"] - r["ap_former"]) for r in rows]
        lines.append(f"| {name} | {mean['marked']:.0%} | {mean['precision']:.0%} | {mean['base']:.0%} | "
                     f"{mean['recall']:.0%} | {mean['ap_former']:.3f} | {mean['ap_shipped']:.3f} | "
                     f"{np.mean(gain):+.1f} ({min(gain):+.1f} to {max(gain):+.1f}) | "
                     f"{sum(r['kept'] for r in rows)} of {len(rows)} |")
        print(lines[-1], flush=True)
    atomic_write_text(RESULTS, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
