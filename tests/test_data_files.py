"""Loaders of the real files, on small files written in the exact real formats."""

import numpy as np
import pytest

from benchmark.data import cars3d, dsprites, get_dataset, mpi3d, shapes3d, smallnorb
from benchmark.data import dsprites_render as R
from benchmark.data.readers import read_norb_matrix, write_norb_matrix
from benchmark.data.state_space import StateSpace
from benchmark.errors import UserError


@pytest.fixture(autouse=True)
def _no_cache_env(monkeypatch):
    monkeypatch.delenv("BENCHMARK_CACHE", raising=False)
    monkeypatch.delenv("BENCHMARK_DATA", raising=False)
    monkeypatch.delenv("DISENTANGLEMENT_LIB_DATA", raising=False)


def write_dsprites(root, sizes=(1, 3, 2, 2, 2, 2), corrupt_value=False):
    space = StateSpace(sizes)
    classes = space.all_factors()
    imgs = R.render_classes(classes[:, 1:] * [1, 5, 7, 31, 31])  # extreme scale/orientation/position classes
    if corrupt_value:
        imgs[0, 0, 0] = 255
    meta = np.array({"latents_sizes": np.array(sizes)}, dtype=object)
    (root / "dsprites").mkdir(parents=True, exist_ok=True)
    path = root / dsprites.DSPRITES_FILE.relpath
    np.savez_compressed(path, imgs=imgs, latents_classes=classes, latents_values=classes.astype(float),
                        metadata=meta)
    return path, imgs


def test_dsprites_npz_round_trip_and_cache(tmp_path):
    _, imgs = write_dsprites(tmp_path)
    ds = get_dataset("dsprites", source="file", data_dir=tmp_path)
    assert ds.source == "file" and ds.factor_sizes == (3, 2, 2, 2, 2) and ds.deterministic
    f = ds.all_factors()
    assert np.array_equal(ds.sample_observations_from_factors(f, 0)[:, 0], imgs)
    cached = tmp_path / ".benchmark_cache" / "dsprites-v1"
    assert (cached / "images.npy").is_file() and (cached / "meta.json").is_file()
    # a second open uses the memory map
    ds2 = get_dataset("color_dsprites", source="file", data_dir=tmp_path)
    assert ds2.source == "file" and ds2.observation_shape == (3, 64, 64)
    x = ds2.sample_observations_from_factors(f[:4], np.random.RandomState(0))
    assert np.allclose(x.max(1) > 0, imgs[:4] > 0)


def test_dsprites_bad_values_leave_no_cache(tmp_path):
    write_dsprites(tmp_path, corrupt_value=True)
    with pytest.raises(UserError, match="values above 1"):
        get_dataset("dsprites", source="file", data_dir=tmp_path)
    assert not list((tmp_path / ".benchmark_cache").iterdir())


def test_dsprites_corrupt_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz under the data directory"):
        get_dataset("dsprites", source="file", data_dir=tmp_path)
    path, _ = write_dsprites(tmp_path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(UserError, match="dsprites_ndarray"):
        get_dataset("dsprites", source="file", data_dir=tmp_path)


def test_dsprites_wrong_order_is_rejected(tmp_path):
    path, imgs = write_dsprites(tmp_path)
    with np.load(path) as z:
        classes = z["latents_classes"][::-1]
    np.savez(path, imgs=imgs, latents_classes=classes)
    with pytest.raises(UserError, match="original factor order"):
        get_dataset("dsprites", source="file", data_dir=tmp_path)


def test_file_source_needs_a_data_dir():
    with pytest.raises(UserError, match="data directory"):
        get_dataset("shapes3d", source="file")


def test_shapes3d_dlib_npz(tmp_path):
    grid = (2, 2, 1, 2, 1, 3)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (*grid, 64, 64, 3), dtype=np.uint8)
    (tmp_path / "3dshapes").mkdir()
    np.savez(tmp_path / shapes3d.SHAPES3D_FILE.alternatives[0].relpath, images=images, labels=np.zeros((*grid, 6)))
    ds = get_dataset("shapes3d", source="file", data_dir=tmp_path)
    assert ds.factor_sizes == grid and ds.observation_shape == (3, 64, 64)
    assert ds.factor_names == shapes3d.FACTOR_NAMES
    f = np.array([[1, 0, 0, 1, 0, 2], [0, 1, 0, 0, 0, 1]])
    x = ds.sample_observations_from_factors(f, 0)
    for i, row in enumerate(f):
        assert np.allclose(x[i], images[tuple(row)].transpose(2, 0, 1) / 255.0)


def test_shapes3d_h5(tmp_path):
    h5py = pytest.importorskip("h5py")
    grid = (2, 1, 1, 2, 2, 3)
    n = int(np.prod(grid))
    space = StateSpace(grid)
    labels = space.all_factors() * [0.1, 0.1, 0.1, 0.0714, 1, 4.2857] + 1e-9
    images = np.random.default_rng(1).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    (tmp_path / "3dshapes").mkdir()
    with h5py.File(tmp_path / "3dshapes" / "3dshapes.h5", "w") as f:
        f["images"], f["labels"] = images, labels
    ds = get_dataset("shapes3d", source="file", data_dir=tmp_path)
    assert ds.factor_sizes == grid
    x = ds.sample_observations_from_factors(space.index_to_factors([5]), 0)
    assert np.allclose(x[0], images[5].transpose(2, 0, 1) / 255.0)


def test_h5_without_h5py_is_a_user_error(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "h5py":
            raise ImportError("no h5py")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    (tmp_path / "3dshapes").mkdir()
    (tmp_path / "3dshapes" / "3dshapes.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(UserError, match="needs h5py"):
        get_dataset("shapes3d", source="file", data_dir=tmp_path)


def test_mpi3d_sizes_inferred_from_length(tmp_path, monkeypatch):
    monkeypatch.setitem(mpi3d.MPI3D_SIZES, 72, (2, 2, 2, 1, 1, 3, 3))
    images = np.random.default_rng(2).integers(0, 256, (72, 64, 64, 3), dtype=np.uint8)
    (tmp_path / "mpi3d_toy").mkdir()
    np.savez(tmp_path / "mpi3d_toy" / "mpi3d_toy.npz", images=images)
    ds = get_dataset("mpi3d_toy", source="file", data_dir=tmp_path)
    assert ds.name == "mpi3d_toy" and ds.factor_sizes == (2, 2, 2, 1, 1, 3, 3)
    f = ds.index_to_factors([0, 13, 71])
    assert np.allclose(ds.sample_observations_from_factors(f, 0), images[[0, 13, 71]].transpose(0, 3, 1, 2) / 255)
    # an unknown length is refused
    np.savez(tmp_path / "mpi3d_toy" / "mpi3d_toy.npz", images=images[:70])
    with pytest.raises(UserError, match="70 images"):
        get_dataset("mpi3d_toy", source="file", data_dir=tmp_path)
    with pytest.raises(UserError, match="mpi3d_real/mpi3d_real.npz"):
        get_dataset("mpi3d_real", source="file", data_dir=tmp_path)


def test_norb_matrix_format_round_trip(tmp_path):
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    write_norb_matrix(tmp_path / "m.mat", a)
    raw = (tmp_path / "m.mat").read_bytes()
    assert np.frombuffer(raw[:4], "<i4")[0] == 0x1E3D4C54
    assert np.array_equal(read_norb_matrix(tmp_path / "m.mat"), a)
    v = np.arange(5, dtype=np.int32)  # 1-d: dims are padded to 3 ints
    write_norb_matrix(tmp_path / "v.mat", v)
    assert len((tmp_path / "v.mat").read_bytes()) == 8 + 12 + 20
    assert np.array_equal(read_norb_matrix(tmp_path / "v.mat"), v)
    (tmp_path / "bad.mat").write_bytes(raw[:-3])
    with pytest.raises(UserError, match="truncated"):
        read_norb_matrix(tmp_path / "bad.mat")


def write_norb(root):
    """Categories 2, instances 2 (one per file), elevation 2, azimuth 2 (stored 0, 2), lighting 2."""
    (root / "small_norb").mkdir()
    space = StateSpace((2, 2, 2, 2, 2))
    for inst, chunk in enumerate(smallnorb.NORB_CHUNKS):
        f = space.all_factors()
        f = f[f[:, 1] == inst]
        code = space.factors_to_index(f)
        dat = np.broadcast_to((code * 7)[:, None, None, None], (len(f), 2, 96, 96)).astype(np.uint8)
        info = np.column_stack([f[:, 1], f[:, 2], f[:, 3] * 2, f[:, 4]]).astype(np.int32)
        for kind, arr in (("dat", dat), ("cat", f[:, 0].astype(np.int32)), ("info", info)):
            write_norb_matrix(root / smallnorb.NORB_TEMPLATE.format(chunk, kind), arr)
    return space


def test_smallnorb_lookup_and_random_instance(tmp_path):
    space = write_norb(tmp_path)
    ds = get_dataset("smallnorb", source="file", data_dir=tmp_path)
    assert ds.factor_names == ("category", "elevation", "azimuth", "lighting")
    assert ds.factor_sizes == (2, 2, 2, 2) and not ds.deterministic
    f = np.repeat(ds.all_factors(), 20, axis=0)
    x = ds.sample_observations_from_factors(f, 0)
    assert x.shape == (len(f), 1, 64, 64)
    code = np.rint(x[:, 0, 32, 32] * 255 / 7).astype(int)
    full = space.index_to_factors(code)
    assert np.array_equal(full[:, [0, 2, 3, 4]], f)
    assert set(full[:, 1]) == {0, 1}  # the instance is drawn at random


def test_smallnorb_missing_file_named(tmp_path):
    write_norb(tmp_path)
    victim = tmp_path / smallnorb.NORB_TEMPLATE.format(smallnorb.NORB_CHUNKS[1], "info")
    victim.unlink()
    with pytest.raises(UserError, match="testing-info.mat under the data directory"):
        get_dataset("smallnorb", source="file", data_dir=tmp_path)


def test_cars3d_mat_files(tmp_path):
    import scipy.io

    (tmp_path / "cars").mkdir()
    for obj in range(2):
        im = np.zeros((128, 128, 3, 24, 4), dtype=np.uint8)
        im[:] = (np.arange(24)[:, None] * 4 + np.arange(4)[None, :] + 100 * obj).astype(np.uint8)
        scipy.io.savemat(tmp_path / "cars" / f"car_{obj:03d}_mesh.mat", {"im": im, "mask": im[:, :, 0] > 0})
    ds = cars3d.load_cars3d(tmp_path, expected_objects=None)
    assert ds.factor_names == ("elevation", "azimuth", "object") and ds.factor_sizes == (4, 24, 2)
    f = np.array([[0, 0, 0], [3, 5, 1], [1, 23, 0]])
    x = ds.sample_observations_from_factors(f, 0)
    assert x.shape == (3, 3, 64, 64)
    assert np.allclose(x[:, 0, 10, 10] * 255, f[:, 1] * 4 + f[:, 0] + 100 * f[:, 2], atol=1e-3)
    with pytest.raises(UserError, match="expected 183"):
        get_dataset("cars3d", source="file", data_dir=tmp_path)
