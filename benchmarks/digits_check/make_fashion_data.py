"""A second folder for the new-user check: Fashion-MNIST mosaics as PNG files.

    python benchmarks/digits_check/make_fashion_data.py OUT_DIR

`datasets.fashion_mosaics` (56x56 grey, 10 labels) from `../shared/data/fashion-mnist`, seed 7:
- `OUT_DIR/train/` (6,000 mosaics of the train split) with `train.csv`, `random-cells 0.05`, and
  `train_sp.csv`, single positive labels (one known positive per mosaic);
- `OUT_DIR/test/` (2,000 mosaics of the t10k split) with `test.csv`, every cell known.
The photo recipe and the `NeighbourVote` check were never tuned on these (B5 runs the quickstart's
small CNN on mosaics of other seeds). docs/noisy_student.md, "A check before the vote", uses it.
"""

import argparse
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ssl_multilabel.datasets import fashion_mosaics, random_cells, single_positive  # noqa: E402
from ssl_multilabel.labels import PartialLabels  # noqa: E402

SOURCE = Path(__file__).resolve().parents[3] / "shared" / "data" / "fashion-mnist"


def make(out: Path, seed: int = 7) -> None:
    for split, n in (("train", 6000), ("test", 2000)):
        images, truth = fashion_mosaics(split, n=n, seed=seed, source_dir=SOURCE)
        (out / split).mkdir(parents=True, exist_ok=True)
        ids = [f"{split}_{i:05d}.png" for i in range(n)]
        for name, image in zip(ids, images):
            Image.fromarray(image[..., 0]).save(out / split / name)
        tables = {"test": truth} if split == "test" else {
            "train": random_cells(truth, p=0.05, seed=seed), "train_sp": single_positive(truth, seed=seed)}
        for name, table in tables.items():
            PartialLabels(values=table.values, known=table.known, weight=table.weight, source=table.source,
                          label_names=table.label_names, ids=ids).save(out / f"{name}.csv")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (made if missing)")
    args = parser.parse_args()
    if not SOURCE.is_dir():
        sys.exit(f"needs the Fashion-MNIST files in {SOURCE}; not found.")
    make(Path(args.out_dir))
