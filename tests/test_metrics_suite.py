"""The evaluation suite (encode once, share) and bad-input errors."""

from __future__ import annotations

import numpy as np
import pytest
from metrics_helpers import IdentityData, flat

from benchmark.errors import UserError
from benchmark.metrics import METRICS, compute_metric, compute_metric_on_samples
from benchmark.metrics.suite import evaluate

FAST = {"mig": dict(num_train=500), "irs": dict(num_train=500),
        "unsupervised": dict(num_train=500), "aam": dict(num_train=500),
        "mmig": dict(num_train=500), "sap": dict(num_train=300, num_test=200),
        "beta_vae": dict(batch_size=8, num_train=200, num_eval=100),
        "factor_vae": dict(batch_size=8, num_train=200, num_eval=100, num_variance_estimate=500)}


def test_suite_rows_and_lookup_equal_direct_encoding():
    data = IdentityData((3, 4, 5))
    calls = []

    def rep(x):
        calls.append(len(x))
        return flat(x) * 2.0

    rows = evaluate(data, {"mean": rep}, seed=0, metrics=list(FAST), overrides=FAST)
    assert {r["metric"] for r in rows} == set(FAST)
    assert all(set(r) == {"representation", "metric", "key", "value", "eval_seconds"} for r in rows)
    assert sum(calls) < 200  # the 60-point grid (+ probe), not the ~10k protocol encodes
    calls.clear()
    direct = evaluate(data, {"mean": rep}, seed=0, metrics=list(FAST), overrides=FAST, lookup="never")
    assert sum(calls) > 3000
    assert [(r["key"], r["value"]) for r in rows] == [(r["key"], r["value"]) for r in direct]


def test_suite_noisy_data_does_not_use_the_grid():
    data = IdentityData((3, 4), noise=0.1)
    calls = []

    def rep(x):
        calls.append(len(x))
        return flat(x)

    evaluate(data, {"mean": rep}, 0, metrics=["mig"], overrides={"mig": {"num_train": 400}})
    assert sum(calls) == 400  # only the pool (the probe sees noisy renders and stops)


def test_suite_downstream_efficiency_and_pairing():
    data = IdentityData((3, 4))
    ov = {"downstream_lr": dict(num_train=[20, 200], num_test=100, efficiency_sizes=(20, 200))}
    rows = evaluate(data, {"a": flat, "b": flat}, 0, metrics=["downstream_lr"], overrides=ov)
    by = {(r["representation"], r["key"]): r["value"] for r in rows}
    assert by[("a", "efficiency")] == pytest.approx(
        by[("a", "20:mean_test_accuracy")] / by[("a", "200:mean_test_accuracy")])
    assert all(by[("a", k)] == by[("b", k)] for (_, k) in by)  # same samples for both reps


@pytest.mark.parametrize("kwargs,msg", [
    (dict(metrics=["nope"]), "unknown metric"),
    (dict(metrics=["mig"], overrides={"mig": {"num_test": 3}}), "no parameter"),
    (dict(metrics=["mig"], overrides={"sap": {}}), "not evaluated"),
    (dict(metrics=["mig"], overrides={"mig": {"num_train": -1}}), "positive integer"),
])
def test_suite_bad_input(kwargs, msg):
    with pytest.raises(UserError, match=msg):
        evaluate(IdentityData((3, 4)), {"m": flat}, 0, **kwargs)


def test_representation_wrong_shape():
    with pytest.raises(UserError, match="returned shape"):
        compute_metric("mig", IdentityData((3, 4)), lambda x: flat(x)[:-1], 0, num_train=100)
    with pytest.raises(UserError, match="NaN or inf"):
        compute_metric("mig", IdentityData((3, 4)), lambda x: flat(x) * np.nan, 0, num_train=100)


def _arrays(n=200, seed=0):
    rs = np.random.RandomState(seed)
    f = np.stack([rs.randint(3, size=n), rs.randint(4, size=n)], 1)
    return f + rs.normal(scale=0.1, size=f.shape), f


@pytest.mark.parametrize("mutate,msg", [
    (lambda c, f: (np.where(c > 2, np.inf, c), f), "NaN or inf"),
    (lambda c, f: (c[:-1], f), "rows but the codes have"),
    (lambda c, f: (c, np.zeros_like(f)), "single value"),
    (lambda c, f: (c, f + 0.5), "integer class indices"),
    (lambda c, f: (c[:, 0], f), "2-D array"),
])
@pytest.mark.parametrize("metric", ["mig", "sap", "dci", "aam"])
def test_bad_arrays(metric, mutate, msg):
    c, f = mutate(*_arrays())
    ct, ft = _arrays(seed=1)
    with pytest.raises(UserError, match=msg):
        compute_metric_on_samples(metric, c, f, ct, ft)


def test_on_samples_rejects_sampling_params_and_interventional_metrics():
    c, f = _arrays()
    with pytest.raises(UserError, match="does not apply"):
        compute_metric_on_samples("mig", c, f, num_train=10)
    with pytest.raises(UserError, match="needs a dataset"):
        compute_metric_on_samples("beta_vae", c, f, c, f)


def test_registry_has_the_study_metrics():
    assert {"beta_vae", "factor_vae", "mig", "dci", "sap", "modularity_explicitness",
            "unsupervised", "downstream_lr", "downstream_gbt", "irs", "aam", "mmig"} <= set(METRICS)


def test_aam_mmig_perfect_and_duplicated():
    c, f = _arrays(2000)
    assert compute_metric_on_samples("aam", c, f)["aam"] > 0.9
    assert compute_metric_on_samples("mmig", c, f)["mmig"] > 0.9
    dup = np.hstack([c, c[:, :1]])
    assert compute_metric_on_samples("aam", dup, f)["aam"] < 0.6  # factor 0 split over two codes
    assert compute_metric_on_samples("mmig", dup, f)["mmig"] < 0.6


def test_parallel_fits_equal_serial():
    c, f = _arrays(300)
    ct, ft = _arrays(150, seed=1)
    a = compute_metric_on_samples("dci", c, f, ct, ft, seed=3)
    b = compute_metric_on_samples("dci", c, f, ct, ft, seed=3, n_jobs=2)
    assert a == b


def test_factor_vae_counts_active_dims():
    def rep(x):
        x = flat(x)
        return np.hstack([x, np.zeros((len(x), 2))])
    s = compute_metric("factor_vae", IdentityData((3, 4)), rep, 0, batch_size=8, num_train=100,
                       num_eval=50, num_variance_estimate=200)
    assert s["num_active_dims"] == 2  # dlib reports len(mask) = 4


def test_shared_work_fits_dci_and_downstream_gbt_once(monkeypatch):
    from benchmark.metrics import dci
    from benchmark.metrics.shared import shared_work

    c, f = _arrays(300)
    ct, ft = _arrays(150, seed=1)
    plain_dci = compute_metric_on_samples("dci", c, f, ct, ft, seed=2, n_estimators=10)
    plain_gbt = compute_metric_on_samples("downstream_gbt", c, f, ct, ft, seed=2, n_estimators=10)
    fits = []
    real = dci.fit_gbt
    monkeypatch.setattr(dci, "fit_gbt", lambda *a: fits.append(1) or real(*a))
    with shared_work():
        shared_dci = compute_metric_on_samples("dci", c, f, ct, ft, seed=2, n_estimators=10)
        shared_gbt = compute_metric_on_samples("downstream_gbt", c, f, ct, ft, seed=2,
                                               n_estimators=10)
        assert len(fits) == f.shape[1]  # the downstream fits were DCI's
        compute_metric_on_samples("dci", c, f, ct, ft, seed=3, n_estimators=10)
        assert len(fits) == 2 * f.shape[1]  # another random state is another fit
    assert shared_dci == plain_dci and shared_gbt == plain_gbt


def test_suite_values_equal_scores_of_the_pool_arrays():
    data = IdentityData((3, 4, 5))

    def rep(x):
        return flat(x) @ np.array([[1.0, 0.3, 0.0], [0.2, 1.0, 0.1], [0.0, 0.4, 1.0]])

    ov = {"dci": dict(num_train=200, num_test=100, n_estimators=5),
          "downstream_gbt": dict(num_train=[20, 200], num_test=100, n_estimators=5,
                                 efficiency_sizes=(20, 200)),
          "mig": dict(num_train=200), "aam": dict(num_train=200), "mmig": dict(num_train=150),
          "modularity_explicitness": dict(num_train=200, num_test=100)}
    rows = evaluate(data, {"m": rep}, 0, metrics=list(ov), overrides=ov)
    got = {(r["metric"], r["key"]): r["value"] for r in rows}
    factors = data.sample_factors(300, np.random.default_rng(0))
    codes = rep(data.sample_observations_from_factors(factors, 0))
    te = slice(200, 300)
    for name, p in ov.items():
        p = {k: v for k, v in p.items() if k not in ("num_train", "num_test")}
        sizes = ov[name]["num_train"]
        for s in sizes if isinstance(sizes, list) else [sizes]:
            if name == "downstream_gbt":
                p.pop("efficiency_sizes", None)
            want = compute_metric_on_samples(name, codes[:s], factors[:s], codes[te], factors[te], **p)
            for k, v in want.items():
                assert got[(name, k)] == v, (name, k)


def test_grid_lookup_encodes_each_combination_at_most_once():
    data = IdentityData((3, 4, 5))
    seen = []

    def rep(x):
        seen.extend(map(tuple, flat(x).astype(int)))
        return flat(x)

    ov = {"mig": dict(num_train=30)}
    evaluate(data, {"m": rep}, 0, metrics=["mig"], overrides=ov)
    probe = 16  # is_deterministic encodes 8 rows twice
    assert len(seen) - probe == len(set(seen[probe:])) <= 30  # only the distinct drawn rows


def test_irs_accepts_dlibs_batch_size_without_changing_scores(write_spec):
    # dlib's compute_irs(..., batch_size=16): its encoding batch, which changes no score here.
    from conftest import tiny_spec

    from benchmark.spec import expand, load_spec

    data = IdentityData((3, 4, 5))
    assert METRICS["irs"].defaults["batch_size"] == 16
    base = compute_metric("irs", data, flat, 0, num_train=300)
    assert compute_metric("irs", data, flat, 0, num_train=300, batch_size=7) == base
    ov = {"irs": {"num_train": 300}}
    rows = evaluate(data, {"mean": flat}, 0, metrics=["irs"], overrides=ov)
    ov["irs"]["batch_size"] = 5
    assert [(r["key"], r["value"]) for r in evaluate(data, {"mean": flat}, 0, metrics=["irs"],
                                                     overrides=ov)] == [(r["key"], r["value"]) for r in rows]
    with pytest.raises(UserError, match="batch_size must be a positive integer"):
        compute_metric("irs", data, flat, 0, num_train=300, batch_size=0)
    spec = tiny_spec(evaluation={"metrics": ["irs"], "overrides": {"irs": {"batch_size": 16}}})
    assert expand(load_spec(write_spec(spec)))[0].evaluation["overrides"] == {"irs": {"batch_size": 16}}


def test_reading_the_registries_imports_neither_torch_nor_sklearn():
    # Validating and expanding a spec (``--dry-run``) reads METRICS and METHODS: it must stay light.
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import sys; from benchmark.spec import expand, load_spec; "
            "from benchmark.metrics import METRICS, default_metrics; "
            "jobs = expand(load_spec(sys.argv[1])); "
            "print(len(jobs), sorted(m for m in ('torch', 'sklearn', 'numba') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "study_specs" / "unsupervised.yaml")],
                         check=True, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "12600 []"


def _keyed_rep(calls):
    def rep(x):
        calls.append(len(x))
        return (flat(x) @ np.array([[1.0, 0.3, 0.0], [0.2, 1.0, 0.1], [0.0, 0.4, 1.0]])).astype(np.float32)
    return rep


def test_a_small_memory_budget_encodes_directly_with_equal_results():
    # The lookup table keeps codes within its share of memory_bytes; past it, combinations are
    # encoded each time they are drawn: more encoder calls, the same codes, the same rows.
    data = IdentityData((3, 4, 5))
    ov = {k: FAST[k] for k in ("beta_vae", "factor_vae", "mig", "sap")}
    calls = {}
    rows = {}
    for budget in (None, 2000, 0):  # 2000: the grid's slots and 21 of its 60 codes
        calls[budget] = []
        rows[budget] = evaluate(data, {"m": _keyed_rep(calls[budget])}, 0, metrics=list(ov),
                                overrides=ov, memory_bytes=budget)
    values = {b: [(r["metric"], r["key"], r["value"]) for r in rows[b]] for b in rows}
    assert values[None] == values[2000] == values[0]
    assert sum(calls[None]) < 200 < sum(calls[2000]) < sum(calls[0])


def test_the_lookup_table_keeps_what_it_encoded_in_the_codes_dtype():
    from benchmark.metrics.sampling import FactorEncoder

    data = IdentityData((96, 96, 80))  # dSprites' grid size, 737,280
    enc = FactorEncoder(data, lambda x: np.repeat(flat(x), 100, axis=1).astype(np.float32),
                        np.random.default_rng(0))
    enc.use_grid(2**30)
    factors = data.sample_factors(1000, np.random.default_rng(1))
    codes = enc(factors)
    assert codes.dtype == np.float64 and codes.shape == (1000, 300)
    assert np.array_equal(codes, np.repeat(factors, 100, axis=1))
    kept = len(np.unique(np.ravel_multi_index(factors.T, data.factor_sizes)))
    # one slot per grid element, then a block of kept float32 codes (not grid x D float64)
    assert enc.table_bytes <= 737_280 * 4 + 64 * 2**20
    assert enc.encoded == kept


def test_chunked_interventional_metrics_equal_one_batch(monkeypatch):
    from benchmark.metrics import sampling

    data = IdentityData((3, 4, 5))
    ov = {k: FAST[k] for k in ("beta_vae", "factor_vae")}
    whole = evaluate(data, {"m": _keyed_rep([])}, 0, metrics=list(ov), overrides=ov)
    monkeypatch.setattr(sampling, "CHUNK_BYTES", 1)  # one point at a time
    chunked = evaluate(data, {"m": _keyed_rep([])}, 0, metrics=list(ov), overrides=ov)
    assert [r["value"] for r in whole] == [r["value"] for r in chunked]


_LIMITED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
import numpy as np
from metrics_helpers import IdentityData, flat
from benchmark.metrics.suite import evaluate
proj = np.random.default_rng(0).normal(size=(3, 4096)).astype(np.float32)
rows = evaluate(IdentityData((96, 96, 80)), {{"m": lambda x: flat(x).astype(np.float32) @ proj}}, 0,
                metrics=["beta_vae", "factor_vae"],
                overrides={{"beta_vae": dict(batch_size=4, num_train=50, num_eval=20),
                           "factor_vae": dict(batch_size=4, num_train=50, num_eval=20,
                                              num_variance_estimate=100)}})
print(len(rows))
"""


def test_a_wide_representation_on_a_large_grid_fits_in_little_memory():
    # D = 4,096 on a 737,280-element grid, a few hundred draws: the lookup used to reserve grid x D
    # float64 (24 GB). A run of this size needs ~1.5 GB of address space (numpy, sklearn, torch).
    import subprocess
    import sys

    code = _LIMITED.format(limit=4 * 2**30)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "5"
