"""What a study costs before it runs (`benchmark run SPEC --dry-run --estimate`).

Training: images = Σ over jobs of iterations × batch size (a fitted baseline trains none; FactorVAE's
`steps` are global steps, `steps_per_iteration` of them per iteration), divided by a *measured*
throughput at pack size K (K models trained at once on one device, `benchmark.packing`) from the
table `bench/train_speed.py --pack ... --out` writes (`bench/results/throughput.json`). Evaluation:
the metric suite's measured seconds per representation (`bench/metrics_speed.py`'s table,
`bench/results/metrics_speed_full.txt`) × representations × jobs. Without a GPU measurement the
estimate shows a lower bound instead: FLOPs ÷ a device's peak, never to be read as a measurement.

The arithmetic (`iterations`, `estimate`, `peak_report`) is pure; the table readers do file I/O and
`job_images` asks each method how it trains (it builds one system per setting: it imports torch, so
only `--estimate` pays for torch, not a plain `--dry-run`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
THROUGHPUT_TABLE = ROOT / "bench" / "results" / "throughput.json"
METRIC_SECONDS_TABLE = ROOT / "bench" / "results" / "metrics_speed_full.txt"

# One training image (forward + backward) of dlib's conv VAE at 64x64x1: 3 × the 32.5 MFLOP forward
# of encoder plus decoder, counted analytically and checked against torch's FlopCounterMode
# (docs/performance.md, section 2).
FLOP_PER_IMAGE = 97.6e6


@dataclass(frozen=True)
class Peak:
    """A device's dense peak FLOP/s (no structured sparsity) from its vendor's datasheet."""

    name: str
    bf16: float  # tensor cores
    tf32: float  # tensor cores
    fp32: float  # CUDA cores
    source: str


# Matched in order: the first key contained in torch.cuda.get_device_name() wins (so "H100 PCIe"
# before "H100"). Datasheets quote sparse tensor figures; these are half of them, the dense ones.
PEAKS: tuple[tuple[str, Peak], ...] = (
    ("H100 PCIe", Peak("H100 PCIe", 756e12, 378e12, 51e12, "NVIDIA H100 Tensor Core GPU datasheet")),
    ("H100 NVL", Peak("H100 NVL", 835e12, 418e12, 60e12, "NVIDIA H100 Tensor Core GPU datasheet")),
    ("H100", Peak("H100 SXM", 989e12, 495e12, 67e12, "NVIDIA H100 Tensor Core GPU datasheet")),
    ("H200 NVL", Peak("H200 NVL", 835e12, 418e12, 60e12, "NVIDIA H200 Tensor Core GPU datasheet")),
    ("H200", Peak("H200 SXM", 989e12, 495e12, 67e12, "NVIDIA H200 Tensor Core GPU datasheet")),
    ("A100", Peak("A100", 312e12, 156e12, 19.5e12, "NVIDIA A100 Tensor Core GPU datasheet")),
    ("L40S", Peak("L40S", 362e12, 183e12, 91.6e12, "NVIDIA L40S datasheet")),
)
BOUND_DEVICE = "H100"  # the device of the lower bound shown when no GPU was measured


def peak_for(device_name: str) -> Peak | None:
    """The peak of the device torch names `device_name` (e.g. "NVIDIA H100 80GB HBM3"), if known."""
    return next((peak for key, peak in PEAKS if key.lower() in device_name.lower()), None)


# --------------------------------------------------------------------------- training work


def iterations(steps: int, steps_per_iteration: int, fitted: bool) -> int:
    """Calls of `training_step` to reach `steps` global steps (the loop of `benchmark.training`)."""
    return 0 if fitted else math.ceil(steps / steps_per_iteration)


def job_images(jobs: Sequence[Any]) -> list[int]:
    """Training images of each job: iterations × batch size. Asks each (method, hyperparameters,
    training settings) once how it trains, from the system itself (`fitted`, `steps_per_iteration`).
    A FactorVAE with `shuffle: second_batch` encodes a second batch per iteration, counted as one."""
    from benchmark.settings import TrainingSettings
    from benchmark.spec import canonical_json
    from benchmark.training import build_system

    schedule: dict[str, tuple[bool, int]] = {}
    images = []
    for job in jobs:
        key = canonical_json([job.model, job.params, job.training])
        if key not in schedule:
            cfg = TrainingSettings(**job.training)
            system = build_system(job.model, job.params, (1, 64, 64), cfg, seed=0)  # any dataset's
            schedule[key] = (bool(system.fitted), int(system.steps_per_iteration))
        fitted, per_iteration = schedule[key]
        images.append(iterations(job.training["steps"], per_iteration, fitted) * job.training["batch_size"])
    return images


# --------------------------------------------------------------------------- measured tables


_ROW_KEYS = ("device", "method", "strategy", "pack", "images_per_s")


def _row_key(row: Mapping[str, Any]) -> tuple:
    return tuple(row[k] for k in ("device", "method", "strategy", "pack"))


def load_throughput(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a throughput table (`[]` when the file does not exist); a malformed table is a
    one-line UserError."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
        for row in rows:
            missing = [k for k in _ROW_KEYS if k not in row]
            if missing:
                raise ValueError(f"a row lacks {', '.join(missing)}")
            if not (isinstance(row["pack"], int) and row["pack"] >= 1 and row["images_per_s"] > 0):
                raise ValueError(f"bad row {_row_key(row)}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"throughput table {path}: {' '.join(str(exc).split())}") from None
    return rows


def merge_throughput(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Adds `rows` to the table at `path`, replacing those with the same device, method, strategy
    and pack size (a new measurement supersedes the old one)."""
    path = Path(path)
    new = [dict(r) for r in rows]
    keys = {_row_key(r) for r in new}
    kept = [r for r in load_throughput(path) if _row_key(r) not in keys]
    table = {
        "about": "Training throughput (images/s) at batch 64 on 64x64x1 images, per device kind and "
                 "pack size K (K models trained at once), written by bench/train_speed.py --pack --out; "
                 "read by benchmark run --dry-run --estimate (benchmark/cost.py). images_per_s: wall; "
                 "images_per_cpu_s: per CPU-second of the process (the robust figure on a shared CPU).",
        "rows": sorted(kept + new, key=_row_key),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    rows_text = ",\n  ".join(json.dumps(r) for r in table["rows"])  # one row per line
    tmp.write_text(f'{{"about": {json.dumps(table["about"])},\n "rows": [\n  {rows_text}\n ]}}\n',
                   encoding="utf-8")
    os.replace(tmp, path)


def rate(row: Mapping[str, Any]) -> float:
    """Total images/s the estimate uses: per CPU-second on a CPU (what a core of its own would do: the
    wall rate on a shared machine is not), wall on an accelerator."""
    if row["device"].startswith("cpu") and row.get("images_per_cpu_s"):
        return float(row["images_per_cpu_s"])
    return float(row["images_per_s"])


def best_row(rows: Sequence[Mapping[str, Any]], device: str, k: int,
             method: str = "beta_vae") -> Mapping[str, Any] | None:
    """The fastest strategy's row of `method` on `device` at pack size `k`."""
    found = [r for r in rows if r["device"] == device and r["method"] == method and r["pack"] == k]
    return max(found, key=rate, default=None)


def load_metric_seconds(path: str | Path) -> tuple[dict[str, float], str]:
    """(seconds per metric on one core for one representation, the table's first line) from
    `bench/metrics_speed.py`'s printed table (column "ours j=1"); ({}, "") when the file is absent."""
    path = Path(path)
    if not path.exists():
        return {}, ""
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        head = next(i for i, line in enumerate(lines) if line.split()[:1] == ["metric"])
        end = lines[head].index("ours j=1") + len("ours j=1")  # the columns are right-aligned
        seconds = {}
        for line in lines[head + 1:]:
            if not line.split() or line.split()[0] == "TOTAL":
                break
            seconds[line.split()[0]] = float(line[:end].split()[-1])
    except (StopIteration, ValueError, IndexError):
        raise UserError(f"metric timing table {path}: no 'metric ... ours j=1' table in it") from None
    return seconds, lines[0].lstrip("# ").strip()


# --------------------------------------------------------------------------- the estimate


@dataclass(frozen=True)
class StudyWork:
    """What the estimate needs of a study: its jobs' training images and evaluation plan."""

    images: tuple[int, ...]  # per job
    metrics: tuple[str, ...]
    representations: int
    overrides: bool  # the spec changes some metric's sample sizes


@dataclass
class Estimate:
    jobs: int
    trained: int
    images: int
    k: int
    k_source: str
    # (device kind, K, strategy, total images/s, device-hours, the row) per measured projection
    training: list[tuple[str, int, str, float, float, Mapping[str, Any]]] = field(default_factory=list)
    bounds: list[tuple[str, float, float]] = field(default_factory=list)  # (label, FLOP/s, hours)
    eval_cpu_hours: float | None = None
    eval_seconds_per_repr: float = 0.0
    unmeasured_metrics: tuple[str, ...] = ()


def estimate(work: StudyWork, throughput: Sequence[Mapping[str, Any]], metric_seconds: Mapping[str, float],
             k: int, k_source: str = "--pack") -> Estimate:
    """Device-hours per measured device kind at K = 1 and at K (when measured there, else at its
    best measured K), the FLOP bound when no accelerator was measured, evaluation CPU-hours."""
    images = sum(work.images)
    est = Estimate(jobs=len(work.images), trained=sum(1 for n in work.images if n), images=images,
                   k=k, k_source=k_source)
    for device in sorted({r["device"] for r in throughput}):
        measured = sorted({r["pack"] for r in throughput if r["device"] == device
                           and r["method"] == "beta_vae"})
        if not measured:
            continue
        best_k = max(measured, key=lambda p: rate(best_row(throughput, device, p)))
        for pack in dict.fromkeys([1 if 1 in measured else measured[0], k if k in measured else best_k]):
            row = best_row(throughput, device, pack)
            est.training.append((device, pack, row["strategy"], rate(row), images / rate(row) / 3600, row))
    if not any(d.startswith("cuda") for d, *_ in est.training):
        peak = peak_for(BOUND_DEVICE)
        for precision in ("bf16", "fp32"):
            flops = getattr(peak, precision)
            est.bounds.append((f"{peak.name} at {precision} peak", flops,
                               images * FLOP_PER_IMAGE / flops / 3600))
    if metric_seconds:
        per_repr = sum(metric_seconds.get(m, 0.0) for m in work.metrics)
        est.eval_seconds_per_repr = per_repr
        est.unmeasured_metrics = tuple(m for m in work.metrics if m not in metric_seconds)
        est.eval_cpu_hours = len(work.images) * work.representations * per_repr / 3600
    return est


def _n(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def format_estimate(est: Estimate, work: StudyWork, gpus: int, cpus_per_gpu: int, throughput_path: str,
                    metric_source: str) -> str:
    """The printed estimate: a short table, wall-clock, and what it rests on."""
    out = [f"estimate: {est.jobs:,} jobs ({est.trained:,} trained, {est.jobs - est.trained:,} fitted "
           f"or untrained); pack size K = {est.k} ({est.k_source})",
           f"training: {est.images:,} images (per job: iterations x batch size; FactorVAE counts "
           "global steps, fitted baselines none)",
           f"  {'device':44s} {'K':>3s} {'strategy':8s} {'img/s/model':>11s} {'img/s total':>12s} "
           f"{'device-hours':>13s}"]
    for device, pack, strategy, total, hours, _ in est.training:
        note = "" if pack == est.k or pack == 1 else f"  (best measured K; K = {est.k} not measured)"
        if device.startswith("cpu"):
            note += "  (core-hours, one process per core)"
        out.append(f"  {device[:44]:44s} {pack:3d} {strategy:8s} {_n(total / pack):>11s} {_n(total):>12s} "
                   f"{_n(hours):>13s}{note}")
    for label, flops, hours in est.bounds:
        out.append(f"  {'BOUND ' + label:44s} {'-':>3s} {'-':8s} {'-':>11s} "
                   f"{_n(flops / FLOP_PER_IMAGE):>12s} {_n(hours):>13s}  (>=; FLOPs / peak, not measured)")
    if est.eval_cpu_hours is not None:
        missing = (f"; not measured, counted as 0: {', '.join(est.unmeasured_metrics)}"
                   if est.unmeasured_metrics else "")
        out.append(f"evaluation: {est.jobs:,} jobs x {work.representations} representations x "
                   f"{len(work.metrics)} metrics, {est.eval_seconds_per_repr:.0f} CPU-s per representation "
                   f"-> {_n(est.eval_cpu_hours)} CPU-hours on one core each{missing}")
    else:
        out.append("evaluation: no metric timing table (bench/results/metrics_speed_full.txt): not estimated")
    cpus = gpus * cpus_per_gpu
    # Per accelerator: its row at K (else at its best measured K), the last one `estimate` adds.
    cuda = list({t[0]: t for t in est.training if t[0].startswith("cuda")}.values())
    eval_h = est.eval_cpu_hours / cpus if est.eval_cpu_hours is not None else None
    eval_txt = f"evaluation {_n(eval_h)} h on {cpus} CPUs" if eval_h is not None else "evaluation ?"
    out.append(f"wall-clock at {gpus} GPU(s) x {cpus_per_gpu} CPUs (evaluation on the CPUs while the GPUs "
               "train; total = the larger if they overlap, the sum if not):")
    for device, pack, _, _, hours, _ in cuda:
        train_h = hours / gpus
        total = f"; total {_n(max(train_h, eval_h))}-{_n(train_h + eval_h)} h" if eval_h is not None else ""
        out.append(f"  {device} K = {pack}: training {_n(train_h)} h, {eval_txt}{total}")
        if est.eval_cpu_hours is not None:
            out.append(f"  CPUs per GPU for evaluation to keep pace with training: "
                       f"{math.ceil(est.eval_cpu_hours / hours)}")
    if not cuda:
        floor = min((h for _, _, h in est.bounds), default=None)
        bound = f"training >= {_n(floor / gpus)} h (bound), " if floor is not None else ""
        out.append(f"  no GPU measured: {bound}{eval_txt}; measure with bench/gpu_check.sh on a GPU")
    out.append("rests on:")
    seen = set()
    for device, *_, row in est.training:
        if device in seen:
            continue
        seen.add(device)
        out.append(f"  {throughput_path}: {device} ({row.get('hardware', '?')}), measured "
                   f"{row.get('measured_at', '?')} at commit {row.get('commit', '?')}, load average "
                   f"{row.get('load_average', '?')}")
    if not est.training:
        out.append(f"  no throughput measurement ({throughput_path} has none): only the bound above")
    if metric_source:
        out.append(f"  bench/results/metrics_speed_full.txt: {metric_source}")
    if est.bounds:
        peak = peak_for(BOUND_DEVICE)
        out.append(f"  bound: {FLOP_PER_IMAGE / 1e6:.1f} MFLOP per training image (docs/performance.md), "
                   f"{peak.name} dense peaks from the {peak.source}")
    out.append("approximated: every method at beta_vae's measured rate (FactorVAE and InfoGAN are about "
               "2x slower per image, docs/performance.md); 1-channel images (colour costs more in the first "
               "and last layers); metric seconds measured on dSprites at the study's sample sizes"
               + (" (this spec overrides some sizes: not scaled)" if work.overrides else "")
               + "; data loading and checkpoints not counted")
    return "\n".join(out)


def peak_report(rows: Sequence[Mapping[str, Any]], device: str, device_name: str) -> tuple[str, int]:
    """(lines, best K): the fastest pack of `device` in the table and the fraction of the device's
    peaks it reaches (images/s × FLOP_PER_IMAGE ÷ peak FLOP/s)."""
    measured = [r for r in rows if r["device"] == device and r["method"] == "beta_vae"]
    if not measured:
        raise UserError(f"no beta_vae rows for {device} in the throughput table")
    best = max(measured, key=rate)
    achieved = rate(best) * FLOP_PER_IMAGE
    lines = [f"best pack: K = {best['pack']} ({best['strategy']}), {rate(best):,.0f} images/s in total, "
             f"{achieved / 1e12:,.2f} TFLOP/s at {FLOP_PER_IMAGE / 1e6:.1f} MFLOP per image (fp32; PyTorch's default runs cuDNN convolutions in TF32)"]
    peak = peak_for(device_name)
    if peak is None:
        lines.append(f"no peak known for {device_name!r} (benchmark/cost.py PEAKS): fraction not computed")
    else:
        lines += [f"fraction of {peak.name}'s dense {p} peak ({getattr(peak, p) / 1e12:,.0f} TFLOP/s, "
                  f"{peak.source}): {achieved / getattr(peak, p):.2%}" for p in ("bf16", "tf32", "fp32")]
    return "\n".join(lines), int(best["pack"])
