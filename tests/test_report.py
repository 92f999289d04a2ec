"""report.html: self-contained, every section, numbers checked against scikit-learn, and it loads
in headless Chromium with every image decoded and no console message."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ssl_multilabel.labels import PartialLabels, Source
from ssl_multilabel.recipes import Embeddings, Evaluate, Propagate, Recipe, Report, Step, StepResult, run_recipe

sys.path.insert(0, str(Path(__file__).parent))
from test_recipe import _tiny_embeddings  # noqa: E402


@dataclasses.dataclass(frozen=True, kw_only=True)
class FakeImageTraining(Step):
    """Writes what a training + image evaluation step writes: history, predictions, examples."""

    def run(self, ctx, state):
        from ssl_multilabel.metrics import evaluate

        rng = np.random.default_rng(0)
        n, n_labels = 12, state.labels.n_labels
        y_true = np.where(rng.random((n, n_labels)) < 0.7, (rng.random((n, n_labels)) < 0.5).astype(np.float32), -1.0)
        y_true[:2] = [[1, 0], [0, 1]]
        y_score = rng.random((n, n_labels)).astype(np.float32)
        summary, table = evaluate(y_true, y_score, label_names=state.labels.label_names)
        table.to_csv(ctx.path("per_label.csv"), index=False)
        np.savez(ctx.path("predictions.npz"), y_true=y_true, y_score=y_score)
        images = rng.integers(0, 256, size=(n, 8, 8, 1), dtype=np.uint8)
        np.savez(ctx.path("examples.npz"), images=images, y_true=y_true, y_score=y_score)
        ctx.save_json("history.json", {"loss": [0.9, 0.6, 0.5], "val_loss": [0.8, 0.7, 0.65],
                                       "mAP": [0.5, 0.6, 0.7], "val_mAP": [0.4, 0.5, 0.55]})
        filled = state.labels.fill(np.where(y_score.mean() > 2, 0, np.full(state.labels.known.shape, 0.97)), 0.97,
                                   Source.TEACHER)
        return StepResult(labels=filled, metrics=summary, info={"history": "history.json", "split": "test"})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    labels_csv, emb, truth = _tiny_embeddings(folder / "in")
    recipe = Recipe(
        name="report-test",
        data=Embeddings(labels_csv=str(labels_csv), embeddings=str(emb), truth_csv=str(truth)),
        steps=[Propagate(k=4), Evaluate(split="hidden"),
               FakeImageTraining(), Report()],
    )
    return run_recipe(recipe, folder / "run")


def test_report_has_every_section_and_is_self_contained(run_dir):
    page = (run_dir / "report.html").read_text()
    for heading in ("Metrics and per-label average precision", "Label coverage before and after each fill",
                    "Precision-recall curves", "Confidence of filled cells (pseudo-labels)", "Training curves",
                    "Examples: predicted and known labels"):
        assert f"<h2>{heading}</h2>" in page
    sources = re.findall(r'<img[^>]*src="([^"]*)"', page)
    # One confidence histogram per step that filled at least one cell.
    n_fills = sum(np.load(p)["weight"].size > 0 for p in sorted(run_dir.glob("steps/*/filled.npz")))
    assert n_fills >= 1
    # AP bars, AP against known positives, 2 coverage plots, 2 PR grids, the histograms, 1 training plot, 12 examples,
    # known positives and suggested cells per label (what to label next)
    assert len(sources) == 1 + 1 + 2 + 2 + n_fills + 1 + 12 + 1
    assert "<h2>What to label next</h2>" in page
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_report_per_label_ap_matches_sklearn(run_dir):
    from sklearn.metrics import average_precision_score

    state = json.loads((run_dir / "state.json").read_text())
    evaluate = next(r for r in state["finished"] if r["name"] == "fake_image_training")
    with np.load(run_dir / evaluate["dir"] / "predictions.npz") as npz:
        y_true, y_score = npz["y_true"], npz["y_score"]
    page = (run_dir / "report.html").read_text()
    # The last per-label table is the one of the last evaluation (fake_image_training).
    table = page.rsplit("Per-label table of", 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td class=\"l\">([^<]*)</td>(.*?)</tr>", table)
    assert [name for name, _ in rows] == ["a", "b"]
    for j, (_, cells) in enumerate(rows):
        known = y_true[:, j] >= 0
        expected = average_precision_score(y_true[known, j] >= 0.5, y_score[known, j])
        values = re.findall(r"<td[^>]*>([^<]*)</td>", cells)
        assert values[4] == f"{expected:.4f}"  # columns: n_known, n_pos, n_neg, scored, AP, ...


def _status_line(page: str) -> str:
    return re.search(r"status <b>([^<]*)</b> \((\d+) of (\d+) steps", page).group(0)


def test_report_status_is_finished_when_written_by_the_last_step_and_failed_with_its_error(run_dir, tmp_path):
    from ssl_multilabel.report import write_report

    # Written by the recipe's own Report step (the last of 4): the 3 steps before it had finished.
    assert _status_line((run_dir / "report.html").read_text()) == "status <b>finished</b> (3 of 4 steps"
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    state = json.loads((copy / "state.json").read_text())
    state = {"finished": state["finished"][:2], "status": "running"}  # stopped in step 3, or failed there
    (copy / "state.json").write_text(json.dumps(state))
    assert _status_line(write_report(copy).read_text()) == "status <b>running</b> (2 of 4 steps"
    (copy / "state.json").write_text(json.dumps(state | {"status": "failed", "error": "RuntimeError: disk full"}))
    assert _status_line(write_report(copy).read_text()) == "status <b>failed (RuntimeError: disk full)</b> (2 of 4 steps"


def test_report_command_rewrites_the_report(run_dir, capsys):
    from ssl_multilabel.cli import main

    (run_dir / "report.html").unlink()
    assert main(["report", str(run_dir), "--title", "Mine"]) == 0
    assert "<title>Mine</title>" in (run_dir / "report.html").read_text()


_CHECK = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message || e.type)); }, true);
window.addEventListener('load', function () {
  var images = [].slice.call(document.images);
  var bad = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  var div = document.createElement('div');
  div.id = 'report-check';
  div.textContent = 'images=' + images.length + ' bad=' + bad + ' errors=' + window.__errors.length;
  document.body.appendChild(div);
});
</script>"""


def test_report_loads_in_headless_chromium(run_dir, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    page = (run_dir / "report.html").read_text()
    checked = tmp_path / "checked.html"
    # The check script goes first in <head> so it sees every image error event.
    checked.write_text(page.replace("<head>", "<head>" + _CHECK, 1))
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom", checked.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'id="report-check">images=(\d+) bad=(\d+) errors=(\d+)<', proc.stdout)
    assert found, proc.stdout[-2000:]
    n_images, bad, errors = map(int, found.groups())
    assert n_images == len(re.findall(r"<img ", page)) and n_images >= 15
    assert bad == 0 and errors == 0
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []


def test_report_metrics_table_says_not_measurable_when_no_label_was_scored(tmp_path):
    from ssl_multilabel.metrics import evaluate
    from ssl_multilabel.report import _section_metrics

    y_true = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, -1.0]])  # each label: one class only among its known cells
    none_scored, _ = evaluate(y_true, np.full(y_true.shape, 0.5), label_names=["a", "b"])
    assert none_scored["n_labels_scored"] == 0 and none_scored["mAP"] == 0.0  # the documented convention
    scored, _ = evaluate(np.array([[1.0], [0.0]]), np.array([[0.9], [0.1]]), label_names=["a"])
    html = _section_metrics(tmp_path, [
        {"name": "e1", "dir": "none", "metrics": none_scored, "info": {"split": "test", "threshold": 0.5}},
        {"name": "e2", "dir": "none", "metrics": scored, "info": {"split": "test", "threshold": 0.3}}])
    rows = re.findall(r"<tr><td class=\"l\">(e\d)</td>(.*?)</tr>", html)
    cells = {name: re.findall(r"<td[^>]*>([^<]*)</td>", rest) for name, rest in rows}
    # columns: split, threshold (of the F1, precision and recall columns), mAP, AUC, macro_F1, micro_F1,
    # macro_precision, macro_recall, n_known_cells
    assert "<th class=\"\">threshold</th>" in html and cells["e1"][1] == "0.5000" and cells["e2"][1] == "0.3000"
    assert [cells["e1"][i] for i in (2, 3, 4, 6, 7)] == ["not measurable"] * 5  # means over scored labels
    assert cells["e1"][5] == f"{none_scored['micro_F1']:.4f}" and cells["e1"][8] == "5"  # over cells: still shown
    assert cells["e2"][2] == "1.0000"  # sklearn: AP of a perfect ranking


@dataclasses.dataclass(frozen=True, kw_only=True)
class TeacherOverPropagation(Step):
    """Replaces the first 3 propagated cells by teacher cells of the opposite value; fills nothing new."""

    def run(self, ctx, state):
        table = state.labels
        rows, cols = np.nonzero(table.source == Source.PROPAGATED)
        values, weight, source = table.values.copy(), table.weight.copy(), table.source.copy()
        values[rows[:3], cols[:3]] = 1.0 - np.round(values[rows[:3], cols[:3]])
        weight[rows[:3], cols[:3]] = 0.8
        source[rows[:3], cols[:3]] = Source.TEACHER
        return StepResult(labels=dataclasses.replace(table, values=values, weight=weight, source=source))


def test_a_step_that_replaces_machine_cells_shows_them_as_changed(tmp_path):
    labels_csv, emb, truth = _tiny_embeddings(tmp_path / "in")
    recipe = Recipe(data=Embeddings(labels_csv=str(labels_csv), embeddings=str(emb)),
                    steps=[Propagate(k=4), TeacherOverPropagation(), Report()])
    run = run_recipe(recipe, tmp_path / "run")
    with np.load(next(run.glob("steps/02_*/filled.npz"))) as npz:
        np.testing.assert_array_equal(npz["weight"], np.float32([0.8, 0.8, 0.8]))
        assert set(npz["source"].tolist()) == {int(Source.TEACHER)}
    page = (run / "report.html").read_text()
    assert "no cell filled" not in page


def test_label_names_the_plot_font_lacks_make_no_warning_flood(tmp_path):
    import warnings

    labels_csv, emb, truth = _tiny_embeddings(tmp_path / "in")
    for path in (labels_csv, truth):
        table = PartialLabels.load(path)
        PartialLabels.from_array(table.to_array(), ["狗 (a dog, a rather long label name)", "日没"], table.ids).save(path)
    recipe = Recipe(data=Embeddings(labels_csv=str(labels_csv), embeddings=str(emb), truth_csv=str(truth)),
                    steps=[Propagate(k=4), Evaluate(split="hidden"), Report()])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = run_recipe(recipe, tmp_path / "run")
    assert not [w for w in caught if "Glyph" in str(w.message)]
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "狗 (a dog, a rather long label name)" in page and "日没" in page  # the tables keep the names whole


def test_report_step_table_says_not_measurable_too(tmp_path):
    from ssl_multilabel.metrics import evaluate
    from ssl_multilabel.report import _section_run

    y_true = np.array([[1.0, 0.0], [1.0, 0.0]])  # no label has both classes: nothing is scored
    none_scored, _ = evaluate(y_true, np.full(y_true.shape, 0.5), label_names=["a", "b"])
    scored, _ = evaluate(np.array([[1.0], [0.0]]), np.array([[0.9], [0.1]]), label_names=["a"])
    records = [{"index": 0, "name": "e1", "type": "Evaluate", "seconds": 1.0, "metrics": none_scored},
               {"index": 1, "name": "e2", "type": "Evaluate", "seconds": 1.0, "metrics": scored}]
    html = _section_run({}, records, 2, "finished")
    row_1 = re.search(r"1\. e1</td>(.*?)</tr>", html).group(1)
    row_2 = re.search(r"2\. e2</td>(.*?)</tr>", html).group(1)
    assert "mAP=not measurable" in row_1 and "AUC=not measurable" in row_1 and "mAP=0.0000" not in row_1
    assert "mAP=1.0000" in row_2  # sklearn: AP of a perfect ranking


def test_filled_cells_confidence_is_their_weight_or_for_a_soft_value_its_rounding():
    from ssl_multilabel.report import _fill_confidence, _metric

    weight = np.array([1.0, 1.0, 0.8, 0.6, 1.0])
    value = np.array([0.3, 0.75, 1.0, 0.0, 1.0])  # two soft targets at weight 1 (init_model), three hard fills
    np.testing.assert_allclose(_fill_confidence(weight, value), [0.7, 0.75, 0.8, 0.6, 1.0])
    # A validation mAP of 0 is no score: AP is > 0 for any label with a known positive.
    assert _metric({"best_val_mAP": 0.0}, "best_val_mAP") == "not measurable"
    assert _metric({"best_val_mAP": 0.25}, "best_val_mAP") == 0.25


def test_report_step_table_says_which_epoch_a_figure_is_and_when_the_teacher_was_kept():
    # The key figures showed a discarded student's last-epoch loss as if it were the kept model's.
    from ssl_multilabel.report import _section_run

    records = [{"index": 0, "name": "noisy_student", "type": "NoisyStudent", "seconds": 1.0,
                "metrics": {"loss": 3.8952, "val_mAP": 0.5771, "best_val_mAP": 0.6292, "round_kept": 0}},
               {"index": 1, "name": "supervised", "type": "Supervised", "seconds": 1.0,
                "metrics": {"loss": 0.25, "best_val_mAP": 0.8}}]
    html = _section_run({}, records, 2, "finished")
    row_1 = re.search(r"1\. noisy_student</td>(.*?)</tr>", html).group(1)
    row_2 = re.search(r"2\. supervised</td>(.*?)</tr>", html).group(1)
    assert "last-epoch loss=3.8952" in row_1 and "best val mAP=0.6292" in row_1 and "the teacher was kept" in row_1
    assert "last-epoch loss=0.2500" in row_2 and "teacher" not in row_2


def test_per_label_curve_axis_has_numbers_when_its_range_is_within_one_decade(tmp_path, monkeypatch):
    """Labels with 18 to 36 known positives: a log axis within one decade has no major tick, and the
    figure showed no number on its x axis. Reference: the tick labels drawn inside the view are the
    numbers at their positions."""
    from ssl_multilabel import report

    counts = [18, 25, 36]
    y = np.zeros((40, 3))
    for j, count in enumerate(counts):
        y[:count, j] = 1.0
    PartialLabels.from_array(y, label_names=["a", "b", "c"]).save(tmp_path / "labels.npz")
    (tmp_path / "per_label.csv").write_text("label,AP\na,0.5\nb,0.6\nc,0.7\n")
    figures = []
    monkeypatch.setattr(report, "_png", lambda fig: figures.append(fig) or "")
    report._section_labels_needed(tmp_path, [{"labels": "labels.npz"}], [{"name": "evaluate", "dir": "."}])
    [fig] = figures
    ax = fig.axes[0]
    fig.canvas.draw()
    low, high = ax.get_xlim()
    shown = [(tick.get_loc(), tick.label1.get_text()) for tick in ax.xaxis.get_major_ticks() + ax.xaxis.get_minor_ticks()
             if low <= tick.get_loc() <= high and tick.label1.get_text()]
    assert len(shown) >= 2
    assert all(float(text.replace("\u2212", "-")) == pytest.approx(loc) for loc, text in shown)
    report._plt().close(fig)


def test_example_grid_predicts_at_the_evaluations_threshold(tmp_path):
    """The grid read a `threshold` from the metrics, which hold none: an `Evaluate(threshold=0.3)`
    grid still showed the labels scoring >= 0.5. Reference: the scores against 0.3 by hand."""
    from ssl_multilabel.report import _section_examples

    np.savez(tmp_path / "examples.npz", images=np.zeros((1, 4, 4, 3), np.uint8),
             y_true=np.array([[1.0, 0.0, -1.0]]), y_score=np.array([[0.4, 0.2, 0.6]]))
    html = _section_examples(tmp_path, [{"name": "evaluate", "dir": ".", "metrics": {},
                                         "info": {"threshold": 0.3}}], ["a", "b", "c"])
    assert "score &ge; 0.3)" in html
    predicted = re.search(r"predicted: (.*?)</div>", html).group(1)
    assert re.findall(r">(\w) [\d.]+<", predicted) == ["c", "a"]  # 0.6 and 0.4 (by score), not b's 0.2
    assert "missed: " not in html  # a, the known positive, is predicted


def test_training_curve_marks_where_each_noisy_student_round_starts(tmp_path, monkeypatch):
    """Two rounds' histories are joined into one: a line joined two students on one 'epoch' axis."""
    from ssl_multilabel import report

    (tmp_path / "history.json").write_text(json.dumps({"loss": [5, 4, 3, 6, 5], "val_mAP": [0.1, 0.2, 0.3, 0.2, 0.25]}))
    figures = []
    monkeypatch.setattr(report, "_png", lambda fig: figures.append(fig) or "")
    report._section_training(tmp_path, [{"name": "noisy_student", "dir": ".",
                                         "info": {"history": "history.json", "round_epochs": [3, 2]}}])
    [fig] = figures
    for ax in fig.axes:
        lines = [line.get_xdata() for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert [list(x) for x in lines] == [[3.5, 3.5]]  # between epoch 3 (round 1) and 4 (round 2)
        assert "2 rounds" in ax.get_xlabel()
    report._plt().close(fig)


def test_precision_recall_grid_of_many_labels_draws_the_first_40(tmp_path, monkeypatch):
    """300 labels drew 300 shared axes, each setting its limits (minutes), on a figure 10,000 px tall."""
    from ssl_multilabel import report

    rng = np.random.default_rng(0)
    y_true = (rng.random((30, 120)) < 0.5).astype(float)
    np.savez(tmp_path / "predictions.npz", y_true=y_true, y_score=rng.random((30, 120)))
    figures = []
    monkeypatch.setattr(report, "_png", lambda fig: figures.append(fig) or "")
    html = report._section_pr(tmp_path, [{"name": "evaluate", "dir": ".", "info": {"split": "test"}}],
                              [f"l{j}" for j in range(120)])
    [fig] = figures
    drawn = [ax for ax in fig.axes if ax.axison]
    assert len(drawn) == 40 and [ax.get_title() for ax in drawn] == [f"l{j}" for j in range(40)]
    assert all(ax.get_xlim() == (0, 1) and ax.get_ylim() == (0, 1.02) for ax in drawn)
    assert "The first 40 of 120 labels" in html
    report._plt().close(fig)


def test_micro_means_over_no_known_cell_are_not_measurable(tmp_path):
    """With no known cell (every cell of the evaluation unknown) the table printed micro_F1 0.0000."""
    from ssl_multilabel.metrics import evaluate
    from ssl_multilabel.report import _section_metrics

    nothing, _ = evaluate(np.full((3, 2), -1.0), np.full((3, 2), 0.5), label_names=["a", "b"])
    assert nothing["n_known_cells"] == 0 and nothing["micro_F1"] == 0.0  # the documented convention
    html = _section_metrics(tmp_path, [{"name": "e1", "dir": "none", "metrics": nothing, "info": {"split": "test"}}])
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", re.search(r"<tr><td class=\"l\">e1</td>(.*?)</tr>", html).group(1))
    assert cells[2:8] == ["not measurable"] * 6 and cells[8] == "0"  # mAP ... macro_recall; n_known_cells


def test_what_to_label_next_with_every_cell_labeled_says_so_without_a_budget_warning(tmp_path, caplog):
    """Every cell known: the report's own budget of 50 warned "only 0 cells are unknown", and the
    section said there were no scores to rank by."""
    import logging

    from ssl_multilabel.report import _section_label_next

    labels_csv, emb, truth = _tiny_embeddings(tmp_path / "in")
    run = run_recipe(Recipe(data=Embeddings(labels_csv=str(truth), embeddings=str(emb)), steps=[Propagate(k=4)]),
                     tmp_path / "run")
    with caplog.at_level(logging.WARNING):
        html = _section_label_next(run)
    assert "Every cell of the table is labeled: there is no cell to suggest." in html
    assert "budget=" not in caplog.text
