"""Exact-data MI from Gaussian posteriors (Chen et al. 2018): mig_exact, aam_exact, mmig_exact."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import ROOT, tiny_spec
from metrics_helpers import IdentityData, flat
from scipy.special import logsumexp
from scipy.stats import norm

from benchmark.errors import UserError
from benchmark.metrics import (
    METRICS,
    compute_metric,
    compute_metric_on_samples,
    compute_posterior_metric,
    default_metrics,
)
from benchmark.metrics import gaussian_mi as gm
from benchmark.metrics.suite import evaluate
from benchmark.spec import expand, load_spec

EXACT = ["mig_exact", "aam_exact", "mmig_exact"]
# "all" as it was before the opt-in metrics existed: hashed into every job id.
ALL_BEFORE = ["aam", "beta_vae", "dci", "downstream_gbt", "downstream_lr", "factor_vae", "irs",
              "mig", "mmig", "modularity_explicitness", "sap", "unsupervised"]


def _grid(sizes):
    return np.stack(np.unravel_index(np.arange(math.prod(sizes)), sizes), 1).astype(np.float64)


def _encoded_grid(sizes, var=1e-4):
    """Dim k encodes factor k with tiny variance; the last dim is dead (mean 0, var 1)."""
    f = _grid(sizes)
    mean = np.hstack([f, np.zeros((len(f), 1))])
    logvar = np.hstack([np.full(f.shape, np.log(var)), np.zeros((len(f), 1))])
    return mean, logvar


# ------------------------------------------------------------------ (a) analytically known answers

def test_axis_aligned_codes_have_mi_log_v_and_dead_unit_zero():
    sizes = (4, 5)
    mean, logvar = _encoded_grid(sizes)
    mi = gm.gaussian_mutual_info(mean, logvar, sizes, num_samples=2000)
    assert mi.shape == (3, 2)
    np.testing.assert_allclose(np.diag(mi[:2]), np.log(sizes), atol=1e-4)
    assert abs(mi[0, 1]) < 1e-4 and abs(mi[1, 0]) < 1e-4
    np.testing.assert_allclose(mi[2], 0.0, atol=1e-4)  # dead unit: q(z|x) = N(0, 1) for all x
    for name in EXACT:
        assert getattr(gm, name)(mi, sizes) == pytest.approx(1.0, abs=1e-4)


def test_duplicated_code_has_no_gap_and_low_axis_alignment():
    sizes = (4, 5)
    mean, logvar = _encoded_grid(sizes)
    mean, logvar = np.hstack([mean, mean[:, :1]]), np.hstack([logvar, logvar[:, :1]])
    mi = gm.gaussian_mutual_info(mean, logvar, sizes, num_samples=2000)
    assert mi[3, 0] == pytest.approx(np.log(4), abs=1e-4)
    # Factor 0 sits in two codes: gap 0 for it, 1 for factor 1.
    assert gm.mig_exact(mi, sizes) == pytest.approx(0.5, abs=1e-3)
    assert gm.mmig_exact(mi, sizes) == pytest.approx(0.5, abs=1e-3)
    assert gm.aam_exact(mi, sizes) == pytest.approx(0.5, abs=1e-3)


def test_uninformative_posteriors_give_zero():
    sizes = (3, 4)
    mean = np.zeros((12, 2))
    logvar = np.zeros((12, 2))
    mi = gm.gaussian_mutual_info(mean, logvar, sizes, num_samples=500, seed=1)
    np.testing.assert_allclose(mi, 0.0, atol=1e-4)  # float32 densities
    assert gm.mig_exact(mi, sizes) == pytest.approx(0.0, abs=1e-4)
    assert gm.aam_exact(np.zeros((2, 2)), sizes) == 0.0  # no code informs a factor: 0, not 0/0


# ------------------------------------------------------------------ (b) against brute force

def test_log_densities_equal_the_double_sum():
    sizes = (2, 3)
    rng = np.random.default_rng(3)
    mean = rng.normal(size=(6, 2))
    logvar = rng.normal(-1, 0.5, size=(6, 2))
    values = gm.balanced_factor_draws(sizes, 7, rng)
    z = rng.normal(size=(7, 2))
    # chunk of 3 draws: the last chunk is partial
    lm, lc = gm.log_aggregate_densities(mean, logvar, sizes, z, values, chunk_elements=6 * 2 * 3)
    f = _grid(sizes).astype(int)
    for i in range(7):
        for j in range(2):
            dens = norm.logpdf(z[i, j], mean[:, j], np.exp(0.5 * logvar[:, j]))
            assert lm[i, j] == pytest.approx(logsumexp(dens) - np.log(6), abs=1e-5)
            for k in range(2):
                rows = f[:, k] == values[i, k]
                assert lc[i, k, j] == pytest.approx(logsumexp(dens[rows]) - np.log(rows.sum()), abs=1e-5)


def _quadrature_mi(mean, logvar, sizes):
    """I(z_j; v_k) by numerical integration of the 1-D Gaussian mixtures (the estimand itself)."""
    f = _grid(sizes).astype(int)
    sd = np.exp(0.5 * logvar)
    out = np.zeros((mean.shape[1], len(sizes)))
    for j in range(mean.shape[1]):
        t = np.linspace((mean[:, j] - 10 * sd[:, j]).min(), (mean[:, j] + 10 * sd[:, j]).max(), 40001)
        comp = norm.pdf(t[:, None], mean[:, j], sd[:, j])  # (T, N)

        def entropy(p, t=t):
            return -np.trapezoid(p * np.log(np.maximum(p, 1e-300)), t)

        h = entropy(comp.mean(1))
        for k, size in enumerate(sizes):
            h_cond = np.mean([entropy(comp[:, f[:, k] == v].mean(1)) for v in range(size)])
            out[j, k] = h - h_cond
    return out


def test_estimator_converges_to_the_quadrature_value():
    sizes = (2, 3)
    f = _grid(sizes)
    # Overlapping posteriors: partial information, mixed over both factors.
    mean = np.stack([f[:, 0] + 0.4 * f[:, 1], 0.7 * f[:, 1]], 1)
    logvar = np.stack([np.full(6, np.log(0.3)), np.linspace(-2, 0, 6)], 1)
    exact = _quadrature_mi(mean, logvar, sizes)
    assert 0.02 < exact.min() and exact.max() < np.log(2)  # a non-trivial case
    est = gm.gaussian_mutual_info(mean, logvar, sizes, num_samples=40_000, seed=0)
    np.testing.assert_allclose(est, exact, atol=0.02)


def test_deterministic_by_seed_and_chunking_does_not_change_values():
    sizes = (3, 4)
    rng = np.random.default_rng(0)
    mean, logvar = rng.normal(size=(12, 3)), rng.normal(-1, 0.3, size=(12, 3))
    a = gm.gaussian_mutual_info(mean, logvar, sizes, num_samples=300, seed=5)
    b = gm.gaussian_mutual_info(mean, logvar, sizes, num_samples=300, seed=5, chunk_elements=1)
    c = gm.gaussian_mutual_info(mean, logvar, sizes, num_samples=300, seed=6)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    assert not np.allclose(a, c)


def test_balanced_draws_spread_every_factor_evenly():
    values = gm.balanced_factor_draws((3, 7), 100, np.random.default_rng(0))
    for k, size in enumerate((3, 7)):
        counts = np.bincount(values[:, k], minlength=size)
        assert counts.max() - counts.min() <= 1 and counts.sum() == 100


# ------------------------------------------------------------------ (c) bad input

@pytest.mark.parametrize("mean,logvar,sizes,msg", [
    (np.zeros(6), np.zeros(6), (2, 3), r"\(N, D\)"),
    (np.zeros((6, 2)), np.zeros((6, 3)), (2, 3), "differ in shape"),
    (np.zeros((5, 2)), np.zeros((5, 2)), (2, 3), "has 6"),
    (np.full((6, 2), np.nan), np.zeros((6, 2)), (2, 3), "NaN"),
    (np.zeros((6, 2)), np.full((6, 2), np.inf), (2, 3), "NaN or inf"),
    (np.zeros((6, 2)), np.zeros((6, 2)), (2, 0), "positive integers"),
    (np.zeros((6, 2)), np.zeros((6, 2)), (), "positive integers"),
    (np.zeros((6, 2), dtype=int), np.zeros((6, 2)), (2, 3), "floating point"),
])
def test_bad_posteriors_are_clear_errors(mean, logvar, sizes, msg):
    with pytest.raises(UserError, match=msg):
        gm.gaussian_mutual_info(mean, logvar, sizes, num_samples=10)


def test_bad_parameters_and_entry_points():
    mean, logvar = _encoded_grid((2, 3))
    with pytest.raises(UserError, match="num_samples"):
        gm.gaussian_mutual_info(mean, logvar, (2, 3), num_samples=0)
    with pytest.raises(UserError, match="single value"):
        gm.mig_exact(np.ones((3, 2)), (1, 6))
    with pytest.raises(UserError, match="two code dimensions"):
        gm.mig_exact(np.ones((1, 2)), (2, 3))
    with pytest.raises(UserError, match="positive integer"):
        evaluate(IdentityData((2, 3)), {}, 0, metrics=["mig_exact"],
                 overrides={"mig_exact": {"num_samples": -1}}, gaussian=_identity_gaussian)
    with pytest.raises(UserError, match="compute_posterior_metric"):
        compute_metric("mig_exact", IdentityData((2, 3)), flat, 0)
    with pytest.raises(UserError, match="compute_posterior_metric"):
        compute_metric_on_samples("mig_exact", np.zeros((4, 2)), np.zeros((4, 1), int))
    with pytest.raises(UserError, match="not a posterior metric"):
        compute_posterior_metric("mig", IdentityData((2, 3)), _identity_gaussian)


# ------------------------------------------------------------------ (d) registry, suite, spec, run_job

def _identity_gaussian(obs):
    x = flat(obs)
    return x, np.full_like(x, np.log(1e-4))


def test_compute_posterior_metric_on_a_rendered_grid():
    data = IdentityData((3, 4, 5))
    for name in EXACT:
        assert compute_posterior_metric(name, data, _identity_gaussian, seed=0,
                                        num_samples=500)[name] == pytest.approx(1.0, abs=1e-3)


def test_exact_metrics_are_opt_in():
    assert set(EXACT) <= set(METRICS)
    assert sorted(default_metrics()) == ALL_BEFORE
    assert not any(METRICS[n].in_all for n in EXACT)


def test_suite_rows_are_labelled_posterior_and_computed_once(monkeypatch):
    data = IdentityData((3, 4))
    calls = []
    real = gm.gaussian_mutual_info
    monkeypatch.setattr(gm, "gaussian_mutual_info", lambda *a, **k: calls.append(1) or real(*a, **k))
    ov = {n: {"num_samples": 300} for n in EXACT} | {"mig": {"num_train": 300}}
    rows = evaluate(data, {"mean": flat}, 0, metrics=["mig", *EXACT], overrides=ov,
                    gaussian=_identity_gaussian)
    assert len(calls) == 1  # one MI matrix for the three metrics
    by = {(r["representation"], r["metric"], r["key"]): r["value"] for r in rows}
    assert set(by) == {("mean", "mig", "discrete_mig")} | {("posterior", n, n) for n in EXACT}
    assert all(by[("posterior", n, n)] == pytest.approx(1.0, abs=1e-3) for n in EXACT)
    # Only posterior metrics: no representation is needed.
    only = evaluate(data, {}, 0, metrics=["mig_exact"], overrides={"mig_exact": {"num_samples": 300}},
                    gaussian=_identity_gaussian)
    assert [r["value"] for r in only] == [by[("posterior", "mig_exact", "mig_exact")]]


def test_suite_skips_with_a_reason_without_posterior_or_on_noisy_data():
    ov = {"mig_exact": {"num_samples": 100}}
    for data, gaussian, reason in [
        (IdentityData((3, 4)), None, "deterministic encoder"),
        (IdentityData((3, 4)), lambda x: (flat(x), None), "no log-variance"),
        (IdentityData((3, 4), noise=0.1), _identity_gaussian, "noise-free"),
    ]:
        rows = evaluate(data, {"mean": flat}, 0, metrics=["mig_exact"], overrides=ov, gaussian=gaussian)
        assert len(rows) == 1 and rows[0]["representation"] == "posterior"
        assert math.isnan(rows[0]["value"]) and reason in rows[0]["skipped"]
    with pytest.raises(UserError, match="taken"):
        evaluate(IdentityData((3, 4)), {"posterior": flat}, 0, metrics=["mig_exact"],
                 gaussian=_identity_gaussian)


def test_all_and_existing_job_ids_do_not_change(write_spec):
    jobs = expand(load_spec(ROOT / "study_specs" / "unsupervised.yaml"))
    assert jobs[0].evaluation["metrics"] == ALL_BEFORE
    # Pinned before the opt-in metrics were added: a change would orphan existing results.
    assert (jobs[0].job_id, jobs[0].model_id, jobs[-1].job_id) == (
        "7df8020fc89743f5", "172df4cca30728f6", "424730c6e67f98cc")
    named = expand(load_spec(write_spec(tiny_spec(evaluation={"metrics": ["mig_exact", "mig"]}))))
    assert named[0].evaluation["metrics"] == ["mig_exact", "mig"]


def test_run_job_vae_gets_rows_and_pca_a_clean_skip(tmp_path, write_spec):
    import pandas as pd

    from benchmark.jobs import run_job
    from benchmark.store import ResultsStore

    spec = tiny_spec(
        datasets=[{"name": "identity", "source": "procedural"}],
        methods={"beta_vae": {"beta": 1}, "pca": None}, seeds=[0],
        training={"steps": 4, "batch_size": 8, "checkpoint_every": 2, "num_latent": 3,
                  "eval_batches": 2, "fit_samples": 200},
        evaluation={"metrics": ["mig", *EXACT], "representations": ["mean"],
                    "overrides": {"mig": {"num_train": 200}} | {n: {"num_samples": 50} for n in EXACT}})
    store = ResultsStore(tmp_path / "study")
    for job in expand(load_spec(write_spec(spec))):
        outcome = run_job(job, store)
        assert outcome.status == "done", outcome.reason
    df = pd.DataFrame(store.read_rows().to_pylist())
    post = df[df.representation == "posterior"]
    vae, pca = post[post.model == "beta_vae"], post[post.model == "pca"]
    assert sorted(vae.metric) == sorted(EXACT) and vae.value.between(0, 1).all()
    assert sorted(pca.metric) == sorted(EXACT) and pca.value.isna().all()
    assert set(df[df.metric == "mig"].model) == {"beta_vae", "pca"}


def test_represent_gaussian_of_a_vae_and_of_pca():
    from benchmark.data.synthetic import IdentityData as Identity
    from benchmark.settings import TrainingSettings
    from benchmark.training import train

    data = Identity((3, 4, 5))
    config = TrainingSettings(steps=2, batch_size=8, num_latent=3, eval_batches=0, fit_samples=100,
                              device="cpu")
    vae = train("beta_vae", None, data, seed=0, config=config)
    obs = data.sample_observations(5, np.random.default_rng(0))
    mean, logvar = vae.represent_gaussian(batch_size=4)(obs)
    assert vae.has_posterior and mean.shape == logvar.shape == (5, 3)
    # Same batches on both sides: the conv kernels' rounding may depend on the batch size.
    np.testing.assert_allclose(mean, vae.represent("mean", batch_size=4)(obs), rtol=1e-6, atol=1e-7)
    pca = train("pca", None, data, seed=0, config=config)
    assert not pca.has_posterior
    with pytest.raises(UserError, match="deterministic encoder"):
        pca.represent_gaussian()
