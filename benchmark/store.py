"""The results store: one Parquet file of tidy rows per finished job, written atomically.

Layout of a study folder (columns and files: docs/schema.md)::

    <results>/<study>/rows/<job_id>.parquet      finished jobs
    <results>/<study>/failures/<job_id>.json     failed jobs (reason, kind, traceback)
    <results>/<study>/checkpoints/<model_id>/    training checkpoints
    <results>/<study>/import.json                 imported studies: source and paths read
    <results>/<study>/leases/<job_id>.json       jobs being run now, and by whom

A file appears under its final name only once it is complete (temporary file, fsync, rename), so a
crash never leaves half a job, and two writers of the same job (a requeue racing a retry) replace
one complete file with an identical one instead of adding rows.

A lease keeps two drivers of one study (on one machine, or on two login nodes sharing the
filesystem) from training the same job at once: the process that runs a job first creates its
lease file with O_EXCL (atomic on local filesystems and NFSv3+), refreshes its heartbeat while the
job runs and removes it at the end. A lease whose heartbeat is older than `lease_timeout()`, or
whose process is gone from this host, is stale and is broken by the next claim.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import tempfile
import threading
import time
import traceback as tb_module
import uuid
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


LEASE_TIMEOUT_S = 300.0  # a heartbeat older than this marks a lease stale (10 missed beats)


def lease_timeout() -> float:
    """Seconds without a heartbeat after which a lease is stale: $BENCHMARK_LEASE_TIMEOUT_S, for a
    filesystem whose clocks or caches lag (every process of a study must agree on it)."""
    try:
        return max(1.0, float(os.environ["BENCHMARK_LEASE_TIMEOUT_S"]))
    except (KeyError, ValueError):
        return LEASE_TIMEOUT_S


def _process_state(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks since boot) of a process of this host, from
    /proc/<pid>/stat (fields 3 and 22); None when there is no such process (or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name, in parentheses, may hold spaces
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _process_alive(pid: int, start: str | None) -> bool:
    """Whether the process `pid` that started at `start` still runs on this host (a zombie or a
    new process that reuses the pid does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive
    state = _process_state(pid)
    if state is None:
        return not Path("/proc/self/stat").exists()  # no /proc here: trust kill(pid, 0)
    return state[0] not in ("Z", "X") and (start is None or state[1] == start)


class Lease:
    """A job's lease held by this process; `with lease:` refreshes its heartbeat in a thread while
    the job runs and removes it at the end."""

    def __init__(self, path: Path, record: dict[str, Any]):
        self.path = path
        self.record = record
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def token(self) -> str:
        return self.record["token"]

    def held(self) -> bool:
        """Whether the file is still this lease (a holder that stalled past the timeout may have
        had it broken by another process)."""
        return (_read_lease(self.path) or {}).get("token") == self.token

    def refresh(self) -> bool:
        """Renews the heartbeat; False when the lease is no longer this process's."""
        if not self.held():
            return False
        self.record["heartbeat"] = time.time()
        try:
            atomic_write_bytes(self.path, json.dumps(self.record).encode())
        except OSError:  # a full or briefly unreachable filesystem: the next beat tries again
            pass
        return True

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if self.held():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Lease:
        interval = lease_timeout() / 10

        def beat() -> None:
            while not self._stop.wait(interval):
                self.refresh()

        self._thread = threading.Thread(target=beat, name=f"lease {self.path.stem}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _slurm_task() -> str | None:
    """This process's Slurm task id as sacct and squeue write it ("123_4" in an array), so that a
    Slurm driver can tell its own ended task from a job running elsewhere; None outside Slurm."""
    env = os.environ
    if "SLURM_ARRAY_JOB_ID" in env and "SLURM_ARRAY_TASK_ID" in env:
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def _read_lease(path: Path) -> dict[str, Any] | None:
    """A lease file's record; None when it is gone, {} when it is unreadable (being written)."""
    try:
        record = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def describe_lease(record: dict[str, Any]) -> str:
    """Who holds a lease, in words."""
    if not record:
        return "running elsewhere"
    return (f"running elsewhere: {record.get('host', '?')} pid {record.get('pid', '?')} since "
            f"{record.get('started_at', '?')}")


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

    @property
    def leases_dir(self) -> Path:
        return self.root / "leases"

    def lease_path(self, job_id: str) -> Path:
        return self.leases_dir / f"{job_id}.json"

    def claim(self, job_id: str) -> Lease | None:
        """Takes the job's lease for this process (breaking a stale one); None when another live
        process holds it. Use the lease as a context manager around the job."""
        path = self.lease_path(job_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            record = {"job_id": job_id, "host": socket.gethostname(), "pid": os.getpid(),
                      "pid_start": (_process_state(os.getpid()) or ("", None))[1],
                      "started_at": now_utc().isoformat(), "heartbeat": time.time(),
                      "token": uuid.uuid4().hex, "slurm_task": _slurm_task()}
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                seen = _read_lease(path)
                if seen is None:
                    continue  # released meanwhile: try again
                if not self._stale(path, seen):
                    return None
                self._break(path, seen)
                continue
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(json.dumps(record).encode())
                    fh.flush()
                    os.fsync(fh.fileno())
            except BaseException:  # a full disk: an empty lease would block the job until stale
                path.unlink(missing_ok=True)
                raise
            return Lease(path, record)
        return None

    def lease_holder(self, job_id: str) -> dict[str, Any] | None:
        """The record of the live lease on the job ({} while it is being written); None when there
        is none or it is stale."""
        path = self.lease_path(job_id)
        seen = _read_lease(path)
        if seen is None or self._stale(path, seen):
            return None
        return seen

    def live_leases(self) -> dict[str, dict[str, Any]]:
        """job_id -> record of every live lease of the study."""
        if not self.leases_dir.is_dir():
            return {}
        out = {}
        for p in self.leases_dir.glob("*.json"):
            record = self.lease_holder(p.stem)
            if record is not None:
                out[p.stem] = record
        return out

    @staticmethod
    def _stale(path: Path, record: dict[str, Any]) -> bool:
        timeout = lease_timeout()
        if not record:  # unreadable: being written, or a writer died half-way
            try:
                return time.time() - path.stat().st_mtime > timeout
            except FileNotFoundError:
                return True
        if record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int):
            if not _process_alive(record["pid"], record.get("pid_start")):
                return True
        return time.time() - float(record.get("heartbeat", 0.0)) > timeout

    @staticmethod
    def _break(path: Path, seen: dict[str, Any]) -> None:
        """Removes the stale lease `seen`, and only it: it is renamed aside first (one of several
        breakers wins); a fresh lease taken aside by mistake is put back."""
        aside = path.with_name(f".{path.name}.{uuid.uuid4().hex}.stale")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return
        taken = _read_lease(aside)
        if taken and taken.get("token") != seen.get("token"):
            try:
                os.link(aside, path)  # put the fresh lease back, unless a newer one is there
            except OSError:
                pass
        aside.unlink(missing_ok=True)

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
