"""PartialLabels operations (subset with repeats, restrict, reweight, merge) against numpy references."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssl_multilabel.labels import PartialLabels, Source

HUMAN_SOURCES = (Source.HUMAN, Source.IMPLIED)


def random_table(rng, n, n_labels, ids=None):
    """Known cells of every source, soft values and weights for the machine ones."""
    known = rng.random((n, n_labels)) < 0.6
    source = rng.choice([int(s) for s in Source if s], size=(n, n_labels)).astype(np.uint8)
    machine = ~np.isin(source, HUMAN_SOURCES)
    values = np.where(machine, rng.random((n, n_labels)), rng.integers(0, 2, (n, n_labels))).astype(np.float32)
    weight = np.where(machine, rng.random((n, n_labels)), 1.0).astype(np.float32)
    return PartialLabels(
        values=values, known=known, weight=weight, source=source,
        label_names=[f"l{j}" for j in range(n_labels)], ids=ids if ids is not None else [f"r{i}" for i in range(n)],
    )


@st.composite
def table_pairs(draw):
    n, n_labels = draw(st.integers(1, 8)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    return random_table(rng, n, n_labels), random_table(rng, n, n_labels), rng


def reference_merge(a_known, a_vals, a_w, a_src, b_known, b_vals, b_w, b_src, overwrite):
    """Plain loops over cells: which table each cell comes from."""
    out = [np.array(x) for x in (a_known, a_vals, a_w, a_src)]
    n, n_labels = a_known.shape
    for i in range(n):
        for j in range(n_labels):
            if not b_known[i, j]:
                continue
            if not a_known[i, j] or (overwrite and a_src[i, j] not in HUMAN_SOURCES):
                out[0][i, j], out[1][i, j], out[2][i, j], out[3][i, j] = True, b_vals[i, j], b_w[i, j], b_src[i, j]
    return out


def fields(table):
    return table.known, table.values, table.weight, table.source


# === merge ===


@given(table_pairs(), st.booleans())
def test_merge_never_changes_a_human_cell(pair, overwrite):
    a, b, _ = pair
    merged = a.merge(b, overwrite=overwrite)
    human = a.known & np.isin(a.source, HUMAN_SOURCES)
    for mine, theirs in zip(fields(merged), fields(a)):
        np.testing.assert_array_equal(mine[human], theirs[human])


@given(table_pairs(), st.booleans())
def test_merge_matches_the_cell_by_cell_reference(pair, overwrite):
    a, b, _ = pair
    merged = a.merge(b, overwrite=overwrite)
    expected = reference_merge(*fields(a), *fields(b), overwrite)
    for got, want in zip(fields(merged), expected):
        np.testing.assert_array_equal(got, want)
    assert merged.ids == a.ids and merged.label_names == a.label_names


@given(table_pairs(), st.booleans())
def test_merge_of_some_rows_matches_rows_by_id(pair, overwrite):
    a, b, rng = pair
    rows = rng.permutation(a.n_samples)[: rng.integers(1, a.n_samples + 1)]
    part = b.subset(rows)
    merged = a.merge(part, overwrite=overwrite)
    # Reference: `b` with every row not in `rows` unknown, merged cell by cell.
    b_known = np.zeros_like(b.known)
    b_known[rows] = b.known[rows]
    expected = reference_merge(*fields(a), b_known, b.values, b.weight, b.source, overwrite)
    for got, want in zip(fields(merged), expected):
        np.testing.assert_array_equal(got, want)


def test_merge_precedence_is_the_order_of_the_chain():
    first = PartialLabels.from_array([[1, -1, -1]])
    second = PartialLabels.from_array([[0, 0, -1]]).reweight(0.5)
    third = PartialLabels.from_array([[0, 1, 1]]).reweight(0.25)
    merged = first.merge(second).merge(third)
    np.testing.assert_array_equal(merged.to_array(), [[1, 0, 1]])
    np.testing.assert_array_equal(merged.weight, [[1, 0.5, 0.25]])


def test_merge_with_overwrite_replaces_machine_cells_only():
    table = PartialLabels.from_array([[1, -1]]).fill([[-1, 0.2]], 0.6, Source.PROPAGATED)
    teacher = PartialLabels(values=[[0, 1]], known=[[True, True]], weight=[[0.9, 0.9]], source=[[4, 4]],
                            label_names=table.label_names, ids=table.ids)
    merged = table.merge(teacher, overwrite=True)
    np.testing.assert_array_equal(merged.to_array(), [[1, 1]])  # the human 1 stays, the propagated 0.2 goes
    np.testing.assert_array_equal(merged.source, [[Source.HUMAN, Source.TEACHER]])


def test_merge_with_other_label_names_is_an_error():
    a = PartialLabels.from_array([[1]], label_names=["cat"])
    with pytest.raises(ValueError, match=r"argument `other`. Expected the label names \['cat'\]. Received \['dog'\]"):
        a.merge(PartialLabels.from_array([[1]], label_names=["dog"]))


def test_merge_with_foreign_ids_is_an_error():
    a = PartialLabels.from_array([[1], [0]], ids=["a", "b"])
    with pytest.raises(ValueError, match=r"argument `other`: its ids \['z'\] are not ids of this table"):
        a.merge(PartialLabels.from_array([[1]], ids=["z"]))


def test_merge_with_a_non_table_is_an_error():
    with pytest.raises(TypeError, match=r"argument `other`. Expected a PartialLabels. Received: ndarray"):
        PartialLabels.from_array([[1]]).merge(np.ones((1, 1)))


# === restrict ===


@given(table_pairs())
def test_restrict_matches_numpy(pair):
    table, _, rng = pair
    cells = rng.random(table.known.shape) < 0.5
    out = table.restrict(cells)
    keep = table.known & cells
    np.testing.assert_array_equal(out.known, keep)
    np.testing.assert_array_equal(out.values, np.where(keep, table.values, 0))
    np.testing.assert_array_equal(out.weight, np.where(keep, table.weight, 0))
    np.testing.assert_array_equal(out.source, np.where(keep, table.source, Source.UNKNOWN))


def test_restrict_with_a_mask_of_another_shape_is_an_error():
    with pytest.raises(ValueError, match=r"argument `cells`. Expected a bool array of shape \(1, 2\). Received an array of dtype bool and shape \(2,\)"):
        PartialLabels.from_array([[1, 0]]).restrict(np.array([True, False]))


# === subset ===


@given(table_pairs())
def test_subset_with_repeats_matches_numpy(pair):
    table, _, rng = pair
    rows = rng.integers(0, table.n_samples, rng.integers(0, 2 * table.n_samples + 1))
    out = table.subset(rows, allow_repeats=True)
    for got, full in zip(fields(out), fields(table)):
        np.testing.assert_array_equal(got, full[rows])
    # Ids: a row taken once keeps its id; the k-th occurrence of a repeated row is "<id>#k".
    counts = {r: int((rows == r).sum()) for r in set(rows.tolist())}
    seen = {}
    expected = []
    for r in rows.tolist():
        expected.append(table.ids[r] if counts[r] == 1 else f"{table.ids[r]}#{seen.get(r, 0)}")
        seen[r] = seen.get(r, 0) + 1
    assert list(out.ids) == expected


def test_subset_with_a_repeated_row_is_an_error_unless_allowed():
    table = PartialLabels.from_array([[1], [0]], ids=["a", "b"])
    with pytest.raises(ValueError, match=r"argument `rows`: row 1 \(id 'b'\) appears 2 times.*allow_repeats=True"):
        table.subset([1, 0, 1])


def test_subset_with_an_index_out_of_range_is_an_error():
    with pytest.raises(ValueError, match=r"argument `rows`. Expected indices in \[0, 2\). Received 2 at position 1"):
        PartialLabels.from_array([[1], [0]]).subset([0, 2])


def test_subset_with_float_indices_is_an_error():
    with pytest.raises(ValueError, match=r"argument `rows`. Expected 1-D integer indices.*dtype float64"):
        PartialLabels.from_array([[1], [0]]).subset(np.array([0.0, 1.0]))


# === reweight ===


@given(table_pairs())
def test_reweight_matches_numpy(pair):
    table, _, rng = pair
    weight = rng.random(table.known.shape)
    out = table.reweight(weight)
    np.testing.assert_array_equal(out.weight, np.where(table.known, weight, 0).astype(np.float32))
    for got, want in zip((out.known, out.values, out.source), (table.known, table.values, table.source)):
        np.testing.assert_array_equal(got, want)


def test_reweight_broadcasts_one_weight_per_label():
    out = PartialLabels.from_array([[1, -1], [0, 1]]).reweight([0.5, 0.25])
    np.testing.assert_array_equal(out.weight, [[0.5, 0], [0.5, 0.25]])


def test_reweight_ignores_weights_of_unknown_cells():
    out = PartialLabels.from_array([[1, -1]]).reweight([[1.0, 7.0]])
    np.testing.assert_array_equal(out.weight, [[1, 0]])


def test_reweight_out_of_range_on_a_known_cell_is_an_error():
    with pytest.raises(ValueError, match=r"argument `weight`: row 0, column 1 \(a known cell\) has 1.5; expected a weight in \[0, 1\]"):
        PartialLabels.from_array([[1, 0]]).reweight([[1.0, 1.5]])


def test_reweight_of_another_shape_is_an_error():
    with pytest.raises(ValueError, match=r"argument `weight`. Expected numbers that broadcast to \(1, 2\). Received shape \(3,\)"):
        PartialLabels.from_array([[1, 0]]).reweight([1.0, 1.0, 1.0])


# === The constructor ===


def test_constructor_is_keyword_only():
    with pytest.raises(TypeError, match="positional"):
        PartialLabels(np.ones((1, 1)), np.ones((1, 1), bool), np.ones((1, 1)), [[1]], ["a"], ["x"])


def test_fill_keeps_at_most_one_positive_per_exclusive_group():
    table = PartialLabels.from_array(
        [[-1, -1, -1], [1, -1, -1], [-1, -1, -1], [-1, -1, 0]], label_names=["cat", "dog", "bird"],
        exclusive_groups=[["cat", "dog"]],
    )
    assert table.known[1].tolist() == [True, True, False]  # dog: a negative implied by the known cat
    filled = table.fill(np.array([[1.0, 1.0, 1.0],   # two positives in the group: both stay unknown
                                  [-1, -1, 1.0],     # beside a known positive: only the free label fills
                                  [0.9, 0.2, 0.0],   # one positive: fine
                                  [0.4, 0.7, -1]]),  # one positive (0.7 >= 0.5): fine
                        0.8)
    expected = np.array([[-1, -1, 1], [1, 0, 1], [0.9, 0.2, 0], [0.4, 0.7, 0]], np.float32)
    np.testing.assert_array_equal(filled.to_array(), expected)
    assert filled.source[0, 2] == Source.PROPAGATED and filled.source[1, 1] == Source.IMPLIED
