"""The files of a run directory and their reader, below the recipes, the report and the CLI.

A run directory holds `recipe.json` (the resolved recipe and versions), `state.json` (the
finished steps) and one folder per step under `steps/` (docs/design.md). The recipes write it
(`ssl_multilabel.recipes.runner`); the report and the CLI read it through `read_run` here, so
none of them imports the others. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ssl_multilabel.errors import RecipeError

__all__ = ["DEMO_DIRS", "DEMO_EMBEDDINGS", "LABELS_FILE", "LOCK_FILE", "OLD_LABELS_FILE", "RECIPE_FILE", "STATE_FILE",
           "read_run"]

STATE_FILE = "state.json"
RECIPE_FILE = "recipe.json"
LOCK_FILE = ".lock"
# Label tables of a run are binary (docs/design.md, "Label tables on disk"); runs from before it
# have labels.csv + sidecar, still read on resume. Export writes the CSV for people.
LABELS_FILE = "labels.npz"
OLD_LABELS_FILE = "labels.csv"
#: Where a data source given no files (no data.labels_csv) writes its demo inputs in the run
#: directory: data type -> folder, holding the demo's `labels.csv` (every row) and, for
#: embeddings, `DEMO_EMBEDDINGS`. `answers` merges into that table and names the folder.
DEMO_DIRS = {"ImageFolder": Path("data") / "folder", "Embeddings": Path("data") / "embeddings"}
DEMO_EMBEDDINGS = "embeddings.npy"


def read_run(run_dir: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """`(recipe.json, state.json)` of a run directory, checked.

    Raises:
        RecipeError: not a run directory, or `recipe.json` / `state.json` is damaged (the message
            names the file and what to do).
    """
    run_dir = Path(run_dir)
    recipe_path = run_dir / RECIPE_FILE
    if not recipe_path.is_file():
        raise RecipeError(f"{str(run_dir)!r} is not a run directory: {RECIPE_FILE} is missing.")
    restart = "restore it from a copy, or start a new run (the outputs under steps/ are not read without it)"
    meta = _read_json(recipe_path, restart)
    if not isinstance(meta, dict) or not isinstance(meta.get("recipe"), dict):
        raise RecipeError(f"{str(recipe_path)!r} is damaged: expected an object with a 'recipe' object; {restart}.")
    state_path = run_dir / STATE_FILE
    if not state_path.is_file():
        return meta, {"finished": []}
    redo = ("restore it from a copy, or delete it to rerun every step (resume then removes the outputs "
            "of the steps it does not list)")
    state = _read_json(state_path, redo)
    finished = state.get("finished") if isinstance(state, dict) else None
    if not isinstance(finished, list):
        raise RecipeError(f"{str(state_path)!r} is damaged: expected an object with a 'finished' list; {redo}.")
    for i, record in enumerate(finished):
        step_dir = record.get("dir") if isinstance(record, dict) else None
        ok = (isinstance(step_dir, str) and step_dir.startswith("steps/") and "/" not in step_dir[6:]
              and step_dir[6:] not in ("", ".", ".."))
        # Files of a step live in its folder: a path edited to point elsewhere is refused.
        ok = ok and all(record.get(key) in (None, *(f"{step_dir}/{name}" for name in names))
                        for key, names in (("labels", (LABELS_FILE, OLD_LABELS_FILE)), ("model", ("model.keras",))))
        if not ok:
            raise RecipeError(f"{str(state_path)!r} is damaged: entry {i} of 'finished' is not the record of a "
                              f"step folder under steps/ (got {record!r}); {redo}.")
    return meta, state


def _read_json(path: Path, what_to_do: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        what = "empty" if path.stat().st_size == 0 else f"not valid JSON ({err})"
        raise RecipeError(f"{str(path)!r} is {what}; {what_to_do}.") from None
