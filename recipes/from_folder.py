"""Train on your own images: a labels CSV + an image folder -> a model, a filled table, a report.

    python recipes/from_folder.py --out runs/mine \
        --set data.labels_csv=labels.csv --set data.image_dir=images/ --set data.image_size=128,128

`labels.csv` has an `id` column with each image's file name (relative to `data.image_dir`; another
name: `--set data.id_column=NAME`) and one column per label: 1 (present), 0 (checked absent) or blank (unknown). About 20 % of the labeled rows,
chosen by a hash of their id, are held out for the test metrics (`data.test_fraction`). Without `data.labels_csv`, a demo
folder of 600 PNG mosaics with 20 % of the cells known is written into the run directory and
used, so this file runs as is. The same file runs as `ssl-multilabel run recipes/from_folder.py`.
"""

try:
    import ssl_multilabel  # noqa: F401
except ImportError:  # a source checkout without `pip install -e .`
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssl_multilabel.cli import run_cli
from ssl_multilabel.recipes import (
    Evaluate, Export, ImageFolder, NoisyStudent, Propagate, Recipe, Report, Supervised,
)

RECIPE = Recipe(
    name="from_folder",
    data=ImageFolder(labels_csv="", image_dir="", image_size=(56, 56), channels=1, test_fraction=0.2),
    steps=[
        Supervised(backbone="small_cnn"),  # trains until validation mAP stops improving (patience 10)
        Propagate(k=10),
        NoisyStudent(rounds=1),
        Evaluate(),
        Export(),
        Report(),
    ],
    seed=0,
)

if __name__ == "__main__":
    run_cli(RECIPE)
