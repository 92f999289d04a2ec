"""The tf.data image pipeline: image files or arrays plus a `PartialLabels` -> `(x, y[, w])` batches.

`make_dataset` is the one builder. It checks every file *before* the first batch (a missing or
undecodable file is an error that names it, or is dropped and listed with `on_bad_image="skip"`),
then decodes JPEG/PNG/BMP/GIF (and WebP where TensorFlow can) in a parallel `AUTOTUNE` map
(`tf.io.decode_image`, first frame of an animated GIF; JPEGs with `decode_jpeg` and the accurate
IDCT, so pixels equal PIL's), converts any channel count to the requested one, resizes, and
optionally caches, shuffles (seeded), augments, batches and prefetches.

Output convention (see docs/design.md):
- `x` float32 `(batch, height, width, channels)` with pixel values in **[0, 255]** (not rescaled):
  `keras.applications` preprocessing functions expect that range, and the models rescale inside.
- `y` float32 `(batch, n_labels)`, the boundary encoding: `-1` in unknown cells.
- `w` float32 `(batch, n_labels)` (with `with_weights=True`): the per-cell confidence
  (`PartialLabels.weight`, `0` for unknown cells).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import numbers
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import tensorflow as tf

from ssl_multilabel.errors import HEIF_ADVICE
from ssl_multilabel.labels import PartialLabels, Source

__all__ = ["BadImage", "BadImageError", "find_bad_images", "make_dataset", "mixed_dataset"]

logger = logging.getLogger(__name__)

# WebP where this TensorFlow decodes it (`tf.io.decode_image` with `tf.io.decode_webp`).
SUPPORTED_FORMATS = ("JPEG", "PNG", "BMP", "GIF") + (("WEBP",) if hasattr(tf.io, "decode_webp") else ())
_CHECKS = ("fast", "full")
_ON_BAD = ("error", "skip")
# ITU-R 601-2 luma, the weights PIL uses for RGB -> L (they sum to exactly 1).
_LUMA = (0.299, 0.587, 0.114)
_MAX_LISTED = 20
# ISO base media brands of HEIF / AVIF stills (bytes 8-12 of the file, after "ftyp").
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"})
# Default cap on the pixels an image file may declare (PIL's decompression-bomb threshold,
# Image.MAX_IMAGE_PIXELS): a 48 KB PNG can declare 20,000 x 20,000 pixels and cost gigabytes.
DEFAULT_MAX_PIXELS = 89_478_485
_INTERPOLATIONS = ("bilinear", "nearest", "area", "bicubic", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")


# === Bad files ===


@dataclass(frozen=True)
class BadImage:
    """A file that cannot be used: its position in the input, its path and why."""

    index: int
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path} (input row {self.index}): {self.reason}"


class BadImageError(ValueError):
    """Raised by `make_dataset` (default `on_bad_image="error"`) when some files are missing or
    undecodable; `.bad_images` lists all of them as `BadImage` records."""

    def __init__(self, bad_images: Sequence[BadImage], n_total: int) -> None:
        self.bad_images = tuple(bad_images)
        shown = "\n".join(f"  {bad}" for bad in self.bad_images[:_MAX_LISTED])
        more = len(self.bad_images) - _MAX_LISTED
        if more > 0:
            shown += f"\n  ... and {more} more (see the `bad_images` attribute of this error)"
        super().__init__(
            f"{len(self.bad_images)} of {n_total} image files cannot be used:\n{shown}\n"
            "Fix or remove them, or pass on_bad_image='skip' to drop them (and their label rows)."
        )


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _pil_problem(path: str) -> str | None:
    """Why PIL finds the file unusable, or None; only called for files that already look bad
    (or for 8-bit BMPs), to give a precise reason."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            fmt, mode = image.format, image.mode
            if fmt not in SUPPORTED_FORMATS:
                return f"unsupported format {fmt} (expected one of {', '.join(SUPPORTED_FORMATS)})"
            # TensorFlow's BMP decoder reads 8-bit BMPs as grey levels: a colour palette would be
            # silently returned as palette indices, so such files are refused.
            if fmt == "BMP" and mode in ("P", "1"):
                return f"{mode}-mode (palette / 1-bit) BMP is not supported by TensorFlow; save it as 24-bit RGB"
            image.load()
    except UnidentifiedImageError:
        brand = _magic(path, 12)[4:12]
        if brand[:4] == b"ftyp" and brand[4:] in _HEIF_BRANDS:
            return f"a HEIC/HEIF or AVIF photo; {HEIF_ADVICE}"
        return "not a recognised image file"
    except Exception as error:  # PIL raises many types for corrupt files
        return f"corrupt or truncated image ({type(error).__name__}: {error})"
    return None


def _decode_raw(contents: tf.Tensor, all_jpeg: bool = False, scale: tf.Tensor | None = None) -> tf.Tensor:
    """uint8 `(h, w, c)` with the file's own channel count (first frame of an animated GIF).

    JPEGs are decoded with the accurate integer IDCT, as PIL does by default, so training
    pixels equal the ones PIL gives at inference time; `decode_image` would use the fast IDCT,
    which differs by up to 3 levels. `all_jpeg` (known from the check) skips the format test.
    `scale` (0-3): a JPEG is decoded at 1 / 2**scale of its size by libjpeg's DCT scaling
    (`_jpeg_scale`), as PIL's `draft` does; other formats ignore it.
    """
    def jpeg() -> tf.Tensor:
        if scale is None:
            return tf.io.decode_jpeg(contents, channels=0, dct_method="INTEGER_ACCURATE")
        return tf.switch_case(scale, [
            functools.partial(tf.io.decode_jpeg, contents, channels=0, ratio=2**k, dct_method="INTEGER_ACCURATE")
            for k in range(4)])

    if all_jpeg:
        return jpeg()
    return tf.cond(
        tf.io.is_jpeg(contents),
        jpeg,
        lambda: tf.io.decode_image(contents, channels=0, dtype=tf.uint8, expand_animations=False),
    )


def _jpeg_scale(height: int, width: int, size: tuple[int, int] | None) -> int:
    """`k` such that a JPEG decoded at 1 / 2**k of `(height, width)` (k <= 3, libjpeg's DCT scaling)
    is still at least `size`: PIL's `draft(mode, size)` rule. A 12-megapixel phone photo bound for
    224 px is then decoded at 1/8: the decode is about 2x faster, the steps after it touch 64x fewer
    pixels, and the bilinear resize no longer skips most of them."""
    if size is None:
        return 0
    ratio = min(height // size[0], width // size[1])
    return 3 if ratio >= 8 else 2 if ratio >= 4 else 1 if ratio >= 2 else 0


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); not DHT/JPG/DAC.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_HEAD_BYTES = 1 << 16


def _intact_jpeg_shape(path: str) -> tuple[int, int, int, bool, int] | None:
    """`(h, w, components, True, orientation)` of a JPEG whose header parses and that ends with the
    end-of-image marker, else None (not a JPEG, damaged, or unusual: such files are then decoded in
    full). `h, w` are the size once the EXIF orientation is applied (`_exif_orientation`).

    A JPEG decoder fails on a bad header or on missing data; this rules out both without
    decoding any pixel, in plain Python (a few microseconds per file, versus a decode).
    """
    with open(path, "rb") as handle:
        head = handle.read(_JPEG_HEAD_BYTES)
        if head[:3] != b"\xff\xd8\xff":
            return None
        handle.seek(-2, os.SEEK_END)
        if handle.read(2) != b"\xff\xd9" or not _jpeg_tables_ok(handle):
            return None
    frame = _jpeg_frame(head)
    if frame is None:
        return None
    height, width, components = frame
    if not (height and width and components in (1, 3)):
        return None
    orientation = _exif_orientation(head)
    return _oriented(height, width, orientation) + (components, True, orientation)


def _jpeg_tables_ok(handle: Any) -> bool:
    """Whether the segments of an open JPEG up to its first scan are ones an 8-bit decoder reads:
    a baseline, extended or progressive frame of 8-bit samples; well-formed quantisation tables;
    Huffman tables whose codes fit their lengths (the check libjpeg makes); a scan header naming
    the frame's components. One flipped byte in a table (a damaged card) used to pass the check,
    then stop training with a decoder error naming no file. Anything else (12-bit, lossless,
    arithmetic coding, a damaged table) is False: such a file is then decoded in full.
    """
    offset, frame_ids = 2, None
    while True:
        handle.seek(offset)
        marker_bytes = handle.read(4)
        if len(marker_bytes) < 4 or marker_bytes[0] != 0xFF:
            return False
        marker = marker_bytes[1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        length = struct.unpack(">H", marker_bytes[2:])[0]
        if length < 2:
            return False
        if marker not in (0xC0, 0xC1, 0xC2, 0xC4, 0xDA, 0xDB) and marker in _SOF_MARKERS | {0xCC}:
            return False  # lossless, hierarchical or arithmetic coding: left to the decoder
        if marker in (0xC0, 0xC1, 0xC2, 0xC4, 0xDA, 0xDB):
            body = handle.read(length - 2)
            if len(body) != length - 2:
                return False
            if marker in (0xC0, 0xC1, 0xC2):
                n = body[5] if len(body) > 5 else 0
                if body[0] != 8 or n not in (1, 3) or len(body) != 6 + 3 * n:
                    return False
                if any(not (1 <= body[7 + 3 * c] >> 4 <= 4 and 1 <= body[7 + 3 * c] & 15 <= 4)
                       or body[8 + 3 * c] > 3 for c in range(n)):
                    return False
                frame_ids = {body[6 + 3 * c] for c in range(n)}
            elif marker == 0xDB and not _dqt_ok(body):
                return False
            elif marker == 0xC4 and not _dht_ok(body):
                return False
            elif marker == 0xDA:
                n = body[0] if body else 0
                return (frame_ids is not None and 1 <= n <= 4 and len(body) == 4 + 2 * n
                        and all(body[1 + 2 * c] in frame_ids for c in range(n)))
        offset += 2 + length


def _dqt_ok(body: bytes) -> bool:
    i = 0
    while i < len(body):
        precision, table = body[i] >> 4, body[i] & 15
        if precision > 1 or table > 3:
            return False
        i += 1 + 64 * (precision + 1)
    return i == len(body)


def _dht_ok(body: bytes) -> bool:
    i = 0
    while i < len(body):
        if i + 17 > len(body):
            return False
        kind, table = body[i] >> 4, body[i] & 15
        counts = body[i + 1 : i + 17]
        total = sum(counts)
        if kind > 1 or table > 3 or total > 256 or i + 17 + total > len(body):
            return False
        if kind == 0 and any(symbol > 15 for symbol in body[i + 17 : i + 17 + total]):
            return False  # a DC table codes bit counts 0-15
        code = 0
        for size, count in enumerate(counts, start=1):  # canonical codes must fit their lengths
            code += count
            if count and code >= 1 << size:
                return False
            code <<= 1
        i += 17 + total
    return i == len(body)


def _jpeg_segments(head: bytes):
    """`(marker, offset, length)` of each marker segment of a JPEG's first bytes, in order, after the
    start-of-image marker (fill bytes skipped); stops where the bytes end or stop looking like markers."""
    i = 2
    while i + 4 <= len(head) and head[i] == 0xFF:
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = struct.unpack(">H", head[i + 2 : i + 4])[0]
        yield marker, i, length
        i += 2 + length


def _jpeg_frame(head: bytes) -> tuple[int, int, int] | None:
    """`(height, width, components)` from the start-of-frame marker of a JPEG's first bytes."""
    for marker, i, _ in _jpeg_segments(head):
        if marker in _SOF_MARKERS:
            if i + 9 >= len(head):
                return None
            height, width = struct.unpack(">HH", head[i + 5 : i + 9])
            return height, width, head[i + 9]
    return None


def _exif_orientation(head: bytes) -> int:
    """The EXIF Orientation tag (1-8) of a JPEG from its first bytes; 1 (as stored) when it has none.

    Cameras and phones store a photo as the sensor saw it and record in this tag how to turn it
    upright; TensorFlow's decoders ignore the tag, PIL's `ImageOps.exif_transpose` applies it.
    """
    for marker, i, length in _jpeg_segments(head):
        if marker in _SOF_MARKERS or marker == 0xDA:  # the Exif segment comes before the image data
            return 1
        if marker == 0xE1 and head[i + 4 : i + 10] == b"Exif\x00\x00":
            return _tiff_orientation(head[i + 10 : i + 2 + length])
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    """The Orientation tag (0x0112) of the first IFD of a TIFF-format EXIF block, or 1."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    ifd = struct.unpack(order + "I", tiff[4:8])[0]
    if ifd + 2 > len(tiff):
        return 1
    for k in range(struct.unpack(order + "H", tiff[ifd : ifd + 2])[0]):
        entry = tiff[ifd + 2 + 12 * k : ifd + 14 + 12 * k]
        if len(entry) < 12:
            return 1
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag == 0x0112:
            # 3: SHORT, as the standard says; 4: LONG, as some writers store it (PIL reads both)
            value = struct.unpack(order + {3: "H", 4: "I"}[kind], entry[8:10 if kind == 3 else 12])[0] \
                if kind in (3, 4) else 1
            return value if 1 <= value <= 8 else 1
    return 1


def _pil_orientation(path: str) -> int:
    """The EXIF orientation (1-8) PIL reads from any format (PNG eXIf, WebP EXIF chunks); 1 if none."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            value = image.getexif().get(0x0112, 1)
    except Exception:  # the decoder already accepted the file; a bad EXIF block means "as stored"
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _oriented(height: int, width: int, orientation: int) -> tuple[int, int]:
    """`(height, width)` once the orientation is applied: 5-8 turn the image a quarter."""
    return (width, height) if orientation >= 5 else (height, width)


def _declared_size(path: str) -> tuple[int, int] | None:
    """`(height, width)` that a JPEG, PNG, GIF or BMP header declares, read without decoding
    (None for other or damaged headers: the decoder then has the last word)."""
    with open(path, "rb") as handle:
        head = handle.read(_JPEG_HEAD_BYTES)
    if head[:3] == b"\xff\xd8\xff":
        frame = _jpeg_frame(head)
        return frame[:2] if frame else None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return height, width
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return height, width
    if head[:2] == b"BM" and len(head) >= 26:
        if struct.unpack("<I", head[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER
            width, height = struct.unpack("<HH", head[18:22])
        else:
            width, height = struct.unpack("<ii", head[18:26])
        return abs(height), abs(width)
    return None


def _too_large(height: int, width: int, max_pixels: int | None) -> str | None:
    if max_pixels is None or height * width <= max_pixels:
        return None
    return (f"declares {width} x {height} = {height * width:,} pixels, more than max_pixels={max_pixels:,}; "
            "downscale it, or raise the limit (max_pixels; `ssl-multilabel predict --max-pixels`)")


def _path_bytes(paths: Sequence[str]) -> list[bytes]:
    """File paths as TensorFlow reads them: the bytes the file system holds. A name that is no
    UTF-8 (from a Windows zip unpacked on Linux) is no TensorFlow string: its bytes are."""
    return [os.fsencode(path) for path in paths]


@tf.autograph.experimental.do_not_convert
def _decoded_shape(path: tf.Tensor) -> tf.Tensor:
    return tf.shape(_decode_raw(tf.io.read_file(path)))


def _tf_decode_shapes(paths: Sequence[str]) -> dict[int, tuple[int, int, int]]:
    """Decode every file with TensorFlow in parallel; `{index: (h, w, c)}` of those that decode.

    A file that TensorFlow cannot read or decode is missing from the result (`ignore_errors`
    drops the failing elements): the check fails exactly where the training map would.
    """
    if not paths:
        return {}
    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths), dtype=np.int64), _path_bytes(paths)))
    ds = ds.map(lambda i, p: (i, _decoded_shape(p)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    shapes: dict[int, tuple[int, int, int]] = {}
    for idx, shp in ds.ignore_errors().batch(4096).as_numpy_iterator():
        shapes.update(zip(idx.tolist(), map(tuple, shp.tolist())))
    return shapes


# Files that passed a check, keyed by (path, size, mtime, check): rebuilding a dataset over the
# same files (every training round, a validation set) then costs one stat per file.
_CHECKED: dict[tuple, tuple[int, int, int, bool, int]] = {}
_CHECKED_MAX = 2_000_000


def _inspect(paths: Sequence[str], check: str, max_pixels: int | None = DEFAULT_MAX_PIXELS
             ) -> tuple[list[BadImage], dict[int, tuple[int, int, int, bool, int]]]:
    """Bad files and, for the good ones, `{index: (h, w, c, is_jpeg, orientation)}` with `c` the
    decoded channel count, `is_jpeg` true when the file is known to be a JPEG, `orientation` its
    EXIF orientation (1-8) and `h, w` the size once that is applied. A file whose header declares
    more than `max_pixels` pixels is bad, and is never decoded."""
    bad: list[BadImage] = []
    info: dict[int, tuple[int, int, int, bool, int]] = {}
    todo: list[tuple[int, tuple]] = []
    for i, path in enumerate(paths):
        st = _stat(path)
        if st is None:
            bad.append(BadImage(i, path, "file not found"))
        elif not stat.S_ISREG(st.st_mode):
            bad.append(BadImage(i, path, "not a regular file"))
        else:
            key = (path, st.st_size, st.st_mtime_ns, check)
            if key in _CHECKED:
                problem = _too_large(*_CHECKED[key][:2], max_pixels)
                if problem:
                    bad.append(BadImage(i, path, problem))
                else:
                    info[i] = _CHECKED[key]
                continue
            declared = _declared_size(path) if st.st_size > 0 else None
            problem = _too_large(*declared, max_pixels) if declared else None
            if problem:
                bad.append(BadImage(i, path, problem))
                continue
            shape = _intact_jpeg_shape(path) if check == "fast" and st.st_size > 0 else None
            if shape is None:
                todo.append((i, key))
            else:
                info[i] = _CHECKED[key] = shape

    decoded = _tf_decode_shapes([paths[i] for i, _ in todo])
    for j, (i, key) in enumerate(todo):
        if j not in decoded:
            bad.append(BadImage(i, paths[i], _pil_problem(paths[i]) or "TensorFlow cannot decode it"))
            continue
        h, w, c = decoded[j]
        problem = _too_large(h, w, max_pixels)  # a header that under-declares its size
        magic = _magic(paths[i], 3) if c in (1, 4) else b""
        if problem is None and c == 1 and magic[:2] == b"BM":
            # 8-bit BMP: TensorFlow ignores the palette, so only a grey palette is correct.
            problem = _pil_problem(paths[i])
        elif problem is None and c == 4 and magic == b"\xff\xd8\xff":
            problem = "CMYK JPEG: TensorFlow decodes it without colour conversion; save it as RGB"
        if problem:
            bad.append(BadImage(i, paths[i], problem))
        else:
            orientation = _pil_orientation(paths[i])
            info[i] = _CHECKED[key] = _oriented(h, w, orientation) + (c, False, orientation)  # not known to be a JPEG
    if len(_CHECKED) > _CHECKED_MAX:  # a bound on memory; forgetting only costs re-checks
        _CHECKED.clear()
    bad.sort(key=lambda b: b.index)
    return bad, info


def _fingerprint(path: str) -> tuple[int, int] | None:
    st = _stat(path)
    return None if st is None else (st.st_size, st.st_mtime_ns)


def _magic(path: str, n: int) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(n)


def find_bad_images(paths: Sequence[str | os.PathLike], *, check: Literal["fast", "full"] = "fast",
                    max_pixels: int | None = DEFAULT_MAX_PIXELS) -> list[BadImage]:
    """List the files that `make_dataset` would refuse, without building a dataset.

    Args:
        paths: image file paths.
        check: `"fast"` (default): a JPEG passes when its header parses and it ends with the
            end-of-image marker (this catches missing, empty, truncated and non-JPEG files
            without decoding pixels); PNG, BMP and GIF files, and JPEGs that fail that test,
            are decoded in full by TensorFlow, in parallel. `"full"`: every file is decoded.
            A file that passed is not checked again while its size and modification time
            are unchanged.
        max_pixels: a file whose header declares more pixels (height x width) is bad and is
            not decoded (default `DEFAULT_MAX_PIXELS`, about 89 million); None: no limit.

    Returns:
        `BadImage(index, path, reason)` records in input order (empty if all files are usable).

    Example:
        >>> find_bad_images(["missing.png"])  # doctest: +SKIP
        [BadImage(index=0, path='missing.png', reason='file not found')]
    """
    _check_choice("check", check, _CHECKS)
    _check_max_pixels(max_pixels)
    return _inspect([os.fspath(p) for p in paths], check, max_pixels)[0]


#: How many 16-bit PNGs `_warn_dark_16_bit` reads (the first ones): a dataset's bit depth is one choice.
_SAMPLE_16_BIT = 20


def _warn_dark_16_bit(paths: Sequence[str]) -> None:
    """One warning when 16-bit PNGs hold data of at most 12 bits (values below 4096, the usual
    output of a DICOM export): a 16-bit file is read at its high byte (value // 256), so such images
    reach at most 15 of 255 and train a model on near-black inputs. Only PNG headers are read, then
    the pixels of the first `_SAMPLE_16_BIT` 16-bit PNGs."""
    from PIL import Image

    def is_16_bit_png(path: str) -> bool:  # the PNG signature, then IHDR's bit depth at byte 24
        head = _magic(path, 25)
        return head[:8] == b"\x89PNG\r\n\x1a\n" and head[24:25] == b"\x10"

    sixteen = [p for p in paths if p.lower().endswith(".png") and is_16_bit_png(p)]
    dark = []
    for path in sixteen[:_SAMPLE_16_BIT]:
        with Image.open(path) as image:
            if not image.mode.startswith("I"):  # PIL reads 16-bit colour PNGs at 8 bits: no raw values to see
                continue
            largest = int(image.getextrema()[1])
        if largest < 4096:
            dark.append((path, largest))
    if dark:
        logger.warning(
            "%d of the %d 16-bit PNGs read (of %d) hold values below 4096 (at most 12 bits; e.g. %s, largest %d): "
            "16-bit images are read at their high byte (value // 256), so they reach at most %d of 255 and look "
            "nearly black to the model. Rescale them to the full 16-bit range first (x 16 for 12-bit data).",
            len(dark), min(len(sixteen), _SAMPLE_16_BIT), len(sixteen), os.path.basename(dark[0][0]), dark[0][1],
            max(v for _, v in dark) // 256)


def usable_images(paths: Sequence[str | os.PathLike], *, on_bad_image: Literal["error", "skip"],
                  name: Callable[[BadImage], str], source: str, skipped: str, hint: str,
                  max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The indices of `paths` that `make_dataset` can use, checked once before any expensive work.

    The one report of bad files for a command or a data source: each is listed as
    `name(bad): reason` (at most 20, then how many more). `on_bad_image="error"`: any bad file is a
    `ValueError` that says "{n} of {total} {source} cannot be used: ... Fix or remove them, or
    {hint}."; `"skip"`: bad files are logged as "Skipping {n} of {total} {skipped}: ..." and left
    out, and all of them bad is still an error. `max_pixels`: as in `find_bad_images`.
    """
    _check_choice("on_bad_image", on_bad_image, _ON_BAD)
    bad = find_bad_images(paths, max_pixels=max_pixels)
    keep = np.setdiff1d(np.arange(len(paths)), [b.index for b in bad])
    _warn_dark_16_bit([os.fspath(paths[i]) for i in keep])
    if not bad:
        return keep
    shown = "; ".join(f"{name(b)}: {b.reason}" for b in bad[:_MAX_LISTED])
    more = f"; ... and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
    if on_bad_image == "error":
        raise ValueError(f"{len(bad)} of {len(paths)} {source} cannot be used: {shown}{more}. Fix or remove them, "
                         f"or {hint}.")
    if keep.size == 0:
        raise ValueError(f"None of the {len(paths)} {source} can be used: {shown}{more}.")
    logger.warning("Skipping %d of %d %s: %s%s", len(bad), len(paths), skipped, shown, more)
    return keep


# === Graph functions ===


def _to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """float32 `(h, w, channels)` from an image with 1, 2, 3 or 4 channels (alpha dropped)."""
    image = tf.cast(image, tf.float32)
    n = tf.shape(image)[-1]
    # 2 = grey + alpha, 4 = RGB + alpha: alpha is dropped, not composited (as PIL's convert does).
    image = tf.cond(n >= 3, lambda: image[..., :3], lambda: image[..., :1])
    if channels == 3:
        image = tf.tile(image, tf.stack([1, 1, 3 // tf.shape(image)[-1]]))
    else:
        luma = tf.constant(_LUMA, tf.float32)
        image = tf.cond(
            tf.shape(image)[-1] == 3,
            lambda: tf.reduce_sum(image * luma, axis=-1, keepdims=True),
            lambda: image,
        )
    image.set_shape([None, None, channels])
    return image


def _orient(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """`image` turned upright by its EXIF orientation (1-8), as PIL's `ImageOps.exif_transpose`."""
    def transpose(x: tf.Tensor) -> tf.Tensor:
        return tf.transpose(x, [1, 0, 2])

    return tf.switch_case(orientation - 1, [
        lambda: image,                          # 1: as stored
        lambda: image[:, ::-1],                 # 2: mirrored left-right
        lambda: image[::-1, ::-1],              # 3: turned 180 degrees
        lambda: image[::-1],                    # 4: mirrored top-bottom
        lambda: transpose(image),               # 5: mirrored along the main diagonal
        lambda: transpose(image[::-1]),         # 6: turned 90 degrees clockwise to be upright
        lambda: transpose(image[::-1, ::-1]),   # 7: mirrored along the other diagonal
        lambda: transpose(image[:, ::-1]),      # 8: turned 90 degrees counter-clockwise
    ])


def _resize(image: tf.Tensor, size: tuple[int, int] | None, interpolation: str) -> tf.Tensor:
    if size is None:
        return image
    return tf.image.resize(image, size, method=interpolation)


# === Argument handling ===


def _check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    if value not in choices:
        raise ValueError(f"Invalid value for argument `{name}`. Expected one of {list(choices)}. Received: {name}={value!r}")


def _check_max_pixels(max_pixels: object) -> None:
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer))
                                   or max_pixels < 1):
        raise ValueError(f"Invalid value for argument `max_pixels`. Expected None or a positive int. "
                         f"Received: max_pixels={max_pixels!r}")


def _check_size(image_size: object) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    try:
        h, w = image_size  # type: ignore[misc]
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in (h, w))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            "Invalid value for argument `image_size`. Expected None, a positive int or a (height, width) "
            f"pair of positive ints. Received: image_size={image_size!r}"
        )
    return int(h), int(w)


def _as_labels(labels: object, n: int) -> PartialLabels | None:
    if labels is None:
        return None
    if not isinstance(labels, PartialLabels):
        if isinstance(labels, (np.ndarray, list, tuple)):
            labels = PartialLabels.from_array(np.asarray(labels))
        else:
            raise TypeError(
                "Argument `labels` must be a PartialLabels, an (n, L) array with -1 for unknown, or None. "
                f"Received: an object of type {type(labels).__name__}"
            )
    if labels.n_samples != n:
        raise ValueError(
            f"`images` has {n} entries but `labels` has {labels.n_samples} rows; they must match one to one."
        )
    return labels


def _cache_name(cache: str | os.PathLike, sources: Sequence[str] | np.ndarray, options: tuple) -> str:
    """A cache file prefix that changes whenever the inputs or the decoding options change, so a
    stale cache is never reused (tf.data would otherwise read it back silently)."""
    digest = hashlib.sha256(repr(options).encode())
    if isinstance(sources, np.ndarray):
        digest.update(repr((sources.shape, sources.dtype.str)).encode())
        digest.update(np.ascontiguousarray(sources).tobytes())
    else:
        for path in sources:  # file identity: path, size and modification time
            digest.update(repr((path, _fingerprint(path))).encode())
    prefix = os.fspath(cache)
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    return f"{prefix}-{digest.hexdigest()[:16]}"


# === Builder ===


def _feature_dataset(
    features: np.ndarray,
    table: PartialLabels | None,
    *,
    batch_size: int | None,
    shuffle: bool,
    seed: int | None,
    augment: Callable[[tf.Tensor], tf.Tensor] | None,
    with_weights: bool,
    drop_remainder: bool,
) -> tf.data.Dataset:
    """`make_dataset` for `(n, d)` feature vectors (e.g. cached frozen-backbone features)."""
    features = np.asarray(features, np.float32)
    parts: tuple[np.ndarray, ...] = (features,)
    if table is not None:
        parts += (table.to_array(),) + ((np.asarray(table.weight, np.float32),) if with_weights else ())
    ds = tf.data.Dataset.from_tensor_slices(parts if len(parts) > 1 else features)
    if shuffle:
        ds = ds.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    if augment is not None:
        det = not (shuffle and seed is None)
        ds = ds.map((lambda x, *rest: (tf.cast(augment(x), tf.float32),) + rest) if len(parts) > 1
                    else (lambda x: tf.cast(augment(x), tf.float32)), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=det)
    if batch_size is not None:
        ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    ds.bad_images = ()
    return ds


def _check_array_values(images: np.ndarray, chunk: int = 1024) -> None:
    """A float `images` array: a NaN or inf is an error naming the image (it would turn the weights
    NaN with a finite reported loss); pixels in [0, 1] get a warning (the models expect [0, 255]).
    An integer array of images (e.g. 16-bit pixels as PIL loads them) above 255 is an error."""
    if np.issubdtype(images.dtype, np.integer) and images.dtype != np.uint8 and images.ndim >= 3 and images.size:
        largest = int(images.max())
        if largest > 255:
            raise ValueError(
                f"`images` are {images.dtype} with values up to {largest}; expected pixels in [0, 255] (the models "
                "saturate on larger values). Scale them first: 16-bit pixels as the image files are read, "
                "`images // 256`; 12-bit data stored in 16 bits, `images // 16`.")
        return
    if not np.issubdtype(images.dtype, np.floating):
        return
    largest, bad = -np.inf, []
    for start in range(0, len(images), chunk):
        block = images[start:start + chunk].reshape(min(chunk, len(images) - start), -1)
        finite = np.isfinite(block).all(axis=1)
        bad.extend(start + np.flatnonzero(~finite))
        largest = max(largest, float(block[finite].max(initial=-np.inf)))
    if bad:
        raise ValueError(f"`images` holds NaN or inf values in {len(bad)} of {len(images)} rows, e.g. row {int(bad[0])}; "
                         "expected finite values (pixels in [0, 255], or feature vectors).")
    if images.ndim >= 3 and largest <= 1.0:
        logger.warning("`images` are floats no larger than %.3g: the models expect pixel values in [0, 255] (they "
                       "rescale them), so images scaled to [0, 1] train on near-constant inputs; multiply them by "
                       "255.", largest)


def make_dataset(
    images: Sequence[str | os.PathLike] | np.ndarray,
    labels: PartialLabels | np.ndarray | None = None,
    *,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    batch_size: int | None = 32,
    shuffle: bool = False,
    seed: int | None = None,
    cache: bool | str | os.PathLike = False,
    augment: Callable[[tf.Tensor], tf.Tensor] | None = None,
    with_weights: bool = False,
    on_bad_image: Literal["error", "skip"] = "error",
    check: Literal["fast", "full"] = "fast",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    interpolation: str = "bilinear",
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Build a `tf.data.Dataset` of `(x, y)` (or `(x, y, w)`, or `x` alone) from images and labels.

    Files are checked before anything else (see `check`); then the pipeline is
    `read -> decode (JPEG/PNG/BMP/GIF, first GIF frame) -> channels -> resize` in a parallel
    `AUTOTUNE` map, `[cache] -> [shuffle] -> [augment] -> batch -> prefetch`. When no cache is
    used, the (cheap) file list is shuffled before decoding; with a cache, the decoded images are
    (the shuffle buffer then holds every decoded image). Only images are cached, never labels,
    so one cache stays valid while labels are filled in.

    Args:
        images: a sequence of file paths (str or Path), or a numpy array `(n, H, W)` or
            `(n, H, W, C)` with C in 1..4, uint8 or float with values in [0, 255] (not rescaled;
            the array is embedded in the pipeline, so it must stay under 2 GB); or an `(n, d)`
            array of feature vectors (cached backbone features: no decoding, resizing or
            channels; `augment` then acts on one vector).
        labels: a `PartialLabels` with one row per image, an `(n, L)` array with `-1` for unknown
            (converted with `PartialLabels.from_array`), or None for unlabeled images (the
            dataset then yields `x` only).
        image_size: `(height, width)` or an int for square images; None keeps the original
            size, which must then be the same for every image.
        channels: 1 (grey) or 3 (RGB). None: 1 if every image has one grey channel (with or
            without alpha), else 3. Grey -> RGB repeats the channel; RGB -> grey uses the
            ITU-R 601-2 luma weights (as PIL); alpha is dropped.
        batch_size: batch size, or None for an unbatched dataset.
        shuffle: shuffle the whole dataset, again at every pass.
        seed: shuffle seed; with a seed the order of every pass is reproducible, and the map
            keeps its order (`deterministic=True`). TensorFlow derives the order from this seed
            and its global seed as it is when the dataset is built (`keras.utils.set_random_seed`,
            which `train_round(seed=...)` sets): set the global seed first to get the same order
            in a process that has already trained. Without shuffling the input order is kept.
        cache: False; True to cache decoded images in memory after the first pass; or a path
            prefix for a file cache (a hash of the inputs and options is appended to it).
        augment: a callable `x -> x` on one float32 `(h, w, channels)` image, applied in the map
            after the cache, at every pass. Pass it for training datasets only.
        with_weights: also yield the per-cell weights `w` (`labels.weight`) as a third element.
        on_bad_image: `"error"` raises `BadImageError` listing every bad file; `"skip"` drops
            them and their label rows, logs a warning, and lists them in the `bad_images`
            attribute of the returned dataset (lost if you chain further transformations).
        check: how files are checked before the pipeline is built: `"fast"` (JPEG header and
            end marker, other formats decoded) or `"full"` (every file decoded); see
            `find_bad_images`. Files that passed are not re-checked while unchanged.
        max_pixels: a file whose header declares more pixels than this is a bad image (it is
            never decoded); default `DEFAULT_MAX_PIXELS` (about 89 million), None: no limit.
        interpolation: the `tf.image.resize` method (default bilinear, no antialiasing);
            cubic and Lanczos kernels can overshoot [0, 255] slightly.
        drop_remainder: drop the last incomplete batch.

    Returns:
        The dataset. Elements: `x` float32 `(batch, h, w, channels)` in [0, 255]; `y` float32
        `(batch, L)` with `-1` in unknown cells; `w` float32 `(batch, L)`. It has an attribute
        `bad_images`: a tuple of `BadImage` (empty unless `on_bad_image="skip"` dropped some).

    Raises:
        BadImageError: (a ValueError) some files are missing or undecodable and
            `on_bad_image="error"`.
        ValueError / TypeError: invalid arguments, lengths of `images` and `labels` differ,
            or `image_size=None` with images of different sizes.

    Example:
        >>> labels = PartialLabels.from_array([[1, -1], [0, 1]])
        >>> ds = make_dataset(["a.jpg", "b.png"], labels, image_size=(64, 64), channels=3,
        ...                   batch_size=2, shuffle=True, seed=0)  # doctest: +SKIP
        >>> x, y = next(iter(ds))  # doctest: +SKIP
        >>> x.shape, y.numpy().min()  # doctest: +SKIP
        (TensorShape([2, 64, 64, 3]), -1.0)
    """
    # --- arguments ---
    _check_choice("on_bad_image", on_bad_image, _ON_BAD)
    _check_choice("check", check, _CHECKS)
    _check_max_pixels(max_pixels)
    _check_choice("channels", channels, (None, 1, 3))
    _check_choice("interpolation", interpolation, _INTERPOLATIONS)
    size = _check_size(image_size)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"Invalid value for argument `batch_size`. Expected None or a positive int. Received: batch_size={batch_size!r}")
    if augment is not None and not callable(augment):
        raise TypeError(f"Argument `augment` must be a callable x -> x or None. Received: {type(augment).__name__}")
    if not isinstance(cache, (bool, str, os.PathLike)):
        raise TypeError(f"Argument `cache` must be a bool or a path. Received: {type(cache).__name__}")

    from_files = not isinstance(images, np.ndarray)
    if from_files:
        if isinstance(images, (str, os.PathLike)):
            raise TypeError("Argument `images` must be a sequence of file paths or an array; received a single path.")
        paths = []
        for i, path in enumerate(images):
            if not isinstance(path, (str, os.PathLike)):
                raise TypeError(
                    f"`images` must be file paths (str or Path) or one numpy array; entry {i} is a "
                    f"{type(path).__name__}. Stack in-memory images into one (n, H, W[, C]) array."
                )
            paths.append(os.fspath(path))
        n = len(paths)
    else:
        if images.ndim not in (2, 3, 4) or (images.ndim == 4 and not 1 <= images.shape[-1] <= 4):
            raise ValueError(
                f"An `images` array must have shape (n, H, W) or (n, H, W, C) with C in 1..4, or "
                f"(n, d) for feature vectors; got {images.shape}."
            )
        n = len(images)
    table = _as_labels(labels, n)
    if with_weights and table is None:
        raise ValueError("`with_weights=True` needs `labels`: weights are per labelled cell.")
    if n == 0:
        raise ValueError("`images` is empty.")
    if not from_files:
        _check_array_values(images)
    if not from_files and images.ndim == 2:
        if size is not None or channels is not None:
            raise ValueError(
                f"`images` of shape {images.shape} are feature vectors: pass image_size=None and "
                f"channels=None. Received: image_size={image_size!r}, channels={channels!r}"
            )
        return _feature_dataset(images, table, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                augment=augment, with_weights=with_weights, drop_remainder=drop_remainder)

    # --- check the files before anything is built ---
    bad: list[BadImage] = []
    if from_files:
        bad, info = _inspect(paths, check, max_pixels)
        if bad and on_bad_image == "error":
            raise BadImageError(bad, n)
        if bad:
            logger.warning(
                "Skipping %d of %d image files that cannot be used: %s%s",
                len(bad), n, "; ".join(map(str, bad[:_MAX_LISTED])),
                " ..." if len(bad) > _MAX_LISTED else "",
            )
            keep = np.array(sorted(info), dtype=np.int64)
            if keep.size == 0:
                raise ValueError(f"None of the {n} image files can be used (first: {bad[0]}).")
            paths = [paths[i] for i in keep]
            table = table.subset(keep) if table is not None else None
        shapes = [info[i] for i in sorted(info)]
        sizes = {s[:2] for s in shapes}
        src_channels = {s[2] for s in shapes}
        all_jpeg = all(s[3] for s in shapes)
        orientations = np.array([s[4] for s in shapes], np.int32)
    else:
        array = images if images.ndim == 4 else images[..., None]
        sizes = {array.shape[1:3]}
        src_channels = {array.shape[-1]}

    if channels is None:
        channels = 1 if src_channels <= {1, 2} else 3
    if size is None and len(sizes) > 1:
        examples = sorted(sizes)[:5]
        raise ValueError(
            f"Images have {len(sizes)} different (height, width) sizes, e.g. {examples}; "
            "pass `image_size=(height, width)` to resize them to one size."
        )
    out_size = size if size is not None else next(iter(sizes))
    # Resizing to the size every image already has is the identity: skip it.
    resize_to = None if sizes == {out_size} else out_size
    n_kept = len(paths) if from_files else n

    # --- the pipeline ---
    det = not (shuffle and seed is None)
    targets: tuple[np.ndarray, ...] = ()
    if table is not None:
        targets = (table.to_array(),) + ((np.asarray(table.weight, np.float32),) if with_weights else ())

    # The check knows every decoded channel count: convert only when some image needs it.
    convert = src_channels != {channels}

    # Each file travels with how to decode it: JPEGs much larger than the output at 1/2, 1/4 or 1/8
    # of their size (`_jpeg_scale`), and photos whose EXIF orientation says how to turn them turned
    # upright after decoding, as PIL's `exif_transpose` does.
    per_file = False
    if from_files:
        scales = np.array([_jpeg_scale(h, w, resize_to) for h, w, *_ in shapes], np.int32)
        per_file = bool((orientations != 1).any() or scales.any())

    def load(source: tf.Tensor, orientation: tf.Tensor | None = None, scale: tf.Tensor | None = None) -> tf.Tensor:
        image = _decode_raw(tf.io.read_file(source), all_jpeg, scale) if from_files else source
        if orientation is not None:
            image = _orient(image, orientation)
        image = _resize(image, resize_to, interpolation)  # first: a large photo converts fewer pixels
        image = _to_channels(image, channels) if convert else tf.cast(image, tf.float32)
        image = tf.ensure_shape(image, [out_size[0], out_size[1], channels])
        return image

    def finish(image: tf.Tensor) -> tf.Tensor:
        if augment is not None:
            image = tf.cast(augment(image), tf.float32)
        return image

    sources = _path_bytes(paths) if from_files else array
    source_ds = tf.data.Dataset.from_tensor_slices((sources, orientations, scales) if per_file else sources)
    shuffle_kw = dict(buffer_size=n_kept, seed=seed, reshuffle_each_iteration=True)
    if cache is False:
        ds = tf.data.Dataset.zip((source_ds,) + tuple(tf.data.Dataset.from_tensor_slices(t) for t in targets)) if targets else source_ds
        if shuffle:
            ds = ds.shuffle(**shuffle_kw)
        ds = ds.map(
            (lambda s, *rest: (finish(load(*s) if per_file else load(s)),) + rest) if targets
            else (lambda *s: finish(load(*s))),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=det,
        )
    else:
        images_ds = source_ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if cache is True:
            images_ds = images_ds.cache()
        else:
            options = (out_size, channels, resize_to, interpolation, "EXIF orientation, JPEG DCT scaling")
            images_ds = images_ds.cache(_cache_name(cache, paths if from_files else array, options))
        ds = tf.data.Dataset.zip((images_ds,) + tuple(tf.data.Dataset.from_tensor_slices(t) for t in targets)) if targets else images_ds
        if shuffle:
            ds = ds.shuffle(**shuffle_kw)
        if augment is not None:
            ds = ds.map(
                (lambda x, *rest: (finish(x),) + rest) if targets else finish,
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=det,
            )
    if batch_size is not None:
        ds = ds.batch(int(batch_size), drop_remainder=drop_remainder, num_parallel_calls=tf.data.AUTOTUNE, deterministic=det)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    ds.bad_images = tuple(bad)
    logger.info(
        "Dataset of %d images -> %dx%dx%d, batch %s, shuffle=%s, cache=%s%s.",
        n_kept, out_size[0], out_size[1], channels, batch_size, shuffle, cache,
        f", {len(bad)} bad files skipped" if bad else "",
    )
    return ds


# === The mixed labelled / pseudo-labelled stream ===


def _rows_with_cells(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask.any(axis=1))


def mixed_dataset(
    images: np.ndarray,
    labeled: PartialLabels,
    pseudo: PartialLabels | None,
    *,
    repeats: np.ndarray | None = None,
    batch_size: int = 32,
    unlabel_ratio: float = 1.0,
    balance: str = "halves",
    steps_per_epoch: int | None = None,
    augment: Callable[[Any], Any] | None = None,
    confidence_weights: bool = False,
    seed: int = 0,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
) -> Any:
    """Batches of `B_l` labelled rows and `B_u = round(unlabel_ratio * B_l)` pseudo-labelled rows.

    The labelled stream holds the rows of `labeled` with a known cell (targets: those cells);
    the pseudo stream holds the rows of `pseudo` with a known cell, each repeated
    `repeats[i]` times (targets: only `pseudo`'s known cells, so a human cell is never counted
    twice). Each element is `(x, y, w)`: the two halves concatenated, `w` the per-cell weights.
    With `balance="halves"` they are rescaled per batch so that a masked-mean loss (sum of
    weighted cell losses over the number of known cells, as `MaskedBinaryCrossentropy`) equals
    the paper's `L_l + unlabel_ratio * L_u`, with `L_l` and `L_u` the masked means over each
    half; with `balance="cells"` they are left as they are, so every known cell of the batch
    weighs the same, human or pseudo-labelled.
    One epoch is `steps_per_epoch` batches, by default `ceil(max(n_l / B_l, n_u / B_u))` (every
    row of both streams seen once). Each epoch starts both streams at a new shuffle, and a stream
    shorter than the epoch repeats, reshuffled; the shuffles are seeded, so two datasets built
    alike give the same batches in every epoch.

    Args:
        images: `(n, H, W[, C])` array (or paths) for every row of the tables.
        labeled: the base table (human, implied, propagated cells).
        pseudo: the teacher cells only (other cells unknown), or None: labelled batches only.
        repeats: `(n,)` row repeat counts of the pseudo stream (balancing); default 1.
        batch_size: `B_l`.
        unlabel_ratio: `B_u / B_l` (> 0; the paper uses 1-3 for small models).
        balance: `"halves"` (the paper's loss: each half's mean, the pseudo-labelled one times
            `unlabel_ratio`) or `"cells"` (one mean over every known cell of the batch). The
            paper's halves are disjoint images; in a partial table one image carries few human
            cells and many pseudo-labelled ones, and `"halves"` then gives each human cell the
            weight of several pseudo-labelled cells (docs/noisy_student.md).
        steps_per_epoch: batches per epoch, or None for the default above. E.g.
            `ceil(n / (B_l + B_u))` gives the student the image budget of a supervised round.
        augment: student augmentation, a callable on a batch of images `(B, H, W, C)`
            (e.g. `student_augment`), applied to both halves of every batch, or None. Keras'
            RandAugment computes all of its operations for every call and keeps the chosen
            ones, so calling it once per batch instead of once per image is about twice as
            fast; it then picks the `N` operations per batch, with per-image strengths.
        confidence_weights: weight cells by the tables' `weight` (teacher confidence,
            propagation confidence) instead of 1. Implied cells (assumed negatives, e.g. weak
            negatives of weight `1 / (L - 1)`) keep their weight either way.
        seed: shuffle seed.
        image_size: passed to `make_dataset`.
        channels: passed to `make_dataset`.

    Returns:
        A finite `tf.data.Dataset` of `(x, y, w)` batches (one epoch).

    Example:
        >>> ds = mixed_dataset(images, labels, pseudo.teacher_table, unlabel_ratio=2)  # doctest: +SKIP
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"Invalid value for argument `batch_size`. Expected a positive int. Received: batch_size={batch_size!r}")
    if steps_per_epoch is not None:
        if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, numbers.Integral) or steps_per_epoch < 1:
            raise ValueError(
                "Invalid value for argument `steps_per_epoch`. Expected None or an int >= 1. "
                f"Received: steps_per_epoch={steps_per_epoch!r}"
            )
    if isinstance(unlabel_ratio, bool) or not isinstance(unlabel_ratio, numbers.Real) or not unlabel_ratio > 0:
        raise ValueError(f"Invalid value for argument `unlabel_ratio`. Expected a float > 0. Received: unlabel_ratio={unlabel_ratio!r}")
    _check_balance(balance)

    def stream(table: PartialLabels, rows: np.ndarray, batch: int, stream_seed: int) -> Any:
        """Shuffled, augmented `(x, y, w)` batches of `table`'s `rows` (rows may repeat)."""
        sub = table.subset(rows, allow_repeats=True)
        if not confidence_weights:
            # An assumed negative's weight is the assumption (weak negatives), not a confidence: kept.
            sub = sub.reweight(np.where(sub.source == Source.IMPLIED, sub.weight, 1.0))
        picked = images[rows] if isinstance(images, np.ndarray) else [images[i] for i in rows]
        return make_dataset(
            picked, sub, image_size=image_size, channels=channels, batch_size=batch, shuffle=True,
            seed=stream_seed, with_weights=True, drop_remainder=True,
        )

    def noised(ds: Any) -> Any:
        if augment is None:
            return ds
        return ds.map(lambda x, y, w: (tf.cast(augment(x), tf.float32), y, w), num_parallel_calls=tf.data.AUTOTUNE)

    for name, table in (("labeled", labeled), ("pseudo", pseudo)):
        if table is not None and not isinstance(table, PartialLabels):
            raise TypeError(f"Argument `{name}` must be a PartialLabels. Received: {type(table).__name__}")
        if table is not None and table.n_samples != len(images):
            raise ValueError(f"`images` has {len(images)} entries but `{name}` has {table.n_samples} rows; they must match one to one.")
    rows_l = _rows_with_cells(labeled.known)
    if rows_l.size == 0:
        raise ValueError("`labeled` has no known cell: the student needs labelled rows.")
    b_l = int(batch_size)
    if pseudo is None or not pseudo.known.any():
        steps = steps_per_epoch or max(1, math.ceil(rows_l.size / b_l))
        ds_l = stream(labeled, _fill_rows(rows_l, b_l), b_l, seed).repeat()
        return noised(ds_l.take(steps)).prefetch(tf.data.AUTOTUNE)

    b_u = max(1, int(round(float(unlabel_ratio) * b_l)))
    rows_u = _rows_with_cells(pseudo.known)
    counts = np.ones(pseudo.n_samples, np.int64) if repeats is None else np.asarray(repeats, np.int64)
    if counts.shape != (pseudo.n_samples,) or (counts < 1).any():
        raise ValueError(f"`repeats` must be {pseudo.n_samples} ints >= 1; got shape {counts.shape}.")
    rows_u = np.repeat(rows_u, counts[rows_u])
    steps = steps_per_epoch or max(1, math.ceil(max(rows_l.size / b_l, rows_u.size / b_u)))
    ds_l = stream(labeled, _fill_rows(rows_l, b_l), b_l, seed).repeat()
    ds_u = stream(pseudo, _fill_rows(rows_u, b_u), b_u, seed + 1).repeat()
    ratio = tf.constant(float(b_u) / float(b_l), tf.float32)

    def combine(batch_l: Any, batch_u: Any) -> Any:
        (x_l, y_l, w_l), (x_u, y_u, w_u) = batch_l, batch_u
        if balance == "cells":
            return tf.concat([x_l, x_u], 0), tf.concat([y_l, y_u], 0), tf.concat([w_l, w_u], 0)
        n_l = tf.reduce_sum(tf.cast(y_l >= 0, tf.float32))
        n_u = tf.reduce_sum(tf.cast(y_u >= 0, tf.float32))
        total = n_l + n_u
        # sum(w l) / total with these weights = L_l + (B_u / B_l) * L_u.
        w_l = w_l * tf.math.divide_no_nan(total, n_l)
        w_u = w_u * ratio * tf.math.divide_no_nan(total, n_u)
        return tf.concat([x_l, x_u], 0), tf.concat([y_l, y_u], 0), tf.concat([w_l, w_u], 0)

    # `take` before the parallel map: a parallel map reads ahead, and a read past the epoch's last
    # batch can start a stream's next pass, which draws that stream's next reshuffle seed (one seed
    # generator per shuffle, shared by every iterator). How far it reads is a race, so the next
    # epoch's order would change from run to run; the zip must yield exactly `steps` batches.
    mixed = tf.data.Dataset.zip((ds_l, ds_u)).take(steps).map(combine, num_parallel_calls=tf.data.AUTOTUNE)
    return noised(mixed).prefetch(tf.data.AUTOTUNE)


#: How `mixed_dataset` weighs the labelled and pseudo-labelled halves of a batch.
_BALANCE = ("halves", "cells")


def _check_balance(balance: object) -> None:
    if balance not in _BALANCE:
        raise ValueError(f"Invalid value for argument `balance`. Expected one of {_BALANCE}. Received: balance={balance!r}")


def _fill_rows(rows: np.ndarray, batch: int) -> np.ndarray:
    """Repeat `rows` cyclically up to at least one full batch (batches drop the remainder)."""
    if rows.size >= batch:
        return rows
    return np.resize(rows, batch)
