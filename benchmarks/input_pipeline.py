"""B4: image input pipeline throughput (protocol: ../shared/guide/BENCHMARKS.md).

2,000 JPEGs (fashion-mosaics upscaled to 128x128 RGB) in a temporary folder with a labels CSV,
read, decoded and resized to 96x96x3 float32, 2 full passes at batch 64:

- ours: `ssl_multilabel.data.make_dataset` (no cache, default file check `check="fast"`);
- baseline: a `keras.utils.PyDataset` that reads with PIL and resizes with numpy (bilinear,
  half-pixel centres, the same arithmetic as `tf.image.resize`), the way
  `ImageDataGenerator.flow_from_dataframe` worked, iterated in order as with `workers=1`;
- limit: a bare `tf.data` read + `decode_jpeg` + resize map with `AUTOTUNE`.

Each timed run builds its dataset and iterates 2 passes, so ours includes its up-front check of
every file (cold: the record of files already checked is cleared before each run); the passes
alone are reported too. Runs alternate ours / baseline / limit, median of
>= 3 repeats after a warm-up.

Phone photos: 48 JPEGs of 4032x3024 (12 megapixels, quality 90, with sensor-like noise: about
2 MB each) -> 224x224x3, the photo recipe's input, the same 2 passes and loaders. Ours decodes them
at 1/8 of their size (libjpeg's DCT scaling, PIL's `draft` rule); the limit and the baseline
decode every pixel, as ours did before 2026-12-06.

Usage: python benchmarks/input_pipeline.py [--quick] [--n N] [--repeats R] [--photos P]
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from _report import markdown_table, write_section  # noqa: E402

from ssl_multilabel.data import make_dataset  # noqa: E402
from ssl_multilabel.data import pipeline as _pipeline  # noqa: E402
from ssl_multilabel.labels import PartialLabels  # noqa: E402

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"
SIDE_IN, SIDE_OUT, BATCH, PASSES = 128, 96, 64, 2
PHOTO_IN, PHOTO_OUT = (3024, 4032), 224  # a 12-megapixel phone photo; the photo recipe's input size


# === Data ===


def _mosaics(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 56, 56) uint8 mosaics and (n, 10) 0/1 labels: from the package if it is there,
    otherwise built here from the raw idx files."""
    try:
        from ssl_multilabel.datasets import fashion_mosaics

        images, labels = fashion_mosaics("train", n=n, seed=seed, source_dir=SOURCE)
        return images[..., 0], labels.to_array()
    except ImportError:
        with gzip.open(SOURCE / "train-images-idx3-ubyte.gz") as f:
            items = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(SOURCE / "train-labels-idx1-ubyte.gz") as f:
            classes = np.frombuffer(f.read(), np.uint8, offset=8)
        rng = np.random.default_rng(seed)
        table = rng.integers(0, len(items), size=(n, 4))
        tiles = items[table].reshape(n, 2, 2, 28, 28).transpose(0, 1, 3, 2, 4).reshape(n, 56, 56)
        y = np.zeros((n, 10), np.float32)
        y[np.repeat(np.arange(n), 4), classes[table].ravel()] = 1
        return tiles, y


def write_folder(folder: Path, n: int, seed: int = 0) -> tuple[list[str], pd.DataFrame]:
    """n JPEGs 128x128 RGB and labels.csv (about half the cells unknown, left blank)."""
    images, y = _mosaics(n, seed)
    rng = np.random.default_rng(seed + 1)
    y = np.where(rng.random(y.shape) < 0.5, y, np.nan)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"img_{i:05d}.jpg"
        Image.fromarray(image).resize((SIDE_IN, SIDE_IN), Image.BILINEAR).convert("RGB").save(path, quality=90)
        paths.append(str(path))
    return paths, _write_labels(folder, paths, y)


def _write_labels(folder: Path, paths: list[str], y: np.ndarray) -> pd.DataFrame:
    """`folder/labels.csv`: a `filename` column and one column per label (NaN written blank)."""
    table = pd.DataFrame(y, columns=[f"label_{j}" for j in range(y.shape[1])])
    table.insert(0, "filename", [Path(p).name for p in paths])
    table.to_csv(folder / "labels.csv", index=False)
    return table


def write_photos(folder: Path, n: int, seed: int = 0) -> tuple[list[str], pd.DataFrame]:
    """n 12-megapixel JPEGs (mosaics upscaled, plus noise so that they compress like photos) and labels.csv."""
    images, y = _mosaics(n, seed)
    rng = np.random.default_rng(seed + 1)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"photo_{i:03d}.jpg"
        big = np.asarray(Image.fromarray(image).convert("RGB").resize(PHOTO_IN[::-1], Image.BILINEAR), np.int16)
        noisy = np.clip(big + rng.integers(-6, 7, big.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(path, quality=90)
        paths.append(str(path))
    return paths, _write_labels(folder, paths, y)


# === The three loaders ===


def _bilinear_numpy(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres (the arithmetic of tf.image.resize, no antialias)."""
    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(np.int64)
        return lo, np.minimum(lo + 1, n_in - 1), (pos - lo).astype(np.float32)

    y0, y1, fy = axis(image.shape[0], height)
    x0, x1, fx = axis(image.shape[1], width)
    image = image.astype(np.float32)
    top = image[y0][:, x0] * (1 - fx)[None, :, None] + image[y0][:, x1] * fx[None, :, None]
    bottom = image[y1][:, x0] * (1 - fx)[None, :, None] + image[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]


class PILLoader(keras.utils.PyDataset):
    """The ImageDataGenerator.flow_from_dataframe way: PIL reads, numpy resizes, one batch per item."""

    def __init__(self, folder: Path, table: pd.DataFrame, batch_size: int, side: int) -> None:
        super().__init__()
        self.paths = [str(folder / name) for name in table["filename"]]
        self.y = table.drop(columns="filename").fillna(-1).to_numpy(np.float32)
        self.batch_size, self.side = batch_size, side

    def __len__(self) -> int:
        return -(-len(self.paths) // self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = range(index * self.batch_size, min((index + 1) * self.batch_size, len(self.paths)))
        x = np.stack([
            _bilinear_numpy(np.asarray(Image.open(self.paths[i]).convert("RGB")), self.side, self.side)
            for i in rows
        ])
        return x, self.y[rows.start:rows.stop]


def run_baseline(folder: Path, table: pd.DataFrame, side: int = SIDE_OUT) -> int:
    loader = PILLoader(folder, table, BATCH, side)
    seen = 0
    for _ in range(PASSES):
        for i in range(len(loader)):
            x, _ = loader[i]
            seen += len(x)
        loader.on_epoch_end()
    return seen


def _measure(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds over all threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _iterate(ds: tf.data.Dataset) -> int:
    seen = 0
    for _ in range(PASSES):
        for x, *_ in ds:
            seen += int(x.shape[0])
    return seen


def build_ours(folder: Path, table: pd.DataFrame, side: int = SIDE_OUT) -> tf.data.Dataset:
    labels = PartialLabels.from_dataframe(table, "filename", [c for c in table.columns if c != "filename"])
    paths = [str(folder / name) for name in table["filename"]]
    return make_dataset(paths, labels, image_size=side, channels=3, batch_size=BATCH)


def build_limit(folder: Path, table: pd.DataFrame, side: int = SIDE_OUT) -> tf.data.Dataset:
    paths = [str(folder / name) for name in table["filename"]]
    y = table.drop(columns="filename").fillna(-1).to_numpy(np.float32)

    def load(path: tf.Tensor, target: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        return tf.image.resize(image, (side, side)), target

    ds = tf.data.Dataset.from_tensor_slices((paths, y)).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(BATCH).prefetch(tf.data.AUTOTUNE)


# === Main ===


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 images, 1 repeat (< 3 minutes)")
    parser.add_argument("--n", type=int, default=None, help="number of JPEGs (default 2000; 500 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5; 1 with --quick)")
    parser.add_argument("--photos", type=int, default=None, help="number of 12-megapixel JPEGs (default 48; 8 with --quick)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not touch docs/benchmarks.md")
    return parser


def measure_photos(n: int, repeats: int) -> tuple[list[dict], list[dict]]:
    """Ratios and absolute rows of the three loaders on n 12-megapixel JPEGs -> 224 px (alternating,
    median of `repeats` after a warm-up)."""
    with tempfile.TemporaryDirectory(prefix="b4_photos_") as tmp:
        folder = Path(tmp)
        write_photos(folder, n)
        table = pd.read_csv(folder / "labels.csv")

        def ours() -> int:
            _pipeline._CHECKED.clear()
            return _iterate(build_ours(folder, table, PHOTO_OUT))

        runs = {"ours": ours, "limit": lambda: _iterate(build_limit(folder, table, PHOTO_OUT)),
                "baseline": lambda: run_baseline(folder, table, PHOTO_OUT)}
        for name, fn in runs.items():
            if fn() != PASSES * n:
                raise RuntimeError(f"{name} did not yield {PASSES * n} photos")
        wall: dict[str, list[float]] = {}
        for _ in range(repeats):
            for name, fn in runs.items():
                wall.setdefault(name, []).append(_measure(fn)[0])
    med = {k: float(np.median(v)) for k, v in wall.items()}
    ratios = [{"comparison": f"ours / {label}, 12-megapixel JPEGs -> {PHOTO_OUT} px", "images/s ratio (wall)": med[key] / med["ours"]}
              for label, key in (("PIL PyDataset", "baseline"), ("bare tf.data (full decode)", "limit"))]
    rows = [{"measure": label, "wall s": med[key], "images/s": PASSES * n / med[key]}
            for label, key in (("ours: make_dataset + 2 passes (JPEGs decoded at 1/8)", "ours"),
                               ("baseline: PIL + numpy PyDataset, 2 passes", "baseline"),
                               ("limit: bare tf.data, full decode, 2 passes", "limit"))]
    return ratios, rows


def main(argv: list[str] | None = None) -> list[dict]:
    args = get_args_parser().parse_args(argv)
    n = args.n or (500 if args.quick else 2000)
    repeats = args.repeats or (1 if args.quick else 5)
    photos = args.photos or (8 if args.quick else 48)
    with tempfile.TemporaryDirectory(prefix="b4_") as tmp:
        folder = Path(tmp)
        paths, _ = write_folder(folder, n)
        table = pd.read_csv(folder / "labels.csv")  # the loaders start from the CSV, as a user would

        def ours() -> int:
            # Forget earlier checks so that every timed run pays for checking all files (cold).
            _pipeline._CHECKED.clear()
            return _iterate(build_ours(folder, table))

        def limit() -> int:
            return _iterate(build_limit(folder, table))

        def baseline() -> int:
            return run_baseline(folder, table)

        def ours_passes() -> tuple[float, float]:
            _pipeline._CHECKED.clear()
            ds = build_ours(folder, table)
            return _measure(lambda: _iterate(ds))

        def limit_passes() -> tuple[float, float]:
            ds = build_limit(folder, table)
            return _measure(lambda: _iterate(ds))

        def ours_build() -> tuple[float, float]:
            _pipeline._CHECKED.clear()
            return _measure(lambda: build_ours(folder, table))

        runs = {"ours": ours, "baseline": baseline, "limit": limit}
        for name, fn in runs.items():  # warm-up (graph tracing, OS file cache)
            if fn() != PASSES * n:
                raise RuntimeError(f"{name} did not yield {PASSES * n} images")
        wall: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        for _ in range(repeats):  # alternate
            measured = {name: _measure(fn) for name, fn in runs.items()}
            measured["ours passes"] = ours_passes()
            measured["limit passes"] = limit_passes()
            measured["ours build"] = ours_build()
            for name, (w, c) in measured.items():
                wall.setdefault(name, []).append(w)
                cpu.setdefault(name, []).append(c)

    med = {k: float(np.median(v)) for k, v in wall.items()}
    med_cpu = {k: float(np.median(v)) for k, v in cpu.items()}
    images = PASSES * n

    def ratio(label: str, other: str, mine: str, target: str) -> dict:
        return {
            "comparison": label,
            "images/s ratio (wall)": med[other] / med[mine],
            "images per CPU-s ratio": med_cpu[other] / med_cpu[mine],
            "target (wall)": target,
        }

    ratios = [
        ratio("ours / PIL PyDataset (build + 2 passes)", "baseline", "ours", ">= 3"),
        ratio("ours / bare tf.data (build + 2 passes)", "limit", "ours", ">= 0.9"),
        ratio("ours / bare tf.data (2 passes of built datasets)", "limit passes", "ours passes", ">= 0.9"),
    ]
    rows = [
        ("ours: make_dataset + 2 passes", "ours", images),
        ("ours: 2 passes of the built dataset", "ours passes", images),
        ("ours: make_dataset call alone (cold file check)", "ours build", n),
        ("baseline: PIL + numpy PyDataset, 2 passes", "baseline", images),
        ("limit: bare tf.data build + 2 passes", "limit", images),
        ("limit: 2 passes of the built dataset", "limit passes", images),
    ]
    absolute = [
        {"measure": label, "wall s": med[key], "images/s": count / med[key], "CPU s": med_cpu[key]}
        for label, key, count in rows
    ]
    photo_ratios, photo_rows = measure_photos(photos, repeats)
    text = (
        f"## B4: image input pipeline\n\n"
        f"{n} JPEGs {SIDE_IN}x{SIDE_IN} RGB (fashion-mosaics upscaled) -> {SIDE_OUT}x{SIDE_OUT}x3 float32, "
        f"{PASSES} passes at batch {BATCH}, median of {repeats} alternating repeats after a warm-up. "
        "Ratios: images/s of ours divided by images/s of the other loader (wall clock), and the "
        "same per second of process CPU time (all threads), which is less sensitive to the other "
        f"jobs sharing these 2 cores (load average {os.getloadavg()[0]:.1f} when the run ended).\n\n"
        f"{markdown_table(ratios)}\n\n{markdown_table(absolute)}\n\n"
        "Baseline: `keras.utils.PyDataset` reading with PIL and resizing with numpy (bilinear), "
        "iterated in order (`workers=1`, single-threaded). Limit: `tf.data` read + `decode_jpeg` "
        "(default fast IDCT) + `tf.image.resize` map with AUTOTUNE, no file check. Ours: "
        "`make_dataset(..., image_size=96, channels=3, batch_size=64)`, no cache, which decodes "
        "JPEGs with the accurate IDCT (pixels equal to PIL's) and, with its default "
        "`check=\"fast\"`, checks every file (header and end marker) before the first batch; "
        "the record of checked files is cleared before each timed run, so every run pays the "
        "cold check (a rebuild over unchanged files would skip it).\n\n"
        f"**Phone photos.** {photos} JPEGs of {PHOTO_IN[1]}x{PHOTO_IN[0]} (12 megapixels, quality 90, "
        f"mosaics upscaled plus noise so that they compress like photos) -> {PHOTO_OUT}x{PHOTO_OUT}x3, the photo "
        f"recipe's input; {PASSES} passes, median of {repeats} alternating repeats. Ours decodes such a JPEG "
        "at 1/8 of its size with libjpeg's DCT scaling (PIL's `draft` rule: the smallest of 1/1, 1/2, 1/4, 1/8 "
        "that stays at least the output size; pixels equal to PIL's `draft` + the same resize); the others "
        f"decode every pixel.\n\n{markdown_table(photo_ratios)}\n\n{markdown_table(photo_rows)}"
    )
    print(text)
    if not args.no_write:
        write_section("B4", text)
    return ratios


if __name__ == "__main__":
    main()
