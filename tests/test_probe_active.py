"""Ranking an index with a workspace probe (`probe.active.rank_vectors`): the float16 scan copy picks a shortlist
that is re-scored in float32, so it returns exactly the top rows and scores of the float32 scan, and uncertain
rows within the float16 bound of the exact ones; labelled rows are left out; a filtered subset is ranked alone."""

from __future__ import annotations

import numpy as np
import pytest

from spectraclip.probe.active import fit_linear_probe, rank_vectors, rank_vectors_softmax, scan_copy


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(70_000, 48)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = ["positive" if v[0] > 0.1 else "negative" for v in x[:40]]
    probe = fit_linear_probe(x[:40], labels, positive="positive", prior=np.eye(48)[0])
    return x, probe


def _reference(probe, x, rows, exclude, k, u):
    """The definition, written plainly: p = softmax(x W^T + b)[positive], margin = top-1 minus top-2."""
    ids = np.arange(len(x)) if rows is None else np.sort(rows)
    ids = ids[~np.isin(ids, exclude)]
    p = probe.proba(x[ids])
    pos = p[:, probe.positive]
    margin = np.abs(p[:, 1] - p[:, 0])
    return ids[np.argsort(-pos, kind="stable")[:k]], ids[np.argsort(margin, kind="stable")[:u]], pos, ids


@pytest.mark.parametrize("with_rows", [False, True])
def test_half_copy_ranks_exactly_as_float32(data, with_rows):
    x, probe = data
    scan = scan_copy(x)
    assert scan is not None and scan.dtype.is_floating_point and scan.element_size() == 2
    rows = np.random.default_rng(0).choice(len(x), 30_000, replace=False) if with_rows else None
    exclude = list(range(40))
    exact = rank_vectors(probe, x, rows, k=50, n_uncertain=20, exclude=exclude)
    fast = rank_vectors(probe, x, rows, k=50, n_uncertain=20, exclude=exclude, scan=scan)
    top, unc, pos, ids = _reference(probe, x, rows, exclude, 50, 20)
    assert fast.scored == exact.scored == len(ids)
    np.testing.assert_array_equal(fast.top_rows, exact.top_rows)
    # the uncertain rows: the scan's nearest to the boundary, each within the float16 bound of the exact nearest
    z = lambda rows_: np.log(probe.proba(x[rows_])[:, 1] / probe.proba(x[rows_])[:, 0])  # noqa: E731
    d = probe.coef[1] - probe.coef[0]
    bound = 2 * (2.0**-9 * np.linalg.norm(d) * 1.01 + 2.0**-10 * (2 + abs(probe.intercept[1])))
    assert np.abs(z(fast.uncertain_rows)).max() <= np.abs(z(exact.uncertain_rows)).max() + bound
    assert len(set(fast.uncertain_rows) & set(exact.uncertain_rows)) >= 10  # and mostly the same rows
    got = {int(i): p for i, p in zip(fast.uncertain_rows, fast.uncertain_scores, strict=True)}
    np.testing.assert_allclose(list(got.values()), probe.proba(x[list(got)])[:, 1], atol=1e-5)  # exact scores
    np.testing.assert_allclose(fast.top_scores, exact.top_scores, rtol=0, atol=1e-6)
    # and both are the definition: the same rows as a plain softmax ranking (scores to float32 rounding)
    assert set(fast.top_rows) == set(top) and set(exact.uncertain_rows) == set(unc)
    at = {int(i): j for j, i in enumerate(ids)}
    np.testing.assert_allclose(fast.top_scores, pos[[at[int(i)] for i in fast.top_rows]], atol=1e-5)
    assert not set(fast.top_rows) & set(exclude) and not set(fast.uncertain_rows) & set(exclude)
    assert (np.diff(fast.top_scores) <= 0).all()
    if rows is not None:
        assert set(fast.top_rows) <= set(rows.tolist())


def test_softmax_form_agrees_and_small_or_huge_indexes_scan_float32(data):
    x, probe = data
    a = rank_vectors(probe, x, k=10, n_uncertain=5, exclude=range(40))
    b = rank_vectors_softmax(probe, x, k=10, n_uncertain=5, exclude=range(40))
    np.testing.assert_array_equal(a.top_rows, b.top_rows)
    assert set(a.uncertain_rows) == set(b.uncertain_rows)
    assert scan_copy(x[:1000]) is None  # small: a float32 scan is as fast
    assert scan_copy(x, max_bytes=1024) is None  # over the memory budget: float32 in blocks


def test_everything_excluded_or_fewer_rows_than_k(data):
    x, probe = data
    r = rank_vectors(probe, x, np.arange(30), k=50, n_uncertain=20, exclude=range(40), scan=scan_copy(x))
    assert r.scored == 0 and len(r.top_rows) == 0 and len(r.uncertain_rows) == 0
    r = rank_vectors(probe, x, np.arange(35, 45), k=50, n_uncertain=20, exclude=range(40), scan=scan_copy(x))
    assert r.scored == 5 and sorted(r.top_rows) == [40, 41, 42, 43, 44] and len(r.uncertain_rows) == 5
