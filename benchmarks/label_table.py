"""B9: label tables on disk: the binary `.npz` against the wide CSV + sidecar (issue 19, item 1).

Table: n rows x 100 labels; 5 % of the cells known human labels (30 % of them positive), 30 % of
the cells filled (soft values in [0, 1), weights in (0, 1], half propagated, half teacher), the
rest unknown; ids `img_0000000.jpg`, ... Both formats go through `PartialLabels.save` / `load`
(the suffix chooses: `t.npz`, `t.csv` + `t.csv.meta.json`).

Each measurement runs in a fresh interpreter, so `resource.getrusage` gives the peak RSS of that
one save or load (imports included; the RSS after the imports is reported beside it). The save
worker builds the table, then times `save` (median of the repeats, same process); each load runs
in its own subprocess (median time, largest peak RSS over the repeats); wall and CPU time are
both reported, since other jobs share the machine. Every load is checked
against the saved table by a SHA-256 of its four arrays and ids (outside the timed region): the
round trip is exact for both formats here. The file is read back right after it was written, so
it is in the page cache: load times are those of a warm file, what a run's resume sees.

Default plan: 200,000 rows in both formats, 1,000,000 rows binary (the CSV at 10^6 takes minutes
and ~5x the 200,000-row RSS; `--rows 1000000:csv,npz` runs it). `--quick`: 20,000 rows in both
formats and 200,000 binary, under 3 minutes.

Usage: `python benchmarks/label_table.py [--quick] [--no-write] [--rows N:FORMATS ...] [--repeats R]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

_HERE = Path(__file__).resolve().parent
for _path in (str(_HERE), str(_HERE.parent)):  # `_report` and the package, when run as a script
    if _path not in sys.path:
        sys.path.insert(0, _path)

from _report import markdown_table, write_section  # noqa: E402

logger = logging.getLogger(__name__)

SECTION = "B9"
N_LABELS = 100
P_HUMAN, P_FILLED = 0.05, 0.30
TARGET_SECONDS, TARGET_SIZE_RATIO, TARGET_RSS_GB = 10.0, 2.0, 2.0
SUFFIX = {"npz": ".npz", "csv": ".csv"}


def make_table(n: int, seed: int = 0):
    """The benchmark table (see the module docstring), built from arrays in one constructor call."""
    from ssl_multilabel.labels import PartialLabels, Source

    rng = np.random.default_rng(seed)
    draw = rng.random((n, N_LABELS), dtype=np.float32)
    human = draw < P_HUMAN
    filled = (draw >= P_HUMAN) & (draw < P_HUMAN + P_FILLED)
    del draw
    values = np.where(human, (rng.random((n, N_LABELS), dtype=np.float32) < 0.3).astype(np.float32), 0)
    values = np.where(filled, rng.random((n, N_LABELS), dtype=np.float32), values).astype(np.float32)
    weight = np.where(filled, 1 - rng.random((n, N_LABELS), dtype=np.float32), human).astype(np.float32)
    teacher = rng.random((n, N_LABELS), dtype=np.float32) < 0.5
    source = np.where(human, Source.HUMAN, np.where(filled, np.where(teacher, Source.TEACHER, Source.PROPAGATED),
                                                    Source.UNKNOWN)).astype(np.uint8)
    del teacher
    return PartialLabels(values=values, known=human | filled, weight=weight, source=source,
                         label_names=[f"label_{j:03d}" for j in range(N_LABELS)],
                         ids=[f"img_{i:07d}.jpg" for i in range(n)])


def digest(table) -> str:
    """SHA-256 of the four cell arrays, the ids and the label names: equal tables, equal digests."""
    h = hashlib.sha256()
    for name in ("values", "known", "weight", "source"):
        h.update(np.ascontiguousarray(getattr(table, name)).tobytes())
    h.update("\0".join(table.ids).encode("utf-8", "surrogatepass"))
    h.update("\0".join(table.label_names).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def save_worker(n: int, path: Path, repeats: int) -> dict:
    table = make_table(n)
    times, cpu = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        table.save(path)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    files = [path] + ([path.with_name(path.name + ".meta.json")] if path.suffix == ".csv" else [])
    array_bytes = sum(getattr(table, name).nbytes for name in ("values", "known", "weight", "source"))
    return {"save_seconds": statistics.median(times), "save_runs": times, "save_cpu": statistics.median(cpu),
            "file_bytes": sum(f.stat().st_size for f in files), "array_bytes": array_bytes,
            "digest": digest(table)}


def load_worker(path: Path) -> dict:
    from ssl_multilabel.labels import PartialLabels

    rss_before = _peak_rss_gb()
    start, cpu_start = time.perf_counter(), time.process_time()
    table = PartialLabels.load(path, require_sidecar=path.suffix == ".csv")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    rss_peak = _peak_rss_gb()
    return {"load_seconds": seconds, "load_cpu": cpu, "rss_before_gb": rss_before, "rss_peak_gb": rss_peak,
            "digest": digest(table), "load_avg": os.getloadavg()[0]}


def _subprocess(*args: str) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", *args]
    logger.info("B9: %s", " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"B9 worker {args} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(n: int, fmt: str, repeats: int, folder: Path) -> dict:
    path = folder / f"t{n}{SUFFIX[fmt]}"
    load_start = os.getloadavg()[0]
    saved = _subprocess("save", str(n), str(path), str(repeats))
    loads = [_subprocess("load", str(path)) for _ in range(repeats)]
    for f in folder.iterdir():
        f.unlink()
    return {
        "n": n, "format": fmt, "save_seconds": saved["save_seconds"], "save_runs": saved["save_runs"],
        "save_cpu": saved["save_cpu"], "load_cpu": statistics.median(r["load_cpu"] for r in loads),
        "load_avg": (load_start, loads[-1]["load_avg"]),
        "load_seconds": statistics.median(r["load_seconds"] for r in loads),
        "load_runs": [r["load_seconds"] for r in loads],
        "rss_peak_gb": max(r["rss_peak_gb"] for r in loads), "rss_before_gb": loads[0]["rss_before_gb"],
        "file_bytes": saved["file_bytes"], "array_bytes": saved["array_bytes"],
        "exact": all(r["digest"] == saved["digest"] for r in loads),
    }


def render(results: list[dict], args) -> str:
    by = {(r["n"], r["format"]): r for r in results}
    ratios = []
    for n in sorted({r["n"] for r in results}):
        csv, npz = by.get((n, "csv")), by.get((n, "npz"))
        if csv and npz:
            ratios.append({
                "n": n,
                "save: CSV / npz": csv["save_seconds"] / npz["save_seconds"],
                "load: CSV / npz": csv["load_seconds"] / npz["load_seconds"],
                "save CPU: CSV / npz": csv["save_cpu"] / npz["save_cpu"],
                "load CPU: CSV / npz": csv["load_cpu"] / npz["load_cpu"],
                "file: CSV / npz": csv["file_bytes"] / npz["file_bytes"],
                "load peak RSS: CSV / npz": csv["rss_peak_gb"] / npz["rss_peak_gb"],
            })
    rows = [{
        "n": r["n"], "format": r["format"] + (" + sidecar" if r["format"] == "csv" else ""),
        "save (s)": r["save_seconds"], "load (s)": r["load_seconds"],
        "save CPU (s)": r["save_cpu"], "load CPU (s)": r["load_cpu"],
        "file (MB)": r["file_bytes"] / 1e6, "file / arrays in memory": r["file_bytes"] / r["array_bytes"],
        "load peak RSS (GB)": r["rss_peak_gb"], "RSS after imports (GB)": r["rss_before_gb"],
        "exact round trip": "yes" if r["exact"] else "NO",
        "runs (save; load, s)": "; ".join(", ".join(f"{t:.2f}" for t in r[k]) for k in ("save_runs", "load_runs")),
        "load avg 1 min (start → end)": f"{r['load_avg'][0]:.1f} → {r['load_avg'][1]:.1f}",
    } for r in results]
    checks = []
    for r in results:
        if r["format"] == "npz" and r["n"] >= 1_000_000:
            size = r["file_bytes"] / r["array_bytes"]
            verdict = lambda ok: "holds" if ok else "fails"  # noqa: E731
            checks.append(
                f"- n = {r['n']:,} x {N_LABELS}, binary: save {r['save_seconds']:.2f} s and load "
                f"{r['load_seconds']:.2f} s (target ≤ {TARGET_SECONDS:.0f} s each: "
                f"{verdict(max(r['save_seconds'], r['load_seconds']) <= TARGET_SECONDS)}), file {size:.3f}x the "
                f"arrays' {r['array_bytes'] / 1e9:.2f} GB in memory (target ≤ {TARGET_SIZE_RATIO:.0f}x: "
                f"{verdict(size <= TARGET_SIZE_RATIO)}), load peak RSS {r['rss_peak_gb']:.2f} GB (target ≤ "
                f"{TARGET_RSS_GB:.0f} GB: {verdict(r['rss_peak_gb'] <= TARGET_RSS_GB)}); exact round trip: "
                f"{'yes' if r['exact'] else 'NO'}."
            )
    parts = ["## B9: label tables", ""]
    if ratios:
        parts += ["Ratios (CSV path / binary path; above 1: the binary table is faster / smaller):", "",
                  markdown_table(ratios), ""]
    if checks:
        parts += ["Targets (issue 19):", *checks, ""]
    parts += [
        f"{N_LABELS} labels; {P_HUMAN:.0%} of the cells human labels, {P_FILLED:.0%} filled (soft values, "
        "weights in (0, 1], propagated / teacher), the rest unknown. `PartialLabels.save` / `load` with a "
        "`.npz` path (one uncompressed archive of the four arrays, ids and names as UTF-8 bytes) against "
        "a `.csv` path (the wide CSV plus its JSON sidecar, read with `require_sidecar=True`). One "
        "subprocess per save and per load; peak RSS from `resource.getrusage`, imports included. Median "
        f"of {args.repeats} runs ({args.csv_repeats} for the CSV; each listed); loads read a file still in the page cache. "
        "'file / arrays in memory': bytes on disk over the nbytes of values, known, weight and source "
        f"(10 bytes per cell). {os.cpu_count()} cores, shared with other jobs (load average listed): wall "
        "times are inflated by them; the CPU time of the process is the steadier figure.",
        "",
        markdown_table(rows),
    ]
    return "\n".join(parts)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 rows both formats, 200,000 binary")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--rows", nargs="+", default=None, metavar="N:FORMATS",
                        help="sizes and formats, e.g. 200000:csv,npz 1000000:npz (the default)")
    parser.add_argument("--repeats", type=int, default=3, help="save and load runs per size, binary format")
    parser.add_argument("--csv-repeats", type=int, default=1, help="save and load runs per size, CSV (default 1)")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Run B9; returns one result dict per size and format."""
    args = get_args_parser().parse_args(argv)
    if args.worker:
        kind, *rest = args.worker
        result = save_worker(int(rest[0]), Path(rest[1]), int(rest[2])) if kind == "save" else load_worker(Path(rest[0]))
        print(json.dumps(result))
        return []
    plan = args.rows or (["20000:csv,npz", "200000:npz"] if args.quick else ["200000:csv,npz", "1000000:npz"])
    results = []
    with tempfile.TemporaryDirectory(prefix="b9-") as folder:
        for spec in plan:
            n, _, formats = spec.partition(":")
            for fmt in (formats or "csv,npz").split(","):
                results.append(measure(int(n), fmt, args.csv_repeats if fmt == "csv" else args.repeats, Path(folder)))
                logger.info("B9: %s", results[-1])
    body = render(results, args)
    print(body)
    if not args.no_write:
        write_section(SECTION, body)
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    main()
