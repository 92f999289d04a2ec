"""Training strategies of a recipe: one device, `MirroredStrategy`, or `MultiWorkerMirroredStrategy`.

A recipe names its strategy (`Recipe.strategy`, or `--set strategy=...` on the command line):

- `"default"`: TensorFlow's default strategy (one device); nothing is created.
- `"mirrored"`: `tf.distribute.MirroredStrategy()` over the local devices (every GPU, else the CPU).
- `"multi_worker"`: `tf.distribute.MultiWorkerMirroredStrategy()`, its cluster and this process's
  task read from the `TF_CONFIG` environment variable. Every worker runs the same command.

The runner creates the strategy once, before anything else touches TensorFlow (collective ops
must be configured at program start), and hands it to every step (`StepContext.strategy`).

The chief is TensorFlow's: `chief:0` when the cluster has a `chief` job, else `worker:0`. Only
the chief writes the run directory; every other worker runs the same steps (the training steps
take part in each all-reduce) with a scratch folder as its run directory (docs/scale.md,
"Training across machines").

`worker_role` only parses `TF_CONFIG` and does not import TensorFlow.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from ssl_multilabel.recipes.config import RecipeError

__all__ = ["STRATEGIES", "StrategyName", "WorkerRole", "make_strategy", "worker_role"]

StrategyName = Literal["default", "mirrored", "multi_worker"]
STRATEGIES: tuple[str, ...] = ("default", "mirrored", "multi_worker")

_TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                      '"task": {"type": "worker", "index": 0}}')


@dataclass(frozen=True)
class WorkerRole:
    """This process's place in the cluster.

    Attributes:
        task_type: `"chief"` or `"worker"` (None outside a multi-worker run).
        task_index: index of the task in its job.
        num_workers: tasks taking part in training (chief and workers).
        is_chief: whether this process writes the run directory.
    """

    task_type: str | None
    task_index: int
    num_workers: int
    is_chief: bool

    def describe(self) -> str:
        return "single process" if self.task_type is None else f"{self.task_type}:{self.task_index}"


_SINGLE = WorkerRole(None, 0, 1, True)


def worker_role(strategy: str, environ: Mapping[str, str] | None = None) -> WorkerRole:
    """The role of this process for `strategy`, from `TF_CONFIG` when it is `"multi_worker"`.

    Args:
        strategy: one of `STRATEGIES`.
        environ: the environment to read (default `os.environ`).

    Returns:
        A `WorkerRole`; with `"default"` or `"mirrored"` the single process is the chief.

    Raises:
        RecipeError: unknown strategy; `TF_CONFIG` missing, not JSON, without a cluster of
            chief / worker addresses, or naming a task that is not in the cluster.

    Example:
        >>> env = {"TF_CONFIG": '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}'}
        >>> worker_role("multi_worker", env)
        WorkerRole(task_type='worker', task_index=1, num_workers=2, is_chief=False)
    """
    if strategy not in STRATEGIES:
        raise RecipeError(f"Invalid value for parameter `strategy` of Recipe. Expected one of {list(STRATEGIES)}. "
                          f"Received: strategy={strategy!r}")
    if strategy != "multi_worker":
        return _SINGLE
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "")
    where = "The TF_CONFIG environment variable"
    if not text.strip():
        raise RecipeError(
            f"strategy=multi_worker reads the cluster from the TF_CONFIG environment variable, which is not set. "
            f"Set it on every worker, e.g. TF_CONFIG='{_TF_CONFIG_EXAMPLE}' (docs/scale.md)."
        )
    try:
        config = json.loads(text)
    except ValueError as err:
        raise RecipeError(f"{where} is not valid JSON ({err}); expected e.g. {_TF_CONFIG_EXAMPLE}.") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise RecipeError(f"{where} needs a 'cluster' object and a 'task' object; got {text!r}. "
                          f"Expected e.g. {_TF_CONFIG_EXAMPLE}.")
    jobs = {name: cluster.get(name, []) for name in ("chief", "worker")}
    if not all(isinstance(v, list) and all(isinstance(a, str) and a for a in v) for v in jobs.values()):
        raise RecipeError(f"{where}: 'chief' and 'worker' of 'cluster' must be lists of 'host:port' "
                          f"addresses; got {cluster!r}.")
    others = sorted(set(cluster) - {"chief", "worker"})
    if others or len(jobs["chief"]) > 1:
        raise RecipeError(f"{where}: MultiWorkerMirroredStrategy takes at most one 'chief' and any number of "
                          f"'worker' tasks; got jobs {sorted(cluster)} with {len(jobs['chief'])} chief(s).")
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in ("chief", "worker"):
        raise RecipeError(f"{where}: task type must be 'chief' or 'worker'; got {task_type!r}.")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(jobs[task_type]):
        raise RecipeError(f"{where}: task index must be an int in [0, {len(jobs[task_type])}) for the "
                          f"{len(jobs[task_type])} {task_type!r} address(es) of the cluster; got {index!r}.")
    is_chief = task_type == "chief" or (index == 0 and not jobs["chief"])
    return WorkerRole(task_type, index, len(jobs["chief"]) + len(jobs["worker"]), is_chief)


def make_strategy(strategy: str) -> Any:
    """The `tf.distribute.Strategy` named `strategy`, or None for `"default"`.

    Call it before anything else runs a TensorFlow op: `MultiWorkerMirroredStrategy` configures
    collective ops, which TensorFlow allows only at program start. It returns once every worker
    of `TF_CONFIG` has connected.

    Raises:
        RecipeError: unknown strategy, or TensorFlow already ran an op in this process.
    """
    worker_role(strategy)  # validates the name and TF_CONFIG first, with a clear message
    if strategy == "default":
        return None
    import tensorflow as tf

    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as err:
        raise RecipeError(
            f"strategy=multi_worker: TensorFlow refused to create MultiWorkerMirroredStrategy ({err}). It must be "
            "created before this process runs any TensorFlow op: run the recipe in a fresh process "
            "(`ssl-multilabel run RECIPE.py --set strategy=multi_worker` does)."
        ) from None
