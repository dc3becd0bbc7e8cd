"""Rendering throughput of the procedural datasets and open time / memory of cached real files; with
--device, the data at device speed: a pack's batches drawn on the host per step vs gathered on the
device from the grid held in its memory (`benchmark.data.device`).

    OMP_NUM_THREADS=1 python bench/data_speed.py [--data-dir DIR] [--batch 64] [--seconds 2]
    OMP_NUM_THREADS=1 python bench/data_speed.py --device cpu|cuda [--pack 64] [--small-grid]

Images/s are for one process on one core (numpy single-threaded), at the training batch size.
The cache rows need the real files in DIR (otherwise small stand-in files are generated in a
temporary directory and timed, which measures the mechanism, not the real sizes).

--device times one training step's data for a pack of K models (K x batch images, each model from
its own stream): "host" is what training does without the grid (render each batch with numpy, stack,
copy to the device), "device" the grid's sampler (gather, decode and the per-image randomness on the
device). It builds the full dSprites grid first (737,280 sprites, minutes on one core; the time and
bytes are printed); --small-grid uses 480 sprites instead, for a dry run.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmark.data import descriptor, get_dataset


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def throughput(name: str, batch: int, seconds: float, source: str = "procedural", data_dir=None) -> tuple[float, float]:
    ds = get_dataset(name, source=source, data_dir=data_dir)
    t0 = time.perf_counter()
    ds.sample(batch, 0)  # warm-up: lazy tables (heart mask)
    if name == "shapes3d" and source == "procedural":
        from benchmark.data.shapes3d import geometry_table

        geometry_table().fill()  # the 480 geometries, rendered once per process
    setup = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        ds.sample(batch, rng)
        n += batch
    return n / (time.perf_counter() - start), setup


def fake_real_files(root: Path) -> None:
    """Small files in the real formats (dSprites at full size: 737,280 images, ~26 MB compressed)."""
    from benchmark.data import dsprites_render as R
    from benchmark.data.state_space import StateSpace

    (root / "dsprites").mkdir(parents=True)
    space = StateSpace((1, 3, 6, 40, 32, 32))
    classes = space.all_factors()
    imgs = np.concatenate([R.render_classes(classes[i : i + 8192, 1:]) for i in range(0, len(classes), 8192)])
    np.savez_compressed(root / "dsprites" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
                        imgs=imgs, latents_classes=classes)


DEVICE_DATASETS = ("dsprites_full", "color_dsprites", "noisy_dsprites", "scream_dsprites", "shapes3d")
SMALL_SPRITES = (3, 2, 5, 4, 4)


def _timed(step, seconds: float, sync) -> float:
    """Seconds per call of `step` (at least 3 calls and `seconds`), after one warm-up call."""
    step()
    sync()
    n, start = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < seconds:
        step()
        n += 1
    sync()
    return (time.perf_counter() - start) / n


def device_table(device_name: str, pack: int, batch: int, seconds: float, small: bool) -> None:
    """Images/s of one pack step's data, host path vs device grid (see the module docstring)."""
    import torch

    from benchmark.data.device import DeviceSampler, data_sampler
    from benchmark.errors import UserError
    from benchmark.training import resolve_device

    device = resolve_device(device_name)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} thread(s)"
    print(f"data for one step of a pack of {pack} models x batch {batch} = {pack * batch} images; "
          f"device {hardware}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'dataset':36} {'grid':>5} {'grid MB':>8} {'build s':>8} {'host img/s':>11} "
          f"{'device img/s':>13} {'ratio':>6}")
    for name in DEVICE_DATASETS:
        ds = get_dataset(name)
        if small and name == "shapes3d":
            continue
        if small:
            ds.factor_sizes = SMALL_SPRITES
        t0 = time.perf_counter()
        try:
            sampler = data_sampler(ds, device, "on")
        except UserError as e:
            print(f"{name:36} {str(e)}")
            continue
        build = time.perf_counter() - t0
        samplers = [("", sampler)]
        if name == "noisy_dsprites" and sampler.noise == "numpy":  # as on an accelerator too
            samplers.append((" (generator noise)", DeviceSampler(ds, sampler.grid, noise="generator")))
        rngs = [np.random.default_rng(k) for k in range(pack)]

        def host(rngs=rngs, ds=ds):
            xs = [torch.from_numpy(ds.sample_observations(batch, r)) for r in rngs]
            torch.stack(xs).to(device)

        host_s = _timed(host, seconds, sync)
        for label, smp in samplers:
            dev_s = _timed(lambda smp=smp, rngs=rngs: torch.stack([smp.sample_observations(batch, r) for r in rngs]),
                           seconds, sync)
            print(f"{name + label:36} {smp.grid.encoding:>5} {smp.grid.nbytes / 1e6:8.1f} {build:8.1f} "
                  f"{pack * batch / host_s:11.0f} {pack * batch / dev_s:13.0f} {host_s / dev_s:6.1f}",
                  flush=True)
            build = 0.0  # the variants share the dSprites grid: built once
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("BENCHMARK_DATA"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--skip-files", action="store_true", help="only the procedural datasets")
    ap.add_argument("--device", default=None, help="cpu, cuda or auto: only the data-at-device-speed table")
    ap.add_argument("--pack", type=int, default=64, help="models per step (with --device)")
    ap.add_argument("--small-grid", action="store_true", help="a 480-sprite dSprites grid (with --device)")
    args = ap.parse_args()
    if args.device:
        logging.basicConfig(level=logging.INFO, format="  %(message)s")  # the grid's build progress
        device_table(args.device, args.pack, args.batch, args.seconds, args.small_grid)
        return

    print(f"procedural rendering, batch {args.batch}, one process (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    print(f"{'dataset':18} {'images/s':>10} {'ms/batch':>9} {'first batch s':>13}")
    for name in ("dsprites_full", "color_dsprites", "noisy_dsprites", "scream_dsprites", "shapes3d", "xy_object"):
        ips, setup = throughput(name, args.batch, args.seconds)
        print(f"{name:18} {ips:10.0f} {1e3 * args.batch / ips:9.2f} {setup:13.2f}")
    if args.skip_files:
        return

    tmp = None
    data_dir = Path(args.data_dir) if args.data_dir else None
    if data_dir is None or not descriptor("dsprites_full").files_present(data_dir):
        tmp = tempfile.TemporaryDirectory()
        data_dir = Path(tmp.name)
        print(f"\nno real files: writing a full-size dSprites npz in the real format to {data_dir} ...")
        fake_real_files(data_dir)
    print(f"\ncached real files in {data_dir}")
    print(f"{'dataset':18} {'convert s':>9} {'open ms':>8} {'RSS after open MB':>17} {'images/s':>9}")
    for name in ("dsprites_full", "shapes3d", "mpi3d_toy", "mpi3d_realistic", "mpi3d_real", "smallnorb", "cars3d"):
        if not descriptor(name).files_present(data_dir):
            continue
        t0 = time.perf_counter()
        get_dataset(name, source="file", data_dir=data_dir)  # converts on first use
        convert = time.perf_counter() - t0
        before = rss_mb()
        t0 = time.perf_counter()
        get_dataset(name, source="file", data_dir=data_dir)
        open_ms = 1e3 * (time.perf_counter() - t0)
        grown = rss_mb() - before
        ips, _ = throughput(name, args.batch, args.seconds, "file", data_dir)
        print(f"{name:18} {convert:9.2f} {open_ms:8.1f} {grown:17.1f} {ips:9.0f}")
    print("(peak RSS includes generating the stand-in file when no real files were given)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
