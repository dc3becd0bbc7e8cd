import numpy as np
from PIL import Image

from benchmark.data import DATASETS, canonical_name
from benchmark.data.catalog import describe_datasets, write_sample_grid


def test_describe_lists_every_dataset(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCHMARK_DATA", raising=False)
    monkeypatch.delenv("DISENTANGLEMENT_LIB_DATA", raising=False)
    (tmp_path / "mpi3d_toy").mkdir()
    np.savez(tmp_path / "mpi3d_toy" / "mpi3d_toy.npz", images=np.zeros((1, 64, 64, 3), np.uint8))
    rows = {r["name"]: r for r in describe_datasets(tmp_path)}
    assert set(rows) == {canonical_name(n) for n in DATASETS}
    assert rows["dsprites_full"]["factor_sizes"] == [3, 6, 40, 32, 32]
    assert rows["dsprites_full"]["sources"] == ["procedural", "file"]
    assert rows["smallnorb"]["sources"] == ["file"] and rows["smallnorb"]["observation_shape"] == [1, 64, 64]
    assert rows["mpi3d_toy"]["files_present"] and not rows["mpi3d_real"]["files_present"]
    assert "mpi3d_real/mpi3d_real.npz" in rows["mpi3d_real"]["expected_files"]
    assert rows["identity"]["sources"] == ["procedural"]


def test_sample_grid_png(tmp_path):
    out = write_sample_grid("dsprites", tmp_path / "g" / "d.png", n=16, seed=1)
    img = np.asarray(Image.open(out))
    assert img.ndim == 3 and img.shape[2] == 3 and img.max() == 255
    again = write_sample_grid("dsprites", tmp_path / "d2.png", n=16, seed=1)
    assert np.array_equal(np.asarray(Image.open(again)), img)
    write_sample_grid("identity", tmp_path / "i.png", n=5)
    write_sample_grid("color_dsprites", tmp_path / "c.png", n=3)
