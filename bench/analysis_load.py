"""How fast does a full-size results store open? Prints a table.

Writes a synthetic store of ``--jobs`` jobs (default 12,600, the Locatello grid) with the row count
of a real job (every metric's keys, per-factor downstream keys for 5 factors, both
representations, ~300 rows), then times ``load_results`` and ``wide``.

    OMP_NUM_THREADS=1 python bench/analysis_load.py --jobs 12600 [--dir /tmp/bigstore]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from analysis import figures, load
from analysis.synthetic import job_rows

FACTORS = 5


def _template():
    df = job_rows("unsupervised", "dsprites_full", "beta_vae", {"beta": 1.0}, 0,
                  np.random.default_rng(0))
    extra = []
    for rep in ("mean", "sampled"):
        for metric in ("downstream_lr", "downstream_gbt"):
            for n in (10, 100, 1000, 10000):
                for split in ("train", "test"):
                    for i in range(FACTORS):
                        extra.append((metric, f"{n}:{split}_accuracy_factor_{i}", rep))
        extra += [(m, k, rep) for m, k in (("irs", "IRS"), ("irs", "num_active_dims"),
                                          ("aam", "aam"), ("mmig", "mmig"))]
    base = df.iloc[[1] * len(extra)].reset_index(drop=True)
    base["metric"] = [e[0] for e in extra]
    base["key"] = [e[1] for e in extra]
    base["representation"] = [e[2] for e in extra]
    import pandas as pd

    return pd.concat([df, base], ignore_index=True)


def write_store(root: Path, jobs: int) -> None:
    tpl = _template()
    rng = np.random.default_rng(0)
    rows = root / "rows"
    rows.mkdir(parents=True, exist_ok=True)
    for j in range(jobs):
        df = tpl.copy()
        job_id = f"{j:016x}"
        df["job_id"] = job_id
        df["model_id"] = job_id
        df["seed"] = np.int64(j % 50)
        df["value"] = rng.uniform(size=len(df))
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), rows / f"{job_id}.parquet")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=12600)
    p.add_argument("--dir", type=Path, default=None, help="reuse/keep the store here")
    a = p.parse_args()
    root = a.dir or Path(tempfile.mkdtemp()) / "big"
    cache = root / load.CACHE_FILE
    for f in (cache, cache.with_suffix(".json")):
        f.unlink(missing_ok=True)
    if not (root / "rows").is_dir() or len(list((root / "rows").iterdir())) < a.jobs:
        t = time.perf_counter()
        write_store(root, a.jobs)
        print(f"wrote {a.jobs} jobs in {time.perf_counter() - t:.1f} s to {root}")
    t = time.perf_counter()
    df = load.load_results(root)
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    w = load.wide(df)
    t_wide = time.perf_counter() - t
    mem = df.memory_usage(deep=True).sum() / 2**20
    cols = figures.FIGURE_COLUMNS
    times = []
    for _ in range(2):  # first: builds <study>/.cache/rows.parquet; second: reads it
        t = time.perf_counter()
        load.load_results(root, cols, cache=True)
        times.append(time.perf_counter() - t)
    print("| jobs | rows | load_results s | wide s | wide shape | DataFrame MiB "
          "| figure columns, cache build s | cached reopen s |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {df['job_id'].nunique()} | {len(df)} | {t_load:.1f} | {t_wide:.1f} | "
          f"{w.shape[0]}×{w.shape[1]} | {mem:.0f} | {times[0]:.1f} | {times[1]:.1f} |")


if __name__ == "__main__":
    main()
