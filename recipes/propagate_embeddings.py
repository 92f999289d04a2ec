"""Fill a partial label table from embeddings: a labels CSV + an embeddings .npy -> a filled table.

    python recipes/propagate_embeddings.py --out runs/propagate \
        --set data.labels_csv=labels.csv --set data.embeddings=embeddings.npy

The CSV has an `id` column and one column per label (1, 0, blank = unknown); row i of the .npy
array is the embedding of row i of the CSV. The filled table is `runs/propagate/export/labels.csv`
(1 / 0 for filled cells as for human ones; their confidence and provenance in `labels.csv.meta.json`); the
run keeps it as `runs/propagate/labels.npz` (binary, what resume reads).
Without `data.labels_csv`, demo files made from the bundled data are used (and scored, since
their truth is known). The same file runs as `ssl-multilabel run recipes/propagate_embeddings.py`.
"""

try:
    import ssl_multilabel  # noqa: F401
except ImportError:  # a source checkout without `pip install -e .`
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssl_multilabel.cli import run_cli
from ssl_multilabel.recipes import Embeddings, Evaluate, Export, Propagate, Recipe, Report

RECIPE = Recipe(
    name="propagate_embeddings",
    data=Embeddings(labels_csv="", embeddings="", truth_csv=""),
    steps=[
        Propagate(k=10, target_precision=0.9),
        Evaluate(split="hidden", optional=True),  # scores the propagation against data.truth_csv; skipped without one
        Export(),
        Report(),
    ],
    seed=0,
)

if __name__ == "__main__":
    run_cli(RECIPE)
