"""How right is the Propagate step's fill on the digits folder? Its cells against the fully known table.

    python benchmarks/digits_check/fill_check.py DIGITS_DIR RUN_DIR [--seed S]

`DIGITS_DIR` is the folder `make_data.py` writes; `RUN_DIR` a run of `recipes/from_folder.py` on
`DIGITS_DIR/train.csv` with recipe seed `S` (docs/noisy_student.md, "A folder never used for tuning").
The script embeds the training images with the run's `Supervised` model, as its `Propagate` step
did, fills the table as the step does (its validation rows neither seeds nor filled) and scores the
filled cells against `train_full.csv`; then it applies the fill's thresholds to three groups of
cells and reports how often a cell above the positive threshold is positive:

- the known cells, with their out-of-fold scores: the held-out precision the thresholds were fitted on;
- the unknown cells of the training rows: what the fill fills;
- the cells of the validation rows, which neither the model nor the diffusion ever saw labeled.

The known cells were also the model's training targets, and its features of an image carry what it
was taught about that image: if the known cells' precision is far above the others', the held-out
estimate flatters the fill. No test image is read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("digits", type=Path)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from ssl_multilabel.features import embed
    from ssl_multilabel.labels import PartialLabels, Source, validation_split
    from ssl_multilabel.models import load_model
    from ssl_multilabel.propagation import diffuse, fill_unknown
    from ssl_multilabel.propagation.fill import _out_of_fold_scores, both_classes_known, fold_ids
    from ssl_multilabel.recipes.steps import _graph

    table = PartialLabels.load(args.digits / "train.csv")
    full = PartialLabels.load(args.digits / "train_full.csv")
    truth = full.values[[full.ids.index(i) for i in table.ids]] >= 0.5
    model = load_model(args.run_dir / "steps" / "01_supervised" / "model.keras", compile=False)
    features = embed(model, [str(args.digits / "train" / i) for i in table.ids], image_size=(56, 56), channels=1)
    W = _graph(table, features, 10, "l2")  # the Propagate step's graph (k = 10, l2)
    _, val_rows = validation_split(table, 0.1, args.seed)
    validation = np.zeros(len(table.ids), bool)
    validation[val_rows] = True
    seeds = table.restrict(~validation[:, None] & np.ones_like(table.known))
    filled, report = fill_unknown(seeds, W, target_precision=0.9, seed=args.seed, return_report=True)
    t_pos = report["threshold_pos"].to_numpy()
    Y = seeds.to_array().astype(np.float64)
    out_of_fold = _out_of_fold_scores(W, Y, fold_ids(Y, 5, args.seed), both_classes_known(seeds), {})
    score = diffuse(W, Y).probability
    new = (filled.source == Source.PROPAGATED) & ~validation[:, None]
    groups = {
        "known cells, out-of-fold scores (what the thresholds were fitted on)": (seeds.known, out_of_fold),
        "unknown cells of the training rows (what is filled)": (~seeds.known & ~validation[:, None], score),
        "cells of the validation rows (never labeled for the model or the diffusion)": (
            validation[:, None] & np.ones_like(table.known), score),
    }
    result = {"filled": int(new.sum()), "filled positive right": float(truth[new & (filled.values >= 0.5)].mean()),
              "filled negative right": float((~truth[new & (filled.values < 0.5)]).mean())}
    for name, (cells, s) in groups.items():
        above = cells & (np.nan_to_num(s, nan=-1.0) >= t_pos)
        result[name] = (int(above.sum()), float(truth[above].mean()))
    for key, value in result.items():
        print(f"{key}: {value}")
    return result


if __name__ == "__main__":
    main()
