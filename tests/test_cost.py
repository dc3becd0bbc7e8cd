"""`benchmark run --dry-run --estimate`: the cost arithmetic on a tiny spec and a fake throughput
table, the measured tables it reads, and its bad options."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, tiny_spec

from benchmark import cost
from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.spec import expand, load_spec

HOUR = 3600.0


def _row(device: str, pack: int, rate: float, strategy: str = "loop", cpu_rate: float | None = None) -> dict:
    row = {"device": device, "method": "beta_vae", "strategy": strategy, "pack": pack,
           "images_per_s": rate, "hardware": "test", "measured_at": "2026-01-01T00:00Z",
           "commit": "abc1234", "load_average": [0.1, 0.1]}
    if cpu_rate is not None:
        row["images_per_cpu_s"] = cpu_rate
    return row


FAKE = [_row("cpu-1thread", 1, 100.0, "alone", cpu_rate=200.0),
        _row("cpu-1thread", 4, 90.0, "loop", cpu_rate=160.0),
        _row("cuda:NVIDIA H100 80GB HBM3", 1, 1000.0, "alone"),
        _row("cuda:NVIDIA H100 80GB HBM3", 4, 3000.0, "vmap"),
        _row("cuda:NVIDIA H100 80GB HBM3", 4, 2000.0, "loop")]

# beta_vae x 2 settings x 2 seeds, factor_vae (2 global steps per iteration) and pca (fitted) x 2
# seeds: 3,600 steps at batch 10.
TINY = tiny_spec(methods={"beta_vae": {"beta": [1, 4]}, "factor_vae": {"gamma": 10}, "pca": {}},
                 training={"steps": 3600, "batch_size": 10},
                 evaluation={"metrics": ["mig", "sap"], "representations": ["mean", "sampled"]})
IMAGES = [36_000] * 4 + [18_000] * 2 + [0] * 2


def test_job_images_count_iterations_times_batch(write_spec):
    jobs = expand(load_spec(write_spec(TINY)))
    assert [j.model for j in jobs] == ["beta_vae"] * 4 + ["factor_vae"] * 2 + ["pca"] * 2
    assert cost.job_images(jobs) == IMAGES
    assert cost.iterations(5, 2, fitted=False) == 3  # the loop stops at the first step >= 5
    assert cost.iterations(5, 1, fitted=True) == 0


def test_estimate_arithmetic_with_a_fake_table():
    work = cost.StudyWork(images=tuple(IMAGES), metrics=("mig", "sap", "mig_exact"),
                          representations=2, overrides=False)
    est = cost.estimate(work, FAKE, {"mig": 0.3, "sap": 1.5}, k=4)
    assert (est.jobs, est.trained, est.images) == (8, 6, 180_000)
    rows = {(d, k): (s, total, hours) for d, k, s, total, hours, _ in est.training}
    # The CPU rows use images per CPU-second; the fastest strategy at each K wins.
    assert rows[("cpu-1thread", 1)] == ("alone", 200.0, pytest.approx(180_000 / 200 / HOUR))
    assert rows[("cpu-1thread", 4)] == ("loop", 160.0, pytest.approx(180_000 / 160 / HOUR))
    h100 = "cuda:NVIDIA H100 80GB HBM3"
    assert rows[(h100, 1)] == ("alone", 1000.0, pytest.approx(180_000 / 1000 / HOUR))
    assert rows[(h100, 4)] == ("vmap", 3000.0, pytest.approx(180_000 / 3000 / HOUR))
    assert est.bounds == []  # a GPU was measured: no bound
    assert est.eval_cpu_hours == pytest.approx(8 * 2 * 1.8 / HOUR)
    assert est.unmeasured_metrics == ("mig_exact",)
    text = cost.format_estimate(est, work, gpus=2, cpus_per_gpu=3, throughput_path="fake.json",
                                metric_source="test table")
    assert "180,000 images" in text and "K = 4 (--pack)" in text
    assert "not measured, counted as 0: mig_exact" in text
    train_h, eval_h = 180_000 / 3000 / HOUR / 2, 8 * 2 * 1.8 / HOUR / 6
    assert f"training {train_h:,.1f} h" in text and f"evaluation {eval_h:,.1f} h on 6 CPUs" in text


def test_unmeasured_k_falls_back_to_the_best_measured_and_says_so():
    work = cost.StudyWork(images=(3600,), metrics=(), representations=1, overrides=False)
    est = cost.estimate(work, FAKE, {}, k=64)
    assert {(d, k) for d, k, *_ in est.training} == {
        ("cpu-1thread", 1), ("cuda:NVIDIA H100 80GB HBM3", 1), ("cuda:NVIDIA H100 80GB HBM3", 4)}
    assert est.eval_cpu_hours is None
    text = cost.format_estimate(est, work, 1, 1, "fake.json", "")
    assert "K = 64 not measured" in text and "evaluation: no metric timing table" in text


def test_without_a_gpu_measurement_the_bound_is_shown_and_labelled():
    work = cost.StudyWork(images=(10**9,), metrics=(), representations=1, overrides=False)
    est = cost.estimate(work, FAKE[:2], {}, k=1)
    label, flops, hours = est.bounds[0]
    assert label == "H100 SXM at bf16 peak" and flops == 989e12
    assert hours == pytest.approx(10**9 * cost.FLOP_PER_IMAGE / 989e12 / HOUR)
    text = cost.format_estimate(est, work, 4, 8, "fake.json", "")
    assert "BOUND H100 SXM at bf16 peak" in text and "not measured" in text
    assert "no GPU measured" in text and "bench/gpu_check.sh" in text


def test_peaks_match_torch_device_names():
    assert cost.peak_for("NVIDIA H100 80GB HBM3").name == "H100 SXM"
    assert cost.peak_for("NVIDIA H100 PCIe").name == "H100 PCIe"
    assert cost.peak_for("NVIDIA H200").name == "H200 SXM"
    assert cost.peak_for("NVIDIA A100-SXM4-80GB").bf16 == 312e12
    assert cost.peak_for("NVIDIA GeForce GTX 1080") is None


def test_merge_replaces_the_same_measurement_and_keeps_others(tmp_path):
    path = tmp_path / "t.json"
    cost.merge_throughput(path, FAKE[:2])
    cost.merge_throughput(path, [_row("cpu-1thread", 4, 50.0, "loop", cpu_rate=70.0)])
    rows = cost.load_throughput(path)
    assert len(rows) == 2
    assert cost.best_row(rows, "cpu-1thread", 4)["images_per_cpu_s"] == 70.0
    assert cost.load_throughput(tmp_path / "absent.json") == []
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": [{"device": "cpu-1thread"}]}))
    with pytest.raises(UserError, match="lacks"):
        cost.load_throughput(bad)


def test_the_repository_tables_parse():
    seconds, source = cost.load_metric_seconds(cost.METRIC_SECONDS_TABLE)
    assert seconds["beta_vae"] == 138.9 and seconds["dci"] == 93.1
    assert sum(seconds.values()) == pytest.approx(279.7, abs=0.5)  # the table's TOTAL
    assert "metrics_speed.py" in source
    rows = cost.load_throughput(cost.THROUGHPUT_TABLE)
    assert cost.best_row(rows, "cpu-1thread", 1) is not None


def test_cli_estimate_prints_the_table(write_spec, tmp_path, capsys):
    table = tmp_path / "t.json"
    cost.merge_throughput(table, FAKE)
    assert main(["run", str(write_spec(TINY)), "--dry-run", "--estimate", "--pack", "4", "--gpus", "2",
                 "--cpus-per-gpu", "3", "--throughput", str(table)]) == 0
    out = capsys.readouterr().out
    assert "study tiny: 8 jobs" in out  # the dry run's counts come first, unchanged
    assert "180,000 images" in out and "K = 4 (--pack)" in out and "at 2 GPU(s) x 3 CPUs" in out


@pytest.mark.parametrize("extra, message", [
    (["--estimate"], "use it with --dry-run"),
    (["--dry-run", "--gpus", "2"], "--gpus is an option of --estimate"),
    (["--dry-run", "--estimate", "--pack", "0"], "--pack must be at least 1"),
    (["--dry-run", "--estimate", "--gpus", "0"], "--gpus must be at least 1"),
    (["--dry-run", "--estimate", "--cpus-per-gpu", "-1"], "--cpus-per-gpu must be at least 1"),
    (["--dry-run", "--estimate", "--throughput", "nowhere.json"], "no such file"),
])
def test_bad_options_are_one_line_errors(write_spec, capsys, extra, message):
    assert main(["run", str(write_spec(TINY))] + extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_full_study_estimate_runs(capsys):
    assert main(["run", str(ROOT / "study_specs" / "unsupervised.yaml"), "--dry-run", "--estimate",
                 "--pack", "16", "--gpus", "8", "--cpus-per-gpu", "16"]) == 0
    out = capsys.readouterr().out
    # 10,500 models x 300,000 iterations + 2,100 FactorVAEs x 150,000, at batch 64.
    assert f"{(10_500 * 300_000 + 2_100 * 150_000) * 64:,} images" in out


def _gpu_check(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), *args], capture_output=True,
                          text=True, env=env, timeout=600)


def test_gpu_check_fails_fast_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    done = _gpu_check()
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "no CUDA device" in done.stderr
    assert _gpu_check("--device", "tpu").returncode == 2


@pytest.mark.slow
def test_gpu_check_dry_mode_on_the_cpu_runs_every_step():
    done = _gpu_check("--device", "cpu")
    assert done.returncode == 0, done.stderr
    for part in ("## packed training", "best pack: K =", "--estimate --pack", "221,760,000,000 images",
                 "wrote "):
        assert part in done.stdout


def test_k_comes_from_resources_models_per_device(write_spec, tmp_path, capsys):
    from benchmark.spec import Resources

    if "models_per_device" not in Resources.model_fields:
        pytest.skip("the spec has no resources.models_per_device yet")
    table = tmp_path / "t.json"
    cost.merge_throughput(table, FAKE)
    spec = write_spec({**TINY, "resources": {"models_per_device": 4}})
    assert main(["run", str(spec), "--dry-run", "--estimate", "--throughput", str(table)]) == 0
    assert "K = 4 (resources.models_per_device)" in capsys.readouterr().out
