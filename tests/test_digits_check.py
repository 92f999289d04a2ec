"""The data maker of the new-user check (benchmarks/digits_check/make_data.py)."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _maker():
    spec = importlib.util.spec_from_file_location("make_data", ROOT / "benchmarks" / "digits_check" / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_mosaics_tables_agree_with_each_other_and_with_the_images(tmp_path):
    _maker().make(tmp_path)
    train, full, test = (pd.read_csv(tmp_path / f, index_col="id") for f in ("train.csv", "train_full.csv", "test.csv"))
    assert len(train) == len(full) == 6000 and len(test) == 2000
    assert list(train.columns) == [f"digit{j}" for j in range(10)]
    known = train.notna().to_numpy()
    # random-cells 0.05 over 60,000 cells: the known share is within 4 binomial standard deviations
    assert abs(known.mean() - 0.05) < 4 * np.sqrt(0.05 * 0.95 / known.size)
    np.testing.assert_array_equal(train.to_numpy()[known], full.to_numpy()[known])
    assert test.notna().all().all()
    # each of the 4 tiles holds a digit (non-blank) or nothing: at most 4 labels, and none for a blank mosaic
    for table, split in ((full, "train"), (test, "test")):
        counts = table.sum(axis=1)
        assert counts.max() <= 4
        for name in table.index[:200]:
            pixels = np.asarray(Image.open(tmp_path / split / name))
            tiles = [pixels[r:r + 28, c:c + 28] for r in (0, 28) for c in (0, 28)]
            filled = sum(tile.any() for tile in tiles)
            assert (counts[name] == 0) == (filled == 0) and counts[name] <= filled


def test_digits_mosaics_single_positive_table_knows_one_true_positive_per_mosaic(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="single_positive", category=UserWarning)
        _maker().make(tmp_path)
    full, sp = (pd.read_csv(tmp_path / f, index_col="id") for f in ("train_full.csv", "train_sp.csv"))
    assert list(sp.index) == list(full.index) and list(sp.columns) == list(full.columns)
    known = sp.notna().to_numpy()
    has_digit = full.to_numpy().sum(axis=1) > 0
    # one known cell per mosaic with a digit, none for a blank mosaic; every known cell a true positive
    np.testing.assert_array_equal(known.sum(axis=1), has_digit.astype(int))
    assert (sp.to_numpy()[known] == 1).all() and (full.to_numpy()[known] == 1).all()
