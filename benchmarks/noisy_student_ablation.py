"""Noise and pseudo-label settings of the noisy student on B5's data (one protocol, one seed).

Trains (or reuses) the B5 teacher of `--protocol` / `--seed` -- the masked model for
random-cells 0.05, the assume-negative model for single-positive, 8 epochs, as
`benchmarks/ssl_quality.py` -- then runs `noisy_student` from it with the settings given as JSON
and prints every round's test mAP, hidden-cell mAP and pseudo-label accuracy. This is how the
settings of B5 rows (d) and (e) were chosen (docs/noisy_student.md lists the runs).

    python benchmarks/noisy_student_ablation.py --variant '{"randaugment_magnitude": 0.5}'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ssl_quality import (  # noqa: E402
    FULL_RECIPE_WIDTH, PROTOCOLS, RESULTS, SHARED, Context, _score, negatives_for_the_rest, student_settings, teacher,
)
from ssl_multilabel.datasets import fashion_mosaics  # noqa: E402
from ssl_multilabel.metrics import evaluate  # noqa: E402
from ssl_multilabel.teacher_student import noisy_student  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", default="random-cells 0.05", choices=list(PROTOCOLS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=10_000, help="train pool size (B5: 10,000)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--variant", default="{}", help="JSON keyword arguments of noisy_student (default: its defaults, 1 round)")
    parser.add_argument("--row", choices=["d", "e"], default=None,
                        help="start from B5's settings of row (d) or (e) (2 rounds, batches of 32 + 32; propagation and "
                             "the wider student for (e), and under single positives (e)'s leftover negatives and one mean over cells); "
                             "--variant then overrides them")
    parser.add_argument("--leftovers-negative", action="store_true",
                        help="cells the teacher leaves unknown join the pseudo-labelled half as negatives "
                             "(assume-negative through `propagate`; tried for single positives)")
    args = parser.parse_args(argv)
    if args.row == "e" and args.leftovers_negative:
        parser.error("--leftovers-negative replaces row (e)'s propagation: pass one of them")

    source = SHARED / "data" / "fashion-mnist"
    x, full = fashion_mosaics("train", n=args.n, seed=0, source_dir=source)
    x_test, y_test = fashion_mosaics("test", n=4000, seed=0, source_dir=source)
    partial = PROTOCOLS[args.protocol](full, args.seed)
    ctx = Context(x, partial, full, x_test, args.seed, args.epochs, args.protocol, RESULTS.parent / "cache")
    model = teacher(ctx)
    summary, _ = evaluate(y_test.to_array(), _score(ctx, model))
    print(f"teacher test mAP {summary['mAP']:.4f}", flush=True)

    propagate = None
    if args.row is None:
        base = {"rounds": 1, "batch_size": 64}
    else:
        base, propagate = student_settings(ctx, args.row == "e", FULL_RECIPE_WIDTH if args.row == "e" else 1.0)
    settings = {**base, **json.loads(args.variant)}
    start = time.perf_counter()
    if args.leftovers_negative:
        def propagate(_teacher, labels):
            return negatives_for_the_rest(labels)

    result = noisy_student(x, partial, teacher=model, epochs=args.epochs, test_images=x_test, test_labels=y_test,
                           true_labels=full, seed=args.seed, propagate=propagate, **settings)
    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"  # None: not defined (a label without both classes)

    for r in result.rounds[1:]:
        m = r.metrics
        quality = m.get("pseudo_label_quality", {})
        print(f"round {r.index}: test mAP {fmt(m['test']['summary']['mAP'])}, hidden-cell mAP "
              f"{fmt(m['train_hidden']['summary']['mAP'])}, {quality.get('cells')} teacher cells on hidden cells, "
              f"accuracy {fmt(quality.get('accuracy'))}, {m['seconds']:.0f} s")
    print(f"settings {json.dumps(settings)}: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
