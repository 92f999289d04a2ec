"""Does PU-AUC pick the better negative assumption? B7's photos under single positive labels.

    python benchmarks/negative_assumption.py [--seeds 0 1 2] [--protocol single-positive]

For each seed: the protocol hides cells of B7's 1,500 training photos (cached MobileNet-0.75
features, as `benchmarks/photos.py`); `choose_negative_assumption` picks, per label without a
known negative, assume negative (weight 1) or weak negatives (weight 1 / (L - 1)) by PU-AUC on
held-out training rows (no test row is read for the choice). Then, to see whether the choice was
right, the recipe's head is trained twice, once with every such label assumed negative and once
with weak negatives (`photos.train_head`), and both are scored on the 500 fully labelled test
photos. Results: `benchmarks/results/negative_assumption.json`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import photos  # noqa: E402  (B7's data, features and head)

from ssl_multilabel._files import atomic_write_json  # noqa: E402

RESULTS = photos.ROOT / "benchmarks" / "results" / "negative_assumption.json"


def main(argv: list[str] | None = None) -> dict:
    from ssl_multilabel.teacher_student.assumptions import candidate_assumptions, choose_negative_assumption
    from ssl_multilabel.teacher_student.pseudo_labels import predict_scores
    from ssl_multilabel.teacher_student.sources import assumed_negatives

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--protocol", default="single-positive")
    args = parser.parse_args(argv)

    paths, truth, train, test = photos.load_photos()
    features = photos.photo_features(paths)
    truth_train, truth_test = truth.subset(train), truth.subset(test)
    results: dict = {"command": "python benchmarks/negative_assumption.py " + " ".join(argv or sys.argv[1:]), "seeds": {}}
    for seed in args.seeds:
        partial = photos.hide(truth_train, args.protocol, seed)
        started = time.perf_counter()
        choice = choose_negative_assumption(partial, features[train], seed=seed)
        record: dict = {"choice_seconds": round(time.perf_counter() - started, 2),
                        "chosen": {k: v.name for k, v in choice.chosen.items()}, "pu_auc": choice.pu_auc, "test_mAP": {}}
        columns = np.isin(np.asarray(partial.label_names, dtype=object), np.asarray(choice.labels, dtype=object))
        for candidate in candidate_assumptions(partial.n_labels):
            head, _ = photos.train_head(features[train], assumed_negatives(partial, columns, candidate.weight), partial, seed)
            record["test_mAP"][candidate.name] = photos.test_map(truth_test, predict_scores(head, features[test]))
        chosen_weights = choice.weights()
        per_label = np.array([chosen_weights.get(n, 1.0) for n in partial.label_names])
        head, _ = photos.train_head(features[train], assumed_negatives(partial, columns, per_label), partial, seed)
        record["test_mAP"]["chosen per label"] = photos.test_map(truth_test, predict_scores(head, features[test]))
        results["seeds"][str(seed)] = record
        atomic_write_json(RESULTS, results)
        print(f"seed {seed}: {record}", flush=True)
    return results


if __name__ == "__main__":
    main()
