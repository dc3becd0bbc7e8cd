"""The results store: one Parquet file of tidy rows per finished job, written atomically.

Layout of a study folder (columns and files: docs/schema.md)::

    <results>/<study>/rows/<job_id>.parquet      finished jobs
    <results>/<study>/failures/<job_id>.json     failed jobs (reason, kind, traceback)
    <results>/<study>/checkpoints/<model_id>/    training checkpoints
    <results>/<study>/import.json                 imported studies: source and paths read

A file appears under its final name only once it is complete (temporary file, fsync, rename), so a
crash never leaves half a job, and two writers of the same job (a requeue racing a retry) replace
one complete file with an identical one instead of adding rows.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import traceback as tb_module
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.errors import UserError
from benchmark.outcomes import FailureKind
from benchmark.schema import rows_schema


def versions() -> dict[str, str]:
    import numpy
    import sklearn
    import torch

    import benchmark

    return {
        "benchmark_version": benchmark.__version__,
        "torch_version": torch.__version__,
        "sklearn_version": sklearn.__version__,
        "numpy_version": numpy.__version__,
        "python_version": platform.python_version(),
    }


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes `data` to `path` so that readers see either nothing or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class StoreStatus:
    done: list[str]
    failed: dict[str, dict[str, Any]]
    pending: list[str]


class ResultsStore:
    """One study's folder of results."""

    def __init__(self, study_dir: str | Path):
        self.root = Path(study_dir)
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"results path {self.root} exists and is not a directory")

    @classmethod
    def for_study(cls, results_dir: str | Path, study: str) -> ResultsStore:
        results_dir = Path(results_dir)
        if results_dir.exists() and not results_dir.is_dir():
            raise UserError(f"--results {results_dir} exists and is not a directory")
        return cls(results_dir / study)

    @property
    def rows_dir(self) -> Path:
        return self.root / "rows"

    @property
    def failures_dir(self) -> Path:
        return self.root / "failures"

    def rows_path(self, job_id: str) -> Path:
        return self.rows_dir / f"{job_id}.parquet"

    def failure_path(self, job_id: str) -> Path:
        return self.failures_dir / f"{job_id}.json"

    def checkpoint_dir(self, model_id: str) -> Path:
        return self.root / "checkpoints" / model_id

    def log_path(self, job_id: str) -> Path:
        return self.root / "logs" / f"{job_id}.log"

    @property
    def import_path(self) -> Path:
        """Written by `benchmark import`: the source and paths an imported study came from."""
        return self.root / "import.json"

    def import_record(self) -> dict[str, Any] | None:
        """The study's import record, None for a study of our own runs (or an unreadable one)."""
        try:
            record = json.loads(self.import_path.read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def is_done(self, job_id: str) -> bool:
        return self.rows_path(job_id).exists()

    def done_ids(self) -> set[str]:
        if not self.rows_dir.is_dir():
            return set()
        return {p.stem for p in self.rows_dir.glob("*.parquet")}

    def failures(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if not self.failures_dir.is_dir():
            return out
        for p in sorted(self.failures_dir.glob("*.json")):
            try:
                out[p.stem] = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError):
                out[p.stem] = {"job_id": p.stem, "reason": "unreadable failure record",
                               "kind": FailureKind.ERROR.value}
        return out

    def status(self, job_ids: Iterable[str]) -> StoreStatus:
        done_ids, failures = self.done_ids(), self.failures()
        done, failed, pending = [], {}, []
        for jid in job_ids:
            if jid in done_ids:
                done.append(jid)
            elif jid in failures:
                failed[jid] = failures[jid]
            else:
                pending.append(jid)
        return StoreStatus(done, failed, pending)

    def write_rows(self, job_id: str, rows: list[dict[str, Any]], param_columns: Iterable[str]) -> Path:
        """Writes a finished job's rows atomically and clears an earlier failure of it."""
        return self._write_table(job_id, pa.Table.from_pylist(rows, schema=rows_schema(param_columns)))

    def write_columns(self, job_id: str, columns: dict[str, list[Any]],
                      param_columns: Iterable[str]) -> Path:
        """`write_rows` for rows given as columns (name → one value per row; absent names are
        null): 3× faster to convert, for importers writing thousands of files."""
        schema = rows_schema(param_columns)
        n = len(next(iter(columns.values()), []))
        data = {f.name: columns.get(f.name, [None] * n) for f in schema}
        return self._write_table(job_id, pa.Table.from_pydict(data, schema=schema))

    def _write_table(self, job_id: str, table: pa.Table) -> Path:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        path = self.rows_path(job_id)
        atomic_write_bytes(path, sink.getvalue().to_pybytes())
        self.failure_path(job_id).unlink(missing_ok=True)
        return path

    def write_failure(
        self, job_id: str, reason: str, kind: FailureKind = FailureKind.ERROR,
        traceback: str | None = None, **extra: Any
    ) -> Path:
        record = {
            "job_id": job_id,
            "reason": " ".join(reason.split()) or "unknown error",
            "kind": FailureKind(kind).value,
            "traceback": traceback or "",
            "failed_at": now_utc().isoformat(),
            **extra,
        }
        path = self.failure_path(job_id)
        atomic_write_bytes(path, json.dumps(record, indent=2).encode())
        return path

    def read_rows(self, job_id: str | None = None) -> pa.Table:
        """All rows of the study (or of one job), schemas unified across files."""
        if job_id is not None:
            return pq.read_table(self.rows_path(job_id))
        files = sorted(self.rows_dir.glob("*.parquet")) if self.rows_dir.is_dir() else []
        if not files:
            return rows_schema([]).empty_table()
        tables = [pq.read_table(f) for f in files]
        return pa.concat_tables(tables, promote_options="default")


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def format_exception(exc: BaseException) -> tuple[str, str]:
    """(one-line reason, full traceback) of an exception."""
    reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return reason, "".join(tb_module.format_exception(exc))
