"""Shared helpers for benchmark scripts: timing and writing a section of docs/benchmarks.md."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Collection

from ssl_multilabel._files import atomic_write_json, atomic_write_text

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = (
    "# Benchmarks\n\n"
    "Every figure below was written by the script named in its section, measuring ours and the\n"
    "baseline side by side in one process (protocols: `../shared/guide/BENCHMARKS.md`). Absolute\n"
    "times on these shared 2-core machines are noisy; the ratios are what count.\n\n"
    "Run a benchmark as `python benchmarks/NAME.py [--quick]`; the peers of the propagation\n"
    "benchmarks (graphlearning, annoy, scikit-multilearn) are the `bench` extra:\n"
    "`pip install -e \".[bench]\"`.\n"
)


def versions() -> str:
    """One line with nproc and the versions of the libraries every benchmark reports."""
    parts = [f"nproc {os.cpu_count()}", f"Python {platform.python_version()}"]
    for name in ("tensorflow", "keras", "faiss", "sklearn", "numpy"):
        try:
            module = __import__(name)
            parts.append(f"{name} {getattr(module, '__version__', '?')}")
        except ImportError:
            pass
    return ", ".join(parts)


def median_time(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> tuple[float, object]:
    """Median wall time of `fn()` over `repeats` runs after `warmup` untimed runs; also its last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def save_merged(path: Path, records: dict, base: dict, replaced: Collection[str] = ()) -> dict:
    """Write this run's records into the JSON file `path`, keeping what another run of the same script
    (run at the same time) saved there since this one read it.

    `base` is the file as this run read it (a copy); only the keys this run added or changed in
    `records`, and the keys in `replaced` (records this run is making anew, dropped from the file
    until made), are this run's: every other key keeps the file's current value, so a record that
    another run replaced meanwhile is never put back to the stale copy this run read. Returns what
    was written."""
    on_disk = json.loads(path.read_text()) if path.is_file() else {}
    mine = {k: v for k, v in records.items() if k in replaced or k not in base or base[k] != v}
    merged = {**{k: v for k, v in on_disk.items() if k not in replaced}, **mine}
    atomic_write_json(path, merged)
    return merged


def mean_sd(values) -> tuple[float, float, int]:
    """Mean, sample standard deviation (n - 1 in the denominator; 0 for one value) and count.

    The spread over seeds of every benchmark: a difference is shown only beyond twice this
    (`beyond_twice_the_spread`).
    """
    values = [float(v) for v in values]
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def beyond_twice_the_spread(mean: float, sd: float) -> bool:
    """The project's rule: a mean difference over seeds counts only when it exceeds twice its spread."""
    return abs(mean) > 2 * sd


def paired_gain(diffs: list[float]) -> tuple[str, str]:
    """Per-seed differences (ours minus a baseline, in mAP) as two table cells: the mean ± spread in
    points, and whether it is a gain by the rule above ("n/a" with fewer than 2 seeds: no spread)."""
    if not diffs:
        return "n/a", "n/a"
    if len(diffs) == 1:
        return f"{100 * diffs[0]:+.1f} (1 seed)", "n/a"
    mean, sd, _ = mean_sd(diffs)
    return f"{100 * mean:+.1f} ± {100 * sd:.1f}", "yes" if mean > 0 and beyond_twice_the_spread(mean, sd) else "no"


def markdown_table(rows: list[dict]) -> str:
    """A Markdown table from a list of dicts sharing the same keys (floats to 4 significant digits)."""
    if not rows:
        return ""
    keys = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(row.get(k, "")) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, body: str) -> None:
    """Replace the section `name` of docs/benchmarks.md (creating it if needed), atomically.

    The section records the exact command (`sys.argv`), the date and the versions.
    """
    command = "python " + " ".join([os.path.relpath(sys.argv[0], DOC.parents[1])] + sys.argv[1:])
    stamp = datetime.date.today().isoformat()
    section = (
        f"<!-- BEGIN {name} -->\n{body.strip()}\n\n"
        f"Command: `{command}` — {stamp} — {versions()}\n<!-- END {name} -->"
    )
    text = DOC.read_text() if DOC.exists() else HEADER
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    atomic_write_text(DOC, text)
