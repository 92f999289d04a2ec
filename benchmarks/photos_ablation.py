"""B7 ablation: choose the photo recipe's settings on a dev split of the training pool (never the test set).

    python benchmarks/photos_ablation.py [--seeds 0 1 2] [--protocols ...] [--variants ...]

The 1,500 training photos of B7 are split again (seed 100): 1,200 form the pool the protocol
hides cells of, 300 are a fully labeled dev set. Every variant trains on the pool exactly as the
photo recipe's steps do on cached MobileNet-0.75 features, and is scored on the dev set only;
this script never reads the 500 test photos. Results go to `benchmarks/results/photos_ablation.json`
and the printed table; docs/noisy_student.md records what was chosen from them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import photos  # noqa: E402  (B7's data, backbone and head training)
from _report import mean_sd, save_merged  # noqa: E402

RESULTS = photos.ROOT / "benchmarks" / "results" / "photos_ablation.json"
DEV_SEED, N_DEV = 100, 300


def pool_and_dev(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of B7's training photos that form the pool (1,200) and the fully labeled dev set (300)."""
    order = np.random.default_rng(DEV_SEED).permutation(train)
    return np.sort(order[N_DEV:]), np.sort(order[:N_DEV])


def teacher_variant(name: str, features, partial, seed, l2: float = 0.0, target_precision: float = 0.9,
                    flipped=None, chosen: bool = False, last: int | None = None):
    """(head, table) of the teacher variants: b (masked), c (after the propagation fill), and bc:
    the masked head b as teacher with the propagated table, the order of the photo recipe
    (Supervised, Propagate, NoisyStudent). `l2`: the head's `Supervised(l2=...)`;
    `target_precision`: `Propagate(target_precision=...)`; `flipped`: the head trains on both
    views; `chosen`: the weight of assumed negatives chosen by PU-AUC (`photos.train_head`); `last`:
    the head trains this many epochs and keeps the last (`Supervised(keep_epoch="last")`) instead of
    stopping early on its validation rows' mAP."""
    filled = photos.propagated(partial, features, seed, target_precision)
    labels = partial if name == "b" else filled
    fit = {} if last is None else photos.keep_last(last)
    head, _ = photos.train_head(features, partial if name == "bc" else labels, partial, seed, l2=l2, flipped=flipped,
                                chosen=chosen, **fit)
    return head, labels


def flipped_features(model, paths) -> np.ndarray:
    """The pooled features of every photo mirrored left to right, computed once (cached next to B7's)."""
    import tensorflow as tf

    from ssl_multilabel.data.pipeline import make_dataset
    from ssl_multilabel.features import _write_npy, feature_key
    from ssl_multilabel.models import build_embedding_model

    path = photos.CACHE / f"{feature_key(model, paths, image_size=photos.SIZE, channels=3)}-flipped.npy"
    if path.is_file():
        return np.load(path)
    ds = make_dataset(paths, None, image_size=photos.SIZE, channels=3, batch_size=64, augment=tf.image.flip_left_right)
    features = np.asarray(build_embedding_model(model).predict(ds, verbose=0), np.float32)
    _write_npy(path, features)
    return features


def pseudo_seeded(table, head, features, positive: float = 0.9, negative: float = 0.1):
    """The person's cells of `table`, plus the cells `head` is confident about (>= `positive`: 1,
    <= `negative`: 0), all as a person's: a vote seeded by the kept model's confident cells too."""
    from ssl_multilabel.labeling import human_cells
    from ssl_multilabel.labels import PartialLabels
    from ssl_multilabel.teacher_student.pseudo_labels import predict_scores

    human = human_cells(table)
    p = predict_scores(head, features)
    values = np.where(human.known, human.values, np.where(p >= positive, 1.0, np.where(p <= negative, 0.0, -1.0)))
    return PartialLabels.from_array(values, label_names=human.label_names, ids=human.ids)


def student(features, partial, table, teacher_head, seed, *, feature_noise, dropout, rounds, balance="halves",
            keep="mAP", l2=0.0, assumed=True, fills_first=False, flipped=None, chosen=False, last=None, **settings):
    """Noisy student rounds on cached features, as the NoisyStudent step runs them.

    `keep`: which model the variant hands on. "mAP": the step's rule (the round with the best
    validation mAP); "AUC": the round with the best validation AUC (on a tie the later round);
    "average": one round's student and its teacher, their output layers averaged (the logits of a
    linear head are linear in its weights, so this is the mean of the two models' logits).
    `l2`: the student head's L2 penalty (the step's student has none); `assumed=False`: the
    unknown cells the teacher leaves uncertain stay unknown instead of being assumed negative
    (single positive labels); `fills_first=True`: the propagated cells take precedence over the
    teacher's (the step's order is the teacher's first); `flipped`: the features of the mirrored
    photos, one row per row of `features`: the student then trains on both views of every
    training row (the teacher labels each view); `chosen`: the weight of the assumed negatives
    chosen by PU-AUC on the training rows (`choose_negative_assumption`), as the step did until
    2026-12-06 (else weight 1, as it does now); `last`: each student trains this many epochs and keeps
    the last (`keep_epoch="last"`) instead of stopping early on its validation rows' mAP (the step
    still keeps the round with the best validation mAP); `settings`: further `noisy_student`
    settings (e.g. its thresholds).
    """
    from ssl_multilabel.models import head_model, with_new_head
    from ssl_multilabel.labels import given_cells, validation_split
    from ssl_multilabel.recipes.steps import NoisyStudent, _best_round, assume_negatives
    from ssl_multilabel.teacher_student.assumptions import choose_negative_assumption
    from ssl_multilabel.teacher_student.loop import noisy_student
    from ssl_multilabel.teacher_student.sources import AssumeNegative
    from noisy_student_ablation import NoisyStudentFillsFirst  # the same swap on B5's dev split

    model = photos.backbone_model()
    train_rows, val_rows = validation_split(table, photos.VALIDATION, seed)
    images, train_rows = photos.both_views(features, flipped, train_rows)
    train = table.subset(train_rows, allow_repeats=True)
    human = given_cells(train)
    step = NoisyStudentFillsFirst if fills_first else NoisyStudent
    negatives = choose_negative_assumption(train, images, seed=seed, log=False) if chosen else None
    sources = [s for s in step.sources(train, human, negatives) if assumed or not isinstance(s, AssumeNegative)]
    fit = {"epochs": photos.EPOCHS, "patience": photos.PATIENCE, "keep_epoch": "best"} if last is None else \
        photos.keep_last(last)
    result = noisy_student(
        images, human, sources=sources, teacher=teacher_head, rounds=rounds,
        epochs=fit["epochs"], patience=fit["patience"],
        batch_size=64, balance=balance, val_images=features[val_rows],
        val_labels=assume_negatives(given_cells(table.subset(val_rows)), log=False),
        build_student=lambda k: head_model(with_new_head(model, table.n_labels, dropout=dropout,
                                                         feature_noise=feature_noise, l2=l2, seed=seed + k)),
        seed=seed, train_kwargs={"verbose": 0, "keep_epoch": fit["keep_epoch"]}, **settings,
    )
    if keep == "mAP":
        return _best_round(result.rounds).model  # the step keeps the round with the best validation mAP
    if keep == "AUC":
        return max(reversed(result.rounds), key=lambda r: r.metrics["val"]["summary"]["AUC"]).model
    teacher, last = (r.model.get_layer("scores").get_weights() for r in (result.rounds[0], result.rounds[-1]))
    averaged = head_model(with_new_head(model, table.n_labels, dropout=dropout, seed=seed))
    averaged.get_layer("scores").set_weights([(a + b) / 2 for a, b in zip(teacher, last)])
    return averaged


NO_PU = {"likely_positives": False}  # the vote's seeds before `NeighbourVote(likely_positives=True)`

VARIANTS = {
    "b": {},
    "c": {},
    "c+ns noise0 drop0.2 r1": dict(feature_noise=0.0, dropout=0.2, rounds=1),
    "c+ns noise0.1 drop0.5 r1": dict(feature_noise=0.1, dropout=0.5, rounds=1),
    "c+ns noise0.5 drop0.5 r1": dict(feature_noise=0.5, dropout=0.5, rounds=1),
    "c+ns noise0.5 drop0.5 r2": dict(feature_noise=0.5, dropout=0.5, rounds=2),
    "c+ns noise1.0 drop0.5 r1": dict(feature_noise=1.0, dropout=0.5, rounds=1),
    "c+ns noise0.5 drop0.5 r1 cells": dict(feature_noise=0.5, dropout=0.5, rounds=1, balance="cells"),
    "bc+ns noise0.5 drop0.5 r1": dict(feature_noise=0.5, dropout=0.5, rounds=1),
    "bc+ns noise0.5 drop0.5 r2": dict(feature_noise=0.5, dropout=0.5, rounds=2),
    # The teacher head's L2 penalty (`Supervised(l2=...)`); a name without "l2=" trains it with l2=0.
    "b l2=0.01": {}, "b l2=0.03": {}, "b l2=0.1": {}, "b l2=0.3": {},
    "bc l2=0.03+ns noise0.5 drop0.5 r1": dict(feature_noise=0.5, dropout=0.5, rounds=1),
    # What the recipe hands on, instead of the round with the best validation mAP.
    "bc l2=0.03+ns noise0.5 drop0.5 r1 keep AUC": dict(feature_noise=0.5, dropout=0.5, rounds=1, keep="AUC"),
    "bc l2=0.03+ns noise0.5 drop0.5 r1 keep average": dict(feature_noise=0.5, dropout=0.5, rounds=1, keep="average"),
    # The student head's L2 penalty (the recipe's student has none).
    "bc l2=0.03+ns noise0.5 drop0.5 r1 l2=0.01": dict(feature_noise=0.5, dropout=0.5, rounds=1, l2=0.01),
    "bc l2=0.03+ns noise0.5 drop0.5 r1 l2=0.03": dict(feature_noise=0.5, dropout=0.5, rounds=1, l2=0.03),
    "bc l2=0.03+ns noise0.5 drop0.5 r1 l2=0.1": dict(feature_noise=0.5, dropout=0.5, rounds=1, l2=0.1),
    # The teacher's probability as a soft target on every unknown cell (EM-style): no confidence cut.
    "bc l2=0.03+ns noise0.5 drop0.5 r1 soft all": dict(feature_noise=0.5, dropout=0.5, rounds=1,
                                                       positive_threshold=0.5, negative_threshold=0.4999),
    "bc l2=0.03+ns noise0.5 drop0.5 r1 no assumed": dict(feature_noise=0.5, dropout=0.5, rounds=1, assumed=False),
    # The order of the step's sources: the propagated cells before the teacher's.
    "bc l2=0.03+ns noise0.5 drop0.5 r1 fills first": dict(feature_noise=0.5, dropout=0.5, rounds=1,
                                                           fills_first=True),
    # The propagation fill's target precision (`Propagate(target_precision=...)`; a name without "tp=": 0.9).
    "bc l2=0.03 tp=0.8+ns noise0.5 drop0.5 r1": dict(feature_noise=0.5, dropout=0.5, rounds=1),
    "bc l2=0.03 tp=0.95+ns noise0.5 drop0.5 r1": dict(feature_noise=0.5, dropout=0.5, rounds=1),
    # The recipe's NeighbourVote step after the student: a kNN vote of the pool photos blended in
    # (`vote`: overrides of the step's shipped settings). These records were made before the step
    # left the likely positives of a label without a known negative to the propagation, so they
    # keep the former seeds (`NO_PU`); " PU" marks the variants with the shipped seeds.
    **{f"bc l2=0.03+ns noise0.5 drop0.5 r1 vote{name}": dict(feature_noise=0.5, dropout=0.5, rounds=1, vote=NO_PU | vote)
       for name, vote in {"": {}, " k=5": {"k": 5}, " k=20": {"k": 20}, " alpha=0.2": {"alpha": 0.2},
                          " alpha=0.8": {"alpha": 0.8}, " weight=0.3": {"weight": 0.3}, " weight=0.5": {"weight": 0.5},
                          " weight=0.7": {"weight": 0.7}, " only": {"weight": 1.0}}.items()},
    "bc l2=0.03+ns noise0.5 drop0.5 r1 vote PU": dict(feature_noise=0.5, dropout=0.5, rounds=1, vote={}),
    # The vote's weight above the shipped 0.7, with the shipped seeds.
    **{f"bc l2=0.03+ns noise0.5 drop0.5 r1 vote PU weight={w}": dict(feature_noise=0.5, dropout=0.5, rounds=1,
                                                                    vote={"weight": w}) for w in (0.8, 0.9)},
    # A second student round (its teacher: the first round's student; the step keeps the round with
    # the best validation mAP), then the vote.
    "bc l2=0.03+ns noise0.5 drop0.5 r2 vote PU": dict(feature_noise=0.5, dropout=0.5, rounds=2, vote={}),
    # The voted student as the teacher of a second student, which is voted again.
    "bc l2=0.03+ns noise0.5 drop0.5 r1 vote, voted teacher": dict(feature_noise=0.5, dropout=0.5, rounds=1,
                                                                   vote=NO_PU, again=True),
    # The vote seeded by the kept student's confident cells (>= 0.9, <= 0.1) besides the person's.
    "bc l2=0.03+ns noise0.5 drop0.5 r1 vote pseudo": dict(feature_noise=0.5, dropout=0.5, rounds=1, vote=NO_PU,
                                                          pseudo=True),
    # Mirrored photos (features of each photo flipped left to right, computed once): the head trains
    # on both views; the student trains on both views; or every step and the dev photos use the
    # mean of the two views' features ("mean views: ").
    "b l2=0.03 flips": {},
    "bc l2=0.03+ns noise0.5 drop0.5 r1 flips vote": dict(feature_noise=0.5, dropout=0.5, rounds=1, vote=NO_PU,
                                                         flips=True),
    "mean views: b l2=0.03 labeled vote": {},
    "mean views: bc l2=0.03+ns noise0.5 drop0.5 r1 vote": dict(feature_noise=0.5, dropout=0.5, rounds=1, vote=NO_PU),
    # The teacher head with the vote of the photos that have a known cell only (no unlabeled photo).
    "b l2=0.03 labeled vote": {},
    "b l2=0.03 labeled vote PU": {},
    # The weight of assumed negatives as the recipe's steps chose it until 2026-12-06 (PU-AUC on the
    # training rows' features, `choose_negative_assumption`): " chosen" in the teacher's name,
    # chosen=True for the student; every other variant assumes negatives of weight 1, as the steps do now.
    "b l2=0.03 chosen": {},
    "b l2=0.03 chosen labeled vote PU": {},
    "bc l2=0.03 chosen+ns noise0.5 drop0.5 r1 chosen vote PU": dict(feature_noise=0.5, dropout=0.5, rounds=1,
                                                                    chosen=True, vote={}),
    # The teacher head trained a fixed number of epochs, the last one kept (`Supervised(keep_epoch="last")`),
    # instead of early stopping on its validation rows' mAP: " last<epochs>" in the teacher's name.
    "b l2=0.03 last600": {},
    "b l2=0.03 last600 labeled vote PU": {},
    "b l2=0.03 labeled vote PU weight=0.8": {},
    "b l2=0.03 last600 labeled vote PU weight=0.8": {},
    "bc l2=0.03 last600+ns noise0.5 drop0.5 r1 vote PU": dict(feature_noise=0.5, dropout=0.5, rounds=1, vote={}),
    # The student trained so too (" last<epochs>" after the student's settings).
    "bc l2=0.03+ns noise0.5 drop0.5 r1 last600 vote PU": dict(feature_noise=0.5, dropout=0.5, rounds=1, last=600,
                                                              vote={}),
    "bc l2=0.03 last600+ns noise0.5 drop0.5 r1 last600 vote PU": dict(feature_noise=0.5, dropout=0.5, rounds=1,
                                                                      last=600, vote={}),
}
LABELED_VOTES = {" labeled vote": NO_PU, " labeled vote PU": {}, " labeled vote PU weight=0.8": {"weight": 0.8}}
# " rerun": a recorded variant measured again, on the machine and in the run of the variants it is
# the paired control of (a head's early stopping on a few validation cells differs across machines).
RERUN = " rerun"
VARIANTS |= {f"{name}{RERUN}": VARIANTS[name] for name in (
    "b l2=0.03", "b l2=0.03 labeled vote", "bc l2=0.03+ns noise0.5 drop0.5 r1 vote",
    "b l2=0.03 labeled vote PU", "bc l2=0.03+ns noise0.5 drop0.5 r1 vote PU")}


def main(argv: list[str] | None = None) -> int:
    from ssl_multilabel.teacher_student.pseudo_labels import predict_scores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--protocols", nargs="+", default=list(photos.PROTOCOLS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    args = parser.parse_args(argv)

    paths, truth, train, _test = photos.load_photos()  # the test rows are never used here
    pool, dev = pool_and_dev(train)
    model = photos.backbone_model()
    views, flipped = {"": photos.photo_features(paths, model)}, None
    if any("flips" in name or name.startswith("mean views: ") for name in args.variants):
        flipped = flipped_features(model, paths)
        views["mean views: "] = (views[""] + flipped) / 2
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for protocol in args.protocols:
        for seed in args.seeds:
            partial = photos.hide(truth.subset(pool), protocol, seed)
            teachers, students = {}, {}
            for name in args.variants:
                key = f"{protocol} | seed {seed} | {name}"
                if key in results:
                    continue
                view = "mean views: " if name.startswith("mean views: ") else ""
                features = views[view]
                core = name.removeprefix(view).removesuffix(RERUN)
                base = core.split("+")[0]
                labeled_vote = next((LABELED_VOTES[s] for s in LABELED_VOTES if base.endswith(s)), None)
                base = base.partition(" labeled vote")[0]
                if (view, base) not in teachers:
                    base_name, flips = base.removesuffix(" flips"), base.endswith(" flips")
                    base_name, chosen = base_name.removesuffix(" chosen"), base_name.endswith(" chosen")
                    base_name, _, precision = base_name.partition(" tp=")
                    base_name, _, last = base_name.partition(" last")
                    kind, _, l2 = base_name.partition(" l2=")
                    teachers[view, base] = teacher_variant(kind, features[pool], partial, seed, float(l2 or 0),
                                                           float(precision or 0.9),
                                                           flipped=flipped[pool] if flips else None, chosen=chosen,
                                                           last=int(last) if last else None)
                head, table = teachers[view, base]
                if "+ns" in core:
                    settings = dict(VARIANTS[name])
                    vote = settings.pop("vote", None)
                    again = settings.pop("again", False)
                    pseudo = settings.pop("pseudo", False)
                    flips = settings.pop("flips", False)
                    # variants that differ only in the vote share one student
                    same = (view, base, flips, repr(sorted(settings.items())))
                    if same not in students:
                        students[same] = student(features[pool], partial, table, head, seed,
                                                 flipped=flipped[pool] if flips else None, **settings)
                    head = students[same]
                    if vote is not None:
                        seeds = pseudo_seeded(table, head, features[pool]) if pseudo else table
                        head = photos.with_vote(head, features[pool], seeds, seed, **vote)
                    if again:  # the voted student teaches a second student, which gets its own vote
                        head = student(features[pool], partial, table, head, seed, **settings)
                        head = photos.with_vote(head, features[pool], table, seed, **vote)
                elif labeled_vote is not None:
                    labeled = np.flatnonzero(partial.known.any(axis=1))
                    head = photos.with_vote(head, features[pool][labeled], partial.subset(labeled), seed, **labeled_vote)
                results[key] = photos.test_map(truth.subset(dev), predict_scores(head, features[dev]))
                save_merged(RESULTS, {key: results[key]}, {})  # into the file as it is now
                print(f"{key}: dev mAP {results[key]:.4f}", flush=True)
    print("\nDev mAP (mean ± std over seeds):")
    for protocol in dict.fromkeys([*photos.PROTOCOLS, *args.protocols]):
        for name in VARIANTS:
            values = [v for k, v in results.items() if k.startswith(f"{protocol} |") and k.endswith(f"| {name}")]
            if values:
                mean, spread, n = mean_sd(values)
                print(f"  {protocol:18s} {name:50s} {mean:.4f} ± {spread:.4f} ({n} seeds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
