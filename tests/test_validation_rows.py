"""Every step of a run holds out the same validation rows (issue "Honest quality").

Each step is seeded by its position (`seed * 1000 + index`); the validation split must not be, or a
later step (NoisyStudent, Propagate, a second Supervised) validates the teacher on rows it trained
on, and the noisy student's best-round rule keeps the teacher for its inflated score.
"""

import dataclasses
import json

import numpy as np

from ssl_multilabel.labels import PartialLabels
from ssl_multilabel.recipes import Embeddings, Recipe, Step, StepResult, run_recipe
from ssl_multilabel.labels import validation_split


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecordValidationRows(Step):
    """A test step: writes the validation rows a training step of this position would hold out."""

    def run(self, ctx, state):
        _, val = validation_split(state.labels, 0.2, ctx.split_seed)
        (ctx.run_dir / f"val_{ctx.index}.json").write_text(json.dumps(val.tolist()))
        return StepResult()


def test_every_step_of_a_run_holds_out_the_rows_of_the_first(tmp_path):
    rng = np.random.default_rng(0)
    truth = (rng.random((60, 3)) < 0.5).astype(float)
    known = np.where(rng.random(truth.shape) < 0.5, truth, -1.0)
    known[0] = truth[0]  # at least one labeled row
    PartialLabels.from_array(known, ids=[f"r{i}" for i in range(60)]).save(tmp_path / "labels.csv")
    np.save(tmp_path / "emb.npy", rng.normal(size=(60, 4)))
    data = Embeddings(labels_csv=str(tmp_path / "labels.csv"), embeddings=str(tmp_path / "emb.npy"))
    steps = [RecordValidationRows(name=f"s{i}") for i in range(3)]
    run = run_recipe(Recipe(data=data, steps=steps, seed=4), tmp_path / "run")

    rows = [json.loads((run / f"val_{i}.json").read_text()) for i in range(3)]
    labeled = np.flatnonzero((known >= 0).any(axis=1))
    # Reference: the first step's split, computed directly (20 % of the labeled rows).
    expected = np.sort(np.random.default_rng(4 * 1000).permutation(labeled)[: round(0.2 * len(labeled))])
    assert rows[0] == rows[1] == rows[2] == expected.tolist()


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecordValidationIds(Step):
    """A test step: writes the ids of the rows a training step would hold out for validation."""

    def run(self, ctx, state):
        _, val = validation_split(state.labels, 0.1, ctx.split_seed)
        (ctx.run_dir / "val_ids.json").write_text(json.dumps([state.labels.ids[i] for i in val]))
        return StepResult()


def test_a_label_whose_only_positive_is_a_validation_row_is_named(tmp_path, caplog):
    """The data's check reads the whole table, so a label with one positive passed it; when that
    row is held out for validation, training sees no positive of it, and a warning says so."""
    import logging

    from PIL import Image

    from ssl_multilabel.recipes import ImageFolder, Supervised

    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    ids = [f"p{i}.png" for i in range(40)]
    for name in ids:
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / "photos" / name)
    values = np.c_[rng.integers(0, 2, 40), np.zeros(40)].astype(float)
    values[:2, 0] = [0, 1]
    csv = tmp_path / "labels.csv"
    PartialLabels.from_array(values, ["common", "rare"], ids).save(csv)

    def data():
        return ImageFolder(labels_csv=str(csv), image_dir=str(tmp_path / "photos"), image_size=(8, 8), channels=1,
                           test_fraction=0.2)

    run = run_recipe(Recipe(data=data(), steps=[RecordValidationIds()], seed=0), tmp_path / "split")
    val_ids = json.loads((run / "val_ids.json").read_text())
    values[ids.index(val_ids[0]), 1] = 1.0  # the rare label's one positive, in a validation row
    PartialLabels.from_array(values, ["common", "rare"], ids).save(csv)
    with caplog.at_level(logging.WARNING, logger="ssl_multilabel"):
        run_recipe(Recipe(data=data(), steps=[Supervised(epochs=1, patience=None, validation_fraction=0.1)], seed=0),
                   tmp_path / "run")
    said = [r.getMessage() for r in caplog.records if "validation rows" in r.getMessage()]
    assert len(said) == 1 and "every known positive of 'rare' is among the" in said[0] and "'common'" not in said[0]
