"""Higgins et al. 2017, Table 1: the table from a study's BetaVAE scores, the report's section, the
spec, and (slow) the spec shrunk and run end to end."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis import higgins_table1
from analysis.figures import draw_all
from analysis.report import Report
from benchmark.spec import expand, load_spec

SPEC = "study_specs/higgins_table1.yaml"


def wide_frame(models=None, seeds=(0, 1, 2), dataset="dsprites_full") -> pd.DataFrame:
    """Wide rows as `analysis.load.wide` gives them: one per job × representation."""
    models = models or [row.model for row in higgins_table1.ROWS]
    recs = []
    for i, model in enumerate(models):
        for seed in seeds:
            for rep in ("mean", "sampled"):
                recs.append({"job_id": f"{model}-{seed}", "dataset": dataset,
                             "dataset_source": "procedural", "model": model, "seed": seed,
                             "beta": 4.0 if model == "beta_vae" else np.nan,
                             "representation": rep,
                             "beta_vae.eval_accuracy": 0.5 + 0.05 * i + 0.01 * seed
                             + (0.001 if rep == "sampled" else 0.0)})
    return pd.DataFrame(recs)


def test_table_has_every_row_with_mean_and_std_over_seeds_in_percent():
    t = higgins_table1.table(wide_frame())
    assert list(t["row"]) == [row.label for row in higgins_table1.ROWS]
    pca = t.set_index("method").loc["pca"]
    assert pca["paper_mean"] == 84.9 and pca["paper_std"] == 0.4
    assert pca["mean_mean"] == pytest.approx(100 * (0.5 + 0.1 + 0.01))
    assert pca["mean_std"] == pytest.approx(1.0)  # seeds 0, 1, 2: +0, +1, +2 points
    assert pca["mean_seeds"] == 3 and pca["sampled_mean"] == pytest.approx(pca["mean_mean"] + 0.1)
    shown = higgins_table1.printed(t)
    assert shown.loc[0, "paper (%)"] == "100.00"  # ground truth: no deviation printed
    assert shown.loc[1, "paper (%)"] == "45.75 ± 0.80"
    assert shown.loc[2, "ours, mean representation (%)"] == "61.00 ± 1.00 (n = 3)"


def test_beta_vae_row_takes_the_papers_beta_only():
    w = wide_frame()
    other = w[w["model"] == "beta_vae"].assign(beta=16.0, job_id=lambda d: d["job_id"] + "-b16")
    other["beta_vae.eval_accuracy"] = 0.0
    t = higgins_table1.table(pd.concat([w, other]))
    assert t.set_index("method").loc["beta_vae", "mean_mean"] == pytest.approx(100 * (0.9 + 0.01))


def test_draw_writes_files_and_a_report_section(tmp_path):
    rep = Report(out_dir=tmp_path)
    higgins_table1.draw(wide_frame(), tmp_path, rep)
    folder = tmp_path / "dsprites_full-procedural"
    csv = pd.read_csv(folder / "higgins_table1.csv")
    assert len(csv) == len(higgins_table1.ROWS)
    md = (folder / "higgins_table1.md").read_text()
    assert "| DC-IGN | 99.30 ± 0.10 |" in md and "LogisticRegression" in md
    assert len(rep.sections) == 1 and "Table 1" in rep.sections[0].title
    assert 'href="dsprites_full-procedural/higgins_table1.csv"' in rep.sections[0].html


def test_draw_skips_a_partial_table_study_and_ignores_other_studies(tmp_path):
    rep = Report(out_dir=tmp_path)
    higgins_table1.draw(wide_frame(["ground_truth", "pca"]), tmp_path, rep)
    assert not rep.sections and len(rep.skipped) == 1
    assert "missing: Raw pixels, ICA, DC-IGN" in rep.skipped[0].reason
    rep = Report(out_dir=tmp_path)
    higgins_table1.draw(wide_frame(["pca", "beta_vae"]), tmp_path, rep)  # not a Table 1 study
    higgins_table1.draw(wide_frame(dataset="shapes3d"), tmp_path, rep)  # not dSprites
    assert not rep.sections and not rep.skipped


def test_the_spec_trains_every_row_of_the_table():
    spec = load_spec(SPEC)
    jobs = expand(spec)
    models = [row.model for row in higgins_table1.ROWS]
    assert sorted({j.model for j in jobs}) == sorted(models)
    assert len(jobs) == len(models) * len(spec.seeds) and len(spec.seeds) >= 2
    assert next(j for j in jobs if j.model == "beta_vae").params["beta"] == 4.0
    assert all(j.evaluation["metrics"] == ["beta_vae"] for j in jobs)


@pytest.mark.slow
def test_the_spec_shrunk_runs_end_to_end_and_draws_the_table(tmp_path):
    spec = yaml.safe_load(open(SPEC))
    spec["datasets"] = [{"name": "dsprites_full", "source": "procedural"}]
    spec["seeds"] = [0, 1]
    spec["training"] = {"steps": 6, "batch_size": 8, "eval_batches": 1, "fit_samples": 300,
                        "checkpoint_every": 100}
    spec["evaluation"]["overrides"] = {"beta_vae": {"batch_size": 16, "num_train": 200, "num_eval": 100}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "run", str(path), "--results",
                          str(tmp_path / "res"), "--workers", "2", "--quiet", "--no-figures"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    report = draw_all(tmp_path / "res" / "higgins_table1")
    table = pd.read_csv(tmp_path / "res" / "higgins_table1" / "figures" / "dsprites_full-procedural"
                        / "higgins_table1.csv")
    assert list(table["row"]) == [row.label for row in higgins_table1.ROWS]
    assert (table["mean_seeds"] == 2).all() and (table["sampled_seeds"] == 2).all()
    assert table["mean_mean"].between(0, 100).all()
    gt = table.set_index("method").loc["ground_truth"]  # the ceiling, equal over seeds
    assert gt["mean_mean"] >= 90 and gt["mean_mean"] == table["mean_mean"].max()
    assert gt["sampled_mean"] == gt["mean_mean"] and gt["mean_std"] == 0.0
    index = (tmp_path / "res" / "higgins_table1" / "figures" / "index.html").read_text()
    assert "Higgins et al. 2017, Table 1" in index
    assert any("ground_truth codes the factors" in s.reason for s in report.skipped)
    assert any("4096 latent dimensions" in s.reason for s in report.skipped)  # raw pixels
