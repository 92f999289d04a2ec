"""Choose the quickstart recipe's settings on B5's data without the test split: a dev split of the training pool.

    python benchmarks/noisy_student_ablation.py [--protocols ...] [--seeds 0] [--variants ...] [--quick]

`FashionMosaics(dev_fraction=0.2)`: 2,000 of B5's 10,000 training mosaics form a fully labeled dev
split (fixed rows, the same for every variant and seed), the protocol hides cells of the other
8,000, and the t10k test mosaics are never read. Every variant is a list of recipe steps run by
`run_recipe` (the code of `ssl-multilabel run`), ending in `Evaluate()`, which scores the dev
split. Printed and stored: dev mAP, the last training step's own validation mAP, images seen.
A variant whose first step is the one step of another variant (e.g. the shipped `Supervised()`)
starts from that variant's run of the same (protocol, seed) (`run_recipe(start_from=...)`).
Results: `benchmarks/results/ssl_quality_ablation.json`; docs/noisy_student.md records what was
chosen from them.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ssl_quality as b5  # noqa: E402  (B5's data, recipes and run records)
from _report import mean_sd, save_merged  # noqa: E402
from ssl_multilabel.recipes import (  # noqa: E402
    Evaluate, FashionMosaics, NeighbourVote, NoisyStudent, Propagate, Recipe, Supervised,
)

RESULTS = b5.ROOT / "benchmarks" / "results" / "ssl_quality_ablation.json"
RUNS = b5.RUNS.parent / "ssl_quality_ablation"
DEV_FRACTION = 0.2
TEACHER = "supervised (shipped: converged)"


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoisyStudentFillsFirst(NoisyStudent):
    """The `NoisyStudent` step with the other order of its first two sources: the cells earlier
    steps filled (propagation) before the teacher's confident cells. For this ablation only."""

    @staticmethod
    def sources(train, human, negatives=None) -> list:
        from ssl_multilabel.teacher_student.sources import FixedTable

        sources = NoisyStudent.sources(train, human, negatives)
        if len(sources) > 1 and isinstance(sources[1], FixedTable):  # no fill: one order only
            sources[:2] = sources[1::-1]
        return sources


def quickstart_steps() -> tuple:
    """The quickstart recipe's training steps before its flips (until 2026-12-05), which every
    "quickstart" variant below changes: fixed here, so that a variant's records keep their meaning
    when the shipped recipe changes. The shipped steps are the variant "quickstart, flip + shift
    0.125 in every training step" (a test checks it)."""
    return (Supervised(), Propagate(k=10, target_precision=0.9), NoisyStudent())


def _quickstart_with(**changes) -> tuple:
    """The quickstart's training steps (before its flips) with fields of its NoisyStudent step changed."""
    return tuple(dataclasses.replace(s, **changes) if isinstance(s, NoisyStudent) else s for s in quickstart_steps())


#: Variant name -> its training steps (a callable, built when the variant runs).
VARIANTS = {
    TEACHER: lambda: (Supervised(),),
    "supervised, epochs=10 (the old quickstart)": lambda: (Supervised(epochs=10),),
    "quickstart steps (as shipped)": quickstart_steps,  # until 2026-12-05: the name is its records' key
    # The quickstart's student until this ablation chose the shipped one (one round, trained until
    # validation mAP stops improving): dev mAP 0.770 vs 0.796, seed 0.
    "quickstart, student rounds=2, epochs=8, batch 32 (the former quickstart)":
        lambda: _quickstart_with(rounds=2, epochs=8, batch_size=32),
    "quickstart, student width 1.5": lambda: _quickstart_with(width=1.5),
    # Iterated noisy student: round 2's teacher is round 1's student.
    "quickstart, student rounds=2": lambda: _quickstart_with(rounds=2),
    # Per-label teacher thresholds fitted on the validation rows for 90 % precision (instead of 0.9 / 0.1).
    "quickstart, per-label thresholds for precision 0.9": lambda: _quickstart_with(target_precision=0.9),
    "quickstart, student with RandAugment 0.5": lambda: _quickstart_with(augment_magnitude=0.5),
    # Polyak averaging: the student is validated and kept as the moving average of its weights.
    "quickstart, student weights averaged (EMA 0.999)": lambda: _quickstart_with(ema_momentum=0.999),
    # The student's head dropout of the photo recipe (chosen on B7's dev split) instead of 0.3.
    "quickstart, student dropout 0.5": lambda: _quickstart_with(dropout=0.5),
    # Hard pseudo-labels (1 / 0) on the selected teacher cells instead of the teacher's probabilities.
    "quickstart, hard teacher targets": lambda: _quickstart_with(soft=False),
    # Three pseudo-labelled rows per labeled row in a batch (the Noisy Student paper's 3:1), not 1:1.
    "quickstart, unlabel_ratio 3": lambda: _quickstart_with(unlabel_ratio=3.0),
    # EM-style: the teacher's probability as a soft target on every unknown cell (no confidence cut).
    "quickstart, soft targets on every unknown cell":
        lambda: _quickstart_with(positive_threshold=0.5, negative_threshold=0.4999),
    # The shipped steps again, as the control of variants whose shared teacher differs from the
    # one the "as shipped" record was made with (e.g. on another machine), without replacing that record.
    "quickstart steps (as shipped, control)": quickstart_steps,
    # Defaults that came from test-set runs and had no validation run yet: the batch halves
    # (`balance="halves"`: labeled and pseudo-labelled halves weigh the same) against one mean
    # over every cell, and stochastic depth (survival 0.9) against none.
    "quickstart, balance cells": lambda: _quickstart_with(balance="cells"),
    "quickstart, no stochastic depth": lambda: _quickstart_with(survival_probability=1.0),
    # Shorter student epochs (40 batches, about a third of one pass): validation and early stopping
    # three times as often, instead of once per pass over the rows (`steps_per_epoch=None`).
    "quickstart, steps_per_epoch 40": lambda: _quickstart_with(steps_per_epoch=40),
    # The order of the step's sources (shipped: the teacher's cells first, then the propagated ones).
    "quickstart, propagated cells before the teacher's": lambda: tuple(
        NoisyStudentFillsFirst(**s.settings()) if isinstance(s, NoisyStudent) else s
        for s in quickstart_steps()),
    "supervised -> noisy student (step defaults)": lambda: (Supervised(), NoisyStudent()),
    # The photo recipe's NeighbourVote step (chosen on B7's dev split) after the teacher, and after
    # the quickstart's student: a kNN vote of the training mosaics in the model's own embeddings.
    "supervised + neighbour vote": lambda: (Supervised(), NeighbourVote()),
    "quickstart steps + neighbour vote": lambda: (*quickstart_steps(), NeighbourVote()),
    # Large-loss rejection (losses.LargeLossRejection, rate 0.1): the teacher alone, and every training step.
    "supervised, loss ll_r": lambda: (Supervised(loss="ll_r"),),
    "quickstart, loss ll_r in every training step": lambda: tuple(
        dataclasses.replace(s, loss="ll_r") if isinstance(s, b5.TRAINING_STEPS) else s for s in quickstart_steps()),
    # Weak, label-preserving input noise on the student (FixMatch's weak view: a random flip and a
    # shift of up to 1/8 of the size; noise.weak_augment), where RandAugment cost 4.6 dev points.
    "quickstart, student flip + shift 0.125": lambda: _quickstart_with(flip_shift=0.125),
    # The same noise on the masked supervised baseline (the teacher alone): does it explain the student's gain?
    "supervised, flip + shift 0.125": lambda: (Supervised(flip_shift=0.125),),
    "quickstart, flip + shift 0.125 in every training step": lambda: tuple(
        dataclasses.replace(s, flip_shift=0.125) if isinstance(s, b5.TRAINING_STEPS) else s for s in quickstart_steps()),
}


def teacher_of(name: str) -> str | None:
    """The variant whose run `name` starts from: the one-step variant whose step is `name`'s first (or None)."""
    steps = VARIANTS[name]()
    if len(steps) < 2:
        return None
    built = ((t, make()) for t, make in VARIANTS.items())  # each variant's steps built once
    return next((t for t, other in built if len(other) == 1
                 and b5.step_settings(other[0]) == b5.step_settings(steps[0])), None)


def dev_recipe(steps: tuple, protocol: str, seed: int, n_train: int) -> Recipe:
    data = FashionMosaics(source_dir=str(b5.SHARED / "data" / "fashion-mnist"), n_train=n_train,
                          dev_fraction=DEV_FRACTION, **b5.PROTOCOLS[protocol])
    return Recipe(name="b5-dev", data=data, steps=[*steps, Evaluate()], seed=seed)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", nargs="+", default=list(b5.PROTOCOLS), choices=list(b5.PROTOCOLS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--n-train", type=int, default=10_000, help="training pool before the dev split (B5: 10,000)")
    parser.add_argument("--again", action="store_true",
                        help="run the listed variants again, replacing their records (e.g. as controls after the "
                             "shared teacher ran again: records made from different teachers do not compare)")
    parser.add_argument("--quick", action="store_true", help="smoke run: every training step capped at 2 epochs")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--runs", type=Path, default=RUNS)
    args = parser.parse_args(argv)

    results = json.loads(args.results.read_text()) if args.results.is_file() else {}
    base = copy.deepcopy(results)  # the file as read: save_merged writes only this run's records
    replaced: set[str] = set()  # the records --again runs anew (never merged back from the file)
    teachers = {name: teacher_of(name) for name in args.variants}
    variants = list(dict.fromkeys([*(t for t in teachers.values() if t), *args.variants]))  # shared teachers first
    for protocol in args.protocols:
        for seed in args.seeds:
            prefix = f"{protocol} | seed {seed} | n {args.n_train} | "
            if args.again:
                for name in args.variants:
                    results.pop(prefix + name, None)
                    replaced.add(prefix + name)
            pending = [v for v in variants if prefix + v not in results]
            for name in variants:
                key = prefix + name
                # A shared teacher runs again if its run directory is gone (a clean checkout keeps
                # the records, not the cache) and a variant still to run would start from it.
                if key in results and not (any(teachers.get(v) == name for v in pending)
                                           and not Path(results[key]["run_dir"]).is_dir()):
                    continue
                recipe = dev_recipe(VARIANTS[name](), protocol, seed, args.n_train)
                teacher = results.get(prefix + teachers[name]) if teachers.get(name) else None
                shares = teacher is not None
                overrides = tuple(f"{s.name}.epochs=2" for s in recipe.steps
                                  if args.quick and isinstance(s, b5.TRAINING_STEPS))
                slug = "".join(c if c.isalnum() else "_" for c in f"n{args.n_train}_seed{seed}_{protocol}_{name}")
                record = b5.run_and_record(recipe, args.runs / slug, start_from=Path(teacher["run_dir"]) if shares else None,
                                           teacher=teacher if shares else None, overrides=overrides,
                                           command=["benchmarks/noisy_student_ablation.py", name, protocol, f"seed={seed}"])
                record["dev_mAP"], record["dev_AUC"] = record.pop("test_mAP"), record.pop("test_AUC")
                record.update(protocol=protocol, seed=seed, variant=name, n_train=args.n_train, quick=args.quick,
                              teacher_dev_mAP=teacher["dev_mAP"] if shares else None)
                results[key] = record
                # Merged into the file as it is now: a run of another variant may have saved meanwhile.
                save_merged(args.results, results, base, replaced)
                print(f"{key}: dev mAP {record['dev_mAP']:.4f}, validation mAP {record['val_mAP']}, "
                      f"{record['images_total']:,} images, {record['seconds_total'] / 60:.1f} min", flush=True)
    results = json.loads(args.results.read_text())  # with the records other runs saved meanwhile
    print("\nDev mAP (mean ± std over seeds; the t10k test split is not read):")
    for protocol in args.protocols:
        for name in VARIANTS:
            runs = [r for r in results.values() if r["protocol"] == protocol and r["variant"] == name
                    and r["n_train"] == args.n_train]
            if runs:
                dev, dev_sd, _ = mean_sd(r["dev_mAP"] for r in runs)
                print(f"  {protocol:18s} {name:45s} {dev:.4f} ± {dev_sd:.4f} ({len(runs)} seeds, "
                      f"{np.mean([r['images_total'] for r in runs]) / 1000:.0f}k images, "
                      f"{np.mean([r['seconds_total'] for r in runs]) / 60:.1f} min)")
    return results


if __name__ == "__main__":
    main()
