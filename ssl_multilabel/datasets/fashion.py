"""Fashion-mosaics: 2x2 mosaics of Fashion-MNIST items, a small multi-label image benchmark.

A mosaic is a 56x56x1 uint8 image made of four 28x28 Fashion-MNIST items (quadrants in
row-major order: top-left, top-right, bottom-left, bottom-right). Its labels are the set of
the item classes, over the 10 Fashion-MNIST class names. For each mosaic the number of
distinct classes ``k`` is drawn uniformly from 1..4, then ``k`` distinct classes, then the
four cells (every chosen class appears at least once), then one item per cell; the four
items of a mosaic are distinct. Train mosaics use only the official train split, test
mosaics only the official t10k split. Everything is deterministic given the seed.

Two entry points:

- :func:`fashion_mosaics` builds mosaics from the raw Fashion-MNIST files
  (``train-images-idx3-ubyte.gz`` etc.) in a folder you pass.
- :func:`load_quickstart` assembles a fixed subset (3,000 train, 1,000 test mosaics) from
  a small file bundled inside the package, so it needs no external file. The bundle stores
  the distinct 28x28 items and the item table of each mosaic (not the mosaics themselves,
  which would not fit the size budget); ``scripts/make_quickstart_data.py`` regenerates it.

Fashion-MNIST is (c) Zalando SE, MIT licence; see ``_data/LICENSE-fashion-mnist.txt``.
"""

from __future__ import annotations

import functools
import gzip
import logging
from pathlib import Path

import numpy as np

from ssl_multilabel.labels import PartialLabels

logger = logging.getLogger(__name__)

__all__ = ["FASHION_MNIST_CLASSES", "fashion_mosaics", "load_quickstart"]

#: Label names of fashion-mosaics, in Fashion-MNIST class-index order.
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_SPLITS = {"train": "train", "test": "t10k"}
_ITEM_SIZE = 28
_CELLS = 4  # 2x2 mosaic
_QUICKSTART_FILE = Path(__file__).resolve().parent / "_data" / "fashion_mosaics_quickstart.npz"

# idx magic numbers: 0x00000803 = unsigned byte, 3 dimensions; 0x00000801 = 1 dimension.
_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801


# === Raw files ===


def _raw_file_names(split: str) -> tuple[str, str]:
    prefix = _SPLITS[split]
    return f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"


def _find_raw_file(folder: Path, name: str) -> Path:
    """The file ``name`` in ``folder``, accepting its uncompressed form (no ``.gz``) too."""
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"Fashion-MNIST file {name!r} (or its uncompressed form) not found in source_dir={str(folder)!r}. "
        "Expected the four raw files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz."
    )


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Read an unsigned-byte idx file (optionally gzip-compressed) into a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"Could not read idx file {str(path)!r}: {exc}") from exc
    if len(data) < 4:
        raise ValueError(f"idx file {str(path)!r} is truncated: {len(data)} bytes.")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise ValueError(
            f"idx file {str(path)!r} has magic number {found:#010x}; expected {magic:#010x}."
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) + header
    if len(data) != expected:
        raise ValueError(
            f"idx file {str(path)!r} has {len(data)} bytes; its header {shape} implies {expected}."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


@functools.lru_cache(maxsize=2)
def _load_split_cached(images_path: str, labels_path: str, stamp: tuple) -> tuple[np.ndarray, np.ndarray]:
    # `stamp` (mtimes and sizes) is part of the key so that a replaced file is re-read.
    images = _read_idx(Path(images_path), _IDX_IMAGES_MAGIC)
    classes = _read_idx(Path(labels_path), _IDX_LABELS_MAGIC)
    if images.shape[1:] != (_ITEM_SIZE, _ITEM_SIZE):
        raise ValueError(
            f"{images_path!r} holds images of shape {images.shape[1:]}; expected (28, 28)."
        )
    if len(images) != len(classes):
        raise ValueError(
            f"{images_path!r} holds {len(images)} images but {labels_path!r} holds {len(classes)} labels."
        )
    if classes.size and classes.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{labels_path!r} holds class {int(classes.max())}; expected 0..9.")
    # Read-only because the cached arrays are shared between callers.
    images.flags.writeable = False
    classes.flags.writeable = False
    return images, classes


def _check_split(split: str) -> None:
    if split not in _SPLITS:
        raise ValueError(f"Invalid value for argument `split`. Expected one of {sorted(_SPLITS)}. Received: split={split!r}")


def _load_fashion_mnist(split: str, source_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Raw items ``(N, 28, 28)`` uint8 and classes ``(N,)`` uint8 of one official split."""
    _check_split(split)
    if source_dir is None:
        raise ValueError(
            "Argument `source_dir` is required: pass the folder that holds the raw Fashion-MNIST files "
            "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
            "t10k-labels-idx1-ubyte.gz). Use load_quickstart() for a bundled subset that needs no file."
        )
    folder = Path(source_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"source_dir={str(folder)!r} is not a folder.")
    images_name, labels_name = _raw_file_names(split)
    images_path = _find_raw_file(folder, images_name)
    labels_path = _find_raw_file(folder, labels_name)
    stamp = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in (images_path, labels_path))
    return _load_split_cached(str(images_path.resolve()), str(labels_path.resolve()), stamp)


# === Mosaic drawing and assembly (shared by fashion_mosaics and the quickstart bundle) ===


def _draw_mosaic_table(item_classes: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` mosaics as an ``(n, 4)`` int64 table of indices into ``item_classes``.

    Number of distinct classes k ~ uniform{1..4}; k distinct classes; every chosen class fills
    at least one cell, the remaining cells take chosen classes uniformly; cells are shuffled;
    each cell takes a uniformly drawn item of its class, the four items being distinct.
    """
    n_classes = len(FASHION_MNIST_CLASSES)
    pools = [np.flatnonzero(item_classes == c) for c in range(n_classes)]
    too_small = [c for c, pool in enumerate(pools) if len(pool) < _CELLS]
    if too_small:
        raise ValueError(f"Every class needs at least {_CELLS} items to draw mosaics; classes {too_small} have fewer.")

    k = rng.integers(1, _CELLS + 1, size=n)
    chosen = np.argsort(rng.random((n, n_classes)), axis=1)[:, :_CELLS]
    # Cell j < k takes chosen class j (so each chosen class appears); cell j >= k a random chosen one.
    extra = rng.integers(0, k[:, None], size=(n, _CELLS))
    slot = np.where(np.arange(_CELLS)[None, :] < k[:, None], np.arange(_CELLS)[None, :], extra)
    cell_class = np.take_along_axis(chosen, slot, axis=1)
    cell_class = np.take_along_axis(cell_class, np.argsort(rng.random((n, _CELLS)), axis=1), axis=1)

    table = np.empty((n, _CELLS), dtype=np.int64)
    rows = np.arange(n)
    while rows.size:
        sub = cell_class[rows]
        drawn = np.empty(sub.shape, dtype=np.int64)
        for c in range(n_classes):
            mask = sub == c
            count = int(mask.sum())
            if count:
                drawn[mask] = pools[c][rng.integers(0, len(pools[c]), size=count)]
        table[rows] = drawn
        # Redraw the rows that picked the same item twice (rare: pools have >= 4 items per class).
        ordered = np.sort(drawn, axis=1)
        repeated = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        rows = rows[repeated]
    return table


def _assemble_mosaics(items: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Tile ``items[table]`` (``(n, 4)`` row-major quadrants) into ``(n, 56, 56, 1)`` uint8."""
    n = len(table)
    tiles = items[table].reshape(n, 2, 2, _ITEM_SIZE, _ITEM_SIZE)
    # (mosaic, tile row, tile col, y, x) -> (mosaic, tile row, y, tile col, x)
    images = tiles.transpose(0, 1, 3, 2, 4).reshape(n, 2 * _ITEM_SIZE, 2 * _ITEM_SIZE, 1)
    return np.ascontiguousarray(images, dtype=np.uint8)


def _mosaic_labels(item_classes: np.ndarray, table: np.ndarray, ids: list[str]) -> PartialLabels:
    """Fully known labels: label c is 1 iff some item of the mosaic has class c."""
    n = len(table)
    y = np.zeros((n, len(FASHION_MNIST_CLASSES)), dtype=np.float32)
    y[np.repeat(np.arange(n), _CELLS), item_classes[table].ravel()] = 1.0
    return PartialLabels.from_array(y, label_names=FASHION_MNIST_CLASSES, ids=ids)


def _check_count(n: object, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"Argument `{name}` must be an int. Received: {name}={n!r} of type {type(n).__name__}")
    if n < 1:
        raise ValueError(f"Argument `{name}` must be a positive int. Received: {name}={n!r}")
    return int(n)


# === Public API ===


def fashion_mosaics(
    split: str = "train",
    n: int = 10_000,
    seed: int = 0,
    source_dir: str | Path | None = None,
    *,
    return_items: bool = False,
) -> tuple[np.ndarray, PartialLabels] | tuple[np.ndarray, PartialLabels, np.ndarray]:
    """Build fashion-mosaics from the raw Fashion-MNIST files.

    Args:
        split: ``"train"`` (items from the official train split) or ``"test"`` (t10k split).
        n: number of mosaics.
        seed: seed of the draw; the same ``(split, n, seed)`` gives the same mosaics. The
            draws are vectorised, so the first ``m`` of ``n`` mosaics are not the ``m``
            mosaics of ``fashion_mosaics(split, m, seed)``.
        source_dir: folder holding ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
            ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (uncompressed
            versions without ``.gz`` work too). Required.
        return_items: also return the ``(n, 4)`` int64 table of raw item indices (into the
            split), quadrants in row-major order.

    Returns:
        ``(images, labels)``: ``images`` uint8 ``(n, 56, 56, 1)``, ``labels`` a fully known
        :class:`~ssl_multilabel.labels.PartialLabels` with the 10 Fashion-MNIST class names
        and ids ``"{split}-{i}"``; plus the item table when ``return_items`` is true.

    Raises:
        ValueError: bad ``split`` or ``n``, ``source_dir`` missing, or a malformed raw file.
        FileNotFoundError: a raw file is not in ``source_dir``.

    Example:
        >>> images, labels = fashion_mosaics("train", n=1000, seed=0,
        ...                                  source_dir="../shared/data/fashion-mnist")  # doctest: +SKIP
        >>> images.shape, labels.n_labels  # doctest: +SKIP
        ((1000, 56, 56, 1), 10)
    """
    _check_split(split)
    n = _check_count(n)
    items, classes = _load_fashion_mnist(split, source_dir)
    rng = np.random.default_rng(seed)
    table = _draw_mosaic_table(classes, n, rng)
    images = _assemble_mosaics(items, table)
    labels = _mosaic_labels(classes, table, [f"{split}-{i}" for i in range(n)])
    logger.info("Built %d fashion-mosaics from the %s split (seed %s).", n, split, seed)
    if return_items:
        return images, labels, table
    return images, labels


def load_quickstart() -> tuple[tuple[np.ndarray, PartialLabels], tuple[np.ndarray, PartialLabels]]:
    """Load the bundled fashion-mosaics subset: 3,000 train and 1,000 test mosaics.

    Needs no external file. The mosaics follow the same rules as :func:`fashion_mosaics`
    (train mosaics from train-split items, test mosaics from t10k items) but are drawn from
    a fixed pool of 2,400 train and 800 test items, so they are not the same mosaics as
    ``fashion_mosaics(split, n, seed)`` for any seed.

    Returns:
        ``((x_train, labels_train), (x_test, labels_test))`` like ``keras.datasets``: images
        uint8 ``(n, 56, 56, 1)``, labels fully known ``PartialLabels`` (ids
        ``"quickstart-train-{i}"`` / ``"quickstart-test-{i}"``).

    Example:
        >>> (x_train, y_train), (x_test, y_test) = load_quickstart()
        >>> x_train.shape, y_train.n_labels
        ((3000, 56, 56, 1), 10)
    """
    bundle = _read_quickstart_bundle(_QUICKSTART_FILE)
    result = []
    for split in ("train", "test"):
        items = bundle[f"{split}_items"]
        classes = bundle[f"{split}_item_classes"]
        table = bundle[f"{split}_mosaics"].astype(np.int64)
        images = _assemble_mosaics(items, table)
        labels = _mosaic_labels(classes, table, [f"quickstart-{split}-{i}" for i in range(len(table))])
        result.append((images, labels))
    return result[0], result[1]


# Keys of the bundle and their dtypes; the generator script writes exactly these.
_BUNDLE_KEYS = {
    "train_items": np.uint8,
    "train_item_index": np.int32,
    "train_item_classes": np.uint8,
    "train_mosaics": np.int16,
    "test_items": np.uint8,
    "test_item_index": np.int32,
    "test_item_classes": np.uint8,
    "test_mosaics": np.int16,
}


def _read_quickstart_bundle(path: Path) -> dict[str, np.ndarray]:
    """Load and check the quickstart bundle (no pickle)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"The quickstart bundle {str(path)!r} is missing from the installed package; "
            "regenerate it with scripts/make_quickstart_data.py or reinstall ssl-multilabel."
        )
    with np.load(path, allow_pickle=False) as npz:
        missing = sorted(set(_BUNDLE_KEYS) - set(npz.files))
        if missing:
            raise ValueError(f"Quickstart bundle {str(path)!r} lacks arrays {missing}.")
        bundle = {key: npz[key] for key in _BUNDLE_KEYS}
    for split in ("train", "test"):
        n_items = len(bundle[f"{split}_items"])
        table = bundle[f"{split}_mosaics"]
        if table.ndim != 2 or table.shape[1] != _CELLS or table.min() < 0 or table.max() >= n_items:
            raise ValueError(f"Quickstart bundle {str(path)!r}: {split}_mosaics is not an (n, 4) table into {n_items} items.")
    return bundle
