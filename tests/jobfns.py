"""Job functions for executor tests: the orchestration under test, without training a model."""

import os

from benchmark.jobs import JobOutcome


def _rows(job):
    return [{"study": job.study, "job_id": job.job_id, "model_id": job.model_id,
             "dataset": job.dataset, "dataset_source": job.dataset_source, "model": job.model,
             "model_params": "{}", "seed": job.seed, "metric": "fake", "key": "seed",
             "value": float(job.seed)}]


def ok(job, store, progress):
    if store.is_done(job.job_id):
        return JobOutcome(job.job_id, "skipped")
    if progress:
        progress(f"{job.job_id} working")
    print(f"hello from {job.job_id}")  # lands in logs/<job_id>.log (cluster executors)
    store.write_rows(job.job_id, _rows(job), job.param_columns)
    return JobOutcome(job.job_id, "done")


def raises_on_seed_1(job, store, progress):
    if job.seed == 1:
        raise RuntimeError(f"boom in seed {job.seed}")
    return ok(job, store, progress)


def dies_on_seed_1(job, store, progress):
    if job.seed == 1:
        os._exit(3)  # a worker killed mid-job (OOM killer, segfault)
    return ok(job, store, progress)


def pack_ok(jobs, store, progress):
    """A pack stand-in: one outcome per job, each written as `ok` writes it."""
    return [ok(job, store, progress) for job in jobs]


def pack_dies_on_seed_1(jobs, store, progress):
    """A pack whose worker is killed when it reaches a seed-1 job (its earlier jobs are written)."""
    return [dies_on_seed_1(job, store, progress) for job in jobs]


def started(store, job_id):
    """The starts `sleepy` recorded for a job (one line each: pid and time)."""
    path = store.root / "starts" / job_id
    return path.read_text().splitlines() if path.exists() else []


def sleepy(job, store, progress):
    """`ok` after a pause of 0.2-0.6 s (by seed), recording each start: a cheap job that can be
    caught half-way by a kill, and counted."""
    import time

    folder = store.root / "starts"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / job.job_id, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, f"{os.getpid()} {time.time()}\n".encode())
    os.close(fd)
    time.sleep(0.2 + 0.1 * (job.seed % 5))
    return ok(job, store, progress)


def faulty(job, store, progress):
    """The real `run_job`, with one fault by seed: 1 its worker is killed with SIGKILL (as the OOM
    killer does), 2 its MIG raises, 3 its loss becomes NaN (the data is NaN); others run as they
    are. Patches are undone after the job: a worker runs several."""
    import signal
    from unittest import mock

    import benchmark.data
    import benchmark.metrics.mig
    from benchmark.jobs import run_job

    if job.seed == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    if job.seed == 2:
        def broken(*args, **kwargs):
            raise ValueError("injected fault in mig")

        with mock.patch.object(benchmark.metrics.mig, "score", broken):
            return run_job(job, store, progress)
    if job.seed == 3:
        real = benchmark.data.get_dataset

        def nan_dataset(*args, **kwargs):
            data = real(*args, **kwargs)
            sample = data.sample_observations
            data.sample_observations = lambda n, rng: sample(n, rng) * float("nan")
            return data

        with mock.patch.object(benchmark.data, "get_dataset", nan_dataset):
            return run_job(job, store, progress)
    return run_job(job, store, progress)


def disk_full_on_rows_of_seed_1(job, store, progress):
    """The real `run_job`; for seed 1 the disk is full when its rows are written: every fsync of a
    file under rows/ fails with ENOSPC (where a small filesystem cannot be mounted)."""
    import errno
    from unittest import mock

    from benchmark.jobs import run_job

    if job.seed != 1:
        return run_job(job, store, progress)
    real = os.fsync

    def fsync(fd):
        if f"{os.sep}rows{os.sep}" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    with mock.patch.object(os, "fsync", fsync):
        return run_job(job, store, progress)
