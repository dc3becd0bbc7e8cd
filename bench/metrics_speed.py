"""The whole metric suite on one representation: ours vs disentanglement_lib's code, side by side.

    OMP_NUM_THREADS=1 python bench/metrics_speed.py [--full] [--n-jobs 2] [--dlib-python .dlib-venv/bin/python]

Same data (5 independent factors of sizes 4,5,6,3,8; observation = factor vector) and the same
representation (standardised factors times a fixed rotation: entangled, so classifiers work) for
both. dlib runs in its reference venv (tests/fixtures/metrics/dlib_reference.py, no TensorFlow);
ours runs `benchmark.metrics.suite.evaluate`. Default sizes are the reference runner's --quick
ones; --full uses the study's. Prints per-metric seconds, the ratio, and headline values.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SIZES = (4, 5, 6, 3, 8)
METRICS = ["beta_vae", "factor_vae", "mig", "dci", "sap", "modularity_explicitness",
           "unsupervised", "irs", "downstream_lr", "downstream_gbt"]
QUICK = {
    "beta_vae": dict(num_train=1000, num_eval=500),
    "factor_vae": dict(num_train=1000, num_eval=500, num_variance_estimate=1000),
    "mig": dict(num_train=2000), "dci": dict(num_train=1000, num_test=500),
    "sap": dict(num_train=2000, num_test=1000),
    "modularity_explicitness": dict(num_train=2000, num_test=1000),
    "unsupervised": dict(num_train=2000), "irs": dict(num_train=2000),
    "downstream_lr": dict(num_train=[10, 100, 1000], num_test=1000),
    "downstream_gbt": dict(num_train=[10, 100, 1000], num_test=1000),
}
HEADLINE = {"beta_vae": "eval_accuracy", "factor_vae": "eval_accuracy", "mig": "discrete_mig",
            "dci": "disentanglement", "sap": "SAP_score", "modularity_explicitness": "modularity_score",
            "unsupervised": "gaussian_total_correlation", "irs": "IRS",
            "downstream_lr": "1000:mean_test_accuracy", "downstream_gbt": "1000:mean_test_accuracy"}

DLIB_SCRIPT = """
import json, sys, time
import numpy as np
sys.path.insert(0, %(ref)r)
import dlib_reference as ref
out = {}
for metric, kw in json.loads(%(plan)r).items():
    data = ref.SyntheticFactors(%(sizes)r)
    rep = ref.rep_rotation(0, %(sizes)r)
    t0 = time.perf_counter()
    scores = ref.run_dlib(metric, data, rep, 0, **kw)
    out[metric] = {"seconds": time.perf_counter() - t0, "scores": scores}
    print(metric, round(out[metric]["seconds"], 2), file=sys.stderr, flush=True)
print(json.dumps(out))
"""


def rotation():
    q, r = np.linalg.qr(np.random.RandomState(0).normal(size=(len(SIZES),) * 2))
    return q * np.sign(np.diag(r))


def run_ours(plan: dict, n_jobs: int) -> tuple[dict, float]:
    sys.path.insert(0, str(ROOT / "tests"))
    from metrics_helpers import IdentityData, flat, standardise

    from benchmark.metrics.suite import evaluate

    q = rotation()

    def rep(x):
        return standardise(flat(x), SIZES) @ q

    t0 = time.perf_counter()
    rows = evaluate(IdentityData(SIZES), {"mean": rep}, 0, metrics=list(plan), overrides=plan,
                    n_jobs=n_jobs)
    total = time.perf_counter() - t0
    out: dict = {}
    for r in rows:
        m = out.setdefault(r["metric"], {"seconds": r["eval_seconds"], "scores": {}})
        m["scores"][r["key"]] = r["value"]
    return out, total


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--full", action="store_true", help="study sample sizes (slow for dlib)")
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--metrics", default=",".join(METRICS))
    p.add_argument("--dlib-python", default=str(ROOT / ".dlib-venv" / "bin" / "python"))
    a = p.parse_args(argv)
    names = a.metrics.split(",")
    plan = {m: ({} if a.full else QUICK.get(m, {})) for m in names}
    ours, ours_total = run_ours(plan, a.n_jobs)
    script = DLIB_SCRIPT % {"ref": str(ROOT / "tests" / "fixtures" / "metrics"),
                            "plan": json.dumps(plan), "sizes": SIZES}
    t0 = time.perf_counter()
    proc = subprocess.run([a.dlib_python, "-W", "ignore", "-c", script], capture_output=True,
                          text=True, check=True)
    dlib_total = time.perf_counter() - t0
    dlib = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{'metric':26s} {'dlib s':>8s} {'ours s':>8s} {'ratio':>7s}  {'key':26s} {'dlib':>8s} {'ours':>8s}")
    for m in names:
        d, o = dlib[m], ours[m]
        key = HEADLINE[m]
        print(f"{m:26s} {d['seconds']:8.2f} {o['seconds']:8.2f} {d['seconds'] / o['seconds']:7.1f}  "
              f"{key:26s} {d['scores'].get(key, float('nan')):8.4f} {o['scores'].get(key, float('nan')):8.4f}")
    print(f"{'TOTAL (wall, incl. start-up)':26s} {dlib_total:8.2f} {ours_total:8.2f} "
          f"{dlib_total / ours_total:7.1f}   n_jobs={a.n_jobs}, {'full' if a.full else 'quick'} sizes")


if __name__ == "__main__":
    main()
