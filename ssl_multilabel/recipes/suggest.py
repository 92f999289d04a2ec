"""Suggestions for a run directory: `labeling.suggest_cells` on the run's final model and graph.

`ssl-multilabel suggest RUN_DIR` calls `suggest_for_run`. The run's recipe is rebuilt from
`recipe.json` and its data loaded (deterministic in the seed, as on resume); the final model
scores the training rows and gives the features of the kNN graph (cached features for a frozen
backbone, as the steps use them). A run without a model (embedding data) ranks by the last
propagation's scores over the graph of its embeddings. TensorFlow is imported only for a model.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
import pandas as pd

from ssl_multilabel.labeling import (
    _final_labels, final_model_path, human_cells, saved_run_inputs, suggest_cells, without_rows_held_for_test,
)
from ssl_multilabel.labels import PartialLabels
from ssl_multilabel.propagation.defaults import DEFAULT_K, DEFAULT_METRIC
from ssl_multilabel.recipes.runner import Recipe, RunState, load_keras_model, recipe_of_run
from ssl_multilabel.run_dir import read_run

__all__ = ["run_inputs", "suggest_for_run"]

logger = logging.getLogger(__name__)


def _propagation_settings(recipe: Recipe) -> tuple[int, str]:
    """k and metric of the recipe's last Propagate step (the graph the run used), else the defaults."""
    for step in reversed(recipe.steps):
        if type(step).__name__ == "Propagate":
            return int(step.k), str(step.metric)
    return DEFAULT_K, DEFAULT_METRIC


def _model_scores_and_features(run_dir: Path, model_path: Path, data: Any, labels: PartialLabels) -> tuple[Any, Any]:
    """The final model's scores and pooled features of the training rows (image data), else (None, None)."""
    if data.kind != "images":
        return None, None
    from ssl_multilabel.features import embed
    from ssl_multilabel.models import head_model
    from ssl_multilabel.recipes.steps import _features
    from ssl_multilabel.teacher_student.pseudo_labels import predict_scores

    model = load_keras_model(model_path, "Final model of the run")
    if int(model.output_shape[-1]) != labels.n_labels:
        raise ValueError(f"The run's final model {str(model_path)!r} has {model.output_shape[-1]} outputs; its label "
                         f"table has {labels.n_labels} labels now ({list(labels.label_names)}): the table changed since "
                         "the run. Run the recipe on it (to add labels to the model: --set supervised.init_model=...).")
    ctx = SimpleNamespace(run_dir=run_dir)  # the steps' feature cache lives in <run dir>/features
    features = _features(ctx, RunState(run_dir=run_dir, data=data, labels=labels), model)
    if features is None:
        features = embed(model, data.inputs, image_size=data.image_size, channels=data.channels)
    features = np.asarray(features, np.float32)
    # One pass over the images: the head (dropout, noise: off in inference, then `scores`) on the
    # pooled features gives the model's scores.
    scores = predict_scores(head_model(model), features, batch_size=1024)
    return np.clip(np.asarray(scores, np.float64), 0.0, 1.0), features


def _refuse_changed_table(recipe: Recipe, run_ids: list[str], now_ids: list[str]) -> None:
    """Raise: the rows the recipe's data give now are not the rows of the run's table."""
    added, removed = sorted(set(now_ids) - set(run_ids)), sorted(set(run_ids) - set(now_ids))
    where = getattr(recipe.data, "labels_csv", "") or "the recipe's data"
    detail = "; ".join(f"{kind} {ids[:3]}{' ...' if len(ids) > 3 else ''}" for kind, ids in
                       (("rows added:", added), ("rows gone:", removed)) if ids) or "the same rows, in another order"
    raise ValueError(
        f"{where} gives {len(now_ids)} training rows now, the run used {len(run_ids)} ({detail}): it changed "
        "since the run (labels filled in can move rows between the training and test parts). Suggestions rank the "
        "run's own rows: restore the table the run used, or run the recipe again on the new one."
    )


def _log_cells_since_run(run_table: PartialLabels | None, now: PartialLabels | None, csv: str) -> None:
    """One line when the table the cells are ranked against (as it reads now) differs from the
    run's: answers merged into it since the run are not suggested again."""
    if run_table is None or now is None:
        return
    then = human_cells(run_table).known
    if np.array_equal(now.known, then):
        return
    added, gone = int((now.known & ~then).sum()), int((then & ~now.known).sum())
    logger.info("%s holds %d cells a person gave since the run%s: suggestions leave its known cells out (the "
                "scores are still the run's).", csv or "The table", added,
                f" and lacks {gone} the run had" if gone else "")


def run_inputs(run_dir: str | os.PathLike, graph: bool = True) -> dict[str, Any]:
    """`labeling.saved_run_inputs` of the run, with the final model's scores of the training rows,
    the model's features of them (or the data's embeddings; key "features") and, with `graph`,
    their kNN graph (the last Propagate step's k and metric)."""
    from ssl_multilabel.propagation import knn_graph

    run_dir = Path(run_dir)
    meta, state = read_run(run_dir)
    recipe = recipe_of_run(run_dir, meta)
    try:
        data = recipe.data.load(recipe.seed, run_dir)
    except (FileNotFoundError, ValueError) as err:  # a photo or table the run read is gone or changed
        kind = FileNotFoundError if isinstance(err, FileNotFoundError) else ValueError
        raise kind(f"The run's data cannot be read as the run read them: {err} (suggestions rank the run's own "
                   "rows: restore its files, or run the recipe again on the data as they are now; the `--set` "
                   "advice applies to a new run).") from None
    records = state.get("finished", [])
    model_path = final_model_path(run_dir, records)
    run_table = _final_labels(run_dir, records)  # checked before the model scores every image
    if run_table is not None and list(run_table.ids) != list(data.labels.ids):
        _refuse_changed_table(recipe, run_table.ids, data.labels.ids)
    scores = features = None
    if model_path is not None:
        scores, features = _model_scores_and_features(run_dir, model_path, data, data.labels)
    inputs = saved_run_inputs(run_dir, labels=data.labels, model_scores=scores)
    _log_cells_since_run(run_table, inputs["labels"], getattr(recipe.data, "labels_csv", ""))
    if features is None and data.kind == "embeddings":
        features = np.asarray(data.inputs, np.float32)
    inputs["features"] = features
    inputs = without_rows_held_for_test(inputs, recipe.data.to_dict(), recipe.seed)
    features = inputs["features"]
    if features is not None:
        # what method="typical" and "diverse" rank by
        inputs["features_from"] = (f"features of the final model ({model_path.relative_to(run_dir)})"
                                   if scores is not None else "data's embeddings")
    if features is not None and graph:
        k, metric = _propagation_settings(recipe)
        inputs["graph"] = knn_graph(features, k=min(k, max(1, len(features) - 1)), metric=metric)
        inputs["what"] += f", kNN graph (k={k}, {metric})"
    return inputs


def run_key(run_dir: str | os.PathLike) -> str:
    """What names a run in the cells files `suggest` writes: `recipe.json`'s `run_id` (a random id
    drawn when the run starts; its `created` time for runs started before there was one)."""
    meta = read_run(Path(run_dir))[0]
    return str(meta.get("run_id") or meta.get("created", ""))


def suggest_for_run(
    run_dir: str | os.PathLike,
    *,
    budget: int,
    method: Literal["suggest", "uncertainty", "random", "typical", "diverse"] = "suggest",
    per_label: bool = False,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """`labeling.suggest_cells` on a run's human cells, final model scores, propagation scores and graph.

    Returns:
        `(suggestions, inputs)`, `inputs` being `run_inputs(run_dir)` (without the graph for
        `method="typical"` and `method="diverse"`). The suggestions have a last column `run`
        (`run_key`): `answers` warns when it merges cells that another run suggested.

    Raises:
        ValueError: the run has neither a model nor propagation scores to rank cells by.
    """
    by_features = method in ("typical", "diverse")  # they use the features, not the graph
    inputs = run_inputs(run_dir, graph=not by_features)
    if by_features and inputs["features"] is None:
        raise ValueError(f"Run {str(run_dir)!r} has no features to rank cells by with method={method!r}: it has no "
                         "trained model and its data are not embeddings.")
    if inputs["scores"] is None and method != "typical":
        raise ValueError(f"Run {str(run_dir)!r} has no scores to rank cells by: it has no trained model and no "
                         "propagation step finished. Run a recipe with a Supervised or Propagate step first.")
    if method == "typical":
        inputs["what"] = inputs["features_from"]
    elif method == "diverse":  # the model's scores (or the propagation's, without a model) and the features
        inputs["what"] = f"{inputs['what'].removesuffix(' and of the last propagation')}, {inputs['features_from']}"
    frame = suggest_cells(inputs["labels"], inputs["scores"], budget=budget, graph=inputs["graph"],
                          propagation=inputs["propagation"], features=inputs["features"], method=method,
                          per_label=per_label, seed=seed)
    frame["run"] = run_key(run_dir)
    return frame, inputs
