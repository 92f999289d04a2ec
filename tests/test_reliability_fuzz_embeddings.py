"""Issue 17, acceptance 2: a Hypothesis fuzzer of `load_embeddings` (recipes.data).

Generated files: random bytes, `.npy` arrays of every dtype kind and shape (object arrays, NaN,
inf, values beyond float32), truncated or bit-flipped `.npy` files, `.npz` archives and empty
files. The only allowed outcomes are a correct float32 `(n, d)` array or a `ValueError` /
`FileNotFoundError` whose message names the file.

CI runs `FUZZ_EXAMPLES` examples (default 100). The dedicated run:

    FUZZ_EXAMPLES=1000 python -m pytest -q tests/test_reliability_fuzz_embeddings.py
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ssl_multilabel.recipes.data import load_embeddings  # noqa: E402

N_ROWS = 4
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))

_DTYPES = ["float16", "float32", "float64", "int8", "int64", "uint8", "bool", "complex64", "object", "U3", "V4"]
_SPECIAL = [0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 1e39, -1e300, 3e38, 1e-45]


@st.composite
def _arrays(draw) -> np.ndarray:
    dtype = draw(st.sampled_from(_DTYPES + ["float32", "float64", "int64"] * 3))
    ndim = draw(st.sampled_from([2, 2, 2, 0, 1, 3]))
    # Mostly the right number of rows, so the value checks are reached.
    shape = tuple(draw(st.sampled_from([N_ROWS] * 3 + [0, 1, 5])) if i == 0 else draw(st.sampled_from([1, 2, 3, 0]))
                  for i in range(ndim))
    size = int(np.prod(shape))
    # Mostly ordinary numbers, so that whole arrays are often valid; now and then an edge value.
    ordinary = st.floats(-1e6, 1e6)
    edge = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.sampled_from(_SPECIAL))
    element = st.one_of(ordinary, ordinary, ordinary, edge) if draw(st.booleans()) else ordinary
    values = draw(st.lists(element, min_size=size, max_size=size))
    base = np.array(values, dtype=np.float64).reshape(shape)
    if dtype == "object":
        return base.astype(object)
    if dtype in ("U3", "V4"):
        return np.zeros(shape, dtype=dtype)
    with np.errstate(all="ignore"):
        if np.dtype(dtype).kind in "iub":
            return np.nan_to_num(base, nan=0.0, posinf=0.0, neginf=0.0).clip(-100, 100).astype(dtype)
        return base.astype(dtype)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


@st.composite
def _files(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["array", "array", "array", "truncated", "flipped", "random", "npz", "empty"]))
    if kind == "random":
        return kind, draw(st.binary(max_size=300))
    if kind == "empty":
        return kind, b""
    if kind == "npz":
        buffer = io.BytesIO()
        np.savez(buffer, a=draw(_arrays()))
        return kind, buffer.getvalue()
    data = _npy_bytes(draw(_arrays()))
    if kind == "truncated":
        return kind, data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    if kind == "flipped":
        position = draw(st.integers(0, len(data) - 1))
        return kind, data[:position] + bytes([data[position] ^ draw(st.integers(1, 255))]) + data[position + 1:]
    return kind, data


def _reference(data: bytes) -> np.ndarray | None:
    """What a correct loader returns for these bytes, computed independently: the stored array if
    it is a real `(N_ROWS, d >= 1)` array whose values are finite in float32, else None."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception:
        return None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "iuf":
        return None
    if array.ndim != 2 or array.shape[0] != N_ROWS or array.shape[1] == 0:
        return None
    with np.errstate(all="ignore"):
        converted = array.astype(np.float32)
    return converted if np.isfinite(converted).all() else None


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_files(), st.sampled_from(["emb.npy", "emb.npz", "features.bin"]))
def test_load_embeddings_returns_the_array_or_names_the_file(file, name):
    kind, data = file
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        expected = _reference(data)
        try:
            loaded = load_embeddings(path, N_ROWS, rows_of="labels.csv")
        except (ValueError, FileNotFoundError) as err:
            event(f"{kind}: error")
            assert str(path) in str(err), (kind, str(err))
            assert expected is None, (kind, str(err))
            return
        event(f"{kind}: array")
        assert expected is not None, kind
        assert loaded.dtype == np.float32 and loaded.shape == expected.shape
        np.testing.assert_array_equal(loaded, expected)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Embeddings file '.*nope\.npy' does not exist"):
        load_embeddings(tmp_path / "nope.npy", N_ROWS, rows_of="labels.csv")


def test_a_header_declaring_a_huge_array_is_refused_without_allocating_it(tmp_path):
    path = tmp_path / "huge.npy"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((N_ROWS, 1), np.float32))
    header["shape"] = (N_ROWS, 10**12)
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(b"\0" * 64)
    with pytest.raises(ValueError, match=r"Embeddings file '.*huge\.npy' is not a readable \.npy array"):
        load_embeddings(path, N_ROWS, rows_of="labels.csv")
