"""End to end: spec → jobs → local executor → Parquet store → figures, with real training."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pandas as pd
import pytest
from conftest import tiny_spec

from benchmark.jobs import run_job
from benchmark.spec import expand, load_spec
from benchmark.store import ResultsStore


def _cli(*args, cwd, **kw):
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *args], capture_output=True,
                          text=True, cwd=cwd, **kw)


def test_tiny_study_end_to_end(tmp_path, write_spec):
    spec = write_spec(tiny_spec(evaluation={"metrics": ["mig"], "representations": ["mean", "sampled"],
                                            "overrides": {"mig": {"num_train": 200}}}))
    out = _cli("run", str(spec), "--results", str(tmp_path / "res"), "--workers", "2", "--quiet",
               cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = tmp_path / "res" / "tiny" / "rows"
    df = pd.read_parquet(rows)
    assert df["job_id"].nunique() == 4
    mig = df[df.metric == "mig"]
    assert set(mig.representation) == {"mean", "sampled"}
    assert set(mig.key) == {"discrete_mig"}
    assert mig.value.between(0, 1).all()
    train = df[df.metric == "train"]
    assert {"elbo", "reconstruction_loss", "kl_loss"} <= set(train.key)
    assert train.representation.isna().all()
    assert set(df.beta.dropna()) == {1.0, 4.0}
    assert (df.train_steps == 4).all()
    assert df.dataset_source.eq("procedural").all()
    cfg = json.loads(df.job_config.iloc[0])
    assert cfg["training"]["steps"] == 4
    provenance = [json.loads(p) for p in df.provenance]
    # MIG fits no GBT; the job trained with resources.cpus_per_job (1) threads; its peak memory.
    assert all(p["source"] == "benchmark" and p["gbt_fits"] == {} and p["torch_threads"] == 1
               for p in provenance)
    assert all(p["peak_rss_mb"] > 0 for p in provenance)
    import duckdb

    n = duckdb.connect().execute(
        f"select count(distinct job_id) from read_parquet('{rows}/*.parquet')").fetchone()[0]
    assert n == 4
    figures = tmp_path / "res" / "tiny" / "figures"
    assert any(p.suffix == ".png" and p.stat().st_size > 0 for p in figures.rglob("*"))
    # The traversed model's views, from its checkpoint, with the spec's figures.view_points.
    views = sorted(p.name.split("-")[0] for p in figures.rglob("*.png")
                   if p.name.startswith(("tsne-", "interpolation-")))
    assert views == ["interpolation", "tsne"]
    assert "100 observations" in (figures / "index.html").read_text()

    again = _cli("run", str(spec), "--results", str(tmp_path / "res"), "--quiet", "--no-figures",
                 cwd=tmp_path)
    assert again.returncode == 0
    assert "4 done before" in again.stderr
    status = _cli("status", str(spec), "--results", str(tmp_path / "res"), cwd=tmp_path)
    assert "4 done, 0 failed, 0 pending" in status.stdout


def test_a_failing_job_is_recorded_with_its_reason(tmp_path, write_spec):
    job = expand(load_spec(write_spec(tiny_spec())))[0]
    broken = replace(job, dataset_source="file", data_dir=str(tmp_path / "no-data-here"))
    store = ResultsStore(tmp_path / "study")
    outcome = run_job(broken, store)
    assert outcome.status == "failed"
    record = store.failures()[job.job_id]
    assert record["kind"] == "error" and record["reason"] and record["traceback"]
    assert not store.is_done(job.job_id)


def test_rows_record_which_backend_fitted_the_gbts(tmp_path, write_spec):
    spec = tiny_spec(evaluation={"metrics": ["dci"], "representations": ["mean"],
                                 "overrides": {"dci": {"num_train": 200, "num_test": 100,
                                                       "n_estimators": 3}}})
    job = expand(load_spec(write_spec(spec)))[0]
    store = ResultsStore(tmp_path / "study")
    assert run_job(job, store).status == "done"
    provenance = set(store.read_rows(job.job_id).column("provenance").to_pylist())
    assert len(provenance) == 1  # one job, one provenance on every row
    fits = json.loads(provenance.pop())["gbt_fits"]
    # DCI fits one GBT per factor (dSprites: 5), each by the port or by sklearn with its reason.
    assert sum(fits.values()) == 5
    assert all(k == "numba-port" or k.startswith("sklearn (") for k in fits)


@pytest.mark.slow
def test_killed_run_resumes_without_duplicate_or_lost_rows(tmp_path, write_spec):
    spec = write_spec(tiny_spec(seeds=[0, 1, 2, 3],
                                training={"steps": 40, "batch_size": 16, "checkpoint_every": 5}))
    jobs = expand(load_spec(spec))
    res = tmp_path / "res"
    proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "run", str(spec), "--results",
                             str(res), "--workers", "2", "--quiet", "--no-figures"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    rows = res / "tiny" / "rows"
    deadline = time.time() + 300
    while time.time() < deadline and not (rows.is_dir() and any(rows.glob("*.parquet"))):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-study
    proc.wait()
    finished_before = {p.stem for p in rows.glob("*.parquet")}
    assert 0 < len(finished_before) < len(jobs)

    out = _cli("run", str(spec), "--results", str(res), "--workers", "2", "--quiet",
               "--no-figures", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    df = pd.read_parquet(rows)
    assert df.job_id.nunique() == len(jobs)
    assert not df.duplicated(["job_id", "representation", "metric", "key"]).any()
    assert not [p for p in rows.iterdir() if p.suffix != ".parquet"]  # no temporary files
