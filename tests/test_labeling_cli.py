"""The labeling loop end to end on tiny runs: `Supervised(init_model=...)`, `ssl-multilabel suggest`
and `ssl-multilabel answers`."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _cli import one_error_line
from ssl_multilabel.cli import main
from ssl_multilabel.labels import PartialLabels, Source
from ssl_multilabel.recipes import (
    Embeddings, Evaluate, Export, Propagate, Quickstart, Recipe, RecipeError, Step, StepResult, Supervised, run_recipe,
)

sys.path.insert(0, str(Path(__file__).parent))
from test_recipe import _tiny_embeddings  # noqa: E402

N_TRAIN = 32


# === Supervised(init_model=...) ===


def _old_model(folder: Path, names: list[str], seed: int = 3) -> Path:
    """A 7-label small CNN for the 56x56x1 mosaics, saved with its label file as Export writes it."""
    from ssl_multilabel.models import build_classifier

    folder.mkdir(parents=True, exist_ok=True)
    model = build_classifier("small_cnn", len(names), (56, 56, 1), seed=seed)
    path = folder / "old.keras"
    model.save(path)
    (folder / "old.keras.labels.json").write_text(json.dumps(names))
    return path


def _quickstart_names() -> list[str]:
    from ssl_multilabel.datasets import load_quickstart

    return list(load_quickstart()[0][1].label_names)


def test_init_model_extends_the_model_and_teaches_its_labels_unknown_cells(tmp_path, capsys):
    from ssl_multilabel.datasets import load_quickstart
    from ssl_multilabel.models import load_model

    names = _quickstart_names()
    old_names = [names[j] for j in (3, 0, 1, 2, 4, 5, 6)]  # 7 of the 10, in another order
    path = _old_model(tmp_path / "old", old_names)
    recipe = Recipe(name="extend", data=Quickstart(n_train=N_TRAIN, n_test=8, known_fraction=0.3),
                    steps=[Supervised(init_model=str(path), epochs=1, batch_size=16, validation_fraction=0.0)], seed=2)
    run = run_recipe(recipe, tmp_path / "run")
    given = recipe.data.load(recipe.seed, run).labels
    step = PartialLabels.load(run / "steps" / "01_supervised" / "labels.npz")
    # Teacher cells: exactly the unknown cells of the old labels, holding the old model's scores.
    old_columns = np.isin(np.array(names), old_names)[None, :]
    np.testing.assert_array_equal(step.known, given.known | old_columns)
    teacher = step.known & ~given.known
    assert (step.source[teacher] == Source.TEACHER).all() and (step.weight[teacher] == 1).all()
    np.testing.assert_array_equal(step.values[given.known], given.values[given.known])
    images = load_quickstart()[0][0][:N_TRAIN]
    old_scores = load_model(path).predict(images.astype("float32"), verbose=0)
    expected = np.full(step.known.shape, np.nan)
    for a, name in enumerate(old_names):
        expected[:, names.index(name)] = old_scores[:, a]
    np.testing.assert_allclose(step.values[teacher], expected[teacher], atol=1e-5)
    assert load_model(run / "steps" / "01_supervised" / "model.keras").output_shape == (None, 10)
    metrics = json.loads((run / "steps" / "01_supervised" / "metrics.json").read_text())
    assert metrics["teacher_cells"] == int(teacher.sum())

    # The run has a model: suggest ranks from its scores and its features' graph.
    out = tmp_path / "cells.csv"
    assert main(["suggest", str(run), "--budget", "15", "--out", str(out)]) == 0
    cells = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(cells.columns) == ["id", "label", "score", "answer", "run"] and len(cells) == 15
    assert set(cells["run"]) == {json.loads((run / "recipe.json").read_text())["run_id"]}
    assert (cells["answer"] == "").all()
    for row_id, label in zip(cells["id"], cells["label"]):
        assert not given.known[given.ids.index(row_id), names.index(label)]
    assert "kNN graph" in capsys.readouterr().out

    # Built-in data: the answers go into the human cells of the run's final table (teacher cells dropped).
    truth = load_quickstart()[0][1]
    cells["answer"] = [str(int(truth.values[truth.ids.index(i), names.index(n)])) for i, n in zip(cells["id"], cells["label"])]
    cells.to_csv(out, index=False)
    assert main(["answers", str(run), str(out), "--out", str(tmp_path / "answered.npz")]) == 0
    answered = PartialLabels.load(tmp_path / "answered.npz")
    expected = given.to_array()
    for row_id, label, answer in zip(cells["id"], cells["label"], cells["answer"]):
        expected[given.ids.index(row_id), names.index(label)] = float(answer)
    np.testing.assert_array_equal(answered.to_array(), expected)
    assert set(answered.source[answered.known].tolist()) == {Source.HUMAN}


def test_init_model_with_freeze_trains_only_the_output_layer_on_cached_features(tmp_path):
    """freeze=True: every weight before the output layer is the old model's, the old labels' units
    start from the old model's, and the head trained on the features computed once (cache files)."""
    from ssl_multilabel.models import load_model

    names = _quickstart_names()
    old_names = names[:7]
    path = _old_model(tmp_path / "old", old_names)
    old = load_model(path)
    recipe = Recipe(name="extend", data=Quickstart(n_train=N_TRAIN, n_test=8, known_fraction=0.3),
                    steps=[Supervised(init_model=str(path), freeze=True, epochs=2, batch_size=16,
                                      validation_fraction=0.0)], seed=2)
    run = run_recipe(recipe, tmp_path / "run")
    new = load_model(run / "steps" / "01_supervised" / "model.keras")
    assert not new.get_layer("backbone").trainable
    for a, b in zip(old.get_layer("backbone").get_weights(), new.get_layer("backbone").get_weights()):
        np.testing.assert_array_equal(a, b)  # batch-norm statistics included
    kernel, _ = new.get_layer("scores").get_weights()
    old_kernel, _ = old.get_layer("scores").get_weights()
    assert kernel.shape == (old_kernel.shape[0], 10)
    assert not np.allclose(kernel[:, :7], old_kernel)  # the output layer did train
    assert list((run / "features").glob("*"))  # the head trained on cached features


@pytest.mark.parametrize("protocol, known_fraction", [("random_cells", 0.1), ("random_cells", 0.6),
                                                      ("single_positive", 0.1)])
def test_replay_epoch_is_the_new_labels_rows_once_mixed_with_as_many_other_rows(tmp_path, monkeypatch, protocol,
                                                                               known_fraction):
    """replay=1: an epoch has n_new // B batches; each batch is B rows with a known cell of a new
    label, then B other rows (fewer when there are fewer other rows than new ones: B * n_other /
    n_new, rounded); over an epoch the first halves hold distinct such rows (counted here from
    the table with numpy), all but n_new % B of them, and every row keeps its own targets. With
    single positive labels the new labels' negatives are assumed on every row: the rows that
    count are those with a person's positive."""
    import ssl_multilabel.training as training
    from ssl_multilabel.datasets import load_quickstart

    names = _quickstart_names()
    path = _old_model(tmp_path / "old", names[:7])
    seen = {}
    original = training.train_round

    def record(model, train_ds, *args, **kwargs):
        seen["batches"] = [tuple(t.numpy() for t in batch) for batch in train_ds]
        return original(model, train_ds, *args, **kwargs)

    monkeypatch.setattr(training, "train_round", record)
    batch = 4
    recipe = Recipe(name="extend", data=Quickstart(n_train=48, n_test=8, protocol=protocol, known_fraction=known_fraction),
                    steps=[Supervised(init_model=str(path), epochs=1, batch_size=batch,
                                      validation_fraction=0.0)], seed=2)
    run = run_recipe(recipe, tmp_path / "run")
    given = recipe.data.load(recipe.seed, run).labels
    step = PartialLabels.load(run / "steps" / "01_supervised" / "labels.npz")
    images = load_quickstart()[0][0][:48].astype("float32")
    new_rows = np.flatnonzero(given.known[:, 7:].any(axis=1))
    n_new, n_other = len(new_rows), 48 - len(new_rows)
    assert n_new >= batch and n_other >= 1
    others = min(batch, max(1, round(batch * n_other / n_new)))
    row_of = {images[i].tobytes(): i for i in range(48)}
    assert len(seen["batches"]) == n_new // batch
    first, second = [], []
    for x, y, w in seen["batches"]:
        rows = [row_of[np.asarray(image, np.float32).tobytes()] for image in x]
        assert len(rows) == batch + others
        first += rows[:batch]
        second += rows[batch:]
        table = step.to_array()[rows]  # human and teacher cells, as trained
        known = table >= 0
        np.testing.assert_array_equal(y[known], table[known])
        assert protocol == "single_positive" or (y[~known] == -1).all()
        assert np.isin(y[~known], [-1, 0]).all()  # unknown, or an assumed negative
    assert len(set(first)) == len(first) == n_new - n_new % batch
    assert set(first) <= set(new_rows.tolist())
    assert not set(second) & set(new_rows.tolist())


def test_replay_trains_every_row_without_a_new_labels_cell(tmp_path, monkeypatch):
    import ssl_multilabel.training as training

    assert Supervised().replay == 1.0  # the default, used with init_model
    names = _quickstart_names()
    path = _old_model(tmp_path / "old", names)  # every label of the table is an old one
    seen = {}
    original = training.train_round

    def record(model, train_ds, *args, **kwargs):
        seen["rows"] = sum(len(batch[0]) for batch in train_ds)
        return original(model, train_ds, *args, **kwargs)

    monkeypatch.setattr(training, "train_round", record)
    recipe = Recipe(name="extend", data=Quickstart(n_train=20, n_test=8, known_fraction=0.1),
                    steps=[Supervised(init_model=str(path), replay=1.0, epochs=1, batch_size=4,
                                      validation_fraction=0.0)], seed=2)
    run_recipe(recipe, tmp_path / "run")
    assert seen["rows"] == 20  # the old model teaches every row: each trains once


def test_validation_scores_the_extended_model_against_human_cells_only(tmp_path):
    """The teacher cells of validation rows are the old model's own scores: scoring against them
    would reward agreeing with the old model. val mAP = scikit-learn's AP over the human cells of
    the validation rows (the shared split, recomputed here), averaged over scorable labels."""
    from sklearn.metrics import average_precision_score

    from ssl_multilabel.datasets import load_quickstart
    from ssl_multilabel.models import load_model

    names = _quickstart_names()
    path = _old_model(tmp_path / "old", names[:7])
    recipe = Recipe(name="extend", data=Quickstart(n_train=64, n_test=8, known_fraction=0.5),
                    steps=[Supervised(init_model=str(path), freeze=True, epochs=1, batch_size=16, patience=None,
                                      validation_fraction=0.5)], seed=1)
    run = run_recipe(recipe, tmp_path / "run")
    given = recipe.data.load(recipe.seed, run).labels
    history = json.loads((run / "steps" / "01_supervised" / "history.json").read_text())
    labeled = np.flatnonzero(given.known.any(axis=1))
    val = np.sort(np.random.default_rng(recipe.seed * 1000).permutation(labeled)[: round(0.5 * len(labeled))])
    images = load_quickstart()[0][0][:64][val].astype("float32")
    scores = load_model(run / "steps" / "01_supervised" / "model.keras").predict(images, verbose=0)
    aps = []
    for j in range(len(names)):
        known = given.known[val, j]
        truth = given.values[val, j][known]
        if 0 < truth.sum() < len(truth):
            aps.append(average_precision_score(truth, scores[known, j]))
    assert history["val_mAP"][0] == pytest.approx(float(np.mean(aps)), abs=1e-5)


def test_a_renamed_model_label_stops_the_step_before_training(tmp_path):
    names = _quickstart_names()
    renamed = ["Tshirt" if n == "T-shirt/top" else n for n in names[:7]]
    path = _old_model(tmp_path / "old", renamed)
    recipe = Recipe(data=Quickstart(n_train=8, n_test=8), steps=[Supervised(init_model=str(path), epochs=1)])
    with pytest.raises(RecipeError, match=r"The model's labels \['Tshirt'\] \(from .*old.keras.labels.json\) are not "
                                          r"labels of the table \(from the recipe's label table\)"):
        run_recipe(recipe, tmp_path / "run")
    assert not (tmp_path / "run" / "steps" / "01_supervised").exists()


def test_an_init_model_for_other_images_stops_the_step(tmp_path):
    from ssl_multilabel.models import build_classifier

    names = _quickstart_names()
    (tmp_path / "old").mkdir()
    build_classifier("small_cnn", 2, (28, 28, 1), seed=0).save(tmp_path / "old" / "m.keras")
    (tmp_path / "old" / "m.keras.labels.json").write_text(json.dumps(names[:2]))
    recipe = Recipe(data=Quickstart(n_train=8, n_test=8), steps=[Supervised(init_model=str(tmp_path / "old" / "m.keras"))])
    with pytest.raises(RecipeError, match=r"takes inputs of shape \(28, 28, 1\); the recipe's images are \(56, 56, 1\)"):
        run_recipe(recipe, tmp_path / "run")


@pytest.mark.parametrize("layers, found", [
    (["scores"], "layers ['pixels', 'flat', 'scores'], no 'embedding' layer"),  # it would train, then have no features
    (["out"], "layers ['pixels', 'flat', 'out'], no 'embedding' or 'scores' layer"),
])
def test_an_init_model_not_built_by_the_library_stops_the_step_before_training(tmp_path, layers, found):
    import keras

    names = _quickstart_names()
    inputs = keras.Input((56, 56, 1), name="pixels")
    flat = keras.layers.Flatten(name="flat")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="sigmoid", name=layers[0])(flat))
    (tmp_path / "old").mkdir()
    model.save(tmp_path / "old" / "m.keras")
    (tmp_path / "old" / "m.keras.labels.json").write_text(json.dumps(names[:2]))
    recipe = Recipe(data=Quickstart(n_train=8, n_test=8), steps=[Supervised(init_model=str(tmp_path / "old" / "m.keras"))])
    with pytest.raises(RecipeError) as caught:
        run_recipe(recipe, tmp_path / "run")
    assert str(caught.value) == (
        f"Step 'supervised': Invalid value for init_model {str(tmp_path / 'old' / 'm.keras')!r}: expected a classifier "
        "built by build_classifier, with an 'embedding' layer and the Dense layer 'scores' as its output; got "
        f"Functional with {found}.")
    assert not list((tmp_path / "run" / "steps").glob("01_*/history.json"))  # stopped before training


def test_a_step_model_loads_with_keras_once_the_models_module_is_imported(tmp_path):
    """docs/recipes.md: `import ssl_multilabel.models` registers the losses and metrics a step's
    compiled model names (a fresh interpreter: this one has imported them already)."""
    import subprocess

    from ssl_multilabel.losses import MaskedBinaryCrossentropy
    from ssl_multilabel.metrics import MaskedAUC
    from ssl_multilabel.models import build_classifier

    model = build_classifier("small_cnn", 2, (8, 8, 1), seed=0)
    model.compile(loss=MaskedBinaryCrossentropy(), metrics=[MaskedAUC()])
    model.save(tmp_path / "step.keras")
    code = ("import keras, ssl_multilabel.models; "
            f"m = keras.models.load_model({str(tmp_path / 'step.keras')!r}); print(type(m.loss).__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.split() == ["MaskedBinaryCrossentropy"]


def test_init_model_files_are_checked_before_the_run_starts(tmp_path):
    recipe = Recipe(data=Quickstart(n_train=8, n_test=8), steps=[Supervised(init_model=str(tmp_path / "none.keras"))])
    with pytest.raises(RecipeError, match=r"Step setting supervised.init_model: '.*none.keras' does not exist"):
        run_recipe(recipe, tmp_path / "run")
    (tmp_path / "m.keras").write_bytes(b"")
    recipe = Recipe(data=Quickstart(n_train=8, n_test=8), steps=[Supervised(init_model=str(tmp_path / "m.keras"))])
    with pytest.raises(RecipeError, match=r"has no label file 'm.keras.labels.json' beside it"):
        run_recipe(recipe, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(RecipeError, match=r"init_model and from_scratch=True contradict"):
        Supervised(init_model="m.keras", from_scratch=True)
    with pytest.raises(RecipeError, match=r"init_model must be the path of a .keras model; got 'm.h5'"):
        Supervised(init_model="m.h5")


def test_init_model_path_is_recorded_absolute(tmp_path, monkeypatch):
    path = _old_model(tmp_path, ["a"])
    monkeypatch.chdir(tmp_path)
    assert Supervised(init_model="old.keras").resolved().init_model == str(path.resolve())


# === suggest / answers on a run without a model (propagation scores, embedding graph) ===


@pytest.fixture()
def embedding_run(tmp_path):
    labels_csv, emb, truth = _tiny_embeddings(tmp_path / "in", n=40)
    recipe = Recipe(name="tiny", data=Embeddings(labels_csv=str(labels_csv), embeddings=str(emb), truth_csv=str(truth)),
                    steps=[Propagate(k=4, target_precision=None), Evaluate(split="hidden"), Export()], seed=1)
    return run_recipe(recipe, tmp_path / "run"), labels_csv, truth


def test_suggest_then_answers_round_trip(embedding_run, tmp_path, capsys):
    run, labels_csv, truth_csv = embedding_run
    given, truth = PartialLabels.load(labels_csv), PartialLabels.load(truth_csv)
    out = tmp_path / "cells.csv"
    assert main(["suggest", str(run), "--budget", "6", "--out", str(out)]) == 0
    assert "scores of the last propagation, kNN graph (k=4, l2)" in capsys.readouterr().out
    cells = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert len(cells) == 6
    rows = [given.ids.index(i) for i in cells["id"]]
    cols = [given.label_names.index(n) for n in cells["label"]]
    assert not given.known[rows, cols].any()
    # A person answers the first five with the truth and skips the last.
    cells["answer"] = [str(int(truth.values[i, j])) for i, j in zip(rows, cols)]
    cells.loc[5, "answer"] = ""
    cells.to_csv(out, index=False)
    merged_path = tmp_path / "answered.csv"
    assert main(["answers", str(run), str(out), "--out", str(merged_path)]) == 0
    merged = PartialLabels.load(merged_path)
    expected = given.to_array()
    for i, j in zip(rows[:5], cols[:5]):
        expected[i, j] = truth.values[i, j]
    np.testing.assert_array_equal(merged.to_array(), expected)
    assert (merged.source[merged.known] == Source.HUMAN).all()
    assert PartialLabels.load(labels_csv).to_array().tolist() == given.to_array().tolist()  # input untouched
    assert main(["answers", str(run), str(out), "--out", str(merged_path)]) == 2
    assert "exists; choose a new file or pass --overwrite" in one_error_line(capsys)


def test_suggest_leaves_out_cells_answered_into_the_run_s_table_since_the_run(embedding_run, tmp_path, capsys):
    """A team merges answers into the table in place and asks for more cells before training again:
    every cell of the second `suggest` had been answered. Reference: the table's known cells now."""
    run, labels_csv, truth_csv = embedding_run
    truth = PartialLabels.load(truth_csv)
    out = tmp_path / "cells.csv"
    assert main(["suggest", str(run), "--budget", "8", "--out", str(out)]) == 0
    cells = pd.read_csv(out, dtype=str, keep_default_na=False)
    cells["answer"] = [str(int(truth.values[truth.ids.index(i), truth.label_names.index(n)]))
                       for i, n in zip(cells["id"], cells["label"])]
    cells.to_csv(out, index=False)
    assert main(["answers", str(run), str(out), "--out", str(tmp_path / "v2.csv")]) == 0
    (tmp_path / "v2.csv").replace(labels_csv)  # the run's data.labels_csv, now with the answers
    capsys.readouterr()
    again = tmp_path / "again.csv"
    assert main(["suggest", str(run), "--budget", "8", "--out", str(again)]) == 0
    now = PartialLabels.load(labels_csv)
    second = pd.read_csv(again, dtype=str, keep_default_na=False)
    assert len(second) == 8 and not set(zip(second["id"], second["label"])) & set(zip(cells["id"], cells["label"]))
    assert not any(now.known[now.ids.index(i), now.label_names.index(n)] for i, n in zip(second["id"], second["label"]))
    assert f"of {int((~now.known).sum())} unlabeled cells" in capsys.readouterr().out


def test_answers_warn_when_another_run_suggested_the_cells(embedding_run, tmp_path, capsys):
    """A cells file of another run (another folder whose files share these names, or the previous
    round's) merged by id and label without a word. Reference: each run's `run_id`."""
    run, labels_csv, _ = embedding_run
    recipe = Recipe(name="tiny", data=Embeddings(labels_csv=str(labels_csv), embeddings=str(run.parent / "in" / "emb.npy")),
                    steps=[Propagate(k=4, target_precision=None)], seed=2)
    other = run_recipe(recipe, tmp_path / "other")
    cells = tmp_path / "cells.csv"
    assert main(["suggest", str(other), "--budget", "2", "--out", str(cells)]) == 0
    capsys.readouterr()
    assert main(["answers", str(other), str(cells), "--out", str(tmp_path / "a.csv")]) == 0
    assert "another run" not in capsys.readouterr().err  # its own run
    assert main(["answers", str(run), str(cells), "--out", str(tmp_path / "b.csv")]) == 0
    key, other_key = (json.loads((r / "recipe.json").read_text())["run_id"] for r in (run, other))
    assert key != other_key and len(key) == 16
    assert f"was suggested by another run ({other_key}), not by {run} ({key})" in capsys.readouterr().err


def test_suggest_typical_ranks_the_run_s_embeddings(embedding_run, tmp_path, capsys):
    from ssl_multilabel.labeling import suggest_cells

    run, labels_csv, _ = embedding_run
    out = tmp_path / "cells.csv"
    assert main(["suggest", str(run), "--budget", "4", "--out", str(out), "--method", "typical", "--seed", "2"]) == 0
    assert "(typical, from the data's embeddings); wrote" in capsys.readouterr().out
    cells = pd.read_csv(out, dtype=str, keep_default_na=False)
    # the library's ranking of the run's human table on the embeddings file itself
    expected = suggest_cells(PartialLabels.load(labels_csv), None, budget=4, method="typical", seed=2,
                             features=np.load(labels_csv.parent / "emb.npy"))
    assert list(zip(cells["id"], cells["label"])) == list(zip(expected["id"], expected["label"]))
    assert cells["label"].tolist() == ["a", "b", "a", "b"]


def test_suggest_diverse_ranks_the_run_s_scores_over_its_embeddings(embedding_run, tmp_path, capsys):
    from ssl_multilabel.labeling import saved_run_inputs, suggest_cells

    run, labels_csv, _ = embedding_run
    out = tmp_path / "cells.csv"
    assert main(["suggest", str(run), "--budget", "4", "--out", str(out), "--method", "diverse", "--seed", "3"]) == 0
    assert "(diverse, from the scores of the last propagation, data's embeddings); wrote" in capsys.readouterr().out
    cells = pd.read_csv(out, dtype=str, keep_default_na=False)
    given = PartialLabels.load(labels_csv)
    # the library's ranking of the run's human table: the propagation's scores, the embeddings file itself
    scores = saved_run_inputs(run, labels=given)["scores"]
    expected = suggest_cells(given, scores, budget=4, method="diverse", seed=3,
                             features=np.load(labels_csv.parent / "emb.npy"))
    assert list(zip(cells["id"], cells["label"])) == list(zip(expected["id"], expected["label"]))
    assert cells["label"].tolist() == ["a", "b", "a", "b"]


def test_suggest_per_label_takes_each_label_s_best_cells_in_turn(embedding_run, tmp_path, capsys):
    run, _, _ = embedding_run
    ranked, out = tmp_path / "all.csv", tmp_path / "cells.csv"
    assert main(["suggest", str(run), "--budget", "1000", "--out", str(ranked)]) == 0
    assert main(["suggest", str(run), "--budget", "4", "--out", str(out), "--per-label"]) == 0
    assert "(suggest, per label, from the" in capsys.readouterr().out
    everything = pd.read_csv(ranked, dtype=str, keep_default_na=False)
    cells = pd.read_csv(out, dtype=str, keep_default_na=False)
    # each label's cells in the order of the global ranking, taken a, b, a, b
    queues = {name: everything[everything["label"] == name].head(2) for name in ("a", "b")}
    expected = pd.concat([queues[name].iloc[[rank]] for rank in range(2) for name in ("a", "b")])
    assert cells.values.tolist() == expected.values.tolist()


def test_a_bad_answer_is_one_line_naming_the_row_and_writes_nothing(embedding_run, tmp_path, capsys):
    run, _, _ = embedding_run
    cells = tmp_path / "cells.csv"
    cells.write_text("id,label,score,answer\nr3,a,0.5,1\nr5,b,0.4,maybe\n")
    assert main(["answers", str(run), str(cells), "--out", str(tmp_path / "new.csv")]) == 2
    assert one_error_line(capsys) == (f"error: {cells} line 3 (id 'r5', label 'b'): answer 'maybe' is not 1, 0 or blank (or true / false, ? for no answer).")
    assert not (tmp_path / "new.csv").exists()
    cells.write_text("id,label,score,answer\nr999,a,0.5,1\n")
    assert main(["answers", str(run), str(cells), "--out", str(tmp_path / "new.csv")]) == 2
    assert "line 2 (id 'r999', label 'a'): id 'r999' is not a row of the label table" in one_error_line(capsys)
    cells.write_text("")  # a file saved empty
    assert main(["answers", str(run), str(cells), "--out", str(tmp_path / "new.csv")]) == 2
    assert one_error_line(capsys) == (f"error: Answers file {str(cells)!r} is empty; expected the columns id, label, "
                                      "score, answer, run written by `ssl-multilabel suggest`, with 1 or 0 in the answer column.")
    assert not (tmp_path / "new.csv").exists()
    cells.write_text("id,label,score,answer\nr3,a,0.5,\n")  # not filled in: a copy of the table, with a warning
    assert main(["answers", str(run), str(cells), "--out", str(tmp_path / "new.csv")]) == 0
    assert f"warning: {cells} holds no answer to merge" in capsys.readouterr().err


def test_suggest_refuses_an_existing_out_unless_overwrite(embedding_run, tmp_path, capsys):
    run, labels_csv, _ = embedding_run
    before = labels_csv.read_bytes()
    assert main(["suggest", str(run), "--budget", "3", "--out", str(labels_csv)]) == 2  # the user's labels CSV
    assert one_error_line(capsys) == f"error: --out {str(labels_csv)!r} exists; choose a new file or pass --overwrite."
    assert labels_csv.read_bytes() == before
    # checked first, before the run directory is read
    assert main(["suggest", str(tmp_path / "not_a_run"), "--budget", "3", "--out", str(labels_csv)]) == 2
    assert "--out" in one_error_line(capsys) and labels_csv.read_bytes() == before
    # the run's own label table is refused even with --overwrite (answers merges into it)
    assert main(["suggest", str(run), "--budget", "3", "--out", str(labels_csv), "--overwrite"]) == 2
    assert one_error_line(capsys) == (f"error: --out {str(labels_csv)!r} is the run's label table (data.labels_csv); "
                                      "write the suggestions to a new file.")
    assert labels_csv.read_bytes() == before
    out = tmp_path / "cells.csv"
    out.write_text("old\n")
    assert main(["suggest", str(run), "--budget", "3", "--out", str(out), "--overwrite"]) == 0
    assert len(pd.read_csv(out)) == 3


def test_suggest_on_an_unfinished_run_warns(embedding_run, tmp_path, capsys):
    import json
    import shutil

    run, _, _ = embedding_run
    assert main(["suggest", str(run), "--budget", "3", "--out", str(tmp_path / "a.csv")]) == 0
    def warnings() -> list[str]:
        return [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]

    assert warnings() == []  # a finished run
    copy = tmp_path / "unfinished"
    shutil.copytree(run, copy)
    state = json.loads((copy / "state.json").read_text())
    n_steps = len(json.loads((copy / "recipe.json").read_text())["recipe"]["steps"])
    (copy / "state.json").write_text(json.dumps({"finished": state["finished"][:1], "status": "running"}))
    assert main(["suggest", str(copy), "--budget", "3", "--out", str(tmp_path / "b.csv")]) == 0
    assert warnings() == [f"warning: the run is not finished (running, 1 of {n_steps} steps): the ranking uses the "
                          "steps finished so far."]


def test_suggest_on_a_folder_that_is_not_a_run_is_one_line(tmp_path, capsys):
    assert main(["suggest", str(tmp_path), "--budget", "3", "--out", str(tmp_path / "c.csv")]) == 2
    assert "is not a run directory" in one_error_line(capsys)
    assert main(["suggest", str(tmp_path), "--budget", "0", "--out", str(tmp_path / "c.csv")]) == 2
    assert "--budget: expected an int >= 1; got '0'" in one_error_line(capsys)


def test_report_says_what_to_label_next(embedding_run):
    import re

    from ssl_multilabel.report import write_report

    run, labels_csv, _ = embedding_run
    given = PartialLabels.load(labels_csv)
    page = write_report(run).read_text()
    section = page[page.index("<h2>What to label next</h2>"):]
    end = section.find("<h2>", 4)
    section = section if end < 0 else section[:end]
    assert "from the scores of the last propagation" in section
    rows = re.findall(r'<tr><td class="l">(\w+)</td><td class="">(\d+)</td><td class="">(\d+)</td>'
                      r'<td class="">(\d+)</td><td class="">(\d+)</td></tr>', section)
    assert [r[0] for r in rows] == ["a", "b"]
    for j, (_, pos, neg, unlabeled, suggested) in enumerate(rows):
        known = given.known[:, j]
        assert int(pos) == int((known & (given.values[:, j] == 1)).sum())
        assert int(neg) == int((known & (given.values[:, j] == 0)).sum())
        assert int(unlabeled) == int((~known).sum())
    assert sum(int(r[4]) for r in rows) == min(50, int((~given.known).sum()))
    assert "The top 10 suggestions:" in section


def test_answers_never_overwrite_their_input_table(embedding_run, tmp_path, capsys):
    run, labels_csv, _ = embedding_run
    cells = tmp_path / "cells.csv"
    cells.write_text("id,label,score,answer\nr3,a,0.5,1\n")
    before = labels_csv.read_bytes()
    assert main(["answers", str(run), str(cells), "--out", str(labels_csv), "--overwrite"]) == 2
    assert "is the input table" in one_error_line(capsys)
    assert labels_csv.read_bytes() == before
    # --labels chooses the table to merge into.
    other = tmp_path / "other.csv"
    PartialLabels.from_array(np.full((40, 2), -1.0), ["a", "b"], [f"r{i}" for i in range(40)]).save(other)
    assert main(["answers", str(run), str(cells), "--labels", str(other), "--out", str(tmp_path / "new.csv")]) == 0
    new = PartialLabels.load(tmp_path / "new.csv")
    assert new.known.sum() == 1 and new.values[3, 0] == 1 and new.source[3, 0] == Source.HUMAN


def test_answers_keep_the_id_column_of_the_run_s_labels_csv(tmp_path, capsys):
    # A user's table names its photos in a column 'image' (data.id_column=image): the merged table
    # is written with that column, so the next run reads it with the same settings.
    from PIL import Image

    from ssl_multilabel.recipes import Export, ImageFolder, Report

    (tmp_path / "photos").mkdir()
    for i in range(4):
        Image.fromarray(np.full((6, 6), 40 * i, np.uint8)).save(tmp_path / "photos" / f"p{i}.png")
    csv = tmp_path / "labels.csv"
    csv.write_text("image,cat,dog\np0.png,1,\np1.png,,0\np2.png,0,1\np3.png,,\n")
    recipe = Recipe(name="ids", data=ImageFolder(labels_csv=str(csv), image_dir=str(tmp_path / "photos"),
                                                   id_column="image", image_size=(6, 6), channels=1),
                    steps=[Export(), Report()])
    run = run_recipe(recipe, tmp_path / "run")
    # The run's filled table goes back to the user with their column too.
    exported = run / "export" / "labels.csv"
    assert exported.read_text().splitlines()[0] == "image,cat,dog"
    final = PartialLabels.load(run / "labels.npz")
    back = PartialLabels.load(exported, id_column="image")
    assert back.ids == final.ids and np.array_equal(back.to_array(), final.to_array())
    cells = tmp_path / "cells.csv"
    cells.write_text("id,label,score,answer\np0.png,dog,0.5,0\np3.png,cat,0.4,1\n")
    assert main(["answers", str(run), str(cells), "--out", str(tmp_path / "new.csv")]) == 0
    lines = (tmp_path / "new.csv").read_text().splitlines()
    assert lines == ["image,cat,dog", "p0.png,1,0", "p1.png,,0", "p2.png,0,1", "p3.png,1,"]
    assert csv.read_text().splitlines()[1] == "p0.png,1,"  # the input is untouched
    capsys.readouterr()
    assert main(["labels", str(tmp_path / "new.csv"), "--id-column", "image"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "4 rows, 2 labels, 75.0% of cells known"


# === A labeling round keeps the test split (found by a new-user run, 2026-12-07) ===


def test_the_test_split_stays_put_when_a_table_gains_labels():
    import hashlib

    from ssl_multilabel.labeling import test_side
    from ssl_multilabel.recipes.data import _split_test

    rng = np.random.default_rng(0)
    ids = [f"photo_{i}.jpg" for i in range(2000)]
    values = np.where(rng.random((2000, 3)) < 0.3, rng.integers(0, 2, (2000, 3)), -1).astype(float)
    before = PartialLabels.from_array(values, ["a", "b", "c"], ids)
    # Each id's side from sha256 by hand: the first 8 bytes as a fraction of 2^64.
    side = np.array([int(hashlib.sha256(f"7\0{i}".encode()).hexdigest()[:16], 16) / 2**64 < 0.2 for i in ids])
    np.testing.assert_array_equal(test_side(ids, 0.2, seed=7), side)
    assert abs(side.mean() - 0.2) < 4 * np.sqrt(0.2 * 0.8 / 2000)  # about the fraction
    labeled = before.known.any(axis=1)
    train, test = _split_test(before, 0.2, seed=7)
    np.testing.assert_array_equal(test, np.flatnonzero(side & labeled))
    np.testing.assert_array_equal(np.sort(np.r_[train, test]), np.arange(2000))
    # A labeling round: 300 blank rows get a cell. Old test rows stay; new ones are newly labeled rows.
    answered = rng.choice(np.flatnonzero(~labeled), 300, replace=False)
    grown = values.copy()
    grown[answered, 0] = 1
    _, test_after = _split_test(PartialLabels.from_array(grown, ["a", "b", "c"], ids), 0.2, seed=7)
    assert set(test) <= set(test_after) and set(test_after) - set(test) <= set(answered)
    # A tiny table keeps a labeled row for training.
    tiny = PartialLabels.from_array([[1.0], [-1.0]], ["a"], ["x", "y"])
    assert _split_test(tiny, 0.99, seed=0)[1].tolist() == []


def _noise_photos(folder: Path, n: int, rng) -> list[str]:
    """`n` 8x8 grey noise PNGs `p0.png`, `p1.png`, ... in `folder`; their ids."""
    from PIL import Image

    folder.mkdir()
    ids = [f"p{i}.png" for i in range(n)]
    for name in ids:
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / name)
    return ids


def test_suggest_leaves_out_the_rows_the_test_split_will_hold_out(tmp_path, capsys):
    from ssl_multilabel.recipes import ImageFolder
    from ssl_multilabel.labeling import test_side

    rng = np.random.default_rng(0)
    ids = _noise_photos(tmp_path / "photos", 80, rng)
    values = np.full((80, 2), -1.0)
    values[:40] = rng.integers(0, 2, (40, 2))  # half the photos labeled, half blank
    values[0], values[1] = [1, 0], [0, 1]
    csv = tmp_path / "labels.csv"
    PartialLabels.from_array(values, ["a", "b"], ids).save(csv)
    data = ImageFolder(labels_csv=str(csv), image_dir=str(tmp_path / "photos"), image_size=(8, 8), channels=1,
                       test_fraction=0.3)
    run = run_recipe(Recipe(data=data, steps=[Supervised(epochs=1, patience=None)], seed=0), tmp_path / "run")
    assert main(["suggest", str(run), "--budget", "1000", "--out", str(tmp_path / "cells.csv")]) == 0
    held = test_side(ids, 0.3, seed=0) & np.r_[np.zeros(40, bool), np.ones(40, bool)]
    assert 0 < held.sum() < 40 and f"The {held.sum()} unlabeled rows that the test split" in capsys.readouterr().out
    cells = pd.read_csv(tmp_path / "cells.csv")
    assert not set(cells["id"]) & {ids[i] for i in np.flatnonzero(held)}
    train_blank = {ids[i] for i in range(40, 80) if not held[i]}
    assert set(cells["id"]) == train_blank and len(cells) == 2 * len(train_blank)  # every other blank cell
    # Answer them all: the next run's test rows are the same rows.
    cells["answer"] = 1
    cells.to_csv(tmp_path / "answered.csv", index=False)
    assert main(["answers", str(run), str(tmp_path / "answered.csv"), "--out", str(tmp_path / "v2.csv")]) == 0
    before = data.load(0, tmp_path / "x").test_labels.ids
    after = dataclasses.replace(data, labels_csv=str(tmp_path / "v2.csv")).load(0, tmp_path / "y").test_labels.ids
    assert before == after and len(before) > 0


def test_answers_say_how_the_next_run_takes_the_merged_table(tmp_path, capsys):
    from ssl_multilabel.cli import _next_run_hint

    # Demo embeddings (no labels_csv): the hint names the demo's embeddings, and the next run works with it.
    run = run_recipe(Recipe(data=Embeddings(), steps=[Propagate()]), tmp_path / "demo")
    cells = tmp_path / "cells.csv"
    table = PartialLabels.load(run / "data" / "embeddings" / "labels.csv")
    i, j = np.argwhere(~table.known)[0]
    cells.write_text(f"id,label,score,answer\n{table.ids[i]},{table.label_names[j]},0.5,1\n")
    assert main(["answers", str(run), str(cells), "--out", str(tmp_path / "v2.csv")]) == 0
    hint = capsys.readouterr().out.strip().split(" is unchanged. ")[1]
    sets = hint.removeprefix("Give it to the next run with the demo embeddings: ").removesuffix(".").split()
    assert sets == ["--set", f"data.labels_csv={tmp_path / 'v2.csv'}", "--set",
                    f"data.embeddings={run / 'data' / 'embeddings' / 'embeddings.npy'}"]
    assert main(["run", str(Path(__file__).parents[1] / "recipes" / "propagate_embeddings.py"), "--out",
                 str(tmp_path / "next"), *sets]) == 0
    # Built-in data take no table; a run of your own table is given the flag.
    (tmp_path / "qs").mkdir()
    (tmp_path / "qs" / "recipe.json").write_text(json.dumps({"recipe": {"data": {"type": "Quickstart"}}}))
    assert "are built in and take no label table" in _next_run_hint(str(tmp_path / "qs"), "t.csv")
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "recipe.json").write_text(json.dumps({"recipe": {"data": {"type": "ImageFolder",
                                                                                   "labels_csv": "mine.csv"}}}))
    assert _next_run_hint(str(tmp_path / "own"), "t.csv") == "Give it to the next run as its label table: --set data.labels_csv=t.csv."


def test_answers_on_demo_images_keep_the_demo_s_test_rows(tmp_path, capsys):
    from ssl_multilabel.recipes import ImageFolder

    data = ImageFolder(image_size=(8, 8), channels=1)  # no labels_csv: the demo folder
    run = run_recipe(Recipe(data=data, steps=[Export()]), tmp_path / "run")
    demo = PartialLabels.load(run / "data" / "folder" / "labels.csv")
    first = data.load(0, run)
    i, j = np.argwhere(~first.labels.known)[0]  # a training cell nobody gave
    cells = tmp_path / "cells.csv"
    cells.write_text(f"id,label,score,answer\n{first.labels.ids[i]},{first.labels.label_names[j]},0.5,1\n")
    assert main(["answers", str(run), str(cells), "--out", str(tmp_path / "v2.csv")]) == 0
    merged = PartialLabels.load(tmp_path / "v2.csv")
    assert merged.ids == demo.ids  # every row of the demo table, its test rows included
    assert int((merged.known & ~demo.known).sum()) == 1
    hint = capsys.readouterr().out.strip().split("demo images: ")[1].removesuffix(".").split()
    second = dataclasses.replace(data, labels_csv=hint[1].split("=", 1)[1], image_dir=hint[3].split("=", 1)[1])
    assert second.load(0, tmp_path / "next").test_labels.ids == first.test_labels.ids


def test_suggest_warns_when_most_cells_go_to_a_label_nobody_labeled(tmp_path, capsys):
    labels_csv, emb, _ = _tiny_embeddings(tmp_path / "in", n=40)
    table = PartialLabels.load(labels_csv)
    grown = np.c_[table.to_array(), np.full(40, -1.0)]  # a new label "c", blank everywhere
    PartialLabels.from_array(grown, [*table.label_names, "c"], table.ids).save(tmp_path / "in" / "abc.csv")
    recipe = Recipe(data=Embeddings(labels_csv=str(tmp_path / "in" / "abc.csv"), embeddings=str(emb)),
                    steps=[Propagate(k=4)])
    run = run_recipe(recipe, tmp_path / "run")
    capsys.readouterr()
    assert main(["suggest", str(run), "--budget", "10", "--out", str(tmp_path / "cells.csv")]) == 0
    cells = pd.read_csv(tmp_path / "cells.csv")
    err = capsys.readouterr().err
    assert (cells["label"] == "c").sum() == 10  # its prior 0.5 is the most uncertain score
    assert "warning: 10 of the 10 cells are of labels with no known cell (['c'])" in err
    assert main(["suggest", str(run), "--budget", "10", "--per-label", "--out", str(tmp_path / "spread.csv")]) == 0
    assert (pd.read_csv(tmp_path / "spread.csv")["label"] == "c").sum() <= 4
    assert "no known cell" not in capsys.readouterr().err


def test_suggest_refuses_a_label_table_changed_since_the_run(tmp_path, capsys):
    # A person labels straight into the CSV between rounds, or drops rows: the run's scores no longer
    # line up with the table's rows. One line names the table and the rows that changed (was a
    # shape error from deep inside).
    from ssl_multilabel.recipes import ImageFolder

    rng = np.random.default_rng(0)
    ids = _noise_photos(tmp_path / "photos", 30, rng)
    values = rng.integers(0, 2, (30, 2)).astype(float)
    values[rng.random(values.shape) < 0.5] = -1
    values[0], values[1] = [1, 0], [0, 1]
    csv = tmp_path / "labels.csv"
    PartialLabels.from_array(values, ["a", "b"], ids).save(csv)
    data = ImageFolder(labels_csv=str(csv), image_dir=str(tmp_path / "photos"), image_size=(8, 8), channels=1,
                       test_fraction=0.0)
    steps = [Supervised(epochs=1, patience=None, validation_fraction=0.0), Propagate(k=4)]  # Propagate writes a table
    run = run_recipe(Recipe(data=data, steps=steps, seed=0), tmp_path / "run")
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    frame[~frame["id"].isin(["p3.png", "p7.png"])].to_csv(csv, index=False)
    Path(f"{csv}.meta.json").unlink(missing_ok=True)
    assert main(["suggest", str(run), "--budget", "4", "--out", str(tmp_path / "cells.csv")]) == 2
    line = one_error_line(capsys)
    assert str(csv) in line and "gives 28 training rows now, the run used 30" in line
    assert "rows gone: ['p3.png', 'p7.png']" in line and not (tmp_path / "cells.csv").exists()


def test_out_never_replaces_the_run_s_files_the_inputs_or_a_file_that_is_no_table(embedding_run, tmp_path, capsys):
    # --overwrite replaces a table the user wrote before; it used to replace anything: state.json
    # (every later command on the run failed), the answers file being merged, a photo.
    run, labels_csv, _ = embedding_run
    photo = tmp_path / "img.png"
    photo.write_bytes(b"\x89PNG not really")
    cells = tmp_path / "cells.csv"
    assert main(["suggest", str(run), "--budget", "3", "--out", str(cells)]) == 0
    before = {path: path.read_bytes() for path in (run / "state.json", photo, cells, labels_csv)}
    cases = [
        (["suggest", str(run), "--budget", "3", "--out", str(run / "state.json")], "is inside the run directory"),
        (["suggest", str(run), "--budget", "3", "--out", str(labels_csv)], "is the run's label table"),
        (["suggest", str(run), "--budget", "3", "--out", str(photo)], "exists and is not a .csv file"),
        (["answers", str(run), str(cells), "--out", str(cells)], "is the answers file"),
        (["answers", str(run), str(cells), "--out", str(run / "export" / "labels.csv")], "is inside the run directory"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main([*argv, "--overwrite"]) == 2, argv
        assert message in one_error_line(capsys)
    assert {path: path.read_bytes() for path in before} == before


@dataclasses.dataclass(frozen=True, kw_only=True)
class FailOnce(Step):
    """A test step that fails while the file `marker` exists (an interrupted run to resume)."""

    marker: str = ""

    def run(self, ctx, state):
        if Path(self.marker).exists():
            raise RuntimeError("interrupted")
        return StepResult()


def test_resume_after_the_finished_extension_step_needs_no_init_model(tmp_path):
    """Resume refused a run whose Supervised(init_model=...) step had finished once the old model
    was moved: only a step still to run reads its files; a fresh run still checks them first."""
    old = _old_model(tmp_path / "old", _quickstart_names()[:7])
    marker = tmp_path / "fail"
    marker.write_text("")
    recipe = Recipe(data=Quickstart(n_train=8, n_test=8),
                    steps=[Supervised(init_model=str(old), epochs=1, patience=None), FailOnce(marker=str(marker))])
    with pytest.raises(RuntimeError, match="interrupted"):
        run_recipe(recipe, tmp_path / "run")
    old.rename(tmp_path / "old" / "moved.keras")
    marker.unlink()
    run_recipe(recipe, tmp_path / "run", resume=True)
    assert json.loads((tmp_path / "run" / "state.json").read_text())["status"] == "finished"
    with pytest.raises(RecipeError, match=r"supervised.init_model: '.*old.keras' does not exist"):
        run_recipe(recipe, tmp_path / "again")


def test_resume_refuses_an_init_model_changed_since_the_run_started(tmp_path):
    """A step still to run read whatever file now lay at the recorded path: the resumed run was
    neither the run it continued nor a new one. Reference: the file's bytes at the start."""
    old = _old_model(tmp_path / "old", _quickstart_names()[:7])
    started = old.read_bytes()
    marker = tmp_path / "fail"
    marker.write_text("")
    recipe = Recipe(data=Quickstart(n_train=8, n_test=8),
                    steps=[FailOnce(name="first", marker=str(tmp_path / "never")), FailOnce(marker=str(marker)),
                           Supervised(init_model=str(old), epochs=1, patience=None)])
    with pytest.raises(RuntimeError, match="interrupted"):
        run_recipe(recipe, tmp_path / "run")
    marker.unlink()
    _old_model(tmp_path / "other", _quickstart_names()[:7], seed=1).replace(old)  # another model, same path
    assert old.read_bytes() != started
    with pytest.raises(RecipeError, match=r"old.keras' changed since the run started .*restore the file"):
        run_recipe(recipe, tmp_path / "run", resume=True)
    old.write_bytes(started)
    run_recipe(recipe, tmp_path / "run", resume=True)
    assert json.loads((tmp_path / "run" / "state.json").read_text())["status"] == "finished"


def test_label_columns_leave_metadata_columns_out_of_the_run_and_the_answers(tmp_path, capsys):
    """A CheXpert-style CSV with an age and a view column: every column but the id was read as a
    label (the age's 31 an error, a 0/1 view column a silent label). `data.label_columns` names the
    labels; the answered table of the run holds those columns only."""
    from ssl_multilabel.recipes import ImageFolder

    rng = np.random.default_rng(1)
    ids = _noise_photos(tmp_path / "photos", 40, rng)
    frame = pd.DataFrame({"id": ids, "Age": rng.integers(20, 90, 40), "Frontal": rng.integers(0, 2, 40),
                          "Lung Opacity": rng.integers(0, 2, 40).astype(float), "Edema": rng.integers(0, 2, 40).astype(float)})
    frame.loc[20:, ["Lung Opacity", "Edema"]] = np.nan  # unlabeled photos
    csv = tmp_path / "labels.csv"
    frame.to_csv(csv, index=False)

    def recipe(**data):
        return Recipe(data=ImageFolder(labels_csv=str(csv), image_dir=str(tmp_path / "photos"), image_size=(8, 8),
                                       channels=1, **data),
                      steps=[Supervised(epochs=1, patience=None), Export()], seed=0)

    with pytest.raises(ValueError, match=r"column 'Age'.*remove the column if it is no label"):
        run_recipe(recipe(), tmp_path / "bad")
    run = run_recipe(recipe(label_columns=("Edema", "Lung Opacity")), tmp_path / "run")
    exported = PartialLabels.load(run / "export" / "labels.csv", id_column="id")
    assert exported.label_names == ("Edema", "Lung Opacity")  # the given order; Age and Frontal are not labels
    expected = frame.set_index("id").loc[list(exported.ids), ["Edema", "Lung Opacity"]].to_numpy()
    human = exported.source == Source.HUMAN
    np.testing.assert_array_equal(exported.values[human], expected[human])
    cells = tmp_path / "cells.csv"
    assert main(["suggest", str(run), "--budget", "2", "--out", str(cells)]) == 0
    answered = pd.read_csv(cells, dtype=str, keep_default_na=False)
    answered["answer"] = "1"
    answered.to_csv(cells, index=False)
    assert main(["answers", str(run), str(cells), "--out", str(tmp_path / "v2.csv")]) == 0
    assert "(and its other columns, Age, Frontal, as they were)" in capsys.readouterr().out
    # "Nothing else changes": the table keeps its other columns, cell for cell; the label cells are
    # the table's plus the answers (read back with the same label columns).
    v2 = pd.read_csv(tmp_path / "v2.csv", dtype=str, keep_default_na=False)
    given = pd.read_csv(csv, dtype=str, keep_default_na=False)
    assert list(v2.columns) == list(given.columns)
    pd.testing.assert_frame_equal(v2[["id", "Age", "Frontal"]], given[["id", "Age", "Frontal"]])
    merged = PartialLabels.load(tmp_path / "v2.csv", label_columns=["Edema", "Lung Opacity"])
    from ssl_multilabel.labeling import merge_answers

    before = PartialLabels.load(csv, label_columns=["Edema", "Lung Opacity"])
    reference = merge_answers(before, cells)
    np.testing.assert_array_equal(merged.to_array(), reference.to_array())
    assert merged.known.sum() == before.known.sum() + 2  # the two answered cells
    # --labels names another CSV of the same kind: --label-columns reads it as the recipe read its own
    args = ["answers", str(run), str(cells), "--labels", str(csv)]
    assert main([*args, "--out", str(tmp_path / "v3.csv"), "--label-columns", "Edema,Lung Opacity"]) == 0
    assert (tmp_path / "v3.csv").read_bytes() == (tmp_path / "v2.csv").read_bytes()
    assert main([*args, "--out", str(tmp_path / "v4.csv")]) == 2  # without it: the age is a bad cell, one line
    assert "--label-columns" in capsys.readouterr().err
    assert main(["answers", str(run), str(cells), "--label-columns", "Edema", "--out", str(tmp_path / "v5.csv")]) == 2
    assert "applies to the --labels table" in capsys.readouterr().err
    with pytest.raises(RecipeError, match=r"`label_columns` of ImageFolder names columns of data.labels_csv, which is empty"):
        ImageFolder(label_columns=("Edema",))


def test_suggest_on_a_run_whose_photo_was_deleted_says_what_to_do(tmp_path, capsys):
    """The error advised `--set data.on_bad_image=skip`, which suggest does not take."""
    from PIL import Image

    from ssl_multilabel.recipes import ImageFolder

    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    ids = [f"p{i}.png" for i in range(24)]
    for name in ids:
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / "photos" / name)
    frame = pd.DataFrame({"id": ids, "a": ([1.0, 0.0] * 6) + [np.nan] * 12})
    frame.to_csv(tmp_path / "labels.csv", index=False)
    recipe = Recipe(data=ImageFolder(labels_csv=str(tmp_path / "labels.csv"), image_dir=str(tmp_path / "photos"),
                                     image_size=(8, 8), channels=1),
                    steps=[Supervised(epochs=1, patience=None)], seed=0)
    run = run_recipe(recipe, tmp_path / "run")
    (tmp_path / "photos" / "p3.png").unlink()
    assert main(["suggest", str(run), "--budget", "2", "--out", str(tmp_path / "c.csv")]) == 2
    line = one_error_line(capsys)
    assert "p3.png" in line and "restore its files, or run the recipe again" in line
