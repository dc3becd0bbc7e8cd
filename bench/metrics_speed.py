"""The whole metric suite on one real representation: ours vs disentanglement_lib's code, one run.

    OMP_NUM_THREADS=1 python bench/metrics_speed.py [--scale 1.0] [--n-jobs 1,2] [--out f.json]

Representation: the study's conv encoder (beta-VAE, `benchmark.training.train`, a few steps: the
metrics' cost does not depend on how well it is trained) applied to procedural dSprites
(`get_dataset("dsprites_full")`, 737,280 combinations), mean representation. Both sides see the same
dataset and the same encoder:

* ours: `benchmark.metrics.suite.evaluate` (one shared pool, grid lookup, shared fits, sklearn's
  GradientBoostingClassifier through the bit-exact port `benchmark.metrics.gbt`), once per value
  of ``--n-jobs`` (1 = like for like with dlib's serial code; more = our fits across processes);
* dlib: disentanglement_lib 1.5's own metric functions through the reference runner's `run_dlib`
  (tests/fixtures/metrics/dlib_reference.py, no TensorFlow), run in this process with the dlib
  venv's site-packages appended to ``sys.path`` (same numpy / scikit-learn as ours: checked), on a
  dlib-style adapter (NHWC observations, ``sample_factors(num, random_state)``, representation
  function converting NHWC→NCHW).

Parameters are the study's; ``--scale s`` multiplies every sample size (num_train, num_eval,
num_test, num_variance_estimate, downstream sizes ≥ 10) by s for a quick run. Prints, per metric,
wall seconds of each side and their ratio, the headline values (the two sides draw different
samples, so these agree within sampling noise; equality on fixed arrays is what
tests/test_metrics_golden.py and tests/test_metrics_gbt.py check), and where the time goes
(rendering, encoding, everything else = scikit-learn fits and metric maths). The torch encoder
runs on one thread on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DLIB = ["beta_vae", "factor_vae", "mig", "dci", "sap", "modularity_explicitness",
        "unsupervised", "irs", "downstream_lr", "downstream_gbt"]
OURS_ONLY = ["aam", "mmig"]
HEADLINE = {"beta_vae": "eval_accuracy", "factor_vae": "eval_accuracy", "mig": "discrete_mig",
            "dci": "disentanglement", "sap": "SAP_score", "modularity_explicitness": "modularity_score",
            "unsupervised": "gaussian_total_correlation", "irs": "IRS",
            "downstream_lr": "mean_test_accuracy", "downstream_gbt": "mean_test_accuracy",
            "aam": "aam", "mmig": "mmig"}
DOWNSTREAM_SIZES = [10, 100, 1000, 10000]
SIZE_KEYS = ("num_train", "num_eval", "num_test", "num_variance_estimate")


def scaled(n: int, scale: float) -> int:
    return max(1, int(round(n * scale)))


def plans(scale: float) -> tuple[dict, dict]:
    """(our overrides, dlib overrides) per metric: study sizes times ``scale``."""
    from benchmark.metrics.registry import METRICS

    ours, dlib = {}, {}
    for name in DLIB + OURS_ONLY:
        d = METRICS[name].defaults
        o = {k: scaled(d[k], scale) for k in SIZE_KEYS if k in d and isinstance(d[k], int)}
        if name.startswith("downstream"):
            sizes = list(dict.fromkeys(max(10, scaled(s, scale)) for s in DOWNSTREAM_SIZES))
            o["num_train"] = sizes
            o["efficiency_sizes"] = (max(10, scaled(100, scale)), max(10, scaled(10000, scale)))
        ours[name] = o
        if name in DLIB:
            dlib[name] = {k: v for k, v in o.items() if k != "efficiency_sizes"}
    return ours, dlib


class Clock:
    """Wall and CPU seconds spent in wrapped calls (rendering, encoding)."""

    def __init__(self):
        self.wall = self.cpu = 0.0
        self.items = 0

    def wrap(self, fn):
        def timed(x, *args):
            w, c = time.perf_counter(), time.process_time()
            out = fn(x, *args)
            self.wall += time.perf_counter() - w
            self.cpu += time.process_time() - c
            self.items += len(x)
            return out
        return timed


@contextmanager
def measure(out: dict):
    w, c = time.perf_counter(), time.process_time()
    yield
    out["wall"] = time.perf_counter() - w
    out["cpu"] = time.process_time() - c


def model_and_data(train_steps: int):
    import torch

    from benchmark.data import get_dataset
    from benchmark.settings import TrainingSettings
    from benchmark.training import train

    torch.set_num_threads(1)
    data = get_dataset("dsprites_full")
    model = train("beta_vae", {}, data, seed=0, config=TrainingSettings(steps=train_steps, eval_batches=1))
    return data, model.represent("mean")


def run_ours(data, represent, plan: dict, n_jobs: int) -> dict:
    from benchmark.metrics.suite import evaluate

    render, encode = Clock(), Clock()

    class Timed:
        """The dataset with its rendering timed (everything else delegated)."""

        def __getattr__(self, name):
            return getattr(data, name)

        sample_observations_from_factors = staticmethod(render.wrap(data.sample_observations_from_factors))

    metrics = DLIB + OURS_ONLY
    res: dict = {"metrics": {}}
    with measure(res):
        rows = evaluate(Timed(), {"mean": encode.wrap(represent)}, 0, metrics=metrics,
                        overrides=plan, n_jobs=n_jobs)
    for r in rows:
        m = res["metrics"].setdefault(r["metric"], {"wall": r["eval_seconds"], "scores": {}})
        m["scores"][r["key"]] = r["value"]
    res["render"], res["encode"] = vars(render), vars(encode)
    return res


def dlib_runner(site_packages: Path):
    if not site_packages.is_dir():
        raise SystemExit(f"error: no dlib site-packages at {site_packages} (set-up: tests/fixtures/metrics/dlib_reference.py)")
    sys.path.append(str(site_packages))  # after ours: numpy/sklearn/scipy come from this venv
    sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "metrics"))
    import dlib_reference as ref
    import sklearn

    dlib_sklearn = next(site_packages.glob("scikit_learn-*.dist-info")).name[len("scikit_learn-"):-10]
    if dlib_sklearn != sklearn.__version__:
        raise SystemExit(f"error: dlib venv has scikit-learn {dlib_sklearn}, ours {sklearn.__version__}")
    return ref


def dlib_adapter(ref, data, render: Clock):
    """Our dataset as dlib's GroundTruthData: NHWC observations, RandomState sampling."""

    class Adapter(ref.ground_truth_data.GroundTruthData):
        num_factors = data.num_factors
        factors_num_values = list(data.factor_sizes)
        observation_shape = [data.observation_shape[1], data.observation_shape[2],
                             data.observation_shape[0]]

        def sample_factors(self, num, random_state):
            return data.sample_factors(num, random_state)

        @render.wrap
        def _render(factors):
            # Noise-free dSprites: rendering draws nothing, so dlib's random_state is not used.
            return np.transpose(data.sample_observations_from_factors(factors, 0), (0, 2, 3, 1))

        def sample_observations_from_factors(self, factors, random_state):
            return Adapter._render(factors)

    return Adapter()


def run_dlib(ref, data, represent, plan: dict) -> dict:
    render, encode = Clock(), Clock()
    adapter = dlib_adapter(ref, data, render)
    nchw = encode.wrap(lambda x: represent(np.transpose(x, (0, 3, 1, 2))))
    res: dict = {"metrics": {}}
    with measure(res):
        for name in DLIB:
            m: dict = {}
            with measure(m):
                try:
                    m["scores"] = ref.run_dlib(name, adapter, nchw, 0, **plan[name])
                except Exception as e:  # dlib crashes on some inputs; report, keep going
                    m["scores"], m["error"] = {}, f"{type(e).__name__}: {str(e).splitlines()[0]}"
            res["metrics"][name] = m
            print(f"  dlib {name}: {m['wall']:.1f} s {m.get('error', '')}", file=sys.stderr, flush=True)
    res["render"], res["encode"] = vars(render), vars(encode)
    return res


def headline(name: str, scores: dict) -> float:
    key = HEADLINE[name]
    if name.startswith("downstream"):
        sizes = [int(k.split(":")[0]) for k in scores if k.endswith(":mean_test_accuracy")]
        key = f"{max(sizes)}:{key}" if sizes else key
    return float(scores.get(key, float("nan")))


def table(runs: dict[int, dict], dlib: dict | None, meta: dict) -> str:
    """One row per metric: dlib's seconds, then ours and the ratio for each n_jobs."""
    head = f"{'metric':24s} {'dlib s':>8s}"
    for j in runs:
        head += f" {f'ours j={j}':>9s} {'ratio':>6s}"
    lines = [head + f"  {'headline (largest size)':28s} {'dlib':>8s} {'ours':>8s}"]
    first = next(iter(runs.values()))
    for name in DLIB + OURS_ONLY:
        d = dlib["metrics"].get(name) if dlib else None
        line = f"{name:24s} " + (f"{d['wall']:8.1f}" if d else f"{'-':>8s}")
        for r in runs.values():
            o = r["metrics"][name]
            line += f" {o['wall']:9.1f} " + (f"{d['wall'] / o['wall']:6.1f}" if d else f"{'-':>6s}")
        dv = f"{headline(name, d['scores']):8.4f}" if d else f"{'-':>8s}"
        lines.append(f"{line}  {HEADLINE[name]:28s} {dv} {headline(name, first['metrics'][name]['scores']):8.4f}")
    if dlib:
        line = f"{'TOTAL wall':24s} {dlib['wall']:8.1f}"
        for r in runs.values():
            line += f" {r['wall']:9.1f} {dlib['wall'] / r['wall']:6.1f}"
        lines.append(line + "   (ours incl. aam, mmig)")
    lines.append("where the time goes (wall s):  rendering | encoding (images) | rest = sklearn fits + maths")
    sides = [("dlib", dlib)] + [(f"ours j={j}", r) for j, r in runs.items()]
    for side, r in sides:
        if r:
            rest = r["wall"] - r["render"]["wall"] - r["encode"]["wall"]
            lines.append(f"  {side:9s}: {r['render']['wall']:8.1f} | {r['encode']['wall']:8.1f} "
                         f"({r['encode']['items']:,}) | {rest:8.1f}")
    for name, d in (dlib or {}).get("metrics", {}).items():
        if "error" in d:
            lines.append(f"dlib {name} failed: {d['error']}")
    lines.append(" ".join(f"{k}={v}" for k, v in meta.items()))
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiply every sample size (1 = study)")
    p.add_argument("--n-jobs", default="1",
                   help="our parallel fits (dlib is serial); a comma list runs ours once per value")
    p.add_argument("--train-steps", type=int, default=50)
    p.add_argument("--no-dlib", action="store_true", help="only ours")
    p.add_argument("--dlib-site", type=Path,
                   default=next(iter(sorted((ROOT / ".dlib-venv" / "lib").glob("python3*/site-packages"))),
                                ROOT / ".dlib-venv"),
                   help="site-packages of a venv with disentanglement-lib==1.5 (see "
                        "tests/fixtures/metrics/dlib_reference.py)")
    p.add_argument("--out", type=Path, help="write the raw measurements as JSON")
    a = p.parse_args(argv)
    if not 0 < a.scale <= 1:
        raise SystemExit("error: --scale must be in (0, 1]")
    try:
        n_jobs = [int(j) for j in str(a.n_jobs).split(",")]
    except ValueError:
        raise SystemExit(f"error: --n-jobs must be integers separated by commas, got {a.n_jobs!r}") from None
    ref = None if a.no_dlib else dlib_runner(a.dlib_site)
    ours_plan, dlib_plan = plans(a.scale)
    data, represent = model_and_data(a.train_steps)
    meta = {"scale": a.scale, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
            "load_before": round(os.getloadavg()[0], 2)}
    dlib = run_dlib(ref, data, represent, dlib_plan) if ref else None
    runs = {j: run_ours(data, represent, ours_plan, j) for j in n_jobs}
    meta["load_after"] = round(os.getloadavg()[0], 2)
    print(table(runs, dlib, meta))
    if a.out:
        a.out.write_text(json.dumps({"meta": meta, "plan": ours_plan, "ours": runs, "dlib": dlib},
                                    indent=1, default=float))


if __name__ == "__main__":
    main()
