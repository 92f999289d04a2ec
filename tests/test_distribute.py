"""Training strategies of a recipe: TF_CONFIG roles, `--set strategy=...`, and two real workers."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ssl_multilabel.recipes import Quickstart, Recipe, Supervised
from ssl_multilabel.recipes.config import RecipeError
from ssl_multilabel.recipes.distribute import WorkerRole, make_strategy, worker_role
from ssl_multilabel.recipes.runner import apply_overrides

REPO = Path(__file__).resolve().parents[1]


def _tf_config(cluster: dict, task_type: str, index: int) -> dict[str, str]:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})}


def _recipe(**kwargs) -> Recipe:
    return Recipe(data=Quickstart(n_train=8, n_test=8), steps=[Supervised(epochs=1)], **kwargs)


# === Roles from TF_CONFIG ===


def test_worker_zero_is_the_chief_when_the_cluster_has_no_chief_job():
    cluster = {"worker": ["a:1", "b:1", "c:1"]}
    roles = [worker_role("multi_worker", _tf_config(cluster, "worker", i)) for i in range(3)]
    assert roles == [WorkerRole("worker", 0, 3, True), WorkerRole("worker", 1, 3, False),
                     WorkerRole("worker", 2, 3, False)]


def test_with_a_chief_job_only_the_chief_writes():
    cluster = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    assert worker_role("multi_worker", _tf_config(cluster, "chief", 0)) == WorkerRole("chief", 0, 3, True)
    assert not worker_role("multi_worker", _tf_config(cluster, "worker", 0)).is_chief


def test_single_process_strategies_ignore_tf_config():
    env = _tf_config({"worker": ["a:1", "b:1"]}, "worker", 1)
    assert worker_role("default", env).is_chief and worker_role("mirrored", env).is_chief


@pytest.mark.parametrize("env, match", [
    ({}, "TF_CONFIG environment variable, which is not set"),
    ({"TF_CONFIG": "{not json"}, "TF_CONFIG environment variable is not valid JSON"),
    ({"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}}'}, "needs a 'cluster' object and a 'task' object"),
    (_tf_config({"worker": ["a:1", "b:1"]}, "worker", 2), r"task index must be an int in \[0, 2\).*got 2"),
    (_tf_config({"worker": ["a:1"]}, "evaluator", 0), "task type must be 'chief' or 'worker'; got 'evaluator'"),
    (_tf_config({"worker": ["a:1"], "ps": ["b:1"]}, "worker", 0), r"jobs \['ps', 'worker'\]"),
    (_tf_config({"worker": "a:1"}, "worker", 0), "must be lists of 'host:port' addresses"),
])
def test_bad_tf_config_is_one_clear_error(env, match):
    with pytest.raises(RecipeError, match=match):
        worker_role("multi_worker", env)


def test_multi_worker_strategy_after_tensorflow_started_names_the_fix(monkeypatch):
    import tensorflow as tf

    tf.constant(1.0) + 1.0  # TensorFlow has run an op in this process
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                                                "task": {"type": "worker", "index": 0}}))
    with pytest.raises(RecipeError, match="must be created before this process runs any TensorFlow op"):
        make_strategy("multi_worker")


# === The recipe field ===


def test_strategy_is_a_validated_recipe_field_with_override_and_json_round_trip():
    recipe = apply_overrides(_recipe(), ["strategy=mirrored"])
    assert recipe.strategy == "mirrored" and _recipe().strategy == "default"
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))).strategy == "mirrored"
    with pytest.raises(RecipeError, match=r"--set strategy=horovod: expected one of \['default', 'mirrored', 'multi_worker'\]"):
        apply_overrides(_recipe(), ["strategy=horovod"])
    with pytest.raises(RecipeError, match="Invalid value for parameter `strategy` of Recipe"):
        _recipe(strategy="tpu")


def test_multi_worker_without_tf_config_fails_before_the_run_directory_exists(tmp_path, monkeypatch):
    from ssl_multilabel.recipes import run_recipe

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(RecipeError, match="TF_CONFIG environment variable, which is not set"):
        run_recipe(_recipe(), tmp_path / "run", overrides=["strategy=multi_worker"])
    assert not (tmp_path / "run").exists()


# === What a non-chief worker writes (no collective: the strategy is replaced by None) ===


def _embedding_recipe(strategy: str = "multi_worker") -> Recipe:
    from ssl_multilabel.recipes import Embeddings, Evaluate, Propagate

    return Recipe(data=Embeddings(), steps=[Propagate(k=5), Evaluate(split="hidden")], strategy=strategy)


@pytest.fixture
def as_task(monkeypatch, tmp_path):
    """Set TF_CONFIG to worker `index` of a 2-worker cluster; scratch folders go to tmp_path/tmp."""
    from ssl_multilabel.recipes import runner

    monkeypatch.setattr(runner, "make_strategy", lambda name: None)  # no cluster to connect to
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch_root))

    def set_task(index: int) -> Path:
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                                                    "task": {"type": "worker", "index": index}}))
        return scratch_root

    return set_task


def test_a_non_chief_worker_writes_nothing_at_out_and_removes_its_scratch_folder(tmp_path, as_task):
    from ssl_multilabel.recipes import run_recipe

    scratch_root = as_task(1)
    out = tmp_path / "run"
    assert run_recipe(_embedding_recipe(), out) == out.resolve()
    assert not out.exists()
    assert list(scratch_root.iterdir()) == []


def test_a_worker_resumes_from_the_chiefs_finished_steps_without_writing_there(tmp_path, as_task, caplog):
    from ssl_multilabel.recipes import resume_run, run_recipe

    as_task(0)
    run_dir = run_recipe(_embedding_recipe(), tmp_path / "run")  # the chief writes the run directory
    state_path = run_dir / "state.json"
    state = json.loads(state_path.read_text())
    # As if the chief had stopped after step 1: its state lists one step, step 2's folder is gone.
    state_path.write_text(json.dumps({"finished": state["finished"][:1], "status": "running"}))
    shutil.rmtree(run_dir / "steps" / "02_evaluate")
    before = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*"))
    scratch_root = as_task(1)
    with caplog.at_level(logging.INFO, logger="ssl_multilabel.recipes.runner"):
        resume_run(run_dir)
    assert any("at step 2 of 2" in r.getMessage() for r in caplog.records)  # step 1 came from the chief
    assert sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")) == before
    assert json.loads(state_path.read_text())["finished"] == state["finished"][:1]
    assert list(scratch_root.iterdir()) == []


def test_a_worker_that_cannot_see_the_run_directory_says_so(tmp_path, as_task):
    from ssl_multilabel.recipes import run_recipe

    as_task(1)
    with pytest.raises(RecipeError, match="Worker worker:1 cannot resume: .* is not a run directory here"):
        run_recipe(_embedding_recipe(), tmp_path / "elsewhere", resume=True)


# === Two workers on 127.0.0.1 ===

_WORKER = textwrap.dedent(
    """
    import json, sys
    import keras
    from ssl_multilabel.recipes import Quickstart, Recipe, Supervised, run_recipe

    class FirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                replicas = self.model.distribute_strategy.num_replicas_in_sync
                print("EPOCH1 " + json.dumps({"loss": float(logs["loss"]), "replicas": int(replicas)}), flush=True)

    # Every cell known, 80 rows: 8 validation rows and 72 training rows = 9 batches of 8.
    recipe = Recipe(
        name="two_workers", seed=0,
        data=Quickstart(protocol="random_cells", known_fraction=1.0, n_train=80, n_test=8),
        steps=[Supervised(epochs=1, batch_size=8, dropout=0.0, validation_fraction=0.1)],
    )
    run_recipe(recipe, sys.argv[1], overrides=sys.argv[2:], callbacks=[FirstEpoch()])
    """
)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _loopback_works() -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            with socket.create_connection(server.getsockname(), timeout=5):
                return True
    except OSError:
        return False


def _first_epoch(stdout: str) -> dict:
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("EPOCH1 "))[len("EPOCH1 "):])


def test_two_workers_train_like_one_and_only_the_chief_writes_the_run_directory(tmp_path):
    """Two MultiWorkerMirroredStrategy workers agree with a single-worker run of the same recipe.

    Every cell is known and each global batch of 8 splits into two halves of 4 rows (40 known
    cells each), so the mean of the two per-replica masked means (each scaled by 1/2) is the
    global masked mean and the all-reduced gradient is the single-worker gradient: the runs
    differ only by float32 summation order. A gradient sum regrouped over the largest reduction
    (conv1: 8 rows x 56 x 56 positions, n ~ 2.5e4 terms) is off by about sqrt(n) * 2**-24 ~ 1e-5
    relative, and Adam (lr 1e-3, 9 steps) turns a relative gradient error d into a weight change
    of about lr * d per step, far below the loss's scale; the first-epoch loss (mean of the 9
    batch losses, each a sum of 80 positive terms, off by at most 80 * 2**-24 ~ 5e-6) should
    therefore agree to ~1e-5. The tolerance is rtol = 1e-4. For scale: a worker that trained
    alone on its half batches (no all-reduce) is the single-worker run with batch 4, whose
    first-epoch loss differs by 1.7e-2 here; with 30 % of cells known the per-replica masked
    normalisation moves it by 4e-3 (docs/scale.md). Measured difference here: 0 (bit-identical).
    """
    if not _loopback_works():
        pytest.skip("no TCP loopback on 127.0.0.1: the two workers' collective cannot start on this machine")
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    base_env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    base_env.update({"PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                     "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})
    run_dirs = [tmp_path / "worker0", tmp_path / "worker1"]
    processes = []
    try:
        for i, run_dir in enumerate(run_dirs):
            env = {**base_env, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
                   "TMPDIR": str(tmp_path)}
            processes.append(subprocess.Popen(
                [sys.executable, "-c", _WORKER, str(run_dir), "strategy=multi_worker"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
        single = subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path / "single")],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base_env)
        processes.append(single)
        deadline = time.monotonic() + 240
        outputs = []
        for process in processes:
            out, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            outputs.append((process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    for code, out, err in outputs:
        assert code == 0, err[-3000:]
    chief, worker, reference = (_first_epoch(out) for _, out, _ in outputs)
    assert chief["replicas"] == worker["replicas"] == 2 and reference["replicas"] == 1
    assert chief["loss"] == pytest.approx(reference["loss"], rel=1e-4)
    assert worker["loss"] == chief["loss"]  # one all-reduced loss, the same on every worker
    # Only the chief wrote its run directory; the worker's scratch folder (under TMPDIR) is gone.
    assert not run_dirs[1].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["single", "worker0"]
    recorded = json.loads((run_dirs[0] / "recipe.json").read_text())
    assert recorded["recipe"]["strategy"] == "multi_worker"
    state = json.loads((run_dirs[0] / "state.json").read_text())
    assert state["status"] == "finished" and [r["name"] for r in state["finished"]] == ["supervised"]
    history = json.loads((run_dirs[0] / "steps" / "01_supervised" / "history.json").read_text())
    assert history["loss"][0] == chief["loss"]
