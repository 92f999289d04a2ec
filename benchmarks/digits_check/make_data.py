"""Data for the new-user check of issue "Honest quality" (item 5): an image folder no setting was tuned on.

    python benchmarks/digits_check/make_data.py OUT_DIR

2x2 mosaics (56x56 grey PNGs) of scikit-learn's bundled 8x8 digits, upscaled to 28x28, each tile
filled with probability 0.75; 10 labels, `digit0`..`digit9` = that digit is in the mosaic.
- `OUT_DIR/train/` (6,000 mosaics from 1,200 of the 1,797 digit images) with `train.csv`:
  `random-cells 0.05`, every cell known with probability 0.05, blank otherwise; `train_full.csv`:
  every cell known (the oracle's table); `train_sp.csv`: single positive labels (one known
  positive per mosaic, `datasets.single_positive`; the 21 mosaics without a digit stay blank).
- `OUT_DIR/test/` (2,000 mosaics from the other 597 digit images) with `test.csv`, every cell known.
Seeded (123): the same files on every run. Nothing is downloaded (the digits ship with scikit-learn).
The commands that use it are in docs/noisy_student.md ("A folder never used for tuning").
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.datasets import load_digits

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from ssl_multilabel.datasets import single_positive  # noqa: E402
from ssl_multilabel.labels import PartialLabels  # noqa: E402


def make(out: Path) -> None:
    digits = load_digits()
    images = (digits.images / 16.0 * 255).astype(np.uint8)
    rng = np.random.default_rng(123)
    order = rng.permutation(len(images))
    pools = {"train": order[:1200], "test": order[1200:]}
    for split, n, p_known in (("train", 6000, 0.05), ("test", 2000, 1.0)):
        (out / split).mkdir(parents=True, exist_ok=True)
        rows, full = [], []
        for i in range(n):
            canvas = np.zeros((56, 56), np.uint8)
            present = np.zeros(10, int)
            for q in range(4):
                if rng.random() < 0.75:
                    k = rng.choice(pools[split])
                    r, c = divmod(q, 2)
                    canvas[r * 28:(r + 1) * 28, c * 28:(c + 1) * 28] = np.asarray(
                        Image.fromarray(images[k]).resize((28, 28), Image.BILINEAR))
                    present[digits.target[k]] = 1
            name = f"{split}_{i:05d}.png"
            Image.fromarray(canvas).save(out / split / name)
            rows.append({"id": name, **{f"digit{j}": present[j] if rng.random() < p_known else "" for j in range(10)}})
            full.append({"id": name, **{f"digit{j}": present[j] for j in range(10)}})
        pd.DataFrame(rows).to_csv(out / f"{split}.csv", index=False)
        if split == "train":
            pd.DataFrame(full).to_csv(out / "train_full.csv", index=False)
            # Single positive labels: one known positive per mosaic (seeded), every other cell blank.
            single_positive(PartialLabels.load(out / "train_full.csv"), seed=123).save(out / "train_sp.csv")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (made if missing)")
    args = parser.parse_args()
    make(Path(args.out_dir))
