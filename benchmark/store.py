"""The results store: one Parquet file of tidy rows per finished job, written atomically.

Layout of a study folder (columns and files: docs/schema.md)::

    <results>/<study>/rows/<job_id>.parquet      finished jobs
    <results>/<study>/failures/<job_id>.json     failed jobs (reason, kind, traceback)
    <results>/<study>/checkpoints/<model_id>/    training checkpoints
    <results>/<study>/import.json                 imported studies: source and paths read
    <results>/<study>/leases/<job_id>.json       jobs being run now, and by whom

A lease keeps two drivers of one study (on one machine, or on two login nodes sharing the
filesystem) from training the same job at once: the process that runs a job first creates its
lease file with O_EXCL (atomic on local filesystems and NFSv3+), refreshes its heartbeat while the
job runs and removes it at the end. A lease whose heartbeat is older than `lease_timeout()`, or
whose process is gone from this host, is stale and is broken by the next claim.
    <results>/<study>/quarantine/                files set aside as corrupt, each with a .json
                                                 record (what, why, when)
    <results>/<study>/.cache/                    derived, safe to delete: rows-file verdicts,
                                                 the analysis' row cache

A file appears under its final name only once it is complete (temporary file, its data synced,
rename, folder synced; `atomic_write_files` does many files with one sync per chunk), so a crash
never leaves half a job (at most a ``.<name>.<random>.tmp`` file, which no reader lists), and two writers of the same job (a requeue racing a retry) replace
one complete file with an identical one instead of adding rows. A job is done when its rows file
is present and sound (`rows_problem`: the Parquet footer reads and has `REQUIRED_COLUMNS`); a
corrupt one (a disk or copy gone wrong) does not count, and `benchmark run` quarantines it and runs
the job again.
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
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.errors import UserError
from benchmark.outcomes import FailureKind, JobOutcome, Status
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


def _find_syncfs() -> Callable[[int], int] | None:
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).syncfs  # Linux (glibc >= 2.14, musl)
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn


_SYNCFS = _find_syncfs()
ATOMIC_CHUNK = 256  # files written, synced and renamed together (open descriptors at once)


def _sync(fds: list[int]) -> None:
    """Makes the data of the open files durable. One file: fsync. Many: syncfs(2) once per file
    system, which costs one device cache flush where an fsync per file costs one each (10,800
    fsyncs of small files took 52 s of wall time, one sync 0.6 s: docs/performance.md); without
    syncfs, or if it fails, fsync each."""
    if len(fds) > 1 and _SYNCFS is not None:
        first_of: dict[int, int] = {}
        for fd in fds:
            first_of.setdefault(os.fstat(fd).st_dev, fd)
        if all(_SYNCFS(fd) == 0 for fd in first_of.values()):
            return
    for fd in fds:
        os.fsync(fd)


def _sync_dir(folder: Path) -> None:
    """Makes the renames into ``folder`` durable (where folders can be opened: not on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the renames are still atomic
    finally:
        os.close(fd)


def _write_fd(fd: int, data: bytes | memoryview | pa.Buffer) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def atomic_write_files(files: Iterable[tuple[Path, bytes | pa.Buffer]],
                       progress: Callable[[int], None] | None = None) -> int:
    """Writes each ``(path, data)`` so that readers see either nothing or the whole file; returns
    how many. Files go to temporary names beside their targets (``.<name>.<random>.tmp``, which no
    reader of the store lists), ATOMIC_CHUNK at a time: written, their data made durable together
    (`_sync`), renamed into place, then each folder synced once. An error removes the chunk's
    temporary files and raises; a crash leaves at most them, never a partial file under a final
    name. ``progress(1)`` is called as each file is written. ``files`` is read lazily."""
    pending: list[tuple[int, str, Path]] = []  # (open descriptor, temporary path, target)
    count = 0

    def place() -> None:
        _sync([fd for fd, _, _ in pending])
        folders = dict.fromkeys(path.parent for _, _, path in pending)
        pending.reverse()
        while pending:
            fd, tmp, path = pending.pop()
            try:
                os.close(fd)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        for folder in folders:
            _sync_dir(folder)

    made: set[Path] = set()
    try:
        for path, data in files:
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            pending.append((fd, tmp, path))
            _write_fd(fd, data)
            count += 1
            if progress is not None:
                progress(1)
            if len(pending) >= ATOMIC_CHUNK:
                place()
        if pending:
            place()
    except BaseException:
        for fd, tmp, _ in pending:
            try:
                os.close(fd)
            except OSError:
                pass
            Path(tmp).unlink(missing_ok=True)
        raise
    return count


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes `data` to `path` so that readers see either nothing or the whole file."""
    atomic_write_files([(path, data)])


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
                record = json.loads(p.read_text())
            except (OSError, ValueError):  # also bytes that are not UTF-8
                record = None
            if not isinstance(record, dict):
                record = {"job_id": p.stem, "reason": "unreadable failure record",
                          "kind": FailureKind.ERROR.value}
            out[p.stem] = record
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
        table = pa.Table.from_pylist(rows, schema=rows_schema(param_columns))
        self.write_tables([(job_id, table)])
        return self.rows_path(job_id)

    def write_tables(self, tables: Iterable[tuple[str, pa.Table]], workers: int = 1,
                     progress: Callable[[int], None] | None = None) -> int:
        """Writes finished jobs' rows (job id, table with `rows_schema`'s columns), each atomically
        (`atomic_write_files`: many files cost a few syncs, not one each), and clears earlier
        failures of them; returns how many. ``workers`` threads encode the Parquet files (the
        encoder releases the GIL); ``tables`` is read lazily, a few ahead of the writer."""

        def encode(item: tuple[str, pa.Table]) -> tuple[Path, pa.Buffer]:
            job_id, table = item
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, compression="zstd")
            return self.rows_path(job_id), sink.getvalue()

        def noted(files: Iterator[tuple[Path, pa.Buffer]]) -> Iterator[tuple[Path, pa.Buffer]]:
            for path, data in files:
                written.append(path.stem)
                yield path, data

        written: list[str] = []
        if workers <= 1:
            n = atomic_write_files(noted(map(encode, tables)), progress)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                n = atomic_write_files(noted(_ordered_map(pool, encode, tables, 2 * workers)),
                                       progress)
        for job_id in written:
            self.failure_path(job_id).unlink(missing_ok=True)
        return n

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

    def record_failure(self, job_id: str, reason: str, kind: FailureKind,
                       **extra: Any) -> JobOutcome:
        """Writes the failure record (what a later run and `benchmark status` read) and returns the
        failed outcome; a record that cannot be written (a full disk) is said in the reason instead
        of stopping the run."""
        try:
            self.write_failure(job_id, reason, kind=kind, **extra)
        except OSError as exc:
            reason = f"{reason} (failure record not written: {type(exc).__name__}: {exc})"
        return JobOutcome(job_id, Status.FAILED, reason)

    def read_rows(self, job_id: str | None = None) -> pa.Table:
        """All rows of the study's sound rows files (or of one job), schemas unified across files."""
        if job_id is not None:
            return pq.read_table(self.rows_path(job_id))
        files = [self.rows_path(jid) for jid in sorted(self.done_ids())]
        if not files:
            return rows_schema([]).empty_table()
        tables = [pq.read_table(f) for f in files]
        return pa.concat_tables(tables, promote_options="default")


def _ordered_map(pool: Executor, fn: Callable[[Any], Any], items: Iterable[Any],
                 ahead: int) -> Iterator[Any]:
    """``pool.map(fn, items)`` with at most ``ahead`` items in flight (Executor.map reads all of
    ``items`` first, which for a study's tables would hold them all in memory)."""
    queue: deque[Future] = deque()
    try:
        for item in items:
            queue.append(pool.submit(fn, item))
            if len(queue) >= ahead:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
    finally:
        for future in queue:
            future.cancel()


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def format_exception(exc: BaseException) -> tuple[str, str]:
    """(one-line reason, full traceback) of an exception."""
    reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return reason, "".join(tb_module.format_exception(exc))
