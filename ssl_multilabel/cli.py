"""The `ssl-multilabel` command line: run and resume recipes, reports, propagation, prediction, labels.

    ssl-multilabel run recipes/quickstart.py --out runs/qs --set noisy_student.rounds=2
    ssl-multilabel resume runs/qs
    ssl-multilabel report runs/qs
    ssl-multilabel propagate --labels labels.csv --embeddings emb.npy --out filled.csv
    ssl-multilabel predict --model runs/qs/export/model.keras --images photos/ --out scores.csv
    ssl-multilabel labels labels.csv

A user error (missing file, bad `--set`, unknown step parameter, malformed table) prints one line
`error: ...` on stderr and exits with status 2; `--debug` shows the traceback instead.
`get_args_parser()` and `main(argv)` let tests call the CLI in-process.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Iterator, NoReturn, Sequence

from ssl_multilabel.errors import HEIF_ADVICE, HEIF_SUFFIXES, IMAGE_SUFFIXES
from ssl_multilabel.propagation.defaults import DEFAULT_ALPHA, DEFAULT_K, DEFAULT_METRIC

__all__ = ["get_args_parser", "main", "run_cli", "run_recipe_cli"]

logger = logging.getLogger(__name__)

USER_ERROR = 2


def _heif_hint(names: Sequence[str]) -> str:
    n = sum(Path(name).suffix.lower() in HEIF_SUFFIXES for name in names)
    return f"; {n} of them are HEIC/HEIF/AVIF photos: {HEIF_ADVICE}" if n else ""


class _UsageError(Exception):
    """An argparse usage error, reported as one `error:` line like every other user error."""


class _Interrupted(KeyboardInterrupt):
    """Ctrl-C during `run` / `resume` of the run directory `run_dir` (absolute)."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir


@contextlib.contextmanager
def _names_run_on_interrupt(run_dir: str | os.PathLike) -> Iterator[None]:
    """Turn a Ctrl-C inside the block into `_Interrupted(run_dir)`, so the error line names the run to resume."""
    try:
        yield
    except KeyboardInterrupt as stop:
        raise _Interrupted(Path(run_dir).resolve()) from stop


def _interrupted_line(stop: KeyboardInterrupt) -> str:
    """The `error:` line of a Ctrl-C: the `resume` command of the interrupted run, if it can be resumed."""
    from ssl_multilabel.run_dir import RECIPE_FILE

    run_dir = getattr(stop, "run_dir", None)
    if run_dir is None:
        return "error: interrupted"
    if not (run_dir / RECIPE_FILE).is_file():  # stopped before its first step: the runner removed what it wrote
        return f"error: interrupted before the run started; nothing to resume in {str(run_dir)!r}, run the command again"
    return f"error: interrupted; continue with `ssl-multilabel resume {shlex.quote(str(run_dir))}`"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: {message}")


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Errors that are the user's input or environment (not a bug): shown as one line.

    `OSError` covers missing / unreadable files, permission denied and a full disk;
    `json.JSONDecodeError` and `UnicodeDecodeError` are `ValueError`s. TensorFlow's own
    file errors (an image deleted while a dataset reads it) are added only when TensorFlow is
    already imported, so a command that never needed it does not import it here.
    """
    from ssl_multilabel.recipes.config import RecipeError

    types: list[type[BaseException]] = [_UsageError, RecipeError, ValueError, TypeError, OSError]
    tf = sys.modules.get("tensorflow")
    errors = getattr(tf, "errors", None)
    if errors is not None:
        types += [getattr(errors, name) for name in _TF_ENVIRONMENT_ERRORS if hasattr(errors, name)]
    return tuple(types)


# TensorFlow errors caused by files and resources, not by the code.
_TF_ENVIRONMENT_ERRORS = ("NotFoundError", "PermissionDeniedError", "ResourceExhaustedError", "DataLossError")
# errno values of a full disk or a file-size / quota limit.
_NO_SPACE = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _tf_message(error: BaseException) -> str:
    """The useful part of a TensorFlow op error: `path; No such file or directory`, without the
    `{{function_node ...}}` / `[[{{node ...}}]]` / `[Op:...]` decorations."""
    text = getattr(error, "message", None) or str(error)
    text = re.sub(r"\{\{function_node [^}]*\}\}", "", text)
    text = re.sub(r"\[\[\{\{node [^}]*\}\}\]\]|\[Op:[^\]]*\]|\bname: ?$", "", text.strip())
    text = re.sub(r"Error in user-defined function passed to .*? transformation with iterator: \S+: ", "", text)
    found = re.search(r"(\S+); (No such file or directory|Permission denied)", text)
    if found:
        return (f"cannot read {found.group(1)!r}: {found.group(2)} (the file was removed or changed "
                "while it was in use); restore it, or remove its row, and run again")
    return text


def _one_line(error: BaseException) -> str:
    if type(error).__module__.startswith("tensorflow"):
        text = _tf_message(error)
    elif isinstance(error, OSError) and error.errno in _NO_SPACE:
        where = f" writing {error.filename!r}" if error.filename else ""
        text = (f"{error.strerror or error}{where} (errno {error.errno}): free disk space or raise the "
                "limit, then run again (`ssl-multilabel resume RUN_DIR` continues an interrupted run)")
    else:
        text = str(error)
    text = " ".join(text.split())
    if isinstance(error, KeyError):
        text = text.strip("'\"")
    text = text or type(error).__name__
    step, run_dir = getattr(error, "ssl_multilabel_step", (None, None))
    if step is not None:  # raised inside a step of a run
        if repr(step) not in text:
            text = f"step {step!r}: {text}"
        if (Path(run_dir) / "state.json").is_file() and "ssl-multilabel resume" not in text:
            text += f" (once fixed, `ssl-multilabel resume {shlex.quote(run_dir)}` reruns the step)"
    return text


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname).1s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, "_ssl_multilabel", False)]
    handler._ssl_multilabel = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # FAISS logs its CPU-feature probing at INFO; only its warnings matter to users.
    logging.getLogger("faiss").setLevel(max(level, logging.WARNING))
    # Every student round (and each new head) is a new model whose `predict` traces once: Keras'
    # warning about "retracing" then reads like a fault of the user's run. Below -v it is dropped.
    tf_logger = logging.getLogger("tensorflow")
    tf_logger.filters = [f for f in tf_logger.filters if not isinstance(f, _RetracingFilter)]
    if verbosity <= 0:
        tf_logger.addFilter(_RetracingFilter())


class _RetracingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def _quiet_tensorflow() -> None:
    """Import TensorFlow without its C++ start-up chatter, which would bury the one-line errors and
    the progress bars. TF_CPP_MIN_LOG_LEVEL no longer reaches the lines TensorFlow (>= 2.19) writes
    through absl before its logging starts (oneDNN, CUDA probing: "E0000 ... failed call to cuInit"
    on a machine without a GPU; tensorflow/tensorflow#100442), so the import and the device probe
    run with file descriptor 2 sent to a temporary file, which is shown if they fail. With
    TF_CPP_MIN_LOG_LEVEL=0 set by the user everything is shown."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0":
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="DIR", help="run directory (default runs/<recipe>-<time>)")
    parser.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
        help="override a parameter: STEP.PARAM=VALUE, data.PARAM=VALUE, seed=N, name=NAME or "
             "strategy=default|mirrored|multi_worker (repeatable)",
    )
    parser.add_argument("--show", action="store_true", help="print the resolved recipe and its parameters, then exit")


# === Parser ===


def _target_precision(text: str) -> float | None:
    if text.strip().lower() in ("none", "null"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0.5, 1] or 'none'; got {text!r}") from None
    if not 0.5 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0.5, 1] or 'none'; got {text!r}")
    return value


def _int_at_least(low: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an int >= {low}; got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an int >= {low}; got {text!r}")
        return value

    parse.__name__ = f"int >= {low}"
    return parse


def _open_unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1); got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1); got {text!r}")
    return value


def _optional_open_unit_float(text: str) -> float | None:
    return None if text.strip().lower() in ("none", "null") else _open_unit_float(text)


def _column_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated column names (e.g. a,b,c); got {text!r}")
    return names


_LABEL_COLUMNS_HELP = ("comma-separated label columns of a CSV of human labels (default: every column but the id); "
                       "other columns (an age, a view, notes) are not read")


def _files_under(folder: Path) -> list[Path]:
    """Every file under `folder`, subfolders included, symlinked ones too (`Path.rglob` skips those
    before Python 3.13); each real folder is listed once, so a link cycle ends. Hidden files and
    folders (a name starting with '.': macOS's `._IMG_0001.JPG` beside each photo on a card,
    `.thumbnails/`) are not listed. Sorted."""
    seen: set[str] = set()
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        found.extend(Path(root) / name for name in files if not name.startswith("."))
    return sorted(path for path in found if path.is_file())


def _check_out_file(path: str, flag: str = "--out", *, overwrite: bool, inputs: Sequence[tuple[str, Any]] = (),
                    kinds: tuple[str, ...] = (".csv",)) -> Path:
    """The output file of a command, checked before any work so a bad `--out` leaves nothing behind.

    With `overwrite=False` an existing file is refused (FileExistsError), e.g. a labels CSV
    given as `--out` by mistake; the commands that take `--overwrite` pass it here. Even with
    `overwrite`, `--out` may not be one of the command's `inputs` (`(what, path)` pairs), lie in
    a run directory (any folder above it that holds a run's recipe and state: `predict --out`
    into a run's `export/` replaced its filled table), or replace an existing file of another kind
    than `kinds` (these commands write tables; a photo, a model or a run's JSON given by mistake
    stays as it is).
    """
    from ssl_multilabel.run_dir import RECIPE_FILE, STATE_FILE

    if not path.strip():
        raise ValueError(f"{flag} is empty; expected the path of the file to write.")
    target = Path(path).resolve()
    for what, given in inputs:
        if given and Path(given).resolve() == target:
            raise ValueError(f"{flag} {path!r} is {what}; write to a new file.")
    run = next((d for d in target.parents if (d / RECIPE_FILE).is_file() and (d / STATE_FILE).is_file()), None)
    if run is not None:
        raise ValueError(f"{flag} {path!r} is inside the run directory {str(run)!r}, whose files the run and its "
                         "commands read; write outside it.")
    if overwrite and target.is_file() and target.suffix.lower() not in kinds:
        raise FileExistsError(f"{flag} {path!r} exists and is not a {' or '.join(kinds)} file; it is not replaced, "
                              f"even with --overwrite. Choose a {kinds[0]} file.")
    if path.endswith(("/", os.sep)) or Path(path).is_dir():
        raise IsADirectoryError(f"{flag} {path!r} is a directory; expected the path of a file to write, e.g. {path.rstrip('/' + os.sep) or '.'}/out.csv.")
    parent = Path(path).parent
    if parent.exists() and not parent.is_dir():
        raise NotADirectoryError(f"{flag} {path!r}: {str(parent)!r} is not a directory.")
    if not overwrite and Path(path).exists():
        raise FileExistsError(f"{flag} {path!r} exists; choose a new file or pass --overwrite.")
    sidecar = path + ".meta.json"  # a label table's provenance, written next to its CSV
    if not overwrite and Path(sidecar).exists():
        raise FileExistsError(f"{flag} {path!r}: {sidecar!r} exists; choose a new file or pass --overwrite.")
    return Path(path)


def get_args_parser() -> argparse.ArgumentParser:
    """The argument parser of `ssl-multilabel` (sub-commands run, resume, report, propagate,
    predict, labels)."""
    parser = _Parser(
        prog="ssl-multilabel",
        description="Semi-supervised multi-label classification from partial labels.",
        epilog="User errors print one line 'error: ...' and exit with status 2.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("run", help="run a recipe script into a run directory",
                       description="Run a recipe script (a .py file defining RECIPE) into a run directory, or "
                                   "run again the recipe a run recorded (its recipe.json).")
    p.add_argument("recipe", metavar="RECIPE.py",
                   help="recipe script, e.g. recipes/quickstart.py, or RUN_DIR/recipe.json: the recorded recipe, "
                        "every setting as that run resolved it")
    _add_run_options(p)
    _add_common(p)

    p = sub.add_parser("resume", help="continue a run at its first unfinished step",
                       description="Continue an interrupted run directory at its first unfinished step.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    _add_common(p)

    p = sub.add_parser("report", help="(re)write RUN_DIR/report.html",
                       description="Write the self-contained HTML report of a run directory.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--title", default=None, help="report title")
    _add_common(p)

    p = sub.add_parser("propagate", help="fill a label table by kNN propagation over embeddings",
                       description="Fill the unknown cells of a labels CSV by kNN label propagation over "
                                   "an .npy array of embeddings (row i of one = row i of the other).")
    p.add_argument("--labels", required=True, metavar="TABLE", help="wide labels CSV with an id column (or a .npz table)")
    p.add_argument("--embeddings", required=True, metavar="NPY", help="(n, d) embeddings")
    p.add_argument("--out", required=True, metavar="TABLE",
                   help="filled label table to write: a .csv (+ .meta.json sidecar), or a binary .npz")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--k", type=_int_at_least(1), default=DEFAULT_K, help=f"neighbours per point (default {DEFAULT_K})")
    p.add_argument("--alpha", type=_open_unit_float, default=DEFAULT_ALPHA, help=f"diffusion alpha in (0, 1) (default {DEFAULT_ALPHA})")
    p.add_argument("--metric", choices=("cosine", "l2"), default=DEFAULT_METRIC, help=f"kNN metric (default {DEFAULT_METRIC})")
    p.add_argument("--target-precision", type=_target_precision, default=0.9,
                   help="fit per-label thresholds on held-out known cells for this precision "
                        "(default 0.9); 'none' uses the fixed thresholds below")
    p.add_argument("--precision-confidence", type=_optional_open_unit_float, default=None,
                   help="the precision must reach the target at this confidence, a lower bound that weighs how "
                        "many held-out cells it rests on, e.g. 0.8 (default none: the measured precision)")
    p.add_argument("--positive-threshold", type=float, default=None, help="with --target-precision none (default 0.9)")
    p.add_argument("--negative-threshold", type=float, default=None, help="with --target-precision none (default 0.05)")
    p.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of the held-out split")
    p.add_argument("--id-column", default="id", help="the CSV column that names the rows, read and written (default: id)")
    p.add_argument("--label-columns", type=_column_names, default=None, metavar="A,B,...", help=_LABEL_COLUMNS_HELP)
    _add_common(p)

    p = sub.add_parser("predict", help="score images with a trained model",
                       description="Write per-label scores of a trained .keras model for a folder of images.")
    p.add_argument("--model", required=True, metavar="MODEL.keras")
    p.add_argument("--images", required=True, metavar="DIR",
                   help="folder of images (png/jpg/bmp/gif/webp), subfolders included (hidden ones, named '.*', "
                        "left out); an image's id is its path relative to DIR, as in a labels CSV")
    p.add_argument("--out", required=True, metavar="CSV", help="scores CSV to write (id + one column per label)")
    p.add_argument("--batch-size", type=_int_at_least(1), default=64)
    p.add_argument("--skip-bad-images", action="store_true",
                   help="leave out (and list) image files that cannot be read, instead of stopping")
    p.add_argument("--max-pixels", type=_int_at_least(1), default=None, metavar="N",
                   help="an image whose header declares more pixels (height x width) is not read "
                        "(default 89,478,485, PIL's limit against decompression bombs)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--id-column", default="id", help="the name of the CSV column of image ids (default: id)")
    _add_common(p)

    p = sub.add_parser("labels", help="summarise a label table",
                       description="Print per-label positives, negatives, unknown and cells per source.")
    p.add_argument("table", metavar="TABLE", help="a labels CSV or a binary .npz label table")
    p.add_argument("--id-column", default="id", help="the CSV column that names the rows (default: id)")
    p.add_argument("--label-columns", type=_column_names, default=None, metavar="A,B,...", help=_LABEL_COLUMNS_HELP)
    _add_common(p)

    p = sub.add_parser("suggest", help="list the unknown cells most worth labeling next",
                       description="Rank the cells of a run's label table that no person has labeled, from the run's "
                                   "final model, its last propagation and the kNN graph of its features, and write "
                                   "the best BUDGET of them as a CSV (id, label, score, answer, run) to fill in "
                                   "(docs/labeling.md).")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--budget", required=True, type=_int_at_least(1), help="number of cells to suggest")
    p.add_argument("--out", required=True, metavar="CSV", help="suggestions CSV to write")
    p.add_argument("--method", choices=("suggest", "uncertainty", "random", "typical", "diverse"), default="suggest",
                   help="ranking: the combined priority (default), closeness to the threshold only, random, "
                        "typical rows of the model's features (TypiClust), or uncertain cells spread over the "
                        "features (BADGE); typical and diverse spend an equal share per label")
    p.add_argument("--per-label", action="store_true",
                   help="an equal share of the budget per label, each label's best cells by the ranking "
                        "(--method typical and diverse always do this)")
    p.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of --method random, typical and diverse")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _add_common(p)

    p = sub.add_parser("answers", help="merge an answered suggestions CSV into a new label table",
                       description="Merge the answers (1, 0 or blank) of a suggestions CSV into the run's human "
                                   "label table as human cells, and write the result to --out (a new table to pass "
                                   "to the next run; the run directory and the input table are not changed).")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("answers", metavar="CELLS.csv", help="the CSV written by `suggest`, with its answer column filled")
    p.add_argument("--out", required=True, metavar="TABLE", help="label table to write (.csv + .meta.json, or .npz)")
    p.add_argument("--labels", metavar="TABLE", default=None,
                   help="the human table to merge into (default: the recipe's data.labels_csv, else the human "
                        "cells of the run's final table)")
    p.add_argument("--label-columns", type=_column_names, default=None, metavar="A,B,...",
                   help="with --labels: " + _LABEL_COLUMNS_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _add_common(p)
    return parser


# === Commands ===


def _cmd_run(args: argparse.Namespace, callbacks: Sequence[Any] = ()) -> int:
    from ssl_multilabel.recipes.runner import load_recipe_file, recipe_of_run
    from ssl_multilabel.run_dir import RECIPE_FILE, read_run

    path = Path(args.recipe)
    if path.name == RECIPE_FILE and path.is_file():  # a run's record: its resolved recipe, run again
        meta, _ = read_run(path.parent)  # checked as resume and report check it
        return _run(recipe_of_run(path.parent, meta), args, recipe_file=meta.get("recipe_file"), callbacks=callbacks)
    recipe = load_recipe_file(args.recipe)
    return _run(recipe, args, recipe_file=args.recipe, callbacks=callbacks)


def _run(recipe: Any, args: argparse.Namespace, *, recipe_file: str | None, callbacks: Sequence[Any] = ()) -> int:
    from ssl_multilabel.recipes.runner import apply_overrides, default_run_dir, run_recipe

    if args.show:
        resolved = apply_overrides(recipe, args.overrides)
        print(f"recipe {resolved.name!r}, seed {resolved.seed}, strategy {resolved.strategy}")
        print(f"data: {type(resolved.data).__name__}")
        print(resolved.data.describe())
        for step in resolved.steps:
            print(f"step {step.name}: {type(step).__name__}")
            print(step.describe())
        return 0
    _quiet_tensorflow()
    # run_recipe's default run directory, chosen here so that a Ctrl-C can name it
    out = args.out if args.out is not None else default_run_dir(apply_overrides(recipe, args.overrides))
    with _names_run_on_interrupt(out):
        run_dir = run_recipe(recipe, out, overrides=args.overrides, callbacks=callbacks,
                             recipe_file=recipe_file, command=sys.argv)
    print(f"Run finished: {run_dir}")
    report = run_dir / "report.html"
    if report.is_file():
        print(f"Report: {report}")
    return 0


def _cmd_resume(args: argparse.Namespace, callbacks: Sequence[Any] = ()) -> int:
    from ssl_multilabel.recipes.runner import resume_run

    _quiet_tensorflow()
    with _names_run_on_interrupt(args.run_dir):
        run_dir = resume_run(args.run_dir, callbacks=callbacks)
    print(f"Run finished: {run_dir}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from ssl_multilabel.report import write_report

    path = write_report(args.run_dir, title=args.title)
    print(f"Report: {path}")
    return 0


def _cmd_propagate(args: argparse.Namespace) -> int:
    from ssl_multilabel.labels import PartialLabels
    from ssl_multilabel.recipes.data import load_embeddings
    from ssl_multilabel.recipes.steps import propagate_table

    # Every argument is checked before anything is read or written.
    out = _check_out_file(args.out, overwrite=args.overwrite, kinds=(".csv", ".npz"),
                          inputs=[("the --labels table", args.labels), ("the --embeddings file", args.embeddings)])
    given = [flag for flag, value in (("--positive-threshold", args.positive_threshold),
                                      ("--negative-threshold", args.negative_threshold)) if value is not None]
    if args.precision_confidence is not None and args.target_precision is None:
        raise ValueError("--precision-confidence applies to --target-precision, which is none: pass a target "
                         "precision, or leave --precision-confidence out.")
    if given and args.target_precision is not None:
        raise ValueError(f"{' and '.join(given)} apply with --target-precision none; with --target-precision "
                         f"{args.target_precision:g} (the default 0.9) the thresholds are fitted per label. Pass "
                         "--target-precision none to use yours.")
    args.positive_threshold = 0.9 if args.positive_threshold is None else args.positive_threshold
    args.negative_threshold = 0.05 if args.negative_threshold is None else args.negative_threshold
    if not 0.0 <= args.negative_threshold < args.positive_threshold <= 1.0:
        raise ValueError(
            "--negative-threshold and --positive-threshold must satisfy 0 <= negative < positive <= 1; "
            f"got {args.negative_threshold} and {args.positive_threshold}."
        )
    if not Path(args.labels).is_file():
        raise FileNotFoundError(f"--labels file {args.labels!r} does not exist.")
    labels = PartialLabels.load(args.labels, id_column=args.id_column, label_columns=args.label_columns)
    features = load_embeddings(args.embeddings, labels.n_samples, rows_of=args.labels, what="--embeddings file")
    filled, _, _ = propagate_table(
        labels, features, k=args.k, alpha=args.alpha, metric=args.metric, target_precision=args.target_precision,
        precision_confidence=args.precision_confidence, positive_threshold=args.positive_threshold,
        negative_threshold=args.negative_threshold, seed=args.seed,
    )
    filled.save(out, id_column=args.id_column)
    n_new = int((filled.known & ~labels.known).sum())
    print(f"Filled {n_new} of {int((~labels.known).sum())} unknown cells; wrote {args.out}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    folder = Path(args.images)
    out = _check_out_file(args.out, overwrite=args.overwrite,
                          inputs=[("the model", args.model), ("the model's label file", f"{args.model}.labels.json")])
    if Path(args.model).is_dir():
        raise ValueError(f"--model {args.model!r} is a folder; give the .keras file (e.g. RUN_DIR/export/model.keras).")
    if not Path(args.model).is_file():
        raise FileNotFoundError(f"--model file {args.model!r} does not exist.")
    if folder.is_file():
        raise ValueError(f"--images {args.images!r} is a file; give the folder of the images (every image in it and "
                         "its subfolders is scored).")
    if not folder.is_dir():
        raise FileNotFoundError(f"--images folder {args.images!r} does not exist.")
    listed = _files_under(folder)
    files = [p for p in listed if p.suffix.lower() in IMAGE_SUFFIXES]
    others = [p.relative_to(folder).as_posix() for p in listed if p.suffix.lower() not in IMAGE_SUFFIXES]
    if not files:
        raise ValueError(f"--images folder {args.images!r} holds no {'/'.join(IMAGE_SUFFIXES)} file"
                         f"{f' (it holds {len(others)} other files, e.g. {others[0]!r}{_heif_hint(others)})' if others else ''}.")
    # A name that is no UTF-8 (a zip made on Windows, unpacked here) cannot be an id of the UTF-8 CSV.
    from ssl_multilabel.labels import _encodes

    unnamed = [p for p in files if not _encodes(p.relative_to(folder).as_posix())]
    if unnamed:
        shown = ", ".join(repr(os.fsencode(p.relative_to(folder))) for p in unnamed[:3])
        what = (f"{len(unnamed)} image file names in --images folder {args.images!r} are not UTF-8 text (e.g. {shown}), "
                "which the scores CSV cannot hold as ids")
        if not args.skip_bad_images:
            raise ValueError(f"{what}: rename them (their names from a zip made on Windows: `convmv -f cp1252 -t utf8 "
                             "-r DIR --notest`), or leave them out with --skip-bad-images.")
        files = [p for p in files if p not in unnamed]
        if not files:
            raise ValueError(f"{what}, and it holds no other image to score: rename them.")
        print(f"warning: {what}; left out.", file=sys.stderr)
    _quiet_tensorflow()
    from ssl_multilabel._files import atomic_write_text
    from ssl_multilabel.data.pipeline import DEFAULT_MAX_PIXELS, usable_images
    from ssl_multilabel.recipes.runner import load_keras_model
    from ssl_multilabel.teacher_student.pseudo_labels import predict_scores

    keep = usable_images(  # before the model loads: a bad file fails fast
        [str(p) for p in files], on_bad_image="skip" if args.skip_bad_images else "error",
        name=lambda b: Path(b.path).relative_to(folder).as_posix(),
        source=f"image files in --images folder {args.images!r}",
        skipped="image files that cannot be read", hint="leave them out with --skip-bad-images",
        max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
    )
    n_left_out = len(files) - len(keep) + len(unnamed)
    files = [files[i] for i in keep]
    model = load_keras_model(args.model, "--model file")
    n_labels = int(model.output_shape[-1])
    names_file = Path(f"{args.model}.labels.json")
    if names_file.is_file():
        names = _label_names_file(names_file, n_labels)
    else:
        names = [f"label_{j}" for j in range(n_labels)]
        print(f"warning: {str(names_file)!r} (the label names Export writes beside a model) does not exist; the "
              f"columns are named {names[0]}..{names[-1]} in the model's output order.", file=sys.stderr)
    if args.id_column in names:
        raise ValueError(f"--id-column {args.id_column!r} is the name of one of the model's labels; choose another.")
    _, h, w, c = model.input_shape
    scores = predict_scores(model, [str(p) for p in files], batch_size=args.batch_size, image_size=(h, w), channels=c,
                            max_pixels=args.max_pixels)
    frame = pd.DataFrame(np.asarray(scores), columns=names)
    frame.insert(0, args.id_column, [p.relative_to(folder).as_posix() for p in files])
    atomic_write_text(out, frame.to_csv(index=False, float_format="%.9g"))
    Path(f"{out}.meta.json").unlink(missing_ok=True)  # the sidecar of a label table --overwrite replaced
    skipped = f" ({n_left_out} unreadable files left out)" if n_left_out else ""
    if others:
        shown = ", ".join(repr(o) for o in others[:3]) + (", ..." if len(others) > 3 else "")
        skipped += (f" ({len(others)} files that are not {'/'.join(IMAGE_SUFFIXES)} images left out: {shown}"
                    f"{_heif_hint(others)})")
    print(f"Scored {len(files)} images{skipped}; wrote {args.out}")
    return 0


def _label_names_file(path: Path, n_labels: int) -> list[str]:
    """The label names written by `Export` beside a model: a JSON list of `n_labels` distinct strings."""
    from ssl_multilabel.labeling import read_model_labels

    return read_model_labels(path, n_labels)


def _cmd_labels(args: argparse.Namespace) -> int:
    import pandas as pd

    from ssl_multilabel.labels import PartialLabels

    labels = PartialLabels.load(args.table, id_column=args.id_column, label_columns=args.label_columns)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(labels.summary().to_string())
    known = f"{labels.known.mean():.1%} of cells known" if labels.known.size else "no cells"
    print(f"{labels.n_samples} rows, {labels.n_labels} labels, {known}")
    return 0


def _cmd_suggest(args: argparse.Namespace) -> int:
    from ssl_multilabel._files import atomic_write_text
    from ssl_multilabel.recipes.suggest import suggest_for_run
    from ssl_multilabel.run_dir import read_run

    out = _check_out_file(args.out, overwrite=args.overwrite)
    meta, state = read_run(args.run_dir)  # not a run directory: one line, before TensorFlow is imported
    csv = (meta["recipe"].get("data") or {}).get("labels_csv")
    if csv and Path(csv).resolve() == out.resolve():  # even with --overwrite: `answers` merges into that table
        raise ValueError(f"--out {args.out!r} is the run's label table (data.labels_csv); write the suggestions to a "
                         "new file.")
    if state.get("status") != "finished":
        print(f"warning: the run is not finished ({state.get('status', 'running')}, {len(state['finished'])} of "
              f"{len(meta['recipe'].get('steps', []))} steps): the ranking uses the steps finished so far.",
              file=sys.stderr)
    _quiet_tensorflow()
    frame, inputs = suggest_for_run(args.run_dir, budget=args.budget, method=args.method, per_label=args.per_label,
                                    seed=args.seed)
    atomic_write_text(out, frame.to_csv(index=False))
    per_label = frame["label"].value_counts().to_dict()
    held = (f" The {inputs['held_for_test']} unlabeled rows that the test split (data.test_fraction) will hold out "
            "once labeled are not suggested." if inputs["held_for_test"] else "")
    print(f"Suggested {len(frame)} of {int((~inputs['labels'].known).sum())} unlabeled cells ({args.method}"
          f"{', per label' if args.per_label else ''}, from the "
          f"{inputs['what']}); wrote {args.out}. Per label: {per_label}.{held}")
    labels = inputs["labels"]
    blank = [name for j, name in enumerate(labels.label_names) if not labels.known[:, j].any()]
    on_blank = int(frame["label"].isin(blank).sum())
    if on_blank > len(frame) / 2:
        print(f"warning: {on_blank} of the {len(frame)} cells are of labels with no known cell ({blank[:5]}"
              f"{' ...' if len(blank) > 5 else ''}): their scores carry no information, so those cells tie and come in "
              "row order. --per-label spreads the cells over every label; --method typical or diverse picks varied "
              "images.", file=sys.stderr)
    print(f"Fill the answer column with 1 or 0 (blank: skip), then: ssl-multilabel answers {args.run_dir} {args.out} "
          "--out labels_answered.csv")
    return 0


def _cmd_answers(args: argparse.Namespace) -> int:
    from ssl_multilabel.labeling import human_table, merge_answers, read_answers, save_answered
    from ssl_multilabel.labels import given_cells

    out = _check_out_file(args.out, overwrite=args.overwrite,
                          inputs=[("the answers file", args.answers), ("the --labels table", args.labels)])
    if args.label_columns is not None and args.labels is None:
        raise ValueError("--label-columns applies to the --labels table; the run's own table is read with its "
                         "recipe's data.label_columns.")
    cells = read_answers(args.answers)  # read once: checked for its run here, merged below
    _warn_other_run(cells, args.answers, args.run_dir)
    table, where, id_column = human_table(args.run_dir, args.labels, label_columns=args.label_columns)
    if Path(where).resolve() == out.resolve():
        raise ValueError(f"--out {args.out!r} is the input table {where!r}; write the merged table to a new file.")
    merged = merge_answers(table, cells, where=args.answers)
    kept_columns = save_answered(merged, out, id_column, where)
    added = int((merged.known & ~table.known).sum())
    changed = int((table.known & (merged.source != table.source)).sum())
    if added + changed == 0:
        print(f"warning: {args.answers} holds no answer to merge (every answer is blank or already in the table); "
              "was it saved after the answers were filled in?", file=sys.stderr)
    kept = "the human cells" if (given_cells(table).known == table.known).all() else "the cells"
    also = f" (and its other columns, {', '.join(kept_columns)}, as they were)" if kept_columns else ""
    print(f"Wrote {args.out}: {kept} of {where}{also} plus {added + changed} answered cells ({added} were "
          f"unknown, {changed} machine-filled); {where} is unchanged. {_next_run_hint(args.run_dir, args.out)}")
    return 0


def _warn_other_run(cells: Any, answers: str, run_dir: str) -> None:
    """A warning when the cells were suggested by another run (their `run` column): a cells file of
    another folder whose photos share these file names, or of the previous round, merges by id and
    label without a word otherwise."""
    from ssl_multilabel.recipes.suggest import run_key

    key = run_key(run_dir)
    others = sorted({str(value).strip() for value in cells.get("run", [])} - {"", key})
    if others:
        print(f"warning: {answers} was suggested by another run ({', '.join(others[:3])}), not by {run_dir} "
              f"({key}); its answers are merged by id and label: check that they are about these images.",
              file=sys.stderr)


def _next_run_hint(run_dir: str, table: str) -> str:
    """How to give a merged table to the next run of the recipe that made `run_dir`."""
    from ssl_multilabel.run_dir import DEMO_DIRS, DEMO_EMBEDDINGS, read_run

    data = read_run(run_dir)[0]["recipe"].get("data") or {}
    given = f"--set data.labels_csv={table}"
    if data.get("labels_csv") or data.get("type") not in DEMO_DIRS:
        if "labels_csv" in data:
            return f"Give it to the next run as its label table: {given}."
        return (f"The run's data ({data.get('type')}) are built in and take no label table: the merged table is for "
                "a recipe on your own data (data.labels_csv), or for the Python API (PartialLabels.load).")
    demo = Path(run_dir) / DEMO_DIRS[data["type"]]  # the demo inputs the run wrote: the table's rows name them
    if data["type"] == "ImageFolder":
        return f"Give it to the next run with the demo images: {given} --set data.image_dir={demo}."
    return f"Give it to the next run with the demo embeddings: {given} --set data.embeddings={demo / DEMO_EMBEDDINGS}."


_COMMANDS = {
    "suggest": _cmd_suggest,
    "answers": _cmd_answers,
    "run": _cmd_run,
    "resume": _cmd_resume,
    "report": _cmd_report,
    "propagate": _cmd_propagate,
    "predict": _cmd_predict,
    "labels": _cmd_labels,
}


def _dispatch(parser: argparse.ArgumentParser, argv: Sequence[str] | None, call: Any) -> int:
    """Parse, run `call(args)`, and turn user errors into one `error:` line and exit status 2."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
        _setup_logging(-1 if args.quiet else args.verbose)  # with --debug too: the log is what one debugs from
        return call(args)
    except BrokenPipeError:  # output piped into `head` and the like (before OSError: a subclass)
        return 0
    except _user_error_types() as error:
        if debug:
            raise
        logger.debug("User error", exc_info=True)
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt as stop:
        print(_interrupted_line(stop), file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None, *, callbacks: Sequence[Any] = ()) -> int:
    """Entry point of `ssl-multilabel`.

    Args:
        argv: the arguments (default `sys.argv[1:]`).
        callbacks: Keras callbacks passed to the training steps of `run` / `resume`.

    Returns:
        The exit status: 0 on success, 2 on a user error.

    Example:
        >>> main(["labels", "labels.csv"])  # doctest: +SKIP
        0
    """
    parser = get_args_parser()

    def call(args: argparse.Namespace) -> int:
        if args.command in ("run", "resume"):
            return _COMMANDS[args.command](args, callbacks)
        return _COMMANDS[args.command](args)

    return _dispatch(parser, argv, call)


def run_recipe_cli(recipe: Any, argv: Sequence[str] | None = None, *, callbacks: Sequence[Any] = ()) -> int:
    """The command line of a recipe script: `python recipes/x.py [--out DIR] [--set K=V] [--show]`.

    Args:
        recipe: the script's `Recipe`.
        argv: arguments (default `sys.argv[1:]`).
        callbacks: Keras callbacks for the training steps.

    Returns:
        The exit status (0, or 2 on a user error).
    """
    script = sys.argv[0] if argv is None else None
    parser = _Parser(
        prog=Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "recipe",
        description=f"Run the recipe {getattr(recipe, 'name', '')!r}. Continue an interrupted run with "
                    "`ssl-multilabel resume RUN_DIR`.",
    )
    _add_run_options(parser)
    _add_common(parser)
    recipe_file = script if script and Path(script).is_file() else None
    return _dispatch(parser, argv, lambda args: _run(recipe, args, recipe_file=recipe_file, callbacks=callbacks))


def run_cli(recipe: Any, argv: Sequence[str] | None = None) -> NoReturn:
    """Run `recipe` from a recipe script's command line (`--out`, `--set`, `--show`) and exit.

    The last line of a recipe script: `if __name__ == "__main__": run_cli(RECIPE)`. It lives here,
    above the recipes, so the recipes never import the command line (`run_recipe_cli`).
    """
    sys.exit(run_recipe_cli(recipe, argv))

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
