"""Images to tf.data: the dataset builder, the mixed labelled / pseudo-labelled batches, and the
check for bad image files, and `take_rows`.

Names are resolved lazily so that importing this package does not import TensorFlow until a
name is used.
"""

from __future__ import annotations

from ssl_multilabel._lazy import lazy_exports

_EXPORTS = {
    "make_dataset": "pipeline",
    "mixed_dataset": "pipeline",
    "find_bad_images": "pipeline",
    "BadImage": "pipeline",
    "BadImageError": "pipeline",
    "take_rows": "rows",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
