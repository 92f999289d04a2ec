"""Tests of the built-in data sets (fashion-mosaics, quickstart bundle, MULAN) and the protocols."""

from __future__ import annotations

import gzip
import math
import re
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ssl_multilabel.datasets import (
    FASHION_MNIST_CLASSES,
    fashion_mosaics,
    labeled_subset,
    load_quickstart,
    mulan,
    random_cells,
    single_positive,
)
from ssl_multilabel.datasets import fashion as fashion_module
from ssl_multilabel.labels import PartialLabels, Source

# === Independent references ===


def read_idx_reference(path: Path) -> np.ndarray:
    """A second idx reader (struct-based), independent of the package's."""
    with gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb") as handle:
        zero, dtype_code, ndim = struct.unpack(">HBB", handle.read(4))
        assert zero == 0 and dtype_code == 0x08
        shape = struct.unpack(">" + "I" * ndim, handle.read(4 * ndim))
        return np.frombuffer(handle.read(), dtype=np.uint8).reshape(shape)


def quadrants(images: np.ndarray) -> np.ndarray:
    """(n, 56, 56, 1) mosaics -> (n, 4, 28, 28) quadrants, row-major, by explicit slicing."""
    return np.stack(
        [images[:, :28, :28, 0], images[:, :28, 28:, 0], images[:, 28:, :28, 0], images[:, 28:, 28:, 0]], axis=1
    )


def label_sets(classes_of_cells: np.ndarray) -> np.ndarray:
    """(n, 4) item classes -> (n, 10) 0/1 matrix, one row at a time with Python sets."""
    out = np.zeros((len(classes_of_cells), 10), dtype=np.float32)
    for i, row in enumerate(classes_of_cells):
        for c in set(int(v) for v in row):
            out[i, c] = 1.0
    return out


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture()
def fake_fashion_dir(tmp_path: Path) -> Path:
    """Tiny fake raw files: 6 items per class per split, every item a distinct image."""
    rng = np.random.default_rng(123)
    for prefix, offset in (("train", 0), ("t10k", 1)):
        classes = np.repeat(np.arange(10), 6)
        rng.shuffle(classes)
        images = rng.integers(0, 256, size=(60, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(60) + 100 * offset  # unique per item and per split
        images[:, 0, 1] = offset
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", classes)
    return tmp_path


def test_datasets_do_not_import_tensorflow():
    code = "import sys, ssl_multilabel.datasets; print(sorted(m for m in sys.modules if m.startswith(('tensorflow', 'keras'))))"
    repo_root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo_root)
    assert result.stdout.strip() == "[]"


# === Protocols ===


def table(y) -> PartialLabels:
    y = np.asarray(y, dtype=np.float32)
    return PartialLabels.from_array(
        y,
        label_names=[f"l{j}" for j in range(y.shape[1])],
        ids=[f"r{i}" for i in range(y.shape[0])],
    )


binary_tables = hnp.arrays(
    np.float32,
    st.tuples(st.integers(1, 12), st.integers(1, 6)),
    elements=st.sampled_from([0.0, 1.0]),
)


@given(y=binary_tables, p=st.floats(0, 1), seed=st.integers(0, 2**32 - 1))
def test_random_cells_known_cells_keep_true_values(y, p, seed):
    out = random_cells(table(y), p, seed=seed)
    known = np.asarray(out.known)
    assert out.to_array().shape == y.shape
    np.testing.assert_array_equal(out.to_array()[known], y[known])
    assert (out.to_array()[~known] == -1).all()
    assert (np.asarray(out.source)[known] == Source.HUMAN).all()
    assert out.label_names == tuple(f"l{j}" for j in range(y.shape[1]))
    assert out.ids == tuple(f"r{i}" for i in range(y.shape[0]))


def test_random_cells_known_fraction_within_binomial_bounds():
    y = (np.random.default_rng(0).random((500, 20)) < 0.3).astype(np.float32)
    for p in (0.05, 0.5, 0.9):
        n_known = int(np.asarray(random_cells(table(y), p, seed=7).known).sum())
        mean, sd = y.size * p, math.sqrt(y.size * p * (1 - p))
        assert abs(n_known - mean) < 5 * sd, (p, n_known, mean)


def test_random_cells_extremes_and_seeds():
    y = np.eye(8, 5, dtype=np.float32)
    assert not np.asarray(random_cells(table(y), 0.0, seed=1).known).any()
    assert np.asarray(random_cells(table(y), 1.0, seed=1).known).all()
    a = random_cells(table(y), 0.5, seed=3).to_array()
    np.testing.assert_array_equal(a, random_cells(table(y), 0.5, seed=3).to_array())
    assert not np.array_equal(a, random_cells(table(y), 0.5, seed=4).to_array())


@given(y=binary_tables, f=st.floats(0, 1), seed=st.integers(0, 2**32 - 1))
def test_labeled_subset_rows_all_known_or_all_unknown(y, f, seed):
    out = labeled_subset(table(y), f, seed=seed)
    known = np.asarray(out.known)
    row_known = known.all(axis=1)
    assert (row_known | ~known.any(axis=1)).all()
    assert row_known.sum() == math.floor(f * len(y) + 0.5)
    np.testing.assert_array_equal(out.to_array()[row_known], y[row_known])


@pytest.mark.parametrize(("n", "f", "expected"), [(5, 0.5, 3), (10, 0.25, 3), (10, 0.24, 2), (7, 0.0, 0), (7, 1.0, 7)])
def test_labeled_subset_count_hand_computed(n, f, expected):
    out = labeled_subset(table(np.ones((n, 2))), f, seed=0)
    assert int(np.asarray(out.known).all(axis=1).sum()) == expected


def test_labeled_subset_seeds():
    y = np.ones((20, 3), dtype=np.float32)
    a = np.asarray(labeled_subset(table(y), 0.5, seed=0).known)
    np.testing.assert_array_equal(a, np.asarray(labeled_subset(table(y), 0.5, seed=0).known))
    assert not np.array_equal(a, np.asarray(labeled_subset(table(y), 0.5, seed=1).known))


@given(y=binary_tables, seed=st.integers(0, 2**32 - 1))
def test_single_positive_one_true_positive_per_row(y, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = single_positive(table(y), seed=seed)
    known = np.asarray(out.known)
    has_positive = (y == 1).any(axis=1)
    np.testing.assert_array_equal(known.sum(axis=1), has_positive.astype(int))
    assert (y[known] == 1).all()
    assert (out.to_array()[known] == 1).all()


def test_single_positive_uniform_among_positives():
    # One row pattern with positives at 0, 2, 3, repeated: each is picked about a third of the time.
    y = np.tile(np.array([[1, 0, 1, 1, 0]], dtype=np.float32), (3000, 1))
    counts = np.asarray(single_positive(table(y), seed=5).known).sum(axis=0)
    np.testing.assert_array_equal(counts[[1, 4]], [0, 0])
    sd = math.sqrt(3000 * (1 / 3) * (2 / 3))
    assert (np.abs(counts[[0, 2, 3]] - 1000) < 5 * sd).all(), counts
    a = single_positive(table(y), seed=5).to_array()
    assert not np.array_equal(a, single_positive(table(y), seed=6).to_array())


def test_single_positive_row_without_positive_warns_and_stays_unknown():
    y = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float32)
    with pytest.warns(UserWarning, match="2 of 3 samples have no positive"):
        out = single_positive(table(y), seed=0)
    np.testing.assert_array_equal(np.asarray(out.known), [[0, 0, 0], [0, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_protocols_reject_out_of_range_fraction(bad):
    labels = table(np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"`p` must be in \[0, 1\]"):
        random_cells(labels, bad)
    with pytest.raises(ValueError, match=r"`f` must be in \[0, 1\]"):
        labeled_subset(labels, bad)


def test_protocols_reject_bad_types_and_partial_input():
    labels = table(np.ones((3, 2)))
    with pytest.raises(TypeError, match="`p` must be a number"):
        random_cells(labels, "0.5")
    with pytest.raises(TypeError, match="`seed` must be an int"):
        random_cells(labels, 0.5, seed=1.5)
    with pytest.raises(TypeError, match="must be a PartialLabels"):
        single_positive(np.ones((3, 2)))
    partial = PartialLabels.from_array(np.array([[1, -1], [0, 1]], dtype=np.float32))
    with pytest.raises(ValueError, match="must be fully known.*1 unknown cells, the first in row 0"):
        labeled_subset(partial, 0.5)


# === fashion-mosaics on tiny fake raw files (always run) ===


def test_fashion_mosaics_from_fake_files_match_raw_items(fake_fashion_dir):
    for split, prefix in (("train", "train"), ("test", "t10k")):
        raw = read_idx_reference(fake_fashion_dir / f"{prefix}-images-idx3-ubyte.gz")
        raw_classes = read_idx_reference(fake_fashion_dir / f"{prefix}-labels-idx1-ubyte.gz")
        images, labels = fashion_mosaics(split, n=300, seed=1, source_dir=fake_fashion_dir)
        assert images.shape == (300, 56, 56, 1) and images.dtype == np.uint8
        # Find each quadrant among the raw items (all distinct) without using the package's indices.
        lookup = {item.tobytes(): i for i, item in enumerate(raw)}
        found = np.array([[lookup[q.tobytes()] for q in row] for row in quadrants(images)])
        np.testing.assert_array_equal(labels.to_array(), label_sets(raw_classes[found]))
        assert np.asarray(labels.known).all()
        assert labels.label_names == FASHION_MNIST_CLASSES
        assert all(len(set(row)) == 4 for row in found.tolist())  # 4 distinct items per mosaic
        distinct = {len(set(row)) for row in raw_classes[found].tolist()}
        assert distinct == {1, 2, 3, 4}


def test_fashion_mosaics_is_deterministic_given_seed(fake_fashion_dir):
    a, la = fashion_mosaics("train", n=20, seed=3, source_dir=fake_fashion_dir)
    b, lb = fashion_mosaics("train", n=20, seed=3, source_dir=fake_fashion_dir)
    c, _ = fashion_mosaics("train", n=20, seed=4, source_dir=fake_fashion_dir)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la.to_array(), lb.to_array())
    assert not np.array_equal(a, c)


def test_fashion_mosaics_argument_errors(tmp_path_factory, fake_fashion_dir):
    with pytest.raises(ValueError, match="`source_dir` is required.*train-images-idx3-ubyte.gz"):
        fashion_mosaics("train", n=5, seed=0, source_dir=None)
    with pytest.raises(FileNotFoundError, match="'t10k-images-idx3-ubyte.gz'.*not found"):
        fashion_mosaics("test", n=5, seed=0, source_dir=tmp_path_factory.mktemp("empty"))
    with pytest.raises(ValueError, match="Expected one of \\['test', 'train'\\]. Received: split='valid'"):
        fashion_mosaics("valid", n=5, seed=0, source_dir=fake_fashion_dir)
    with pytest.raises(ValueError, match="`n` must be a positive int. Received: n=0"):
        fashion_mosaics("train", n=0, seed=0, source_dir=fake_fashion_dir)


def test_fashion_mosaics_rejects_corrupt_idx(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((4, 28, 28)))
    # A labels file written with the images' magic number (3 dimensions instead of 1).
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros((4, 1, 1)))
    with pytest.raises(ValueError, match="magic number 0x00000803; expected 0x00000801"):
        fashion_mosaics("train", n=1, seed=0, source_dir=tmp_path)


# === fashion-mosaics on the real raw files ===


@pytest.mark.shared
def test_fashion_mosaics_real_files_quadrants_and_labels(fashion_mnist_dir):
    for split, prefix, n_raw in (("train", "train", 60000), ("test", "t10k", 10000)):
        raw = read_idx_reference(fashion_mnist_dir / f"{prefix}-images-idx3-ubyte.gz")
        raw_classes = read_idx_reference(fashion_mnist_dir / f"{prefix}-labels-idx1-ubyte.gz")
        assert len(raw) == n_raw
        images, labels, items = fashion_mosaics(
            split, n=400, seed=0, source_dir=fashion_mnist_dir, return_items=True
        )
        assert items.shape == (400, 4) and items.min() >= 0 and items.max() < n_raw
        np.testing.assert_array_equal(quadrants(images), raw[items])
        np.testing.assert_array_equal(labels.to_array(), label_sets(raw_classes[items]))
        assert labels.ids[:2] == (f"{split}-0", f"{split}-1")
        assert {len(set(row)) for row in raw_classes[items].tolist()} == {1, 2, 3, 4}


# === Quickstart bundle ===


def test_load_quickstart_shapes_and_label_rule():
    (x_train, y_train), (x_test, y_test) = load_quickstart()
    assert x_train.shape == (3000, 56, 56, 1) and x_test.shape == (1000, 56, 56, 1)
    assert x_train.dtype == np.uint8 and x_test.dtype == np.uint8
    assert y_train.label_names == FASHION_MNIST_CLASSES and y_test.n_labels == 10
    assert np.asarray(y_train.known).all() and np.asarray(y_test.known).all()
    with np.load(fashion_module._QUICKSTART_FILE, allow_pickle=False) as npz:
        for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            items, table_ = npz[f"{split}_items"], npz[f"{split}_mosaics"].astype(np.int64)
            classes = npz[f"{split}_item_classes"]
            np.testing.assert_array_equal(quadrants(x), items[table_])
            np.testing.assert_array_equal(y.to_array(), label_sets(classes[table_]))
            assert {len(set(row)) for row in classes[table_].tolist()} == {1, 2, 3, 4}
            # Train and test pools are disjoint index sets of different raw splits; items are distinct.
            assert len(np.unique(npz[f"{split}_item_index"])) == len(items)


def test_quickstart_bundle_size_and_licence():
    assert fashion_module._QUICKSTART_FILE.stat().st_size < 5 * 1024 * 1024
    licence = fashion_module._QUICKSTART_FILE.parent / "LICENSE-fashion-mnist.txt"
    assert "MIT License" in licence.read_text() and "Zalando SE" in licence.read_text()


@pytest.mark.shared
def test_quickstart_items_are_the_raw_items(fashion_mnist_dir):
    with np.load(fashion_module._QUICKSTART_FILE, allow_pickle=False) as npz:
        for split, prefix in (("train", "train"), ("test", "t10k")):
            raw = read_idx_reference(fashion_mnist_dir / f"{prefix}-images-idx3-ubyte.gz")
            raw_classes = read_idx_reference(fashion_mnist_dir / f"{prefix}-labels-idx1-ubyte.gz")
            index = npz[f"{split}_item_index"]
            np.testing.assert_array_equal(npz[f"{split}_items"], raw[index])
            np.testing.assert_array_equal(npz[f"{split}_item_classes"], raw_classes[index])


@pytest.mark.shared
def test_make_quickstart_data_reproduces_the_bundle(fashion_mnist_dir, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    try:
        import make_quickstart_data
    finally:
        sys.path.pop(0)
    out = make_quickstart_data.main(["--source-dir", str(fashion_mnist_dir), "--output", str(tmp_path / "q.npz")])
    with np.load(out, allow_pickle=False) as new, np.load(fashion_module._QUICKSTART_FILE, allow_pickle=False) as old:
        assert sorted(new.files) == sorted(old.files)
        for key in old.files:
            np.testing.assert_array_equal(new[key], old[key], err_msg=key)


# === MULAN ===

MULAN_SHAPES = {
    "scene": (1211, 1196, 294, 6),
    "yeast": (1500, 917, 103, 14),
    "emotions": (391, 202, 72, 6),
}


def xml_label_names(path: Path) -> list[str]:
    return re.findall(r'<label name="([^"]+)"', path.read_text())


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(MULAN_SHAPES))
def test_mulan_shapes_names_and_values_match_scipy(mulan_dir, name):
    from scipy.io import arff

    n_train, n_test, d, n_labels = MULAN_SHAPES[name]
    xml_names = xml_label_names(mulan_dir / name / f"{name}.xml")
    for split, n in (("train", n_train), ("test", n_test)):
        X, labels = mulan(name, split, data_dir=mulan_dir)
        assert X.shape == (n, d) and X.dtype == np.float32
        assert labels.n_samples == n and labels.n_labels == n_labels
        assert set(labels.label_names) == set(xml_names) and len(xml_names) == n_labels
        data, meta = arff.loadarff(mulan_dir / name / f"{name}-{split}.arff")
        names = meta.names()
        assert list(labels.label_names) == [a for a in names if a in set(xml_names)]  # ARFF order
        features = [a for a in names if a not in set(xml_names)]
        ref_x = np.column_stack([data[a].astype(np.float64) for a in features]).astype(np.float32)
        ref_y = np.column_stack([data[a].astype(str).astype(float) for a in labels.label_names])
        np.testing.assert_array_equal(X, ref_x)
        np.testing.assert_array_equal(labels.to_array(), ref_y)


ARFF_HEADER = """% a comment
@relation toy
@attribute 'f one' numeric
@attribute colour {red,green,blue}
@attribute f3 real
@attribute A {0,1}
@attribute B {0,1}
@data
"""


def write_toy(folder: Path, data_lines: str, labels=("A", "B"), split="train") -> Path:
    (folder / "toy").mkdir(exist_ok=True)
    (folder / "toy" / f"toy-{split}.arff").write_text(ARFF_HEADER + data_lines)
    xml = "".join(f'<label name="{n}"></label>' for n in labels)
    (folder / "toy" / "toy.xml").write_text(
        f'<?xml version="1.0" encoding="utf-8"?><labels xmlns="http://mulan.sourceforge.net/labels">{xml}</labels>'
    )
    return folder


def test_mulan_reads_dense_sparse_missing_and_nominal(tmp_path):
    lines = "1.5,green,-2,1,0\n{0 3, 1 blue, 4 1}\n?,red,0.25,?,1\n% trailing comment\n{}\n"
    X, labels = mulan("toy", "train", data_dir=write_toy(tmp_path, lines))
    expected_x = np.array([[1.5, 1, -2], [3, 2, 0], [np.nan, 0, 0.25], [0, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(X, expected_x)
    np.testing.assert_array_equal(labels.to_array(), [[1, 0], [0, 1], [-1, 1], [0, 0]])
    assert labels.label_names == ("A", "B")
    assert labels.ids == ("toy-train-0", "toy-train-1", "toy-train-2", "toy-train-3")


def test_mulan_errors_name_file_line_and_expectation(tmp_path):
    with pytest.raises(ValueError, match="`data_dir` is required"):
        mulan("toy", "train")
    with pytest.raises(ValueError, match="Expected one of \\['train', 'test'\\]. Received: split='dev'"):
        mulan("toy", "dev", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="'toy-test.arff' not found"):
        mulan("toy", "test", data_dir=write_toy(tmp_path, "1,red,2,0,1\n"))
    with pytest.raises(ValueError, match="line 10: 4 values; expected 5"):
        mulan("toy", "train", data_dir=write_toy(tmp_path, "1,red,2,0,1\n1,red,2,0\n"))
    with pytest.raises(ValueError, match="line 9: attribute 'colour' expects one of \\['red', 'green', 'blue'\\]; received 'pink'"):
        mulan("toy", "train", data_dir=write_toy(tmp_path, "1,pink,2,0,1\n"))
    with pytest.raises(ValueError, match="line 9: attribute 'f3' expects a number; received 'x'"):
        mulan("toy", "train", data_dir=write_toy(tmp_path, "1,red,x,0,1\n"))
    with pytest.raises(ValueError, match="Labels \\['C'\\] named in .*toy.xml' are not attributes"):
        mulan("toy", "train", data_dir=write_toy(tmp_path, "1,red,2,0,1\n", labels=("A", "C")))
