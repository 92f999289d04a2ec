"""The one atomic file writer of the package: every output goes through `atomic_path`.

A reader never sees a half-written file: the content is written to a temporary file beside the
target (same folder, so the rename cannot cross file systems), flushed to disk, then renamed over
the target. A failed write leaves the target as it was and no temporary file behind.

Permissions: `tempfile.mkstemp` creates files with mode 0600, which would make every output
unreadable to a colleague or a serving process whatever the umask. The finished file therefore gets
the mode of the file it replaces, or, for a new file, the mode `open()` would give it
(`0o666 & ~umask`); folders made with `tempfile.mkdtemp` (0700) get `0o777 & ~umask` through
`make_temp_dir`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "current_umask",
    "make_temp_dir",
    "new_file_mode",
]


def current_umask() -> int:
    """The process umask, read without changing it where the system allows.

    `os.umask` can only be read by setting it, which briefly gives every other thread a umask of
    our choosing; Linux shows it in /proc/self/status, so that is tried first.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # the most restrictive value for the instant it is in force
    os.umask(mask)
    return mask


def new_file_mode(*, directory: bool = False) -> int:
    """The mode `open()` (or `mkdir`, with `directory=True`) gives a new file under the umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


def _target_mode(path: Path) -> int:
    """The mode the file written at `path` should end with: the existing file's, or the umask's."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return new_file_mode()
    return stat.S_IMODE(info.st_mode) if stat.S_ISREG(info.st_mode) else new_file_mode()


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a folder be opened.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends without error, it replaces `path`.

    For writers that want a file name rather than bytes (`model.save`, `np.save`, `Image.save`):
    the temporary name ends with the target's suffix (`.keras`, `.npy`, ...), which such writers
    require. If the block raises, the temporary file is removed and `path` is left as it was.

    Example:
        >>> with atomic_path("runs/x/model.keras") as tmp:  # doctest: +SKIP
        ...     model.save(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        mode = _target_mode(path)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see the module docstring)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8, newlines as given) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any, *, allow_nan: bool = True) -> None:
    """Write `data` as indented JSON (numpy scalars and arrays as numbers and lists) atomically."""
    text = json.dumps(data, indent=2, default=_json_default, allow_nan=allow_nan)
    atomic_write_text(path, text + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new empty folder in `parent` (like `tempfile.mkdtemp`) with the umask's mode, not 0700."""
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(directory, new_file_mode(directory=True))
    return directory
