"""The Ray executor: one Ray task per job (or per pack of jobs trained together), on a local Ray or an existing cluster (`--ray-address`).

Why tasks and not Ray Tune: a study is already an expanded, content-addressed grid whose state
lives in the results store; Tune would add a second experiment state (its trial table and
`Tuner.restore`) that can disagree with the store, trial directories the store does not use, and
search/scheduling machinery a fixed grid never needs. A task per job maps directly onto what is
needed: a resource request per job (`num_cpus`, `num_gpus`, `memory`), retries when a worker or
node dies (`max_retries`; the retried job resumes from its training checkpoint), and no state of
its own. If the driver dies, Ray stops its tasks (they are owned by the driver); the next
`benchmark run` skips the finished jobs and resumes the others from their checkpoints.

Workers must see the results folder at the same path as the driver (a shared filesystem): the
rows, checkpoints and per-job logs (`logs/<job_id>.log`) are written there by the workers.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from datetime import datetime
from typing import Any

from benchmark.allocator import worker_env
from benchmark.errors import UserError
from benchmark.eval_pipeline import unit_cpus
from benchmark.executors._cluster import one_line, run_logged, study_resources
from benchmark.executors.base import (
    Executor,
    JobFn,
    LanePlan,
    PackFn,
    Unit,
    at_least_one,
    default_job_fn,
    default_pack_fn,
    lane_plan,
    run_units,
    take_units,
    unit_outcomes_after_death,
)
from benchmark.outcomes import FailureKind, JobOutcome, Status
from benchmark.spec import Resources
from benchmark.store import ResultsStore, now_utc

RAY_CLIENT_PORT = 10001
GIB = 2**30


def _ray_task(job_fn: JobFn, pack_fn: PackFn, units: list[Unit], store_root: str,
              plan: LanePlan | None) -> list[JobOutcome]:
    """What a Ray worker runs: one unit (a job or a pack), or, pipelined, a lane of units on its
    GPU with its pool of CPU processes scoring (`benchmark.eval_pipeline`)."""
    import ray

    ctx = ray.get_runtime_context()
    where = f"ray node {ctx.get_node_id()[:12]} task {ctx.get_task_id()}"
    store = ResultsStore(store_root)
    return run_units(lambda unit: run_logged(job_fn, pack_fn, unit, store, where,
                                             redirect=plan is None), units, plan)


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) to probe for a cluster address; None for "auto"/"local" (resolved by Ray)."""
    if address in ("auto", "local"):
        return None
    rest = address
    default_port = None
    if "://" in address:
        scheme, _, rest = address.partition("://")
        if scheme != "ray":
            raise UserError(f"--ray-address {address!r}: expected host:port or ray://host:port")
        default_port = RAY_CLIENT_PORT
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep:
        host, port = rest.rstrip("/"), ""
    if not port and default_port is not None:
        return host, default_port
    if not host or not port.isdigit():
        raise UserError(f"--ray-address {address!r}: expected host:port (e.g. 10.0.0.1:6379), "
                        "ray://host:port or auto")
    return host, int(port)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fails fast, in one line, where `ray.init` would retry an unreachable address for minutes."""
    target = parse_address(address)
    if target is None:
        if address == "auto":
            try:
                from ray._private.services import canonicalize_bootstrap_address

                resolved = canonicalize_bootstrap_address("auto")
            except Exception:  # noqa: BLE001 - Ray's private API moved: let ray.init decide
                return
            if not resolved:
                raise UserError("--ray-address auto: no Ray cluster is running on this machine "
                                "(start one with `ray start --head`, or leave out --ray-address)")
            target = parse_address(resolved)
        else:
            return
    assert target is not None
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address}: "
                        f"{one_line(exc.strerror or str(exc) or type(exc).__name__)}") from None
    if target[0] in ("127.0.0.1", "localhost", "::1") and "://" not in address:
        _follow_loopback_cluster(target[1])


def _ray_clusters_enabled() -> Any:
    """Ray's switch (read from RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER when ray is imported) that
    makes a driver replace 127.0.0.1 by the machine's routable address; None if not found."""
    try:
        from ray._private import ray_constants

        return ray_constants
    except Exception:  # noqa: BLE001 - a Ray without this private module
        return None


def _use_loopback() -> bool:
    """Makes this process and the Ray it starts stay on 127.0.0.1 (True when that worked)."""
    constants = _ray_clusters_enabled()
    if constants is None or not hasattr(constants, "ENABLE_RAY_CLUSTER"):
        return False
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # for the daemons ray.init starts
    constants.ENABLE_RAY_CLUSTER = False  # for this process, which imported ray already
    return True


def _follow_loopback_cluster(port: int) -> None:
    """A cluster that listens on loopback only (started with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0,
    so that a head on a shared machine is not open to the network) is reachable at 127.0.0.1 but not at
    the routable address Ray would rewrite 127.0.0.1 to, where ray.init would retry for about a
    quarter of an hour: keep this driver on loopback too."""
    constants = _ray_clusters_enabled()
    if constants is None or not getattr(constants, "ENABLE_RAY_CLUSTER", False):
        return
    try:
        from ray._private.services import get_node_ip_address

        routable = get_node_ip_address()
        socket.create_connection((routable, port), timeout=2).close()
    except OSError:
        if not _use_loopback():
            raise UserError(f"the Ray cluster at 127.0.0.1:{port} listens on loopback only: set "
                            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 for this driver too") from None
    except Exception:  # noqa: BLE001 - Ray's private API moved: let ray.init decide
        return


class RayExecutor(Executor):
    """Runs a study's jobs as Ray tasks."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        max_running: int | None = None,
        num_cpus: int | None = None,
        job_fn: JobFn | None = None,
        pack_fn: PackFn | None = None,
        connect_timeout: float = 5.0,
        init_kwargs: dict[str, Any] | None = None,
    ):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install "
                            "'disentanglement-benchmark[ray]'") from None
        self.max_running = at_least_one("max_running", max_running)
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        if self.address == "local":
            self.address = None
        if self.address is not None:
            check_reachable(self.address, connect_timeout)
        self.num_cpus = num_cpus
        self.job_fn = job_fn or default_job_fn()
        self.pack_fn = pack_fn or default_pack_fn()
        self.init_kwargs = init_kwargs or {}
        self._started = False

    def _connect(self, threads: int) -> bool:
        """Connects to (or starts) Ray; True when this call started the connection."""
        import ray

        if ray.is_initialized():
            return False
        env = worker_env(threads)
        if os.environ.get("PYTHONPATH"):  # the workers import this copy of the package
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        kwargs: dict[str, Any] = {
            "log_to_driver": False,  # each job's output is in logs/<job_id>.log
            "runtime_env": {"env_vars": env},
            **self.init_kwargs,
        }
        if self.address is None:
            # A private Ray for this run: bound to loopback, no dashboard, no usage report.
            _use_loopback()
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            kwargs.update(address="local", include_dashboard=False)
            if self.num_cpus is not None:
                kwargs["num_cpus"] = self.num_cpus
        else:
            kwargs["address"] = self.address
        try:
            ray.init(**kwargs)
        except Exception as exc:  # noqa: BLE001 - Ray's own errors, said in one line
            where = self.address or "a local Ray"
            raise UserError(f"cannot start or join {where}: {type(exc).__name__}: "
                            f"{one_line(str(exc))}") from None
        return True

    @staticmethod
    def _check_feasible(res: Resources) -> None:
        """A request no node can meet would wait forever: refuse it now, in one line."""
        import ray

        want = {"CPU": float(unit_cpus(res)), "GPU": float(res.gpus_per_job),
                "memory": res.mem_gb * GIB}
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if any(all(node.get(k, 0.0) >= v for k, v in want.items() if v) for node in nodes):
            return
        best = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
        have = (f"{best.get('CPU', 0):g} CPUs, {best.get('GPU', 0):g} GPUs, "
                f"{best.get('memory', 0) / GIB:.1f} GB memory")
        raise UserError(f"no Ray node can run a job asking for {unit_cpus(res)} CPUs, "
                        f"{res.gpus_per_job} GPUs and {res.mem_gb:g} GB memory (the largest has "
                        f"{have}); change resources in the spec")

    def _start(self, units: list[Unit], store: ResultsStore) -> None:
        res = study_resources([job for unit in units for job in unit])
        store.root.mkdir(parents=True, exist_ok=True)
        self._started = self._connect(res.cpus_per_job)
        import ray

        self._check_feasible(res)
        remote = ray.remote(_ray_task)
        options = {"num_cpus": unit_cpus(res), "num_gpus": res.gpus_per_job,
                   "memory": int(res.mem_gb * GIB), "max_retries": res.max_retries,
                   "retry_exceptions": False}
        # Pipelined, a task is a lane holding one GPU (and its pool's CPUs): as many lanes as
        # the cluster has GPUs for (or --max-running), each an equal share of the units.
        self._plan = lane_plan(units)
        self._lanes = self.max_running or (None if self._plan is None else max(1, int(
            sum(n.get("Resources", {}).get("GPU" if res.gpus_per_job else "CPU", 0.0)
                for n in ray.nodes() if n.get("Alive"))
            // (res.gpus_per_job or unit_cpus(res)))))
        self._launch = lambda units: remote.options(
            name=f"benchmark:{units[0][0].job_id}", **options).remote(
            self.job_fn, self.pack_fn, units, str(store.root), self._plan)
        self._store = store
        self._res = res
        self._todo = deque(units)
        self._inflight: dict[Any, tuple[Unit, datetime]] = {}  # -> (unit, when it was launched)

    def _submit(self, units: list[Unit]) -> None:
        self._todo.extend(units)

    def _poll(self, timeout: float) -> list[JobOutcome]:
        import ray

        while self._todo and (self._lanes is None or len(self._inflight) < self._lanes):
            units = take_units(self._todo, (self._lanes or 1) - len(self._inflight), self._plan)
            self._inflight[self._launch(units)] = ([j for u in units for j in u], now_utc())
        if not self._inflight:  # every job left is running elsewhere
            time.sleep(timeout)
            return []
        ready, _ = ray.wait(list(self._inflight), num_returns=len(self._inflight), timeout=timeout)
        return [outcome for ref in ready for outcome in self._outcomes(ref, *self._inflight.pop(ref))]

    def _status(self) -> str | None:
        return f"ray: {len(self._inflight)} submitted"

    def _interrupt(self) -> str:
        import ray

        for ref in self._inflight:
            ray.cancel(ref, force=True)
        return (f"{len(self._inflight)} running jobs stopped; finished jobs are saved, the others "
                "resume from their last checkpoint on the next run")

    def _close(self, interrupted: bool) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def _outcomes(self, ref: Any, unit: Unit, launched: datetime) -> list[JobOutcome]:
        """The unit's jobs' outcomes from its task, with the failures only the driver can see
        recorded."""
        import ray
        from ray import exceptions as rex

        store = self._store
        try:
            outcomes = ray.get(ref)
        except rex.RayError as exc:
            if isinstance(exc, (rex.WorkerCrashedError, rex.NodeDiedError, rex.OutOfMemoryError)):
                return unit_outcomes_after_death(
                    store, unit,
                    f"Ray worker died {self._res.max_retries + 1} times running this job: "
                    f"{type(exc).__name__}: {one_line(str(exc), 200)}", FailureKind.WORKER_DIED,
                    launched)
            return unit_outcomes_after_death(store, unit,
                                             f"{type(exc).__name__}: {one_line(str(exc), 200)}",
                                             FailureKind.ERROR, launched)
        return [store.record_failure(
                    outcome.job_id,
                    f"a worker finished the job but its rows are not in {store.root}: the results "
                    "folder must be on a filesystem the Ray workers share", FailureKind.NOT_SHARED)
                if outcome.status is Status.DONE and not store.is_done(outcome.job_id) else outcome
                for outcome in outcomes]
