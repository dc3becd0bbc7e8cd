"""Evaluation off the device: a unit of work that holds one device and N CPUs trains its units
(jobs or packs) one after another on the device while a pool of N CPU processes evaluates the
models already trained, so the device idles only at the start and the end of the lane.

Per model, the device encodes the whole factor grid once (`encode_grid`: the Gaussian posterior's
mean and log-variance, or the mean of a deterministic encoder) and hands the tables over; a pool
worker then runs the very evaluation of `benchmark.jobs` on a model that looks its codes up
(`table_model`) and a dataset whose observations are their grid indices (`GridIndexed`), so the
metric suite, its random streams and its code paths are the ones a model on the device takes: the
"mean" representation is keyed as before, "sampled" draws its ε from the same generator seed in the
same batches, the posterior metrics read the same grid. Nothing in the pool needs the device. Where
the grid cannot stand for the model (a noisy dataset, a grid above `suite.MAX_GRID` or above the
lookup's memory budget, a method whose "sampled" noise is not Gaussian) the model is evaluated on
the device as without the pipeline.

`resources.pipeline_eval` chooses it (`pipeline_on`): "auto" tabulates when the model trained on
CUDA (on a CPU the pool's fits would compete with training for the same cores), "on" / "off" force
it. The choice is the same for `--pack 1`, `--pack K` and any pool size: which process scores a
model, and when, changes no value (docs/performance.md has the measurements).
"""

from __future__ import annotations

import contextvars
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmark.allocator import apply_worker_env
from benchmark.spec import Job, Resources

Unit = list[Job]


# -- the choice ---------------------------------------------------------------------------------
def pipeline_on(setting: str, device_type: str) -> bool:
    """Whether a model trained on `device_type` is evaluated from its grid tables (in the pool of
    its lane, or inline outside one): "auto" means on CUDA only."""
    return setting == "on" or (setting == "auto" and device_type == "cuda")


def wants_pipeline(res: Resources, device: str | None = None) -> bool:
    """Whether units of these resources run as pipelined lanes: a unit that asks for GPUs, or
    whose training `device` resolves to CUDA here (None: a cluster driver's request, which looks at
    `gpus_per_job` only and never at this machine's devices)."""
    if res.pipeline_eval != "auto":
        return res.pipeline_eval == "on"
    if res.gpus_per_job > 0 or (device or "").startswith("cuda"):
        return True
    if device != "auto":
        return False
    import torch

    return torch.cuda.is_available()


def eval_workers(res: Resources, cores: int | None = None) -> int:
    """The pool's size: `resources.eval_workers`, else the `cores` left after training (local),
    else 1 (a cluster unit asks for exactly what `unit_cpus` says)."""
    if res.eval_workers is not None:
        return res.eval_workers
    return 1 if cores is None else max(1, cores // res.cpus_per_job - 1)


def unit_cpus(res: Resources) -> int:
    """The CPUs a pipelined cluster unit asks for: training's threads plus each pool worker's."""
    return res.cpus_per_job * (1 + eval_workers(res)) if wants_pipeline(res) else res.cpus_per_job


# -- the tables ---------------------------------------------------------------------------------
@dataclass
class GridCodes:
    """What the pool needs of a trained model: its codes on the whole grid (row-major factor
    order, as `sampling.encode_grid_posterior` gives them) and its training facts."""

    mean: np.ndarray  # (N, D) float32
    logvar: np.ndarray | None  # (N, D) float32; None for a deterministic encoder
    method: str
    steps: int
    summary: dict[str, float]
    device: str  # where it trained (the rows' device column)


def encode_grid(data: Any, model: Any, representations: list[str],
                budget_bytes: int) -> tuple[GridCodes | None, str]:
    """The model's `GridCodes`, encoded on its device, or None and why the grid cannot stand for
    it (then it is evaluated on the device)."""
    from benchmark.metrics.sampling import encode_grid_posterior, grid_size, is_noise_free
    from benchmark.metrics.suite import MAX_GRID
    from benchmark.models.base import System

    if "sampled" in representations and type(model.system).sample is not System.sample:
        return None, f"{model.method}'s sampled representation is not a Gaussian draw"
    n = grid_size(data)
    if n > MAX_GRID:
        return None, f"factor grid of {n} elements exceeds {MAX_GRID}"
    posterior = model.has_posterior
    table_bytes = n * model.num_latent * 4 * (2 if posterior else 1)
    if table_bytes > budget_bytes:
        return None, f"grid tables of {table_bytes / 2**20:.0f} MiB exceed {budget_bytes / 2**20:.0f} MiB"
    if not is_noise_free(data):
        return None, "the dataset renders the same factors differently"
    if posterior:  # the very call the posterior metrics make on the device
        mean, logvar = encode_grid_posterior(data, model.represent_gaussian(), max_rows=MAX_GRID)
    else:
        mean, logvar = _encode_grid_mean(data, model.represent("mean")), None
    codes = GridCodes(mean, logvar, model.method, int(model.steps), dict(model.summary),
                      str(getattr(model, "device", "cpu")))
    return codes, ""


def _encode_grid_mean(data: Any, represent: Callable[[np.ndarray], np.ndarray],
                      batch_size: int = 256) -> np.ndarray:
    """Every grid element's code, in `encode_grid_posterior`'s order and batches."""
    sizes = tuple(int(s) for s in data.factor_sizes)
    n, rng, out = math.prod(sizes), np.random.default_rng(0), []
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        factors = np.stack(np.unravel_index(idx, sizes), axis=1).astype(np.int64)
        out.append(np.asarray(represent(data.sample_observations_from_factors(factors, rng)),
                              dtype=np.float32))
    return np.concatenate(out)


def table_model(codes: GridCodes) -> Any:
    """A CPU `TrainedModel` that encodes a grid index (the observations of `GridIndexed`) by
    looking its codes up: `represent`, `represent_gaussian` and the "sampled" draw (the base
    `System.sample`, its generator seeded as on the device) run their own code on the tables."""
    import torch

    from benchmark.models.base import System
    from benchmark.settings import TrainingSettings
    from benchmark.training import TrainedModel

    class _Lookup(System):
        num_latent = codes.mean.shape[1]

        def __init__(self) -> None:
            super().__init__()
            self.mean = torch.from_numpy(codes.mean)
            self.logvar = None if codes.logvar is None else torch.from_numpy(codes.logvar)

        def encode(self, x: torch.Tensor):
            rows = x.reshape(len(x), -1)[:, 0].long()
            return self.mean[rows], None if self.logvar is None else self.logvar[rows]

    return TrainedModel(codes.method, {}, 0, TrainingSettings(), _Lookup(), codes.steps,
                        codes.summary, 0.0, (1, 1, 1), torch.device("cpu"))


class GridIndexed:
    """`data` whose observations are their grid rows' indices, shape (n, 1, 1, 1) float32 (exact
    below 2**24 > `suite.MAX_GRID`). Rendering still takes from the caller's random stream what the
    dataset's own rendering takes (nothing, for most noise-free datasets), so every later draw of
    the evaluation is the one it makes on the device."""

    observation_shape = (1, 1, 1)

    def __init__(self, data: Any):
        self._data = data
        self._sizes = tuple(int(s) for s in data.factor_sizes)
        probe = np.random.default_rng(0)
        before = probe.bit_generator.state
        data.sample_observations_from_factors(data.sample_factors(4, np.random.default_rng(1)), probe)
        self._draws = probe.bit_generator.state != before

    def __getattr__(self, name: str) -> Any:
        return getattr(self._data, name)

    def sample_observations_from_factors(self, factors: np.ndarray, rng: Any) -> np.ndarray:
        factors = np.asarray(factors, dtype=np.int64)
        if self._draws:
            self._data.sample_observations_from_factors(factors, rng)
        index = np.ravel_multi_index(factors.T, self._sizes)
        return index.astype(np.float32).reshape(-1, 1, 1, 1)


# -- the pool -----------------------------------------------------------------------------------
def _init_pool_worker(threads: int, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the lane decides what Ctrl-C means
    apply_worker_env(threads)  # OMP_NUM_THREADS: each evaluation's fits use the job's threads
    # Not PR_SET_PDEATHSIG: it fires when the *thread* that started this process ends, and a
    # lane's unit threads end long before the pool does. Watch the parent instead.

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


class EvalPool:
    """`workers` spawned CPU processes that evaluate models from their tables; a worker that dies
    fails the evaluations it held (the caller records them) and the next submission gets a new
    pool. `close` shuts the processes down (each stops its metric fits' loky workers after every
    job, so nothing waits for loky's idle timeout)."""

    def __init__(self, workers: int, threads: int):
        self.workers, self.threads = workers, threads
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        import multiprocessing as mp

        with self._lock:
            for _ in range(2):
                if self._pool is None:
                    self._pool = ProcessPoolExecutor(
                        max_workers=self.workers, mp_context=mp.get_context("spawn"),
                        initializer=_init_pool_worker, initargs=(self.threads, os.getpid()))
                try:
                    return self._pool.submit(fn, *args)
                except BrokenProcessPool:
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = None
            raise BrokenProcessPool("the evaluation pool cannot start")

    def close(self, wait: bool = True) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=wait, cancel_futures=not wait)
                self._pool = None


# -- the lane -----------------------------------------------------------------------------------
@dataclass
class _Turn:
    pool: EvalPool
    free: threading.Event  # set when the unit no longer needs the device


_turn: contextvars.ContextVar[_Turn | None] = contextvars.ContextVar("eval_turn", default=None)


def current_pool() -> EvalPool | None:
    """The pool of the lane this thread's unit runs in; None outside a lane."""
    turn = _turn.get()
    return None if turn is None else turn.pool


def device_free() -> None:
    """Says that this thread's unit is done with the device: the lane starts the next unit."""
    turn = _turn.get()
    if turn is not None:
        turn.free.set()


def run_lane(run: Callable[[Unit], list[Any]], units: list[Unit], workers: int, threads: int,
             done: Callable[[list[Any]], None] | None = None) -> list[Any]:
    """`run(unit)` for each unit in order, on this process's device, the next one starting as soon
    as the current one has handed its models' evaluation to a pool of `workers` CPU processes
    (`benchmark.jobs` does, through `current_pool` and `device_free`) or has ended. Each unit keeps
    its leases until its own evaluations end. Returns the outcomes in unit order; `done(outcomes)`
    is called as each unit ends. Torch threads are set once for the lane (`threads`): the units
    overlap, and one ending must not change the threads of the one training."""
    import torch

    from benchmark.metrics.parallel import release_workers

    results: list[Any] = [None] * len(units)
    pool = EvalPool(workers, threads)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    started: list[threading.Thread] = []

    def target(i: int, unit: Unit, free: threading.Event) -> None:
        _turn.set(_Turn(pool, free))
        try:
            results[i] = run(unit)
        except BaseException as exc:  # noqa: BLE001 - raised again by the lane, after the others
            results[i] = exc
        finally:
            free.set()
        if done is not None and not isinstance(results[i], BaseException):
            done(results[i])

    clean = False
    try:
        for i, unit in enumerate(units):
            free = threading.Event()
            thread = threading.Thread(target=target, args=(i, unit, free), daemon=True,
                                      name=f"unit-{i}")
            thread.start()
            started.append(thread)
            free.wait()
        for thread in started:
            thread.join()
        clean = True
    finally:
        pool.close(wait=clean)
        torch.set_num_threads(saved)
        release_workers()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [outcome for result in results for outcome in result]
