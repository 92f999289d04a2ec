"""Quickstart: train a masked-supervised multi-label classifier on partially labelled mosaics.

Data: the fashion-mosaics subset bundled with the package (3,000 train and 1,000 test 56x56
mosaics, 10 labels; no download). The train labels are made partial with the `random-cells`
protocol: each (image, label) cell stays known with probability `--known-fraction`
(default 0.1, seed 0), the rest is unknown. The test labels stay fully known.

Why 0.1: one known cell in ten (about 300 known cells per label here) is the regime the toolkit
is for -- labels too sparse to ignore the unknown cells or to treat them as negatives -- and it
is close to the scarcity of the benchmark protocol (random-cells 0.05 on 10,000 mosaics, about
500 known cells per label), so the result can be compared with docs/benchmarks.md (B5).

The model (a 6-convolution CNN) trains on the known cells only (masked binary cross-entropy,
per-label positive weights), keeps the epoch with the best masked validation mAP (10 % of the
train pool, with its partial labels), and is evaluated on the test set. The run directory
receives `model.keras`, a TensorFlow SavedModel (`saved_model/`), `metrics.json` and
`per_label.csv`.

Run (about a minute on 2 CPU cores):

    python recipes/quickstart.py --out runs/quickstart
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

try:
    import ssl_multilabel  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

logger = logging.getLogger("quickstart")


def get_args_parser() -> argparse.ArgumentParser:
    """The command-line options of the quickstart."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="run directory (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=10, help="maximum number of epochs (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the protocol, split, init and shuffling (default: %(default)s)")
    parser.add_argument(
        "--known-fraction", type=float, default=0.1, help="probability that a train cell is known (default: %(default)s)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--patience", type=int, default=3, help="early-stopping patience in epochs (default: %(default)s)")
    parser.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2), help="Keras fit verbosity (default: %(default)s)")
    return parser


def _write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict:
    """Run the quickstart; returns the test metrics (also written to `<out>/metrics.json`)."""
    args = get_args_parser().parse_args(argv)
    if args.epochs < 1:
        raise ValueError(f"--epochs must be a positive int. Received: {args.epochs}")
    if not 0.0 < args.known_fraction <= 1.0:
        raise ValueError(f"--known-fraction must be in (0, 1]. Received: {args.known_fraction}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import numpy as np

    from ssl_multilabel.data import make_dataset
    from ssl_multilabel.datasets import load_quickstart, random_cells
    from ssl_multilabel.metrics import evaluate
    from ssl_multilabel.models import build_classifier
    from ssl_multilabel.training import export_model, train_round

    start = time.perf_counter()
    (x_pool, labels_pool), (x_test, labels_test) = load_quickstart()
    partial = random_cells(labels_pool, args.known_fraction, seed=args.seed)
    order = np.random.default_rng(args.seed).permutation(len(x_pool))
    n_val = len(x_pool) // 10
    val_rows, train_rows = np.sort(order[:n_val]), np.sort(order[n_val:])
    train_labels, val_labels = partial.subset(train_rows), partial.subset(val_rows)
    logger.info(
        "train %d images (%.1f%% of cells known), validation %d, test %d (fully known)",
        len(train_rows), 100 * float(np.mean(train_labels.known)), len(val_rows), len(x_test),
    )

    train_ds = make_dataset(x_pool[train_rows], train_labels, batch_size=args.batch_size, shuffle=True, seed=args.seed, cache=True)
    val_ds = make_dataset(x_pool[val_rows], val_labels, batch_size=256, cache=True)
    model = build_classifier("small_cnn", labels_pool.n_labels, x_pool.shape[1:], seed=args.seed)
    model, history = train_round(
        model, train_ds, val_ds, epochs=args.epochs, learning_rate=args.learning_rate, patience=args.patience,
        labels=train_labels, seed=args.seed, verbose=args.verbose,
    )
    train_seconds = time.perf_counter() - start

    scores = model.predict(x_test.astype("float32"), batch_size=256, verbose=0)
    summary, table = evaluate(labels_test.to_array(), scores, label_names=labels_test.label_names)
    args.out.mkdir(parents=True, exist_ok=True)
    export_model(model, args.out)
    metrics = {
        "test_mAP": float(summary["mAP"]),
        "test_AUC": float(summary["AUC"]),
        "best_val_mAP": float(max(history.history["val_mAP"])),
        "epochs_run": len(history.history["loss"]),
        "known_fraction": args.known_fraction,
        "seed": args.seed,
        "seconds": round(train_seconds, 1),
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
    }
    _write_json(args.out / "metrics.json", metrics)
    fd, tmp = tempfile.mkstemp(prefix=".per_label-", suffix=".csv", dir=args.out)
    os.close(fd)
    table.to_csv(tmp, index=False)
    os.replace(tmp, args.out / "per_label.csv")

    print(f"test mAP {metrics['test_mAP']:.4f}  test AUC {metrics['test_AUC']:.4f}  "
          f"({metrics['epochs_run']} epochs, {train_seconds:.0f} s; model written to {args.out / 'model.keras'})")
    return metrics


if __name__ == "__main__":
    main()
