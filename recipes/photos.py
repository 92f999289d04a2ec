"""Your own photos: a labels CSV with blanks + a folder of photos -> a model, a filled table, a report.

    python recipes/photos.py --out runs/photos \
        --set data.labels_csv=labels.csv --set data.image_dir=photos/

A MobileNet (alpha 0.75) pretrained on ImageNet, frozen: its features are computed once per
photo (224 px, RGB; any size and format on disk) and cached in the run directory, and every
step reuses them: the classifier head, kNN label propagation on the features, a noisy student
(a new head with feature noise and dropout), a kNN vote over the training photos blended into its
scores (unless a cross-fitted check on the labeled photos shows the vote hurting), and the
evaluation. The exported model is the full image -> scores model, the training
photos' features for the vote included (`ssl-multilabel predict` takes raw photos).

`weights="imagenet"` downloads the weights on first use (Keras caches them in ~/.keras). Without
a network, point it at a local file of the same architecture:
`--set supervised.weights=mobilenet_v1_0.75_224_imagenet_notop.weights.h5`.

`labels.csv` has an `id` column with each photo's file name (relative to `data.image_dir`; another
name: `--set data.id_column=NAME`) and one column per label: 1 (present), 0 (checked absent) or blank (unknown). About 20 % of the labeled
rows, chosen by a hash of their id, are held out for the test metrics (`data.test_fraction`). Without `data.labels_csv`, a demo
folder of 600 mosaics is written into the run directory and used. Choices and measurements:
docs/recipes.md and docs/benchmarks.md (B7).
"""

try:
    import ssl_multilabel  # noqa: F401
except ImportError:  # a source checkout without `pip install -e .`
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssl_multilabel.cli import run_cli
from ssl_multilabel.recipes import (
    Evaluate, Export, ImageFolder, NeighbourVote, NoisyStudent, Propagate, Recipe, Report, Supervised,
)

RECIPE = Recipe(
    name="photos",
    data=ImageFolder(labels_csv="", image_dir="", image_size=(224, 224), channels=3, test_fraction=0.2),
    steps=[
        Supervised(backbone="mobilenet", width=0.75, weights="imagenet", epochs=200, patience=20,
                   batch_size=64, learning_rate=1e-3, dropout=0.2, l2=0.03),
        Evaluate(name="evaluate_supervised"),
        Propagate(k=10, target_precision=0.9),
        NoisyStudent(rounds=1, epochs=200, patience=20, batch_size=64, dropout=0.5, feature_noise=0.5),
        NeighbourVote(k=10, alpha=0.5, weight=0.7),
        Evaluate(),
        Export(),
        Report(),
    ],
    seed=0,
)

if __name__ == "__main__":
    run_cli(RECIPE)
