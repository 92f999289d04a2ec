"""B2's cost model (docs/scale.md): fitted constants against hand-computed closed forms."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("propagation_scale", ROOT / "benchmarks" / "propagation_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TABLE = """<!-- BEGIN B2 -->
| n | index | recall@10 | graph + diffusion + fill (s) | CPU, all threads (s) | graph (s) | diffusion, all solves (s) | CG iterations | peak RSS (GB) | index (GB) | hidden-cell mAP |
|---|---|---|---|---|---|---|---|---|---|---|
| 1000000 | ivfpq nlist=4000 | 0.99 | 300 | 500 | 200 | 90 | 13+13 | 4 | 0.03 | 1 |
| 10000 | flat | 1 | 2 | 3 | 1.28 | 0.5 | 14+14+14 | 0.5 | 0.002 | 1 |
<!-- END B2 -->
"""


def test_cost_model_constants_match_closed_forms(scale, tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(TABLE)
    rows = scale.read_b2_table(doc)
    assert [row["n"] for row in rows] == [1e6, 1e4]
    model = scale.cost_model(rows)
    # graph: 200 s / (n^1.5 d) for IVF, 1.28 s / (n^2 d) for exact; diffusion: 90 s / (n P (k + 2L))
    # with P = the CG iterations of every solve + 4 smoothing products per solve (13 + 13 + 8 = 34 for two
    # solves, 14 + 14 + 14 + 12 = 54 for three).
    assert model["g"] == pytest.approx(200 / (1e6**1.5 * 64))
    assert model["e"] == pytest.approx(1.28 / (1e4**2 * 64))
    assert model["f"] == pytest.approx(max(90 / (1e6 * 34 * 50), 0.5 / (1e4 * 54 * 50)))
    assert model["bytes_per_point"] == pytest.approx(4 * 1024**3 / 1e6)


def test_cost_model_block_keeps_measured_and_projected_apart(scale, tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(TABLE)
    block = scale.render_cost_model(scale.read_b2_table(doc))
    measured, projected = block.split("**Projected**")
    assert "| measured |" in measured and "projected" not in measured.split("Fitted")[0]
    assert "| projected |" in projected and "| measured |" not in projected
    assert block.startswith(scale.MODEL_BEGIN) and block.endswith(scale.MODEL_END)
