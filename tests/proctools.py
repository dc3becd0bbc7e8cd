"""Processes of this machine from /proc (psutil is not a dependency): descendants of a process, and
whether a process seen earlier still runs (the same pid and start time, not a zombie)."""

from __future__ import annotations

import os
from pathlib import Path


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()  # fields from the 3rd on (state, ppid, ...)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(root: int) -> dict[int, str]:
    """pid -> start time of every living descendant of `root`."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields is None or fields[0] in ("Z", "X"):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        starts[int(entry)] = fields[19]
    out, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out[pid] = starts[pid]
        todo += children.get(pid, [])
    return out


def alive(pid: int, start: str) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X") and fields[19] == start


def survivors(seen: dict[int, str]) -> dict[int, str]:
    """Those of `seen` (pid -> start time) still running, with their command lines."""
    return {pid: cmdline(pid) for pid, start in seen.items() if alive(pid, start)}


def parent(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if fields else None
