"""The results store: one Parquet file of tidy rows per finished job, written atomically.

Layout of a study folder (DESIGN.md §5)::

    <results>/<study>/rows/<job_id>.parquet      finished jobs
    <results>/<study>/failures/<job_id>.json     failed jobs (reason, kind, traceback)
    <results>/<study>/checkpoints/<model_id>/    training checkpoints
    <results>/<study>/quarantine/                files set aside as corrupt, each with a .json
                                                 record (what, why, when)
    <results>/<study>/.cache/                    derived, safe to delete: rows-file verdicts,
                                                 the analysis' row cache

A file appears under its final name only once it is complete (temporary file, fsync, rename), so a
crash never leaves half a job, and two writers of the same job (a requeue racing a retry) replace
one complete file with an identical one instead of adding rows. A job is done when its rows file
is present and sound (`rows_problem`: the Parquet footer reads and has `REQUIRED_COLUMNS`); a
corrupt one (a disk or copy gone wrong) does not count, and `benchmark run` quarantines it and runs
the job again.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import traceback as tb_module
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.errors import UserError
from benchmark.schema import JOB_COLUMNS, rows_schema

# What a rows file must have to count as a job's rows: who made them and what they measure. Columns
# added later (dataset_provenance, provenance) are absent from older files and read as null.
REQUIRED_COLUMNS: tuple[str, ...] = (*JOB_COLUMNS, "representation", "metric", "key", "value")
VERDICTS_FILE = Path(".cache") / "rows_verdicts.json"  # under the study folder: see ResultsStore


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


def rows_problem(path: Path) -> str | None:
    """Why the rows file at ``path`` cannot count as a finished job (None: it is sound).

    Cheap: reads the Parquet footer only (a truncated or overwritten file has none).
    """
    try:
        names = set(pq.read_schema(path).names)
    except (OSError, pa.ArrowException) as e:
        return f"unreadable Parquet file: {type(e).__name__}: {' '.join(str(e).split())}"
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    return f"lacks the columns {', '.join(missing)}" if missing else None


@dataclass
class StoreStatus:
    done: list[str]
    failed: dict[str, dict[str, Any]]
    pending: list[str]  # includes the jobs whose rows file is corrupt: they run again
    corrupt: dict[str, str] = field(default_factory=dict)  # job id -> why its rows file is unsound


class ResultsStore:
    """One study's folder of results."""

    def __init__(self, study_dir: str | Path):
        self.root = Path(study_dir)
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"results path {self.root} exists and is not a directory")
        # Verdicts of `rows_problem` by file name, valid while (size, mtime) are unchanged: a
        # polling driver re-checks 12,600 files with one stat each. `rows_verdicts` keeps them in
        # VERDICTS_FILE too, so a new process (`benchmark status`) reads only new or changed files.
        self._verdicts: dict[str, tuple[tuple[int, int], str | None]] = {}
        self._verdicts_loaded = False
        self._verdicts_changed = False

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
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    def _verdict(self, name: str, stat: os.stat_result) -> str | None:
        stamp = (stat.st_size, stat.st_mtime_ns)
        cached = self._verdicts.get(name)
        if cached is None or cached[0] != stamp:
            cached = (stamp, rows_problem(self.rows_dir / name))
            self._verdicts[name] = cached
            self._verdicts_changed = True
        return cached[1]

    @property
    def verdicts_path(self) -> Path:
        return self.root / VERDICTS_FILE

    def rows_verdicts(self) -> dict[str, str | None]:
        """Every rows file's job id -> why it is unsound, or None when it is sound."""
        out: dict[str, str | None] = {}
        try:
            entries = list(os.scandir(self.rows_dir))
        except (FileNotFoundError, NotADirectoryError):
            return out
        if not self._verdicts_loaded:
            self._verdicts_loaded = True
            try:
                saved = json.loads(self.verdicts_path.read_text())
                self._verdicts.update({n: ((v[0], v[1]), v[2]) for n, v in saved.items()})
            except (OSError, ValueError, TypeError, IndexError, AttributeError):
                pass  # none yet, or unreadable: verdicts are rebuilt from the files
        for entry in entries:
            if not entry.name.endswith(".parquet"):
                continue
            try:
                out[entry.name[:-len(".parquet")]] = self._verdict(entry.name, entry.stat())
            except FileNotFoundError:  # replaced or quarantined meanwhile
                continue
        if self._verdicts_changed:
            self._verdicts_changed = False
            saved = {n: [*stamp, problem] for n, (stamp, problem) in self._verdicts.items()
                     if n[:-len(".parquet")] in out}
            try:
                atomic_write_bytes(self.verdicts_path, json.dumps(saved).encode())
            except OSError:
                pass  # a read-only store: verdicts are kept in this process only
        return out

    def rows_problem(self, job_id: str) -> str | None:
        """Why the job's rows file is unsound; None when it is sound or absent."""
        path = self.rows_path(job_id)
        try:
            return self._verdict(path.name, path.stat())
        except FileNotFoundError:
            return None

    def is_done(self, job_id: str) -> bool:
        """Whether the job's rows file is present and sound."""
        path = self.rows_path(job_id)
        try:
            return self._verdict(path.name, path.stat()) is None
        except FileNotFoundError:
            return False

    def done_ids(self) -> set[str]:
        """The jobs whose rows file is present and sound."""
        return {jid for jid, problem in self.rows_verdicts().items() if problem is None}

    def corrupt_rows(self) -> dict[str, str]:
        """Job id -> why its rows file is unsound, for every unsound rows file."""
        return {jid: problem for jid, problem in self.rows_verdicts().items() if problem is not None}

    def quarantine(self, path: str | Path, reason: str) -> Path | None:
        """Moves ``path`` (a file of this study) to ``quarantine/`` beside a JSON record of what,
        why and when; returns where it went, or None if it was gone already (another process)."""
        path = Path(path)
        try:
            rel = path.resolve().relative_to(self.root.resolve())
        except ValueError:
            raise UserError(f"cannot quarantine {path}: not in the study folder {self.root}") from None
        when = now_utc()
        dest = self.quarantine_dir / rel.parent / f"{when.strftime('%Y%m%dT%H%M%S%fZ')}-{rel.name}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            size = path.stat().st_size
            os.replace(path, dest)
        except FileNotFoundError:
            return None
        self._verdicts.pop(path.name, None)
        record = {"what": rel.as_posix(), "why": " ".join(reason.split()), "when": when.isoformat(),
                  "size": size, "moved_to": dest.relative_to(self.root).as_posix()}
        atomic_write_bytes(dest.with_name(dest.name + ".json"), json.dumps(record, indent=2).encode())
        return dest

    def quarantine_corrupt_rows(self, job_id: str) -> str | None:
        """Quarantines the job's rows file if it is unsound, so the job runs again; the reason."""
        problem = self.rows_problem(job_id)
        if problem is not None:
            self.quarantine(self.rows_path(job_id), f"corrupt rows file: {problem}")
        return problem

    def failures(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if not self.failures_dir.is_dir():
            return out
        for p in sorted(self.failures_dir.glob("*.json")):
            try:
                out[p.stem] = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError):
                out[p.stem] = {"job_id": p.stem, "reason": "unreadable failure record", "kind": "error"}
        return out

    def status(self, job_ids: Iterable[str]) -> StoreStatus:
        verdicts, failures = self.rows_verdicts(), self.failures()
        done, failed, pending, corrupt = [], {}, [], {}
        for jid in job_ids:
            if jid in verdicts and verdicts[jid] is None:
                done.append(jid)
                continue
            if verdicts.get(jid) is not None:
                corrupt[jid] = verdicts[jid]
            if jid in failures:
                failed[jid] = failures[jid]
            else:
                pending.append(jid)
        return StoreStatus(done, failed, pending, corrupt)

    def write_rows(self, job_id: str, rows: list[dict[str, Any]], param_columns: Iterable[str]) -> Path:
        """Writes a finished job's rows atomically and clears an earlier failure of it."""
        schema = rows_schema(param_columns)
        table = pa.Table.from_pylist(rows, schema=schema)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        path = self.rows_path(job_id)
        atomic_write_bytes(path, sink.getvalue().to_pybytes())
        self.failure_path(job_id).unlink(missing_ok=True)
        return path

    def write_failure(
        self, job_id: str, reason: str, kind: str = "error", traceback: str | None = None, **extra: Any
    ) -> Path:
        record = {
            "job_id": job_id,
            "reason": " ".join(reason.split()) or "unknown error",
            "kind": kind,
            "traceback": traceback or "",
            "failed_at": now_utc().isoformat(),
            **extra,
        }
        path = self.failure_path(job_id)
        atomic_write_bytes(path, json.dumps(record, indent=2).encode())
        return path

    def read_rows(self, job_id: str | None = None) -> pa.Table:
        """All rows of the study's sound rows files (or of one job), schemas unified across files."""
        if job_id is not None:
            return pq.read_table(self.rows_path(job_id))
        files = [self.rows_path(jid) for jid in sorted(self.done_ids())]
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
