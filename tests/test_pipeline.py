"""Tests of the tf.data image pipeline (`ssl_multilabel.data.make_dataset`).

References are independent of the code under test: PIL decodes the files, numpy computes
bilinear resizing and label arrays, and the partial-label table gives y and the weights.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ssl_multilabel.data import BadImageError, find_bad_images, make_dataset
from ssl_multilabel.labels import PartialLabels

SIZE = (12, 10)


# === Helpers ===


def _smooth_rgb(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth colour gradients plus a little noise: realistic for JPEG, distinct per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) * 127 / (height + width)], -1)
    return np.clip(base + rng.normal(0, 8, base.shape) + rng.integers(0, 60), 0, 255).astype(np.uint8)


def _pil_reference(path: str, channels: int, size: tuple[int, int]) -> np.ndarray:
    """PIL decode (first frame), PIL channel conversion, then tf.image.resize bilinear."""
    with Image.open(path) as image:
        image.seek(0)
        array = np.asarray(image.convert("RGB" if channels == 3 else "L"), dtype=np.float32)
    if channels == 1:
        array = array[..., None]
    return tf.image.resize(array, size, method="bilinear").numpy()


def _bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres, written out in numpy."""
    out = np.zeros((height, width, image.shape[2]), np.float64)
    for i in range(height):
        for j in range(width):
            y = min(max((i + 0.5) * image.shape[0] / height - 0.5, 0), image.shape[0] - 1)
            x = min(max((j + 0.5) * image.shape[1] / width - 0.5, 0), image.shape[1] - 1)
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            y1, x1 = min(y0 + 1, image.shape[0] - 1), min(x0 + 1, image.shape[1] - 1)
            fy, fx = y - y0, x - x0
            out[i, j] = (
                image[y0, x0] * (1 - fy) * (1 - fx) + image[y0, x1] * (1 - fy) * fx
                + image[y1, x0] * fy * (1 - fx) + image[y1, x1] * fy * fx
            )
    return out


def _collect(ds: tf.data.Dataset) -> list[np.ndarray]:
    """Concatenate every batch, per element position."""
    parts: list[list[np.ndarray]] = []
    for element in ds:
        element = element if isinstance(element, tuple) else (element,)
        if not parts:
            parts = [[] for _ in element]
        for store, tensor in zip(parts, element):
            store.append(tensor.numpy())
    return [np.concatenate(p) for p in parts]


def _labels(n: int, seed: int = 0) -> PartialLabels:
    """A partial table with unknown cells and some filled (propagated) cells of weight < 1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (n, 3)).astype(np.float32)
    y[rng.random(y.shape) < 0.4] = -1
    table = PartialLabels.from_array(y)
    fill = np.where(rng.random(y.shape) < 0.5, rng.random(y.shape), -1)
    return table.fill(fill, confidence=0.25, source="propagated")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> dict[str, str]:
    """One small file per format and mode, of different sizes; name -> path."""
    folder = tmp_path_factory.mktemp("images")
    specs = {  # name: (mode, format, (height, width))
        "rgb.png": ("RGB", "PNG", (9, 13)),
        "grey.png": ("L", "PNG", (16, 8)),
        "grey_alpha.png": ("LA", "PNG", (10, 10)),
        "rgba.png": ("RGBA", "PNG", (11, 7)),
        "palette.png": ("P", "PNG", (8, 9)),
        "rgb.jpg": ("RGB", "JPEG", (20, 18)),
        "grey.jpg": ("L", "JPEG", (15, 17)),
        "rgb.bmp": ("RGB", "BMP", (7, 12)),
        "grey.bmp": ("L", "BMP", (12, 10)),
        "rgba.bmp": ("RGBA", "BMP", (6, 5)),
        "still.gif": ("P", "GIF", (13, 11)),
    }
    paths = {}
    for seed, (name, (mode, fmt, (h, w))) in enumerate(specs.items()):
        rgb = Image.fromarray(_smooth_rgb(h, w, seed))
        image = rgb.convert(mode) if mode != "RGBA" else Image.merge("RGBA", (*rgb.split(), rgb.split()[0]))
        if mode == "LA":
            image = Image.merge("LA", (rgb.convert("L"), rgb.split()[1]))
        kwargs = {"quality": 90} if fmt == "JPEG" else {}
        image.save(folder / name, fmt, **kwargs)
        paths[name] = str(folder / name)
    # Animated GIF: the first frame must be used, not the second.
    first = Image.fromarray(_smooth_rgb(10, 14, 100)).convert("P")
    second = Image.fromarray(255 - _smooth_rgb(10, 14, 101)).convert("P")
    first.save(folder / "animated.gif", save_all=True, append_images=[second], duration=100)
    paths["animated.gif"] = str(folder / "animated.gif")
    return paths


# === Decoding, channels and resizing ===


@pytest.mark.parametrize("channels", [3, 1])
def test_every_format_matches_pil_decode_and_the_same_resize(image_folder, channels):
    names = sorted(image_folder)
    paths = [image_folder[name] for name in names]
    (x,) = _collect(make_dataset(paths, None, image_size=SIZE, channels=channels, batch_size=5))
    assert x.shape == (len(paths), *SIZE, channels) and x.dtype == np.float32
    for name, got in zip(names, x):
        want = _pil_reference(image_folder[name], channels, SIZE)
        # JPEGs too must match: both use the accurate integer IDCT. RGB -> grey: PIL rounds
        # the luma to an integer, we keep it in float.
        tol = 0.51 if channels == 1 else 1e-3
        np.testing.assert_allclose(got, want, atol=tol, err_msg=name)


def test_original_size_and_grey_default(image_folder):
    # Keeping the original size needs equal sizes; channels=None gives 1 for grey-only files.
    ds = make_dataset([image_folder["grey.png"]] * 2, batch_size=None)
    x = np.stack([image.numpy() for image in ds])  # unbatched: one image per element
    want = np.asarray(Image.open(image_folder["grey.png"]), np.float32)[..., None]
    assert x.shape == (2, 16, 8, 1)
    np.testing.assert_array_equal(x[1], want)
    (x,) = _collect(make_dataset([image_folder["grey.png"], image_folder["rgb.jpg"]], image_size=4))
    assert x.shape[-1] == 3


def test_jpeg_only_inputs_match_pil(image_folder):
    # All-JPEG inputs take a decode path without the format test: same pixels as PIL.
    paths = [image_folder["rgb.jpg"], image_folder["grey.jpg"]]
    (x,) = _collect(make_dataset(paths, image_size=SIZE, channels=3))
    for path, got in zip(paths, x):
        np.testing.assert_allclose(got, _pil_reference(path, 3, SIZE), atol=1e-3)


def test_resize_is_half_pixel_bilinear(image_folder):
    source = np.asarray(Image.open(image_folder["rgb.png"]), np.float64)  # 9 x 13
    for size in [(5, 7), (20, 17)]:  # down and up
        (x,) = _collect(make_dataset([image_folder["rgb.png"]], image_size=size, channels=3))
        np.testing.assert_allclose(x[0], _bilinear(source, *size), atol=1e-3)


def _exif_big_endian(orientation: int, long: bool = False) -> bytes:
    """A big-endian ("MM") EXIF block with one IFD entry, Orientation (PIL itself writes "II"), of
    type SHORT as the standard says, or LONG (4 bytes), as some writers store it."""
    value = orientation.to_bytes(4, "big") if long else orientation.to_bytes(2, "big") + bytes(2)
    entry = (0x0112).to_bytes(2, "big") + (4 if long else 3).to_bytes(2, "big") + (1).to_bytes(4, "big") + value
    return b"Exif\x00\x00MM\x00\x2a" + (8).to_bytes(4, "big") + (1).to_bytes(2, "big") + entry + bytes(4)


@pytest.fixture(scope="module")
def oriented_photos(tmp_path_factory) -> dict[str, str]:
    """14 x 22 photos saved with each EXIF orientation, as JPEG (little- and big-endian EXIF, the
    tag as a SHORT or a LONG) and as PNG (an eXIf chunk); name -> path."""
    folder = tmp_path_factory.mktemp("oriented")
    paths = {}
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        for name, fmt, block in ((f"o{orientation}.jpg", "JPEG", exif), (f"o{orientation}_mm.jpg", "JPEG",
                                 _exif_big_endian(orientation)), (f"o{orientation}_long.jpg", "JPEG",
                                 _exif_big_endian(orientation, long=True)), (f"o{orientation}.png", "PNG", exif)):
            photo = Image.fromarray(_smooth_rgb(14, 22, len(paths)))  # a different photo per file
            photo.save(folder / name, fmt, exif=block, **({"quality": 90} if fmt == "JPEG" else {}))
            paths[name] = str(folder / name)
    return paths


@pytest.mark.parametrize("check", ["fast", "full"])
def test_photos_are_turned_upright_by_their_exif_orientation_as_pil_does(oriented_photos, check):
    from PIL import ImageOps

    def upright(path: str) -> np.ndarray:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"), np.float32)

    for name, path in sorted(oriented_photos.items()):
        (x,) = _collect(make_dataset([path], image_size=None, channels=3, check=check))
        want = upright(path)
        assert want.shape[:2] == ((22, 14) if int(name[1]) >= 5 else (14, 22)), name  # PIL did turn it
        np.testing.assert_array_equal(x[0], want, err_msg=name)
    # Mixed orientations in one dataset, resized, shuffled, cached or not: every row is its own photo
    # upright (a one-hot label names the row).
    paths = [oriented_photos[n] for n in sorted(oriented_photos)]
    wanted = np.stack([tf.image.resize(upright(p), SIZE).numpy() for p in paths])
    for cache in (False, True):
        x, y = _collect(make_dataset(paths, PartialLabels.from_array(np.eye(len(paths))), image_size=SIZE,
                                     channels=3, shuffle=True, seed=1, cache=cache, check=check))
        assert sorted(y.argmax(1).tolist()) == list(range(len(paths)))
        np.testing.assert_allclose(x, wanted[y.argmax(1)], atol=1e-3)


@pytest.mark.parametrize("orientation", [1, 6])
def test_large_jpegs_are_decoded_at_a_reduced_scale_as_pil_draft_does(tmp_path, orientation):
    from PIL import ImageOps

    # 170 x 260 to 12 x 10: 170 // 12 = 14 and 260 // 10 = 26, so libjpeg's 1/8 scale (PIL's draft rule).
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = (260, 170) if orientation == 6 else (170, 260)  # upright 170 x 260 either way
    path = str(tmp_path / "big.jpg")
    Image.fromarray(_smooth_rgb(*stored, 3)).save(path, quality=90, exif=exif)

    def pil(draft: bool) -> np.ndarray:
        with Image.open(path) as image:
            if draft:  # the requested size in the stored orientation
                image.draft("RGB", (SIZE[1], SIZE[0]) if orientation == 1 else SIZE)
                assert max(image.size) == 260 // 8 + 1  # 33: PIL did take the 1/8 scale
            array = np.asarray(ImageOps.exif_transpose(image).convert("RGB"), np.float32)
        return tf.image.resize(array, SIZE, method="bilinear").numpy()

    (x,) = _collect(make_dataset([path], image_size=SIZE, channels=3))
    np.testing.assert_allclose(x[0], pil(draft=True), atol=1e-3)
    assert np.abs(pil(draft=False) - pil(draft=True)).max() > 1  # the full decode would differ
    # An output larger than half the photo (170 // 100 = 1): decoded in full.
    (x,) = _collect(make_dataset([path], image_size=(100, 150), channels=3))
    with Image.open(path) as image:
        full = np.asarray(ImageOps.exif_transpose(image).convert("RGB"), np.float32)
    np.testing.assert_allclose(x[0], tf.image.resize(full, (100, 150)).numpy(), atol=1e-3)


def test_arrays_keep_values_and_convert_channels():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (5, 6, 4), dtype=np.uint8)
    (x,) = _collect(make_dataset(grey, batch_size=2))
    assert x.shape == (5, 6, 4, 1)
    np.testing.assert_array_equal(x[..., 0], grey)
    (x,) = _collect(make_dataset(grey, channels=3, batch_size=2))
    np.testing.assert_array_equal(x, np.repeat(grey[..., None], 3, axis=-1))
    rgba = rng.integers(0, 256, (3, 4, 4, 4), dtype=np.uint8)
    (x,) = _collect(make_dataset(rgba))  # alpha dropped, 3 channels by default
    np.testing.assert_array_equal(x, rgba[..., :3])
    (x,) = _collect(make_dataset(rgba, channels=1))
    luma = rgba[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(x[..., 0], luma, atol=1e-3)


# === Labels, weights, order ===


@pytest.mark.parametrize("shape", [(40, 6, 6, 1), (40, 5)])
def test_an_array_with_nan_or_inf_is_refused_naming_a_row(shape):
    x = np.random.default_rng(0).normal(60, 20, shape).astype(np.float32)
    x[7].flat[3], x[31].flat[0] = np.nan, -np.inf
    bad = [i for i in range(len(x)) if not np.isfinite(x[i]).all()]  # the reference: numpy, row by row
    with pytest.raises(ValueError, match=rf"NaN or inf values in {len(bad)} of 40 rows, e\.g\. row {bad[0]};"):
        make_dataset(x, image_size=None, channels=None) if len(shape) == 2 else make_dataset(x)
    for i in bad:
        x[i] = 1.0
    make_dataset(x, image_size=None, channels=None) if len(shape) == 2 else make_dataset(x)  # finite: accepted


def test_float_images_scaled_to_one_get_a_warning(caplog):
    x = np.random.default_rng(0).random((10, 6, 6, 1)).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="ssl_multilabel.data.pipeline"):
        make_dataset(x)
        make_dataset(x * 255)
        make_dataset(x[:, :, :, 0].reshape(10, -1), image_size=None, channels=None)  # feature vectors: no warning
    said = [r.getMessage() for r in caplog.records if "expect pixel values in [0, 255]" in r.getMessage()]
    assert said == [f"`images` are floats no larger than {x.max():.3g}: the models expect pixel values in [0, 255] "
                    "(they rescale them), so images scaled to [0, 1] train on near-constant inputs; multiply them by 255."]


def test_an_integer_array_above_255_is_refused_naming_its_dtype_and_largest_value(tmp_path):
    """16-bit pixels as PIL loads them (0..65535) saturated the models silently; as a file the same
    image is read at its high byte. An integer array within [0, 255] is fine whatever its dtype."""
    ramp = (np.arange(64, dtype=np.uint16).reshape(1, 8, 8) * 1024 + 1023)  # 1023 .. 65535
    with pytest.raises(ValueError, match=r"`images` are uint16 with values up to 65535; expected pixels in \[0, 255\]"):
        make_dataset(ramp)
    (x,) = _collect(make_dataset((ramp // 256).astype(np.uint16)))  # the documented scaling
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp[0].astype(np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")  # a 16-bit PNG
    (from_file,) = _collect(make_dataset([str(path)], channels=1))
    np.testing.assert_array_equal(x[..., 0], ramp // 256)
    np.testing.assert_array_equal(from_file, x)


def test_report_thumbnails_of_16_bit_photos_are_what_the_model_sees(tmp_path):
    """The Evaluate step's thumbnails went through PIL's convert("RGB"), which clips 16-bit values
    at 255: a mid-grey X-ray showed as a white square. They are decoded as the model's input is."""
    from types import SimpleNamespace

    from ssl_multilabel.recipes.steps import _example_images

    path = tmp_path / "grey16.png"
    Image.fromarray(np.full((12, 10), 32768, np.uint16)).save(path)
    thumbs = _example_images([str(path)], SimpleNamespace(image_size=(6, 5)))
    assert thumbs.shape == (1, 6, 5, 3) and thumbs.dtype == np.uint8
    assert (thumbs == 32768 // 256).all()  # 128, mid-grey


def test_y_has_minus_one_in_unknown_cells_and_weights_follow(image_folder):
    paths = [image_folder[name] for name in sorted(image_folder)]
    labels = _labels(len(paths))
    x, y, w = _collect(make_dataset(paths, labels, image_size=SIZE, batch_size=4, with_weights=True))
    np.testing.assert_array_equal(y, np.where(labels.known, labels.values, -1))
    np.testing.assert_array_equal(w, labels.weight)
    assert (y == -1).any() and set(np.unique(w)) == {0.0, 0.25, 1.0}
    # An (n, L) array with -1 for unknown works as labels too.
    _, y2 = _collect(make_dataset(paths, labels.to_array(), image_size=SIZE))
    np.testing.assert_array_equal(y2, y)


def _indexed(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Images whose pixels all equal their row index, and labels that encode it too."""
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None], (n, 3, 2)).copy()
    y = ((np.arange(n)[:, None] >> np.arange(6)) & 1).astype(np.float32)  # the index in binary
    return images, y


def _order(ds: tf.data.Dataset) -> np.ndarray:
    x, y = _collect(ds)
    index = x[:, 0, 0, 0].astype(int)
    np.testing.assert_array_equal(y, ((index[:, None] >> np.arange(6)) & 1))  # rows stay aligned
    return index


@pytest.mark.parametrize("cache", [False, True])
def test_seeded_shuffle_is_reproducible_and_keeps_rows_aligned(cache):
    images, y = _indexed()
    kw = dict(batch_size=7, shuffle=True, cache=cache)
    ds = make_dataset(images, y, seed=3, **kw)
    first, second = _order(ds), _order(ds)
    assert sorted(first) == list(range(40)) and sorted(second) == list(range(40))
    assert not np.array_equal(first, second)  # reshuffled at every pass
    again = make_dataset(images, y, seed=3, **kw)
    np.testing.assert_array_equal(_order(again), first)
    np.testing.assert_array_equal(_order(again), second)
    assert not np.array_equal(_order(make_dataset(images, y, seed=4, **kw)), first)
    np.testing.assert_array_equal(_order(make_dataset(images, y, batch_size=7, cache=cache)), np.arange(40))


def test_augment_runs_after_the_cache_at_every_pass(image_folder):
    images, y = _indexed(8)
    (x,) = _collect(make_dataset(images, augment=lambda x: 255.0 - x))
    np.testing.assert_array_equal(x[:, 0, 0, 0], 255 - np.arange(8))
    # Count the calls instead of comparing random draws: a global seed set by another test makes
    # an unseeded random op repeat itself on every pass, which would hide a cached augmentation.
    calls = []

    def counting(x):
        out = tf.py_function(lambda t: calls.append(1) or t, [x], tf.float32)
        out.set_shape(x.shape)
        return out

    ds = make_dataset(images, y, cache=True, augment=counting)
    first, second = _collect(ds)[0], _collect(ds)[0]
    assert len(calls) == 2 * len(images)  # every image augmented at every pass, none from the cache
    np.testing.assert_array_equal(first, second)


def test_file_cache_matches_and_is_keyed_by_options(image_folder, tmp_path):
    paths = [image_folder["rgb.jpg"], image_folder["rgb.png"]]
    plain = _collect(make_dataset(paths, image_size=SIZE, channels=3))[0]
    prefix = tmp_path / "cache" / "imgs"
    for _ in range(2):  # the second build reads the cache written by the first
        ds = make_dataset(paths, image_size=SIZE, channels=3, cache=prefix)
        np.testing.assert_array_equal(_collect(ds)[0], plain)
    _collect(make_dataset(paths, image_size=(6, 6), channels=3, cache=prefix))
    indexes = {f.split(".")[0] for f in os.listdir(prefix.parent) if f.endswith(".index")}
    assert len(indexes) == 2  # other options, other cache: a stale cache is never read back


def test_unlabeled_batches_and_drop_remainder():
    images, _ = _indexed(10)
    ds = make_dataset(images, None, batch_size=4, drop_remainder=True)
    assert isinstance(ds.element_spec, tf.TensorSpec)
    assert [int(x.shape[0]) for x in ds] == [4, 4]


# === Bad files ===


@pytest.fixture()
def bad_folder(tmp_path, image_folder) -> tuple[list[str], dict[int, str]]:
    """Good files mixed with bad ones; returns paths and {index: expected words of the reason}."""
    good = [image_folder["rgb.jpg"], image_folder["rgb.png"], image_folder["still.gif"]]
    raw = open(image_folder["rgb.jpg"], "rb").read()
    (tmp_path / "truncated.jpg").write_bytes(raw[: len(raw) // 2])
    png = open(image_folder["rgb.png"], "rb").read()
    (tmp_path / "truncated.png").write_bytes(png[: len(png) - 30])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "page.jpg").write_text("<html>not an image</html>")
    Image.fromarray(_smooth_rgb(5, 5, 0)).save(tmp_path / "scan.tiff")
    Image.fromarray(_smooth_rgb(5, 5, 0)).convert("P").save(tmp_path / "palette.bmp")
    # An iPhone photo: an ISO box "ftyp" with the HEIF brand "heic" (then image boxes PIL cannot read).
    (tmp_path / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    paths = [
        good[0], str(tmp_path / "missing.jpg"), str(tmp_path / "truncated.jpg"), good[1],
        str(tmp_path / "empty.png"), str(tmp_path / "page.jpg"), str(tmp_path / "scan.tiff"),
        str(tmp_path / "palette.bmp"), str(tmp_path / "truncated.png"), good[2], str(tmp_path / "IMG_0001.HEIC"),
    ]
    expected = {1: "not found", 2: "truncated", 4: "", 5: "not a recognised", 6: "unsupported format TIFF",
                7: "palette", 8: "", 10: "HEIC/HEIF or AVIF photo; TensorFlow cannot decode"}
    return paths, expected


@pytest.mark.parametrize("check", ["fast", "full"])
def test_bad_files_are_all_named_before_any_batch(bad_folder, check):
    paths, expected = bad_folder
    with pytest.raises(BadImageError, match=r"8 of 11 image files cannot be used") as info:
        make_dataset(paths, _labels(len(paths)), image_size=SIZE, check=check)
    found = {bad.index: bad for bad in info.value.bad_images}
    assert sorted(found) == sorted(expected)
    for index, words in expected.items():
        assert found[index].path == paths[index] and words in found[index].reason
        assert paths[index] in str(info.value)
    assert [b.index for b in find_bad_images(paths, check=check)] == sorted(expected)


def _jpeg_segment(raw: bytes, marker: int) -> int:
    """The offset of the first segment with `marker` in a JPEG (brute force over the bytes)."""
    i = 2
    while raw[i + 1] != marker:
        i += 2 + int.from_bytes(raw[i + 2 : i + 4], "big")
    return i


def test_jpegs_with_a_damaged_table_or_an_unsupported_frame_are_named_before_training(tmp_path):
    """One flipped byte in a JPEG's tables (a damaged card) passed the header check, then stopped
    training with a TensorFlow decoder error that named no file. Reference: TensorFlow's own
    decoder refuses each damaged copy and reads the intact one; the intact photo stays on the
    fast path (no full decode)."""
    import tensorflow as tf

    from ssl_multilabel.data.pipeline import _intact_jpeg_shape

    Image.fromarray(_smooth_rgb(40, 56, 3)).save(tmp_path / "ok.jpg", quality=90)
    raw = (tmp_path / "ok.jpg").read_bytes()
    damaged = {}
    dht = _jpeg_segment(raw, 0xC4)  # the first Huffman table: 16 code counts after the class byte
    damaged["huffman"] = (dht + 5 + 1, 0xFF)  # 255 codes of length 2: more than the lengths allow
    damaged["quantisation"] = (_jpeg_segment(raw, 0xDB) + 4, 0x07)  # table id 7 (at most 3)
    sof = _jpeg_segment(raw, 0xC0)
    damaged["precision"] = (sof + 4, 12)  # 12-bit samples
    damaged["scan"] = (_jpeg_segment(raw, 0xDA) + 5, 9)  # the scan names component 9, not in the frame
    paths = [str(tmp_path / "ok.jpg")]
    for name, (offset, value) in damaged.items():
        data = bytearray(raw)
        data[offset] = value
        (tmp_path / f"{name}.jpg").write_bytes(bytes(data))
        paths.append(str(tmp_path / f"{name}.jpg"))
    for path in paths[1:]:
        with pytest.raises(tf.errors.InvalidArgumentError):
            tf.io.decode_jpeg(tf.io.read_file(path))
    assert tf.io.decode_jpeg(tf.io.read_file(paths[0])).shape == (40, 56, 3)
    assert _intact_jpeg_shape(paths[0]) is not None
    assert [bad.path for bad in find_bad_images(paths)] == paths[1:]
    with pytest.raises(BadImageError, match=r"(?s)4 of 5 image files cannot be used.*huffman\.jpg"):
        make_dataset(paths, _labels(len(paths)), image_size=SIZE)


def test_skip_drops_bad_files_with_their_label_rows(bad_folder, caplog):
    paths, expected = bad_folder
    labels = _labels(len(paths), seed=1)
    with caplog.at_level(logging.WARNING, logger="ssl_multilabel.data.pipeline"):
        ds = make_dataset(paths, labels, image_size=SIZE, channels=3, on_bad_image="skip", with_weights=True)
    keep = [i for i in range(len(paths)) if i not in expected]
    x, y, w = _collect(ds)
    np.testing.assert_array_equal(y, labels.subset(keep).to_array())
    np.testing.assert_array_equal(w, labels.subset(keep).weight)
    for row, i in enumerate(keep):
        np.testing.assert_allclose(x[row], _pil_reference(paths[i], 3, SIZE), atol=1e-3)
    assert [b.path for b in ds.bad_images] == [paths[i] for i in sorted(expected)]
    assert "Skipping 8 of 11" in caplog.text and paths[1] in caplog.text


def test_a_file_changed_after_a_check_is_checked_again(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(_smooth_rgb(6, 6, 0)).save(path)
    make_dataset([str(path)], image_size=SIZE)
    path.write_bytes(b"garbage, longer than nothing")
    with pytest.raises(BadImageError, match="a.png"):
        make_dataset([str(path)], image_size=SIZE)


# === Argument errors ===


def test_argument_errors(image_folder, tmp_path):
    paths = [image_folder["rgb.png"], image_folder["grey.png"]]
    with pytest.raises(ValueError, match=r"`images` has 2 entries but `labels` has 3 rows"):
        make_dataset(paths, _labels(3))
    with pytest.raises(ValueError, match=r"2 different \(height, width\) sizes.*image_size"):
        make_dataset(paths)
    with pytest.raises(ValueError, match=r"argument `on_bad_image`.*Received: on_bad_image='ignore'"):
        make_dataset(paths, on_bad_image="ignore")
    with pytest.raises(ValueError, match=r"argument `channels`.*Received: channels=4"):
        make_dataset(paths, channels=4)
    with pytest.raises(ValueError, match=r"argument `image_size`.*Received: image_size=\(0, 5\)"):
        make_dataset(paths, image_size=(0, 5))
    with pytest.raises(ValueError, match="with_weights=True` needs `labels`"):
        make_dataset(paths, image_size=4, with_weights=True)
    with pytest.raises(ValueError, match=r"shape \(n, H, W\) or \(n, H, W, C\).*\(n, d\).*\(2, 3, 4, 5, 6\)"):
        make_dataset(np.zeros((2, 3, 4, 5, 6)))
    with pytest.raises(ValueError, match=r"\(2, 3\) are feature vectors: pass image_size=None"):
        make_dataset(np.zeros((2, 3)), image_size=4)
    with pytest.raises(TypeError, match="single path"):
        make_dataset(image_folder["rgb.png"])
    with pytest.raises(TypeError, match="entry 1 is a ndarray"):
        make_dataset([image_folder["rgb.png"], np.zeros((3, 3))])
    with pytest.raises(ValueError, match=r"argument `interpolation`.*Received: interpolation='linear'"):
        make_dataset(paths, image_size=4, interpolation="linear")


def test_16_bit_pngs_of_12_bit_data_get_a_warning(tmp_path, caplog):
    """12-bit data (0..4095) in 16-bit PNGs is read at its high byte: at most 15 of 255, near black.
    Full-range 16-bit PNGs and 8-bit ones are fine and get no warning."""
    from ssl_multilabel.data.pipeline import usable_images

    paths = []
    for name, values in (("ct12.png", np.arange(64).reshape(8, 8) * 64), ("full16.png", np.arange(64).reshape(8, 8) * 1024),
                         ("eight.png", np.arange(64).reshape(8, 8) * 4)):
        path = tmp_path / name
        Image.fromarray(values.astype(np.uint16 if "16" in name or "12" in name else np.uint8)).save(path)
        paths.append(str(path))
    (x,) = _collect(make_dataset([paths[0]], channels=1))
    assert x.max() == 4032 // 256  # 15: what the warning says
    kwargs = dict(on_bad_image="error", name=lambda b: b.path, source="images", skipped="images", hint="skip them")
    with caplog.at_level(logging.WARNING, logger="ssl_multilabel.data.pipeline"):
        usable_images(paths[1:], **kwargs)
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        usable_images(paths, **kwargs)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1 and said[0].startswith("1 of the 2 16-bit PNGs read (of 2) hold values below 4096")
    assert "e.g. ct12.png, largest 4032" in said[0] and "at most 15 of 255" in said[0]


def test_file_names_that_are_no_utf8_are_read(tmp_path):
    """A name from a Windows zip unpacked on Linux (byte 0xE9, Latin-1 'é') stopped training and
    `predict` with "Error converting unicode string" naming no file. Reference: PIL reads the same
    file through its file-system name."""
    import os

    folder = os.fsencode(str(tmp_path)) + b"/caf\xe9"
    os.mkdir(folder)
    name = folder + b"/\xffphoto.png"
    image = _smooth_rgb(12, 16, 5)
    Image.fromarray(image).save(name.decode("utf-8", "surrogateescape"), format="PNG")
    path = os.fsdecode(name)  # how os.listdir names it in Python: with surrogate escapes
    assert find_bad_images([path]) == []
    ds = make_dataset([path], _labels(1), image_size=None, channels=3, batch_size=1)
    batch = next(iter(ds))[0].numpy()
    np.testing.assert_array_equal(batch[0], np.asarray(Image.open(path).convert("RGB"), np.float32))
