"""Spec loading, validation, grid expansion and job ids."""

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, tiny_spec

from benchmark.errors import UserError
from benchmark.models import METHODS, MethodSpec, Param
from benchmark.schema import COLUMN_NAMES
from benchmark.settings import NOT_IN_MODEL_ID, RESUME_KEYS, TrainingSettings
from benchmark.spec import expand, load_spec, select, stable_hash

FULL = ROOT / "study_specs" / "unsupervised.yaml"


def test_full_study_is_the_locatello_grid():
    jobs = expand(load_spec(FULL))
    assert len(jobs) == 12_600
    assert len({j.job_id for j in jobs}) == 12_600
    per_dataset = Counter(j.dataset for j in jobs)
    assert list(per_dataset) == ["dsprites_full", "color_dsprites", "noisy_dsprites",
                                 "scream_dsprites", "smallnorb", "cars3d", "shapes3d"]
    assert set(per_dataset.values()) == {1800}
    per_method = Counter(j.model for j in jobs)
    assert per_method == {m: 2100 for m in ["beta_vae", "factor_vae", "dip_vae_i", "dip_vae_ii",
                                            "beta_tc_vae", "annealed_vae"]}
    # dlib's numbering: model_num = dataset_idx*1800 + model_idx*50 + seed
    assert jobs[1800 + 3 * 50 + 7].dataset == "color_dsprites"
    assert jobs[1800 + 3 * 50 + 7].seed == 7
    assert jobs[1800 + 3 * 50 + 7].params["beta"] == 6.0
    betas = sorted({j.params["beta"] for j in jobs if j.model == "beta_vae"})
    assert betas == [1, 2, 4, 6, 8, 16]
    c_max = sorted({j.params["c_max"] for j in jobs if j.model == "annealed_vae"})
    assert c_max == [5, 10, 25, 50, 75, 100]
    assert {j.training["steps"] for j in jobs} == {300_000}
    assert {j.training["batch_size"] for j in jobs} == {64}
    assert {j.training["num_latent"] for j in jobs} == {10}


def test_job_ids_do_not_depend_on_key_order(write_spec):
    spec = tiny_spec()
    reordered = dict(reversed(list(spec.items())))
    reordered["training"] = dict(reversed(list(spec["training"].items())))
    a = [j.job_id for j in expand(load_spec(write_spec(spec, "a.yaml")))]
    b = [j.job_id for j in expand(load_spec(write_spec(reordered, "b.yaml")))]
    assert a == b and len(set(a)) == 4


def test_job_ids_are_the_same_in_another_process(write_spec):
    path = write_spec(tiny_spec())
    here = [j.job_id for j in expand(load_spec(path))]
    code = ("import sys; from benchmark.spec import expand, load_spec; "
            "print(' '.join(j.job_id for j in expand(load_spec(sys.argv[1]))))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], check=True, capture_output=True,
                         text=True, env={"PYTHONHASHSEED": "123", "PATH": "", "PYTHONPATH": str(ROOT)})
    assert out.stdout.split() == here


def test_hash_is_a_fixed_function_of_the_config():
    # Pinned value: a change here would orphan every existing results store.
    assert stable_hash({"b": [1, 2.5], "a": "x"}) == stable_hash({"a": "x", "b": [1, 2.5]})
    assert stable_hash({"a": "x", "b": [1, 2.5]}) == "66efddae6a975003"


def test_what_changes_an_id(write_spec):
    base = expand(load_spec(write_spec(tiny_spec(), "base.yaml")))[0]
    more_steps = tiny_spec(training={"steps": 5, "batch_size": 8, "checkpoint_every": 2})
    other_eval = tiny_spec(evaluation={"metrics": ["mig"], "representations": ["mean", "sampled"]})
    other_ckpt = tiny_spec(training={"steps": 4, "batch_size": 8, "checkpoint_every": 1,
                                     "device": "cpu"})
    j_steps = expand(load_spec(write_spec(more_steps, "s.yaml")))[0]
    j_eval = expand(load_spec(write_spec(other_eval, "e.yaml")))[0]
    j_ckpt = expand(load_spec(write_spec(other_ckpt, "c.yaml")))[0]
    assert j_steps.job_id != base.job_id and j_steps.model_id != base.model_id
    # Another evaluation is another job of the same trained model (its checkpoint is reused).
    assert j_eval.job_id != base.job_id and j_eval.model_id == base.model_id
    # Checkpoint cadence and device do not change what is trained.
    assert j_ckpt.job_id == base.job_id


def test_defaults_fill_in_and_give_the_same_id(write_spec):
    explicit = tiny_spec(methods={"beta_vae": {"beta": 1}}, seeds=[0])
    implicit = tiny_spec(methods={"beta_vae": None}, seeds=[0])
    a = expand(load_spec(write_spec(explicit, "a.yaml")))
    b = expand(load_spec(write_spec(implicit, "b.yaml")))
    assert a[0].job_id == b[0].job_id


def test_seed_range_and_filters(write_spec):
    jobs = expand(load_spec(write_spec(tiny_spec(seeds={"start": 3, "count": 4}))))
    assert sorted({j.seed for j in jobs}) == [3, 4, 5, 6]
    assert len(select(jobs, ["seed=4"])) == 2
    assert len(select(jobs, ["beta=4", "seed=4"])) == 1
    assert len(select(jobs, ["model=beta_vae"], limit=3)) == 3
    with pytest.raises(UserError, match="KEY=VALUE"):
        select(jobs, ["seed"])


BAD_SPECS = {
    "yaml_syntax": ("study: x\nmethods: {beta_vae: [\n", "invalid YAML"),
    "python_tag": ("!!python/object/apply:os.system ['echo pwned']\n", "invalid YAML"),
    "python_tag_inside": (yaml.safe_dump(tiny_spec()) + "x: !!python/object:os.system {}\n",
                          "invalid YAML"),
    "not_a_mapping": ("- 1\n- 2\n", "mapping"),
    "unknown_method": (tiny_spec(methods={"gan_of_doom": {"beta": 1}}), "unknown method"),
    "unknown_dataset": (tiny_spec(datasets=["mnist"]), "unknown dataset"),
    "unknown_hyperparameter": (tiny_spec(methods={"beta_vae": {"gamma": 3}}), "gamma"),
    "wrong_type": (tiny_spec(training={"steps": "many"}), "training.steps"),
    "negative_steps": (tiny_spec(training={"steps": -5}), "training.steps"),
    "zero_steps": (tiny_spec(training={"steps": 0}), "steps must be at least 1"),
    "negative_seed": (tiny_spec(seeds=[0, -1]), "non-negative"),
    "empty_seeds": (tiny_spec(seeds=[]), "no seed"),
    "zero_seed_count": (tiny_spec(seeds={"start": 0, "count": 0}), "seeds"),
    "empty_methods": (tiny_spec(methods={}), "no method"),
    "empty_datasets": (tiny_spec(datasets=[]), "no dataset"),
    "empty_sweep": (tiny_spec(methods={"beta_vae": {"beta": []}}), "empty list"),
    "escaping_study": (tiny_spec(study="../../etc"), "study"),
    "absolute_study": (tiny_spec(study="/etc"), "study"),
    "dotdot_study": (tiny_spec(study=".."), "study"),
    "unknown_field": (tiny_spec(trainig={"steps": 3}), "trainig"),
    "unknown_metric": (tiny_spec(evaluation={"metrics": ["accuracy_of_vibes"]}), "unknown metric"),
    "bad_source": (tiny_spec(datasets=[{"name": "dsprites_full", "source": "internet"}]), "source"),
    "duplicate_seed": (tiny_spec(seeds=[1, 1]), "twice"),
}


def _write_bad(tmp_path: Path, name: str, content) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


@pytest.mark.parametrize("name", sorted(BAD_SPECS))
def test_bad_spec_is_one_clear_line(tmp_path, name):
    content, expected = BAD_SPECS[name]
    path = _write_bad(tmp_path, name, content)
    with pytest.raises(UserError, match=expected) as info:
        expand(load_spec(path))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("column", sorted(COLUMN_NAMES))
def test_a_hyperparameter_may_not_name_a_results_column(write_spec, monkeypatch, column):
    # No shipped method has one: a method that does (each numeric one becomes a float column).
    monkeypatch.setitem(METHODS, "clash", MethodSpec("clash", lambda ctx, p: None,
                                                     {column: Param(1.0, float)}))
    path = write_spec(tiny_spec(methods={"clash": {column: 2.0}}))
    with pytest.raises(UserError, match=f"hyperparameter '{column}' of clash names a results column") as info:
        expand(load_spec(path))
    assert "\n" not in str(info.value)


def test_training_settings_marks():
    # The model id leaves these out: changing the set changes every model id and job id.
    assert NOT_IN_MODEL_ID == {"checkpoint_every", "device", "log_every", "data_on_device"}
    assert set(RESUME_KEYS) == {"num_latent", "batch_size", "learning_rate", "architecture",
                                "reconstruction_loss", "fit_samples"}
    assert set(TrainingSettings.model_fields) >= NOT_IN_MODEL_ID | set(RESUME_KEYS)
    with pytest.raises(UserError, match=r"^training\.learning_rate: .*greater than 0$"):
        TrainingSettings(learning_rate=0)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="directory"):
        load_spec(tmp_path)


@pytest.mark.parametrize("name", ["yaml_syntax", "python_tag", "unknown_method", "escaping_study",
                                  "empty_seeds", "wrong_type"])
def test_cli_bad_spec_exits_2_without_traceback_or_output(tmp_path, name):
    content, expected = BAD_SPECS[name]
    path = _write_bad(tmp_path, name, content)
    results = tmp_path / "results"
    for command in (["run", str(path), "--results", str(results)],
                    ["run", str(path), "--dry-run"], ["status", str(path), "--results", str(results)]):
        out = subprocess.run([sys.executable, "-m", "benchmark.cli", *command], capture_output=True,
                             text=True, cwd=tmp_path)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
        assert expected.split()[0] in lines[0]
        assert "Traceback" not in out.stderr
        assert not results.exists()
    assert not (tmp_path.parent / "etc").exists()


def test_cli_missing_spec_and_directory(tmp_path):
    for target in [tmp_path / "missing.yaml", tmp_path]:
        out = subprocess.run([sys.executable, "-m", "benchmark.cli", "run", str(target)],
                             capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 2
        assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1


def test_dry_run_prints_counts_per_dataset_and_method():
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "run", str(FULL), "--dry-run"],
                         capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0] == "study unsupervised_study_v1: 12600 jobs"
    assert lines[1].split() == ["dataset", "beta_vae", "factor_vae", "dip_vae_i", "dip_vae_ii",
                                "beta_tc_vae", "annealed_vae", "total"]
    assert lines[2].split() == ["dsprites_full"] + ["300"] * 6 + ["1800"]
    assert lines[-1].split() == ["total"] + ["2100"] * 6 + ["12600"]


def test_course_systems_spec_validates_and_expands():
    spec = load_spec(ROOT / "study_specs" / "course_systems.yaml")
    jobs = expand(spec)
    assert len(jobs) == 21 and len({j.job_id for j in jobs}) == 21
    assert Counter(j.model for j in jobs) == {"beta_vae": 9, "information_dropout": 6,
                                              "sparse_coding": 6}
    schedules = Counter(j.params.get("beta_schedule", "constant") for j in jobs
                        if j.model == "beta_vae")
    assert schedules == {"constant": 3, "linear": 3, "exponential": 3}
    annealed = [j.params for j in jobs if j.params.get("beta_schedule") == "exponential"]
    assert annealed[0]["beta_start"] > annealed[0]["beta_end"]  # high to low
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "run",
                          str(ROOT / "study_specs" / "course_systems.yaml"), "--dry-run"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[0] == "study course_systems: 21 jobs"


def test_figure_settings():
    spec = load_spec(FULL)
    assert spec.figures.view_points == 2000  # the default
    assert load_spec(ROOT / "study_specs" / "quickstart.yaml").figures.view_points < 2000


@pytest.mark.parametrize("value", [-1, "many"])
def test_bad_figure_settings_are_one_line(tmp_path, value):
    path = _write_bad(tmp_path, "figs", tiny_spec(figures={"view_points": value}))
    with pytest.raises(UserError, match="figures.view_points") as info:
        load_spec(path)
    assert "\n" not in str(info.value)
