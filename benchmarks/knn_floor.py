"""B1 at n = 100,000: what a kNN graph of B1's data costs, exact and approximate (recall against time).

    python benchmarks/knn_floor.py            # n = 100,000 (writes the section "B1-floor")
    python benchmarks/knn_floor.py --n 20000 --no-write

Issue 19 asks for our propagation to be 3x faster than graphlearning's Laplace (graph + solve) at
100,000 points of B1's data, and, if exact search is the floor there, for an approximate index with
recall@10 >= 0.95 that is faster. This script measures, on B1's data (`propagation.synthetic`), in
one process and one after the other:

- the exact graph of `knn_search(index="flat")`, and its two parts measured apart on the same
  blocks: the matrix products (numpy BLAS, all cores) and FAISS's k-best heaps (one core, one
  pass over every score, as in the search); FAISS overlaps and blocks them its own way, so the
  parts need not add up to the whole;
- the approximate indexes of `knn_search`: IVF-Flat at nprobe 16 / 64 / 128 (of nlist =
  4 sqrt(n)) and HNSW-Flat at a few (M, efSearch, efConstruction);
- graphlearning's own graph search (`gl.weightmatrix.knnsearch(X, 10)`, annoy; 9 neighbours per
  point, the point itself counted among its 10) and its whole Laplace run (graph + solve, as B1);
- our whole propagation (`KNNLabelPropagation`, exact graph), as B1 times it.

Recall@10: the share of the exact 10 nearest other points found, on 2,000 sampled points (9 for
graphlearning's lists). One timed run each (the machine is shared; the load average is listed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _report import markdown_table, write_section  # noqa: E402
from propagation import K, graphlearning_recall, partial, run_gl_laplace, synthetic  # noqa: E402

IVF_PROBES = (16, 64, 128)
HNSW = ((8, 64, 40), (16, 128, 40), (32, 64, 64))  # (M, efSearch, efConstruction); the last: our defaults


def _timed(fn):
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - start, time.process_time() - cpu


def _exact_parts(X: np.ndarray, block: int = 1024) -> tuple[float, float]:
    """Seconds of the exact search's matrix products alone (all BLAS threads) and of its heaps
    alone (one thread, every block's scores pushed once), on the same 1,024 x 1,024 blocks."""
    import faiss

    n = len(X)
    start = time.perf_counter()
    for q0 in range(0, n, block):
        chunk = X[q0:q0 + block]
        for s in range(0, n, block):
            chunk @ X[s:s + block].T
    products = time.perf_counter() - start
    heap = faiss.ResultHeap(block, K + 1, keep_max=True)
    scores = np.ascontiguousarray(X[:block] @ X[:block].T)
    ids = np.arange(n, dtype=np.int64)
    faiss.omp_set_num_threads(1)
    start = time.perf_counter()
    for _ in range(0, n, block):  # one query block's pass over all points, n / block times
        for s in range(0, n, block):
            heap.heaps.addn_with_ids(block, faiss.swig_ptr(scores), faiss.swig_ptr(ids[s:]), 0, 0, block)
    heaps = time.perf_counter() - start
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return products, heaps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="points (default 100,000)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    from ssl_multilabel.propagation import KNNLabelPropagation, NeighborIndex, knn_search, recall_at_k

    n = args.n
    X, Y, known = synthetic(n)
    Yp = partial(Y, known)
    load_start = os.getloadavg()[0]
    rows = []

    sample = np.sort(np.random.default_rng(0).choice(n, min(2_000, n), replace=False))  # graph_recall's rows
    _, hits = NeighborIndex(X, "l2", "flat", progress=False).search(X[sample], K + 1)
    exact_lists = np.array([[h for h in row if h != q][:K] for q, row in zip(sample, hits)])
    # How much nearer the 10th neighbour is than a random point (squared L2 on unit rows).
    tenth = np.sum((X[sample] - X[exact_lists[:, -1]]) ** 2, axis=1)
    anyone = np.sum((X[sample] - X[np.random.default_rng(1).integers(0, n, len(sample))]) ** 2, axis=1)
    contrast = float(np.median(np.sqrt(tenth / np.maximum(anyone, 1e-12))))

    def graph_row(name: str, index: str, params: dict) -> None:
        (_, neighbours, _), seconds, cpu = _timed(lambda: knn_search(X, K, index=index, progress=False, **params))
        rows.append({"graph": name, "recall@10": recall_at_k(neighbours[sample], exact_lists), "time (s)": seconds,
                     "CPU (s)": cpu})
        print(rows[-1], flush=True)

    graph_row("exact (flat)", "flat", {})
    for probe in IVF_PROBES:
        graph_row(f"IVF-Flat nprobe={probe}", "ivf", {"nprobe": probe})
    for m, ef, efc in HNSW:
        graph_row(f"HNSW M={m} efSearch={ef} efConstruction={efc}", "hnsw",
                  {"hnsw_m": m, "ef_search": ef, "ef_construction": efc})
    gl_recall, gl_seconds, gl_cpu = None, None, None
    try:
        import graphlearning as gl

        _, gl_seconds, gl_cpu = _timed(lambda: gl.weightmatrix.knnsearch(X, K))
        gl_recall = graphlearning_recall(X)
        rows.append({"graph": "graphlearning knnsearch (annoy; 9 neighbours)", "recall@10": gl_recall,
                     "time (s)": gl_seconds, "CPU (s)": gl_cpu})
    except ImportError:
        rows.append({"graph": "graphlearning", "recall@10": "—", "time (s)": "not installed", "CPU (s)": "—"})
    products, heaps = _exact_parts(X)
    _, ours_seconds, ours_cpu = _timed(lambda: KNNLabelPropagation(n_neighbors=K, progress=False).fit(X, Yp))
    laplace = None
    if gl_recall is not None:
        _, laplace, _ = _timed(lambda: run_gl_laplace(X, Yp, cap=1e9))
    load_end = os.getloadavg()[0]

    exact = rows[0]["time (s)"]
    fast_enough = [r for r in rows[1:] if isinstance(r["recall@10"], float) and r["recall@10"] >= 0.95
                   and isinstance(r["time (s)"], float) and r["time (s)"] < exact and not r["graph"].startswith("graphl")]
    lines = [
        f"## B1-floor: the kNN graph of B1's data at n = {n:,}", "",
        ("Why B1's 3× target fails at this size. " if laplace and laplace < 3 * ours_seconds else "") + (
            f"Whole runs: ours (exact graph + diffusion) {ours_seconds:.1f} s, graphlearning Laplace (its annoy "
            f"graph + solve) {laplace:.1f} s: {laplace / ours_seconds:.2f}×; 3× would need ours in "
            f"{laplace / 3:.1f} s. " if laplace else f"Ours (exact graph + diffusion) {ours_seconds:.1f} s. ")
        + f"The exact graph alone takes {exact:.1f} s, and both of its parts touch all n² = {n * n:.1e} pairs: "
          f"measured apart, the same matrix products in numpy (all cores, 1,024-row blocks) take {products:.1f} s "
          f"and FAISS's k-best heaps {heaps:.1f} s on one core: the time goes into work over every pair, which "
          "only an approximate index avoids. "
        + ("No approximate index here reaches recall@10 ≥ 0.95 in less time than exact search: "
           if not fast_enough else f"Faster than exact with recall ≥ 0.95: {', '.join(r['graph'] for r in fast_enough)}. ")
        + "B1's points (`make_multilabel_classification`, 64 count features, rows L2-normalised) have "
          f"little local structure for an index to exploit: a point's 10th nearest neighbour is at "
          f"{contrast:.2f} of the distance of a random point (median over the sampled points). " + (f"graphlearning's own graph finds {gl_recall:.0%} of its 9 exact neighbours."
                       if gl_recall is not None else ""), "",
        markdown_table(rows), "",
        f"One timed run per row, in one process; recall on 2,000 sampled points. Load average (1 min): "
        f"{load_start:.2f} at the start, {load_end:.2f} at the end (2 cores).",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("B1-floor", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
