"""B2: propagation at scale: wall time, peak memory and approximate-index recall.

Protocol: `../shared/guide/BENCHMARKS.md`, section B2. Data: a Gaussian mixture in d = 64 with 500
centres, each centre with its own set of 1-3 of L = 20 labels (a point carries its centre's set),
`random-cells 0.05`. For each size, a fresh subprocess generates the data, then times graph +
diffusion + fill with our propagation module (`knn_search` + `affinity_from_neighbors`, i.e.
`knn_graph`, then `fill_unknown`), so
`resource.getrusage` reports the peak RSS of that run alone. The recall@k of the graph's neighbour lists is measured against exact FAISS search on
sampled queries (outside the timed region). The hidden-cell mAP is reported as a sanity check.

Default sizes: n = 100,000 with the exact index, n = 1,000,000 with the library's approximate
index (`auto`: IVF-Flat with a recall-checked nprobe) and n = 3,000,000 with the memory-bounded
IVF-PQ index (`ivfpq`: 16-byte codes per point, candidates re-ranked exactly); `--quick` runs
n = 20,000 exact (flat) and 50,000 with IVF. The index's own size is reported beside the peak RSS.

Usage: `python benchmarks/propagation_scale.py [--quick] [--no-write]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

_HERE = Path(__file__).resolve().parent
for _path in (str(_HERE), str(_HERE.parent)):  # `_report` and the package, when run as a script
    if _path not in sys.path:
        sys.path.insert(0, _path)

from _report import markdown_table, write_section  # noqa: E402

from ssl_multilabel._files import atomic_write_text  # noqa: E402

logger = logging.getLogger(__name__)

SECTION = "B2"
K = 10
D = 64
N_LABELS = 20
N_CENTRES = 500
# Within-centre std, centres ~ N(0, I): noise as large as the centres' spread, so clusters touch.
# At 1.5 the noise dominates every direction and IVF recall@10 at n = 100,000 (default nprobe) drops
# to about 0.82 (0.999 at 1.0): a near-uniform cloud, not what embeddings look like.
NOISE = 1.0
TARGET_SECONDS, TARGET_RSS_GB, TARGET_RECALL = 600.0, 6.0, 0.9


def mixture(
    n: int, seed: int = 0, p_known: float = 0.05, noise: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(X float32 (n, 64), Y_true int8 (n, 20), known bool (n, 20))`, generated in blocks to cap memory."""
    noise = NOISE if noise is None else noise
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_CENTRES, D)).astype(np.float32)
    label_sets = np.zeros((N_CENTRES, N_LABELS), dtype=np.int8)
    for c in range(N_CENTRES):
        label_sets[c, rng.choice(N_LABELS, size=rng.integers(1, 4), replace=False)] = 1
    assignment = rng.integers(0, N_CENTRES, size=n)
    X = np.empty((n, D), dtype=np.float32)
    block = 100_000
    for start in range(0, n, block):
        stop = min(n, start + block)
        X[start:stop] = centres[assignment[start:stop]]
        X[start:stop] += noise * rng.standard_normal((stop - start, D), dtype=np.float32)
    known = rng.random((n, N_LABELS), dtype=np.float32) < p_known
    return X, label_sets[assignment], known


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


def exact_neighbours(X: np.ndarray, queries: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Exact k nearest neighbours (self excluded) of `X[queries]` among all rows of X.

    The library's flat index (numpy matrix products into FAISS heaps); FAISS's `IndexFlatL2` computes
    the same with the generic OpenBLAS kernel of the faiss-cpu wheel, minutes at n = 3,000,000.
    """
    from ssl_multilabel.propagation import NeighborIndex

    _, ids = NeighborIndex(X, metric, "flat", progress=False).search(X[queries], k + 1)
    # Drop the query itself wherever it appears (ties can move it off the first column).
    out = np.empty((len(queries), k), dtype=np.int64)
    for row, (q, hits) in enumerate(zip(queries, ids)):
        out[row] = [h for h in hits if h != q][:k]
    return out


def _index_gb(neighbor_index) -> float:
    """Memory of the search structure itself: FAISS's serialised index, or the exact index's array."""
    import faiss

    if neighbor_index._index is None:
        return neighbor_index._data.nbytes / 1024**3
    size = faiss.serialize_index(neighbor_index._index).nbytes
    coarse = getattr(neighbor_index, "_coarse", None)
    return (size + (coarse._data.nbytes if coarse is not None else 0)) / 1024**3


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of each exact neighbour list found in the approximate one."""
    hits = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx, exact))
    return hits / exact.size


def hidden_map_sample(Y: np.ndarray, scores: np.ndarray, hidden: np.ndarray, rows: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    aps = []
    for j in range(Y.shape[1]):
        mask = hidden[rows, j]
        y, s = Y[rows, j][mask], scores[rows, j][mask]
        if 0 < y.sum() < len(y):
            aps.append(average_precision_score(y, s))
    return float(np.mean(aps)) if aps else float("nan")


def worker(n: int, index: str, queries: int, seed: int, noise: float) -> dict:
    """One size in this process: generate, time graph + diffusion + fill, then measure recall and mAP.

    The pipeline is the library's: `knn_graph`, then `fill_unknown`, which diffuses once per
    cross-fitting fold it needs (a fold's known cells left out of the seeds, to fit per-label
    thresholds; one fold at a million points, five at 100,000) and once with every seed, and fills
    the confident unknown cells. `diffuse` is passed as a scorer callable only to time the solves
    and keep the final probabilities for the mAP; it is what `fill_unknown` runs when given the graph.
    """
    from ssl_multilabel.labels import PartialLabels, Source
    from ssl_multilabel.propagation import affinity_from_neighbors, diffuse, fill_unknown, knn_search

    X, Y, known = mixture(n, seed, noise=noise)
    labels = PartialLabels.from_array(np.where(known, Y, -1).astype(np.float32))
    rss_data = _peak_rss_gb()
    solves: list = []

    def scorer(seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        begin = time.perf_counter()
        result = diffuse(W, seeds, progress=False)
        solves.append((time.perf_counter() - begin, result))
        return result.probability, result.confidence

    start, cpu_start = time.perf_counter(), time.process_time()
    scores, neighbours, neighbor_index = knn_search(X, K, index=index, progress=False)
    W = affinity_from_neighbors(scores, neighbours)
    del scores
    graph_seconds = time.perf_counter() - start
    filled = fill_unknown(labels, scorer)
    total_seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    rss_run = _peak_rss_gb()
    result = solves[-1][1]
    diffusion_seconds = sum(seconds for seconds, _ in solves)
    new = filled.source == Source.PROPAGATED
    fill_precision = float((filled.values[new] == Y[new]).mean()) if new.any() else float("nan")
    n_filled, n_unknown = int(new.sum()), int((~known).sum())
    del filled, labels

    rng = np.random.default_rng(seed + 1)
    # Above 2,000,000 points 2,000 recall queries (an exact search of 10,000 against 3e6 points is
    # 4e12 flops, many minutes on the loaded machine); the table reports the count.
    sample = np.sort(rng.choice(n, size=min(queries if n <= 2_000_000 else min(queries, 2_000), n), replace=False))
    # The graph's own neighbour lists against exact search (numpy products, as the library's flat index).
    recall = recall_at_k(neighbours[sample], exact_neighbours(X, sample, K, neighbor_index.metric))
    index_gb = _index_gb(neighbor_index)
    mean_ap = hidden_map_sample(Y, result.probability, ~known, rng.choice(n, size=min(n, 200_000), replace=False))
    return {
        "n": n, "noise": noise, "index": neighbor_index.kind, "graph_seconds": graph_seconds,
        "diffusion_seconds": diffusion_seconds, "total_seconds": total_seconds, "cpu_seconds": cpu_seconds,
        "cg_iterations": "+".join(str(int(r.n_iter)) for _, r in solves),
        "converged": bool(all(np.all(r.converged) for _, r in solves)),
        "rss_data_gb": rss_data, "rss_peak_gb": rss_run, "recall": recall, "queries": len(sample),
        "index_gb": index_gb, "recall_estimate": neighbor_index.recall_estimate, "graph_nnz": int(W.nnz),
        "map": mean_ap, "filled_share": n_filled / max(n_unknown, 1), "fill_precision": fill_precision,
        "index_params": {k: getattr(neighbor_index, k) for k in ("nlist", "nprobe", "pq_m", "refine")
                         if hasattr(neighbor_index, k)},
    }


def run_size(n: int, index: str, queries: int, seed: int, noise: float) -> dict:
    """Run `worker` in a fresh interpreter so the peak RSS belongs to this size alone."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(n), index,
               "--queries", str(queries), "--seed", str(seed), "--noise", str(noise)]
    logger.info("B2: %s", " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"B2 worker n={n} index={index} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def render(results: list[dict], args) -> str:
    rows, checks = [], []
    for r in results:
        rows.append({
            "n": r["n"],
            "index": r["index"] + "".join(f" {k}={v}" for k, v in r.get("index_params", {}).items()),
            "time / 10 min": r["total_seconds"] / TARGET_SECONDS,
            "peak RSS / 6 GB": r["rss_peak_gb"] / TARGET_RSS_GB,
            f"recall@{K}": r["recall"],
            "auto's sampled recall": "—" if r.get("recall_estimate") is None else r["recall_estimate"],
            "graph + diffusion + fill (s)": r["total_seconds"],
            "CPU, all threads (s)": r["cpu_seconds"],
            "graph (s)": r["graph_seconds"],
            "diffusion, all solves (s)": r["diffusion_seconds"],
            "rest of fill (s)": r["total_seconds"] - r["graph_seconds"] - r["diffusion_seconds"],
            "CG iterations": f"{r['cg_iterations']}{'' if r['converged'] else ' (not converged)'}",
            "peak RSS (GB)": r["rss_peak_gb"],
            "index (GB)": r.get("index_gb", "—"),
            "graph entries": r.get("graph_nnz", "—"),
            "RSS after data (GB)": r["rss_data_gb"],
            "hidden-cell mAP": r["map"],
            "unknown cells filled": r["filled_share"],
            "precision of filled cells": r["fill_precision"],
            "recall queries": r["queries"],
            "load avg 1 min (start → end)": "—" if "load" not in r else f"{r['load'][0]:.2f} → {r['load'][1]:.2f}",
        })
        if r["n"] >= 3_000_000:
            checks.append(
                f"- n = {r['n']:,} ({r['index']}, memory-bounded: the index takes {r.get('index_gb', float('nan')):.2f} GB): "
                f"{r['total_seconds']:.0f} s, peak RSS {r['rss_peak_gb']:.2f} GB of the machine's 24, recall@{K} "
                f"{r['recall']:.3f}, hidden-cell mAP {r['map']:.3f}."
            )
        elif r["n"] >= 1_000_000:
            checks.append(
                f"- n = {r['n']:,}: {r['total_seconds']:.0f} s (target < {TARGET_SECONDS:.0f} s: "
                f"{'holds' if r['total_seconds'] < TARGET_SECONDS else 'fails'}), peak RSS {r['rss_peak_gb']:.2f} GB "
                f"(target < {TARGET_RSS_GB:.0f}: {'holds' if r['rss_peak_gb'] < TARGET_RSS_GB else 'fails'}), "
                f"recall@{K} {r['recall']:.3f} (target ≥ {TARGET_RECALL}: "
                f"{'holds' if r['recall'] >= TARGET_RECALL else 'fails'})."
            )
    parts = ["## B2: propagation at scale", ""]
    if checks:
        parts += ["Targets:", *checks, ""]
    parts += [
        f"Gaussian mixture, d = {D}, L = {N_LABELS}, {N_CENTRES} centres with 1-3 labels each, noise std "
        f"{args.noise}, `random-cells 0.05`, k = {K}. One subprocess per size (peak RSS via `resource.getrusage`, "
        "including the data); wall times on the shared 2-core machine are inflated by other jobs, the CPU "
        "time (all threads) is the steadier figure. Pipeline: `knn_graph` (as `knn_search` + `affinity_from_neighbors`, so "
        "the neighbour lists can be checked) then `fill_unknown` (one diffusion per cross-fitting fold it needs, "
        "the fold's known cells left out of the seeds, to fit per-label "
        "thresholds on held-out known cells, one with every seed; default target precision 0.9). Recall@k of "
        "the graph's neighbour lists against exact search on sampled queries (`auto's sampled recall`: the estimate "
        "`index='auto'` tuned its nprobe with, on its own 1,000 points); `index (GB)`: the search structure alone "
        "(IVF-PQ: 16-byte codes, ids and centroids; flat: the features); hidden-cell mAP on up to 200,000 sampled rows. One run per size (no baseline: the targets "
        "are absolute). The noise level decides how hard approximate search is: at std 1.5 (noise swamping "
        "the centres) the default IVF reached recall@10 of only 0.82 at n = 100,000 in a side check, 0.999 at 1.0. "
        f"Load average: 1-minute figure at the start and end of each size ({os.cpu_count()} cores; other jobs share the machine).",
        "",
        markdown_table(rows),
    ]
    return "\n".join(parts)


# === Cost model (docs/scale.md) ===

SCALE_DOC = _HERE.parent / "docs" / "scale.md"
MODEL_BEGIN, MODEL_END = "<!-- BEGIN B2 cost model -->", "<!-- END B2 cost model -->"
GB = 1024**3


def read_b2_table(doc: Path | None = None) -> list[dict]:
    """The B2 rows this script last wrote to docs/benchmarks.md, numbers as floats."""
    from _report import DOC

    text = (doc or DOC).read_text()
    section = text.split(f"<!-- BEGIN {SECTION} -->", 1)[1].split(f"<!-- END {SECTION} -->", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        row = {}
        for key, cell in zip(header, cells):
            try:
                row[key] = float(cell)
            except ValueError:
                row[key] = cell
        rows.append(row)
    return rows


def cost_model(rows: list[dict]) -> dict:
    """Constants of the cost model, fitted on the measured B2 rows (see docs/scale.md for the formulas).

    - graph time of an IVF index `t = g * n^1.5 * d` (coarse assignment `n * nlist * d` and cell scans
      `n * nprobe * n / nlist`, both `~ n^1.5` with `nlist = 4 sqrt(n)`): `g` from the largest IVF run;
    - exact graph time `t = e * n^2 * d`;
    - diffusion time `t = f * n * iterations * (k + 2L)` (each CG iteration one sparse product over
      `~ k` entries per row plus vector updates, for `2L` columns);
    - peak memory per point (bytes), measured, at each size.
    """
    model: dict = {"rows": []}
    for r in rows:
        n = r["n"]
        per_solve = str(r["CG iterations"]).split(" ")[0].split("+")
        iterations = sum(float(x) for x in per_solve) + 4 * len(per_solve)  # + 4 smoothing products per solve
        entry = {
            "n": n, "index": str(r["index"]).split(" ")[0],
            "graph_s": r["graph (s)"], "diffusion_s": r["diffusion, all solves (s)"], "total_s": r["graph + diffusion + fill (s)"],
            "cpu_s": r["CPU, all threads (s)"], "peak_gb": r["peak RSS (GB)"], "bytes_per_point": r["peak RSS (GB)"] * GB / n,
            "recall": r[f"recall@{K}"], "map": r["hidden-cell mAP"], "iterations": iterations,
            "index_gb": r.get("index (GB)", "—"),
        }
        entry["graph_coef"] = entry["graph_s"] / (n**2 * D if entry["index"] == "flat" else n**1.5 * D)
        entry["diffusion_coef"] = entry["diffusion_s"] / (n * iterations * (K + 2 * N_LABELS))
        model["rows"].append(entry)
    approximate = [e for e in model["rows"] if e["index"] != "flat"]
    exact = [e for e in model["rows"] if e["index"] == "flat"]
    largest = max(approximate, key=lambda e: e["n"]) if approximate else None
    model["g"] = largest["graph_coef"] if largest else float("nan")
    model["e"] = max((e["graph_coef"] for e in exact), default=float("nan"))
    model["f"] = max(e["diffusion_coef"] for e in model["rows"])
    model["bytes_per_point"] = largest["bytes_per_point"] if largest else float("nan")
    model["largest"] = largest
    return model


def _engine_rows(model: dict, sizes: Sequence[float], memory_gb: float = 24.0) -> list[dict]:
    rows = []
    iterations = model["largest"]["iterations"] if model["largest"] else 34
    for n in sizes:
        memory = model["bytes_per_point"] * n / GB
        graph = model["g"] * n**1.5 * D
        diffusion = model["f"] * n * iterations * (K + 2 * N_LABELS)
        rows.append({
            "n": f"{n:.0e}", "kind": "projected",
            "peak memory (GB)": memory, "24 GB machines by memory": max(1, int(np.ceil(memory / (0.8 * memory_gb)))),
            "graph, one 2-core machine (h)": graph / 3600, "diffusion, one 2-core machine (h)": diffusion / 3600,
            "exact graph instead (years)": model["e"] * n**2 * D / (3600 * 24 * 365),
        })
    return rows


def render_cost_model(rows: list[dict]) -> str:
    model = cost_model(rows)
    measured = [{
        "n": e["n"], "index": e["index"], "kind": "measured", "graph (s)": e["graph_s"], "diffusion (s)": e["diffusion_s"],
        "graph + diffusion + fill (s)": e["total_s"], "CPU (s)": e["cpu_s"], "peak RSS (GB)": e["peak_gb"],
        "bytes per point at peak": e["bytes_per_point"], "index (GB)": e["index_gb"], f"recall@{K}": e["recall"],
        "hidden-cell mAP": e["map"], "CG + smoothing products": e["iterations"],
        "graph coefficient": e["graph_coef"], "diffusion coefficient": e["diffusion_coef"],
    } for e in sorted(model["rows"], key=lambda e: e["n"])]
    projected = _engine_rows(model, [1e7, 1e8, 1e9])
    return "\n".join([
        MODEL_BEGIN,
        f"Measured (B2, d = {D}, k = {K}, L = {N_LABELS}; from docs/benchmarks.md, written by "
        "`python benchmarks/propagation_scale.py`). `graph coefficient` is seconds / (n^1.5 d) for IVF indexes and "
        "seconds / (n^2 d) for exact search; `diffusion coefficient` is seconds / (n x products x (k + 2L)):",
        "",
        markdown_table(measured),
        "",
        f"Fitted: graph (IVF) g = {model['g']:.3g} s, exact e = {model['e']:.3g} s, diffusion f = {model['f']:.3g} s, "
        f"peak memory {model['bytes_per_point']:.0f} bytes per point (the largest, memory-bounded run), so one 24 GB "
        f"machine holds about {0.8 * 24 * GB / model['bytes_per_point'] / 1e6:.1f} million points at 80 % of its memory "
        "(projected from the measured bytes per point, not run).",
        "",
        "**Projected** (not measured: the model above at d = 64, k = 10, L = 20, the largest run's CG iterations, "
        "one 2-core machine's speed; machines counted at 80 % of 24 GB):",
        "",
        markdown_table(projected),
        "",
        "Generated by `python benchmarks/propagation_scale.py --cost-model` from the B2 table.",
        MODEL_END,
    ])


def write_cost_model(rows: list[dict]) -> str:
    """Replace the generated block of docs/scale.md (between its markers) with the fitted model."""
    block = render_cost_model(rows)
    text = SCALE_DOC.read_text()
    if MODEL_BEGIN not in text or MODEL_END not in text:
        raise RuntimeError(f"{SCALE_DOC} has no {MODEL_BEGIN} / {MODEL_END} markers for the cost model")
    head, rest = text.split(MODEL_BEGIN, 1)
    atomic_write_text(SCALE_DOC, head + block + rest.split(MODEL_END, 1)[1])
    return block


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 20,000 exact and 50,000 with IVF")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--runs", nargs="+", default=None, metavar="N:INDEX",
                        help="sizes and indexes, e.g. 100000:flat 1000000:auto 3000000:ivfpq")
    parser.add_argument("--queries", type=int, default=None, help="recall queries (default 10,000; 2,000 quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=NOISE, help=f"within-centre std (default {NOISE})")
    parser.add_argument("--cost-model", action="store_true",
                        help="only refit the cost model of docs/scale.md from the B2 table in docs/benchmarks.md")
    parser.add_argument("--worker", nargs=2, metavar=("N", "INDEX"), help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Run B2; returns one result dict per size."""
    args = get_args_parser().parse_args(argv)
    if args.worker:
        print(json.dumps(worker(int(args.worker[0]), args.worker[1], args.queries or 10_000, args.seed, args.noise)))
        return []
    if args.cost_model:
        block = render_cost_model(read_b2_table()) if args.no_write else write_cost_model(read_b2_table())
        print(block)
        return []
    runs = args.runs or (["20000:flat", "50000:ivf"] if args.quick else ["100000:flat", "1000000:auto", "3000000:ivfpq"])
    queries = args.queries or (2_000 if args.quick else 10_000)
    results = []
    for spec in runs:
        n, _, index = spec.partition(":")
        load_start = os.getloadavg()
        results.append(run_size(int(n), index or "auto", queries, args.seed, args.noise))
        results[-1]["load"] = (load_start[0], os.getloadavg()[0])
    body = render(results, args)
    print(body)
    if not args.no_write:
        write_section(SECTION, body)
        if SCALE_DOC.exists() and not args.quick:
            write_cost_model(read_b2_table())
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    main()
