"""Built-in data sets and partial-label protocols.

- :func:`fashion_mosaics` -- 2x2 Fashion-MNIST mosaics (56x56x1, 10 labels) from the raw files.
- :func:`load_quickstart` -- a bundled fixed subset of fashion-mosaics; needs no external file.
- :func:`mulan` -- MULAN data sets (scene, yeast, emotions) from their ARFF and XML files.
- :func:`random_cells`, :func:`labeled_subset`, :func:`single_positive` -- seeded protocols that
  hide cells of a fully known label table.

Nothing here imports TensorFlow.
"""

from ssl_multilabel.datasets.fashion import FASHION_MNIST_CLASSES, fashion_mosaics, load_quickstart
from ssl_multilabel.datasets.mulan import mulan
from ssl_multilabel.datasets.protocols import labeled_subset, random_cells, single_positive

__all__ = [
    "FASHION_MNIST_CLASSES",
    "fashion_mosaics",
    "labeled_subset",
    "load_quickstart",
    "mulan",
    "random_cells",
    "single_positive",
]
