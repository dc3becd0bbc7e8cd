"""A synthetic results store with known structure, for tests, demos and load benchmarks.

Rows follow the results schema exactly (docs/schema.md). Each model gets a latent
"quality" q ~ U(0, 1); BetaVAE Score and FactorVAE Score are increasing functions of q (rank
correlation +1), MIG is decreasing (−1), the other scores are independent noise. The sampled
representation's total correlation falls with the hyperparameter, the mean one's does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# method → (hyperparameter column, swept values); None = a baseline with nothing to sweep.
METHODS: dict[str, tuple[str, list[float]] | None] = {
    "beta_vae": ("beta", [1.0, 4.0, 16.0]),
    "factor_vae": ("gamma", [10.0, 40.0]),
    "pca": None,
}
SIZES = (10, 100, 1000, 10000)
NUM_LATENT = 4
VERSIONS = {"benchmark_version": "0.1.0", "torch_version": "2.13.0",
            "sklearn_version": "1.9.1", "numpy_version": "2.4.6", "python_version": "3.11.9"}


def _scores(q: float, rng: np.random.Generator) -> dict[tuple[str, str], float]:
    s = {
        ("beta_vae", "train_accuracy"): 0.5 + 0.5 * q,
        ("beta_vae", "eval_accuracy"): 0.5 + 0.5 * q,
        ("factor_vae", "train_accuracy"): 0.4 + 0.6 * q ** 2,
        ("factor_vae", "eval_accuracy"): 0.4 + 0.6 * q ** 2,
        ("factor_vae", "num_active_dims"): float(NUM_LATENT),
        ("mig", "discrete_mig"): 1.0 - q,
        ("dci", "disentanglement"): float(rng.uniform()),
        ("dci", "completeness"): float(rng.uniform()),
        ("dci", "informativeness_train"): float(rng.uniform()),
        ("dci", "informativeness_test"): float(rng.uniform()),
        ("modularity_explicitness", "modularity_score"): float(rng.uniform()),
        ("sap", "SAP_score"): float(rng.uniform(0, 0.2)),
    }
    for metric in ("downstream_lr", "downstream_gbt"):
        accs = {}
        for n in SIZES:
            accs[n] = float(np.clip(0.3 + 0.15 * np.log10(n) * (0.5 + q) + rng.normal(0, 0.02),
                                    0, 1))
            s[(metric, f"{n}:mean_test_accuracy")] = accs[n]
            s[(metric, f"{n}:mean_train_accuracy")] = min(1.0, accs[n] + 0.05)
            s[(metric, f"{n}:min_test_accuracy")] = accs[n] * 0.8
        s[(metric, "efficiency")] = accs[100] / accs[10000]
    return s


def job_rows(study: str, dataset: str, method: str, hp: dict[str, float], seed: int,
             rng: np.random.Generator, representations=("mean", "sampled")) -> pd.DataFrame:
    """The tidy rows of one synthetic job (training summary + every metric per representation)."""
    params = json.dumps(hp, sort_keys=True)
    job_id = f"{dataset[:4]}-{method}-{'-'.join(f'{v:g}' for v in hp.values()) or 'x'}-s{seed}"
    q = float(rng.uniform())
    strength = float(next(iter(hp.values()), 1.0))
    kl = np.sort(rng.gamma(2.0, 1.0 / np.log2(1 + strength), NUM_LATENT))[::-1]
    recon = 90.0 + 40 * q
    records = [("train", k, v, None) for k, v in (
        # elbo as dlib's train_results: -(reconstruction + KL).
        [("elbo", -(recon + float(kl.sum()))), ("reconstruction_loss", recon),
         ("kl_loss", float(kl.sum())), ("regularizer", float(kl.sum()) * strength),
         ("loss", 100.0)] + [(f"kl_dim_{i}", float(v)) for i, v in enumerate(kl)])]
    scores = _scores(q, rng)
    for representation in representations:
        for (metric, key), v in scores.items():
            records.append((metric, key, v, representation))
        tc = (2.0 / strength if representation == "sampled" else 3.0) * float(rng.uniform(0.8, 1.2))
        records.append(("unsupervised", "gaussian_total_correlation", tc, representation))
        records.append(("unsupervised", "mutual_info_score", float(rng.uniform()), representation))
    n = len(records)
    df = pd.DataFrame({
        "study": study, "job_id": job_id, "model_id": job_id, "dataset": dataset,
        "dataset_source": "procedural", "model": method, "model_params": params,
        **{k: np.float64(v) for k, v in hp.items()},
        "seed": np.int64(seed),
        "representation": [r[3] for r in records],
        "metric": [r[0] for r in records], "key": [r[1] for r in records],
        "value": np.array([r[2] for r in records], dtype=np.float64),
        "train_steps": np.int64(1000), "train_seconds": 60.0,
        "eval_seconds": [None if r[3] is None else 1.5 for r in records],
        "job_seconds": 90.0, "device": "cpu", **VERSIONS,
        "job_config": json.dumps({"dataset": dataset, "model": method, "params": hp,
                                  "seed": seed}, sort_keys=True),
        "finished_at": pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(seconds=seed),
    }, index=range(n))
    df["eval_seconds"] = df["eval_seconds"].astype("float64")
    return df


def write_synthetic_store(study_dir: str | Path, datasets=("dsprites_full", "shapes3d"),
                          methods: dict | None = None, seeds=(0, 1, 2), seed: int = 0,
                          study: str = "synthetic") -> list[str]:
    """Write ``rows/<job_id>.parquet`` for every dataset × method × setting × seed; return job ids.
    Each file carries only its own method's hyperparameter columns (as a store of mixed methods
    may), so readers must unify schemas."""
    rng = np.random.default_rng(seed)
    rows_dir = Path(study_dir) / "rows"
    rows_dir.mkdir(parents=True, exist_ok=True)
    ids = []
    for dataset in datasets:
        for method, sweep in (METHODS if methods is None else methods).items():
            settings = [{}] if sweep is None else [{sweep[0]: v} for v in sweep[1]]
            for hp in settings:
                for s in seeds:
                    df = job_rows(study, dataset, method, hp, s, rng)
                    job_id = df["job_id"].iat[0]
                    pq.write_table(pa.Table.from_pandas(df, preserve_index=False),
                                   rows_dir / f"{job_id}.parquet")
                    ids.append(job_id)
    return ids
