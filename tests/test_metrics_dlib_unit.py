"""disentanglement_lib's own metric unit tests (evaluation/metrics/*_test.py), ported to our API.

Data: IdentityObservationsData-like (10 factors of 10 values, observation = factors); "dup" =
hstack([x, x]); "zeros" = zeros_like; "perm" = a fixed random column permutation mixed per row.
"""

from __future__ import annotations

import numpy as np
import pytest
from metrics_helpers import IdentityData, flat

from benchmark.metrics import compute_metric, compute_metric_on_samples, utils
from benchmark.metrics import dci as dci_mod
from benchmark.metrics import modularity_explicitness as me
from benchmark.metrics import unsupervised as unsup

LN = np.log
DATA10 = IdentityData((10,) * 10)


def _samples(rep, n, seed=0):
    f = DATA10.sample_factors(n, seed)
    return rep(f.astype(np.float64)), f


ident = flat


def dup(x):
    x = flat(x)
    return np.hstack([x, x])


def zeros(x):
    return np.zeros_like(flat(x))


def perm(x):  # each row's entries permuted with its own draw: destroys code/factor alignment
    x = flat(x)
    rs = np.random.RandomState(0)
    return np.stack([rs.permutation(row) for row in x])


# -- utils_test --------------------------------------------------------------
def test_histogram_discretize():
    x = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]]).T
    np.testing.assert_array_equal(utils.histogram_discretize(x, 3).T,
                                  [[1, 1, 2, 2, 3, 3], [3, 3, 2, 2, 1, 1]])


def test_discrete_entropy_and_mutual_info():
    x = np.array([[1, 1, 2, 2, 3, 3], [3, 3, 2, 2, 1, 1]]).T
    np.testing.assert_allclose(utils.discrete_entropy(x), [LN(3), LN(3)])
    a = np.array([[1, 2, 1, 2], [1, 1, 2, 2]]).T
    b = np.array([[1, 2, 1, 2], [2, 2, 1, 1]]).T
    np.testing.assert_allclose(utils.discrete_mutual_info(a, b), [[LN(2), 0], [0, LN(2)]], atol=1e-12)


# -- dci_test (pure) ----------------------------------------------------------
@pytest.mark.parametrize("matrix,d,c", [
    (np.diag(np.ones(5) * 5.0), 1.0, 1.0),
    (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 1.0, 1.0),
    (np.zeros((10, 10)), 0.0, 0.0),
    (np.vstack([np.diag(5.0 * np.ones(5))] * 2), 1.0, 1.0 - LN(2) / LN(10)),
    (np.diag(5.0 * np.ones(5))[:2], 1.0, 1.0),
    (np.hstack([np.diag(5.0 * np.ones(5))] * 2), 1.0 - LN(2) / LN(10), 1.0),
])
def test_dci_pure(matrix, d, c):
    assert dci_mod.disentanglement(matrix) == pytest.approx(d, abs=1e-7)
    assert dci_mod.completeness(matrix) == pytest.approx(c, abs=1e-7)


# -- modularity_explicitness_test (pure) ---------------------------------------
@pytest.mark.parametrize("matrix,expected", [
    (np.diag(np.ones(5)), 1.0),
    (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 2.0 / 3.0),
    (np.zeros((5, 5)), 0.0),
    (np.vstack([np.diag(np.ones(5)), np.diag(np.ones(5))]), 1.0),
    (np.diag(np.ones(5))[:2], 1.0),
    (np.hstack([np.diag(np.ones(5))] * 2), 1.0 - 1.0 / 9.0),
])
def test_modularity_pure(matrix, expected):
    assert me.modularity(matrix) == pytest.approx(expected)


# -- unsupervised_metrics_test ------------------------------------------------
def test_gaussian_total_correlation():
    assert unsup.gaussian_total_correlation(np.eye(5)) == pytest.approx(0.0, abs=0.01)
    cov = np.array([[1.0, 0.9], [0.9, 1.0]])
    expected = 0.5 * (-np.log(np.linalg.det(cov)))  # KL(N(0,Σ) || N(0,diag Σ))
    assert unsup.gaussian_total_correlation(cov) == pytest.approx(expected, abs=0.01)


def test_gaussian_wasserstein_correlation():
    import scipy.linalg
    assert unsup.gaussian_wasserstein_correlation(np.eye(5)) == pytest.approx(0.0, abs=0.01)
    cov = np.array([[1.0, 0.9], [0.9, 1.0]])
    diag = np.diag(np.diag(cov))
    expected = np.trace(cov + diag - 2 * scipy.linalg.sqrtm(cov @ diag)).real
    assert unsup.gaussian_wasserstein_correlation(cov) == pytest.approx(expected, abs=0.01)


# -- sampled tests (dlib: beta_vae, factor_vae, mig, dci, sap, modularity, irs) --
def test_beta_vae_identity():
    s = compute_metric("beta_vae", DATA10, ident, 0, batch_size=5, num_train=2000, num_eval=2000)
    assert 0.9 <= s["train_accuracy"] <= 1.0 and 0.9 <= s["eval_accuracy"] <= 1.0


@pytest.mark.parametrize("rep,lo,hi", [(ident, 0.9, 1.0), (zeros, 0.0, 0.2)])
def test_factor_vae(rep, lo, hi):
    s = compute_metric("factor_vae", DATA10, rep, 0, batch_size=5, num_train=3000, num_eval=2000,
                       num_variance_estimate=2500)
    assert lo <= s["train_accuracy"] <= hi and lo <= s["eval_accuracy"] <= hi


@pytest.mark.parametrize("rep,lo,hi", [(ident, 0.9, 1.0), (zeros, 0.0, 0.2), (dup, 0.0, 0.1)])
def test_mig(rep, lo, hi):
    # dlib's test uses the identity discretiser; 10 values in 20 equal-width bins is the same.
    c, f = _samples(rep, 3000)
    if rep is zeros:  # dlib gives 0 here; we too (constant codes carry no information)
        c = c + 0.0
    assert lo <= compute_metric_on_samples("mig", c, f)["discrete_mig"] <= hi


@pytest.mark.slow
def test_dci_sampled():
    c, f = _samples(ident, 2000)
    s = compute_metric_on_samples("dci", c[:1000], f[:1000], c[1000:], f[1000:])
    assert 0.9 <= s["disentanglement"] <= 1 and 0.9 <= s["completeness"] <= 1
    c, f = _samples(perm, 2000)
    s = compute_metric_on_samples("dci", c[:1000], f[:1000], c[1000:], f[1000:])
    assert 0 <= s["disentanglement"] <= 0.2 and 0 <= s["completeness"] <= 0.2
    c, f = _samples(dup, 2000)
    s = compute_metric_on_samples("dci", c[:1000], f[:1000], c[1000:], f[1000:])
    assert 0.9 <= s["disentanglement"] <= 1
    assert s["completeness"] == pytest.approx(1 - LN(2) / LN(10), abs=0.1)


@pytest.mark.parametrize("rep,lo,hi", [(ident, 0.9, 1.0), (zeros, 0.0, 0.2), (dup, 0.0, 0.2)])
def test_sap_continuous(rep, lo, hi):
    c, f = _samples(rep, 6000)
    s = compute_metric_on_samples("sap", c[:3000], f[:3000], c[3000:], f[3000:],
                                  continuous_factors=True)
    assert lo <= s["SAP_score"] <= hi


@pytest.mark.parametrize("rep,n,lo,hi", [(ident, 3000, 0.9, 1.0), (perm, 20000, 0.0, 0.2),
                                         (dup, 3000, 0.9, 1.0)])
def test_modularity_sampled(rep, n, lo, hi):
    c, f = _samples(rep, 2 * n)
    s = compute_metric_on_samples("modularity_explicitness", c[:n], f[:n], c[n:], f[n:])
    assert lo <= s["modularity_score"] <= hi


@pytest.mark.parametrize("rep,lo,hi", [(ident, 0.9, 1.0), (zeros, 0.0, 0.1)])
def test_irs(rep, lo, hi):
    c, f = _samples(rep, 3000)
    assert lo <= compute_metric_on_samples("irs", c, f)["IRS"] <= hi
