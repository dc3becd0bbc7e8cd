"""What running a job can end as: one outcome type, its closed set of statuses, and the closed set
of failure kinds a failure record (`failures/<job_id>.json`) names.

`run_job`, every executor and `RunSummary` speak these types; the store writes the kinds' string
values, so the files on disk read the same as before these were enums.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class _StrEnum(str, Enum):
    """A member is its string value, also in f-strings and JSON (`enum.StrEnum` from 3.11)."""

    __str__ = str.__str__
    __format__ = str.__format__


class Status(_StrEnum):
    DONE = "done"
    SKIPPED = "skipped"  # its rows were already in the store
    FAILED = "failed"
    ELSEWHERE = "elsewhere"  # another process holds its lease: it is running there (not an end)


class FailureKind(_StrEnum):
    ERROR = "error"  # the job raised
    DIVERGED = "diverged"  # training produced non-finite values
    WORKER_DIED = "worker_died"  # the process running it died (a signal, the OOM killer)
    SLURM_TASK_ENDED = "slurm_task_ended"  # its Slurm task left the queue without finishing it
    NOT_SHARED = "not_shared"  # a remote worker finished it, but its rows are not in this store


@dataclass
class JobOutcome:
    job_id: str
    status: Status
    reason: str = ""  # why it failed
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self.status = Status(self.status)  # a bare "done" is accepted; an unknown status is not
