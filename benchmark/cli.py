"""The `benchmark` command: run, status, figures, import dlib, datasets, data download
(docs/architecture.md)."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

from benchmark.errors import UserError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmark",
        description="Run studies of disentangled representation learning and draw their figures.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a study spec (skips jobs already done)")
    run.add_argument("spec", help="study spec (YAML)")
    run.add_argument("--executor", choices=["local", "slurm", "ray"], default="local")
    run.add_argument("--results", default="results", help="results root (default: ./results)")
    run.add_argument("--workers", type=int, default=None,
                     help="local worker processes (default: one per resources.cpus_per_job "
                          "cores); slurm: the most array "
                          "tasks running at once; ray: the most jobs running at once")
    # Cluster back-ends (benchmark/executors/slurm.py, ray.py).
    run.add_argument("--chunk-size", type=int, default=None, metavar="N",
                     help="slurm: jobs run one after another by each array task (default: the "
                          "spec's resources.jobs_per_task)")
    run.add_argument("--pack", type=int, default=None, metavar="K",
                     help="train up to K models of one method together on one device, each as it "
                          "would train alone (default: the spec's resources.models_per_device)")
    run.add_argument("--ray-address", default=None, metavar="ADDR",
                     help="ray: an existing cluster (host:port, ray://host:port or auto; default: "
                          "$RAY_ADDRESS, else a local Ray on this machine)")
    run.add_argument("--dry-run", action="store_true", help="print the job counts and exit")
    # Cost before running (benchmark/cost.py): with --dry-run.
    run.add_argument("--estimate", action="store_true",
                     help="with --dry-run: project device-hours of training and CPU-hours of "
                          "evaluation from measured throughput (bench/results/throughput.json)")
    run.add_argument("--gpus", type=int, default=1, metavar="N",
                     help="--estimate: GPUs the study runs on (default: 1)")
    run.add_argument("--cpus-per-gpu", type=int, default=None, metavar="C",
                     help="--estimate: CPUs per GPU for evaluation (default: resources.cpus_per_job)")
    run.add_argument("--throughput", default=None, metavar="JSON",
                     help="--estimate: the throughput table (default: bench/results/throughput.json)")
    run.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                     help="run only jobs with this dataset/model/seed/hyperparameter (repeatable)")
    run.add_argument("--limit", type=int, default=None, help="run at most N jobs")
    run.add_argument("--data-dir", default=os.environ.get("BENCHMARK_DATA"),
                     help="folder of dataset files (default: $BENCHMARK_DATA)")
    run.add_argument("--no-retry-failed", action="store_true",
                     help="leave jobs that failed before alone instead of retrying them")
    run.add_argument("--no-figures", action="store_true", help="do not draw figures at the end")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    st = sub.add_parser("status", help="done / failed / pending counts of a study")
    st.add_argument("spec")
    st.add_argument("--results", default="results")

    fig = sub.add_parser("figures", help="draw every figure from a results folder")
    fig.add_argument("results_dir", help="a study's results folder (or a results root)")
    fig.add_argument("--out", default=None, help="where to write (default: <study>/figures)")
    fig.add_argument("--traversal-jobs", nargs="*", default=None, metavar="ID",
                     help="job or model ids to draw latent traversals for (default: one per method)")
    fig.add_argument("--efficiency-score", default=None, metavar="METRIC.KEY",
                     help="the score plotted against efficiency (default: factor_vae.eval_accuracy)")
    fig.add_argument("--compare", nargs=2, default=None, metavar="STUDY",
                     help="also compare two studies of the results root (rank correlations side "
                          "by side, matched models' scores); drawn for every imported study and "
                          "each of ours without it")
    fig.add_argument("--view-points", type=int, default=None, metavar="N",
                     help="observations per t-SNE map of the traversed models' mean codes; 0: no "
                          "t-SNE maps or interpolations (default: the study spec's "
                          "figures.view_points, else 2000)")

    imp = sub.add_parser("import", help="import another tool's results into a results store")
    imp_sub = imp.add_subparsers(dest="tool", required=True, metavar="TOOL")
    dl = imp_sub.add_parser(
        "dlib", help="disentanglement_lib's model outputs or aggregated results.json")
    dl.add_argument("path", help="a folder of dlib model outputs (dlib_reproduce's output/...) or "
                                 "the aggregated results file of dlib_aggregate_results")
    dl.add_argument("--study", required=True, help="the study to import into (a folder name)")
    dl.add_argument("--results", default="results", help="results root (default: ./results)")

    ds = sub.add_parser("datasets", help="list datasets, or write a PNG grid of samples")
    ds.add_argument("name", nargs="?", help="a dataset to render samples of")
    ds.add_argument("--source", choices=["procedural", "file"], default="procedural")
    ds.add_argument("--data-dir", default=os.environ.get("BENCHMARK_DATA"))
    ds.add_argument("--out", default=None, help="PNG path for the sample grid")
    ds.add_argument("-n", type=int, default=16, help="number of samples")
    ds.add_argument("--seed", type=int, default=0)

    data = sub.add_parser("data", help="fetch the datasets' original files")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dl = data_sub.add_parser(
        "download", help="download, verify and unpack datasets' original files (resumable)",
        description="Fetch each dataset's original files from its publisher into the data directory, "
                    "verify them and lay them out as the loaders read them. Files already there and "
                    "verified are skipped; an interrupted download resumes on the next run. Exit "
                    "codes: 0 all present, 1 some file failed (each failure is one line), 2 bad input.")
    dl.add_argument("names", nargs="*", metavar="NAME", help="datasets to fetch, or 'all'")
    dl.add_argument("--for-spec", default=None, metavar="SPEC",
                    help="also every dataset that a study spec reads from files")
    dl.add_argument("--data-dir", default=None,
                    help="where to put them (default: $BENCHMARK_DATA, then $DISENTANGLEMENT_LIB_DATA)")
    dl.add_argument("--url-base", default=None, metavar="URL",
                    help="fetch every file from a mirror with the same layout instead of the "
                         "publishers (default: $BENCHMARK_DATA_URL_BASE)")
    dl.add_argument("--retries", type=int, default=3,
                    help="resume a cut transfer up to N times before giving up (default: 3)")
    dl.add_argument("--dry-run", action="store_true",
                    help="list each file, its URL and whether it is present; fetch nothing")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"run": cmd_run, "status": cmd_status, "figures": cmd_figures,
                "import": cmd_import, "datasets": cmd_datasets, "data": cmd_data}[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `benchmark datasets | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _load_jobs(spec_path: str, data_dir: str | None = None):
    from benchmark.spec import expand, load_spec

    spec = load_spec(spec_path)
    return spec, expand(spec, data_dir=data_dir)


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark.spec import select

    for flag, value in (("--workers", args.workers), ("--chunk-size", args.chunk_size),
                        ("--pack", args.pack)):
        if value is not None and value < 1:  # checked here for every executor, naming the flag
            raise UserError(f"{flag} must be at least 1, got {value}")
    for flag, value in (("--gpus", args.gpus), ("--cpus-per-gpu", args.cpus_per_gpu)):  # --estimate
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    if args.estimate and not args.dry_run:
        raise UserError("--estimate runs nothing: use it with --dry-run")
    estimate_only = [f for f, given in (("--gpus", args.gpus != 1), ("--cpus-per-gpu", args.cpus_per_gpu),
                                       ("--throughput", args.throughput)) if given]
    if estimate_only and not args.estimate:
        raise UserError(f"{estimate_only[0]} is an option of --estimate")
    if args.data_dir and not Path(args.data_dir).is_dir():
        raise UserError(f"--data-dir {args.data_dir} is not a directory")
    spec, jobs = _load_jobs(args.spec, args.data_dir)
    jobs = select(jobs, args.filter, args.limit)
    if args.pack is not None:  # an execution choice: resources are in no job id
        jobs = [replace(j, resources={**j.resources, "models_per_device": args.pack}) for j in jobs]
    if args.filter and not jobs:
        raise UserError(f"no job matches --filter {' '.join(args.filter)}")
    if args.dry_run:
        _print_counts(spec.study, jobs)
        if args.estimate:
            _print_estimate(spec, jobs, args)
        return 0

    from benchmark.store import ResultsStore, atomic_write_bytes

    store = ResultsStore.for_study(args.results, spec.study)
    if args.no_retry_failed:
        failed = set(store.failures())
        jobs = [j for j in jobs if j.job_id not in failed]
    done = store.done_ids()
    selected = {j.job_id for j in jobs}
    for job_id, problem in sorted(store.corrupt_rows().items()):
        if job_id in selected and store.quarantine(store.rows_path(job_id),
                                                   f"corrupt rows file: {problem}"):
            print(f"corrupt {store.rows_path(job_id).name} moved to {store.quarantine_dir} "
                  f"({problem}); the job runs again", file=sys.stderr)
    try:
        _check_datasets([j for j in jobs if j.job_id not in done], args.data_dir)
    except FilesToFetch as exc:
        from benchmark.data.sources import download_command

        fetch = download_command(["--for-spec", args.spec], exc.where)
        raise UserError(f"{exc}; download it with: {fetch}") from None
    executor = _executor(args)
    store.root.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(store.root / "spec.yaml", Path(args.spec).read_bytes())
    done_before = len(done & {j.job_id for j in jobs})
    print(f"study {spec.study}: {len(jobs)} jobs, {done_before} already done; "
          f"results in {store.root}", file=sys.stderr)
    summary = executor.run(jobs, store, show_progress=not args.quiet)
    print(f"study {spec.study}: {len(summary.done)} done now, {len(summary.skipped)} done before, "
          f"{len(summary.failed)} failed", file=sys.stderr)
    for job_id, reason in sorted(summary.failed.items()):
        print(f"  failed {job_id}: {reason}", file=sys.stderr)
    if not args.no_figures and not summary.interrupted and args.executor == "local":
        _draw_figures(store.root, None)
    return summary.exit_code


class FilesToFetch(UserError):
    """A dataset's files are missing or damaged and ``benchmark data download`` fetches them;
    ``where`` is the --data-dir its command needs (None: the default one is set)."""

    def __init__(self, message: str, where: str | None):
        super().__init__(message)
        self.where = where


def _check_datasets(jobs, data_dir: str | None) -> None:
    """Opens each dataset once before any job starts, so a missing file is one error, not 12,600.

    Raises ``FilesToFetch`` for a file-based dataset that a download would repair (``cmd_run``
    names the command), the loader's ``UserError`` otherwise.
    """
    from benchmark.data import descriptor, get_dataset
    from benchmark.data.registry import resolve_data_dir
    from benchmark.data.sources import dataset_status

    for name, source in sorted({(j.dataset, j.dataset_source) for j in jobs}):
        try:
            get_dataset(name, source, data_dir)
        except UserError as exc:
            root = resolve_data_dir(data_dir)
            if source != "file" or not descriptor(name).remote_files() or dataset_status(name, root) == "present":
                raise
            raise FilesToFetch(str(exc), data_dir if data_dir else ("DIR" if root is None else None)) from None


def _executor(args: argparse.Namespace):
    if args.executor == "local":
        from benchmark.executors.local import LocalExecutor

        return LocalExecutor(workers=args.workers)
    if args.executor == "slurm":
        from benchmark.executors.slurm import SlurmExecutor

        return SlurmExecutor(chunk_size=args.chunk_size, max_running=args.workers)
    if args.executor == "ray":
        from benchmark.executors.ray import RayExecutor

        return RayExecutor(address=args.ray_address, max_running=args.workers)
    raise UserError(f"unknown executor {args.executor!r} (use local, slurm or ray)")


def _print_counts(study: str, jobs) -> None:
    counts = Counter((j.dataset, j.model) for j in jobs)
    datasets = sorted({d for d, _ in counts}, key=[j.dataset for j in jobs].index)
    models = sorted({m for _, m in counts}, key=[j.model for j in jobs].index)
    width = max([len("dataset")] + [len(d) for d in datasets])
    cols = [max(len(m), 5) for m in models]
    print(f"study {study}: {len(jobs)} jobs")
    print("  ".join([f"{'dataset':<{width}}"] + [f"{m:>{w}}" for m, w in zip(models, cols)]
                    + [f"{'total':>6}"]))
    for d in datasets:
        row = [counts[(d, m)] for m in models]
        print("  ".join([f"{d:<{width}}"] + [f"{n:>{w}}" for n, w in zip(row, cols)]
                        + [f"{sum(row):>6}"]))
    totals = [sum(counts[(d, m)] for d in datasets) for m in models]
    print("  ".join([f"{'total':<{width}}"] + [f"{n:>{w}}" for n, w in zip(totals, cols)]
                    + [f"{len(jobs):>6}"]))


def _print_estimate(spec, jobs, args: argparse.Namespace) -> None:
    from benchmark import cost

    if args.pack is not None:
        k, k_source = args.pack, "--pack"
    elif getattr(spec.resources, "models_per_device", None) is not None:
        k, k_source = spec.resources.models_per_device, "resources.models_per_device"
    else:
        k, k_source = 1, "default"
    table = Path(args.throughput) if args.throughput else cost.THROUGHPUT_TABLE
    if args.throughput and not table.is_file():
        raise UserError(f"--throughput {table}: no such file")
    ev = jobs[0].evaluation  # one evaluation plan per study
    work = cost.StudyWork(images=tuple(cost.job_images(jobs)), metrics=tuple(ev["metrics"]),
                          representations=len(ev["representations"]), overrides=bool(ev["overrides"]))
    metric_seconds, metric_source = cost.load_metric_seconds(cost.METRIC_SECONDS_TABLE)
    est = cost.estimate(work, cost.load_throughput(table), metric_seconds, k, k_source)
    shown = args.throughput or "bench/results/throughput.json"
    print(cost.format_estimate(est, work, args.gpus, args.cpus_per_gpu or spec.resources.cpus_per_job,
                               shown, metric_source))


def cmd_status(args: argparse.Namespace) -> int:
    from benchmark.store import ResultsStore

    spec, jobs = _load_jobs(args.spec)
    store = ResultsStore.for_study(args.results, spec.study)
    st = store.status([j.job_id for j in jobs])
    print(f"study {spec.study} ({store.root}): {len(jobs)} jobs: {len(st.done)} done, "
          f"{len(st.failed)} failed, {len(st.pending)} pending")
    running = store.live_leases().keys() & set(st.pending)
    if running:
        print(f"  {len(running)} of the pending jobs are running now (their leases are in "
              f"{store.leases_dir})")
    if st.pending and (store.root / "slurm" / "arrays").is_dir():
        from benchmark.executors.slurm import active_jobs

        running = active_jobs(store)
        if running:
            print(f"  {len(running)} of the pending jobs are queued or running on Slurm")
    for job_id, record in sorted(st.failed.items()):
        print(f"  failed {job_id} [{record.get('kind', 'error')}]: {record.get('reason', '?')}")
    for job_id, problem in sorted(st.corrupt.items()):
        print(f"  corrupt {store.rows_path(job_id)}: {problem} (not done: `benchmark run` moves it "
              "to quarantine/ and runs the job again)")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    root = Path(args.results_dir)
    if not root.is_dir():
        raise UserError(f"results folder not found: {root}")
    if args.view_points is not None and args.view_points < 0:
        raise UserError(f"--view-points must be >= 0, got {args.view_points}")
    extra = {"traversal_jobs": args.traversal_jobs, "compare": args.compare,
             "view_points": args.view_points}
    if args.efficiency_score:
        extra["efficiency_score"] = args.efficiency_score
    _draw_figures(root, args.out, **extra)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from benchmark.importers import import_dlib

    summary = import_dlib(args.path, args.study, args.results)
    print("\n".join(summary.lines()), file=sys.stderr)
    return 0


def _draw_figures(root: Path, out: str | None, **options) -> None:
    from analysis.figures import draw_all

    print(f"drawing figures of {root} ...", file=sys.stderr)
    print(draw_all(root, out, **options).summary(), file=sys.stderr)


def cmd_datasets(args: argparse.Namespace) -> int:
    from benchmark.data.catalog import describe_datasets, write_sample_grid

    if args.name is None:
        from benchmark.data.registry import resolve_data_dir
        from benchmark.data.sources import dataset_status, download_command, downloadable

        rows = describe_datasets(args.data_dir)
        root = resolve_data_dir(args.data_dir)
        status = {r["name"]: dataset_status(r["name"], root) for r in rows}
        width = max(len(r["name"]) for r in rows)
        print(f"{'dataset':<{width}}  {'factors (sizes)':<58}  {'C,H,W':<9}  sources      files")
        for r in rows:
            factors = ", ".join(f"{n} {k}" for n, k in zip(r["factor_names"], r["factor_sizes"]))
            shape = ",".join(map(str, r["observation_shape"]))
            print(f"{r['name']:<{width}}  {factors:<58}  {shape:<9}  "
                  f"{'+'.join(r['sources']):<11}  {status[r['name']] or '-'}")
        published = downloadable()
        lacking = [n for n in published if status[n] in ("missing", "corrupt")]
        if lacking:
            where = args.data_dir or ("DIR" if root is None else None)
            names = ["all"] if lacking == published else lacking
            print(f"to fetch the missing files: {download_command(names, where)}")
        return 0
    out = args.out or f"{args.name}_samples.png"
    write_sample_grid(args.name, out, source=args.source, data_dir=args.data_dir, n=args.n,
                      seed=args.seed)
    print(out)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from benchmark.data.download import file_status, resolve_url_base, source_url, target_path
    from benchmark.data.registry import resolve_data_dir
    from benchmark.data.sources import download, published_files

    names = list(args.names)
    if args.for_spec:
        from benchmark.spec import load_spec

        names += [d.name for d in load_spec(args.for_spec).canonical_datasets() if d.source == "file"]
        if not names:
            print(f"{args.for_spec} reads no dataset from files: nothing to download", file=sys.stderr)
            return 0
    if not names:
        raise UserError("name the datasets to download (or 'all'), or pass --for-spec SPEC")
    if args.retries < 0:
        raise UserError(f"--retries must be at least 0, got {args.retries}")
    root = resolve_data_dir(args.data_dir)
    if root is None:
        raise UserError("where to put the files? pass --data-dir or set $BENCHMARK_DATA")
    files = published_files(names)  # unknown names, or none with files to fetch: one line, exit 2
    if args.dry_run:
        base = resolve_url_base(args.url_base)
        for f in files:
            what = f"{target_path(f)}/ ({f.remote.count} files)" if f.remote.unpack == "tar" else f.relpath
            print(f"{file_status(f, root):<10}  {what}  <-  {source_url(f, base)}")
        return 0

    def report(outcome) -> None:
        if outcome.ok:
            print(f"{outcome.file.mirror_path}: {outcome.message}", file=sys.stderr)
        else:
            print(f"error: {outcome.message}", file=sys.stderr)

    outcomes = download(names, root, args.url_base, retries=args.retries, report=report)
    failed = [o for o in outcomes if not o.ok]
    print(f"{len(outcomes)} files in {root}: {len(outcomes) - len(failed)} present, "
          f"{len(failed)} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
