"""Quickstart on the bundled data: supervised -> propagate -> noisy student -> evaluate -> report.

    python recipes/quickstart.py --out runs/quickstart
    ssl-multilabel run recipes/quickstart.py --out runs/quickstart --set noisy_student.rounds=2

2x2 Fashion-MNIST mosaics (3,000 train / 1,000 test, 10 labels) with 90 % of the training cells
hidden. The run directory gets the filled label table (`labels.npz`; `export/labels.csv` for
people), the models, the metrics of every step and `report.html`. Interrupted?
`ssl-multilabel resume runs/quickstart`.
"""

try:
    import ssl_multilabel  # noqa: F401
except ImportError:  # a source checkout without `pip install -e .`
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssl_multilabel.cli import run_cli
from ssl_multilabel.recipes import (
    Evaluate, Export, NoisyStudent, Propagate, Quickstart, Recipe, Report, Supervised,
)

RECIPE = Recipe(
    name="quickstart",
    data=Quickstart(protocol="random_cells", known_fraction=0.1),
    steps=[
        # Both training steps see each image with a random horizontal flip and a shift of up to 1/8
        # (a mirrored mosaic shows the same items): chosen on B5's dev split, docs/noisy_student.md.
        Supervised(flip_shift=0.125),  # trains until validation mAP stops improving (at most 100 epochs)
        Evaluate(name="evaluate_supervised"),
        Propagate(k=10, target_precision=0.9),
        NoisyStudent(flip_shift=0.125),  # one round, trained like its teacher: until validation mAP stops improving
        Evaluate(),
        Export(),
        Report(),
    ],
    seed=0,
)

if __name__ == "__main__":
    run_cli(RECIPE)
