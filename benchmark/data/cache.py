"""Convert-once, memory-map-after caches of real dataset files.

A cache entry is a directory ``<cache root>/<key>/`` holding ``images.npy`` (uint8, opened with
``mmap_mode="r"`` so a million images open in milliseconds and cost no RAM until read), optional extra
``.npy`` arrays, and ``meta.json`` with the fingerprint (name, size, mtime) of the source files. An
entry is built in a temporary directory and renamed into place, so a crash or a bad file never leaves a
half-written cache; a changed source file invalidates it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import UserError

CACHE_VERSION = 1
CACHE_ENV = "BENCHMARK_CACHE"


def cache_root(data_dir: Path) -> Path:
    """$BENCHMARK_CACHE if set, else ``<data_dir>/.benchmark_cache``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path(data_dir) / ".benchmark_cache"


def fingerprint(paths: list[Path]) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        st = p.stat()
        out.append({"file": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def open_cached(
    root: Path, key: str, sources: list[Path], build: Callable[[Path], dict[str, Any]]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays of cache entry ``key`` (memory-mapped) and its metadata, building it first if needed.

    ``build(tmpdir)`` writes the ``.npy`` files into ``tmpdir`` and returns extra metadata; it raises
    ``UserError`` on bad input, in which case nothing is kept.
    """
    final = root / key
    meta_path = final / "meta.json"
    wanted = {"version": CACHE_VERSION, "sources": fingerprint(sources)}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {}
        if {k: meta.get(k) for k in wanted} == wanted:
            return _open_arrays(final), meta
        shutil.rmtree(final, ignore_errors=True)  # stale: the source files changed
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=root))
    except OSError as exc:
        raise UserError(f"cannot create the dataset cache in {root} ({exc.strerror}); set ${CACHE_ENV} to a writable directory") from exc
    try:
        extra = build(tmp)
        meta = {**wanted, **extra}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first: use its entry
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _open_arrays(final), json.loads((final / "meta.json").read_text())


def _open_arrays(folder: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.load(p, mmap_mode="r") for p in sorted(folder.glob("*.npy"))}


def new_array(folder: Path, name: str, shape: tuple[int, ...], dtype=np.uint8) -> np.memmap:
    """A writable ``.npy`` memmap in the cache entry being built (filled chunk by chunk)."""
    return np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
