"""B5: semi-supervised quality on fashion-mosaics (protocol in ../shared/guide/BENCHMARKS.md).

Every row is a `Recipe` run by `ssl_multilabel.recipes.run_recipe`, the code of
`ssl-multilabel run`, on the data source `FashionMosaics` (train pool 10,000 mosaics of the
official train split, test 4,000 of the t10k split, fully known), with the shipped step
defaults: no training setting lives in this script. Rows:

- (a) assume-negative: `FashionMosaics(unknown_as_negative=True)` (hidden cells given as 0), `Supervised()`.
- (b) masked supervised: `Supervised()`.
- (c) `Supervised()` -> `Propagate()` -> `Supervised(from_scratch=True)` (a new model on the filled table).
- (d) `Supervised()` -> `NoisyStudent()`.
- (e) the training steps of `recipes/quickstart.py` as shipped (Supervised -> Propagate -> NoisyStudent).
- (b') at (e)'s budget: (e)'s first step (that of (b), or of (b+) for the quickstart with its flips)
  with `epochs=E, patience=None, width=<(e)'s student width>`, E epochs chosen so that it sees as
  many training images as (e) in total (teacher included).
- (b+) `Supervised(flip_shift=0.125)`: (b) with a random horizontal flip and shift of its training
  images (a named option, off by default).
- (f) oracle: `FashionMosaics(protocol="none")` (every cell known), `Supervised()`.
- (f+) the oracle with the flips of (b+) and (e): `Supervised(flip_shift=0.125)` on every cell. The
  share of the gap is taken to the better oracle by mean test mAP (the harder one for (e)).

Each recipe ends with `Evaluate()` on the 4,000 test mosaics: the test split is read once per row,
by its last step. Every training step trains to convergence as shipped: a validation split of the
labeled rows (`validation_fraction`), early stopping on masked validation mAP, best epoch restored.
Rows (c), (d), (e) start from the finished run of the one-step row whose step is their first ((b), or
(b+) for the quickstart with its flips) of the same protocol and seed
(`run_recipe(start_from=...)` copies its `Supervised` step instead of training it again; steps are
seeded by position, so this is the run from scratch without the repeated work). The recipe seed
drives the protocol, the initial weights and the batch order; the mosaics are fixed.

Results: `benchmarks/results/ssl_quality.json`, one record per (row, protocol, seed), so a run can
be split over several invocations (`--rows`, `--protocols`, `--seeds`) and resumed; the report
uses every record in the file. Run directories are kept under `benchmarks/results/cache/ssl_quality/`
(not in git): when a row still to run starts from a (b) run whose directory is gone, that (b) run
runs again and its record is replaced.

    python benchmarks/ssl_quality.py [--quick] [--rows '(b),(e)'] [--protocols ...] [--seeds 0,1] [--report-only]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from _report import markdown_table, mean_sd, paired_gain, write_section  # noqa: E402
from ssl_multilabel._files import atomic_write_json  # noqa: E402
from ssl_multilabel.recipes import (  # noqa: E402
    Evaluate, FashionMosaics, NoisyStudent, Propagate, Recipe, Supervised, load_recipe_file, read_run, run_recipe,
)

SHARED = Path(os.environ.get("SSL_MULTILABEL_SHARED", ROOT.parent / "shared"))
RESULTS = ROOT / "benchmarks" / "results" / "ssl_quality.json"
RUNS = ROOT / "benchmarks" / "results" / "cache" / "ssl_quality"
QUICKSTART = ROOT / "recipes" / "quickstart.py"
#: Written into every record; records of another version are not mixed into the report.
PROTOCOL_VERSION = "recipes-converged-1"
logger = logging.getLogger("benchmarks.ssl_quality")

#: Protocol name -> FashionMosaics fields.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "random-cells 0.05": {"protocol": "random_cells", "known_fraction": 0.05},
    "single-positive": {"protocol": "single_positive"},
}
TRAINING_STEPS = (Supervised, NoisyStudent)


# === Rows ===


def quickstart_steps() -> tuple:
    """The training steps of `recipes/quickstart.py` as shipped (its Evaluate / Export / Report left out)."""
    recipe = load_recipe_file(QUICKSTART)
    return tuple(s for s in recipe.steps if isinstance(s, (*TRAINING_STEPS, Propagate)))


@dataclass(frozen=True)
class Row:
    """A B5 row: its recipe steps (before the final Evaluate) and data preparation."""

    steps: Callable[[], tuple]
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    teacher: bool = False  # starts from the run of the one-step row with its first step ((b) or (b+)): see teacher_row
    protocol_free: bool = False  # the oracle: every cell known whatever the protocol


TEACHER = "(b) masked supervised"
BUDGET = "(b') masked supervised at (e)'s budget and width"
FULL = "(e) quickstart recipe"
#: (b) with the weak input noise of `Supervised(flip_shift=...)`: a named option, off by default,
#: that lifted (b) by about 4 dev points (docs/noisy_student.md); the baseline at its best.
AUGMENTED = "(b+) masked supervised, flip + shift 0.125"
ORACLE, ORACLE_AUGMENTED = "(f) oracle", "(f+) oracle, flip + shift 0.125"
ORACLES = (ORACLE, ORACLE_AUGMENTED)  # every cell known; the better by mean is the oracle of the share
ROWS: dict[str, Row] = {
    TEACHER: Row(lambda: (Supervised(),)),
    FULL: Row(quickstart_steps, teacher=True),
    ORACLE: Row(lambda: (Supervised(),), data={"protocol": "none"}, protocol_free=True),
    ORACLE_AUGMENTED: Row(lambda: (Supervised(flip_shift=0.125),), data={"protocol": "none"}, protocol_free=True),
    "(a) assume-negative": Row(lambda: (Supervised(),), data={"unknown_as_negative": True}),
    "(d) noisy student": Row(lambda: (Supervised(), NoisyStudent()), teacher=True),
    "(c) propagation, then a new model": Row(lambda: (Supervised(), Propagate(), Supervised(from_scratch=True)),
                                            teacher=True),
    BUDGET: Row(lambda: ()),  # steps depend on the (e) record: see budget_steps
    AUGMENTED: Row(lambda: (Supervised(flip_shift=0.125),)),
}
#: Table order.
ORDER = ["(a) assume-negative", TEACHER, BUDGET, AUGMENTED, "(c) propagation, then a new model", "(d) noisy student",
         FULL, ORACLE, ORACLE_AUGMENTED]
BASELINES = ("(a) assume-negative", TEACHER, BUDGET, AUGMENTED)  # rows that use no unlabeled image


def recipe_for(row: str, protocol: str, seed: int, *, n_train: int, n_test: int, steps: tuple | None = None) -> Recipe:
    """The recipe of `row` (its steps, then `Evaluate()` on the test split) for one protocol and seed."""
    spec = ROWS[row]
    fields = {**PROTOCOLS[protocol], **spec.data}
    data = FashionMosaics(source_dir=str(SHARED / "data" / "fashion-mnist"), n_train=n_train, n_test=n_test, **fields)
    return Recipe(name="b5", data=data, steps=[*(steps if steps is not None else spec.steps()), Evaluate()], seed=seed)


#: One-step rows whose run a row with `teacher=True` starts from when its first step is theirs.
TEACHER_ROWS = (TEACHER, AUGMENTED)


def step_settings(step) -> dict:
    """A step's settings without its name (a Recipe resolves '' to e.g. 'supervised'): two steps that
    train the same way compare equal, whether or not they sit in a Recipe."""
    return {k: v for k, v in step.to_dict().items() if k != "name"}


def teacher_row(row: str) -> str:
    """The one-step row (of TEACHER_ROWS) whose step is `row`'s first step: (e) starts from (b+) when the
    quickstart's `Supervised` step trains with flips, from (b) when it does not."""
    first = step_settings(ROWS[row].steps()[0])
    match = [t for t in TEACHER_ROWS if step_settings(ROWS[t].steps()[0]) == first]
    if not match:
        raise ValueError(f"{row}: its first step {first} is the step of none of {TEACHER_ROWS}")
    return match[0]


def budget_steps(full_record: dict, teacher_record: dict, width: float) -> tuple:
    """Masked training at (e)'s budget: as many epochs of (e)'s own first step (the `Supervised` step of
    its teacher row, (b) or (b+)) as (e) saw images, at (e)'s width; `teacher_record` is that row's run."""
    step = ROWS[teacher_row(FULL)].steps()[0]
    per_epoch = teacher_record["fits"][0]["batches"] / teacher_record["fits"][0]["epochs"] * step.batch_size
    epochs = max(1, math.ceil(full_record["images_total"] / per_epoch))
    return (dataclasses.replace(step, epochs=epochs, patience=None, width=width),)


# === Images seen ===


def images_counter():
    """A Keras callback counting the training batches and epochs of every `fit` call."""
    import keras

    class Counter(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.fits: list[dict[str, int]] = []

        def on_train_begin(self, logs=None) -> None:
            self.fits.append({"batches": 0, "epochs": 0})

        def on_train_batch_end(self, batch, logs=None) -> None:
            self.fits[-1]["batches"] += 1

        def on_epoch_end(self, epoch, logs=None) -> None:
            self.fits[-1]["epochs"] += 1

    return Counter()


def images_seen(steps: tuple, fits: list[dict[str, int]]) -> int:
    """Training images drawn by `steps` (the ones run, in order) from the counted `fit` calls.

    A `Supervised` step is one fit of `batch_size` images per batch; a `NoisyStudent` step one fit
    per round of `batch_size` labeled + `round(unlabel_ratio * batch_size)` pseudo-labeled images
    per batch. A last partial batch counts as full.
    """
    per_batch = []  # images per batch of every expected fit, in order
    for step in steps:
        if isinstance(step, Supervised):
            per_batch.append(step.batch_size)
        elif isinstance(step, NoisyStudent):
            ratio = getattr(step, "unlabel_ratio", 1.0)  # the loop's default before the step had it
            per_batch += [step.batch_size + max(1, round(ratio * step.batch_size))] * step.rounds
    if len(per_batch) != len(fits):
        i = len(per_batch)
        raise RuntimeError(f"expected {i} training runs of {[type(s).__name__ for s in steps]}, counted {len(fits)}")
    return sum(f["batches"] * b for f, b in zip(fits, per_batch))


# === Runs ===


def _key(row: str, protocol: str, seed: int) -> str:
    return f"{row} | {protocol} | seed {seed}"


def _run_dir(runs: Path, row: str, protocol: str, seed: int, n_train: int) -> Path:
    slug = "".join(c if c.isalnum() else "_" for c in f"{protocol}_{row}").strip("_")
    return runs / f"n{n_train}_seed{seed}_{slug}"


def row_recipe(row: str, protocol: str, seed: int, *, n_train: int, n_test: int, records: dict) -> Recipe | None:
    """The recipe `row` runs now (None: (b) at (e)'s budget before the (b) and (e) runs exist)."""
    steps = None
    if row == BUDGET:
        full, teacher = records.get(_key(FULL, protocol, seed)), records.get(_key(teacher_row(FULL), protocol, seed))
        if full is None or teacher is None:
            return None
        width = next(s.width for s in quickstart_steps() if isinstance(s, NoisyStudent))
        steps = budget_steps(full, teacher, width)
    return recipe_for(row, protocol, seed, n_train=n_train, n_test=n_test, steps=steps)


#: Library changes that move a row's figure without changing its recipe's settings: (step types,
#: the protocols where it changes anything, the first commit with the change). A record of a recipe
#: with those steps in that order, under those protocols, made before that commit is not current.
BEHAVIOUR_CHANGES = [
    # The fill's thresholds from 5-fold cross-fitting (docs/propagation.md); under single positive
    # labels nothing is filled, before or after.
    (("Propagate",), ("random-cells 0.05",), "cacd933"),
    # A propagated cell's weight, calibrated (was |2p - 1|): it reaches training in a Supervised
    # step after the fill (row (c)); NoisyStudent trains machine cells at weight 1.
    (("Propagate", "Supervised"), ("random-cells 0.05",), "8836bbe"),
]


def _in_order(steps: list, names: tuple[str, ...]) -> bool:
    """Whether step types `names` occur in `steps` in this order (others may come between)."""
    types = iter(type(s).__name__ for s in steps)
    return all(name in types for name in names)


def _made_before(commit: str, change: str) -> bool:
    """Whether `commit` (a record's, maybe with "+uncommitted") lacks the commit `change`."""
    found = subprocess.run(["git", "-C", str(ROOT), "merge-base", "--is-ancestor", change, commit.split("+")[0]],
                           capture_output=True)
    return found.returncode != 0


def is_current(record: dict, recipe: Recipe | None) -> bool:
    """Whether `record` was made by `recipe`'s steps: same steps, and every setting both versions
    have equal (a setting added since, at a default that keeps the old behaviour, does not count),
    and not before a change of what one of its steps computes (`BEHAVIOUR_CHANGES`).
    A record of a recipe changed since (e.g. new quickstart defaults) is not reused or reported."""
    ran = record.get("recipe_steps")
    if recipe is None or ran is None:
        return False
    if any(record.get("protocol") in protocols and _in_order(recipe.steps, names)
           and _made_before(record.get("commit", "unknown"), change) for names, protocols, change in BEHAVIOUR_CHANGES):
        return False
    steps = recipe.steps
    now = recipe.to_dict()["steps"]

    def same(a: dict, b: dict, step) -> bool:  # a setting the old record lacks must be at its default now
        default = type(step)().to_dict()
        return a.get("type") == b.get("type") and all(a[k] == b[k] if k in a else b[k] == default[k] for k in b)

    return len(ran) == len(now) and all(same(a, b, s) for a, b, s in zip(ran, now, steps))


def run_row(row: str, protocol: str, seed: int, *, n_train: int, n_test: int, runs: Path, records: dict,
            overrides: tuple[str, ...] = ()) -> dict | None:
    """Run one row's recipe (from the (b) run when it shares its teacher); its record, or None if it cannot run yet."""
    spec = ROWS[row]
    key_protocol = "any" if spec.protocol_free else protocol
    teacher = records.get(_key(teacher_row(row), protocol, seed)) if spec.teacher else None
    recipe = row_recipe(row, protocol, seed, n_train=n_train, n_test=n_test, records=records)
    if recipe is None or (spec.teacher and teacher is None):
        return None
    start_from = Path(teacher["run_dir"]) if teacher else None
    out = _run_dir(runs, row, key_protocol, seed, n_train)
    record = run_and_record(recipe, out, start_from=start_from, teacher=teacher, overrides=overrides,
                            command=["benchmarks/ssl_quality.py", row, protocol, f"seed={seed}"])
    return {"row": row, "protocol": key_protocol, "seed": seed, "n_train": n_train, "n_test": n_test, **record}


def _teacher_gone(teacher: dict, needed: list[str], protocol: str, seed: int, records: dict) -> bool:
    """Whether a row still to run would start from the teacher's run directory and that directory is
    gone (a clean checkout keeps the records, not the cache): the teacher is then run again, its
    record replaced, so the pair keeps sharing one model."""
    pending = [r for r in needed if ROWS[r].teacher and teacher_row(r) == teacher["row"]
               and _key(r, protocol, seed) not in records]
    if not pending or Path(teacher["run_dir"]).is_dir():
        return False
    print(f"seed {seed} | {protocol} | {teacher['row']}: its run directory {teacher['run_dir']} is gone and "
          f"{', '.join(pending)} start(s) from it; running it again", flush=True)
    return True


def run_and_record(recipe: Recipe, out: Path, *, start_from: Path | None, teacher: dict | None,
                   overrides: tuple[str, ...], command: list[str]) -> dict:
    """Run `recipe` into `out` (a fresh directory; from the `teacher` record's run with `start_from`)
    and return what B5 keeps of it: the last step's metrics (`Evaluate`), validation mAP, images, time."""
    if out.exists():  # an interrupted run: start it again (its images-seen count would be partial)
        shutil.rmtree(out)
    counter = images_counter()
    start = time.perf_counter()
    run_recipe(recipe, out, overrides=overrides, callbacks=[counter], start_from=start_from, command=command)
    seconds = time.perf_counter() - start
    _, state = read_run(out)
    finished = state["finished"]
    run_steps = [s for s, r in zip(recipe.steps, finished) if "copied_from" not in r]
    images = images_seen(run_steps, counter.fits)
    final = finished[-1]["metrics"]
    trained = [r for r in finished if r["type"] in {t.__name__ for t in TRAINING_STEPS}]
    shared = start_from is not None and teacher is not None
    return {
        "version": PROTOCOL_VERSION, "commit": _commit(), "run_dir": str(out),
        "recipe_steps": recipe.to_dict()["steps"],
        "test_mAP": float(final["mAP"]), "test_AUC": float(final["AUC"]),
        "val_mAP": trained[-1]["metrics"].get("best_val_mAP") if trained else None,
        "steps": [{"name": r["name"], "type": r["type"], "seconds": r["seconds"], "metrics": r["metrics"],
                   "shared": "copied_from" in r} for r in finished],
        "fits": counter.fits, "images": images,
        "images_total": images + (teacher["images"] if shared else 0),
        "seconds": seconds, "seconds_total": seconds + (teacher["seconds"] if shared else 0.0),
        "overrides": list(overrides), "load": os.getloadavg()[0],
    }


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "ssl_multilabel", "recipes",
                                "benchmarks/ssl_quality.py"], capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("+uncommitted" if dirty else "")
    except OSError:
        return "unknown"


def load_results(path: Path | None) -> dict[str, dict]:
    if path is None or not path.is_file():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("version") != PROTOCOL_VERSION:
        return {}  # a file of the old, non-converged protocol: never mixed in
    return data["runs"]


def save_results(path: Path | None, records: dict[str, dict]) -> None:
    if path is not None:
        atomic_write_json(path, {"version": PROTOCOL_VERSION, "runs": records})


# === Report ===


def _mean_sd(values: list[float]) -> str:
    mean, sd, n = mean_sd(values)
    return f"{mean:.3f} ± {sd:.3f}" if n > 1 else f"{mean:.3f}"


def summarise(records: dict[str, dict], protocols: list[str]) -> tuple[list[dict], list[dict]]:
    """The per-row table and the goal table (share of the gap (e) closes, (e) minus the best baseline)."""
    table, goals = [], []
    for protocol in protocols:
        runs = {row: sorted((r for r in records.values() if r["row"] == row
                             and r["protocol"] == ("any" if ROWS[row].protocol_free else protocol)),
                            key=lambda r: r["seed"]) for row in ORDER}
        for row in ORDER:
            rs = runs[row]
            if not rs:
                continue
            vals = [r["val_mAP"] for r in rs if r["val_mAP"] is not None]
            table.append({
                "protocol": protocol, "row": row, "test mAP": _mean_sd([r["test_mAP"] for r in rs]),
                "test AUC": _mean_sd([r["test_AUC"] for r in rs]),
                "val mAP (last step)": _mean_sd(vals) if vals else "n/a",
                "seeds": ",".join(str(r["seed"]) for r in rs),
                "images seen (k)": f"{np.mean([r['images_total'] for r in rs]) / 1000:.0f}",
                "epochs per fit": "; ".join(sorted({"/".join(str(f["epochs"]) for f in r["fits"]) for r in rs})),
                "minutes (own steps)": f"{np.mean([r['seconds'] for r in rs]) / 60:.1f}",
                "minutes (with teacher)": f"{np.mean([r['seconds_total'] for r in rs]) / 60:.1f}",
            })
        full = runs[FULL]
        oracle_means = {row: np.mean([r["test_mAP"] for r in runs[row]]) for row in ORACLES if runs[row]}
        base_means = {row: np.mean([r["test_mAP"] for r in runs[row]]) for row in BASELINES if runs[row]}
        if not full or not base_means:
            continue
        best = max(base_means, key=base_means.get)
        by_seed = {r["seed"]: r["test_mAP"] for r in runs[best]}
        # Every figure of the goal row is on the seeds both (e) and the baseline have (either may have more).
        paired = [(r["test_mAP"], by_seed[r["seed"]]) for r in full if r["seed"] in by_seed]
        diffs = [e - b for e, b in paired]
        goal: dict[str, Any] = {"protocol": protocol, "best baseline": best,
                                "its test mAP": f"{np.mean([b for _, b in paired]):.3f}" if paired else "n/a",
                                "(e) test mAP": f"{np.mean([e for e, _ in paired]):.3f}" if paired else "n/a"}
        goal["(e) - best (points)"], gain = paired_gain(diffs)
        goal["seeds"] = len(diffs)
        goal["a gain (beyond twice the spread)"] = gain
        share = None
        if oracle_means and diffs:
            oracle = max(oracle_means, key=oracle_means.get)
            share = np.mean(diffs) / (oracle_means[oracle] - np.mean([b for _, b in paired]))
            goal["oracle"] = f"{oracle.split(' ')[0]} {oracle_means[oracle]:.3f}"
            goal["share of the gap closed"] = f"{share:.0%}"
        if len(diffs) < 2:
            verdict = "undecided: one seed (no spread)"
        elif share is None:
            verdict = "undecided: no oracle run"
        else:
            met = gain == "yes" and share >= 0.30
            verdict = "met" if met else "not met"
        goal["goal (> 2 spreads and >= 30 %)"] = verdict
        goals.append(goal)
    return table, goals


def sample_weight_demo(seed: int = 0) -> tuple[list[dict], str]:
    """Loss values and gradients of the seed approach (mask as Keras `sample_weight`) vs the masked BCE."""
    import keras
    import tensorflow as tf

    from ssl_multilabel.losses import MaskedBinaryCrossentropy

    rng = np.random.default_rng(seed)
    n_labels = 10
    truth = (rng.random((n_labels, n_labels)) < 0.3).astype("float32")
    known = rng.random(truth.shape) < 0.3
    p = tf.constant(rng.uniform(0.05, 0.95, truth.shape).astype("float32"))
    y0 = np.where(known, truth, 0.0).astype("float32")
    y_partial = np.where(known, truth, -1.0).astype("float32")
    cell = -(y0 * np.log(p.numpy()) + (1 - y0) * np.log(1 - p.numpy()))
    keras_bce = keras.losses.BinaryCrossentropy()
    rows = []
    for name, fn, formula in [
        ("masked BCE (ours), y = -1 for unknown", lambda q: MaskedBinaryCrossentropy()(y_partial, q), cell[known].mean()),
        ("Keras BCE, mask as sample_weight (batch = L)", lambda q: keras_bce(y0, q, sample_weight=known.astype("float32")),
         (cell.mean(axis=1)[None, :] * known).sum() / known.size),
        ("Keras BCE, unknown as 0, no weights", lambda q: keras_bce(y0, q), cell.mean()),
    ]:
        with tf.GradientTape() as tape:
            tape.watch(p)
            value = fn(p)
        g = np.abs(tape.gradient(value, p).numpy())
        rows.append({"loss": name, "value": float(value), "numpy reference": float(formula),
                     "gradient share on unknown cells": float(g[~known].sum() / g.sum())})
    try:
        big = np.zeros((64, n_labels), "float32")
        keras_bce(big, big + 0.5, sample_weight=np.ones_like(big))
        error = "no error"
    except Exception as exc:  # noqa: BLE001 - we report whatever Keras raises
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:120]}"
    return rows, error


def describe(step: Any) -> str:
    """`Type(field=value, ...)` with only the fields that differ from the step's defaults."""
    default = type(step)().to_dict()
    changed = {k: v for k, v in step.to_dict().items() if k not in ("name", "type") and v != default.get(k)}
    return f"`{type(step).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})`"


def full_run_time(records: dict[str, dict]) -> str:
    """One paragraph: the wall time of a full B5 (every row, both protocols, 3 seeds) from the measured rows."""
    minutes = {}
    for row in ORDER:
        own = [r["seconds"] for r in records.values() if r["row"] == row]
        if own:
            minutes[row] = np.mean(own) / 60
    if not minutes:
        return ""
    runs = {row: 3 if ROWS[row].protocol_free else 6 for row in ORDER}
    measured = sum(minutes[row] * runs[row] for row in minutes)
    missing = [row for row in ORDER if row not in minutes]
    text = (f"**Wall time of a full B5** (every row, {len(PROTOCOLS)} protocols, 3 seeds, one process; the "
            "teacher counted once in (b)): the rows measured so far, at their mean minutes per run (own "
            f"steps), add up to {measured:.0f} minutes. The runs shared the {os.cpu_count()} cores with other "
            "jobs, so they ran slower than alone")
    text += (f"; {', '.join(missing)} not measured yet, so a full run takes longer still" if missing else "")
    loads = sorted({r.get("load") for r in records.values() if r.get("load") is not None})
    if loads:
        text += f" (1-minute load average at the end of the runs: {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} cores)"
    goal = ("does not hold" if measured > 60 else "is not decided yet" if missing else "holds")
    return text + f". The issue's target of a full B5 in 60 minutes {goal} on this machine."


def report(records: dict[str, dict], n_train: int, n_test: int, write: bool) -> str:
    table, goals = summarise(records, list(PROTOCOLS))
    demo_rows, demo_error = sample_weight_demo()
    text_table = markdown_table(table) if table else "(no run yet)"
    text_goals = markdown_table(goals) if goals else "(no (e) run with a baseline yet)"
    text_demo = markdown_table(demo_rows)
    ns = next((s for s in quickstart_steps() if isinstance(s, NoisyStudent)), None)
    commits = sorted({r["commit"] for r in records.values()})
    text_time = full_run_time(records)
    missing = [f"{row} ({protocol})" for protocol in PROTOCOLS for row in ORDER
               if not any(r["row"] == row and r["protocol"] in (protocol, "any") for r in records.values())]
    if missing:
        text_time = (f"**Not measured yet with the library as it is** (never run, or run before a change of what one "
                     f"of its steps computes, `BEHAVIOUR_CHANGES`: {', '.join(c[2] for c in BEHAVIOUR_CHANGES)}): "
                     f"{'; '.join(missing)}.\n\n" + text_time)
    body = (
        "## B5: semi-supervised quality\n\n"
        "Goal (issue \"Honest quality\"): row (e) beats the best converged baseline by more than twice the "
        "spread over seeds of the paired difference (its sample standard deviation, as every ± in this file), "
        "and closes >= 30 % of the gap from that baseline to the "
        "oracle, the better of (f) and (f+) by mean (test mAP; the best baseline is the baseline row with the "
        "highest mean test mAP, the hardest one for (e)):\n\n" + text_goals + "\n\n"
        f"fashion-mosaics: train pool {n_train:,} (train split), test {n_test:,} (t10k split, fully known). "
        "Every row is a `Recipe` run by `run_recipe` (the code of `ssl-multilabel run`) on "
        "`FashionMosaics(...)` with the shipped step defaults, ending in `Evaluate()`: the test split is "
        "read once per row, at the end. Every `Supervised` step trains to convergence as shipped: 10 % of the "
        "labeled rows held out (`validation_fraction=0.1`), at most 100 epochs, early stopping after 10 "
        "epochs without a better masked validation mAP, best epoch restored. (a): `FashionMosaics(unknown_as_"
        "negative=True)` (hidden cells given as 0), `Supervised()`; (b): `Supervised()`; (c): `Supervised()` "
        "-> `Propagate()` -> `Supervised(from_scratch=True)`; (d): `Supervised()` -> `NoisyStudent()`; (e): "
        f"the training steps of `recipes/quickstart.py` as shipped ({' -> '.join(describe(s) for s in quickstart_steps())}); "
        f"(b'), (e)'s first step ({describe(ROWS[teacher_row(FULL)].steps()[0])}) at (e)'s budget: with `epochs=E, "
        f"patience=None, width={ns.width if ns else 1.0}`, E the epochs of that step "
        "that see as many images as (e) saw in total, its student's width (the best validation epoch is "
        "still restored); (b+): `Supervised(flip_shift=0.125)`, (b) with a random horizontal flip and a "
        "random shift of up to 1/8 of the size on its training images (a named option, off by default); "
        "(f): `FashionMosaics(protocol=\"none\")`, `Supervised()`; (f+): the same with "
        "`Supervised(flip_shift=0.125)`, the oracle with the flips of (b+) and (e). Rows (c), (d), (e) start "
        "from the run of the one-step row whose step is their first, (b) or (b+) "
        f"((e): {teacher_row(FULL).split(' ')[0]}), of the same protocol and seed (`run_recipe(start_from=...)` copies its finished "
        "`Supervised` step; steps are seeded by position, so the run is the one from scratch without the "
        "repeated work); their images seen and minutes 'with teacher' include the teacher's. Images seen: "
        "training batches counted by a Keras callback times the images per batch (a noisy-student batch is "
        "labeled + `unlabel_ratio` times as many pseudo-labeled images; a last partial batch counts as full). 'val mAP (last "
        "step)': the best masked validation mAP of the last training step on its own validation rows (for "
        "(a) against the assumed negatives, so biased). 'epochs per fit': epochs run by each training call "
        "(a noisy-student step: one per round). The recipe seed drives the protocol, the initial weights "
        "and the batch order. A row's seeds are listed in the table; a figure with one seed has no spread. "
        f"Commits of the runs: {', '.join(commits) if commits else 'none'}. Command: "
        "`python benchmarks/ssl_quality.py` (resumable; every run is kept in "
        "`benchmarks/results/ssl_quality.json`); one row: `--rows '(b)' --protocols 'random-cells 0.05' "
        "--seeds 0`. Validation figures of runs that did not reach their test read (and how the quickstart's "
        "settings were chosen): docs/noisy_student.md, 'Settings chosen on validation data only'.\n\n"
        + text_table + "\n\n" + text_time + "\n\n"
        "**What the seed approach gets wrong** (computed here on one batch, no training). "
        "`keras.losses.BinaryCrossentropy` reduces over labels *before* applying `sample_weight`, so a "
        f"`(batch, L)` known-cell mask never weights cells. With batch 64 and 10 labels Keras 3 raises "
        f"({demo_error}). With batch = L = 10 it runs and silently broadcasts: sample j's label-averaged "
        "loss, unknown cells counted as negatives, is weighted by mask column j. On one random 10x10 batch "
        "with 30 % known cells:\n\n" + text_demo + "\n\n"
        "The masked BCE puts no gradient on unknown cells; the sample_weight version spends most of its "
        "gradient there.\n"
    )
    print("\n" + text_goals + "\n\n" + text_table + "\n\n" + text_demo, flush=True)
    if write:
        write_section("B5", body)
    return body


# === Command line ===


def _select(text: str | None, names: list[str], what: str) -> list[str]:
    if text is None:
        return list(names)
    wanted = [t.strip() for t in text.split(",") if t.strip()]
    chosen = [n for n in names if any(n.startswith(w) or n == w for w in wanted)]
    unknown = [w for w in wanted if not any(n.startswith(w) for n in names)]
    if unknown or not chosen:
        raise SystemExit(f"--{what}: unknown {unknown or wanted}; expected prefixes of {names}.")
    return chosen


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: rows (b), (e), (f) under random-cells (unless --rows / --protocols say "
                             "otherwise), 600 train / 300 test, every training step capped at 2 epochs, seed 0; "
                             "results kept apart (not the published file)")
    parser.add_argument("--rows", default=None, help=f"comma-separated prefixes of {ORDER}, e.g. '(b),(e)'")
    parser.add_argument("--protocols", default=None, help=f"comma-separated subset of {list(PROTOCOLS)}")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2; 0 with --quick)")
    parser.add_argument("--n-train", type=int, default=None, help="train pool size (default 10,000; 600 with --quick)")
    parser.add_argument("--n-test", type=int, default=None, help="test mosaics (default 4,000; 300 with --quick)")
    parser.add_argument("--results", type=Path, default=None,
                        help="results JSON (default benchmarks/results/ssl_quality.json; with --quick a temporary file)")
    parser.add_argument("--runs", type=Path, default=None, help=f"folder of the run directories (default {RUNS})")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--report-only", action="store_true", help="run nothing: report from the results file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    n_train = args.n_train or (600 if args.quick else 10_000)
    n_test = args.n_test or (300 if args.quick else 4000)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else ([0] if args.quick else [0, 1, 2])
    rows = _select(args.rows if args.rows or not args.quick else "(b),(e),(f)", ORDER, "rows")
    protocols = _select(args.protocols if args.protocols or not args.quick else next(iter(PROTOCOLS)),
                        list(PROTOCOLS), "protocols")
    runs = args.runs or (RUNS / "quick" if args.quick else RUNS)
    results = args.results or (runs / "results.json" if args.quick else RESULTS)
    # --quick caps every training step (a smoke test of the whole path, not a measurement).
    overrides = ("epochs=2",) if args.quick else ()
    records = current_records(results, n_train, n_test)

    # The rows and the teacher rows they start from; the teachers first, (e) before the row at (e)'s budget.
    teachers = {teacher_row(r) for r in rows if ROWS[r].teacher}
    needed = sorted({*rows, *teachers}, key=ROWS_RUN_ORDER.index)
    for seed in [] if args.report_only else seeds:
        for protocol in protocols:
            for row in needed:
                key = _key(row, "any" if ROWS[row].protocol_free else protocol, seed)
                if key in records and not (row in teachers and _teacher_gone(records[key], needed, protocol, seed, records)):
                    continue
                row_overrides = tuple(f"{s.name}.{o}" for s in _named_steps(row, protocol, seed, n_train, n_test, records)
                                      if isinstance(s, TRAINING_STEPS) for o in overrides)
                record = run_row(row, protocol, seed, n_train=n_train, n_test=n_test, runs=runs, records=records,
                                 overrides=row_overrides)
                if record is None:
                    print(f"seed {seed} | {protocol} | {row}: skipped (needs its teacher's, or the (b) and (e) runs first)",
                          flush=True)
                    continue
                records[key] = record
                save_results(results, {**load_results(results), key: record})  # the file as it is now, plus this run
                print(f"seed {seed} | {record['protocol']:17s} | {row:34s} | test mAP {record['test_mAP']:.4f} "
                      f"AUC {record['test_AUC']:.4f} | val mAP {record['val_mAP']} | {record['images_total']:,} images "
                      f"| {record['seconds']:.0f} s", flush=True)
    if not args.report_only:  # other runs may have added records since: report the file as it is now
        records = current_records(results, n_train, n_test, quiet=True)
    report(records, n_train, n_test, write=not args.no_write and not args.quick)
    return records


def current_records(results: Path, n_train: int, n_test: int, *, quiet: bool = False) -> dict[str, dict]:
    """The records of `results` at this size made by the shipped steps. Records of other steps (the
    quickstart changed, ...) are neither reused nor reported; (b') at (e)'s budget is checked last,
    as its steps follow the (e) record."""
    records = {k: r for k, r in load_results(results).items() if r["n_train"] == n_train and r["n_test"] == n_test}
    for budget_pass in (False, True):
        for key, record in list(records.items()):
            if (record["row"] == BUDGET) == budget_pass and not is_current(record, row_recipe(
                    record["row"], record["protocol"] if record["protocol"] in PROTOCOLS else next(iter(PROTOCOLS)),
                    record["seed"], n_train=n_train, n_test=n_test, records=records)):
                if not quiet:
                    print(f"{key}: made by other steps than the shipped recipe's (commit {record['commit']}); "
                          "left out, run it again", flush=True)
                del records[key]
    return records


#: Run order within a (protocol, seed): the shared teachers first, (e) before the row at its budget.
ROWS_RUN_ORDER = [TEACHER, AUGMENTED, FULL, ORACLE, ORACLE_AUGMENTED, "(a) assume-negative", "(d) noisy student",
                  "(c) propagation, then a new model", BUDGET]


def _named_steps(row: str, protocol: str, seed: int, n_train: int, n_test: int, records: dict) -> tuple:
    """The named steps of `row`'s recipe (for step-addressed overrides); (b') at (e)'s budget: (e)'s first step."""
    if row == BUDGET:
        return recipe_for(teacher_row(FULL), protocol, seed, n_train=n_train, n_test=n_test).steps
    return recipe_for(row, protocol, seed, n_train=n_train, n_test=n_test).steps


if __name__ == "__main__":
    main()
