"""Recipes as data: validation, overrides, serialization, run directory, resume (no TensorFlow)."""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from ssl_multilabel.labels import PartialLabels, Source
from ssl_multilabel.recipes import (
    Embeddings,
    Evaluate,
    Export,
    NoisyStudent,
    Propagate,
    Quickstart,
    Recipe,
    RecipeError,
    Step,
    StepResult,
    Supervised,
    apply_overrides,
    fill_from_scores,
    load_recipe_file,
    param,
    resume_run,
    run_recipe,
)


def _recipe(**kw):
    return Recipe(data=Embeddings(), steps=[Propagate(k=5), Evaluate(split="hidden")], **kw)


# === Validation ===


def test_unknown_parameter_lists_valid_ones():
    with pytest.raises(RecipeError, match=r"Supervised has no parameter 'epoch'\. Did you mean 'epochs'\? Valid parameters: \['name', 'epochs'"):
        Supervised(epoch=3)


def test_wrong_type_and_bounds_are_errors():
    with pytest.raises(RecipeError, match=r"parameter `epochs` of Supervised\. Expected an int\. Received: epochs='3'"):
        Supervised(epochs="3")
    with pytest.raises(RecipeError, match=r"Expected a number >= 1\. Received: epochs=0"):
        Supervised(epochs=0)
    with pytest.raises(RecipeError, match=r"Expected one of \['cosine', 'l2'\]"):
        Propagate(metric="euclid")
    with pytest.raises(RecipeError, match="negative_threshold .* must be below"):
        Propagate(target_precision=None, positive_threshold=0.2, negative_threshold=0.3)
    # Thresholds that a target precision would replace are refused, naming both settings.
    with pytest.raises(RecipeError, match=r"positive_threshold and negative_threshold apply with target_precision=none; "
                                          r"with target_precision=0\.9"):
        Propagate(positive_threshold=0.8, negative_threshold=0.1)
    with pytest.raises(RecipeError, match=r"Propagate: negative_threshold applies with target_precision=none; with target_precision=0\.95"):
        Propagate(target_precision=0.95, negative_threshold=0.1)
    assert Propagate(target_precision=None, negative_threshold=0.1).negative_threshold == 0.1
    with pytest.raises(RecipeError, match=r"Propagate: precision_confidence=0\.8 applies to target_precision, which is none"):
        Propagate(target_precision=None, precision_confidence=0.8)
    with pytest.raises(RecipeError, match=r"precision_confidence.*Received: precision_confidence=1"):
        Propagate(precision_confidence=1.0)


def test_steps_are_frozen_and_ints_become_floats():
    step = Propagate(alpha=0.5, target_precision=None, positive_threshold=1)
    assert step.positive_threshold == 1.0 and isinstance(step.positive_threshold, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.k = 3  # type: ignore[misc]


def test_positional_arguments_are_refused():
    with pytest.raises(RecipeError, match="keyword arguments only"):
        Propagate(5)  # type: ignore[misc]


def test_step_names_are_unique_and_numbered():
    recipe = Recipe(data=Embeddings(), steps=[Evaluate(split="hidden"), Propagate(), Evaluate(split="hidden")])
    assert [s.name for s in recipe.steps] == ["evaluate", "propagate", "evaluate_2"]
    assert NoisyStudent().default_name() == "noisy_student"
    with pytest.raises(RecipeError, match="Duplicate step names"):
        Recipe(data=Embeddings(), steps=[Propagate(name="p"), Evaluate(name="p")])
    with pytest.raises(RecipeError, match="at least one step"):
        Recipe(data=Embeddings(), steps=[])


# === Overrides ===


def test_overrides_are_typed():
    recipe = apply_overrides(
        _recipe(),
        ["propagate.k=7", "propagate.alpha=0.5", "seed=3", "data.truth_csv=t.csv", "evaluate.split=test"],
    )
    assert recipe.step("propagate").k == 7 and recipe.step("propagate").alpha == 0.5
    assert apply_overrides(_recipe(), ["propagate.target_precision=none"]).step("propagate").target_precision is None
    assert recipe.seed == 3 and recipe.data.truth_csv == "t.csv" and recipe.step("evaluate").split == "test"
    supervised = apply_overrides(Recipe(data=Quickstart(), steps=[Supervised()]),
                                 ["supervised.patience=none", "supervised.from_scratch=true"]).step("supervised")
    assert supervised.patience is None and supervised.from_scratch is True


def test_a_steps_overrides_are_validated_together_in_any_order():
    """Pretrained weights need a backbone that has them: given before the backbone, they are not an
    error; alone they are, naming the setting the message is about (not the step's others); a later
    value of one key wins."""
    recipe = Recipe(data=Quickstart(), steps=[Supervised()])
    for order in (["supervised.weights=m.weights.h5", "supervised.backbone=mobilenet"],
                  ["supervised.backbone=mobilenet", "supervised.weights=m.weights.h5"]):
        step = apply_overrides(recipe, order).step("supervised")
        assert step.weights == "m.weights.h5" and step.backbone == "mobilenet"
    with pytest.raises(RecipeError, match=r"^--set supervised.weights=m.weights.h5: "
                                          r"Supervised: the small CNN has no pretrained weights"):
        apply_overrides(recipe, ["supervised.weights=m.weights.h5", "supervised.epochs=3"])
    assert apply_overrides(recipe, ["supervised.replay=2", "supervised.replay=none"]).step("supervised").replay is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("propagate.k=abc", r"--set propagate.k=abc: expected an int; got 'abc'"),
        ("propagate.k=2.5", r"expected an int; got '2.5'"),
        ("propagate.alpha=2", r"--set propagate.alpha=2: .*Expected a number < 1\.0"),
        ("propagate.kk=2", r"Propagate has no parameter 'kk'\. Did you mean 'k'\?"),
        ("prop.k=2", r"the recipe has no step 'prop'; steps are \['propagate', 'evaluate'\]"),
        ("propagate.k", r"expected KEY=VALUE"),
        ("k=3", r"expected STEP\.PARAM=VALUE"),
        ("propagate.target_precision=0.3", r"Expected a number >= 0\.5"),
        ("evaluate.split=train", r"expected one of \['test', 'hidden'\]; got 'train'"),
        ("data.nope=1", r"Embeddings has no parameter 'nope'"),
    ],
)
def test_bad_overrides_are_errors(override, message):
    with pytest.raises(RecipeError, match=message):
        apply_overrides(_recipe(), [override])


def test_recipe_round_trips_through_json():
    recipe = Recipe(data=Quickstart(known_fraction=0.2), steps=[Supervised(epochs=2), Propagate(k=4),
                                                                 NoisyStudent(rounds=2), Evaluate()], seed=5)
    data = json.loads(json.dumps(recipe.to_dict()))
    assert Recipe.from_dict(data) == recipe
    data["steps"][0]["type"] = "Nope"
    with pytest.raises(RecipeError, match="Unknown step type 'Nope'"):
        Recipe.from_dict(data)


# === Run directory and resume ===


def _tiny_embeddings(folder: Path, n: int = 40, seed: int = 0) -> tuple[Path, Path, Path]:
    """Two well separated clusters, label 0 = cluster, label 1 = its negation; 25 % cells known."""
    rng = np.random.default_rng(seed)
    cluster = np.arange(n) % 2
    X = rng.normal(size=(n, 4)) * 0.1 + (2.0 * cluster[:, None] - 1.0) * 3.0  # opposite directions
    truth = np.stack([cluster, 1 - cluster], axis=1).astype(np.float32)
    partial = np.where(rng.random(truth.shape) < 0.25, truth, -1.0)
    partial[0] = truth[0]
    partial[1] = truth[1]  # both clusters have known cells
    folder.mkdir(parents=True, exist_ok=True)
    names = ["a", "b"]
    ids = [f"r{i}" for i in range(n)]
    PartialLabels.from_array(partial, names, ids).save(folder / "labels.csv")
    PartialLabels.from_array(truth, names, ids).save(folder / "truth.csv")
    np.save(folder / "emb.npy", X)
    return folder / "labels.csv", folder / "emb.npy", folder / "truth.csv"


def test_propagate_step_writes_the_fills_per_label_report(tmp_path):
    """docs/recipes.md sends users to the held-out precision of each label's fills; no file held it.
    Reference: the fills counted per label in the step's own table."""
    import pandas as pd

    csv, npy, _ = _tiny_embeddings(tmp_path / "data", n=80)
    run = run_recipe(Recipe(data=Embeddings(labels_csv=str(csv), embeddings=str(npy)), steps=[Propagate(k=4)]),
                     tmp_path / "run")
    report = pd.read_csv(run / "steps" / "01_propagate" / "fill_report.csv", index_col="label")
    given, table = PartialLabels.load(csv), PartialLabels.load(run / "steps" / "01_propagate" / "labels.npz")
    filled = table.known & ~given.known
    assert (table.source[filled] == Source.PROPAGATED).all() and filled.any()
    np.testing.assert_array_equal(report.loc[list(table.label_names), "filled_pos"],
                                  (filled & (table.values >= 0.5)).sum(axis=0))
    np.testing.assert_array_equal(report.loc[list(table.label_names), "filled_neg"],
                                  (filled & (table.values < 0.5)).sum(axis=0))
    assert report["heldout_precision_pos"].between(0, 1).all() and (report["heldout_cells"] > 0).all()
    assert json.loads((run / "state.json").read_text())["finished"][0]["info"]["fill_report"] == "fill_report.csv"


def test_embeddings_with_another_id_column_export_under_it(tmp_path):
    csv, npy, truth_csv = _tiny_embeddings(tmp_path / "data")
    for path in (csv, truth_csv):
        PartialLabels.load(path).save(path, id_column="name")
    data = Embeddings(labels_csv=str(csv), embeddings=str(npy), truth_csv=str(truth_csv), id_column="name")
    run_dir = run_recipe(Recipe(data=data, steps=[Propagate(k=3), Export()]), tmp_path / "run")
    exported = run_dir / "export" / "labels.csv"
    assert exported.read_text().splitlines()[0] == "name,a,b"
    given, filled = PartialLabels.load(csv, id_column="name"), PartialLabels.load(exported, id_column="name")
    assert filled.ids == given.ids and np.array_equal(filled.values[given.known], given.values[given.known])
    with pytest.raises(RecipeError, match=r"parameter `id_column` of Embeddings\. Expected a column name"):
        Embeddings(id_column=" ")


def test_evaluate_says_when_no_label_can_be_scored(tmp_path, caplog):
    csv, npy, truth_csv = _tiny_embeddings(tmp_path / "data")
    scored = PartialLabels.load(truth_csv)
    hidden = ~PartialLabels.load(csv).known  # the cells Evaluate(split="hidden") scores
    # Truth tables that agree with every known cell: the hidden cells of label a all 1 ("half"),
    # and also those of label b all 0 ("one_class"): a label with one class only cannot be scored.
    half = np.where(hidden & (np.arange(2) == 0), 1.0, scored.to_array())
    one_class = np.where(hidden, [1.0, 0.0], scored.to_array())
    for name, table in (("half", half), ("one_class", one_class)):
        PartialLabels.from_array(table.astype(np.float32), scored.label_names, scored.ids).save(
            tmp_path / "data" / f"{name}.csv")
    caplog.set_level("INFO", logger="ssl_multilabel.recipes.steps")
    cases = ((truth_csv, "labels scored"), (tmp_path / "data" / "half.csv", "(1 of 2 labels scored)"),
             (tmp_path / "data" / "one_class.csv", "no label can be scored"))
    for case, (truth, expected) in enumerate(cases):
        recipe = Recipe(data=Embeddings(labels_csv=str(csv), embeddings=str(npy), truth_csv=str(truth)),
                        steps=[Propagate(k=5), Evaluate(split="hidden")])
        caplog.clear()
        run = run_recipe(recipe, tmp_path / f"run_{case}")
        metrics = json.loads((run / "steps" / "02_evaluate" / "metrics.json").read_text())
        line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("evaluate (hidden)"))
        # The truth table scores both labels (sklearn reference: 2 classes among each label's hidden cells).
        both = [len(np.unique(scored.to_array()[hidden[:, j], j])) == 2 for j in range(2)]
        if expected == "labels scored":
            assert all(both) and metrics["n_labels_scored"] == 2 and "labels scored" not in line
        elif expected.startswith("(1 of 2"):
            assert both[1] and metrics["n_labels_scored"] == 1 and line.endswith(expected)
        else:
            assert metrics["n_labels_scored"] == 0 and metrics["mAP"] == 0.0 and expected in line


def test_a_truth_table_that_contradicts_a_known_cell_is_refused_before_any_step(tmp_path):
    csv, npy, truth_csv = _tiny_embeddings(tmp_path / "data")
    labels, truth = PartialLabels.load(csv), PartialLabels.load(truth_csv)
    known = np.argwhere(labels.known)
    i, j = known[3]  # a known cell, flipped in the truth
    flipped = truth.to_array()
    flipped[i, j] = 1.0 - flipped[i, j]
    PartialLabels.from_array(flipped, truth.label_names, truth.ids).save(tmp_path / "data" / "bad_truth.csv")
    recipe = Recipe(data=Embeddings(labels_csv=str(csv), embeddings=str(npy),
                                    truth_csv=str(tmp_path / "data" / "bad_truth.csv")),
                    steps=[CountingFill(), Evaluate(split="hidden")])
    expected = (f"disagrees with .* at row id '{labels.ids[i]}', label '{labels.label_names[j]}': the "
                f"labels say {int(labels.values[i, j])}, the truth {int(flipped[i, j])} \\(1 such cell")
    with pytest.raises(RecipeError, match=expected):
        run_recipe(recipe, tmp_path / "run")
    assert not list((tmp_path / "run").glob("runs_*.txt"))  # no step ran


@dataclasses.dataclass(frozen=True, kw_only=True)
class CountingFill(Step):
    """A test step: fills every unknown cell with `value` and counts its runs in a file."""

    value: float = param(1.0, ge=0.0, le=1.0)
    fail: bool = False

    def run(self, ctx, state):
        counter = ctx.run_dir / f"runs_{self.name}.txt"
        counter.write_text(str(int(counter.read_text()) + 1 if counter.exists() else 1))
        if self.fail:
            raise RuntimeError("boom")
        Y = np.full(state.labels.known.shape, self.value)
        return StepResult(labels=state.labels.fill(Y, 0.5, Source.TEACHER), metrics={"v": self.value})


def test_run_writes_resolved_recipe_state_and_labels(tmp_path):
    labels_csv, emb, truth = _tiny_embeddings(tmp_path / "in")
    recipe = Recipe(data=Embeddings(labels_csv=str(labels_csv), embeddings=str(emb)),
                    steps=[Propagate(k=3, target_precision=None, positive_threshold=0.55,
                                     negative_threshold=0.45)], seed=7)
    run_dir = run_recipe(recipe, tmp_path / "run", overrides=["propagate.k=4"])
    meta = json.loads((run_dir / "recipe.json").read_text())
    assert meta["seed"] == 7 and meta["overrides"] == ["propagate.k=4"]
    assert meta["recipe"]["steps"][0]["k"] == 4
    assert {"python", "numpy", "tensorflow", "keras", "faiss-cpu"} <= set(meta["versions"])
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "finished" and [r["name"] for r in state["finished"]] == ["propagate"]
    given = PartialLabels.load(labels_csv)
    final = PartialLabels.load(run_dir / "labels.npz")
    # Human cells are kept; the two clusters are separable so every filled cell is right.
    assert np.array_equal(final.values[given.known], given.values[given.known])
    filled = final.known & ~given.known
    assert filled.sum() > 0
    assert np.all((final.values[filled] >= 0.5) == (PartialLabels.load(truth).values[filled] >= 0.5))
    assert np.all(final.source[filled] == Source.PROPAGATED)
    with pytest.raises(RecipeError, match="exists and is not empty"):
        run_recipe(recipe, run_dir)


def test_propagate_names_labels_without_a_class_once_instead_of_warning(tmp_path, caplog):
    """Label b keeps only its known positives (as under single positive labels): one log line names
    it and the missing class; the diffusion's index-numbered warning does not reach the user."""
    labels_csv, emb, _ = _tiny_embeddings(tmp_path / "in")
    given = PartialLabels.load(labels_csv)
    partial = given.to_array()
    partial[:, 1] = np.where(partial[:, 1] == 0, -1.0, partial[:, 1])  # b: no known negative
    assert (partial[:, 0] == 0).any() and (partial[:, 0] == 1).any() and (partial[:, 1] == 1).any()
    PartialLabels.from_array(partial, given.label_names, given.ids).save(labels_csv)
    recipe = Recipe(data=Embeddings(labels_csv=str(labels_csv), embeddings=str(emb)),
                    steps=[Propagate(k=3, target_precision=None)], seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        with caplog.at_level("INFO", logger="ssl_multilabel.recipes.steps"):
            run_recipe(recipe, tmp_path / "run")
    said = [r.getMessage() for r in caplog.records if "no known cell to propagate" in r.getMessage()]
    assert len(said) == 1 and "for b (negative);" in said[0] and "a (" not in said[0]


def test_failed_step_is_rerun_by_resume_and_finished_steps_are_not(tmp_path):
    labels_csv, emb, _ = _tiny_embeddings(tmp_path / "in")
    data = Embeddings(labels_csv=str(labels_csv), embeddings=str(emb))
    script = tmp_path / "recipe.py"
    script.write_text("")  # registered types come from this test module; nothing to import
    failing = Recipe(data=data, steps=[CountingFill(name="one", value=1.0), CountingFill(name="two", fail=True)])
    with pytest.raises(RuntimeError, match="boom"):
        run_recipe(failing, tmp_path / "run")
    run_dir = tmp_path / "run"
    assert (run_dir / "steps" / "01_one").is_dir()
    assert (run_dir / "steps" / ".02_two.tmp").is_dir()  # debris of the failed step
    # Resume with the step fixed: rewrite the recorded recipe as a user would after fixing a bug.
    meta = json.loads((run_dir / "recipe.json").read_text())
    meta["recipe"]["steps"][1]["fail"] = False
    (run_dir / "recipe.json").write_text(json.dumps(meta))
    resume_run(run_dir)
    assert (run_dir / "runs_one.txt").read_text() == "1"  # not rerun
    assert (run_dir / "runs_two.txt").read_text() == "2"  # rerun from its beginning
    assert not (run_dir / "steps" / ".02_two.tmp").exists()
    final = PartialLabels.load(run_dir / "labels.npz")
    assert final.known.all()


def test_fill_from_scores_thresholds_by_hand():
    # Labels 0 and 1 have a known positive and negative; label 2 only positives, so its scores (the
    # prior, near 1) would make every cell positive: it is not filled.
    labels = PartialLabels.from_array([[1, -1, 1], [0, -1, -1], [-1, 1, -1], [-1, 0, -1]])
    scores = np.array([[0.5, 0.5, 0.5], [0.5, 0.95, 0.99], [0.02, 0.5, 0.99], [0.95, 0.5, 0.97]])
    out = fill_from_scores(labels, scores, 0.9, 0.05)
    np.testing.assert_allclose(out.to_array(), [[1, -1, 1], [0, 0.95, -1], [0.02, 1, -1], [0.95, 0, -1]], rtol=1e-6)
    np.testing.assert_allclose(out.weight, [[1, 0, 1], [1, 0.95, 0], [0.98, 1, 0], [0.95, 1, 0]], rtol=1e-6)


def test_load_recipe_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_recipe_file(tmp_path / "missing.py")
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(RecipeError, match="must define RECIPE"):
        load_recipe_file(empty)
    # A mistake in the user's script is a user error: one line naming the file and the line.
    broken = tmp_path / "broken.py"
    broken.write_text("x = 1\nRECIPE = Recipe(\n")
    with pytest.raises(RecipeError, match=r"broken.py' is not valid Python: .* \(line 2\)"):
        load_recipe_file(broken)
    broken.write_text("import numpy\nfrom ssl_multilabel.recipes import NoSuchStep\n")
    with pytest.raises(RecipeError, match=r"broken.py' cannot import what it needs: cannot import name 'NoSuchStep'"
                                          r".* \(line 2\)\."):
        load_recipe_file(broken)


# === Data sources ===


def test_image_folder_demo_matches_bundled_images(tmp_path):
    from PIL import Image

    from ssl_multilabel.datasets import load_quickstart
    from ssl_multilabel.recipes import ImageFolder

    data = ImageFolder(image_size=(56, 56), channels=1, test_fraction=0.25).load(0, tmp_path)
    (x_train, y_train), _ = load_quickstart()
    assert len(data.inputs) + len(data.test_inputs) == 600
    assert data.labels.n_samples == len(data.inputs) and data.test_labels.known.any(axis=1).all()
    for path, row_id in zip(data.inputs[:5], data.labels.ids[:5]):
        index = int(Path(path).stem.split("_")[1])
        assert Path(path).name == row_id
        np.testing.assert_array_equal(np.asarray(Image.open(path)), x_train[index, ..., 0])
        truth = y_train.values[index]
        known = data.labels.known[data.labels.ids.index(row_id)]
        np.testing.assert_array_equal(data.labels.values[data.labels.ids.index(row_id)][known], truth[known])


def test_image_folder_missing_images_are_named(tmp_path):
    from ssl_multilabel.recipes import ImageFolder

    PartialLabels.from_array([[1, 0]], ids=["gone.png"]).save(tmp_path / "labels.csv")
    with pytest.raises(FileNotFoundError, match=r"1 of 1 images named in the id column .* e\.g\. '.*gone\.png'"):
        ImageFolder(labels_csv=str(tmp_path / "labels.csv")).load(0, tmp_path)


def test_embeddings_shape_mismatch_is_an_error(tmp_path):
    labels_csv, _, _ = _tiny_embeddings(tmp_path / "in")
    np.save(tmp_path / "e.npy", np.zeros((5, 3)))
    with pytest.raises(RecipeError, match=r"has shape \(5, 3\); expected \(40, d\)"):
        Embeddings(labels_csv=str(labels_csv), embeddings=str(tmp_path / "e.npy")).load(0, tmp_path)


def test_noisy_student_step_keeps_human_cells_and_lets_teacher_cells_take_propagated_ones(tmp_path):
    # Supervised -> Propagate -> NoisyStudent on a small slice of the bundled data. Loose
    # thresholds make the one-epoch teacher pseudo-label cells whatever it predicts.
    recipe = Recipe(
        data=Quickstart(n_train=160, n_test=40, known_fraction=0.2),
        steps=[Supervised(epochs=1, batch_size=32), Propagate(k=5, target_precision=None, positive_threshold=0.6,
                                                               negative_threshold=0.4),
               NoisyStudent(rounds=1, epochs=1, batch_size=16, positive_threshold=0.5, negative_threshold=0.45,
                            patience=None)],
        seed=0,
    )
    run_dir = run_recipe(recipe, tmp_path / "run")
    propagated = PartialLabels.load(run_dir / "steps" / "02_propagate" / "labels.npz")
    final = PartialLabels.load(run_dir / "labels.npz")
    human = propagated.known & (propagated.source == Source.HUMAN)
    was_propagated = propagated.known & (propagated.source == Source.PROPAGATED)
    assert human.any() and was_propagated.any()
    np.testing.assert_array_equal(final.source[human], Source.HUMAN)
    np.testing.assert_array_equal(final.values[human], propagated.values[human])
    # Every earlier fill is either kept as it was or taken by a teacher cell; nothing else appears.
    still = final.known & (final.source == Source.PROPAGATED)
    teacher = final.known & (final.source == Source.TEACHER)
    assert teacher.any()
    assert not (still & ~was_propagated).any()
    np.testing.assert_array_equal(final.values[still], propagated.values[still])
    np.testing.assert_array_equal(was_propagated, still | (was_propagated & teacher))
    np.testing.assert_array_equal(final.known, human | still | teacher)


def test_noisy_student_step_hands_on_no_assumed_negative(tmp_path):
    """Single positive labels: the rounds train on every other cell as a negative (AssumeNegative),
    but the step's table, exported as the completed table, must not record those guesses."""
    recipe = Recipe(
        data=Quickstart(protocol="single_positive", n_train=96, n_test=16),
        steps=[Supervised(epochs=1, batch_size=32),
               NoisyStudent(rounds=1, epochs=1, batch_size=16, patience=None, positive_threshold=0.9,
                            negative_threshold=0.01)],
        seed=0,
    )
    run_dir = run_recipe(recipe, tmp_path / "run")
    given = Quickstart(protocol="single_positive", n_train=96, n_test=16).load(0, tmp_path / "data").labels
    final = PartialLabels.load(run_dir / "labels.npz")
    assert not (given.known & (given.values < 0.5)).any()  # no label has a known negative: all are assumed
    filled = final.known & ~given.known
    # A machine cell is a teacher's confident cell (strict thresholds: few), never an assumed 0.
    np.testing.assert_array_equal(final.source[filled], Source.TEACHER)
    assert filled.sum() < 0.5 * (~given.known).sum()
    np.testing.assert_array_equal(final.known & given.known, given.known)


def test_noisy_student_step_without_validation_rows_holds_none_out(tmp_path, monkeypatch):
    """validation_fraction=0 on the step: noisy_student() must not draw a holdout of its own."""
    import ssl_multilabel.teacher_student.loop as loop

    asked = []
    real = loop.validation_split
    monkeypatch.setattr(loop, "validation_split", lambda labels, fraction, seed: asked.append(fraction) or
                        real(labels, fraction, seed))
    recipe = Recipe(
        data=Quickstart(n_train=48, n_test=8, known_fraction=0.3),
        steps=[Supervised(epochs=1, batch_size=16, validation_fraction=0.0),
               NoisyStudent(rounds=1, epochs=1, batch_size=16, patience=None, validation_fraction=0.0)],
        seed=0,
    )
    run_recipe(recipe, tmp_path / "run")
    assert all(fraction == 0 for fraction in asked)


def test_embeddings_source_names_a_csv_given_as_npy_and_a_truth_table_in_another_order(tmp_path):
    labels_csv, emb, truth_csv = _tiny_embeddings(tmp_path)
    import pandas as pd

    as_text = tmp_path / "emb.csv"
    pd.DataFrame(np.load(emb)).to_csv(as_text, index=False)  # its header 0,1,2,3 is numbers too
    with pytest.raises(RecipeError, match=r"emb.csv' is a text file, not a .npy array; .*pandas.read_csv\(") as info:
        Embeddings(labels_csv=str(labels_csv), embeddings=str(as_text)).load(0, tmp_path)
    # The advised command, run as written, gives the array back (numpy.loadtxt read the header as a row).
    advice = re.search(r"numpy.save\('embeddings.npy', (pandas.read_csv\(.*?\).to_numpy\('float32'\))\)", str(info.value))
    np.testing.assert_allclose(eval(advice.group(1), {"pandas": pd}), np.load(emb), rtol=1e-6)
    truth = PartialLabels.load(truth_csv)
    order = np.r_[1, 0, np.arange(2, truth.n_samples)]
    truth.subset(order).save(tmp_path / "shuffled.csv")
    with pytest.raises(RecipeError, match=r"must list the ids of .* in the same order; its row 1 has id 'r1' where "
                                          r".* has 'r0'"):
        Embeddings(labels_csv=str(labels_csv), embeddings=str(emb), truth_csv=str(tmp_path / "shuffled.csv")).load(0, tmp_path)


def test_resume_refuses_other_code_and_warns_about_another_machine(tmp_path, caplog):
    """The record named the package version only (0.1.0 for every commit), and resume went on with
    whatever code was installed: finished steps of one commit, the rest of another. A changed
    source digest or package is refused; another CPU count is a warning; a finished run has
    nothing to mix."""
    import logging

    from ssl_multilabel.recipes import RecipeError
    from ssl_multilabel.recipes.runner import _versions

    labels_csv, emb, _ = _tiny_embeddings(tmp_path / "in")
    data = Embeddings(labels_csv=str(labels_csv), embeddings=str(emb))
    failing = Recipe(data=data, steps=[CountingFill(name="one", value=1.0), CountingFill(name="two", fail=True)])
    with pytest.raises(RuntimeError, match="boom"):
        run_recipe(failing, tmp_path / "run")
    run_dir = tmp_path / "run"
    meta = json.loads((run_dir / "recipe.json").read_text())
    assert meta["versions"] == _versions()  # recorded: the source digest, CPUs, platform too
    assert len(meta["versions"]["ssl-multilabel source"]) == 16 and int(meta["versions"]["cpus"]) >= 1
    meta["recipe"]["steps"][1]["fail"] = False
    started = dict(meta["versions"])
    for key, value, refused in (("ssl-multilabel source", "0123456789abcdef", True), ("tensorflow", "2.0.0", True),
                                ("cpus", "96", False)):
        meta["versions"] = {**started, key: value}
        (run_dir / "recipe.json").write_text(json.dumps(meta))
        if refused:
            with pytest.raises(RecipeError, match=rf"started with other code or packages .*{key} {value} -> "):
                resume_run(run_dir)
            assert not (run_dir / "runs_two.txt").exists() or (run_dir / "runs_two.txt").read_text() == "1"
        else:
            with caplog.at_level(logging.WARNING, logger="ssl_multilabel"):
                resume_run(run_dir)
            assert any("another machine setting (cpus 96 -> " in r.getMessage() for r in caplog.records)
    assert json.loads((run_dir / "state.json").read_text())["status"] == "finished"
    meta["versions"] = {**started, "ssl-multilabel source": "0123456789abcdef"}
    (run_dir / "recipe.json").write_text(json.dumps(meta))
    resume_run(run_dir)  # finished: nothing to resume, nothing mixed


@dataclasses.dataclass(frozen=True, kw_only=True)
class CtrlCInsideTensorFlow(Step):
    """A test step: Ctrl-C arrives, and the code it interrupts turns it into another error, as a
    TensorFlow step function sometimes does (`SystemError: bad argument to internal function`)."""

    def run(self, ctx, state):
        import os
        import signal

        try:
            os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler before the next line
        except KeyboardInterrupt:
            raise SystemError("Objects/listobject.c:338: bad argument to internal function") from None
        return StepResult()


def test_a_ctrl_c_that_surfaces_as_another_error_is_recorded_as_an_interrupt(tmp_path):
    """1 of 3 Ctrl-C inside the noisy-student step was recorded as a failure (SystemError), with a
    traceback and no resume hint; the run is interrupted, and resume continues it."""
    import signal

    labels_csv, emb, _ = _tiny_embeddings(tmp_path / "in")
    data = Embeddings(labels_csv=str(labels_csv), embeddings=str(emb))
    recipe = Recipe(data=data, steps=[CountingFill(name="one", value=1.0), CtrlCInsideTensorFlow()])
    # Python's own handler, as in a terminal (a job started in the background ignores SIGINT).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_recipe(recipe, tmp_path / "run")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the runner's handler is gone again
    finally:
        signal.signal(signal.SIGINT, before)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["status"] == "interrupted" and [r["name"] for r in state["finished"]] == ["one"]
    # A real error (no Ctrl-C) is still a failure.
    failing = Recipe(data=data, steps=[CountingFill(name="one", value=1.0), CountingFill(name="two", fail=True)])
    with pytest.raises(RuntimeError, match="boom"):
        run_recipe(failing, tmp_path / "run2")
    assert json.loads((tmp_path / "run2" / "state.json").read_text())["status"] == "failed"


def test_a_supervised_step_that_continues_a_model_refuses_settings_of_a_new_one():
    """A second Supervised step trains the first one's model: its dropout, width, backbone ... were
    recorded in recipe.json and silently not applied."""
    with pytest.raises(RecipeError, match=r"Step 'supervised_2' continues the model of step 'supervised', so its "
                                          r"settings of a new model dropout=0.6 \(the model has 0.2\), l2=0.5 "
                                          r"\(the model has 0.0\) would not apply"):
        Recipe(data=Quickstart(), steps=[Supervised(), Supervised(dropout=0.6, l2=0.5)])
    two = Recipe(data=Quickstart(), steps=[Supervised(), Supervised(epochs=3)])  # training settings may differ
    with pytest.raises(RecipeError, match=r"width=0.5 \(the model has 1.0\)"):
        apply_overrides(two, ["supervised_2.width=0.5"])
    apply_overrides(two, ["supervised_2.width=0.5", "supervised_2.from_scratch=true"])  # a new model: applied
    # After a noisy student the model is the student's: not this check's to judge.
    Recipe(data=Quickstart(), steps=[Supervised(), NoisyStudent(), Supervised(dropout=0.5)])


def test_settings_that_build_the_same_model_are_not_refused(tmp_path):
    """freeze=None freezes exactly when pretrained weights are loaded, and a link to the weights file
    is the same file: both were refused as different settings."""
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"")
    (tmp_path / "link.weights.h5").symlink_to(weights)
    first = Supervised(backbone="mobilenet", width=0.75, weights=str(weights))
    Recipe(data=Quickstart(), steps=[first, Supervised(name="more", backbone="mobilenet", width=0.75,
                                                       weights=str(tmp_path / "link.weights.h5"), freeze=True)])
    with pytest.raises(RecipeError, match=r"freeze=False \(the model has True\)"):
        Recipe(data=Quickstart(), steps=[first, Supervised(name="more", backbone="mobilenet", width=0.75,
                                                           weights=str(weights), freeze=False)])


def test_a_step_name_with_a_path_separator_is_refused_when_the_recipe_is_built():
    for name in ("a/b", "a\\b"):
        with pytest.raises(RecipeError, match="Invalid step name"):
            Recipe(data=Quickstart(), steps=[Supervised(name=name)])


def test_a_training_step_on_embeddings_is_refused_before_any_step_runs(tmp_path):
    """Supervised after Propagate on embeddings failed when reached, after Propagate had run."""
    csv, npy, _ = _tiny_embeddings(tmp_path / "data")
    for step in (Supervised(), NoisyStudent()):
        recipe = Recipe(data=Embeddings(labels_csv=str(csv), embeddings=str(npy)), steps=[Propagate(k=4), step])
        with pytest.raises(RecipeError, match=rf"Step '{step.default_name()}' \({type(step).__name__}\) needs image data"):
            run_recipe(recipe, tmp_path / step.default_name())
        assert not (tmp_path / step.default_name() / "steps" / "01_propagate").exists()


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReturnsThis(Step):
    """A custom step returning what `mode` says."""

    mode: str = "reorder"

    def run(self, ctx, state):
        table = state.labels
        if self.mode == "reorder":
            return StepResult(labels=table.subset(np.arange(table.n_samples)[::-1]))
        if self.mode == "subset":
            return StepResult(labels=table.subset(np.arange(3)))
        if self.mode == "none":
            return None
        return StepResult(model="model.keras")


@pytest.mark.parametrize("mode, message", [
    ("reorder", r"returned a table of 40 rows .* \(the same rows in another order\): a step keeps the rows"),
    ("subset", r"returned a table of 3 rows and labels \['a', 'b'\]; the run's has 40 rows"),
    ("none", r"returned NoneType; expected a StepResult"),
    ("model", r"returned a model of type str; expected a Keras model or None"),
])
def test_a_custom_step_returning_another_table_or_no_result_is_one_error_naming_it(tmp_path, mode, message):
    """A reordered table was accepted (later steps paired row i with another row's inputs); a
    shorter one failed later in numpy, and None in the runner's own code, naming no step."""
    csv, npy, _ = _tiny_embeddings(tmp_path / "data")
    recipe = Recipe(data=Embeddings(labels_csv=str(csv), embeddings=str(npy)), steps=[Propagate(k=4), ReturnsThis(mode=mode)])
    with pytest.raises(RecipeError, match=rf"Step 'returns_this' \(ReturnsThis\) {message}"):
        run_recipe(recipe, tmp_path / "run")


def test_a_recipe_file_imports_a_module_of_custom_steps_beside_it(tmp_path, monkeypatch):
    """`python recipe.py` finds `mysteps.py` beside it; `ssl-multilabel run` and `resume` said "No
    module named 'mysteps'", so a killed run could not be resumed from the command line."""
    import sys

    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "mysteps_x1.py").write_text(
        "import dataclasses\nfrom ssl_multilabel.recipes import Step, StepResult\n\n"
        "@dataclasses.dataclass(frozen=True, kw_only=True)\nclass NoteX1(Step):\n"
        "    def run(self, ctx, state):\n        return StepResult(metrics={'note': 1})\n")
    (folder / "myrecipe.py").write_text(
        "from ssl_multilabel.recipes import Quickstart, Recipe\nfrom mysteps_x1 import NoteX1\n\n"
        "RECIPE = Recipe(data=Quickstart(), steps=[NoteX1()])\n")
    monkeypatch.setattr(sys, "path", list(sys.path))  # the test leaves sys.path as it was
    monkeypatch.chdir(tmp_path)  # not the script's folder
    recipe = load_recipe_file(folder / "myrecipe.py")
    assert [type(step).__name__ for step in recipe.steps] == ["NoteX1"]
