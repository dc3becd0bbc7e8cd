"""The executor interface: submit jobs, follow them, report what finished and what failed."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from benchmark.spec import Job
from benchmark.store import ResultsStore


@dataclass
class RunSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # job_id -> reason
    interrupted: bool = False

    def record(self, job_id: str, status: str, reason: str = "") -> None:
        """Counts one job's outcome: "done", "skipped" or anything else (a failure with `reason`)."""
        if status == "done":
            self.done.append(job_id)
        elif status == "skipped":
            self.skipped.append(job_id)
        else:
            self.failed[job_id] = reason

    @property
    def exit_code(self) -> int:
        """0 when every job is done, 1 when some failed; 130 on Ctrl-C (docs/architecture.md)."""
        if self.interrupted:
            return 130
        return 1 if self.failed else 0


class Executor(ABC):
    name: str = "?"

    @abstractmethod
    def run(self, jobs: list[Job], store: ResultsStore, show_progress: bool = True) -> RunSummary:
        """Runs every job not already done in `store`; returns when all have finished or failed."""
