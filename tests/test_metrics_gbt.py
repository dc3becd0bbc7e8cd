"""`benchmark.metrics.gbt` against scikit-learn's own GradientBoostingClassifier, same inputs.

Compared: feature_importances_ (to 1e-12 relative: only the final average over trees is summed in
another order; observed equal to the last bit), train and test accuracy (exactly), and the state
of the caller's RandomState afterwards (sklearn draws one seed per tree). Inputs cover what makes
sklearn's result depend on its sort order: tied values (quantised codes), duplicated rows with
different labels (dSprites' symmetric shapes), constant and duplicated columns, plus binary and
many-class factors and tiny node sizes.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from benchmark.metrics import gbt
from benchmark.metrics.dci import fit_gbt

pytestmark = pytest.mark.skipif(not gbt.available(), reason="sklearn version not ported / no numba")


def sklearn_fit(x, y, x_test, y_test, state, n_estimators):
    model = GradientBoostingClassifier(random_state=state, n_estimators=n_estimators).fit(x, y)
    return (np.abs(model.feature_importances_), float(np.mean(model.predict(x) == y)),
            float(np.mean(model.predict(x_test) == y_test)))


def make(kind: str, seed: int):
    r = np.random.RandomState(seed)
    n, d, k = {"continuous": (600, 6, 5), "binary": (500, 5, 2), "many": (700, 4, 23),
               "quantised": (600, 5, 4), "symmetric": (600, 5, 6), "columns": (400, 6, 3),
               "tiny": (30, 3, 3)}[kind]
    f = r.randint(0, k, n + n // 2)
    z = r.randn(n + n // 2, d)
    z[:, 0] += 0.7 * f
    z[:, 1] += np.sin(f)
    if kind == "quantised":
        z = np.round(z * 2) / 2  # many ties inside every node
    if kind == "symmetric":
        # a third of the rows copy another row with another label (identical images)
        src = r.randint(0, n + n // 2, (n + n // 2) // 3)
        z[: len(src)] = z[src]
    if kind == "columns":
        z[:, 2] = 1.5  # constant
        z[:, 3] = z[:, 0]  # duplicated
        z[:, 4] = np.round(z[:, 1])
    return z[:n], f[:n], z[n:], f[n:]


@pytest.mark.parametrize("kind", ["continuous", "binary", "many", "quantised", "symmetric",
                                  "columns", "tiny"])
def test_same_as_sklearn(kind):
    for seed in range(2):
        x, y, xt, yt = make(kind, seed)
        ours_state, their_state = np.random.RandomState(seed + 7), np.random.RandomState(seed + 7)
        assert gbt.applies(x, y, xt)
        ours = gbt.fit_gbt(x, y, xt, yt, ours_state, 25)
        theirs = sklearn_fit(x, y, xt, yt, their_state, 25)
        np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12, atol=1e-15)
        assert ours[1:] == theirs[1:]
        assert ours_state.randint(0, 2**31 - 1) == their_state.randint(0, 2**31 - 1)


def test_realistic_codes_full_stages():
    # 100 stages (the study's setting) on float32 codes with chance ties, 12 classes.
    r = np.random.RandomState(3)
    f = r.randint(0, 12, 1500)
    z = (r.randn(1500, 8) + 0.4 * f[:, None] * r.randn(1, 8)).astype(np.float32)
    z[::50] = z[1::50]  # some duplicated rows
    ours = gbt.fit_gbt(z[:1000], f[:1000], z[1000:], f[1000:], np.random.RandomState(0), 100)
    theirs = sklearn_fit(z[:1000], f[:1000], z[1000:], f[1000:], np.random.RandomState(0), 100)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12, atol=1e-15)
    assert ours[1:] == theirs[1:]


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
def test_dci_fit_falls_back_to_sklearn_where_the_port_does_not_apply():
    x, y, xt, yt = make("continuous", 0)
    big = x.copy()
    big[0, 0] = 1e39  # overflows float32: sklearn's own error, not ours
    assert not gbt.applies(big, y, xt)
    with pytest.raises(ValueError):
        fit_gbt(big, y, xt, yt, np.random.RandomState(0), 5)
    assert not gbt.applies(x, np.zeros_like(y), xt)
    assert fit_gbt(x, y, xt, yt, np.random.RandomState(0), 5)[1:] == \
        sklearn_fit(x, y, xt, yt, np.random.RandomState(0), 5)[1:]


def test_numpy_summation_and_sklearn_sort_are_reproduced():
    r = np.random.RandomState(0)
    for n in [0, 1, 7, 8, 9, 127, 128, 129, 300, 1000, 4097]:
        a = r.randn(n) * 10 ** r.uniform(-3, 3, n)
        assert gbt.np_sum(a) == np.sum(a)
    from sklearn.utils._sorting import _py_simultaneous_sort

    for n in [5, 16, 17, 100, 2000]:
        values = np.round(r.randn(n) * 2).astype(np.float32)  # ties: order depends on the algorithm
        idx = r.permutation(n).astype(np.intp)
        ours_v, ours_i = values.copy(), idx.astype(np.int64)
        every = np.unique(values)  # every value followed: the whole introsort
        gbt.introsort3_partial(ours_v, ours_i, 2 * int(np.log2(n)), every, len(every))
        _py_simultaneous_sort(values, idx, n, use_three_way_partition=True)
        assert np.array_equal(ours_i, idx) and np.array_equal(ours_v, values)


def test_partial_introsort_orders_ties_like_introsort():
    from sklearn.utils._sorting import _py_simultaneous_sort

    r = np.random.RandomState(1)
    for n in [20, 200, 3000]:
        values = np.round(r.randn(n) * 3).astype(np.float32)
        idx = r.permutation(n).astype(np.int64)
        full_v, full_i = values.copy(), idx.astype(np.intp)
        _py_simultaneous_sort(full_v, full_i, n, use_three_way_partition=True)
        hard = np.unique(values)[::3].astype(np.float32)
        part_v, part_i = values.copy(), idx.copy()
        gbt.introsort3_partial(part_v, part_i, 2 * int(np.log2(n)), hard, len(hard))
        sel = np.isin(full_v, hard)
        assert np.array_equal(np.sort(full_v), full_v)
        assert np.array_equal(part_i[sel], full_i[sel])


def _two_factor_fits(n_jobs=1):
    from benchmark.metrics import dci

    x, y, xt, yt = make("tiny", 0)
    f, ft = np.stack([y, (y + 1) % 3], 1), np.stack([yt, (yt + 1) % 3], 1)
    states = [np.random.RandomState(0), np.random.RandomState(1)]
    return dci.gbt_fits(x, f, xt, ft, states, 5, n_jobs)


def _assert_same_fits(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a[0], b[0], rtol=1e-12, atol=1e-15)
        assert a[1:] == b[1:]


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
def test_backend_labels_say_why_sklearn_fits():
    x, y, xt, _ = make("tiny", 0)
    assert gbt.backend_label(x, y, xt) == gbt.PORT
    big = x.copy()
    big[0, 0] = 1e39
    assert gbt.backend_label(big, y, xt) == "sklearn (codes are not finite as float32)"
    assert gbt.backend_label(x, np.zeros_like(y), xt) == "sklearn (fewer than 2 classes)"
    assert gbt.backend_label(x, y[:-1], xt).startswith("sklearn (not one label per training row")


def test_fits_are_counted_by_backend_and_the_fallback_warns_once(monkeypatch, caplog):
    import logging

    import sklearn

    from benchmark.metrics.gbt import backend

    monkeypatch.setattr(backend, "_warned", set())
    gbt.reset_fit_counts()
    ported = _two_factor_fits()
    assert gbt.fit_counts() == {"numba-port": 2}
    monkeypatch.setattr(sklearn, "__version__", "1.8.0")  # a version the port does not reproduce
    gbt.reset_fit_counts()
    with caplog.at_level(logging.WARNING, logger=backend.__name__):
        _assert_same_fits(_two_factor_fits(), ported)  # sklearn's own fits
        _assert_same_fits(_two_factor_fits(), ported)
    label = "sklearn (scikit-learn 1.8.0 is not the ported 1.9)"
    assert gbt.fit_counts() == {label: 4}
    assert len(caplog.records) == 1 and label in caplog.records[0].getMessage()
    gbt.reset_fit_counts()
    assert gbt.fit_counts() == {}


def test_fit_counts_come_back_from_worker_processes():
    gbt.reset_fit_counts()
    _assert_same_fits(_two_factor_fits(n_jobs=2), _two_factor_fits())
    assert gbt.fit_counts() == {"numba-port": 4}
