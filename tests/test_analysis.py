"""Tests of the analysis package on synthetic results stores with known structure."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import spearmanr

from analysis import figures, load, traversals, views
from analysis.__main__ import main
from analysis.distributions import variance_decomposition
from analysis.heatmaps import rank_correlation
from analysis.names import score_columns
from analysis.synthetic import job_rows, write_synthetic_store
from benchmark.errors import UserError
from benchmark.schema import rows_schema

PAPER_NAMES = ["BetaVAE Score", "FactorVAE Score", "MIG", "DCI Disentanglement", "Modularity",
               "SAP"]


class FakeModel:
    """The trained-model protocol of benchmark.training.load_trained, in numpy: the code is the
    mean of each of D horizontal bands of the image; decoding paints band d with sigmoid(z_d)."""

    def __init__(self, num_latent: int = 3):
        self.num_latent = num_latent
        self.decoded: list[np.ndarray] = []

    def represent(self, mode: str = "mean"):
        assert mode == "mean"

        def f(obs):
            bands = np.array_split(obs.mean(axis=(1, 3)), self.num_latent, axis=1)
            return np.stack([b.mean(axis=1) for b in bands], axis=1)
        return f

    def decode(self, z):
        self.decoded.append(np.array(z))
        n, d = z.shape
        rows = np.repeat(1 / (1 + np.exp(-z)), 8 // d + 1, axis=1)[:, :8]
        return np.repeat(rows[:, None, :, None], 8, axis=3).astype(np.float32)

    def reconstruct(self, obs):
        return self.decode(self.represent("mean")(obs))


class FakeData:
    def sample_observations(self, n, rng):
        return np.random.default_rng(rng).uniform(size=(n, 1, 8, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("results") / "synthetic"
    write_synthetic_store(d, datasets=("dsprites_full",), seeds=(0, 1))
    (d / "failures").mkdir()
    (d / "failures" / "bad.json").write_text(json.dumps(
        {"job_id": "bad", "reason": "Diverged at step 7: loss is nan", "kind": "diverged",
         "traceback": "...", "failed_at": "2026-01-01T00:00:00Z"}))
    return d


@pytest.fixture()
def tiny(tmp_path) -> Path:
    """One β-VAE job: quick to draw."""
    d = tmp_path / "tiny"
    write_synthetic_store(d, datasets=("dsprites_full",), methods={"beta_vae": ("beta", [1.0])},
                          seeds=(0,))
    return d


@pytest.fixture(scope="module")
def drawn(study, tmp_path_factory):
    out = tmp_path_factory.mktemp("figs")
    return figures.draw_all(study, out, traversal_jobs=[]), out


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- loading


def test_load_unifies_schemas_across_files(study):
    df = load.load_results(study)
    assert len(df) == sum(pq.read_metadata(f).num_rows for f in (study / "rows").glob("*"))
    assert {"beta", "gamma"} <= set(load.hyperparameter_columns(df))
    pca = df[df["model"] == "pca"]
    assert pca["beta"].isna().all() and pca["gamma"].isna().all()
    assert df.loc[df["model"] == "beta_vae", "beta"].notna().all()
    assert df["job_id"].nunique() == 12


def test_cache_gives_the_same_frame_as_the_files(tmp_path):
    d = tmp_path / "s"
    write_synthetic_store(d, datasets=("shapes3d",), seeds=(0, 1))
    cols = figures.FIGURE_COLUMNS
    pd.testing.assert_frame_equal(load.load_results(d, cache=True), load.load_results(d))
    assert (d / load.CACHE_FILE).is_file()
    pd.testing.assert_frame_equal(load.load_results(d, cols, cache=True), load.load_results(d, cols))
    # A removed, a rewritten and a new rows file: the cache follows the files.
    files = sorted((d / "rows").glob("*.parquet"))
    files[0].unlink()
    t = pq.read_table(files[1])
    t = t.set_column(t.schema.get_field_index("value"), "value",
                     pa.array(np.zeros(t.num_rows)))
    pq.write_table(t, files[1])
    df = job_rows("synthetic", "shapes3d", "beta_vae", {"beta": 2.0}, 7, np.random.default_rng(1))
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), d / "rows" / "zz.parquet")
    fresh = load.load_results(d)
    pd.testing.assert_frame_equal(load.load_results(d, cache=True), fresh)
    pd.testing.assert_frame_equal(load.load_results(d, cache=True), fresh)  # from the cache
    assert (fresh.loc[fresh["job_id"] == t["job_id"][0].as_py(), "value"] == 0).all()


def test_load_results_root_and_bad_input(study, tmp_path):
    root = tmp_path / "results"
    write_synthetic_store(root / "a", datasets=("shapes3d",), seeds=(0,), study="a")
    write_synthetic_store(root / "b", datasets=("shapes3d",), seeds=(0,), study="b")
    df = load.load_results(root)
    assert sorted(df["study"].unique()) == ["a", "b"]
    with pytest.raises(UserError, match="not found"):
        load.load_results(tmp_path / "nowhere")
    (tmp_path / "empty" / "rows").mkdir(parents=True)
    with pytest.raises(UserError, match="no result rows"):
        load.load_results(tmp_path / "empty")


def test_wide_one_row_per_job_and_representation(study):
    df = load.load_results(study)
    w = load.wide(df)
    assert len(w) == 12 * 2
    assert not w.duplicated(["job_id", "representation"]).any()
    row = w[(w["job_id"] == w["job_id"].iat[0]) & (w["representation"] == "sampled")].iloc[0]
    tidy = df[(df["job_id"] == row["job_id"]) & (df["representation"] == "sampled")
              & (df["metric"] == "mig")]
    assert row["mig.discrete_mig"] == tidy["value"].item()
    # Training summaries are job-level: the same on both representation rows.
    per_job = w.groupby("job_id")["train.kl_dim_0"].nunique()
    assert (per_job == 1).all()
    assert {"beta", "gamma", "seed", "model"} <= set(w.columns)


def test_wide_keeps_jobs_with_training_rows_only(tmp_path):
    df = job_rows("s", "identity", "beta_vae", {"beta": 1.0}, 0, np.random.default_rng(0),
                  representations=())
    w = load.wide(df)
    assert len(w) == 1 and pd.isna(w["representation"].iat[0]) and "train.elbo" in w


# ---------------------------------------------------------------- maths


def test_rank_correlation_known_values():
    t = pd.DataFrame({"a": [1, 2, 3, 4, 5], "b": [1, 4, 9, 16, 25], "c": [5, 4, 3, 2, 1],
                      "k": [1, 1, 1, 1, 1], "sparse": [1, 2, None, None, None]})
    m = rank_correlation(t, ["a", "b", "c", "k", "sparse"])
    assert m.loc["a", "b"] == pytest.approx(1) and m.loc["a", "c"] == pytest.approx(-1)
    assert np.isnan(m.loc["a", "k"]) and np.isnan(m.loc["a", "sparse"])  # constant; 2 pairs


def test_variance_decomposition_nested_anova():
    # method A: settings (1, 1) and (3, 3); method B: one setting (5, 7). Grand mean 3.333.
    y = [1, 1, 3, 3, 5, 7]
    shares = variance_decomposition(y, ["A", "A", "A", "A", "B", "B"], [1, 1, 2, 2, 0, 0])
    total = sum((v - np.mean(y)) ** 2 for v in y)
    assert shares["method"] == pytest.approx((4 * (2 - np.mean(y)) ** 2
                                              + 2 * (6 - np.mean(y)) ** 2) / total)
    assert shares["hyperparameter"] == pytest.approx(4 * 1 / total)
    assert shares["seed"] == pytest.approx(2 / total)
    assert sum(shares.values()) == pytest.approx(1)
    assert np.isnan(variance_decomposition([2, 2], ["A", "A"], [0, 0])["seed"])


def test_score_columns_use_the_papers_names_and_order():
    cols = ["sap.SAP_score", "mig.discrete_mig", "dci.disentanglement", "dci.completeness",
            "beta_vae.eval_accuracy", "factor_vae.eval_accuracy", "downstream_lr.efficiency",
            "modularity_explicitness.modularity_score", "train.elbo", "dataset", "irs.IRS"]
    assert list(score_columns(cols).values()) == PAPER_NAMES + ["IRS"]


# ---------------------------------------------------------------- figures


def test_heatmap_numbers_equal_known_values(study, drawn):
    _, out = drawn
    csv = out / "dsprites_full-procedural" / "mean-score_rank_correlation.csv"
    m = pd.read_csv(csv, index_col=0)
    assert list(m.index) == PAPER_NAMES and list(m.columns) == PAPER_NAMES
    assert m.loc["BetaVAE Score", "FactorVAE Score"] == 100
    assert m.loc["BetaVAE Score", "MIG"] == -100 and m.loc["MIG", "FactorVAE Score"] == -100
    assert (np.diag(m.to_numpy()) == 100).all()
    # The other cells: Spearman ×100 computed independently from the tidy rows.
    df = load.load_results(study)
    mean = df[df["representation"] == "mean"]
    pick = {"DCI Disentanglement": ("dci", "disentanglement"), "SAP": ("sap", "SAP_score"),
            "Modularity": ("modularity_explicitness", "modularity_score")}
    series = {n: mean[(mean["metric"] == mk) & (mean["key"] == k)].set_index("job_id")["value"]
              .sort_index() for n, (mk, k) in pick.items()}
    for a in pick:
        for b in pick:
            expected = round(spearmanr(series[a], series[b]).statistic * 100)
            assert m.loc[a, b] == expected


def test_every_figure_written_nonempty_and_indexed(drawn):
    rep, out = drawn
    assert rep.figures and rep.index == out / "index.html"
    html = rep.index.read_text()
    for f in rep.figures:
        assert f.path.is_file() and f.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f.path.stat().st_size > 1000 and f.caption
        assert f'src="{f.path.relative_to(out).as_posix()}"' in html
    assert 'href="dsprites_full-procedural/mean-score_rank_correlation.csv"' in html
    names = {f.path.name for f in rep.figures}
    for expected in ["mean-score_rank_correlation.png", "sampled-score_rank_correlation.png",
                     "mean-scores_vs_downstream.png",
                     "mean-efficiency_vs_factor_vae.eval_accuracy.png",
                     "mean-violins-mig.discrete_mig.png", "mean-variance_explained.png",
                     "total_correlation_sampled_vs_mean.png", "kl_per_dimension.png"]:
        assert expected in names
    assert "Diverged at step 7" in html and "2.13.0" in html  # failures and versions tables
    assert not rep.skipped


def test_rerun_is_byte_identical(study, drawn, tmp_path):
    _, out = drawn
    again = tmp_path / "again"
    figures.draw_all(study, again, traversal_jobs=[])
    assert _digest(again) == _digest(out)


def test_sparse_stores_draw_what_they_can(tmp_path):
    # One job, one seed, no downstream rows, only the mean representation.
    d = tmp_path / "one"
    (d / "rows").mkdir(parents=True)
    df = job_rows("one", "dsprites_full", "beta_vae", {"beta": 1.0}, 0,
                  np.random.default_rng(0), representations=("mean",))
    df = df[~df["metric"].isin(["downstream_lr", "downstream_gbt"])]
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), d / "rows" / "j.parquet")
    rep = figures.draw_all(d, traversal_jobs=None)
    assert rep.index == d / "figures" / "index.html" and rep.index.is_file()
    skipped = {s.what: s.reason for s in rep.skipped}
    assert "at least 3 models" in skipped["score rank correlation (mean representation)"]
    assert "downstream" in skipped["scores vs downstream (mean representation)"]
    assert "not identifiable" in skipped["variance explained (mean representation)"]
    assert "both the mean and the sampled" in skipped["total correlation, sampled vs mean"]
    assert "no checkpoints" in skipped["latent traversals"]
    assert {f.path.name for f in rep.figures} >= {"kl_per_dimension.png",
                                                 "mean-violins-mig.discrete_mig.png"}
    html = rep.index.read_text()
    assert "not identifiable" in html


def test_results_root_draws_each_study(tmp_path):
    for name in ("a", "b"):
        write_synthetic_store(tmp_path / name, datasets=("shapes3d",), study=name,
                              methods={"pca": None}, seeds=(0,))
    rep = figures.draw_all(tmp_path, traversal_jobs=[])
    assert rep.indexes == [tmp_path / "a" / "figures" / "index.html",
                           tmp_path / "b" / "figures" / "index.html"]
    assert all(p.is_file() for p in rep.indexes)


def test_settings_and_hyperparameter_columns(tmp_path):
    # A string column outside the contract is not a hyperparameter; a method with one setting
    # done so far is labelled by the hyperparameter other methods sweep.
    rng = np.random.default_rng(0)
    d = tmp_path / "s" / "rows"
    d.mkdir(parents=True)
    for method, beta, seed in [("beta_vae", 1.0, 0), ("beta_vae", 4.0, 0),
                               ("beta_tc_vae", 1.0, 0), ("beta_tc_vae", 1.0, 1)]:
        df = job_rows("s", "identity", method, {"beta": beta}, seed, rng)
        df["dataset_provenance"] = '{"renderer": "x"}'
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False),
                       d / f"{df['job_id'].iat[0]}.parquet")
    df = load.load_results(tmp_path / "s")
    assert load.hyperparameter_columns(df) == ["beta"]
    from analysis.distributions import settings
    w = load.wide(df)
    labels = settings(w, ["beta"]).assign(model=w["model"]).drop_duplicates(["model", "setting"])
    assert sorted(zip(labels["model"], labels["setting"], strict=True)) == [
        ("beta_tc_vae", "β=1"), ("beta_vae", "β=1"), ("beta_vae", "β=4")]


@pytest.mark.parametrize("cache", [False, True])
def test_a_store_from_before_the_provenance_column_still_reads(tmp_path, cache):
    # One file with today's columns minus `provenance` (written before it existed), one with it.
    d = tmp_path / "s" / "rows"
    d.mkdir(parents=True)
    new = rows_schema(["beta"])
    old = pa.schema([f for f in new if f.name != "provenance"])
    for job_id, schema in [("old", old), ("new", new)]:
        row = {"study": "s", "job_id": job_id, "model_id": job_id, "dataset": "identity",
               "dataset_source": "procedural", "model": "beta_vae", "model_params": "{}",
               "beta": 1.0, "seed": 0, "representation": "mean", "metric": "mig",
               "key": "discrete_mig", "value": 0.5, "provenance": '{"source": "benchmark"}'}
        row = {k: v for k, v in row.items() if k in schema.names}
        pq.write_table(pa.Table.from_pylist([row], schema=schema), d / f"{job_id}.parquet")
    df = load.load_results(tmp_path / "s", cache=cache).set_index("job_id")
    assert pd.isna(df.loc["old", "provenance"])
    assert df.loc["new", "provenance"] == '{"source": "benchmark"}'
    assert load.hyperparameter_columns(df.reset_index()) == ["beta"]
    assert list(load.wide(df.reset_index())["job_id"]) == ["new", "old"]


def test_store_with_only_failures_writes_an_index(tmp_path):
    d = tmp_path / "failed"
    (d / "rows").mkdir(parents=True)
    (d / "failures").mkdir()
    (d / "failures" / "x.json").write_text(json.dumps({"job_id": "x", "kind": "error",
                                                       "reason": "boom"}))
    rep = figures.draw_all(d)
    assert not rep.figures and "boom" in rep.index.read_text()


# ---------------------------------------------------------------- traversals


def test_traversal_grid_sweeps_one_dimension_per_row():
    model = FakeModel(3)
    obs = FakeData().sample_observations(1, 0)[0]
    values = np.array([-1.0, 0.0, 1.0])
    grid = traversals.traversal_grid(model, obs, values)
    assert grid.shape == (3, 3, 1, 8, 8)
    z = model.decoded[-1].reshape(3, 3, 3)
    code = model.represent()(obs[None])[0]
    for d in range(3):
        assert np.allclose(z[d, :, d], values)
        others = [i for i in range(3) if i != d]
        assert np.allclose(z[d][:, others], code[others])


def test_traversals_from_checkpoints(tiny, tmp_path, monkeypatch):
    model_id = load.load_results(tiny)["model_id"].iat[0]
    ckpt = tiny / "checkpoints" / model_id
    ckpt.mkdir(parents=True)
    (ckpt / "last.pt").write_bytes(b"not read by the fake loader")
    # The real loader is absent (or cannot read this file): skipped with its reason.
    rep = figures.draw_all(tiny, tmp_path / "a", traversal_jobs=[model_id, "nope"])
    reasons = " ".join(s.reason for s in rep.skipped)
    assert "cannot load the model or its data" in reasons and "no such job" in reasons
    monkeypatch.setattr(traversals, "load_model", lambda path: FakeModel(4))
    monkeypatch.setattr(figures, "get_dataset", lambda name, source: FakeData())
    rep = figures.draw_all(tiny, tmp_path / "b", traversal_jobs=None)  # default pick
    trav = [f for f in rep.figures if f.path.name.startswith("traversal-")]
    assert len(trav) == 1 and trav[0].path.stat().st_size > 1000
    assert "sorted by KL" in trav[0].caption
    assert trav[0].path.relative_to(tmp_path / "b").as_posix() in rep.index.read_text()


# ---------------------------------------------------------------- views (t-SNE, interpolations)


class ViewData(FakeData):
    """FakeData with factors: two factors that set the mean brightness of the top and bottom
    halves, so FakeModel's codes separate them."""

    name = "fake"
    factor_names = ("top", "bottom")
    factor_sizes = (4, 3)

    def sample(self, n, rng):
        factors = np.stack([rng.integers(0, s, n) for s in self.factor_sizes], axis=1)
        obs = np.zeros((n, 1, 8, 8), np.float32)
        obs[:, 0, :4] = (factors[:, 0] / 3)[:, None, None]
        obs[:, 0, 4:] = (factors[:, 1] / 2)[:, None, None]
        return factors, obs + rng.uniform(0, 0.05, size=obs.shape).astype(np.float32)


def _checkpointed(study: Path) -> str:
    model_id = load.load_results(study)["model_id"].iat[0]
    (study / "checkpoints" / model_id).mkdir(parents=True)
    (study / "checkpoints" / model_id / "last.pt").write_bytes(b"not read by the fake loader")
    return model_id


def test_views_drawn_byte_identical_and_captioned(tiny, tmp_path, monkeypatch):
    _checkpointed(tiny)
    monkeypatch.setattr(traversals, "load_model", lambda path: FakeModel(4))
    monkeypatch.setattr(figures, "get_dataset", lambda name, source: ViewData())
    reps = [figures.draw_all(tiny, tmp_path / k, view_points=60) for k in ("a", "b")]
    drawn = {f.path.name.split("-")[0]: f for f in reps[0].figures
             if f.path.name.startswith(("tsne-", "interpolation-"))}
    assert set(drawn) == {"tsne", "interpolation"}
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert a == b  # every file, the views and index.html included
    job = load.load_results(tiny)["job_id"].iat[0]
    page = reps[0].index.read_text()
    for f in drawn.values():
        assert f.path.stat().st_size > 1000
        assert f.path.relative_to(tmp_path / "a").as_posix() in page
        assert job in f.caption and "β-VAE" in f.caption and "seed 0" in f.caption
    assert "t-SNE" in drawn["tsne"].caption and "60 observations" in drawn["tsne"].caption
    assert "interpolation" in drawn["interpolation"].caption
    assert "60 observations" in page
    # Sub-headings: one per representation and one per model (its traversal and views under it).
    assert "Mean representation</h3>" in page and "Sampled representation</h3>" in page
    assert {f.group for f in drawn.values()} == {f"β-VAE, seed 0 (job {job})"}
    assert page.count(f"β-VAE, seed 0 (job {job})</") == 2  # the heading and its contents entry
    # The study's spec.yaml sets the default (as `benchmark run` stored it); 0: neither view.
    assert views.study_view_points(tiny) == 2000
    (tiny / "spec.yaml").write_text("study: tiny\nfigures: {view_points: 30}\n")
    assert views.study_view_points(tiny) == 30
    (tiny / "spec.yaml").write_text("study: tiny\nfigures: {view_points: 0}\n")
    rep = figures.draw_all(tiny, tmp_path / "c")
    assert not [f for f in rep.figures if f.path.name.startswith(("tsne-", "interpolation-"))]
    assert any(f.path.name.startswith("traversal-") for f in rep.figures)


def test_tsne_is_deterministic_and_separates_factors():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    codes = rng.normal(size=(200, 5)) + 8.0 * labels[:, None]
    e1, e2 = views.tsne_embedding(codes), views.tsne_embedding(codes)
    assert e1.shape == (200, 2) and np.array_equal(e1, e2)
    centres = [e1[labels == k].mean(0) for k in (0, 1)]
    spread = max(e1[labels == k].std(0).max() for k in (0, 1))
    assert np.linalg.norm(centres[0] - centres[1]) > 2 * spread


def test_interpolation_codes_run_from_a_to_b():
    a, b = np.zeros((2, 3)), np.ones((2, 3))
    z = views.interpolation_codes(a, b, 5)
    assert z.shape == (2, 5, 3)
    assert np.allclose(z[:, 0], a) and np.allclose(z[:, -1], b)
    assert np.allclose(z[0, :, 0], [0, 0.25, 0.5, 0.75, 1])


def test_views_skip_with_reasons(tmp_path):
    class NoDecoder(FakeModel):
        def decode(self, z):
            raise NotImplementedError

    class Constant(FakeModel):
        def represent(self, mode="mean"):
            return lambda obs: np.zeros((len(obs), self.num_latent))

    rep = figures.report.Report(out_dir=tmp_path)
    views.add_views(rep, NoDecoder(3), ViewData(), "j1", "title", tmp_path, "s", "g", 40)
    assert [f.path.name for f in rep.figures] == ["tsne-j1.png"]
    assert [(s.what, s.reason) for s in rep.skipped] == [
        ("interpolations of job j1", "the model has no decoder")]
    rep = figures.report.Report(out_dir=tmp_path)
    views.add_views(rep, Constant(3), FakeData(), "j2", "title", tmp_path, "s", "g", 40)
    assert "cannot draw observations" in rep.skipped[0].reason  # FakeData has no factors
    views.add_views(rep, Constant(3), ViewData(), "j3", "title", tmp_path, "s", "g", 40)
    assert "same mean code" in rep.skipped[-1].reason
    assert [f.path.name for f in rep.figures] == ["interpolation-j3.png"]


# ---------------------------------------------------------------- entry points


def test_cli(tiny, tmp_path, capsys):
    assert main([str(tiny), "--out", str(tmp_path / "o"), "--traversal-jobs"]) == 0
    assert "index:" in capsys.readouterr().out
    assert main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: results directory not found") and err.count("\n") == 1


def test_importing_analysis_does_not_import_torch():
    code = ("import sys, analysis, analysis.figures, analysis.load, analysis.traversals; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1]).returncode == 0


@pytest.mark.parametrize("cache", [False, True])
def test_unreadable_rows_files_are_skipped_and_reported(tmp_path, cache):
    d = tmp_path / "s"
    write_synthetic_store(d, datasets=("shapes3d",), methods={"pca": None}, seeds=(0, 1, 2))
    files = sorted((d / "rows").glob("*.parquet"))
    whole = load.load_results(d, cache=cache)
    files[1].write_bytes(files[1].read_bytes()[:100])  # truncated
    for _ in range(2):  # the second time from the cache's manifest, when cached
        seen: list = []
        df = load.load_results(d, cache=cache, on_unreadable=lambda p, why, seen=seen:
                               seen.append((p, why)))
        assert [p for p, _ in seen] == [files[1]] and seen[0][1]
        assert set(df["job_id"]) == set(whole["job_id"]) - {files[1].stem}
    for f in files:
        f.write_bytes(b"")
    with pytest.raises(UserError, match="3 unreadable files"):
        load.load_results(d, cache=cache, on_unreadable=lambda p, why: None)


def test_figures_skip_an_unreadable_rows_file_with_one_line(tmp_path):
    d = tmp_path / "s"
    write_synthetic_store(d, datasets=("shapes3d",), methods={"pca": None}, seeds=(0, 1, 2))
    bad = sorted((d / "rows").glob("*.parquet"))[0]
    bad.write_bytes(bad.read_bytes()[:100])
    rep = figures.draw_all(d, traversal_jobs=[])
    assert [s.what for s in rep.unreadable] == [str(bad)]
    lines = rep.summary().splitlines()
    assert "skipped 1 unreadable rows files" in rep.summary()
    assert sum(str(bad) in line for line in lines) == 1
    assert bad.name in rep.index.read_text()


def test_failures_are_read_as_the_store_reads_them(tmp_path):
    from benchmark.outcomes import FailureKind
    from benchmark.store import ResultsStore

    (tmp_path / "failures").mkdir()
    (tmp_path / "failures" / "a.json").write_text(json.dumps(
        {"job_id": "a", "kind": "diverged", "reason": "nan", "failed_at": "2026-01-01T00:00:00Z"}))
    (tmp_path / "failures" / "b.json").write_text("{cut sh")
    (tmp_path / "failures" / "c.json").write_bytes(b"\xff\xfe not text")
    (tmp_path / "failures" / "d.json").write_text("[1, 2]")
    df = load.load_failures(tmp_path)
    store = ResultsStore(tmp_path).failures()
    assert list(df.job_id) == sorted(store) == ["a", "b", "c", "d"]
    assert list(df.kind) == [store[j]["kind"] for j in df.job_id] == ["diverged"] + ["error"] * 3
    assert set(df.kind) <= {k.value for k in FailureKind}
    assert list(df.reason)[1:] == ["unreadable failure record"] * 3
