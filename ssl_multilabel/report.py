"""The HTML report of a run directory: one self-contained file, plots embedded as PNG.

`write_report(run_dir)` reads what the runner and the steps wrote (`recipe.json`, `state.json`,
each step's `metrics.json`, `per_label.csv`, `predictions.npz`, `coverage.json`, `filled.npz`,
`history.json`, `examples.npz`) and writes `report.html` with:

- the run: recipe, seed, command, package versions, steps and their times;
- metrics of every evaluation and per-label average precision;
- label coverage before and after every fill (human / implied / propagated / teacher / unknown);
- precision-recall curves per label;
- confidence histograms of the filled (propagated / teacher) cells;
- training curves;
- a grid of example images with predicted and known labels.

The page has no script and no external resource: every image is a `data:image/png;base64` URI.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["write_report"]

logger = logging.getLogger(__name__)

_PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False}
_SOURCES = ("human", "implied", "propagated", "teacher", "unknown")
_COLORS = {"human": "#1f77b4", "implied": "#9467bd", "propagated": "#2ca02c", "teacher": "#ff7f0e", "unknown": "#c7c7c7"}
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f5f5f5}td.l,th.l{text-align:left}img.plot{max-width:100%;height:auto;display:block;margin:.5em 0}
.grid{display:flex;flex-wrap:wrap;gap:10px}.cell{width:150px;font-size:.75em;border:1px solid #eee;padding:4px}
.cell img{width:142px;height:auto;image-rendering:pixelated;display:block}.tp{color:#1a7f37}.fp{color:#b35900}.fn{color:#888}
.muted{color:#777;font-size:.9em}code{background:#f5f5f5;padding:0 .2em}
"""


# === Plot helpers ===


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    """The figure as an `<img>` with a base64 PNG data URI; closes the figure."""
    plt = _plt()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="plot" alt="plot" src="data:image/png;base64,{data}">'


def _array_png(image: np.ndarray) -> str:
    """A uint8 image `(H, W[, C])` as a base64 PNG data URI."""
    from PIL import Image

    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(image.astype(np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if np.isnan(value) else f"{value:.4f}"
    return _esc(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    head = "".join(f'<th class="{"l" if i < left else ""}">{_esc(h)}</th>' for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{_fmt(v)}</td>' for i, v in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# === Sections ===


def _status(state: dict[str, Any], records: list[dict[str, Any]], steps: list[dict[str, Any]]) -> str:
    """The run's status as the report tells it. A recipe's own last `Report` step writes the report
    while the run is still "running": every step before it has finished, so the run has."""
    status = state.get("status", "running")
    if status == "failed":
        return f"failed ({state.get('error', 'no error recorded')})"
    if status == "running" and steps and len(records) == len(steps) - 1 and steps[-1].get("type") == "Report":
        return "finished"
    return status


def _section_run(meta: dict[str, Any], records: list[dict[str, Any]], n_steps: int, status: str) -> str:
    recipe = meta.get("recipe", {})
    parts = [
        f"<p>Recipe <b>{_esc(recipe.get('name', ''))}</b>, seed {_esc(meta.get('seed'))}, created "
        f"{_esc(meta.get('created', ''))}, status <b>{_esc(status)}</b> ({len(records)} of {n_steps} steps finished when this report was written).</p>",
        f"<p class=\"muted\">Command: <code>{_esc(' '.join(meta.get('command') or []))}</code></p>",
    ]
    rows = []
    for r in records:
        metrics = r.get("metrics") or {}
        # A training step's loss is its last epoch's, its best val mAP that of its best epoch (`_final_metrics`).
        shown = ", ".join(f"{_SHOWN.get(k, k)}={_fmt(_metric(metrics, k))}" for k, v in metrics.items()
                          if isinstance(v, (int, float)) and k in ("mAP", "AUC", "micro_F1", "macro_F1", "cells_filled", "loss", "best_val_mAP"))
        if metrics.get("round_kept") == 0:
            shown += " (the student's figures; no student beat its teacher on validation: the teacher was kept)"
        if "keep" in metrics:  # NeighbourVote's check
            shown = "vote kept" if metrics["keep"] else "no vote: the check showed it hurting"
            figures = [f"{what} {100 * metrics[key + 'difference']:+.1f} ± {100 * metrics[key + 'difference_se']:.1f} points"
                       for what, key in (("cross-fitted mAP", ""), ("validation AUC", "validation_"))
                       if key + "difference" in metrics]
            if figures:
                shown += f" ({', '.join(figures)})"
        rows.append([f"{r['index'] + 1}. {r['name']}", r["type"], f"{r.get('seconds', 0):.1f}", shown])
    parts.append(_table(["step", "type", "seconds", "key figures"], rows, left=2))
    versions = meta.get("versions", {})
    parts.append('<p class="muted">' + ", ".join(f"{_esc(k)} {_esc(v)}" for k, v in versions.items()) + "</p>")
    return "<h2>Run</h2>" + "".join(parts)


_SHOWN = {"loss": "last-epoch loss", "best_val_mAP": "best val mAP"}


def _metric(metrics: dict[str, Any], key: str) -> Any:
    """An evaluation's figure for the metrics table; "not measurable" for a mean over labels when no
    label could be scored (`metrics.evaluate` reports 0.0 there)."""
    if metrics.get("n_labels_scored") == 0 and key in ("mAP", "AUC", "macro_F1", "macro_precision", "macro_recall"):
        return "not measurable"
    if metrics.get("n_known_cells") == 0 and key in ("micro_F1", "micro_precision", "micro_recall"):
        return "not measurable"  # no known cell: a micro mean over nothing
    if key in ("mAP", "best_val_mAP") and metrics.get(key) == 0.0:  # AP > 0 for any label with a known positive
        return "not measurable"
    return metrics.get(key, float("nan"))


def _section_metrics(run_dir: Path, evals: list[dict[str, Any]]) -> str:
    import pandas as pd

    if not evals:
        return "<h2>Metrics</h2><p>No evaluation step finished.</p>"
    plt = _plt()
    out = ["<h2>Metrics and per-label average precision</h2>"]
    keys = ("mAP", "AUC", "macro_F1", "micro_F1", "macro_precision", "macro_recall", "n_known_cells")
    # The threshold of the F1, precision and recall columns: two evaluations of one model at 0.5 and
    # 0.3 differ there alone.
    rows = [[r["name"], (r.get("info") or {}).get("split", ""), (r.get("info") or {}).get("threshold", "")]
            + [_metric(r["metrics"], k) for k in keys] for r in evals]
    out.append(_table(["step", "split", "threshold", *keys], rows, left=2))
    tables = []
    for r in evals:
        path = run_dir / r["dir"] / "per_label.csv"
        if path.is_file():
            tables.append((r["name"], pd.read_csv(path)))
    if tables:
        names = list(tables[-1][1]["label"])
        fig, ax = plt.subplots(figsize=(_per_label_width(len(names)), 3.2))
        width = 0.8 / len(tables)
        x = np.arange(len(names))
        for i, (name, table) in enumerate(tables):
            ap = table["AP"].to_numpy(dtype=float)
            at = x + i * width - 0.4 + width / 2
            ax.bar(at, np.nan_to_num(ap), width, label=name)
            for where in at[np.isnan(ap)]:  # a label this evaluation could not score: no bar, "n/a"
                ax.text(where, 0.02, "n/a", rotation=90, ha="center", va="bottom", fontsize=7)
        _label_ticks(ax, x, names)
        ax.set_ylim(0, 1)
        ax.set_ylabel("average precision")
        ax.legend(fontsize=8)
        ax.set_title("Per-label AP (known cells only; n/a: no known positive or no known negative)")
        out.append(_png(fig))
        last_name, last = tables[-1]
        out.append(f"<p>Per-label table of <b>{_esc(last_name)}</b>:</p>")
        out.append(_table(list(last.columns), last.values.tolist()))
    return "".join(out)


def _section_coverage(run_dir: Path, records: list[dict[str, Any]]) -> str:
    fills = [r for r in records if (run_dir / r["dir"] / "coverage.json").is_file()]
    if not fills:
        return "<h2>Label coverage</h2><p>No step filled labels.</p>"
    plt = _plt()
    out = ["<h2>Label coverage before and after each fill</h2>"]
    bars, names = [], []
    first = json.loads((run_dir / fills[0]["dir"] / "coverage.json").read_text())
    bars.append(first["before"]["total"])
    names.append("input")
    for r in fills:
        cov = json.loads((run_dir / r["dir"] / "coverage.json").read_text())
        bars.append(cov["after"]["total"])
        names.append(f"after {r['name']}")
    fig, ax = plt.subplots(figsize=(7, 0.55 * len(bars) + 1.2))
    left = np.zeros(len(bars))
    for source in _SOURCES:
        counts = np.array([b.get(source, 0) for b in bars], dtype=float)
        total = np.array([sum(b.values()) for b in bars], dtype=float)
        share = counts / np.maximum(total, 1)
        ax.barh(names, share, left=left, color=_COLORS[source], label=source)
        left += share
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of (sample, label) cells")
    ax.legend(ncol=5, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    out.append(_png(fig))
    rows = [[n] + [b.get(s, 0) for s in _SOURCES] for n, b in zip(names, bars)]
    out.append(_table(["table", *_SOURCES], rows))
    last = json.loads((run_dir / fills[-1]["dir"] / "coverage.json").read_text())["after"]
    label_names = last["label_names"]
    fig, ax = plt.subplots(figsize=(_per_label_width(len(label_names)), 3.2))
    bottom = np.zeros(len(label_names))
    for source in _SOURCES:
        counts = np.asarray(last["per_label"].get(source, [0] * len(label_names)), dtype=float)
        ax.bar(label_names, counts, bottom=bottom, color=_COLORS[source], label=source)
        bottom += counts
    _label_ticks(ax, np.arange(len(label_names)), label_names)
    ax.set_ylabel("cells")
    ax.set_title(f"Cells per label and source after {fills[-1]['name']}")
    ax.legend(ncol=5, fontsize=8)
    out.append(_png(fig))
    return "".join(out)


#: Labels drawn in a run's precision-recall grid (the per-label tables list every label).
_PR_SHOWN = 40


def _per_label_width(n: int) -> float:
    """Inches of a chart with one group of bars per label: 0.6 per label, at most 24 (300 labels made
    a 12,759 px wide image, shown 25 px tall)."""
    return min(max(6.0, 0.6 * n + 2), 24.0)


def _label_ticks(ax: Any, x: np.ndarray, names: Sequence[str]) -> None:
    """Label names under their bars: slanted, or upright and small when there are many."""
    many = len(names) > 40
    ax.set_xticks(x, names, rotation=90 if many else 45, ha="center" if many else "right", fontsize=5 if many else None)
    ax.margins(x=0.01)


def _section_pr(run_dir: Path, evals: list[dict[str, Any]], label_names: Sequence[str]) -> str:
    from sklearn.metrics import precision_recall_curve

    out = ["<h2>Precision-recall curves</h2>"]
    plt = _plt()
    shown = 0
    for r in evals:
        path = run_dir / r["dir"] / "predictions.npz"
        if not path.is_file():
            continue
        with np.load(path) as npz:
            y_true, y_score = npz["y_true"], npz["y_score"]
        n_labels = min(y_true.shape[1], _PR_SHOWN)
        cols = min(5, n_labels)
        rows = int(np.ceil(n_labels / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.2 * rows), squeeze=False, sharex=True, sharey=True)
        axes[0][0].set_xlim(0, 1)  # once: shared axes take it (set on each of 300 axes, it took minutes)
        axes[0][0].set_ylim(0, 1.02)
        for j in range(rows * cols):
            ax = axes[j // cols][j % cols]
            if j >= n_labels:
                ax.axis("off")
                continue
            known = y_true[:, j] >= 0
            target = y_true[known, j] >= 0.5
            name = label_names[j] if j < len(label_names) else str(j)
            if target.any() and (~target).any():
                precision, recall, _ = precision_recall_curve(target, y_score[known, j])
                ax.plot(recall, precision, lw=1.2)
                ax.axhline(target.mean(), color="#bbb", lw=0.8, ls="--")
            else:
                ax.text(0.5, 0.5, "not scored", ha="center", va="center", fontsize=8)
            ax.set_title(name if len(name) <= 24 else name[:23] + "…", fontsize=8)  # the tables show it whole
        fig.suptitle(f"{r['name']} ({(r.get('info') or {}).get('split', '')}): precision vs recall; dashed = prevalence", fontsize=9)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (2.2 * rows)))  # the title just above the grid
        if y_true.shape[1] > n_labels:
            out.append(f"<p>The first {n_labels} of {y_true.shape[1]} labels; the per-label table above has every "
                       "label's AP.</p>")
        out.append(_png(fig))
        shown += 1
    if not shown:
        out.append("<p>No evaluation step finished.</p>")
    return "".join(out)


def _fill_confidence(weight: np.ndarray, value: np.ndarray) -> np.ndarray:
    """How likely each filled cell's value is right: its weight, or for a soft value p (an
    init_model's teacher cells are soft targets at weight 1) max(p, 1 - p), its rounded value's."""
    soft = (value > 0) & (value < 1)
    return np.where(soft, np.maximum(value, 1 - value), weight)


def _section_confidence(run_dir: Path, records: list[dict[str, Any]]) -> str:
    out = ["<h2>Confidence of filled cells (pseudo-labels)</h2>"]
    plt = _plt()
    shown = 0
    for r in records:
        path = run_dir / r["dir"] / "filled.npz"
        if not path.is_file():
            continue
        with np.load(path) as npz:
            weight, value = npz["weight"], npz["value"]
        if weight.size == 0:
            out.append(f"<p>{_esc(r['name'])}: no cell filled or changed.</p>")
            continue
        fig, ax = plt.subplots(figsize=(6, 2.6))
        bins = np.linspace(0.0, 1.0, 26)
        positive = value >= 0.5
        confidence = _fill_confidence(weight, value)
        ax.hist([confidence[positive], confidence[~positive]], bins=bins, stacked=True,
                color=["#d62728", "#1f77b4"], label=["filled positive", "filled negative"])
        ax.set_xlabel("how likely the filled value is right (weight; soft value p: max(p, 1 - p))")
        ax.set_ylabel("cells")
        ax.set_title(f"{r['name']}: {weight.size} cells filled or changed ({int(positive.sum())} positive)")
        ax.legend(fontsize=8)
        out.append(_png(fig))
        shown += 1
    if not shown:
        out.append("<p>No step filled labels.</p>")
    else:
        out.append("<p class=\"muted\">These are the fillers' estimates: a propagated cell's is its score calibrated "
                   "on the label's known cells (out of fold), a teacher's its score. With few known cells per label they "
                   "are coarse, and a cell shown at 1.0 can still be wrong.</p>")
    return "".join(out)


def _section_training(run_dir: Path, records: list[dict[str, Any]]) -> str:
    out = ["<h2>Training curves</h2>"]
    plt = _plt()
    shown = 0
    for r in records:
        name = (r.get("info") or {}).get("history")
        path = run_dir / r["dir"] / name if name else None
        if path is None or not path.is_file():
            continue
        history = json.loads(path.read_text())
        groups = [k for k in ("loss", "mAP", "AUC") if k in history or f"val_{k}" in history]
        if not groups:
            continue
        fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 2.8), squeeze=False)
        # Noisy-student rounds are joined into one history: a dashed line where the next student starts.
        starts = np.cumsum((r.get("info") or {}).get("round_epochs", []))[:-1]
        for ax, key in zip(axes[0], groups):
            for series in (key, f"val_{key}"):
                if series in history:
                    ax.plot(np.arange(1, len(history[series]) + 1), history[series], marker="o", ms=3, label=series)
            for start in starts:
                ax.axvline(start + 0.5, color="grey", linestyle="--", linewidth=1)
            ax.set_xlabel("epoch" if not len(starts) else f"epoch ({len(starts) + 1} rounds, dashed: next student)")
            ax.set_title(f"{r['name']}: {key}")
            ax.legend(fontsize=8)
        out.append(_png(fig))
        shown += 1
    if not shown:
        out.append("<p>No training step finished.</p>")
    return "".join(out)


def _section_examples(run_dir: Path, evals: list[dict[str, Any]], label_names: Sequence[str]) -> str:
    out = ["<h2>Examples: predicted and known labels</h2>"]
    chosen = [r for r in evals if (run_dir / r["dir"] / "examples.npz").is_file()]
    if not chosen:
        out.append("<p>No example images (the data are embeddings, or no evaluation on images finished).</p>")
        return "".join(out)
    r = chosen[-1]
    threshold = float((r.get("info") or {}).get("threshold", 0.5))  # the evaluation's own
    with np.load(run_dir / r["dir"] / "examples.npz") as npz:
        images, y_true, y_score = npz["images"], npz["y_true"], npz["y_score"]
    out.append(
        f'<p>From <b>{_esc(r["name"])}</b>. Predicted (score &ge; {threshold:g}): '
        '<span class="tp">correct</span>, <span class="fp">not a known positive</span>; '
        '<span class="fn">missed known positives</span>.</p><div class="grid">'
    )
    for i in range(len(images)):
        predicted = [j for j in np.argsort(-y_score[i]) if y_score[i, j] >= threshold]
        known_pos = {j for j in range(y_true.shape[1]) if y_true[i, j] >= 0.5}
        pred_html = ", ".join(
            f'<span class="{"tp" if j in known_pos else "fp"}">{_esc(label_names[j])} {y_score[i, j]:.2f}</span>'
            for j in predicted
        ) or "none"
        missed = ", ".join(_esc(label_names[j]) for j in sorted(known_pos) if j not in predicted)
        n_known = int((y_true[i] >= 0).sum())
        out.append(
            f'<div class="cell"><img alt="example {i}" src="{_array_png(images[i])}">'
            f"<div>predicted: {pred_html}</div>"
            f'<div>known: {n_known} cells{"; missed: <span class=fn>" + missed + "</span>" if missed else ""}</div></div>'
        )
    out.append("</div>")
    return "".join(out)


def _section_labels_needed(run_dir: Path, records: list[dict[str, Any]], evals: list[dict[str, Any]]) -> str:
    """Per label: test AP of each evaluation against the label's known (human) positives.

    The run's own point of the curves in docs/labeling.md ("How many labels do I need?"): a
    label far left and low is where a few more checked positives help most.
    """
    import pandas as pd
    from matplotlib.ticker import LogFormatter, ScalarFormatter

    from ssl_multilabel.labels import PartialLabels, Source

    tables = [r for r in records if r.get("labels")]
    if not tables or not evals:
        return ""
    labels = PartialLabels.load(run_dir / tables[-1]["labels"])
    human = labels.known & (labels.source == Source.HUMAN)
    positives = dict(zip(labels.label_names, (human & (labels.values >= 0.5)).sum(axis=0).tolist()))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    rows: dict[str, list[Any]] = {name: [name, count] for name, count in positives.items()}
    points = 0
    for r, marker in zip(evals, "os^Dv<>ph*"):
        per_label = pd.read_csv(run_dir / r["dir"] / "per_label.csv")
        aps = dict(zip(per_label["label"].astype(str), per_label["AP"]))
        names = [n for n in positives if n in aps and np.isfinite(aps[n])]
        ax.scatter([max(positives[n], 0.8) for n in names], [aps[n] for n in names], marker=marker, label=r["name"])
        points += len(names)
        for name in positives:
            rows[name].append(aps.get(name, float("nan")))
    text = ("<h2>How many labels does each label need?</h2><p>Each point is one label: its average precision in an "
            "evaluation against the number of positives a person gave it. Labels low on the left gain most from "
            "more checked positives; docs/labeling.md has the measured curves on two datasets.</p>")
    table = _table(["label", "known positives", *[f"AP, {r['name']}" for r in evals]], list(rows.values()))
    if not points:  # no label has an AP (its test cells hold one class only): nothing to plot
        plt.close(fig)
        return text + "<p>No label has an AP in these evaluations: the test rows of each hold positives or " \
                      "negatives only (too few labeled test rows).</p>" + table
    for name, ap in aps.items():  # the last evaluation's
        if name in positives and np.isfinite(ap):
            ax.annotate(name, (max(positives[name], 0.8), ap), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    # Minor ticks labelled when the axis spans under two decades: within one (18-36 positives) it
    # has no major tick, and unlabelled minor ticks left the axis without a number.
    ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    ax.set_xlabel("known (human) positives of the label in the training table")
    ax.set_ylabel("AP")
    ax.set_title("Per-label AP against known positives")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return text + _png(fig) + table


#: Cells the "What to label next" section suggests (`ssl-multilabel suggest --budget N` for more).
_SUGGEST_BUDGET = 50
_SUGGEST_SHOWN = 10


def _section_label_next(run_dir: Path) -> str:
    """What to label next: per label, the human positives / negatives, the unlabeled cells and how
    many of the top suggestions (`labeling.suggest_cells`) fall on it, and the top suggestions.

    Uses only what the steps saved (no TensorFlow, no graph): the final model's training-row
    scores when an `Evaluate(split="hidden")` saved them after the last training step, and the
    last propagation's scores. `ssl-multilabel suggest` also scores with the model and the graph.
    """
    from ssl_multilabel.labeling import saved_run_inputs, suggest_cells, without_rows_held_for_test

    out = ["<h2>What to label next</h2>"]
    try:
        inputs = saved_run_inputs(run_dir)
        if inputs["labels"] is not None:  # as `suggest` ranks them: not the rows kept for the test split
            from ssl_multilabel.run_dir import read_run

            recipe = read_run(run_dir)[0]["recipe"]
            inputs = without_rows_held_for_test(inputs, recipe.get("data") or {}, recipe.get("seed", 0))
    except (ValueError, OSError) as err:
        return out[0] + f"<p>Not available: {_esc(err)}</p>"
    labels = inputs["labels"]
    if labels is None:
        return out[0] + "<p>No step wrote a label table yet.</p>"
    positive = labels.known & (labels.values >= 0.5)
    negative = labels.known & (labels.values < 0.5)
    suggested: dict[str, int] = {}
    top = None
    unknown = int((~labels.known).sum())
    if inputs["scores"] is not None and unknown:
        # At most the unknown cells: the budget is the report's, not the user's, so no warning about it.
        top = suggest_cells(labels, inputs["scores"], budget=min(_SUGGEST_BUDGET, unknown),
                            propagation=inputs["propagation"])
        suggested = top["label"].value_counts().to_dict()
        out.append(
            f"<p>The {len(top)} cells no person has labeled that are most worth an answer, ranked by "
            f"<code>ssl_multilabel.labeling.suggest_cells</code> from the {_esc(inputs['what'])}: scores near the "
            "label's threshold, "
            + ("disagreement between model and propagation, " if inputs["propagation"] is not None else "")
            + "labels with few known positives first (docs/labeling.md). For a CSV to fill in, which also weighs how "
            f"many unlabeled neighbours each answer informs: <code>ssl-multilabel suggest {_esc(run_dir)} --budget {_SUGGEST_BUDGET} --out cells.csv</code>, "
            f"then <code>ssl-multilabel answers {_esc(run_dir)} cells.csv --out labels_answered.csv</code>.</p>"
        )
    elif not unknown:
        out.append("<p>Every cell of the table is labeled: there is no cell to suggest.</p>")
    else:
        out.append("<p>No saved scores to rank cells by (an <code>Evaluate(split='hidden')</code> after training, or a "
                   f"<code>Propagate</code> step, saves them); <code>ssl-multilabel suggest {_esc(run_dir)} --budget "
                   f"{_SUGGEST_BUDGET} --out cells.csv</code> scores the cells with the final model.</p>")
    rows = [[name, int(positive[:, j].sum()), int(negative[:, j].sum()), int((~labels.known[:, j]).sum()),
             suggested.get(name, 0) if top is not None else "-"] for j, name in enumerate(labels.label_names)]
    out.append(_table(["label", "known positives", "known negatives", "unlabeled", f"suggested (of {_SUGGEST_BUDGET})"], rows))
    if inputs.get("held_for_test"):
        out.append(f"<p class=\"muted\">Not counted: {inputs['held_for_test']} unlabeled rows that go to the test split once labeled "
                   "(rows are held out by a hash of their id), so answers there would not train the model.</p>")
    if top is not None and len(top):
        plt = _plt()
        names = list(labels.label_names)
        fig, ax = plt.subplots(figsize=(_per_label_width(len(names)), 3.2))
        x = np.arange(len(names))
        ax.bar(x - 0.2, positive.sum(axis=0), 0.4, color="#d62728", label="known positives")
        ax.bar(x + 0.2, [suggested.get(n, 0) for n in names], 0.4, color="#ff7f0e", label="suggested cells")
        _label_ticks(ax, x, names)
        ax.set_ylabel("cells")
        ax.set_title("Known positives and suggested cells per label")
        ax.legend(fontsize=8)
        out.append(_png(fig))
        shown = top.head(_SUGGEST_SHOWN)
        out.append(f"<p>The top {len(shown)} suggestions:</p>")
        out.append(_table(["id", "label", "score"], shown[["id", "label", "score"]].values.tolist(), left=2))
    return "".join(out)


# === Entry point ===


def write_report(run_dir: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write `<run_dir>/report.html` from the finished steps of a run directory.

    Args:
        run_dir: a run directory written by `ssl_multilabel.recipes.run_recipe`.
        title: page title (default: "ssl-multilabel report: <recipe name>").

    Returns:
        The path of the report.

    Raises:
        RecipeError: `run_dir` is not a run directory.

    Example:
        >>> write_report("runs/quickstart")  # doctest: +SKIP
        PosixPath('runs/quickstart/report.html')
    """
    from ssl_multilabel.labels import PartialLabels
    from ssl_multilabel._files import atomic_write_text
    from ssl_multilabel.run_dir import read_run

    run_dir = Path(run_dir)
    meta, state = read_run(run_dir)
    records = state.get("finished", [])
    n_steps = len(meta.get("recipe", {}).get("steps", []))
    evals = [r for r in records if (run_dir / r["dir"] / "per_label.csv").is_file()]
    label_names: list[str] = []
    for r in reversed(records):
        if r.get("labels"):
            label_names = list(PartialLabels.load(run_dir / r["labels"]).label_names)
            break
    if not label_names and evals:
        import pandas as pd

        label_names = list(pd.read_csv(run_dir / evals[-1]["dir"] / "per_label.csv")["label"])
    name = meta.get("recipe", {}).get("name", "run")
    title = title or f"ssl-multilabel report: {name}"
    import matplotlib

    # Label and step names are user text: `$...$` must not be parsed as mathtext (a bad command
    # stops the report; `cost $5 and $10` would render as maths), nor passed to LaTeX. A character
    # the plots' font lacks (CJK in DejaVu Sans) is drawn as a box, and the tables show it: one
    # warning per glyph and figure would flood the terminal.
    with matplotlib.rc_context(_PLAIN_TEXT), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from", category=UserWarning)
        body = "".join([
            _section_run(meta, records, n_steps, _status(state, records, meta.get("recipe", {}).get("steps", []))),
            _section_metrics(run_dir, evals),
            _section_labels_needed(run_dir, records, evals),
            _section_label_next(run_dir),
            _section_coverage(run_dir, records),
            _section_pr(run_dir, evals, label_names),
            _section_confidence(run_dir, records),
            _section_training(run_dir, records),
            _section_examples(run_dir, evals, label_names),
        ])
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<link rel=\"icon\" href=\"data:,\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_esc(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{_esc(title)}</h1>{body}</body></html>\n"
    )
    path = run_dir / "report.html"
    atomic_write_text(path, page)
    logger.info("Wrote %s", path)
    return path
