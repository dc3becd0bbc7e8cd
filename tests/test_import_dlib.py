"""`benchmark import dlib`: disentanglement_lib's outputs into our results store.

The fixtures are written here in disentanglement_lib's own layouts: `dlib_reproduce`'s folders
(``<model_num>/model/results/json/train_*.json``, ``metrics/<rep>/<metric>/results/json/*.json``
with the earlier steps' files copied along, gin values as strings) and the aggregated results
file that `dlib_aggregate_results` writes with pandas' ``DataFrame.to_json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from analysis import figures, load
from benchmark.cli import main
from benchmark.importers import import_dlib
from benchmark.importers.dlib import NOT_COMPARABLE, RESULT_KEYS, _known
from benchmark.store import ResultsStore, rows_schema

# model_num → (dataset, dlib's train bindings for the method, seed)
MODELS = {
    2: ("dsprites_full", {"model.name": "'beta_vae'", "model.model": "@vae()",
                          "vae.beta": "4.0"}, 0),
    61: ("dsprites_full", {"model.name": "'factor_vae'", "model.model": "@factor_vae()",
                           "factor_vae.gamma": "10.0",
                           "discriminator.discriminator_fn": "@fc_discriminator"}, 1),
    1510: ("dsprites_full", {"model.name": "'annealed_vae'", "model.model": "@annealed_vae()",
                             "annealed_vae.c_max": "25.0", "annealed_vae.gamma": "1000",
                             "annealed_vae.iteration_threshold": "100000"}, 0),
    903: ("dsprites_full", {"model.name": "'dip_vae_ii'", "model.model": "@dip_vae()",
                            "dip_vae.lambda_od": "2.0", "dip_vae.lambda_d_factor": "1.0",
                            "dip_vae.dip_type": "'ii'"}, 3),
    9020: ("cars3d", {"model.name": "'beta_tc_vae'", "model.model": "@beta_tc_vae()",
                      "beta_tc_vae.beta": "6.0"}, 20),
}
EXPECTED_MODEL = {2: ("beta_vae", {"beta": 4.0}), 61: ("factor_vae", {"gamma": 10.0}),
                  1510: ("annealed_vae", {"c_max": 25.0, "gamma": 1000.0,
                                          "iteration_threshold": 100000.0}),
                  903: ("dip_vae_ii", {"lambda_od": 2.0, "lambda_d_factor": 1.0}),
                  9020: ("beta_tc_vae", {"beta": 6.0})}
# dlib metric config name → (evaluation bindings, result keys → our (metric, key))
METRIC_CONFIGS = {
    "beta_vae_sklearn": ({"evaluation.evaluation_fn": "@beta_vae_sklearn",
                          "beta_vae_sklearn.batch_size": "64"},
                         {"train_accuracy": ("beta_vae", "train_accuracy"),
                          "eval_accuracy": ("beta_vae", "eval_accuracy")}),
    "factor_vae_metric": ({"evaluation.evaluation_fn": "@factor_vae_score",
                           "prune_dims.threshold": "0.05"},
                          {"train_accuracy": ("factor_vae", "train_accuracy"),
                           "eval_accuracy": ("factor_vae", "eval_accuracy"),
                           "num_active_dims": None}),
    "mig": ({"evaluation.evaluation_fn": "@mig", "discretizer.num_bins": "20"},
            {"discrete_mig": ("mig", "discrete_mig")}),
    "dci": ({"evaluation.evaluation_fn": "@dci", "dci.num_train": "10000"},
            {"informativeness_train": ("dci", "informativeness_train"),
             "informativeness_test": ("dci", "informativeness_test"),
             "disentanglement": ("dci", "disentanglement"),
             "completeness": ("dci", "completeness"), "foo_score": None}),
    "downstream_task_logistic_regression": (
        {"evaluation.evaluation_fn": "@downstream_task", "downstream_task.num_train":
         "[10, 100, 1000, 10000]", "predictor.predictor_fn": "@logistic_regression_cv"},
        {"100:mean_test_accuracy": ("downstream_lr", "100:mean_test_accuracy"),
         "10000:mean_test_accuracy": ("downstream_lr", "10000:mean_test_accuracy"),
         "100:test_accuracy_factor_3": ("downstream_lr", "100:test_accuracy_factor_3")}),
    "unsupervised": ({"evaluation.evaluation_fn": "@unsupervised_metrics"},
                     {"gaussian_total_correlation": ("unsupervised", "gaussian_total_correlation"),
                      "mutual_info_score": ("unsupervised", "mutual_info_score")}),
    "udr": ({"evaluation.evaluation_fn": "@udr_sklearn"}, {"model_scores": None}),
}
REPRESENTATIONS = {"mean": "@mean_representation", "sampled": "@sampled_representation"}


def _write(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))  # dlib: simplejson.dump(..., indent=2)


def _train_config(model_num: int) -> dict[str, str]:
    dataset, bindings, seed = MODELS[model_num]
    return {"dataset.name": f"'{dataset}'", "model.random_seed": str(seed),
            "model.model_num": str(model_num), "model.training_steps": "300000",
            "model.batch_size": "64", "encoder.num_latent": "10",
            "encoder.encoder_fn": "@conv_encoder", "decoder.decoder_fn": "@deconv_decoder",
            "reconstruction_loss.loss_fn": "@bernoulli_loss",
            "vae/AdamOptimizer.learning_rate": "0.0001", "vae/AdamOptimizer.beta1": "0.9",
            **bindings}


def _train_results(model_num: int) -> dict:
    results = {"reconstruction_loss": 30.0 + model_num, "kl_loss": 20.0, "loss": 60.0,
               "regularizer": 25.0, "global_step": 300000, "elapsed_time": 3600.5,
               "uuid": f"train-uuid-{model_num}"}
    if MODELS[model_num][1]["model.model"] != "@factor_vae()":  # FactorVAE reports no ELBO
        results["elbo"] = -(results["reconstruction_loss"] + results["kl_loss"])
    return results


def value(model_num: int, rep: str, config: str, key: str) -> float:
    """A distinct score per model × representation × metric × key."""
    salt = sum(map(ord, config + key)) % 997
    return round(model_num / 10000 + (rep == "sampled") * 0.3 + salt / 10000, 6)


def write_tree(root: Path) -> dict[tuple, float]:
    """dlib_reproduce's output folders of MODELS; returns the expected rows
    {(model_num, representation, metric, key): value} (training rows: representation None)."""
    expected = {}
    for num in MODELS:
        out = root / str(num)
        train = {"train_config": _train_config(num), "train_results": _train_results(num)}
        for step, obj in train.items():
            _write(out / "model" / "results" / "json" / f"{step}.json", obj)
        for key, v in train["train_results"].items():
            if key in ("reconstruction_loss", "kl_loss", "loss", "regularizer", "elbo"):
                expected[num, None, "train", key] = v  # ours have dlib's signs, elbo included
        for rep, fn in REPRESENTATIONS.items():
            post = {**train, "postprocess_config": {
                "postprocess.postprocess_fn": fn, "postprocess.name": f"'{rep}'",
                "dataset.name": "'auto'", "postprocess.random_seed": "2732932416"},
                "postprocess_results": {"elapsed_time": 12.0, "uuid": f"p-{num}-{rep}"}}
            for step, obj in post.items():
                _write(out / "postprocessed" / rep / "results" / "json" / f"{step}.json", obj)
            for config, (bindings, keys) in METRIC_CONFIGS.items():
                results = {k: value(num, rep, config, k) for k in keys}
                results.update(elapsed_time=7.25, uuid=f"e-{num}-{rep}-{config}")
                ev = {**post, "evaluation_config": {
                    **bindings, "evaluation.name": f"'{config}'", "dataset.name": "'auto'",
                    "evaluation.random_seed": "1234"}, "evaluation_results": results}
                folder = out / "metrics" / rep / config / "results"
                for step, obj in ev.items():
                    _write(folder / "json" / f"{step}.json", obj)
                aggregate = {f"{step}.{k}": v for step, obj in ev.items() for k, v in obj.items()}
                _write(folder / "aggregate" / "evaluation.json", aggregate)
                for k, ours in keys.items():
                    if ours is not None:
                        expected[(num, rep, *ours)] = results[k]
    return expected


def write_aggregated(tree: Path, path: Path) -> None:
    """What dlib_aggregate_results writes for the tree: each aggregate/evaluation.json plus its
    ``path``, as a pandas DataFrame saved with ``to_json`` (orient "columns")."""
    records = []
    for f in sorted(tree.glob("*/metrics/*/*/results/aggregate/evaluation.json")):
        records.append({**json.loads(f.read_text()), "path": str(f)})
    pd.DataFrame(records).to_json(path_or_buf=str(path))


@pytest.fixture(scope="module")
def dlib_tree(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("dlib") / "output" / "unsupervised_study_v1"
    return root, write_tree(root)


def _by_model(df: pd.DataFrame) -> dict[tuple, float]:
    out = {}
    for r in df.itertuples():
        num = json.loads(r.provenance)["model_num"]
        rep = None if pd.isna(r.representation) else r.representation
        out[num, rep, r.metric, r.key] = r.value
    return out


def test_tree_round_trip_every_value_in_place(dlib_tree, tmp_path):
    root, expected = dlib_tree
    summary = import_dlib(root, "dlib", tmp_path)
    assert summary.written == len(MODELS) == summary.models and summary.already == 0
    store = ResultsStore.for_study(tmp_path, "dlib")
    assert len(list(store.rows_dir.glob("*.parquet"))) == len(MODELS)
    df = load.load_results(store.root)
    assert _by_model(df) == pytest.approx(expected)
    assert summary.rows == len(df) == len(expected)
    # Same columns as the rows our jobs write (one float column per hyperparameter).
    hp = sorted({k for _, params in EXPECTED_MODEL.values() for k in params}
                | {"steps_per_iteration", "discriminator_learning_rate"})  # FactorVAE's defaults
    f = next(store.rows_dir.glob("*.parquet"))
    assert pq.read_schema(f).names == rows_schema(hp).names
    for num, (method, params) in EXPECTED_MODEL.items():
        rows = df[[json.loads(p)["model_num"] == num for p in df["provenance"]]]
        job = rows.iloc[0]
        assert job["model"] == method and job["seed"] == MODELS[num][2]
        assert job["dataset"] == MODELS[num][0] and job["dataset_source"] == "file"
        for name, v in params.items():
            assert (rows[name] == v).all(), (num, name)
        assert json.loads(job["model_params"]) == {
            **{k: v for k, v in json.loads(job["model_params"]).items() if k not in params},
            **params}
        assert rows["job_id"].nunique() == 1 and job["job_id"] != job["model_id"]
        assert (rows["train_steps"] == 300000).all() and (rows["train_seconds"] == 3600.5).all()
        ev = rows[rows["metric"] != "train"]
        assert (ev["eval_seconds"] == 7.25).all() and rows.loc[rows["metric"] == "train",
                                                              "eval_seconds"].isna().all()
        assert rows[["device", "torch_version", "finished_at", "job_seconds"]].isna().all().all()
        config = json.loads(job["job_config"])
        assert config["source"] == "disentanglement_lib" and config["model_num"] == num
        assert config["training"] == {"steps": 300000, "batch_size": 64, "num_latent": 10,
                                      "learning_rate": 0.0001, "architecture": "conv",
                                      "reconstruction_loss": "bernoulli"}
    factor = df[df["model"] == "factor_vae"]
    assert json.loads(factor["model_params"].iat[0]) == {
        "gamma": 10.0, "shuffle": "same_batch", "steps_per_iteration": 2,
        "discriminator_learning_rate": 0.0001}  # dlib's study fixes it at 1e-4, as our default
    assert "elbo" not in set(factor.loc[factor["metric"] == "train", "key"])
    prov = json.loads(df.loc[(df["model"] == "beta_vae") & (df["metric"] == "dci"),
                             "provenance"].iat[0])
    assert prov == {"source": "disentanglement_lib", "model_num": 2,
                    "file": "2/metrics/mean/dci/results/json/evaluation_results.json"}
    prov = json.loads(df.loc[(df["model"] == "beta_vae") & (df["metric"] == "train"),
                             "provenance"].iat[0])
    assert prov["file"] == "2/model/results/json/train_results.json"


def test_aggregated_file_gives_the_same_rows(dlib_tree, tmp_path):
    root, expected = dlib_tree
    agg = tmp_path / "results.json"
    write_aggregated(root, agg)
    import_dlib(agg, "agg", tmp_path / "r")
    import_dlib(root, "tree", tmp_path / "r")
    a = load.load_results(tmp_path / "r" / "agg")
    t = load.load_results(tmp_path / "r" / "tree")
    assert _by_model(a) == pytest.approx(expected)
    # The same model gets the same ids whichever format it came from.
    assert set(a["job_id"]) == set(t["job_id"]) and set(a["model_id"]) == set(t["model_id"])
    prov = json.loads(a.loc[a["metric"] == "mig", "provenance"].iat[0])
    assert prov["file"] == "results.json" and prov["path"].endswith(
        "/metrics/mean/mig/results/aggregate/evaluation.json")
    # Other orientations of the same records read the same.
    records = pd.read_json(agg)
    for orient in ("records", "index"):
        other = tmp_path / f"results_{orient}.json"
        records.to_json(other, orient=orient)
        import_dlib(other, orient, tmp_path / "r")
        assert _by_model(load.load_results(tmp_path / "r" / orient)) == pytest.approx(expected)


def test_reimport_adds_nothing(dlib_tree, tmp_path):
    root, _ = dlib_tree
    import_dlib(root, "dlib", tmp_path)
    rows = ResultsStore.for_study(tmp_path, "dlib").rows_dir
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in rows.iterdir()}
    again = import_dlib(root, "dlib", tmp_path)
    assert again.written == 0 and again.already == len(MODELS) and again.rows == 0
    agg = tmp_path / "results.json"
    write_aggregated(root, agg)
    third = import_dlib(agg, "dlib", tmp_path)  # the same models from the other format
    assert third.written == 0 and third.already == len(MODELS)
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in rows.iterdir()} == before
    record = ResultsStore.for_study(tmp_path, "dlib").import_record()
    assert record["source"] == "disentanglement_lib" and len(record["paths"]) == 2


def test_what_does_not_map_is_reported_once_per_kind(dlib_tree, tmp_path, capsys):
    root, _ = dlib_tree
    assert main(["import", "dlib", str(root), "--study", "dlib", "--results", str(tmp_path)]) == 0
    err = capsys.readouterr().err.splitlines()
    n_rep = len(REPRESENTATIONS)
    assert err[0].startswith(f"imported {len(MODELS)} models (")
    assert sorted(err[1:]) == sorted([
        f"not imported: {len(MODELS) * n_rep} records: metric '@udr_sklearn' is not one of ours",
        f"not imported: {len(MODELS) * n_rep} values: dci.foo_score is not a key of our dci",
        f"not imported: {len(MODELS) * n_rep} values: factor_vae.num_active_dims not "
        f"comparable: {NOT_COMPARABLE['factor_vae', 'num_active_dims']}",
    ])


def test_unknown_dataset_method_and_keys_are_counted(tmp_path):
    root = tmp_path / "out"
    write_tree(root)
    for num, dataset in ((2, "'dsprites_noshape'"), (61, None)):
        for f in root.glob(f"{num}/**/train_config.json"):
            cfg = json.loads(f.read_text())
            if dataset:
                cfg["dataset.name"] = dataset
            else:
                cfg["model.model"] = "@vq_vae()"
            f.write_text(json.dumps(cfg))
    for f in root.glob("903/**/train_results.json"):
        f.write_text(json.dumps({**json.loads(f.read_text()), "discriminator_loss": 1.0}))
    summary = import_dlib(root, "x", tmp_path / "r")
    assert summary.written == len(MODELS) - 2
    lines = summary.lines()[1:]
    assert "not imported: 1 models: dataset 'dsprites_noshape' is not one of ours" in lines
    assert "not imported: 1 models: method '@vq_vae()' is not one of ours" in lines
    assert ("not imported: 1 values: train_results.discriminator_loss has no counterpart in our "
            "training summary") in lines


def test_malformed_json_is_one_line_and_writes_nothing(tmp_path, capsys):
    root = tmp_path / "out"
    write_tree(root)
    bad = root / "61" / "metrics" / "sampled" / "mig" / "results" / "json" / "evaluation_results.json"
    bad.write_text('{"discrete_mig": 0.1,')
    code = main(["import", "dlib", str(root), "--study", "x", "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: {bad}: malformed JSON at line 1")
    assert not (tmp_path / "r").exists()
    agg = tmp_path / "results.json"
    agg.write_text('{"train_config.dataset.name": {"0": "\'dsprites_full\'"},\n "x": ')
    assert main(["import", "dlib", str(agg), "--study", "x", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(agg) in err[0] and "line 2" in err[0]


@pytest.mark.parametrize("args, message", [
    (["--study", "../up"], "study name"),
    (["--study", "ok"], "no such file or folder"),
])
def test_bad_input_is_a_one_line_error(tmp_path, capsys, args, message):
    path = tmp_path / ("missing" if "ok" in args else "")
    assert main(["import", "dlib", str(path), *args, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_empty_folder_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["import", "dlib", str(tmp_path / "empty"), "--study", "x", "--results",
                 str(tmp_path)]) == 2
    assert "no disentanglement_lib results" in capsys.readouterr().err


def test_result_keys_are_the_keys_our_scorers_return():
    from benchmark.metrics import compute_metric_on_samples

    rng = np.random.default_rng(0)
    factors = rng.integers(0, 3, size=(300, 2))
    codes = factors + rng.normal(0, 0.3, size=(300, 2))
    for metric, extra in [("mig", {}), ("dci", {"n_estimators": 3}), ("sap", {}),
                          ("modularity_explicitness", {}), ("unsupervised", {}), ("irs", {})]:
        keys = set(compute_metric_on_samples(metric, codes, factors, codes, factors, **extra))
        ours = {k for k in keys if (metric, k) not in NOT_COMPARABLE}
        assert ours == set(RESULT_KEYS[metric]), metric
    assert _known("downstream_gbt", "10000:min_train_accuracy")
    assert _known("downstream_lr", "10:train_accuracy_factor_12")
    assert not _known("downstream_lr", "efficiency") and not _known("downstream_lr", "x:min")


def test_figures_on_an_imported_store_and_the_comparison(tmp_path, capsys):
    from analysis.synthetic import write_synthetic_store

    root = tmp_path / "out"
    write_tree(root)
    results = tmp_path / "results"
    import_dlib(root, "dlib", results)
    # Ours: the β-VAE and FactorVAE settings and seeds of two imported models, among others.
    write_synthetic_store(results / "ours", datasets=("dsprites_full",), study="ours",
                          methods={"beta_vae": ("beta", [4.0]), "factor_vae": ("gamma", [10.0])},
                          seeds=(0, 1))
    # A results root with an imported study and ours: every figure of each, and the comparison.
    rep = figures.draw_all(results, traversal_jobs=[])
    dlib_figs = results / "dlib" / "figures"
    names = {f.path.relative_to(dlib_figs).as_posix() for f in rep.figures
             if dlib_figs in f.path.parents}
    assert {"dsprites_full-file/mean-score_rank_correlation.png",
            "dsprites_full-file/sampled-scores_vs_downstream.png",
            "dsprites_full-file/total_correlation_sampled_vs_mean.png"} <= names
    assert "dsprites_full (file)" in (dlib_figs / "index.html").read_text()
    cmp_dir = results / "figures" / "compare-ours-vs-dlib"
    assert cmp_dir / "index.html" in rep.indexes
    assert results / "figures" / "index.html" in rep.indexes
    assert "compare-ours-vs-dlib" in (results / "figures" / "index.html").read_text()
    drawn = {f.path.relative_to(cmp_dir).as_posix() for f in rep.figures
             if cmp_dir in f.path.parents}
    assert drawn == {"dsprites_full/mean-score_rank_correlation-side_by_side.png",
                     "dsprites_full/sampled-score_rank_correlation-side_by_side.png",
                     "dsprites_full/mean-matched_scores.png",
                     "dsprites_full/sampled-matched_scores.png"}
    pairs = pd.read_csv(cmp_dir / "dsprites_full" / "mean-matched_scores.csv")
    assert set(pairs["pairs"]) == {2}  # β-VAE β=4 seed 0 and FactorVAE γ=10 seed 1
    # Naming the studies: checked before anything is drawn.
    assert figures._comparison_pairs(results, load.study_dirs(results), ["dlib", "ours"]) == [
        (results / "dlib", results / "ours")]
    assert main(["figures", str(results), "--compare", "dlib", "nope"]) == 2
    assert "needs a results root holding both studies" in capsys.readouterr().err
    assert main(["figures", str(results / "dlib"), "--compare", "dlib", "ours"]) == 2


def test_an_import_cut_before_its_renames_leaves_no_rows_and_is_completed(dlib_tree, tmp_path,
                                                                          monkeypatch):
    import benchmark.store as store_module

    root, expected = dlib_tree
    rows = ResultsStore.for_study(tmp_path, "dlib").rows_dir

    def power_cut(fds):
        raise OSError("power cut before the renames")

    monkeypatch.setattr(store_module, "_sync", power_cut)
    with pytest.raises(OSError, match="power cut"):
        import_dlib(root, "dlib", tmp_path)
    assert list(rows.iterdir()) == []  # no rows file visible, no temporary file either
    monkeypatch.undo()
    # A process killed at that point cannot clean up: its temporary files stay, ignored.
    code = ("import os, sys; import benchmark.store as s; from benchmark.importers import "
            "import_dlib; s._sync = lambda fds: os._exit(9); "
            "import_dlib(sys.argv[1], 'dlib', sys.argv[2])")
    killed = subprocess.run([sys.executable, "-c", code, str(root), str(tmp_path)])
    assert killed.returncode == 9
    left = sorted(p.name for p in rows.iterdir())
    assert len(left) == len(MODELS) and all(n.startswith(".") and n.endswith(".tmp")
                                            for n in left)
    assert ResultsStore.for_study(tmp_path, "dlib").done_ids() == set()
    again = import_dlib(root, "dlib", tmp_path)
    assert again.written == len(MODELS) and again.already == 0
    assert _by_model(load.load_results(tmp_path / "dlib")) == pytest.approx(expected)
    third = import_dlib(root, "dlib", tmp_path)
    assert third.written == 0 and third.already == len(MODELS)
