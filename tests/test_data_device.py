"""Data at device speed (`benchmark.data.device`): the batches gathered from a grid in the device's
memory are bitwise the host path's (`sample_observations`), on the CPU standing in for CUDA; the
device-generator noise has the right distribution and is reproducible; training with the data on
the device gives bitwise the weights of training without. Small grids only (reduced dSprites,
synthetic datasets): the full dSprites grid is timed in bench/data_speed.py."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from test_models_toydata import Squares

from benchmark.data import device as D
from benchmark.data import dsprites, get_dataset
from benchmark.data.files import FileData
from benchmark.data.grid import U8_VALUES, GridSource, encode, narrowest
from benchmark.data.shapes3d import ProceduralShapes3D
from benchmark.data.synthetic import DummyData, IdentityData, XYObject, xy_tiny
from benchmark.errors import UserError
from benchmark.packing import train_pack
from benchmark.settings import NOT_IN_MODEL_ID, TrainingSettings
from benchmark.training import train

CPU = torch.device("cpu")
SMALL_SPRITES = (3, 2, 5, 4, 4)  # 480 sprites: every shape, two scales, five angles, 4 x 4 places


@pytest.fixture(autouse=True)
def _fresh_grids():
    D.clear_grids()
    yield
    D.clear_grids()


def reduced(name: str):
    ds = get_dataset(name)
    ds.factor_sizes = SMALL_SPRITES
    return ds


def small_shapes3d():
    ds = ProceduralShapes3D()
    ds.factor_sizes = (2, 2, 3, 2, 2, 1)  # 48 scenes: 4 geometries ray-cast
    return ds


def small_files():
    """SmallNORB-like: a nuisance factor drawn per image and images stored out of factor order."""
    rng = np.random.default_rng(0)
    sizes = (3, 4, 2)
    images = rng.integers(0, 256, (24, 1, 8, 8), dtype=np.uint8)
    lookup = rng.permutation(24)
    return FileData("toy_files", images, ("a", "nuisance", "b"), sizes, latent=[0, 2], lookup=lookup)


DATASETS = {
    "dsprites_full": lambda: reduced("dsprites_full"),
    "color_dsprites": lambda: reduced("color_dsprites"),
    "noisy_dsprites": lambda: reduced("noisy_dsprites"),
    "scream_dsprites": lambda: reduced("scream_dsprites"),
    "shapes3d": small_shapes3d,
    "xy_tiny": xy_tiny,
    "identity": IdentityData,
    "files": small_files,
}


@pytest.mark.parametrize("name", sorted(DATASETS))
@pytest.mark.parametrize("state", ["generator", "randomstate"])
def test_device_batches_are_bitwise_the_host_batches(name, state):
    ds = DATASETS[name]()
    sampler = D.data_sampler(ds, CPU, "on")
    make = np.random.default_rng if state == "generator" else np.random.RandomState
    host, dev = make(7), make(7)
    for n in (1, 13, 32):  # consecutive batches: the streams stay in step
        a = ds.sample_observations(n, host)
        b = sampler.sample_observations(n, dev)
        assert b.dtype == torch.float32 and b.device == CPU
        assert torch.equal(torch.from_numpy(a), b), n
        assert a.tobytes() == b.numpy().tobytes()  # signs of zeros too
    same = host.bit_generator.state == dev.bit_generator.state if state == "generator" else \
        all(np.array_equal(x, y) for x, y in zip(host.get_state(), dev.get_state(), strict=True))
    assert same


def test_grid_encodings_and_bytes():
    assert D.data_sampler(reduced("dsprites_full"), CPU, "on").grid.encoding == "bits"
    assert D.device_grid(reduced("dsprites_full"), CPU).nbytes == int(np.prod(SMALL_SPRITES)) * 512
    assert D.data_sampler(xy_tiny(), CPU, "on").grid.encoding == "bits"  # grey squares: 0 and 1
    colours = XYObject(spacing=12, square_sizes=(7, 9))  # 1,200 squares in 24 colours k/255
    assert D.data_sampler(colours, CPU, "on").grid.encoding == "u8"
    assert D.data_sampler(IdentityData(), CPU, "on").grid.encoding == "f32"
    assert D.data_sampler(small_files(), CPU, "on").grid.encoding == "u8"
    x = U8_VALUES[np.arange(256, dtype=np.uint8)].reshape(1, 1, 16, 16)
    assert narrowest(x) == "u8" and np.array_equal(U8_VALUES[encode(x, "u8")], x)
    with pytest.raises(ValueError, match="k/255"):
        encode(x + np.float32(1e-3), "u8")


def test_one_grid_per_device_shared_by_the_variants_and_by_later_packs(caplog):
    with caplog.at_level(logging.INFO, logger="benchmark.data.device"):
        grids = [D.data_sampler(reduced(name), CPU, "on").grid
                 for name in ("dsprites_full", "color_dsprites", "scream_dsprites", "dsprites_full")]
    assert all(g is grids[0] for g in grids)
    assert caplog.text.count("grid on cpu: 480/480 images") == 1  # built once, progress logged
    other = D.data_sampler(xy_tiny(), CPU, "on").grid  # another dataset replaces it
    assert other is not grids[0] and D.device_grid(reduced("dsprites_full"), CPU) is not grids[0]


def test_a_dsprites_file_grid_is_its_own(tmp_path):
    """Two dSprites files (two data folders) never share a grid; procedural and file never do."""
    space = dsprites.StateSpace((1, *SMALL_SPRITES))
    classes = space.all_factors()
    grids = []
    for k, folder in enumerate(("a", "b")):
        (tmp_path / folder / "dsprites").mkdir(parents=True)
        imgs = dsprites.dsprites_render.render_classes(classes[:, 1:])
        imgs[:, k, :] = 1  # the two files differ
        np.savez(tmp_path / folder / "dsprites" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
                 imgs=imgs, latents_classes=classes)
        ds = get_dataset("dsprites_full", source="file", data_dir=tmp_path / folder)
        sampler = D.data_sampler(ds, CPU, "on")
        grids.append(sampler.grid)
        a = ds.sample_observations(9, np.random.default_rng(1))
        assert torch.equal(torch.from_numpy(a), sampler.sample_observations(9, np.random.default_rng(1)))
    assert grids[0] is not grids[1]


def test_modes():
    ds = reduced("dsprites_full")
    assert D.data_sampler(ds, CPU, "auto") is None and D.data_sampler(ds, CPU, "off") is None
    for data in (DummyData(), Squares(64, 3)):  # noise images; no grid_source at all
        with pytest.raises(UserError, match="no enumerable grid"):
            D.data_sampler(data, CPU, "on")
    with pytest.raises(UserError, match="data_on_device must be one of"):
        D.data_sampler(ds, CPU, "yes")


def test_a_grid_that_does_not_fit_stays_on_the_host(monkeypatch, caplog):
    monkeypatch.setattr(D, "free_bytes", lambda device: 1000)
    with pytest.raises(UserError, match="grid needs .* GiB, more than 50%"):
        D.data_sampler(reduced("dsprites_full"), CPU, "on")
    # auto on an accelerator: logged, and the host path (nothing is built, so no CUDA is needed)
    with caplog.at_level(logging.INFO, logger="benchmark.data.device"):
        assert D.data_sampler(reduced("dsprites_full"), torch.device("cuda"), "auto") is None
    assert "data stay on the host" in caplog.text


@pytest.mark.parametrize("buffered", [0, 1])
def test_skip_uniform_leaves_the_stream_where_uniform_does(buffered):
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    for r in (a, b):
        r.integers(5, size=buffered)  # may leave half a 64-bit word buffered
    a.uniform(0, 1, 777)
    seed = D.skip_uniform(b, 777)
    assert 0 <= seed < 2**63
    assert a.bit_generator.state == b.bit_generator.state
    assert np.array_equal(a.integers(1000, size=20), b.integers(1000, size=20))
    assert D.skip_uniform(np.random.RandomState(0), 10) is None


def test_device_generator_noise_has_the_right_distribution_and_is_reproducible():
    ds = get_dataset("noisy_dsprites")
    ds.factor_sizes = SMALL_SPRITES
    grid = D.device_grid(ds, CPU)
    sampler = D.DeviceSampler(ds, grid, noise="generator")
    host, dev = np.random.default_rng(11), np.random.default_rng(11)
    a = torch.from_numpy(ds.sample_observations(64, host))
    b = sampler.sample_observations(64, dev)
    assert host.bit_generator.state == dev.bit_generator.state  # the next batch's factors agree
    assert sampler.provenance["noise"] == "generator"
    sprite = a == 1  # sprite pixels are 1 in both; the rest is U(0, 1)
    assert torch.equal(b[sprite], a[sprite])
    background = b[a < 1]
    n = background.numel()
    assert abs(float(background.mean()) - 0.5) < 5 * (1 / 12 / n) ** 0.5
    assert abs(float(background.var()) - 1 / 12) < 5 * (1 / 180 / n) ** 0.5  # Var of U(0,1)^2's: 1/180
    assert float(background.min()) >= 0 and float(background.max()) < 1
    assert not torch.equal(a, b)  # identical only in distribution
    again = D.DeviceSampler(ds, grid, noise="generator").sample_observations(64, np.random.default_rng(11))
    assert torch.equal(again, b)
    other = D.DeviceSampler(ds, grid, noise="generator").sample_observations(64, np.random.default_rng(12))
    assert not torch.equal(other, b)
    # a random state that cannot be advanced draws the host's numpy noise: bitwise
    rs = sampler.sample_observations(8, np.random.RandomState(4))
    assert torch.equal(rs, torch.from_numpy(ds.sample_observations(8, np.random.RandomState(4))))


def test_grid_source_contract_for_a_custom_dataset():
    src = GridSource(None, 3, (1, 2, 4), "bits", lambda a, b: np.zeros((b - a, 1), np.uint8))
    grid = D.DeviceGrid(src, CPU)
    assert grid.gather(np.array([2, 0])).shape == (2, 1, 2, 4)
    with pytest.raises(ValueError, match="encoding"):
        GridSource(None, 1, (1, 1, 1), "png", lambda a, b: None)


# --------------------------------------------------------------------------- training

CFG = dict(steps=3, batch_size=8, eval_batches=1, log_every=2)


def assert_same_weights(a, b):
    wa, wb = a.system.state_dict(), b.system.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.summary == b.summary


def test_training_with_the_data_on_the_device_is_bitwise_training_without():
    ds = reduced("color_dsprites")
    on, off = (TrainingSettings(**CFG, data_on_device=m) for m in ("on", "off"))
    sweep, seeds = [{"beta": 1.0}, {"beta": 16.0}], [0, 1]
    alone = [train("beta_vae", p, ds, s, off) for p, s in zip(sweep, seeds, strict=True)]
    assert alone[0].data_stream is None
    a = train("beta_vae", sweep[0], ds, seeds[0], on)
    assert_same_weights(a, alone[0])
    assert a.data_stream == {"on_device": True, "encoding": "bits", "grid_bytes": 480 * 512}
    packed = train_pack("beta_vae", sweep, ds, seeds, on, strategy="loop")
    for p, b in zip(packed, alone, strict=True):
        assert_same_weights(p, b)
        assert p.data_stream["on_device"]


def test_data_on_device_setting():
    assert "data_on_device" in NOT_IN_MODEL_ID  # an execution choice: not in model or job ids
    assert TrainingSettings(data_on_device=True).data_on_device == "on"  # YAML's bare on / off
    assert TrainingSettings(data_on_device=False).data_on_device == "off"
    assert TrainingSettings().data_on_device == "auto"
    with pytest.raises(UserError, match="data_on_device"):
        TrainingSettings(data_on_device="gpu")


def test_the_benchmark_table_runs_in_dry_mode():
    """bench/data_speed.py --device, as bench/gpu_check.sh --device cpu runs it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "bench" / "data_speed.py"), "--device", "cpu", "--pack", "2",
                           "--seconds", "0.05", "--small-grid"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    for row in ("dsprites_full", "color_dsprites", "noisy_dsprites (generator noise)", "scream_dsprites",
                "load average after"):
        assert row in done.stdout
