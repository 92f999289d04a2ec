"""The recipe runner: run directory, per-step persistence and resume.

Run directory layout::

    RUN_DIR/
      recipe.json          resolved recipe, seed, overrides, command, package versions
      state.json           finished steps (written atomically after each step)
      steps/01_supervised/ outputs of step 1 (labels.npz, model.keras, metrics.json, ...)
      tensorboard/01_supervised/
      log.txt
      labels.npz           the final label table (written when the run ends)
      report.html          written by the `Report` step or `ssl-multilabel report RUN_DIR`

Every step writes into a temporary directory `steps/.01_supervised.tmp`, which is renamed to
`steps/01_supervised` when the step returns; `state.json` is then rewritten (temporary file +
rename). A run killed at any point therefore leaves either a finished step (directory + entry in
`state.json`) or debris that `resume` deletes before restarting that step from its beginning with
the same seed, so a resumed run ends with the same label table and metrics as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import hashlib
import importlib.metadata
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ssl_multilabel._files import atomic_write_json, atomic_write_text
from ssl_multilabel.labels import PartialLabels, Source
from ssl_multilabel.recipes.config import Config, RecipeError, _REGISTRY, param
from ssl_multilabel.recipes.data import DataSource, RecipeData
from ssl_multilabel.recipes.distribute import StrategyName, WorkerRole, make_strategy, worker_role
from ssl_multilabel.run_dir import LABELS_FILE, LOCK_FILE, RECIPE_FILE, STATE_FILE, read_run

__all__ = [
    "Recipe",
    "RunState",
    "Step",
    "StepContext",
    "apply_overrides",
    "load_recipe_file",
    "read_run",
    "resume_run",
    "run_recipe",
]

logger = logging.getLogger(__name__)

_PAUSE_ENV = "SSL_MULTILABEL_PAUSE_AT"  # test hook, see StepContext.checkpoint
_VERSIONS = ("ssl-multilabel", "tensorflow", "keras", "numpy", "scipy", "scikit-learn", "pandas", "faiss-cpu")


# === Steps ===


def _snake(name: str) -> str:
    out = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class Step(Config):
    """Base of recipe steps: a frozen config with a `run(ctx, state) -> StepResult` method.

    `name` defaults to the snake-case class name (`NoisyStudent` -> `noisy_student`); repeated
    steps get `_2`, `_3` suffixes. Overrides address steps by name: `--set noisy_student.rounds=3`.
    """

    _kind = "step"

    name: str = ""

    def default_name(self) -> str:
        return _snake(type(self).__name__)

    def run(self, ctx: "StepContext", state: "RunState") -> "StepResult":  # pragma: no cover
        raise NotImplementedError

    def resolved(self) -> "Step":
        """A copy with relative paths made absolute (the runner records and resumes this one)."""
        return self

    def check_data(self, data: RecipeData) -> None:
        """Raise RecipeError if this step cannot run on `data`; the runner calls it for every step
        still to run once the data are loaded, before the first step starts (no step fails after
        hours of training on something the data could have told at once)."""

    def check_after(self, earlier: Sequence["Step"]) -> None:
        """Raise RecipeError if this step's settings cannot take effect after the `earlier` steps
        of its recipe; called when the recipe is built."""

@dataclass
class StepResult:
    """What a step returns: a new label table and/or model, metrics, extra report info."""

    labels: PartialLabels | None = None
    model: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recipe(Config):
    """A recipe: a data source, an ordered list of steps and a seed.

    Example:
        >>> from ssl_multilabel.recipes import Embeddings, Propagate, Evaluate
        >>> recipe = Recipe(data=Embeddings(), steps=[Propagate(k=5), Evaluate(split="hidden")])
        >>> [s.name for s in recipe.steps]
        ['propagate', 'evaluate']
    """

    _kind = "recipe"

    data: DataSource
    steps: tuple[Step, ...]
    seed: int = param(0, ge=0, doc="seed of the data split and of every step")
    name: str = param("recipe", doc="names the default run directory runs/<name>-<time>")
    strategy: StrategyName = param(
        "default", doc="training: one device (default), mirrored (the local devices) or multi_worker (TF_CONFIG)")

    def validate(self) -> None:
        if not self.steps:
            raise RecipeError("A recipe needs at least one step; got steps=[].")
        # The name becomes a folder under runs/: a separator or '..' would put the run elsewhere.
        if not self.name or self.name in (".", "..") or any(c in self.name for c in ("/", "\\", os.sep, "\0")):
            raise RecipeError(
                "Invalid value for parameter `name` of Recipe. Expected a non-empty name without "
                f"'/', '\\' and other than '.' or '..' (it names the run folder). Received: name={self.name!r}"
            )
        counts: dict[str, int] = {}
        named = []
        explicit = [s.name for s in self.steps if s.name]
        for step in self.steps:
            if step.name:
                # The name is also a folder under steps/: no separator (the step ran, then its output
                # could not be moved into place).
                if step.name in ("data", "recipe", "seed") or any(c in step.name for c in (".", "/", "\\", "\0")):
                    raise RecipeError(f"Invalid step name {step.name!r}: reserved, or contains '.', '/' or '\\'.")
                named.append(step)
                continue
            base = step.default_name()
            counts[base] = counts.get(base, 0) + 1
            name = base if counts[base] == 1 else f"{base}_{counts[base]}"
            while name in explicit:
                counts[base] += 1
                name = f"{base}_{counts[base]}"
            named.append(dataclasses.replace(step, name=name))
        names = [s.name for s in named]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise RecipeError(f"Duplicate step names {duplicates}; give each step a unique name=.")
        for i, step in enumerate(named):
            step.check_after(named[:i])
        object.__setattr__(self, "steps", tuple(named))

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise RecipeError(f"The recipe has no step {name!r}; steps: {[s.name for s in self.steps]}.")


def apply_overrides(recipe: Recipe, overrides: Iterable[str]) -> Recipe:
    """Apply `key=value` overrides: `seed=3`, `strategy=mirrored`, `data.known_fraction=0.2`, `<step name>.<param>=v`.

    Values are parsed by the parameter's type hint; each step (and the data) is then validated
    once with all of its overrides, so their order does not matter.

    Raises:
        RecipeError: malformed override, unknown step or parameter, or a value of the wrong type.

    Example:
        >>> from ssl_multilabel.recipes import Embeddings, Propagate
        >>> r = Recipe(data=Embeddings(), steps=[Propagate()])
        >>> apply_overrides(r, ["propagate.k=7"]).step("propagate").k
        7
    """
    grouped: dict[str, list[tuple[str, str, str]]] = {}  # "data" or a step name -> (param, text, where)
    for item in overrides:
        where = f"--set {item}"
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RecipeError(f"{where}: expected KEY=VALUE, e.g. supervised.epochs=3.")
        if "." not in key:
            if key in ("seed", "name", "strategy"):
                recipe = recipe.with_override(key, text, where)
                continue
            raise RecipeError(
                f"{where}: expected STEP.PARAM=VALUE, data.PARAM=VALUE, seed=VALUE, name=VALUE or "
                f"strategy=VALUE; steps are {[s.name for s in recipe.steps]}."
            )
        target, _, param_name = key.partition(".")
        names = [s.name for s in recipe.steps]
        if target != "data" and target not in names:
            raise RecipeError(f"{where}: the recipe has no step {target!r}; steps are {names}.")
        if target != "data" and param_name == "name":
            raise RecipeError(f"{where}: step names cannot be overridden.")
        grouped.setdefault(target, []).append((param_name, text, where))
    if "data" in grouped:
        recipe = dataclasses.replace(recipe, data=recipe.data.with_overrides(grouped["data"]))
    steps = tuple(s.with_overrides(grouped[s.name]) if s.name in grouped else s for s in recipe.steps)
    return dataclasses.replace(recipe, steps=steps)


def load_recipe_file(path: str | os.PathLike) -> Recipe:
    """Import a recipe script by path and return its `RECIPE` (or `recipe`) object.

    Raises:
        FileNotFoundError: no such file.
        RecipeError: the script is not valid Python, cannot import a module, or defines no recipe.
    """
    import importlib.util

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Recipe file {str(path)!r} does not exist.")
    module_name = f"_ssl_multilabel_recipe_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RecipeError(f"Recipe file {str(path)!r} is not a Python file.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    # As `python recipe.py` does: the script's folder is searched first, so a module of custom steps
    # beside it imports the same way from `ssl-multilabel run` and `resume`.
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise RecipeError(f"Recipe file {str(path)!r} is not valid Python: {err.msg} (line {err.lineno}).") from None
    except ImportError as err:
        line = next((f.lineno for f in reversed(traceback.extract_tb(err.__traceback__)) if f.filename == str(path)), None)
        raise RecipeError(f"Recipe file {str(path)!r} cannot import what it needs: {err}"
                          + (f" (line {line})." if line else ".")) from None
    recipe = getattr(module, "RECIPE", None) or getattr(module, "recipe", None)
    if not isinstance(recipe, Recipe):
        raise RecipeError(
            f"Recipe file {str(path)!r} must define RECIPE (or recipe) = Recipe(...); "
            f"found {type(recipe).__name__ if recipe is not None else 'nothing'}."
        )
    return recipe


# === Run state ===


@dataclass
class RunState:
    """What steps read: the data, the current label table and model, and finished-step records."""

    run_dir: Path
    data: RecipeData
    labels: PartialLabels
    model_path: Path | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    _model_cache: tuple[Path, Any] | None = None

    def load_model(self) -> Any:
        """The current Keras model, loaded from its `.keras` file (None before any training).

        Every step loads the model from disk, so a resumed run and an uninterrupted one start each
        step from byte-identical weights.
        """
        if self.model_path is None:
            return None
        return load_keras_model(self.model_path, "Model file of a finished step")


def load_keras_model(path: str | os.PathLike, what: str = "Model file") -> Any:
    """A `.keras` model (not compiled), or a one-line error naming the file (`what` and its path).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable `.keras` archive.
    """
    from ssl_multilabel.models import check_keras_archive, load_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist.")
    check_keras_archive(path, what)

    try:
        return load_model(path, compile=False)
    except (ValueError, KeyError, TypeError, OSError) as err:
        raise ValueError(f"{what} {str(path)!r} cannot be loaded as a Keras model: {err}") from err


class StepContext:
    """Services the runner offers to a running step: output folder, seeds, callbacks, hooks."""

    def __init__(self, run_dir: Path, out_dir: Path, step: Step, index: int, seed: int,
                 callbacks: Sequence[Any] = (), strategy: Any = None, split_seed: int | None = None) -> None:
        self.run_dir = run_dir
        self.out_dir = out_dir
        self.step = step
        self.index = index
        self.seed = seed
        # One seed for the validation split of every step of a run (the first step's seed): a later
        # step must hold out the rows the earlier ones held out, or it validates the teacher on rows
        # the teacher trained on (and propagates the labels of rows the teacher validated on).
        self.split_seed = seed if split_seed is None else split_seed
        self.user_callbacks = list(callbacks)
        # The recipe's tf.distribute strategy (None: the default one); training steps pass it to
        # train_round. Created once by the runner (ssl_multilabel.recipes.distribute).
        self.strategy = strategy
        self.tensorboard_dir = run_dir / "tensorboard" / _step_dir_name(index, step)

    def seed_everything(self) -> None:
        """Seed Python, NumPy and TensorFlow with this step's seed; deterministic TF ops."""
        import keras
        import tensorflow as tf

        keras.utils.set_random_seed(self.seed)
        try:
            tf.config.experimental.enable_op_determinism()
        except Exception:  # already enabled, or unsupported by this TF build
            pass

    def callbacks(self) -> list[Any]:
        """TensorBoard logging into the run directory plus the user's callbacks.

        Without the `tensorboard` package the epoch logs go to `<tensorboard dir>/epochs.csv`.
        """
        import importlib.util

        import keras

        self.tensorboard_dir.mkdir(parents=True, exist_ok=True)
        if importlib.util.find_spec("tensorboard") is not None:
            for split in ("train", "validation"):  # made here with the umask's mode (TensorFlow's are 0755)
                (self.tensorboard_dir / split).mkdir(exist_ok=True)
            logger_callback = keras.callbacks.TensorBoard(log_dir=str(self.tensorboard_dir))
        else:
            logger.warning("TensorBoard is not installed (pip install tensorboard): epoch logs go to CSV.")
            logger_callback = keras.callbacks.CSVLogger(str(self.tensorboard_dir / "epochs.csv"), append=True)
        return [logger_callback] + self.user_callbacks

    def path(self, name: str) -> Path:
        return self.out_dir / name

    def save_json(self, name: str, data: Any) -> Path:
        path = self.out_dir / name
        atomic_write_json(path, data)
        return path

    def save_array(self, name: str, array: np.ndarray) -> Path:
        path = self.out_dir / name
        np.save(path, np.asarray(array))
        return path

    def checkpoint(self, point: str) -> None:
        """A named point inside a step. For the interruption test, `SSL_MULTILABEL_PAUSE_AT=
        <step>:<point>` makes the process write `<run dir>/.paused` and block there until killed
        (at most 10 minutes)."""
        wanted = os.environ.get(_PAUSE_ENV)
        if wanted != f"{self.step.name}:{point}":
            return
        marker = self.run_dir / ".paused"
        atomic_write_text(marker, f"{self.step.name}:{point}\n")
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and marker.exists():
            time.sleep(0.05)


# === Runner ===


#: Keys of `_versions()` that name the machine, not the code: a resume elsewhere is allowed, with a
#: warning (float sums in another order: the last digits of weights and scores can differ).
_MACHINE_KEYS = ("platform", "cpus", "TF_ENABLE_ONEDNN_OPTS")


def _source_digest() -> str:
    """SHA-256 (first 16 hex digits) of the imported package's source files, their paths and bytes:
    the code a run ran with, which the version number does not tell between two commits."""
    import ssl_multilabel

    root = Path(ssl_multilabel.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _versions() -> dict[str, str]:
    """The code and machine a run runs on: Python, the packages, the package's source digest, the
    platform, the CPUs this process may use and the oneDNN switch (both change TensorFlow's float
    sums, so the last digits of a run)."""
    out = {"python": platform.python_version()}
    for name in _VERSIONS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    if out["ssl-multilabel"] == "not installed":  # a source checkout that was not pip-installed
        import ssl_multilabel

        out["ssl-multilabel"] = f"{ssl_multilabel.__version__} (source)"
    out["ssl-multilabel source"] = _source_digest()
    out["platform"] = platform.platform()
    out["cpus"] = str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    out["TF_ENABLE_ONEDNN_OPTS"] = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")
    return out


def _check_same_versions(meta: dict[str, Any], run_dir: Path) -> None:
    """RecipeError when the run started with other code or packages than a resume would run (steps
    finished under one and continued under another give neither's run); a warning when only the
    machine differs. Keys a run's record lacks (older records) are not compared."""
    recorded, now = meta.get("versions") or {}, _versions()
    changed = [(k, recorded[k], now[k]) for k in now if k in recorded and recorded[k] != now[k]]
    code = [c for c in changed if c[0] not in _MACHINE_KEYS]
    if code:
        raise RecipeError(
            f"Run {str(run_dir)!r} started with other code or packages than this resume would run: "
            + ", ".join(f"{k} {a} -> {b}" for k, a, b in code)
            + ". Its finished steps and the rest would not make the run either gives: resume it with the code and "
            "packages it started with, or start a new run.")
    if changed:
        logger.warning("Run %s started on another machine setting (%s): the steps still to run can differ from the "
                       "uninterrupted run in the last digits of weights and scores.", run_dir,
                       ", ".join(f"{k} {a} -> {b}" for k, a, b in changed))


def _coverage(labels: PartialLabels) -> dict[str, Any]:
    """Cells per source (human / implied / propagated / teacher / unknown), total and per label."""
    per_label = {
        src.name.lower(): (labels.source == src).sum(axis=0).astype(int).tolist()
        for src in Source
    }
    return {
        "label_names": list(labels.label_names),
        "per_label": per_label,
        "total": {k: int(sum(v)) for k, v in per_label.items()},
    }


def _step_dir_name(index: int, step: Step) -> str:
    return f"{index + 1:02d}_{step.name}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _data_digest(data: RecipeData, source: Any = None) -> str:
    """The SHA-256 of what the steps are given: the training table (ids, labels, cells), the training
    and test inputs (image arrays or embeddings; for image files their paths relative to their common
    folder, sizes and modification times: a photo replaced under its name counts, a folder moved whole
    does not, and no image is read), and the bytes of the label
    CSV files `source` names (its `*_csv` path fields: the test rows' labels come from them too).
    Each finished step records it, so a resumed run can tell that its data changed since. The
    loaded test table is not read here: only an Evaluate step reads it (B5's guard test)."""
    digest = hashlib.sha256()
    for name in getattr(source, "path_fields", ()):
        path = getattr(source, name) if name.endswith("_csv") else ""
        if path and os.path.isfile(path):
            digest.update(f"{name}\0{_sha256(Path(path))}".encode())
    table = data.labels
    digest.update(repr((table.ids, table.label_names, table.values.dtype.str)).encode())
    for cells in (table.known, np.where(table.known, table.values, 0)):  # what an unknown cell holds: not data
        digest.update(np.ascontiguousarray(cells))
    for inputs in (data.inputs, data.test_inputs):
        if isinstance(inputs, np.ndarray):
            digest.update(repr((inputs.shape, inputs.dtype.str)).encode())
            digest.update(np.ascontiguousarray(inputs))
        elif inputs is None:
            digest.update(b"\1")
        else:
            paths = [os.path.abspath(p) for p in map(os.fspath, inputs)]
            # Paths relative to the images' common folder: a run directory (demo images inside it)
            # or an image folder moved as a whole keeps its digest.
            root = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else ""
            for path in paths:
                try:
                    info = os.stat(path)
                    stamp = f"{info.st_size}:{info.st_mtime_ns}"
                except OSError:
                    stamp = "missing"
                digest.update(f"{os.path.relpath(path, root)}\0{stamp}\0".encode())
    return digest.hexdigest()


@contextlib.contextmanager
def _run_lock(run_dir: Path) -> Any:
    """Hold an exclusive lock on `run_dir/.lock` (flock, non-blocking) or refuse at once.

    The lock belongs to the open file: the kernel releases it when the process ends, even on
    kill -9, so a stale lock file never blocks a later `resume`.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking (documented in docs/design.md)
        yield
        return
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RecipeError(
                f"Run directory {str(run_dir)!r} is in use by another ssl-multilabel process (it holds "
                f"{LOCK_FILE}); wait for that process to end, then resume."
            ) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _remove(path: Path) -> None:
    """Delete a file or a folder tree."""
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _clean_debris(run_dir: Path, finished_dirs: set[str]) -> None:
    """Remove temporary step folders, and the step folders and TensorBoard logs of steps not recorded
    in state.json (a step run again would otherwise log a second curve beside its first attempt's)."""
    for folder in (run_dir / "steps", run_dir / "tensorboard"):
        if not folder.is_dir():
            continue
        for child in folder.iterdir():
            if child.name not in finished_dirs:
                logger.info("Removing the unfinished step output %s.", child)
                _remove(child)
    (run_dir / ".paused").unlink(missing_ok=True)


def step_seed(recipe_seed: int, index: int) -> int:
    """The seed `run_recipe` gives the step at `index` of a recipe seeded `recipe_seed` (its
    `StepContext.seed`); the validation split of every step uses the first step's."""
    return recipe_seed * 1000 + index


def run_recipe(
    recipe: Recipe,
    out: str | os.PathLike | None = None,
    *,
    overrides: Sequence[str] = (),
    callbacks: Sequence[Any] = (),
    recipe_file: str | os.PathLike | None = None,
    resume: bool = False,
    command: Sequence[str] | None = None,
    start_from: str | os.PathLike | None = None,
) -> Path:
    """Run a recipe into a run directory (or resume it) and return the directory.

    Args:
        recipe: the recipe.
        out: the run directory; default `runs/<recipe name>-<timestamp>`. It must be new or
            empty unless `resume` is true.
        overrides: `KEY=VALUE` strings (see `apply_overrides`).
        callbacks: Keras callbacks passed to every training step (besides TensorBoard).
        recipe_file: the script the recipe came from (recorded so `resume` can import custom steps).
        resume: continue an existing run directory at its first unfinished step.
        command: the command line to record (default `sys.argv`).
        start_from: another run directory of a recipe with the same data, seed and strategy
            whose first steps are this recipe's first steps (same configs and names): its
            finished steps among them are copied into the new run instead of being run again,
            e.g. one trained teacher shared by several recipes. Steps are seeded by their
            position, so the result is the run from scratch without the repeated work.

    With `recipe.strategy == "multi_worker"` every worker of `TF_CONFIG` calls this with the same
    arguments; only the chief writes `out`, the others run the same steps in a scratch folder
    (`_run_as_worker`) and return `out` too.

    Returns:
        The run directory.

    Example:
        >>> from ssl_multilabel.recipes import Embeddings, Propagate
        >>> run_recipe(Recipe(data=Embeddings(), steps=[Propagate()]), "runs/demo")  # doctest: +SKIP
    """
    # Everything is validated before the run directory is created, so a mistake leaves nothing
    # behind and the same --out can be used again.
    recipe = apply_overrides(recipe, overrides)
    recipe = dataclasses.replace(recipe, data=recipe.data.resolved(), steps=tuple(s.resolved() for s in recipe.steps))
    recipe.data.check_inputs()
    _check_batch_bytes(recipe)
    if not resume:  # on resume, only the steps still to run are checked (below), once state.json is read
        _check_step_files(recipe.steps)
    role = worker_role(recipe.strategy)  # TF_CONFIG checked before anything is created
    if out is None:
        out = default_run_dir(recipe)
    if not str(out).strip():
        raise RecipeError("--out is empty; expected the path of a new or empty run directory.")
    run_dir = Path(out).resolve()
    resolved = recipe.to_dict()
    taken = next((p for p in (run_dir, *run_dir.parents) if p.exists() and not p.is_dir()), None)
    if taken is not None:
        raise RecipeError(f"--out {str(out)!r}: {str(taken)!r} is a file; expected a new or empty run directory.")

    if resume and role.is_chief:
        strategy = make_strategy(recipe.strategy)
        with _run_lock(run_dir):
            meta, state = read_run(run_dir)
            _check_same_recipe(meta, resolved, run_dir)
            if len(state["finished"]) < len(recipe.steps):  # a finished run has nothing left to mix
                _check_same_versions(meta, run_dir)
            _check_finished_settings(state["finished"], recipe, run_dir)
            _check_step_files(recipe.steps[len(state["finished"]):])
            _check_same_step_files(meta, recipe.steps[len(state["finished"]):], run_dir)
            if state.get("status") in ("failed", "interrupted"):  # running again: the recorded stop is history
                state = {"finished": state["finished"], "status": "running"}
                atomic_write_json(run_dir / STATE_FILE, state)
            _run_logged(recipe, run_dir, state, callbacks, strategy)
        return run_dir

    def not_empty() -> RecipeError:
        return RecipeError(
            f"Run directory {str(run_dir)!r} exists and is not empty; continue it with "
            f"`ssl-multilabel resume {run_dir}` or choose another --out."
        )

    if role.is_chief and run_dir.exists() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        raise not_empty()
    shared: list[dict[str, Any]] = []
    if start_from is not None:
        if resume or recipe.strategy == "multi_worker":
            raise RecipeError("start_from starts a new run on one machine; it cannot be combined with resume "
                              "or strategy=multi_worker.")
        shared = _shared_steps(Path(start_from), recipe, resolved)
    script = Path(recipe_file).resolve() if recipe_file else None
    meta = {
        "recipe": resolved,
        "seed": recipe.seed,
        "overrides": list(overrides),
        "recipe_file": str(script) if script else None,
        # `resume` imports the script only while its bytes have this hash (docs/design.md).
        "recipe_file_sha256": _sha256(script) if script else None,
        "command": list(command if command is not None else sys.argv),
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "run_id": uuid.uuid4().hex[:16],  # names the run in the cells files `suggest` writes
        "versions": _versions(),
        "step_files": _step_file_digests(recipe.steps),
    }
    if start_from is not None:
        meta["start_from"] = str(Path(start_from).resolve())
    # Created once, before any step runs a TensorFlow op (MultiWorkerMirroredStrategy needs that);
    # with multi_worker this waits until every worker of TF_CONFIG has connected.
    strategy = make_strategy(recipe.strategy)
    if not role.is_chief:
        _run_as_worker(recipe, run_dir, role, meta, resume=resume, callbacks=callbacks, strategy=strategy)
        return run_dir
    # The outermost folder this call creates (`--out new/run` creates `new` too): removed again when
    # the run stops with nothing to resume.
    created = next((p for p in reversed((run_dir, *run_dir.parents)) if not p.exists()), None)
    run_dir.mkdir(parents=True, exist_ok=True)
    ours = False
    try:
        with _run_lock(run_dir):
            if (run_dir / RECIPE_FILE).exists():  # another process started this run meanwhile
                raise not_empty()
            ours = True
            atomic_write_json(run_dir / RECIPE_FILE, meta)
            for record in shared:
                shutil.copytree(Path(start_from) / record["dir"], run_dir / record["dir"])
            state = {"finished": shared, "status": "running"}
            atomic_write_json(run_dir / STATE_FILE, state)
            _run_logged(recipe, run_dir, state, callbacks, strategy)
    except BaseException as stop:
        # A run that stops with an error before any step finished (a labels CSV without its id column,
        # a setting the backbone refuses) has nothing to resume: remove what it wrote, so the same
        # command works once the data or the setting is fixed. One interrupted (Ctrl-C) inside its
        # first step is kept for `resume`, which reuses its cached features.
        if ours and not (isinstance(stop, KeyboardInterrupt) and (run_dir / "steps").exists()) \
                and _nothing_finished(run_dir):
            _remove_unstarted_run(run_dir, created)
        raise
    return run_dir


def default_run_dir(recipe: Recipe) -> Path:
    """The run directory of a run without `out`: `runs/<recipe name>-<date>-<time>`."""
    return Path("runs") / f"{recipe.name}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"


#: One batch of model inputs (float32) above this is refused: the network's activations are several
#: times larger, and TensorFlow runs out of memory or crashes (3000 x 3000 px, batch 64: a segfault).
MAX_BATCH_BYTES = 2 * 1024**3


def _check_batch_bytes(recipe: Recipe) -> None:
    """RecipeError when a step's batch of images at `data.image_size` would exceed `MAX_BATCH_BYTES`."""
    size, channels = getattr(recipe.data, "image_size", None), getattr(recipe.data, "channels", None)
    if not size or not channels:
        return
    for step in recipe.steps:
        batch_bytes = (getattr(step, "batch_size", None) or 0) * size[0] * size[1] * channels * 4
        if batch_bytes > MAX_BATCH_BYTES:
            raise RecipeError(
                f"data.image_size {tuple(size)} with {step.name}.batch_size {step.batch_size}: one batch of images "
                f"takes {batch_bytes / 1024**3:.1f} GiB as float32 before the network's "
                f"activations, which are larger still; expected at most {MAX_BATCH_BYTES / 1024**3:g} GiB. Use a smaller "
                "image_size (the pretrained backbones were trained at 224 x 224) or batch_size."
            )


def _weights_file(step: Step) -> str | None:
    """The step's `weights` setting when it names a file (not '' for random, nor 'imagenet')."""
    value = getattr(step, "weights", None)
    return value if isinstance(value, str) and value not in ("", "imagenet") else None


def _check_step_files(steps: Sequence[Step]) -> None:
    """RecipeError naming the step and the path when a file `steps` will read is missing: a
    `weights` setting that names a file (anything but '' and 'imagenet') that is not an existing
    HDF5 file (the backbone loads it only when its step starts, after the data are loaded and the
    run directory exists), or an `init_model` without its label file. `resume` checks only the
    steps still to run: a finished step does not read its files again."""
    for step in steps:
        init_model = getattr(step, "init_model", None)
        if init_model:
            from ssl_multilabel.labeling import labels_file

            names = labels_file(Path(init_model))
            if not Path(init_model).is_file():
                raise RecipeError(f"Step setting {step.name}.init_model: {init_model!r} does not exist.")
            if not names.is_file():
                raise RecipeError(
                    f"Step setting {step.name}.init_model: {init_model!r} has no label file {names.name!r} beside it "
                    "(the JSON list of the model's label names, in output order, that the Export step writes).")
        value = _weights_file(step)
        if value is None:
            continue
        path = Path(value)
        expected = ("expected '' (random), 'imagenet' or the path of an existing *_notop .weights.h5 file of "
                    "the step's backbone")
        if not path.is_file():
            problem = "is a folder" if path.is_dir() else "does not exist"
            raise RecipeError(f"Step setting {step.name}.weights: the file {value!r} {problem}; {expected}.")
        try:
            with open(path, "rb") as file:
                head = file.read(2056)
        except OSError as err:
            raise RecipeError(f"Step setting {step.name}.weights: the file {value!r} cannot be read "
                              f"({err.strerror or err}); {expected}.") from None
        # The HDF5 signature sits at offset 0, 512, 1024, 2048... (after an optional user block).
        if not any(head[offset:offset + 8] == b"\x89HDF\r\n\x1a\n" for offset in (0, 512, 1024, 2048)):
            raise RecipeError(f"Step setting {step.name}.weights: the file {value!r} is not an HDF5 file (no HDF5 "
                              f"signature); {expected}.")


def _check_result(step: Step, result: Any, before: PartialLabels) -> None:
    """RecipeError naming the step when what it returned cannot be the run's next state: not a
    `StepResult`, a table of other rows (or in another order) or labels than the run's (later steps
    pair row i of the table with row i of the images), a model that is no Keras model."""
    what = f"Step {step.name!r} ({type(step).__name__}) returned"
    if not isinstance(result, StepResult):
        raise RecipeError(f"{what} {type(result).__name__}; expected a StepResult.")
    labels = result.labels
    if labels is not None and not isinstance(labels, PartialLabels):
        raise RecipeError(f"{what} labels of type {type(labels).__name__}; expected a PartialLabels table or None.")
    if labels is not None and (labels.ids, labels.label_names) != (before.ids, before.label_names):
        same_rows = labels.ids == before.ids
        raise RecipeError(
            f"{what} a table of {labels.n_samples} rows and labels {list(labels.label_names)[:10]}; the run's has "
            f"{before.n_samples} rows and labels {list(before.label_names)[:10]}"
            + ("" if same_rows or sorted(labels.ids) != sorted(before.ids) else " (the same rows in another order)")
            + ": a step keeps the rows, their order and the labels of the table it is given.")
    if result.model is not None and not callable(getattr(result.model, "save", None)):
        raise RecipeError(f"{what} a model of type {type(result.model).__name__}; expected a Keras model or None.")


def _step_file_digests(steps: Sequence[Step]) -> dict[str, str]:
    """SHA-256 of each file the steps read besides the data: a local `weights` file, an
    `init_model` and its label file (by the path the resolved recipe records)."""
    from ssl_multilabel.labeling import labels_file

    paths = []
    for step in steps:
        weights, init_model = _weights_file(step), getattr(step, "init_model", None)
        if weights is not None:
            paths.append(Path(weights))
        if init_model:
            paths += [Path(init_model), labels_file(Path(init_model))]
    return {str(path): _sha256(path) for path in paths if path.is_file()}


def _check_same_step_files(meta: dict[str, Any], steps: Sequence[Step], run_dir: Path) -> None:
    """RecipeError when a file the steps still to run read (weights, init_model) is not the file
    the run started with: the resumed run would not be the run it continues. Older records, which
    hold no digests, are not compared."""
    recorded = meta.get("step_files") or {}
    changed = [path for path, digest in _step_file_digests(steps).items() if recorded.get(path, digest) != digest]
    if changed:
        raise RecipeError(f"Run {str(run_dir)!r}: {', '.join(repr(p) for p in changed)} changed since the run started "
                          "(another SHA-256), and a step still to run reads it: restore the file the run started "
                          "with, or start a new run.")


def _nothing_finished(run_dir: Path) -> bool:
    try:
        return not read_run(run_dir)[1]["finished"]
    except RecipeError:  # stopped before its recipe.json was written
        return True


def _remove_unstarted_run(run_dir: Path, created: Path | None) -> None:
    """Delete the folders this call created (`created`: the outermost), or empty the run directory
    it was given, keeping the lock file."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    for child in run_dir.iterdir():
        if child.name != LOCK_FILE:
            _remove(child)


def _shared_steps(source: Path, recipe: Recipe, resolved: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of the finished steps of run `source` that are `recipe`'s first steps (copied by
    `run_recipe(start_from=source)`); RecipeError if the runs do not share data, seed or a first step."""
    meta, state = read_run(source)
    other = _recorded_recipe(meta)
    for key in ("data", "seed", "strategy"):
        if other.get(key) != resolved[key]:
            raise RecipeError(
                f"start_from {str(source)!r}: its recipe has another {key} ({other.get(key)!r}; this recipe: "
                f"{resolved[key]!r}); only runs of the same data, seed and strategy share steps."
            )
    shared = []
    for record, mine, theirs in zip(state["finished"], resolved["steps"], other["steps"]):
        if mine != theirs:
            break
        shared.append({**record, "copied_from": str(source.resolve())})
    if not shared:
        raise RecipeError(
            f"start_from {str(source)!r}: no finished step of that run is this recipe's first step "
            f"({resolved['steps'][0]!r}); nothing to share."
        )
    return shared


def _recorded_recipe(meta: dict[str, Any]) -> dict[str, Any]:
    """The recipe recorded in `meta`, with every setting added since it was recorded at its default.

    A run recorded before a step gained a setting (or before `Recipe.strategy`) ran with what is
    now that setting's default, so it is the same recipe as one that states the default.
    """
    try:
        return Recipe.from_dict(meta["recipe"]).to_dict()
    except (RecipeError, TypeError, KeyError):  # a type this version does not know: compare as recorded
        return {"strategy": "default", **meta["recipe"]}


def _check_same_recipe(meta: dict[str, Any], resolved: dict[str, Any], run_dir: Path) -> None:
    if _recorded_recipe(meta) != resolved:
        raise RecipeError(
            f"The recipe differs from the one recorded in {str(run_dir / RECIPE_FILE)!r}; "
            "resume with `ssl-multilabel resume RUN_DIR` (no overrides) or start a new run."
        )


def _step_settings(recipe: Recipe, step: Step) -> dict[str, Any]:
    """What a finished step ran with, kept in its `state.json` record: the seed, the data and the step."""
    return {"seed": recipe.seed, "data": recipe.data.to_dict(), "step": step.to_dict()}


def _check_finished_settings(finished: list[dict[str, Any]], recipe: Recipe, run_dir: Path) -> None:
    """RecipeError when `recipe.json` was edited for a step that already finished (its outputs were
    made with other settings, and resume does not rerun it). Records from before this check carry
    no settings and pass; a setting added since a step finished counts at its default."""
    for record, step in zip(finished, recipe.steps):
        ran, now = record.get("settings"), _step_settings(recipe, step)
        if not isinstance(ran, dict):
            continue
        try:
            ran = {**ran, "step": Step.from_dict(ran["step"]).to_dict(),
                   "data": DataSource.from_dict(ran["data"]).to_dict()}
        except (RecipeError, TypeError, KeyError):  # a type this version does not know: compare as recorded
            pass
        changed = [f"{part}.{key} (ran with {ran.get(part, {}).get(key)!r}, now {now[part].get(key)!r})"
                   for part in ("data", "step") for key in sorted(set(ran.get(part, {})) | set(now[part]))
                   if ran.get(part, {}).get(key) != now[part].get(key)]
        if ran.get("seed") != now["seed"]:
            changed.insert(0, f"seed (ran with {ran.get('seed')!r}, now {now['seed']!r})")
        if changed:
            raise RecipeError(
                f"{str(run_dir / RECIPE_FILE)!r} was changed for step {record['name']!r}, which finished with other "
                f"settings: {'; '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}. Resume does not rerun a "
                "finished step: restore recipe.json, or start a new run with the new settings."
            )


def _run_as_worker(recipe: Recipe, run_dir: Path, role: WorkerRole, meta: dict[str, Any], *, resume: bool,
                   callbacks: Sequence[Any], strategy: Any) -> None:
    """Run every step as a non-chief worker, in a scratch folder deleted afterwards.

    A worker takes part in the all-reduce of every training step, so it runs all the chief's
    steps in the same order, with the same seeds and data; what they write (recipe.json,
    state.json, step folders, feature cache, TensorBoard logs, log.txt, the final labels) goes to
    a temporary folder under `TMPDIR`, removed when the run ends or fails. `run_dir` is not
    touched. To resume, the worker copies the chief's `recipe.json`, `state.json` and finished
    step folders from `run_dir` (it must see it, e.g. on a shared filesystem) and continues there.
    """
    with tempfile.TemporaryDirectory(prefix=f"ssl-multilabel-{role.task_type}{role.task_index}-") as tmp:
        scratch = Path(tmp) / "run"
        if resume:
            if not (run_dir / RECIPE_FILE).is_file():
                raise RecipeError(
                    f"Worker {role.describe()} cannot resume: {str(run_dir)!r} is not a run directory here. Every "
                    "worker reads the chief's run directory to resume: put it on a filesystem all workers see."
                )
            chief_meta, chief_state = read_run(run_dir)
            _check_same_recipe(chief_meta, meta["recipe"], run_dir)
            _check_finished_settings(chief_state["finished"], recipe, run_dir)
            # Not the lock, temporary step folders or caches: the chief may be using them.
            shutil.copytree(run_dir, scratch, ignore=shutil.ignore_patterns(
                LOCK_FILE, ".*.tmp", ".paused", "features", "tensorboard"))
            state = read_run(scratch)[1]
        else:
            scratch.mkdir()
            atomic_write_json(scratch / RECIPE_FILE, meta)
            state = {"finished": [], "status": "running"}
            atomic_write_json(scratch / STATE_FILE, state)
        logger.info("Worker %s of %d: the chief writes %s; this worker writes into the scratch folder %s "
                    "(removed at the end).", role.describe(), role.num_workers, run_dir, scratch)
        _run_logged(recipe, scratch, state, callbacks, strategy)


def _run_logged(recipe: Recipe, run_dir: Path, state: dict[str, Any], callbacks: Sequence[Any],
                strategy: Any = None) -> None:
    """`_run_steps` with the log also written to `run_dir/log.txt`."""
    handler = logging.FileHandler(run_dir / "log.txt")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with _sigint_seen() as sigint:
            _run_steps(recipe, run_dir, state, callbacks, strategy)
    except KeyboardInterrupt:
        _record_stop(run_dir, "interrupted")
        raise
    except Exception as err:
        if sigint[0]:  # a Ctrl-C that surfaced from inside TensorFlow as another error (a SystemError)
            _record_stop(run_dir, "interrupted")
            raise KeyboardInterrupt(str(err)) from err
        # The command line prints one line for an error; the traceback goes to log.txt only, so an
        # error from inside the library can still be told from a user error and reported.
        handler.handle(logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "The run stopped with an error:",
                                         (), sys.exc_info()))
        _record_stop(run_dir, "failed", err)
        raise
    finally:
        root.removeHandler(handler)
        handler.close()


@contextlib.contextmanager
def _sigint_seen() -> Any:
    """Yield a one-item list that turns True when SIGINT (Ctrl-C) arrives inside the block; the
    handler in place before still runs (Python's raises KeyboardInterrupt). A Ctrl-C inside a
    TensorFlow step can surface as another error (`SystemError: bad argument to internal
    function`): the run is then still recorded as interrupted. Off the main thread (where no signal
    handler can be set) the list stays False."""
    import signal
    import threading

    seen = [False]
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if previous == signal.SIG_IGN:  # ignored (a background job): no interrupt, nothing to note
            return
        seen[0] = True
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def _record_stop(run_dir: Path, status: str, err: Exception | None = None) -> None:
    """Mark state.json "failed" (with the error's first line) or "interrupted", so `report` and
    `suggest` tell the truth; `resume` reruns the step that stopped. Never hides the error."""
    try:
        _, state = read_run(run_dir)
        extra = {}
        if err is not None:
            line = (str(err).strip().splitlines() or [""])[0]
            extra["error"] = f"{type(err).__name__}: {line}" if line else type(err).__name__
        atomic_write_json(run_dir / STATE_FILE, {**state, "status": status, **extra})
    except (OSError, RecipeError):
        logger.debug("Could not record the stop in %s.", run_dir / STATE_FILE, exc_info=True)


def _run_steps(recipe: Recipe, run_dir: Path, state: dict[str, Any], callbacks: Sequence[Any],
               strategy: Any = None) -> None:
    from tqdm.auto import tqdm

    finished: list[dict[str, Any]] = state.get("finished", [])
    expected = [_step_dir_name(i, s) for i, s in enumerate(recipe.steps)]
    for i, record in enumerate(finished):
        if i >= len(expected) or record["dir"] != f"steps/{expected[i]}":
            raise RecipeError(f"{STATE_FILE} of {str(run_dir)!r} does not match the recipe's steps.")
    _clean_debris(run_dir, {Path(r["dir"]).name for r in finished})

    data = recipe.data.load(recipe.seed, run_dir)
    data_digest = _data_digest(data, recipe.data)
    ran_on = finished[-1].get("data_sha256") if finished else None  # None: a run from before the check
    if ran_on is not None and ran_on != data_digest:
        where = getattr(recipe.data, "labels_csv", "") or "the recipe's data"
        raise RecipeError(
            f"The data of {str(run_dir)!r} changed since its finished steps ran (the training table or the inputs differ "
            f"from what step {finished[-1]['name']!r} was given: is {where} edited, or an image replaced?); the steps "
            "still to run would "
            "work on other data than the steps before them. Restore the data, or start a new run on them."
        )
    run_state = RunState(run_dir=run_dir, data=data, labels=data.labels, records=finished)
    for record in finished:
        if record.get("labels"):
            # require_sidecar guards the labels.csv of runs from before the binary format.
            try:
                run_state.labels = PartialLabels.load(run_dir / record["labels"], require_sidecar=True)
            except ValueError as err:
                raise RecipeError(
                    f"{err} It is damaged: restore it, or delete the entries of step {record['name']!r} and the "
                    f"steps after it from {STATE_FILE} and resume (they are rerun)."
                ) from None
        if record.get("model"):
            run_state.model_path = run_dir / record["model"]
    for step in recipe.steps[len(finished):]:
        step.check_data(data)
    if len(finished) == len(recipe.steps):
        logger.info("%s finished all %d steps: nothing to resume.", run_dir, len(recipe.steps))
    elif finished:
        logger.info("Resuming %s at step %d of %d.", run_dir, len(finished) + 1, len(recipe.steps))

    bar = tqdm(total=len(recipe.steps), initial=len(finished), desc="recipe", unit="step", disable=None)
    for index in range(len(finished), len(recipe.steps)):
        step = recipe.steps[index]
        dir_name = expected[index]
        bar.set_postfix_str(step.name)
        tmp_dir = run_dir / "steps" / f".{dir_name}.tmp"
        shutil.rmtree(tmp_dir, ignore_errors=True)
        tmp_dir.mkdir(parents=True)
        # Seed per step (not once per run), so a resumed step starts from the same seed.
        ctx = StepContext(run_dir, tmp_dir, step, index, seed=step_seed(recipe.seed, index), callbacks=callbacks,
                          strategy=strategy, split_seed=step_seed(recipe.seed, 0))
        logger.info("Step %d/%d: %s", index + 1, len(recipe.steps), step.name)
        start = time.perf_counter()
        before = run_state.labels
        try:
            result = step.run(ctx, run_state)
        except Exception as err:  # the CLI's error line names the step (and, once fixed, `resume`)
            err.ssl_multilabel_step = (step.name, str(run_dir))  # type: ignore[attr-defined]
            raise
        _check_result(step, result, before)
        record: dict[str, Any] = {
            "index": index,
            "name": step.name,
            "type": type(step).__name__,
            "dir": f"steps/{dir_name}",
            "labels": None,
            "model": None,
            "metrics": result.metrics,
            "info": result.info,
            "settings": _step_settings(recipe, step),
            "data_sha256": data_digest,
        }
        if result.labels is not None:
            result.labels.save(tmp_dir / LABELS_FILE)
            record["labels"] = f"steps/{dir_name}/{LABELS_FILE}"
            # The cells this step filled, or whose machine value or source it replaced (a teacher's
            # cell over a propagated one): what the report's confidence histogram shows.
            after = result.labels
            new = after.known & (~before.known | (after.source != before.source) | (after.values != before.values)
                                 | (after.weight != before.weight))
            atomic_write_json(tmp_dir / "coverage.json", {"before": _coverage(before), "after": _coverage(result.labels)})
            np.savez(tmp_dir / "filled.npz", weight=after.weight[new], source=after.source[new], value=after.values[new])
        if result.model is not None:
            result.model.save(tmp_dir / "model.keras")
            record["model"] = f"steps/{dir_name}/model.keras"
        if result.metrics:
            atomic_write_json(tmp_dir / "metrics.json", result.metrics)
        record["seconds"] = round(time.perf_counter() - start, 3)
        final_dir = run_dir / "steps" / dir_name
        os.replace(tmp_dir, final_dir)
        finished.append(record)
        atomic_write_json(run_dir / STATE_FILE, {"finished": finished, "status": "running"})
        if result.labels is not None:
            run_state.labels = result.labels
        if result.model is not None:
            run_state.model_path = final_dir / "model.keras"
        run_state.records = finished
        logger.info("Step %s done in %.1f s.", step.name, record["seconds"])
        bar.update(1)
    bar.close()
    run_state.labels.save(run_dir / LABELS_FILE)
    atomic_write_json(run_dir / STATE_FILE, {"finished": finished, "status": "finished"})


def resume_run(run_dir: str | os.PathLike, *, callbacks: Sequence[Any] = ()) -> Path:
    """Continue a run directory at its first unfinished step.

    The recipe is rebuilt from the resolved recipe stored in `recipe.json` (data, not code).
    Only when it names step or data types that are not built in is the recipe script recorded
    at `run` imported, to register them, and only if the file still has the sha256 recorded
    with it; the log says which file is imported and why (docs/design.md).

    Raises:
        RecipeError: not a run directory, a damaged `recipe.json` / `state.json`, or its recipe
            cannot be rebuilt safely.
    """
    run_dir = Path(run_dir)
    return run_recipe(recipe_of_run(run_dir, read_run(run_dir)[0]), run_dir, callbacks=callbacks, resume=True)


def recipe_of_run(run_dir: Path, meta: dict[str, Any]) -> Recipe:
    """The recipe of a run rebuilt from its `recipe.json` (`meta`); the recorded script is imported
    (sha256 checked) only when the recipe names types that are not built in (`resume_run`, `suggest`)."""
    missing = _missing_types(meta["recipe"])
    if missing:
        script = _verified_script(run_dir / RECIPE_FILE, meta, missing)
        logger.info("Importing the recipe script %s (recorded in %s, sha256 checked) for the types %s.",
                    script, RECIPE_FILE, missing)
        load_recipe_file(script)
    return Recipe.from_dict(meta["recipe"])


def _verified_script(recipe_json: Path, meta: dict[str, Any], missing: list[str]) -> Path:
    """The recorded recipe script if it is the file `run` imported (same sha256), else RecipeError."""
    where = f"{str(recipe_json)!r} uses the types {missing}, which are not built in"
    recorded, digest = meta.get("recipe_file"), meta.get("recipe_file_sha256")
    yourself = "import the module that defines them yourself and call ssl_multilabel.recipes.resume_run(RUN_DIR)"
    if not recorded:
        raise RecipeError(f"{where}, and it records no recipe script; {yourself}.")
    script = Path(recorded)
    if not script.is_file():
        raise RecipeError(f"{where}; the recipe script {recorded!r} that defined them does not exist any more; "
                          f"restore it, or {yourself}.")
    if not isinstance(digest, str):
        raise RecipeError(f"{where}; it names the recipe script {recorded!r} but records no sha256 of it, so "
                          f"resume will not import it; {yourself}.")
    actual = _sha256(script)
    if actual != digest:
        raise RecipeError(
            f"{where}; the recipe script {recorded!r} is not the file the run was started with (sha256 "
            f"{actual[:12]}..., recorded {digest[:12]}...), so resume will not import it; restore the "
            f"script, or {yourself}."
        )
    return script


def _missing_types(data: Any) -> list[str]:
    """Sorted `type` names in a resolved recipe that are not registered config classes."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "type" in value and value["type"] not in _REGISTRY:
                found.add(str(value["type"]))
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(data)
    return sorted(found)
