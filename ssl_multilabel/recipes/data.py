"""Data sources of recipes: where the images (or embeddings) and the partial label table come from.

A data source is a frozen `Config`; `load(seed, run_dir)` returns a `RecipeData` bundle. Loading
is deterministic in the seed, so a resumed run sees exactly the data of the interrupted one.

- `Quickstart`: the bundled fashion-mosaics with a partial-label protocol applied.
- `FashionMosaics`: fashion-mosaics built from the raw Fashion-MNIST files (benchmark B5's data).
- `ImageFolder`: a labels CSV (an `id` column naming image files, 1 / 0 / blank cells) and a folder
  of images.
- `Embeddings`: a labels CSV and an `.npy` array of embeddings, one row per label row.

`ImageFolder` and `Embeddings` with no files given build a small demo input in the run directory
from the bundled data, so the recipes that use them run out of the box and show the formats.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from ssl_multilabel._files import atomic_path
from ssl_multilabel.errors import HEIF_SUFFIXES, IMAGE_SUFFIXES
from ssl_multilabel.labels import PartialLabels, given_cells
from ssl_multilabel.recipes.config import Config, RecipeError, param
from ssl_multilabel.run_dir import DEMO_DIRS, DEMO_EMBEDDINGS

__all__ = ["DataSource", "Embeddings", "FashionMosaics", "ImageFolder", "Quickstart", "RecipeData"]

logger = logging.getLogger(__name__)

Protocol = Literal["random_cells", "labeled_subset", "single_positive", "none"]


@dataclass
class RecipeData:
    """What the steps of a recipe work on.

    Attributes:
        kind: `"images"` (inputs are image arrays or file paths) or `"embeddings"` (feature rows).
        inputs: training inputs: uint8 images `(n, H, W, C)`, a list of image paths, or
            float32 embeddings `(n, d)`.
        labels: the partial training label table as given (human cells only).
        truth: the fully known training table when the data are a benchmark (hidden-cell scores),
            else None.
        test_inputs, test_labels: the held-out split for `Evaluate(split="test")`, or None.
        image_size: `(height, width)` of model inputs for image data.
        channels: 1 or 3 for image data.
        id_column: the column that names the rows in the user's label CSV (`Export` writes the
            filled table with it).
    """

    kind: Literal["images", "embeddings"]
    inputs: object
    labels: PartialLabels
    truth: PartialLabels | None = None
    test_inputs: object = None
    test_labels: PartialLabels | None = None
    image_size: tuple[int, int] | None = None
    channels: int | None = None
    id_column: str = "id"


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataSource(Config):
    """Base of data sources. Fields listed in `path_fields` are made absolute by the runner."""

    _kind: ClassVar[str] = "data source"
    path_fields: ClassVar[tuple[str, ...]] = ()

    def load(self, seed: int, run_dir: Path) -> RecipeData:  # pragma: no cover - abstract
        """Load the data (deterministic in `seed`); demo inputs go under `run_dir / "data"`."""
        raise NotImplementedError

    def check_inputs(self) -> None:
        """Raise FileNotFoundError if a file or folder named by a path field does not exist.

        The runner calls this before it creates the run directory.
        """
        if "labels_csv" in self.path_fields and not getattr(self, "labels_csv"):
            given = [name for name in self.path_fields if getattr(self, name)]
            if given:  # without a labels CSV the source runs on its demo data: the paths would be ignored
                raise RecipeError(f"data.{given[0]} is set but data.labels_csv is empty: give the labels CSV too "
                                  "(--set data.labels_csv=PATH); without any of them the recipe runs on its demo data.")
        for name in self.path_fields:
            value = getattr(self, name)
            if value and not Path(value).exists():
                raise FileNotFoundError(f"data.{name} {value!r} does not exist.")

    def resolved(self) -> "DataSource":
        """A copy with relative paths made absolute (against the current directory)."""
        changes = {}
        for name in self.path_fields:
            value = getattr(self, name)
            if value:
                changes[name] = str(Path(value).expanduser().resolve())
        return dataclasses.replace(self, **changes) if changes else self


def _hide(truth: PartialLabels, protocol: str, fraction: float, seed: int) -> PartialLabels:
    from ssl_multilabel.datasets import labeled_subset, random_cells, single_positive

    if protocol == "random_cells":
        return random_cells(truth, p=fraction, seed=seed)
    if protocol == "labeled_subset":
        return labeled_subset(truth, f=fraction, seed=seed)
    if protocol == "single_positive":
        return single_positive(truth, seed=seed)
    return truth


@dataclasses.dataclass(frozen=True, kw_only=True)
class Quickstart(DataSource):
    """The bundled fashion-mosaics (3,000 train / 1,000 test, 56×56×1, 10 labels), partly hidden.

    Example:
        >>> Quickstart(protocol="random_cells", known_fraction=0.1).n_train
        3000
    """

    protocol: Protocol = param("random_cells", doc="how training cells are hidden")
    known_fraction: float = param(0.1, ge=0.0, le=1.0, doc="p of random_cells / f of labeled_subset")
    n_train: int = param(3000, ge=1, le=3000, doc="training mosaics used (the first n)")
    n_test: int = param(1000, ge=1, le=1000, doc="test mosaics used (the first n)")

    def load(self, seed: int, run_dir: Path) -> RecipeData:
        from ssl_multilabel.datasets import load_quickstart

        (x_train, y_train), (x_test, y_test) = load_quickstart()
        truth = y_train.subset(np.arange(self.n_train))
        labels = _hide(truth, self.protocol, self.known_fraction, seed)
        return RecipeData(
            kind="images",
            inputs=x_train[: self.n_train],
            labels=labels,
            truth=truth,
            test_inputs=x_test[: self.n_test],
            test_labels=y_test.subset(np.arange(self.n_test)),
            image_size=(56, 56),
            channels=1,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class FashionMosaics(DataSource):
    """Fashion-mosaics built from the raw Fashion-MNIST files, partly hidden: benchmark B5's data.

    `n_train` mosaics from the official train split form the training pool (the protocol hides
    its cells, with the recipe's seed), `n_test` mosaics from the t10k split the fully known test
    split; `mosaic_seed` fixes the mosaics themselves, so every recipe seed sees the same images.
    Two options prepare the data of B5's reference rows, so each of them is a plain recipe:

    - `unknown_as_negative`: every hidden cell is given as a known 0 (the assume-negative
      baseline: the table a user gets by filling blanks with 0).
    - `dev_fraction`: for choosing settings without the test split. That fraction of the
      training pool becomes a fully labeled dev split, returned as the test split (so
      `Evaluate(split="test")` scores it); the protocol hides cells of the other rows only, and
      the t10k mosaics are not read.

    Example (B5 row (b), seed 1):
        >>> FashionMosaics(source_dir="../shared/data/fashion-mnist", protocol="random_cells",
        ...                known_fraction=0.05).n_train
        10000

        ssl-multilabel run recipe.py --set data.source_dir=../shared/data/fashion-mnist --set seed=1
    """

    path_fields: ClassVar[tuple[str, ...]] = ("source_dir",)

    source_dir: str = param("", doc="folder of the raw Fashion-MNIST files (train-images-idx3-ubyte.gz, ...)")
    protocol: Protocol = param("random_cells", doc="how training cells are hidden (none: all known)")
    known_fraction: float = param(0.05, ge=0.0, le=1.0, doc="p of random_cells / f of labeled_subset")
    n_train: int = param(10_000, ge=1, doc="training mosaics (official train split)")
    n_test: int = param(4000, ge=1, doc="test mosaics (official t10k split, every cell known)")
    mosaic_seed: int = param(0, ge=0, doc="seed of the mosaics (the recipe seed drives the protocol)")
    unknown_as_negative: bool = param(False, doc="give every hidden cell as a known 0 (assume-negative data)")
    dev_fraction: float = param(
        0.0, ge=0.0, lt=1.0, doc="> 0: a fully labeled dev split of the pool replaces the test split (t10k unread)")

    def load(self, seed: int, run_dir: Path) -> RecipeData:
        from ssl_multilabel.datasets import fashion_mosaics

        if not self.source_dir:
            raise RecipeError(
                "data.source_dir is empty: give the folder of the raw Fashion-MNIST files, e.g. "
                "--set data.source_dir=../shared/data/fashion-mnist."
            )
        images, truth = fashion_mosaics("train", n=self.n_train, seed=self.mosaic_seed, source_dir=self.source_dir)
        if self.dev_fraction > 0:
            # A fixed split of the pool (independent of the recipe seed): every setting compared
            # on it is scored on the same rows.
            order = np.random.default_rng(self.mosaic_seed + 1).permutation(self.n_train)
            n_dev = int(round(self.dev_fraction * self.n_train))
            if not 0 < n_dev < self.n_train:
                raise RecipeError(f"data.dev_fraction={self.dev_fraction} leaves {n_dev} dev rows of "
                                  f"{self.n_train}; expected at least one dev and one training row.")
            dev, pool = np.sort(order[:n_dev]), np.sort(order[n_dev:])
            test_inputs, test_labels = images[dev], truth.subset(dev)
            images, truth = images[pool], truth.subset(pool)
        else:
            test_inputs, test_labels = fashion_mosaics("test", n=self.n_test, seed=self.mosaic_seed,
                                                       source_dir=self.source_dir)
        labels = _hide(truth, self.protocol, self.known_fraction, seed)
        if self.unknown_as_negative:
            labels = PartialLabels.from_array(np.where(labels.known, labels.values, 0.0), ids=labels.ids,
                                              label_names=labels.label_names)
        return RecipeData(kind="images", inputs=images, labels=labels, truth=truth, test_inputs=test_inputs,
                          test_labels=test_labels, image_size=(56, 56), channels=1)


def _check_id_column(source: DataSource) -> None:
    if not source.id_column.strip():
        raise RecipeError(f"Invalid value for parameter `id_column` of {type(source).__name__}. Expected a column name "
                          f"of the labels CSV. Received: id_column={source.id_column!r}")


def _read_table(path: str, what: str, id_column: str = "id", label_columns: tuple[str, ...] = ()) -> PartialLabels:
    if Path(path).is_dir():
        raise IsADirectoryError(f"{what} {path!r} is a folder; expected the CSV file of the labels.")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} {path!r} does not exist.")
    return PartialLabels.load(path, id_column=id_column, label_columns=list(label_columns) or None)


def _check_label_columns(source: DataSource) -> None:
    if source.label_columns and not source.labels_csv:
        raise RecipeError(f"Parameter `label_columns` of {type(source).__name__} names columns of data.labels_csv, "
                          f"which is empty (demo data). Received: label_columns={list(source.label_columns)!r}")


def _check_known(labels: PartialLabels, path: str, what: str, *, training: bool = True) -> None:
    """Refuse a table with no row or no known cell (nothing to train or score on), before any image
    is read; for a training table, log a warning naming the labels without a known positive."""
    if labels.n_samples == 0:
        raise RecipeError(f"{what} {path!r} has no rows; expected a header and one row per item, with 1, 0 or "
                          "blank under each label.")
    if not labels.known.any():
        raise RecipeError(
            f"{what} {path!r} has no known label cell: all {labels.n_samples} rows are blank under every label "
            f"{list(labels.label_names)}; expected at least one 1 or 0."
        )
    if training:
        no_positive = [name for name, n in zip(labels.label_names, (labels.known & (labels.values >= 0.5)).sum(axis=0))
                       if n == 0]
        if no_positive:
            logger.warning(
                "%s %s has no known positive for %d of %d labels: %s (their cells are blank or 0); the model "
                "cannot learn them until a positive (1) is given, their scores mean nothing, and the completed table "
                "leaves their blank cells blank.",
                what, path, len(no_positive), labels.n_labels, no_positive[:20] + (["..."] if len(no_positive) > 20 else []),
            )


def _split_test(labels: PartialLabels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, test): the rows with a human cell on the test side (`test_side`), about
    `fraction` of them. At least one labeled row stays for training. A row whose known cells are all
    machine-filled (a run's filled table given as the next run's) is never a test row: a model is not
    scored against a model."""
    from ssl_multilabel.labeling import test_side

    labeled = given_cells(labels).known.any(axis=1)
    held = test_side(labels.ids, fraction, seed) & labeled
    if labeled.any() and held[labeled].all():  # a tiny table: keep one labeled row for training
        held[np.flatnonzero(labeled)[-1]] = False
    test = np.flatnonzero(held)
    return np.flatnonzero(~held), test


def _demo_table(n: int, seed: int, known_fraction: float) -> tuple[np.ndarray, PartialLabels]:
    from ssl_multilabel.datasets import load_quickstart, random_cells

    (x_train, y_train), _ = load_quickstart()
    truth = y_train.subset(np.arange(n))
    partial = random_cells(truth, p=known_fraction, seed=seed)
    return x_train[:n], partial


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageFolder(DataSource):
    """A labels CSV plus a folder of images.

    The CSV has an id column (`id_column`, default `id`) with each image's file name (relative to
    `image_dir`) and one column per label with 1, 0 or blank (unknown), the format of
    `PartialLabels.save` / `load`.
    A fraction of the rows with a known cell is held out as the test split, unless `test_csv`
    names a separate labeled test table (its images in `test_image_dir`, default `image_dir`), which
    must not name a training image. A table without a known cell is refused; labels without a known
    positive are named in a warning, and images of the folder no CSV names in a log line.

    With `labels_csv` empty, a demo folder (600 PNG mosaics from the bundled data, 20 % of the
    cells known) is written to `<run dir>/data/` and used.
    """

    path_fields: ClassVar[tuple[str, ...]] = ("labels_csv", "image_dir", "test_csv", "test_image_dir")

    labels_csv: str = param("", doc="wide labels CSV (id column = image file name); empty: demo")
    id_column: str = param("id", doc="the column of labels_csv and test_csv that names each image file")
    label_columns: tuple[str, ...] = param(
        (), doc="the label columns of labels_csv and test_csv (others, e.g. an age, are not read); empty: all but id")
    image_dir: str = param("", doc="folder of the images; empty: the CSV's folder")
    test_csv: str = param("", doc="optional labels CSV of a separate test set; replaces test_fraction")
    test_image_dir: str = param("", doc="folder of the test_csv images; empty: image_dir")
    image_size: tuple[int, int] = param((64, 64), doc="model input (height, width)")
    channels: Literal[1, 3] = param(3, doc="1 (grey) or 3 (RGB)")
    test_fraction: float = param(0.2, ge=0.0, lt=1.0, doc="labeled rows held out for evaluation")
    on_bad_image: Literal["error", "skip"] = param(
        "error", doc="missing / undecodable / oversized images: 'error' lists them, 'skip' drops their rows")

    def validate(self) -> None:
        _check_id_column(self)
        _check_label_columns(self)
        if self.test_image_dir and not self.test_csv:
            raise RecipeError(
                "Parameter `test_image_dir` of ImageFolder names the folder of the test_csv images, but "
                f"`test_csv` is empty. Received: test_image_dir={self.test_image_dir!r}; set data.test_csv too."
            )
        if not all(1 <= v <= _MAX_SIDE for v in self.image_size):
            raise RecipeError(
                "Invalid value for parameter `image_size` of ImageFolder. Expected (height, width) with "
                f"each in [1, {_MAX_SIDE}]. Received: image_size={self.image_size!r}"
            )

    def load(self, seed: int, run_dir: Path) -> RecipeData:
        csv, folder = self.labels_csv, self.image_dir
        if not csv:
            csv, folder = str(_write_demo_folder(run_dir / DEMO_DIRS["ImageFolder"], seed)), ""
        id_column = self.id_column if self.labels_csv else "id"  # the demo folder's CSV names its rows "id"
        labels = _read_table(csv, "Labels CSV (data.labels_csv)", id_column, self.label_columns)
        _check_known(labels, csv, "Labels CSV (data.labels_csv)")
        folder = folder or str(Path(csv).parent)
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"Image folder (data.image_dir) {folder!r} does not exist.")
        paths = _image_paths(labels.ids, folder, csv)
        missing = [i for i, p in enumerate(paths) if not os.path.isfile(p)]
        if missing and self.on_bad_image == "error":
            raise FileNotFoundError(
                f"{len(missing)} of {len(paths)} images named in the id column of {csv!r} are not in "
                f"{folder!r}, e.g. {paths[missing[0]]!r}{_near_name(paths[missing[0]])}; add them, or skip their "
                "rows with `--set data.on_bad_image=skip`."
            )
        test_labels, test_paths = None, []
        if self.test_csv:  # read and checked before any image is decoded
            test_labels = _read_table(self.test_csv, "Test labels CSV (data.test_csv)", self.id_column,
                                      self.label_columns)
            if test_labels.label_names != labels.label_names:
                raise RecipeError(
                    f"Test labels CSV (data.test_csv) {self.test_csv!r} has labels {list(test_labels.label_names)}; "
                    f"expected those of {csv!r}: {list(labels.label_names)}."
                )
            _check_known(test_labels, self.test_csv, "Test labels CSV (data.test_csv)", training=False)
            test_paths = _image_paths(test_labels.ids, self.test_image_dir or folder, self.test_csv)
            _refuse_shared_images(paths, test_paths, test_labels.ids, csv, self.test_csv)
        same_folder = bool(self.test_csv) and os.path.normpath(self.test_image_dir or folder) == os.path.normpath(folder)
        _log_unused_images(folder, paths + test_paths, [csv] + ([self.test_csv] if same_folder else []))
        labels, paths = _check_images(labels, paths, csv, self.on_bad_image)
        common = dict(kind="images", image_size=tuple(self.image_size), channels=self.channels, id_column=id_column)
        if test_labels is not None:
            test_labels, test_paths = _check_images(test_labels, test_paths, self.test_csv, self.on_bad_image)
            test_labels = given_cells(test_labels)  # machine cells (a filled table with its sidecar) are no truth
            return RecipeData(inputs=paths, labels=labels, test_inputs=test_paths, test_labels=test_labels, **common)
        train, test = _split_test(labels, self.test_fraction, seed)
        return RecipeData(
            inputs=[paths[i] for i in train],
            labels=labels.subset(train),
            test_inputs=[paths[i] for i in test] if len(test) else None,
            test_labels=given_cells(labels.subset(test)) if len(test) else None,  # machine cells are no truth
            **common,
        )


_MAX_SIDE = 8192  # model inputs larger than this are a typo (or a way to run out of memory)


def _near_name(path: str) -> str:
    """For a missing file: a file of its folder whose name differs only in Unicode form (an é
    composed in the CSV and decomposed on disk, as macOS writes it) or in case, as a hint."""
    import unicodedata

    folder, name = os.path.split(path)
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return ""
    for other in names:
        if unicodedata.normalize("NFC", other) == unicodedata.normalize("NFC", name):
            return (f" (the folder holds {other!r}, the same name with its accents encoded another way: write the "
                    "CSV's ids as the files are named, or rename the files)")
    for other in names:
        if other.casefold() == name.casefold():
            return f" (the folder holds {other!r}: file names are case-sensitive)"
    return ""


def _image_paths(ids: tuple[str, ...], folder: str, csv: str) -> list[str]:
    """`folder/id` for every id; an id that is absolute or climbs out of `folder` is refused, so a
    label table never reads (or shows in the report) a file outside the image folder."""
    paths, rows = [], {}
    for row, image_id in enumerate(ids):
        parts = Path(image_id).parts
        if Path(image_id).is_absolute() or ".." in parts or "\\" in image_id or not parts:
            slashes = " (write sub-folders with '/', not '\\')" if "\\" in image_id else ""
            raise ValueError(
                f"Row {row + 1} (id {image_id!r}) of {csv!r}: expected an image path relative to the image "
                f"folder {folder!r}, without '..' or a leading '/'{slashes}; got {image_id!r}."
            )
        paths.append(os.path.join(folder, image_id))
        other = rows.setdefault(os.path.normpath(image_id), row)
        if other != row:  # e.g. 'a.jpg' and './a.jpg': one photo, which could land on both sides of the split
            raise ValueError(
                f"Rows {other + 1} and {row + 1} of {csv!r} name the same image ({ids[other]!r} and {image_id!r}); "
                "expected one row per image: merge the two rows."
            )
    return paths


def _refuse_shared_images(paths: list[str], test_paths: list[str], test_ids: tuple[str, ...], csv: str,
                          test_csv: str) -> None:
    """RecipeError if an image of the test table is also a training image (same file path): its
    labels would leak into training and inflate the test scores."""
    train = {os.path.normpath(p) for p in paths}
    shared = [image_id for image_id, p in zip(test_ids, test_paths) if os.path.normpath(p) in train]
    if shared:
        raise RecipeError(
            f"Test labels CSV (data.test_csv) {test_csv!r} and labels CSV (data.labels_csv) {csv!r} share "
            f"{len(shared)} image(s), e.g. {shared[:5]}: test images must not be training images (their labels "
            "would leak into training and inflate the test scores); remove them from one of the two files."
        )


#: File name endings counted as images by the unused-image note (decodable or not).
_IMAGE_SUFFIXES = IMAGE_SUFFIXES + HEIF_SUFFIXES + (".tif", ".tiff")


def _log_unused_images(folder: str, used: list[str], csvs: list[str]) -> None:
    """One INFO line counting the images in `folder` (and in the subfolders the ids name; not
    searched deeper) that no CSV names: they are not used, which a user may not expect. Hidden
    files (macOS's `._IMG_0001.JPG` beside each photo) are no images to add."""
    used_set = {os.path.normpath(p) for p in used}
    root = os.path.normpath(folder)
    # Only `folder` and its subfolders: a separate test folder's other files are not this table's.
    inside = {d for d in map(os.path.dirname, used_set) if d == root or d.startswith(root + os.sep)}
    unused = []
    for directory in sorted(inside | {root}):
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if (entry.name.lower().endswith(_IMAGE_SUFFIXES) and not entry.name.startswith(".")
                            and os.path.normpath(entry.path) not in used_set and entry.is_file()):
                        unused.append(os.path.relpath(entry.path, folder))
        except OSError:  # a folder named by an id that does not exist: the image check names it
            continue
    if unused:
        unused.sort()
        logger.info("%d images in %s are not in %s and are not used, e.g. %s%s. To train on them as unlabeled "
                    "images, add a row for each to %s with every label cell blank.", len(unused), folder,
                    " or ".join(csvs), ", ".join(unused[:5]), " ..." if len(unused) > 5 else "", csvs[0])


def _check_images(labels: PartialLabels, paths: list[str], csv: str, on_bad_image: str) -> tuple[PartialLabels, list[str]]:
    """Check every image once, before the split, so bad files are reported together with the id
    of their row in the CSV; with `on_bad_image="skip"` their rows are dropped."""
    from ssl_multilabel.data.pipeline import usable_images

    keep = usable_images(
        paths, on_bad_image=on_bad_image, name=lambda b: f"id {labels.ids[b.index]!r}",
        source=f"images named in {csv!r}", skipped=f"rows of {csv} whose image cannot be used",
        hint="skip their rows with `--set data.on_bad_image=skip` (ImageFolder(on_bad_image='skip'))",
    )
    if len(keep) == len(paths):
        return labels, paths
    kept = labels.subset(keep)
    if not kept.known.any():
        raise RecipeError(
            f"{csv!r}: after skipping the {len(paths) - len(keep)} rows whose image cannot be used "
            f"(on_bad_image=skip), no known label cell is left in its {len(keep)} other rows; expected at least one "
            "1 or 0: fix or replace those images."
        )
    return kept, [paths[i] for i in keep]


def _write_demo_folder(folder: Path, seed: int) -> Path:
    """600 PNG mosaics and `labels.csv` (20 % of cells known); kept if already complete."""
    from PIL import Image

    csv = folder / "labels.csv"
    if csv.is_file():
        return csv
    images, partial = _demo_table(600, seed, 0.2)
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"mosaic_{i:04d}.png" for i in range(len(images))]
    for name, image in zip(ids, images):
        with atomic_path(folder / name) as tmp:
            Image.fromarray(image[..., 0]).save(tmp, format="PNG")
    PartialLabels(values=partial.values, known=partial.known, weight=partial.weight, source=partial.source,
                  label_names=partial.label_names, ids=ids).save(csv)
    logger.info("Wrote a demo image folder with %d images to %s.", len(ids), folder)
    return csv


@dataclasses.dataclass(frozen=True, kw_only=True)
class Embeddings(DataSource):
    """A labels CSV and a `.npy` array of embeddings, row i of one matching row i of the other.

    `truth_csv` (optional) is a more complete table of the same rows, used by
    `Evaluate(split="hidden")` to score the filled cells; it must agree with every cell both
    tables know (else a `RecipeError` names the first that differs). With `labels_csv` empty, demo files
    (thumbnail features of 1,000 bundled mosaics, 10 % of cells known, and the truth) are written to
    `<run dir>/data/` and used.
    """

    path_fields: ClassVar[tuple[str, ...]] = ("labels_csv", "embeddings", "truth_csv")

    labels_csv: str = param("", doc="wide labels CSV with an id column; empty: demo")
    embeddings: str = param("", doc=".npy array (n, d), one row per label row")
    truth_csv: str = param("", doc="optional complete labels of the same rows, for scoring")
    id_column: str = param("id", doc="the column of labels_csv and truth_csv that names the rows")
    label_columns: tuple[str, ...] = param(
        (), doc="the label columns of labels_csv and truth_csv (others are not read); empty: all but id")

    def validate(self) -> None:
        _check_id_column(self)
        _check_label_columns(self)

    def load(self, seed: int, run_dir: Path) -> RecipeData:
        csv, npy, truth_csv = self.labels_csv, self.embeddings, self.truth_csv
        id_column = self.id_column if csv else "id"  # the demo CSVs name their rows "id"
        if not csv:
            csv, npy, truth_csv = (str(p) for p in _write_demo_embeddings(run_dir / DEMO_DIRS["Embeddings"], seed))
        elif not npy:
            raise RecipeError("data.embeddings is empty: give the .npy file of embeddings with data.labels_csv.")
        labels = _read_table(csv, "Labels CSV (data.labels_csv)", id_column, self.label_columns)
        _check_known(labels, csv, "Labels CSV (data.labels_csv)")
        features = load_embeddings(npy, labels.n_samples, rows_of=csv, what="Embeddings file (data.embeddings)")
        truth = _read_table(truth_csv, "Truth CSV (data.truth_csv)", id_column, self.label_columns) if truth_csv else None
        if truth is not None and truth.label_names != labels.label_names:
            raise RecipeError(f"Truth CSV {truth_csv!r} must have the labels of {csv!r}, in its order: "
                              f"{list(labels.label_names)}; it has {list(truth.label_names)}.")
        if truth is not None and truth.ids != labels.ids:
            row = next((i for i, (a, b) in enumerate(zip(truth.ids, labels.ids)) if a != b),
                       min(len(truth.ids), len(labels.ids)))
            found = f"id {truth.ids[row]!r}" if row < len(truth.ids) else "no row"
            raise RecipeError(f"Truth CSV {truth_csv!r} must list the ids of {csv!r} in the same order; its row "
                              f"{row + 1} has {found} where {csv!r} has "
                              f"{repr(labels.ids[row]) if row < len(labels.ids) else 'no row'}.")
        if truth is not None:
            both = labels.known & truth.known
            conflict = np.argwhere(both & ((labels.values >= 0.5) != (truth.values >= 0.5)))
            if len(conflict):
                i, j = conflict[0]
                raise RecipeError(
                    f"Truth CSV {truth_csv!r} disagrees with {csv!r} at row id {labels.ids[i]!r}, label "
                    f"{labels.label_names[j]!r}: the labels say {int(labels.values[i, j] >= 0.5)}, the truth "
                    f"{int(truth.values[i, j] >= 0.5)} ({len(conflict)} such cell(s)). The truth must be a more complete "
                    "table of the same cells: equal wherever both are known.")
        return RecipeData(kind="embeddings", inputs=features, labels=labels, truth=truth, id_column=id_column)


def load_embeddings(path: str | Path, n_rows: int, *, rows_of: str, what: str = "Embeddings file") -> np.ndarray:
    """A float32 `(n_rows, d)` array of finite numbers from an `.npy` file, or a one-line user error.

    Args:
        path: the `.npy` file.
        n_rows: the number of label rows the embeddings must match.
        rows_of: the label file those rows come from, for the error message.
        what: how to name the file in errors (e.g. the CLI flag or the recipe field).

    Raises:
        FileNotFoundError: no such file.
        RecipeError: (a ValueError) anything else than a real-valued `(n_rows, d)` array with
            `d >= 1` whose values are finite in float32; the message names the file.
    """
    name = f"{what} {str(path)!r}"
    if not Path(path).is_file():
        raise FileNotFoundError(f"{name} does not exist.")
    rows = f"({n_rows}, d), one row per row of {rows_of!r}"
    expected = f"expected a numeric .npy array (written by numpy.save) of shape {rows}"
    if Path(path).stat().st_size == 0:
        raise RecipeError(f"{name} is empty (0 bytes); {expected}.")
    try:
        # Memory-mapped: the header is checked before any data is read, so a file that declares
        # a huge shape is refused instead of allocated.
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
    except PermissionError:
        raise
    except Exception as err:  # numpy raises ValueError, EOFError, BadZipFile, OSError ... on bad files
        with open(path, "rb") as handle:
            head = handle.read(512)
        if not head.startswith(b"\x93NUMPY") and not head.startswith(b"PK") and b"\0" not in head:
            raise RecipeError(
                f"{name} is a text file, not a .npy array; {expected}. For a CSV of numbers: "
                f"numpy.save('embeddings.npy', pandas.read_csv({str(path)!r}).to_numpy('float32')) (its first line "
                "a header; for a file without one, header=None)") from None
        raise RecipeError(f"{name} is not a readable .npy array ({type(err).__name__}: {err}); {expected}.") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        keys = list(loaded.keys())
        loaded.close()
        raise RecipeError(
            f"{name} is an .npz archive (arrays {keys[:5]}); {expected}, e.g. "
            f"np.save('emb.npy', np.load(file)[{(keys[0] if keys else 'name')!r}])."
        )
    if loaded.dtype.kind not in "iuf":
        raise RecipeError(f"{name} holds {loaded.dtype} values; {expected} (ints or floats).")
    if loaded.ndim != 2 or loaded.shape[0] != n_rows or loaded.shape[1] == 0:
        raise RecipeError(f"{name} has shape {loaded.shape}; expected {rows}, d >= 1.")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, reported below
        features = np.array(loaded, dtype=np.float32)
    del loaded
    finite = np.isfinite(features).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise RecipeError(
            f"{name} must hold finite numbers (within float32 range); row {row} holds NaN or inf "
            f"({int((~finite).sum())} row(s) affected)."
        )
    return features


def _write_demo_embeddings(folder: Path, seed: int) -> tuple[Path, Path, Path]:
    from ssl_multilabel.datasets import load_quickstart

    csv, npy, truth_csv = folder / "labels.csv", folder / DEMO_EMBEDDINGS, folder / "truth.csv"
    if csv.is_file() and npy.is_file() and truth_csv.is_file():
        return csv, npy, truth_csv
    images, partial = _demo_table(1000, seed, 0.1)
    (_, truth), _ = load_quickstart()
    truth = truth.subset(np.arange(len(images)))
    # Sum over the four 28x28 items of their 14x14 thumbnails: crude features that do not depend
    # on where an item sits in the mosaic, as its labels do not.
    n = len(images)
    x = images[..., 0].astype(np.float32) / 255.0
    items = x.reshape(n, 2, 28, 2, 28).transpose(0, 1, 3, 2, 4).reshape(n, 4, 28, 28)
    pooled = items.reshape(n, 4, 14, 2, 14, 2).mean(axis=(3, 5)).reshape(n, 4, -1).sum(axis=1)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(npy) as tmp:
        np.save(tmp, pooled)
    truth.save(truth_csv)
    partial.save(csv)
    return csv, npy, truth_csv
