"""One place per dataset: everything the registry and the catalog say comes from the descriptor."""

import ast
from pathlib import Path

import numpy as np
import pytest

import benchmark.data as data_pkg
from benchmark.data import (
    DATASETS,
    DataFile,
    DatasetInfo,
    available_sources,
    canonical_name,
    get_dataset,
    registry,
)
from benchmark.data.catalog import describe_datasets
from benchmark.data.files import FileData
from benchmark.errors import UserError


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for var in ("BENCHMARK_DATA", "DISENTANGLEMENT_LIB_DATA", "BENCHMARK_CACHE"):
        monkeypatch.delenv(var, raising=False)


def touch_files(info: DatasetInfo, root: Path) -> None:
    """Empty files at every required path of ``info`` (a glob gets one matching name)."""
    for f in info.files:
        if not f.optional:
            path = root / f.relpath.replace("*", "x")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()


def test_every_row_comes_from_its_descriptor(tmp_path):
    rows = {r["name"]: r for r in describe_datasets(tmp_path)}
    assert list(rows) == list(registry.DESCRIPTORS)
    for name, info in registry.DESCRIPTORS.items():
        row = rows[name]
        names, sizes, shape = info.grid()
        assert row == {"name": info.name, "description": info.description, "factor_names": list(names),
                       "factor_sizes": list(sizes), "observation_shape": list(shape), "sources": list(info.sources),
                       "files_present": False, "expected_files": info.expected_files()}
        assert available_sources(name) == info.sources and info.sources
        assert all(canonical_name(alias) == name for alias in info.aliases)
        assert len(names) == len(sizes) > 0 and len(shape) == 3
        # a file source needs its files declared; the listing shows each one
        assert bool(info.files) == (info.file is not None)
        listed = [e.split(" (")[0] for e in info.expected_files()]
        assert all(f.relpath in listed for f in info.files)
        assert set(listed) <= {g.relpath for f in info.files for g in (f, *f.alternatives)}
    assert set(DATASETS) == set(registry.DESCRIPTORS) | set(registry.ALIASES)


def test_files_present_follows_the_records(tmp_path):
    for info in registry.DESCRIPTORS.values():
        if info.file is None:
            continue
        root = tmp_path / info.name
        root.mkdir()
        assert not info.files_present(root)
        touch_files(info, root)
        assert info.files_present(root), info.name
        assert {r["name"]: r for r in describe_datasets(root)}[info.name]["files_present"]


def test_data_file_locations(tmp_path):
    f = DataFile("sub/a.npz", alternatives=(DataFile("sub/a.h5", shown=False), DataFile("b.npz", note="either")))
    assert f.locate(tmp_path) is None
    with pytest.raises(UserError, match="put sub/a.npz under the data directory"):
        f.find(tmp_path, "the A file")
    (tmp_path / "a.h5").touch()  # an alternative, directly in the data directory
    assert f.find(tmp_path, "the A file") == tmp_path / "a.h5"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.npz").touch()
    assert f.locate(tmp_path) == tmp_path / "sub" / "a.npz"
    info = DatasetInfo("x", "x", file=lambda d: None, files=(f, DataFile("opt.jpg", optional=True, note="optional")))
    assert info.expected_files() == ["sub/a.npz", "b.npz (either)", "opt.jpg (optional)"]
    assert info.files_present(tmp_path) and not info.files_present(None)
    glob = DataFile("many/*.mat")
    assert glob.locate(tmp_path) is None
    (tmp_path / "many").mkdir()
    (tmp_path / "many" / "z.mat").touch()
    assert glob.locate(tmp_path) == tmp_path / "many" / "z.mat"


def test_a_new_file_dataset_is_one_descriptor(tmp_path, monkeypatch):
    """A throwaway file-only dataset: its descriptor alone makes it listed, checked and loadable."""
    grid = DataFile("toy/grid.npy")

    def load(data_dir: Path) -> FileData:
        images = np.load(grid.find(data_dir, "the toy file"), mmap_mode="r")
        return FileData("toy_files", images, ("a", "b"), (2, 3), provenance={"file": "grid.npy"})

    info = DatasetInfo("toy_files", "a throwaway file dataset", file=load, files=(grid,), aliases=("toy",),
                       factor_names=("a", "b"), factor_sizes=(2, 3), observation_shape=(1, 4, 4))
    monkeypatch.setitem(registry.DESCRIPTORS, info.name, info)
    monkeypatch.setitem(registry.ALIASES, "toy", info.name)

    row = {r["name"]: r for r in describe_datasets(tmp_path)}["toy_files"]
    assert row == {"name": "toy_files", "description": "a throwaway file dataset", "factor_names": ["a", "b"],
                   "factor_sizes": [2, 3], "observation_shape": [1, 4, 4], "sources": ["file"],
                   "files_present": False, "expected_files": ["toy/grid.npy"]}
    with pytest.raises(UserError, match="the toy file not found: put toy/grid.npy under the data directory"):
        get_dataset("toy", source="file", data_dir=tmp_path)
    with pytest.raises(UserError, match="'toy_files' has no procedural source; available: file"):
        get_dataset("toy_files")

    (tmp_path / "toy").mkdir()
    images = np.arange(6 * 16, dtype=np.uint8).reshape(6, 1, 4, 4)
    np.save(tmp_path / "toy" / "grid.npy", images)
    assert {r["name"]: r for r in describe_datasets(tmp_path)}["toy_files"]["files_present"]
    ds = get_dataset("toy", source="file", data_dir=tmp_path)
    assert ds.factor_sizes == (2, 3) and ds.source == "file"
    x = ds.sample_observations_from_factors(np.array([[1, 2]]), 0)
    assert np.array_equal(x[0], images[5] / np.float32(255))


def test_no_import_cycle_inside_the_data_package():
    """No module of benchmark/data imports (even lazily, inside a function) one that imports it back."""
    folder = Path(data_pkg.__file__).parent
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__"}
    deps: dict[str, set[str]] = {}
    for m in modules:
        found = set()
        for node in ast.walk(ast.parse((folder / f"{m}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "benchmark.data":
                found |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("benchmark.data."):
                found.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("benchmark.data.")}
        deps[m] = found & modules

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(d == goal or (d not in seen and reaches(d, goal, seen | {d})) for d in deps[start])

    assert not [m for m in modules if reaches(m, m, {m})]
