"""Validation of the precision and execution options against fp32: a small study trained under fp32
and under each option, compared on loss curves and final scores.

    OMP_NUM_THREADS=1 python bench/precision_check.py [--device cpu|cuda|auto]
        [--options bf16,channels_last,inductor] [--methods beta_vae,factor_vae] [--seeds 2]
        [--steps 300] [--window 25] [--budget-s 0] [--out FILE]

Every option trains the same models (methods x seeds, batch 64, procedural dSprites) as fp32 and
is scored on a few metrics at small sizes. Printed per option: the loss-curve deviation (the largest
relative difference between its windowed mean loss and fp32's, over all windows and models), the
largest score difference from fp32 per metric, seconds of training per model, and a verdict.

The yardstick is a change that nobody would call another model: `reference`, fp32 with a different
kernel rounding (2 torch threads instead of 1 on a CPU; cuDNN's benchmarked convolution algorithms
on CUDA). These small models amplify any rounding difference chaotically, so fp32 is not reproduced
bitwise by any option; an option passes when it deviates from fp32 by at most TOLERANCE times what
the reference does (loss curves and every score), or by at most the absolute floors below (the
reference can be accidentally close). Options: bf16, tf32, channels_last, inductor (torch.compile),
cudagraphs (torch.compile "reduce-overhead"; CUDA only); tf32 and cudagraphs only on CUDA.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.data import get_dataset
from benchmark.metrics.suite import evaluate
from benchmark.settings import TrainingSettings
from benchmark.training import configure_allocator, resolve_device, train

OPTIONS = {"bf16": {"precision": "bf16"}, "tf32": {"precision": "tf32"},
           "channels_last": {"channels_last": True}, "inductor": {"compile": "inductor"},
           "cudagraphs": {"compile": "cudagraphs"}}
CUDA_ONLY = {"tf32", "cudagraphs"}
# Pass: deviation <= TOLERANCE x the reference's, or below the floor (relative loss; score units).
TOLERANCE, LOSS_FLOOR, SCORE_FLOOR = 3.0, 5e-3, 0.02
METRICS = {"mig": {"num_train": 2000}, "sap": {"num_train": 1000, "num_test": 500},
           "beta_vae": {"batch_size": 16, "num_train": 200, "num_eval": 100},
           "dci": {"num_train": 1000, "num_test": 500, "n_estimators": 20}}
SCORES = [("mig", "discrete_mig"), ("sap", "SAP_score"), ("beta_vae", "eval_accuracy"),
          ("dci", "disentanglement")]


@contextlib.contextmanager
def reference_rounding(device: torch.device):
    """fp32 with another kernel rounding: 2 threads on a CPU, benchmarked cuDNN algorithms on CUDA."""
    if device.type == "cuda":
        before = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
        try:
            yield
        finally:
            torch.backends.cudnn.benchmark = before
    else:
        before = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def run_model(method: str, seed: int, settings: dict, data, steps: int, window: int,
              device: torch.device, reference: bool) -> dict:
    """Train one model, return its windowed losses, training seconds and scores."""
    losses: list[float] = []
    cfg = TrainingSettings(steps=steps, batch_size=64, log_every=window, checkpoint_every=10**9,
                           eval_batches=4, device=str(device), **settings)
    ctx = reference_rounding(device) if reference else contextlib.nullcontext()
    t0 = time.perf_counter()
    with ctx:
        model = train(method, {}, data, seed, cfg, progress=lambda s, t, m: losses.append(m["loss"]))
        if device.type == "cuda":
            torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    rows = evaluate(data, {"mean": model.represent("mean")}, seed=0, metrics=list(METRICS),
                    overrides=METRICS)
    scores = {(r["metric"], r["key"]): float(r["value"]) for r in rows}
    return {"losses": np.array(losses), "seconds": seconds, "scores": scores,
            "execution": model.execution}


def deviations(runs: dict, base: dict) -> tuple[float, dict]:
    """(largest relative windowed-loss difference, largest |score difference| per score)."""
    loss = max(float(np.max(np.abs(runs[k]["losses"] - base[k]["losses"]) / np.abs(base[k]["losses"])))
               for k in base)
    scores = {s: max(abs(runs[k]["scores"][s] - base[k]["scores"][s]) for k in base) for s in SCORES}
    return loss, scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--options", default=None, help="comma-separated; default: all that run here")
    ap.add_argument("--methods", default="beta_vae,factor_vae")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--window", type=int, default=25)
    ap.add_argument("--budget-s", type=float, default=0, help="skip options that would start after "
                    "this many seconds (0: no limit)")
    ap.add_argument("--out", default=None, help="also write the report to this file")
    args = ap.parse_args()
    t_start = time.perf_counter()
    load_before = os.getloadavg()
    torch.set_num_threads(1)
    configure_allocator()
    device = resolve_device(args.device)
    names = args.options.split(",") if args.options else [
        o for o in OPTIONS if device.type == "cuda" or o not in CUDA_ONLY]
    unknown = [o for o in names if o not in OPTIONS]
    if unknown:
        ap.error(f"unknown option {unknown[0]!r} (known: {', '.join(OPTIONS)})")
    methods = args.methods.split(",")
    data = get_dataset("dsprites_full", "procedural")
    models = [(m, s) for m in methods for s in range(args.seeds)]
    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        platform.processor() or platform.machine())
    if device.type == "cpu":
        with contextlib.suppress(OSError, StopIteration):
            hardware = next(line.split(":", 1)[1].strip() for line in
                            Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    say(f"# python bench/precision_check.py {' '.join(sys.argv[1:])}".rstrip())
    say(f"# {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}  commit {commit}  torch {torch.__version__}")
    say(f"# {hardware}, {os.cpu_count()} logical CPUs; load average "
        f"{' '.join(f'{x:.2f}' for x in load_before)} at the start")
    say(f"# {len(models)} models ({', '.join(methods)} x {args.seeds} seeds), {args.steps} steps at "
        f"batch 64 on procedural dSprites, losses in windows of {args.window} steps; scores: "
        + ", ".join(f"{m}.{k}" for m, k in SCORES))
    say(f"# pass: deviation <= {TOLERANCE:g} x the reference's (fp32, another kernel rounding: "
        f"{'cuDNN benchmark' if device.type == 'cuda' else '2 threads'}), or loss <= {LOSS_FLOOR:g} "
        f"relative, score <= {SCORE_FLOOR:g}")
    say()

    def study(settings: dict, reference: bool = False) -> dict:
        return {(m, s): run_model(m, s, settings, data, args.steps, args.window, device, reference)
                for m, s in models}

    base = study({})
    ref = study({}, reference=True)
    ref_loss, ref_scores = deviations(ref, base)
    seed_spread = {s: max(abs(base[(m, 0)]["scores"][s] - base[(m, 1)]["scores"][s]) for m in methods)
                   for s in SCORES} if args.seeds > 1 else {}
    header = (f"{'option':14s} {'loss dev':>9s} {'s/model':>8s} "
              + " ".join(f"{k[:14]:>14s}" for _, k in SCORES) + "  verdict")
    say(header)

    def row(name: str, runs: dict | None, loss: float, scores: dict, verdict: str) -> None:
        secs = np.mean([r["seconds"] for r in runs.values()]) if runs else float("nan")
        say(f"{name:14s} {loss:9.2e} {secs:8.1f} " + " ".join(f"{scores[s]:14.4f}" for s in SCORES)
            + f"  {verdict}")

    row("fp32", base, 0.0, {s: 0.0 for s in SCORES}, "(the baseline)")
    row("reference", ref, ref_loss, ref_scores, "(the yardstick)")
    if seed_spread:
        say(f"{'seed 0 vs 1':14s} {'':9s} {'':8s} " + " ".join(f"{seed_spread[s]:14.4f}" for s in SCORES)
            + "  (fp32, for scale)")
    for name in names:
        if name in CUDA_ONLY and device.type != "cuda":
            say(f"{name:14s} skipped: CUDA only")
            continue
        if args.budget_s and time.perf_counter() - t_start > args.budget_s:
            say(f"{name:14s} skipped: time budget of {args.budget_s:g} s spent")
            continue
        runs = study(OPTIONS[name])
        loss, scores = deviations(runs, base)
        ok = (loss <= max(TOLERANCE * ref_loss, LOSS_FLOOR)
              and all(scores[s] <= max(TOLERANCE * ref_scores[s], SCORE_FLOOR) for s in SCORES))
        applied = {str(r["execution"]) for r in runs.values()}
        note = "" if applied <= {"{}", str(OPTIONS[name])} else f" (applied: {'; '.join(sorted(applied))})"
        row(name, runs, loss, scores, ("PASS" if ok else "FAIL") + note)
    say()
    say(f"# columns: loss dev = max relative windowed-loss difference from fp32; s/model = wall "
        f"seconds of training per model; scores = max |difference| from fp32 over the {len(models)} models")
    say(f"# load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end; "
        f"{time.perf_counter() - t_start:.0f} s in all")
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
