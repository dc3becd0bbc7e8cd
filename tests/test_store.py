"""The results store: atomic writes, schema, readers."""

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmark.errors import UserError
from benchmark.schema import BASE_COLUMNS, COLUMNS, TAIL_COLUMNS
from benchmark.store import ResultsStore, atomic_write_bytes, rows_schema


def _row(job_id="j1", value=1.0, **extra):
    return {"study": "s", "job_id": job_id, "model_id": "m", "dataset": "d",
            "dataset_source": "procedural", "model": "beta_vae", "model_params": '{"beta":1.0}',
            "seed": 0, "metric": "mig", "key": "discrete_mig", "value": value, **extra}


def test_rows_round_trip_with_the_schema(tmp_path):
    store = ResultsStore(tmp_path / "s")
    store.write_rows("j1", [_row(beta=4.0), _row(value=2.0)], ["beta", "gamma"])
    table = pq.read_table(store.rows_path("j1"))
    assert table.schema == rows_schema(["beta", "gamma"])
    assert table.column("beta").to_pylist() == [4.0, None]
    assert table.column("value").to_pylist() == [1.0, 2.0]


def test_the_store_writes_the_schema_modules_columns(tmp_path):
    store = ResultsStore(tmp_path / "s")
    store.write_rows("j1", [_row(beta=4.0, provenance='{"source": "benchmark"}')], ["beta"])
    written = pq.read_schema(store.rows_path("j1"))
    assert [(f.name, f.type) for f in written] == (
        [(c.name, c.type) for c in BASE_COLUMNS] + [("beta", pa.float64())]
        + [(c.name, c.type) for c in TAIL_COLUMNS])
    assert store.read_rows().column("provenance").to_pylist() == ['{"source": "benchmark"}']
    assert ResultsStore(tmp_path / "empty").read_rows().column_names == [c.name for c in COLUMNS]


def test_a_crash_during_the_write_leaves_nothing_behind(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "s")

    def crash(*args):
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.write_rows("j1", [_row()], [])
    assert not store.is_done("j1")
    assert list(store.rows_dir.iterdir()) == []  # no temporary file left either


def test_a_second_writer_replaces_instead_of_duplicating(tmp_path):
    store = ResultsStore(tmp_path / "s")
    store.write_rows("j1", [_row()], [])
    store.write_rows("j1", [_row()], [])
    assert store.read_rows().num_rows == 1


def test_failure_records_and_status(tmp_path):
    store = ResultsStore(tmp_path / "s")
    store.write_failure("j2", "ValueError: bad\nthings", kind="error", traceback="tb")
    store.write_rows("j1", [_row()], [])
    st = store.status(["j1", "j2", "j3"])
    assert st.done == ["j1"] and list(st.failed) == ["j2"] and st.pending == ["j3"]
    assert st.failed["j2"]["reason"] == "ValueError: bad things"
    store.write_rows("j2", [_row("j2")], [])
    assert store.failures() == {}


def test_readers_unify_studies_with_different_hyperparameters(tmp_path):
    import duckdb
    import pandas as pd

    store = ResultsStore(tmp_path / "s")
    store.write_rows("a", [_row("a", beta=2.0)], ["beta"])
    store.write_rows("b", [_row("b", gamma=10.0)], ["gamma"])
    table = store.read_rows()
    assert table.num_rows == 2 and {"beta", "gamma"} <= set(table.column_names)
    df = pd.read_parquet(store.rows_dir)
    assert len(df) == 2
    con = duckdb.connect()
    n = con.execute(f"select count(*) from read_parquet('{store.rows_dir}/*.parquet', "
                    "union_by_name=true)").fetchone()[0]
    assert n == 2


def test_atomic_write_bytes(tmp_path):
    target = tmp_path / "x" / "f.bin"
    atomic_write_bytes(target, b"abc")
    atomic_write_bytes(target, b"defg")
    assert target.read_bytes() == b"defg"
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]


def _truncate(path, size=100):
    data = path.read_bytes()
    path.write_bytes(data[:size])


def test_a_truncated_rows_file_is_not_done_and_is_reported(tmp_path):
    store = ResultsStore(tmp_path / "s")
    store.write_rows("j1", [_row("j1")], [])
    store.write_rows("j2", [_row("j2")], [])
    _truncate(store.rows_path("j2"))
    assert store.done_ids() == {"j1"}
    assert store.is_done("j1") and not store.is_done("j2")
    st = store.status(["j1", "j2", "j3"])
    assert st.done == ["j1"] and st.pending == ["j2", "j3"]
    assert list(st.corrupt) == ["j2"] and "unreadable Parquet" in st.corrupt["j2"]
    assert store.read_rows().column("job_id").to_pylist() == ["j1"]  # readers skip it too
    # A sound file again (same name, new size and mtime): the cached verdict follows it.
    store.write_rows("j2", [_row("j2")], [])
    assert store.done_ids() == {"j1", "j2"} and store.corrupt_rows() == {}


def test_a_rows_file_without_the_required_columns_is_corrupt(tmp_path):
    store = ResultsStore(tmp_path / "s")
    store.rows_dir.mkdir(parents=True)
    pq.write_table(pa.table({"job_id": ["j1"], "value": [1.0]}), store.rows_path("j1"))
    assert store.done_ids() == set()
    assert "lacks the columns study" in store.corrupt_rows()["j1"]


def test_quarantine_moves_the_file_beside_a_record(tmp_path):
    import json

    store = ResultsStore(tmp_path / "s")
    store.write_rows("j1", [_row("j1")], [])
    _truncate(store.rows_path("j1"))
    problem = store.quarantine_corrupt_rows("j1")
    assert "unreadable" in problem
    assert not store.rows_path("j1").exists() and not store.is_done("j1")
    (moved,) = (store.quarantine_dir / "rows").glob("*-j1.parquet")
    assert moved.stat().st_size == 100
    record = json.loads(moved.with_name(moved.name + ".json").read_text())
    assert record["what"] == "rows/j1.parquet" and "unreadable" in record["why"]
    assert record["when"] and record["size"] == 100
    assert store.quarantine_corrupt_rows("j1") is None  # nothing left to move
    store.write_rows("j2", [_row("j2")], [])
    assert store.quarantine_corrupt_rows("j2") is None and store.is_done("j2")  # sound: kept
    with pytest.raises(UserError, match="not in the study folder"):
        store.quarantine(tmp_path / "elsewhere.txt", "x")


def test_verdicts_are_kept_for_the_next_process(tmp_path, monkeypatch):
    import benchmark.store as store_module

    store = ResultsStore(tmp_path / "s")
    for jid in ("j1", "j2", "j3"):
        store.write_rows(jid, [_row(jid)], [])
    _truncate(store.rows_path("j3"))
    assert store.done_ids() == {"j1", "j2"}
    checked = []
    real = store_module.rows_problem
    monkeypatch.setattr(store_module, "rows_problem", lambda p: checked.append(p.name) or real(p))
    again = ResultsStore(tmp_path / "s")  # as `benchmark status` would: reads the saved verdicts
    assert again.done_ids() == {"j1", "j2"} and list(again.corrupt_rows()) == ["j3"]
    assert checked == []
    store.write_rows("j3", [_row("j3")], [])  # changed since: checked again
    assert ResultsStore(tmp_path / "s").done_ids() == {"j1", "j2", "j3"} and checked == ["j3.parquet"]


def _tables(n):
    schema = rows_schema([])
    return [(f"j{i}", pa.Table.from_pylist([_row(f"j{i}", value=float(i))], schema=schema))
            for i in range(n)]


def test_a_batch_write_interrupted_before_its_renames_leaves_nothing(tmp_path, monkeypatch):
    import benchmark.store as store_module

    real = store_module._sync
    syncs = []

    def sync_then_cut(after):  # the power goes at the sync after `after` syncs
        def sync(fds):
            syncs.append(len(fds))
            if len(syncs) > after:
                raise OSError("power cut before the renames")
            real(fds)
        return sync

    store = ResultsStore(tmp_path / "s")
    monkeypatch.setattr(store_module, "_sync", sync_then_cut(0))
    with pytest.raises(OSError, match="power cut"):
        store.write_tables(_tables(5), workers=2)
    assert list(store.rows_dir.iterdir()) == []  # no rows file, no temporary file
    # In chunks of 2, the third sync fails: the first two chunks are in place and whole.
    monkeypatch.setattr(store_module, "ATOMIC_CHUNK", 2)
    syncs.clear()
    monkeypatch.setattr(store_module, "_sync", sync_then_cut(2))
    with pytest.raises(OSError, match="power cut"):
        store.write_tables(_tables(5))
    assert syncs == [2, 2, 1]
    assert sorted(p.name for p in store.rows_dir.iterdir()) == [f"j{i}.parquet" for i in range(4)]
    monkeypatch.setattr(store_module, "_sync", real)
    assert store.done_ids() == {"j0", "j1", "j2", "j3"}
    assert store.write_tables(_tables(5), workers=3) == 5
    assert store.read_rows().column("value").to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert sorted(p.name for p in store.rows_dir.iterdir()) == [f"j{i}.parquet" for i in range(5)]


def test_a_batch_write_syncs_each_file_system_once(tmp_path, monkeypatch):
    import benchmark.store as store_module

    synced, fsynced = [], []
    monkeypatch.setattr(store_module, "_SYNCFS", lambda fd: synced.append(fd) or 0)
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: fsynced.append(fd) or real_fsync(fd))
    store = ResultsStore(tmp_path / "s")
    store.write_tables(_tables(10))
    assert len(synced) == 1 and len(fsynced) == 1  # one syncfs for the data, one folder fsync
    store.write_rows("j1", [_row("j1")], [])  # one file: its own fsync, then the folder's
    assert len(synced) == 1 and len(fsynced) == 3
    monkeypatch.setattr(store_module, "_SYNCFS", lambda fd: -1)  # failing: fsync each instead
    store.write_tables(_tables(3))
    assert len(fsynced) == 3 + 3 + 1
