"""One spec run two ways (local workers, Ray, Slurm), its rows compared bitwise.

Every column is compared except those that say when and for how long, and in `provenance` the
peak memory of the process that ran the job; the rest (values, steps, versions, configuration,
`torch_threads`, the GBT back-end counts) must be equal.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

# Columns that differ between any two runs of the same job: when, and how long.
TIMING = ["train_seconds", "eval_seconds", "job_seconds", "finished_at"]
# `provenance` keys that depend on the process that ran the job, not on the job.
RUN_DEPENDENT = {"peak_rss_mb", "peak_rss_children_mb"}
ORDER = ["job_id", "metric", "representation", "key"]


def comparable(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows without the run-dependent columns and provenance keys, in a fixed order."""
    out = rows.drop(columns=TIMING)
    provenance = [json.loads(p) for p in out["provenance"]]
    assert all("torch_threads" in p for p in provenance)
    out["provenance"] = [json.dumps({k: v for k, v in p.items() if k not in RUN_DEPENDENT},
                                    sort_keys=True) for p in provenance]
    return out.sort_values(ORDER, na_position="first").reset_index(drop=True)


def assert_same_rows(one: pd.DataFrame, two: pd.DataFrame) -> None:
    """Bitwise equal rows for the same job ids (NaN equals NaN)."""
    assert sorted(set(one.job_id)) == sorted(set(two.job_id)) and len(one)
    pd.testing.assert_frame_equal(comparable(one), comparable(two), check_exact=True)


def run_cli(spec: Path, results: Path, *args: str, timeout: float = 900) -> pd.DataFrame:
    """`benchmark run spec --results results *args` in a fresh process; the study's rows."""
    study = yaml.safe_load(spec.read_text())["study"]
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "run", str(spec), "--results",
                          str(results), "--quiet", "--no-figures", *args],
                         cwd=spec.parent, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return pd.read_parquet(results / study / "rows")
