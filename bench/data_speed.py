"""Rendering throughput of the procedural datasets and open time / memory of cached real files.

    OMP_NUM_THREADS=1 python bench/data_speed.py [--data-dir DIR] [--batch 64] [--seconds 2]

Images/s are for one process on one core (numpy single-threaded), at the training batch size.
The cache rows need the real files in DIR (otherwise small stand-in files are generated in a
temporary directory and timed, which measures the mechanism, not the real sizes).
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("BENCHMARK_DATA"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--skip-files", action="store_true", help="only the procedural datasets")
    args = ap.parse_args()

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
