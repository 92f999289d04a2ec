"""Regenerate the bundled quickstart subset of fashion-mosaics from the raw Fashion-MNIST files.

The bundle (``ssl_multilabel/datasets/_data/fashion_mosaics_quickstart.npz``) holds, per split,
a pool of distinct 28x28 items drawn evenly over the 10 classes, their raw indices and
classes, and the ``(n, 4)`` item table of each mosaic, drawn with the same code as
``fashion_mosaics``. ``load_quickstart()`` assembles the mosaics at load time. The file is
written under a temporary name and renamed, and refused if larger than the 5 MB budget.

Usage:
    python scripts/make_quickstart_data.py --source-dir ../shared/data/fashion-mnist
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssl_multilabel.datasets.fashion import (  # noqa: E402  (after the sys.path tweak)
    _BUNDLE_KEYS,
    _QUICKSTART_FILE,
    FASHION_MNIST_CLASSES,
    _draw_mosaic_table,
    _load_fashion_mnist,
)

logger = logging.getLogger("make_quickstart_data")

MAX_BYTES = 5 * 1024 * 1024


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source-dir", required=True, help="folder with the raw Fashion-MNIST .gz files")
    parser.add_argument("--output", default=str(_QUICKSTART_FILE), help="output .npz (default: the package bundle)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-items-per-class", type=int, default=240)
    parser.add_argument("--test-items-per-class", type=int, default=80)
    parser.add_argument("--train-mosaics", type=int, default=3000)
    parser.add_argument("--test-mosaics", type=int, default=1000)
    return parser


def build_bundle(
    source_dir: str | Path,
    seed: int = 0,
    items_per_class: dict[str, int] | None = None,
    mosaics: dict[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """The bundle arrays, deterministic given the raw files and ``seed``."""
    items_per_class = items_per_class or {"train": 240, "test": 80}
    mosaics = mosaics or {"train": 3000, "test": 1000}
    rng = np.random.default_rng(seed)
    bundle: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        items, classes = _load_fashion_mnist(split, source_dir)
        # An even pool over classes, sorted by raw index so the file is easy to audit.
        pool = np.sort(
            np.concatenate(
                [
                    rng.choice(np.flatnonzero(classes == c), size=items_per_class[split], replace=False)
                    for c in range(len(FASHION_MNIST_CLASSES))
                ]
            )
        )
        table = _draw_mosaic_table(classes[pool], mosaics[split], rng)
        bundle[f"{split}_items"] = items[pool]
        bundle[f"{split}_item_index"] = pool
        bundle[f"{split}_item_classes"] = classes[pool]
        bundle[f"{split}_mosaics"] = table
    out = {key: np.ascontiguousarray(bundle[key]).astype(dtype) for key, dtype in _BUNDLE_KEYS.items()}
    if len(out["train_items"]) > np.iinfo(np.int16).max:
        raise ValueError("Item pool too large for the int16 mosaic table.")
    return out


def main(argv: list[str] | None = None) -> Path:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    bundle = build_bundle(
        args.source_dir,
        seed=args.seed,
        items_per_class={"train": args.train_items_per_class, "test": args.test_items_per_class},
        mosaics={"train": args.train_mosaics, "test": args.test_mosaics},
    )
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=output.parent, prefix=output.name + ".", suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp_name, **bundle)
        size = os.path.getsize(tmp_name)
        if size > MAX_BYTES:
            raise SystemExit(f"Bundle is {size / 1e6:.2f} MB, over the {MAX_BYTES / 1e6:.1f} MB budget; not written.")
        # mkstemp creates the file 0600; give it the usual permissions of a package file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, output)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
    logger.info(
        "Wrote %s (%.2f MB): %d/%d train/test items, %d/%d train/test mosaics.",
        output,
        size / 1e6,
        len(bundle["train_items"]),
        len(bundle["test_items"]),
        len(bundle["train_mosaics"]),
        len(bundle["test_mosaics"]),
    )
    return output


if __name__ == "__main__":
    main()
