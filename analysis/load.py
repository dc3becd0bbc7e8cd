"""Read a results store (docs/schema.md) into pandas.

A study directory holds ``rows/<job_id>.parquet`` (tidy rows, one file per finished job) and
``failures/<job_id>.json``; a results root holds one such directory per study. Files of one study
can differ in their hyperparameter columns (each method has its own), so schemas are unified and
absent columns read as null. A rows file that cannot be read (truncated, overwritten) is skipped and
reported (``on_unreadable``), never the end of a figures run.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmark.errors import UserError
from benchmark.schema import COLUMNS, JOB_COLUMNS
from benchmark.store import ResultsStore

# The results-row contract's columns (benchmark/schema.py); any other column is a hyperparameter.
CONTRACT_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS)
TRAIN_METRIC = "train"
# Called with each rows file that cannot be read and why; the default logs one warning line.
OnUnreadable = Callable[[Path, str], None]
log = logging.getLogger(__name__)


def study_dirs(results_dir: str | Path) -> list[Path]:
    """The study directories under ``results_dir``: itself if it has ``rows/``, else its children
    that do (sorted by name)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise UserError(f"results directory not found: {root}")
    if (root / "rows").is_dir():
        return [root]
    found = sorted(p for p in root.iterdir() if (p / "rows").is_dir())
    if not found:
        raise UserError(f"no study under {root}: expected {root}/rows/ or {root}/<study>/rows/")
    return found


CACHE_FILE = Path(".cache") / "rows.parquet"  # under the study directory
_FILE = "__rows_file"  # the cache's extra column: the rows file each row came from


def _selected(schema: pa.Schema, columns: Sequence[str] | None) -> list[str]:
    # The asked contract columns and every numeric non-contract (hyperparameter) column.
    return [f.name for f in schema if f.name != _FILE and (
        columns is None or f.name in columns
        or (f.name not in CONTRACT_COLUMNS and _numeric(f.type)))]


def _read_one(path: Path, columns: Sequence[str] | None) -> pa.Table | str:
    """The file's rows, or why it cannot be read."""
    # ParquetFile.read skips the dataset discovery of pq.read_table: ~3x faster on small files.
    try:
        pf = pq.ParquetFile(path)
        return pf.read(columns=_selected(pf.schema_arrow, columns), use_threads=False)
    except (OSError, pa.ArrowException) as e:
        return f"{type(e).__name__}: {' '.join(str(e).split())}"


def _read_tables(files: Sequence[Path], columns: Sequence[str] | None,
                 on_unreadable: OnUnreadable) -> dict[Path, pa.Table]:
    """The readable files' tables (in order); each unreadable one goes to ``on_unreadable``."""
    # Decoding releases the GIL, so a few threads overlap file-system waits with decoding.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        read = list(pool.map(lambda f: _read_one(f, columns), files))
    out = {}
    for f, t in zip(files, read, strict=True):
        if isinstance(t, str):
            on_unreadable(f, t)
        else:
            out[f] = t
    return out


def _warn_unreadable(path: Path, reason: str) -> None:
    log.warning("skipped unreadable rows file %s: %s", path, reason)


def _concat(tables: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(tables, promote_options="permissive")


def _cached_study(study_dir: Path, files: list[Path], columns: Sequence[str] | None,
                  on_unreadable: OnUnreadable) -> pa.Table | None:
    """The rows of ``files`` via ``<study>/.cache/rows.parquet``: one file holding every row
    already read, keyed by each rows file's name, size and mtime. Only new or changed files are
    read, then the cache is rewritten (atomically; skipped if the folder is read-only). The
    manifest remembers unreadable files too (stamp + reason), so they are reported, not re-read.
    None when no file is readable."""
    cache = study_dir / CACHE_FILE
    manifest_path = cache.with_suffix(".json")
    stamps = {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in files}
    try:
        manifest = json.loads(manifest_path.read_text())
        cached_schema = pq.read_schema(cache)
    except (OSError, ValueError, pa.ArrowException):
        manifest, cached_schema = {}, None
    # Entries still valid: same stamp; a third element is why the file was unreadable.
    known = {n: m for n, m in manifest.items() if m[:2] == stamps.get(n)}
    if cached_schema is None:
        known = {}
    unreadable = {n: m[2] for n, m in known.items() if len(m) > 2}
    fresh = sorted(n for n in known if n not in unreadable)
    for name, reason in sorted(unreadable.items()):
        on_unreadable(study_dir / "rows" / name, reason)
    if len(known) == len(files) and len(manifest) == len(files):
        return pq.read_table(cache, columns=_selected(cached_schema, columns)) if fresh else None
    parts = []
    if fresh:
        old = pq.read_table(cache)
        keep = pc.is_in(old[_FILE], value_set=pa.array(fresh))
        parts.append(old.filter(keep))
    new = [f for f in files if f.name not in known]

    def note(path: Path, reason: str) -> None:
        unreadable[path.name] = reason
        on_unreadable(path, reason)

    for f, t in _read_tables(new, None, note).items():
        parts.append(t.append_column(_FILE, pa.array([f.name] * t.num_rows, pa.string())))
    if not parts:
        return None
    table = _concat(parts)
    table = table.take(pc.sort_indices(table, [(_FILE, "ascending")]))  # stable: file, then row
    manifest = {n: st + [unreadable[n]] if n in unreadable else st for n, st in stamps.items()}
    try:
        cache.parent.mkdir(exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, cache)
        tmp_m = manifest_path.with_name(f".{manifest_path.name}.{os.getpid()}.tmp")
        tmp_m.write_text(json.dumps(manifest, sort_keys=True))
        os.replace(tmp_m, manifest_path)
    except OSError:
        pass  # a read-only store still loads, only without the cache
    return table.select(_selected(table.schema, columns))


def load_results(results_dir: str | Path, columns: Sequence[str] | None = None,
                 cache: bool = False, on_unreadable: OnUnreadable | None = None) -> pd.DataFrame:
    """All result rows of a study directory, or of every study under a results root.

    Returns one tidy DataFrame (the columns of the results-row contract plus every hyperparameter
    column seen in any file; null where a file lacks it), rows ordered by study, file name, row.
    ``columns`` limits the contract columns read (hyperparameter columns are always read); leaving
    out the long JSON columns (job_config, model_params) saves most of the memory of a big store.
    ``cache``: keep every row in ``<study>/.cache/rows.parquet`` too and read only the rows files
    that are new or changed since (a big store then reopens in a second or two).
    ``on_unreadable(path, reason)`` is told of each rows file that cannot be read (it is skipped);
    by default one warning line is logged per file.
    Raises ``UserError`` when the directory has no study or no readable rows.
    """
    report = on_unreadable or _warn_unreadable
    unreadable = []

    def note(path: Path, reason: str) -> None:
        unreadable.append(path)
        report(path, reason)

    tables = []
    for d in study_dirs(results_dir):
        files = sorted((d / "rows").glob("*.parquet"))
        if not files:
            continue
        if cache:
            table = _cached_study(d, files, columns, note)
        else:
            read = list(_read_tables(files, columns, note).values())
            table = _concat(read) if read else None
        if table is not None:
            tables.append(table)
    if not tables:
        why = f"{len(unreadable)} unreadable files" if unreadable else "rows/*.parquet is empty"
        raise UserError(f"no result rows under {results_dir} ({why})")
    df = _concat(tables).to_pandas()
    if "seed" in df.columns:
        df["seed"] = df["seed"].astype("Int64")
    return df


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_floating(t) or pa.types.is_integer(t)


def hyperparameter_columns(df: pd.DataFrame) -> list[str]:
    """Numeric columns outside the results-row contract: one per numeric hyperparameter of the
    study's methods (string options live in model_params only)."""
    return [c for c in df.columns
            if c not in CONTRACT_COLUMNS and pd.api.types.is_numeric_dtype(df[c])]


def wide(df: pd.DataFrame) -> pd.DataFrame:
    """One row per job × representation, one column per ``"metric.key"``.

    Job attributes (study, job_id, model_id, dataset, dataset_source, model, model_params,
    hyperparameters, seed) and ``representation`` come first. Training summaries (metric
    ``train``, no representation) are job-level: their ``train.<key>`` columns repeat on every
    representation row of the job; a job with training rows only gets one row with a null
    representation. A duplicated (job, representation, metric, key) keeps its last row.
    """
    missing = [c for c in ("job_id", "representation", "metric", "key", "value") if c not in df]
    if missing:
        raise UserError(f"results rows lack columns {missing}")
    id_cols = [c for c in JOB_COLUMNS if c in df.columns] + hyperparameter_columns(df)
    jobs = df.drop_duplicates("job_id", keep="last")[id_cols].set_index("job_id")

    col = df["metric"].astype(str) + "." + df["key"].astype(str)
    is_train = df["metric"].astype(str).eq(TRAIN_METRIC) | df["representation"].isna()
    evals = df.loc[~is_train, ["job_id", "representation", "value"]].assign(column=col[~is_train])
    train = df.loc[is_train, ["job_id", "value"]].assign(column=col[is_train])

    ev = (evals.drop_duplicates(["job_id", "representation", "column"], keep="last")
          .pivot(index=["job_id", "representation"], columns="column", values="value"))
    tr = (train.drop_duplicates(["job_id", "column"], keep="last")
          .pivot(index="job_id", columns="column", values="value"))
    ev = ev.reset_index()
    if len(tr):
        tr = tr.reset_index()
        # Jobs with training rows and no evaluation rows still appear (representation null).
        only_train = tr.loc[~tr["job_id"].isin(ev["job_id"]), ["job_id"]]
        ev = pd.concat([ev, only_train.assign(representation=None)], ignore_index=True)
        ev = ev.merge(tr, on="job_id", how="left")
    out = jobs.reset_index().merge(ev, on="job_id", how="right")
    value_cols = sorted(c for c in out.columns if c not in id_cols and c != "representation")
    out = out[id_cols + ["representation"] + value_cols]
    out.columns.name = None
    return out.sort_values(["job_id", "representation"], na_position="last").reset_index(drop=True)


def load_failures(study_dir: str | Path) -> pd.DataFrame:
    """The study's ``failures/*.json`` as a DataFrame (job_id, kind, reason, failed_at), sorted
    by job id; empty when there are none. Read by the store (`ResultsStore.failures`), as
    ``benchmark status`` reads them: an unreadable record is kind ``error``, reason "unreadable
    failure record"."""
    rows = [{"job_id": rec.get("job_id", job_id), **{k: rec.get(k) for k in ("kind", "reason", "failed_at")}}
            for job_id, rec in ResultsStore(study_dir).failures().items()]
    return pd.DataFrame(rows, columns=["job_id", "kind", "reason", "failed_at"])
