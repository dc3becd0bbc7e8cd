"""How fast `benchmark import dlib` reads the released study's aggregated results.

disentanglement_lib's released unsupervised_study_v1 has 10,800 models (model_num 0-10799: six
datasets, Shapes3D's 1,800 are not released), each evaluated with 9 metric configs on the mean
and the sampled representation: 194,400 records. This script writes a synthetic aggregated file of
that shape, as `dlib_aggregate_results` writes it (pandas ``to_json``, one object per column, null
where a record lacks the column, gin values as strings), then times the import phase by phase
(parse, map, build Arrow tables, encode Parquet, write the rows files and sync them, beside the
per-file fsync the store did before), the whole import into a fresh store, a second import
(nothing to do), and loading the store as the figures do, the first time and from the row cache.

    python bench/import_speed.py [--models 10800] [--workdir DIR] [--keep] [--before DIR]
                                 [--out bench/results/import_speed.txt]

``--before DIR``: a checkout of an earlier commit (``git worktree add DIR COMMIT``), whose whole
import is timed in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The sweep of config/unsupervised_study_v1/sweep.py: datasets slowest, then method, setting, seed.
DATASETS = {"dsprites_full": 5, "color_dsprites": 5, "noisy_dsprites": 5, "scream_dsprites": 5,
            "smallnorb": 4, "cars3d": 3}  # name → number of factors (downstream keys per factor)
METHODS = [  # (model.name, model.model, swept binding, values, fixed bindings)
    ("beta_vae", "@vae()", "vae.beta", [1., 2., 4., 6., 8., 16.], {}),
    ("factor_vae", "@factor_vae()", "factor_vae.gamma", [10., 20., 30., 40., 50., 100.],
     {"discriminator.discriminator_fn": "@fc_discriminator"}),
    ("dip_vae_i", "@dip_vae()", "dip_vae.lambda_od", [1., 2., 5., 10., 20., 50.],
     {"dip_vae.lambda_d_factor": "10.0", "dip_vae.dip_type": "'i'"}),
    ("dip_vae_ii", "@dip_vae()", "dip_vae.lambda_od", [1., 2., 5., 10., 20., 50.],
     {"dip_vae.lambda_d_factor": "1.0", "dip_vae.dip_type": "'ii'"}),
    ("beta_tc_vae", "@beta_tc_vae()", "beta_tc_vae.beta", [1., 2., 4., 6., 8., 10.], {}),
    ("annealed_vae", "@annealed_vae()", "annealed_vae.c_max", [5., 10., 25., 50., 75., 100.],
     {"annealed_vae.iteration_threshold": "100000", "annealed_vae.gamma": "1000"}),
]
SHARED = {  # the operative train config every model shares (model_configs/shared.gin)
    "model.batch_size": "64", "model.training_steps": "300000", "model.eval_steps": "1000",
    "encoder.num_latent": "10", "encoder.encoder_fn": "@conv_encoder",
    "decoder.decoder_fn": "@deconv_decoder", "reconstruction_loss.loss_fn": "@bernoulli_loss",
    "reconstruction_loss.activation": "'logits'", "bernoulli_loss.subtract_true_image_entropy":
    "False", "vae_optimizer.optimizer_fn": "@vae/AdamOptimizer",
    "vae_optimizer.learning_rate": "None", "vae/AdamOptimizer.beta1": "0.9",
    "vae/AdamOptimizer.beta2": "0.999", "vae/AdamOptimizer.epsilon": "1e-08",
    "vae/AdamOptimizer.learning_rate": "0.0001", "vae/AdamOptimizer.name": "'Adam'",
    "vae/AdamOptimizer.use_locking": "False", "conv_encoder.num_latent": "10",
}
METRIC_CONFIGS = {  # dlib_reproduce's metric config name → (evaluation bindings, result keys)
    "beta_vae_sklearn": ({"evaluation.evaluation_fn": "@beta_vae_sklearn",
                          "beta_vae_sklearn.batch_size": "64", "beta_vae_sklearn.num_eval": "5000",
                          "beta_vae_sklearn.num_train": "10000"},
                         ["train_accuracy", "eval_accuracy"]),
    "dci": ({"evaluation.evaluation_fn": "@dci", "dci.num_train": "10000", "dci.num_test": "5000",
             "dci.batch_size": "16"},
            ["informativeness_train", "informativeness_test", "disentanglement", "completeness"]),
    "downstream_task_boosted_trees": (
        {"evaluation.evaluation_fn": "@downstream_task", "downstream_task.num_train":
         "[10, 100, 1000, 10000]", "downstream_task.num_test": "5000",
         "predictor.predictor_fn": "@gradient_boosting_classifier"}, None),
    "downstream_task_logistic_regression": (
        {"evaluation.evaluation_fn": "@downstream_task", "downstream_task.num_train":
         "[10, 100, 1000, 10000]", "downstream_task.num_test": "5000",
         "predictor.predictor_fn": "@logistic_regression_cv"}, None),
    "factor_vae_metric": ({"evaluation.evaluation_fn": "@factor_vae_score",
                           "factor_vae_score.num_variance_estimate": "10000",
                           "factor_vae_score.num_train": "10000",
                           "factor_vae_score.num_eval": "5000",
                           "factor_vae_score.batch_size": "64", "prune_dims.threshold": "0.05"},
                          ["train_accuracy", "eval_accuracy", "num_active_dims"]),
    "mig": ({"evaluation.evaluation_fn": "@mig", "mig.num_train": "10000",
             "discretizer.discretizer_fn": "@histogram_discretizer", "discretizer.num_bins": "20"},
            ["discrete_mig"]),
    "modularity_explicitness": ({"evaluation.evaluation_fn": "@modularity_explicitness",
                                 "modularity_explicitness.num_train": "10000",
                                 "modularity_explicitness.num_test": "5000",
                                 "discretizer.discretizer_fn": "@histogram_discretizer",
                                 "discretizer.num_bins": "20"},
                                ["modularity_score", "explicitness_score_train",
                                 "explicitness_score_test"]),
    "sap_score": ({"evaluation.evaluation_fn": "@sap_score", "sap_score.num_train": "10000",
                   "sap_score.num_test": "5000", "sap_score.continuous_factors": "False"},
                  ["SAP_score"]),
    "unsupervised": ({"evaluation.evaluation_fn": "@unsupervised_metrics",
                      "unsupervised_metrics.num_train": "10000",
                      "discretizer.discretizer_fn": "@histogram_discretizer",
                      "discretizer.num_bins": "20"},
                     ["gaussian_total_correlation", "gaussian_wasserstein_correlation",
                      "gaussian_wasserstein_correlation_norm", "mutual_info_score"]),
}
REPRESENTATIONS = {"mean": "@mean_representation", "sampled": "@sampled_representation"}


def downstream_keys(num_factors: int) -> list[str]:
    keys = []
    for size in (10, 100, 1000, 10000):
        keys += [f"{size}:{k}" for k in ("mean_train_accuracy", "mean_test_accuracy",
                                         "min_train_accuracy", "min_test_accuracy")]
        for i in range(num_factors):
            keys += [f"{size}:train_accuracy_factor_{i}", f"{size}:test_accuracy_factor_{i}"]
    return keys


def model_config(num: int) -> tuple[str, dict[str, str]]:
    per_dataset = len(METHODS) * 6 * 50
    dataset = list(DATASETS)[num // per_dataset]
    rest = num % per_dataset
    method, setting, seed = rest // 300, (rest % 300) // 50, rest % 50
    name, ref, swept, values, fixed = METHODS[method]
    return dataset, {**SHARED, "dataset.name": f"'{dataset}'", "model.name": f"'{name}'",
                     "model.model": ref, "model.random_seed": str(seed),
                     "model.model_num": str(num), swept: repr(values[setting]), **fixed}


def write_aggregated(path: Path, n_models: int) -> int:
    """The synthetic results.json; returns the number of records."""
    records = [(num, rep, metric) for num in range(n_models) for rep in REPRESENTATIONS
               for metric in METRIC_CONFIGS]
    n = len(records)
    configs = [model_config(num) for num in range(n_models)]
    columns: dict[str, list[str]] = {}
    enc: dict[object, str] = {None: "null"}

    def put(column: str, i: int, value) -> None:
        col = columns.get(column)
        if col is None:
            col = columns[column] = ["null"] * n
        if isinstance(value, float):
            col[i] = repr(value)
        else:
            if value not in enc:
                enc[value] = json.dumps(value)
            col[i] = enc[value]

    for i, (num, rep, metric) in enumerate(records):
        dataset, bindings = configs[num]
        for k, v in bindings.items():
            put(f"train_config.{k}", i, v)
        q = ((num * 7919) % 1000) / 1000  # a stand-in for the model's quality
        for k, v in {"reconstruction_loss": 30 + 10 * q, "kl_loss": 20 - 5 * q, "loss": 60.0 - q,
                     "regularizer": 25.0 + q, "global_step": 300000,
                     "elapsed_time": 3600.0 + q, "uuid": f"train-{num}"}.items():
            put(f"train_results.{k}", i, v)
        if not bindings["model.model"] == "@factor_vae()":
            put("train_results.elbo", i, -50.0 - 5 * q)
        for k, v in {"postprocess.postprocess_fn": REPRESENTATIONS[rep], "postprocess.name":
                     f"'{rep}'", "postprocess.random_seed": "2732932416",
                     "dataset.name": "'auto'"}.items():
            put(f"postprocess_config.{k}", i, v)
        put("postprocess_results.elapsed_time", i, 10.0 + q)
        put("postprocess_results.uuid", i, f"post-{num}-{rep}")
        ev_bindings, keys = METRIC_CONFIGS[metric]
        for k, v in {**ev_bindings, "evaluation.name": f"'{metric}'", "dataset.name": "'auto'",
                     "evaluation.random_seed": "1234"}.items():
            put(f"evaluation_config.{k}", i, v)
        keys = keys or downstream_keys(DATASETS[dataset])
        for j, k in enumerate(keys):
            put(f"evaluation_results.{k}", i, round(((num * 31 + j * 17 + i) % 1000) / 1000, 4))
        put("evaluation_results.elapsed_time", i, 30.0 + q)
        put("evaluation_results.uuid", i, f"eval-{num}-{rep}-{metric}")
        put("path", i, f"output/unsupervised_study_v1/{num}/metrics/{rep}/{metric}/results/"
                       "aggregate/evaluation.json")
    index = [f'"{i}":' for i in range(n)]
    with open(path, "w") as fh:
        fh.write("{")
        for c, (name, values) in enumerate(columns.items()):
            fh.write(("," if c else "") + json.dumps(name) + ":{")
            fh.write(",".join(map(str.__add__, index, values)))
            fh.write("}")
        fh.write("}")
    return n


def _write_each_fsync(files: list[tuple[Path, bytes]]) -> None:
    """The rows files as the store wrote them before batching: per file a temporary file, its
    fsync and its rename (one device cache flush per file)."""
    for path, data in files:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def measure(fn) -> tuple[object, float, float]:
    """fn's result, wall seconds and CPU seconds (all threads of this process)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"  {wall:.1f} s wall, {cpu:.1f} CPU s (load {os.getloadavg()[0]:.1f})", file=sys.stderr,
          flush=True)
    return out, wall, cpu


def table(rows: list[tuple]) -> list[str]:
    """Rows (phase, wall, CPU[, before wall, before CPU]) as a text table."""
    def f(v):
        return f"{v:>8.1f}" if v is not None else f"{'':>8}"
    out = [f"{'phase':<60} {'wall s':>8} {'CPU s':>8} {'before':>8} {'before':>8}",
           f"{'':<60} {'':>8} {'':>8} {'wall s':>8} {'CPU s':>8}"]
    return out + [f"{r[0]:<60} {f(r[1])} {f(r[2])} {f(r[3] if len(r) > 3 else None)} "
                  f"{f(r[4] if len(r) > 4 else None)}" for r in rows]


_TWICE = """import json, sys, time
from benchmark.importers import import_dlib
for _ in range(2):
    t0, c0 = time.perf_counter(), time.process_time()
    s = import_dlib(sys.argv[1], "dlib", sys.argv[2])
    print(json.dumps([time.perf_counter() - t0, time.process_time() - c0, s.lines()]))
"""


def _import_in_subprocess(checkout: Path, agg: Path, results: Path) -> list[list]:
    """[wall, CPU, summary lines] of an import and of a second import, in a fresh process with
    the code of ``checkout`` (so that this process's heap weighs on neither)."""
    env = {**os.environ, "PYTHONPATH": str(checkout.resolve())}
    out = subprocess.run([sys.executable, "-c", _TWICE, str(agg), str(results)], env=env,
                         check=True, capture_output=True, text=True).stdout
    runs = [json.loads(line) for line in out.splitlines()[-2:]]
    for run in runs:  # the report names no folder of this machine
        run[2] = [line.replace(str(results), "<results>") for line in run[2]]
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10800)
    parser.add_argument("--workdir", default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the files written")
    parser.add_argument("--before", default=None, metavar="DIR",
                        help="a checkout of an earlier commit: its import is timed too, in a "
                             "subprocess, for a before/after in one run")
    parser.add_argument("--before-label", default="the --before checkout",
                        help="what --before is, for the report (say, its commit)")
    parser.add_argument("--out", default=None, help="also write the report to this file")
    args = parser.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq

    from analysis import load
    from analysis.figures import FIGURE_COLUMNS
    from benchmark import store as store_module
    from benchmark.importers import dlib
    from benchmark.importers.dlib_files import read_aggregated
    from benchmark.schema import rows_schema

    work = Path(args.workdir or tempfile.mkdtemp(prefix="import_speed_"))
    work.mkdir(parents=True, exist_ok=True)
    agg = work / "results.json"
    load_start = os.getloadavg()
    t = time.perf_counter()
    generated = not (agg.exists() and args.workdir)  # else the file of a run with --keep
    n = write_aggregated(agg, args.models) if generated else None
    gen = time.perf_counter() - t
    mib = agg.stat().st_size / 2**20
    rows: list[tuple] = []
    print("phases of the import, one at a time:", file=sys.stderr)
    records, *t_parse = measure(lambda: read_aggregated(agg))
    rows.append(("parse the aggregated file", *t_parse))
    n = n or len(records)
    collector = dlib._Collector(records)
    models, *t_map = measure(collector.run)
    rows.append(("map records to models and their rows", *t_map))
    records = collector = None
    params = sorted({k for m in models.values() for k, v in m.model.params.items()
                     if dlib._number(v)})
    schema = rows_schema(params)
    todo = list(models.values())
    _, *t_build = measure(lambda: sum(1 for _ in dlib.model_tables("dlib", todo, schema)))
    rows.append(("build Arrow tables (column-wise, a slice per model)", *t_build))

    def encode() -> list[tuple[str, pa.Buffer]]:
        out = []
        for job_id, tab in dlib.model_tables("dlib", todo, schema):
            sink = pa.BufferOutputStream()
            pq.write_table(tab, sink, compression="zstd")
            out.append((job_id, sink.getvalue()))
        return out

    encoded, wall, cpu = measure(encode)
    rows.append(("encode Parquet (zstd), one thread", wall - t_build[0], cpu - t_build[1]))
    models = todo = None
    before_dir, after_dir = work / "write_before", work / "write_after"
    for d in (before_dir, after_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    syncs = [0.0, 0.0]
    real_sync = store_module._sync

    def timed_sync(fds):
        t0, c0 = time.perf_counter(), time.process_time()
        real_sync(fds)
        syncs[0] += time.perf_counter() - t0
        syncs[1] += time.process_time() - c0

    _, *t_before = measure(lambda: _write_each_fsync(
        [(before_dir / f"{j}.parquet", b) for j, b in encoded]))
    store_module._sync = timed_sync
    try:
        _, wall, cpu = measure(lambda: store_module.atomic_write_files(
            (after_dir / f"{j}.parquet", b) for j, b in encoded))
    finally:
        store_module._sync = real_sync
    rows.append(("write rows files (before: each written, fsynced, renamed)",
                 wall, cpu, *t_before))
    rows.append(("  of which syncing their data (syncfs per 256 files)", *syncs))
    encoded = None
    for d in (before_dir, after_dir):
        shutil.rmtree(d)

    print("the whole import, as `benchmark import dlib` runs it:", file=sys.stderr)
    results = work / "results"
    shutil.rmtree(results, ignore_errors=True)
    before: list[list] = [[], []]
    if args.before:
        before = _import_in_subprocess(Path(args.before), agg, work / "results_before")
        shutil.rmtree(work / "results_before")
        print(f"  before: {[b[:2] for b in before]}", file=sys.stderr)
    after = _import_in_subprocess(Path(__file__).resolve().parents[1], agg, results)
    print(f"  after: {[a[:2] for a in after]}", file=sys.stderr)
    rows.append(("import: all of the above (encoding in 2 threads)", *after[0][:2],
                 *before[0][:2]))
    rows.append(("import again (nothing to write)", *after[1][:2], *before[1][:2]))
    study = results / "dlib"
    df, *t = measure(lambda: load.load_results(study, FIGURE_COLUMNS, cache=True))
    rows.append(("load for the figures, first time (builds .cache)", *t))
    _, *t = measure(lambda: load.load_results(study, FIGURE_COLUMNS, cache=True))
    rows.append(("load for the figures, cached", *t))
    w, *t = measure(lambda: load.wide(df))
    rows.append(("wide table (one row per model x representation)", *t))
    load_end = os.getloadavg()

    lines = [
        f"machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"shared; load average (1, 5, 15 min) {', '.join(f'{v:.1f}' for v in load_start)} at "
        f"the start, {', '.join(f'{v:.1f}' for v in load_end)} at the end",
        f"synthetic aggregated results: {args.models} models, {n} records, {mib:.0f} MiB JSON "
        + (f"(written in {gen:.1f} s)" if generated else "(an earlier run's, reused)")
        + f"; {len(df.columns)} columns read for the figures",
        f"import: {after[0][2][0]}",
        f"again: {after[1][2][0]}",
        *(f"  {line}" for line in after[0][2][1:]),
        f"wide table: {len(w)} rows x {len(w.columns)} columns",
        *table(rows),
        "(CPU s: all threads of the process; before: the per-file fsync the store did before"
        + (f"; for the imports, {args.before_label}" if args.before else "")
        + "; the imports run in fresh processes; wall s depends on what else the machine runs)",
    ]
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    if not args.keep and args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
