"""Cached features of a frozen backbone: computed once per image, reused by every step.

A classifier whose backbone is frozen (`models.frozen_backbone`) maps an image to the same pooled
`embedding` features in every epoch, round and step. `cached_features` computes them once and
keeps them in a cache folder (a run directory's `features/`), under a key that changes with
everything the features depend on:

- the backbone's architecture (its Keras config) and the content of its weights,
- the preprocessing layer, the model's input shape, the pipeline's `image_size` and `channels`,
- the inputs: the bytes of every image file (or of the image array), in order.

Change any of them and a new file is computed; a stale one is never read. Files are written to a
temporary name and renamed, so an interrupted run leaves either a complete cache file or none,
and `resume` reuses what is there. Head training (`models.head_model`), the propagation graph,
the teacher's scores and evaluation all read the same arrays.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["cached_features", "embed", "feature_key"]

logger = logging.getLogger(__name__)

#: Bump when the way features are computed changes, so old cache files are not reused.
_FORMAT = 2  # 2: photos turned upright by their EXIF orientation, large JPEGs decoded at a reduced scale


def _hash_inputs(digest: Any, inputs: np.ndarray | Sequence[str | os.PathLike]) -> None:
    if isinstance(inputs, np.ndarray):
        digest.update(repr((inputs.shape, inputs.dtype.str)).encode())
        digest.update(np.ascontiguousarray(inputs).tobytes())
        return
    # The files' bytes in row order, not their paths: a run directory moved, or named by another
    # spelling of its path, keeps its cache.
    for path in inputs:
        with open(path, "rb") as handle:
            digest.update(hashlib.sha256(handle.read()).digest())


def feature_key(
    model: Any,
    inputs: np.ndarray | Sequence[str | os.PathLike],
    *,
    image_size: tuple[int, int] | None,
    channels: int | None,
) -> str:
    """The cache key of `model`'s pooled features of `inputs` (a hex string).

    Args:
        model: a `build_classifier` model (its `preprocessing` and `backbone` layers are hashed).
        inputs: an image array or a sequence of image paths.
        image_size, channels: the `make_dataset` options the images are read with.
    """
    backbone = model.get_layer("backbone")
    digest = hashlib.sha256()
    config = {
        "format": _FORMAT,
        "input_shape": list(model.input_shape[1:]),
        "image_size": None if image_size is None else list(image_size),
        "channels": channels,
        "preprocessing": model.get_layer("preprocessing").get_config(),
        "backbone": backbone.get_config(),
    }
    # Keras numbers the input layers of every new model (input_layer, input_layer_1, ...): that
    # name says nothing about the features, so an identical rebuilt model keeps its cache.
    text = re.sub(r'"input_layer(_\d+)?"', '"input_layer"', json.dumps(config, sort_keys=True, default=str))
    digest.update(text.encode())
    for weights in backbone.get_weights():
        digest.update(repr((weights.shape, weights.dtype.str)).encode())
        digest.update(np.ascontiguousarray(weights).tobytes())
    _hash_inputs(digest, inputs)
    return digest.hexdigest()[:32]


def _write_npy(path: Path, array: np.ndarray) -> None:
    from ssl_multilabel._files import atomic_write_bytes

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def cached_features(
    model: Any,
    inputs: np.ndarray | Sequence[str | os.PathLike],
    *,
    cache_dir: str | os.PathLike | None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """float32 `(n, d)` pooled backbone features of `inputs`, from the cache or computed once.

    Args:
        model: a classifier with a frozen backbone (`models.frozen_backbone`).
        inputs: an image array `(n, H, W[, C])` or a sequence of image paths.
        cache_dir: folder of the cache files (`<key>.npy`); None computes without caching.
        image_size, channels: passed to `make_dataset`.
        batch_size: batch size of the feature pass.

    Returns:
        The features, rows in the order of `inputs`.
    """
    from ssl_multilabel.models import frozen_backbone

    if not frozen_backbone(model):
        raise ValueError(
            f"Invalid value for argument `model`: the backbone of {model.name!r} is trainable, so its "
            "features change while it trains; cache features of frozen backbones only."
        )
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{feature_key(model, inputs, image_size=image_size, channels=channels)}.npy"
        if path.is_file():
            try:
                features = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as err:
                logger.warning("Feature cache %s is unreadable (%s); computing it again.", path, err)
            else:
                if features.ndim == 2 and features.shape[0] == len(inputs) and features.dtype == np.float32:
                    logger.info("Features of %d images read from the cache %s.", len(inputs), path)
                    return features
                logger.warning("Feature cache %s holds a %s array of shape %s, expected %d float32 rows; "
                               "computing it again.", path, features.dtype, features.shape, len(inputs))
    features = embed(model, inputs, image_size=image_size, channels=channels, batch_size=batch_size)
    if path is not None:
        _write_npy(path, features)
    return features


def embed(
    model: Any,
    inputs: np.ndarray | Sequence[str | os.PathLike],
    *,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """float32 `(n, d)` pooled `embedding` features of a `build_classifier` model (inference mode).

    Example:
        >>> features = embed(model, ["a.jpg", "b.jpg"], image_size=(224, 224), channels=3)  # doctest: +SKIP
    """
    from ssl_multilabel.data.pipeline import make_dataset
    from ssl_multilabel.models import build_embedding_model

    started = time.perf_counter()
    ds = make_dataset(inputs, None, image_size=image_size, channels=channels, batch_size=batch_size)
    features = np.asarray(build_embedding_model(model).predict(ds, verbose=0), np.float32)
    seconds = time.perf_counter() - started
    logger.info("Computed the features of %d images in %.1f s (%.1f images/s).",
                len(inputs), seconds, len(inputs) / max(seconds, 1e-9))
    return features
