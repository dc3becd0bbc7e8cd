"""`benchmark data download` against a local HTTP server (nothing here contacts the internet).

The server serves small files in each dataset's real format at the published files' mirror paths;
the tests swap the registry's descriptors for ones whose published files have those small files'
sizes and digests.
"""

import dataclasses
import gzip
import hashlib
import http.server
import io
import re
import tarfile
import threading
import urllib.parse

import numpy as np
import pytest
from test_data_files import write_dsprites, write_norb

from benchmark.cli import main
from benchmark.data import (
    cars3d,
    download,
    dsprites,
    get_dataset,
    info,
    mpi3d,
    registry,
    shapes3d,
    smallnorb,
    sources,
)
from benchmark.data.state_space import StateSpace
from benchmark.errors import UserError

CARS = 2  # cars in the test archive (the real one has cars3d.CARS_OBJECTS)


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch):
    for var in ("BENCHMARK_CACHE", "BENCHMARK_DATA", "DISENTANGLEMENT_LIB_DATA", download.URL_BASE_ENV,
                "http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setattr(download.time, "sleep", lambda s: None)


class Server:
    """http.server on 127.0.0.1 serving ``files`` (mirror path -> bytes), with Range support.

    Switches: ``cut_at`` (close the connection once the body reaches this byte of the file; with
    ``cut_once`` only the first time), ``ignore_range`` (answer 200 with the whole file), ``missing``
    (paths answered with 404). ``requests`` logs (path, Range header).
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut_at: int | None = None
        self.cut_once = False
        self.ignore_range = False
        self.missing: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        state = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = urllib.parse.unquote(self.path.lstrip("/"))
                rng = self.headers.get("Range")
                state.requests.append((path, rng))
                path = path.removeprefix("mirror/")
                if path in state.missing or path not in state.files:
                    self.send_error(404)
                    return
                body = state.files[path]
                start = 0
                if rng and not state.ignore_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                end = len(body)
                if state.cut_at is not None and start < state.cut_at:
                    end = state.cut_at
                    if state.cut_once:
                        state.cut_at = None
                self.wfile.write(body[start:end])
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/mirror"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def paths_requested(self) -> list[str]:
        return [p for p, _ in self.requests]


@pytest.fixture
def server():
    s = Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _published_files(tmp_path) -> dict[str, bytes]:
    """Small files in the real formats, keyed by the real records' mirror paths."""
    import h5py
    import scipy.io
    from PIL import Image

    pub = tmp_path / "publisher"
    out = {}
    path, _ = write_dsprites(pub)
    out[dsprites.DSPRITES_FILE.mirror_path] = path.read_bytes()
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (100, 120, 3), dtype=np.uint8)).save(buf, "JPEG")
    out[dsprites.SCREAM_FILE.mirror_path] = buf.getvalue()
    grid = (2, 1, 1, 2, 2, 3)
    labels = StateSpace(grid).all_factors() * [0.1, 0.1, 0.1, 0.0714, 1, 4.2857]
    images = np.random.default_rng(1).integers(0, 256, (int(np.prod(grid)), 64, 64, 3), dtype=np.uint8)
    (pub / "3dshapes").mkdir()
    with h5py.File(pub / "3dshapes.h5", "w") as f:
        f["images"], f["labels"] = images, labels
    out[shapes3d.SHAPES3D_FILE.mirror_path] = (pub / "3dshapes.h5").read_bytes()
    write_norb(pub)
    for f in smallnorb.NORB_FILES:
        out[f.mirror_path] = gzip.compress((pub / f.relpath).read_bytes())
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w:gz") as tar:
        mats = {f"data/cars/car_{obj:03d}_mesh.mat": obj for obj in range(CARS)}
        for name, obj in [*mats.items(), ("data/sprites/other.mat", 9)]:
            im = np.full((128, 128, 3, 24, 4), 20 * obj, dtype=np.uint8)
            mat = io.BytesIO()
            scipy.io.savemat(mat, {"im": im}, do_compression=True)
            info = tarfile.TarInfo(name)
            info.size = len(mat.getvalue())
            tar.addfile(info, io.BytesIO(mat.getvalue()))
        listing = b"\n".join(n.split("/")[-1][:-4].encode() for n in mats)
        info = tarfile.TarInfo("data/cars/list.txt")
        info.size = len(listing)
        tar.addfile(info, io.BytesIO(listing))
    out[cars3d.CARS_FILES.mirror_path] = tar_buf.getvalue()
    mpi = np.random.default_rng(2).integers(0, 256, (72, 64, 64, 3), dtype=np.uint8)
    for mode in ("toy", "realistic", "real"):
        npz = io.BytesIO()
        np.savez(npz, images=mpi)
        out[f"mpi3d_{mode}/mpi3d_{mode}.npz"] = npz.getvalue()
    return out


def _republish(monkeypatch, name: str, per_file=None, **changes) -> None:
    """Swap the descriptor ``name`` for one whose published files have ``changes`` (``RemoteFile``
    fields) and ``per_file(data_file)`` (a dict of them)."""
    desc = registry.DESCRIPTORS[name]

    def change(f):
        new = {**changes, **(per_file(f) if per_file else {})}
        return dataclasses.replace(f, remote=dataclasses.replace(f.remote, **new))

    files = tuple(change(f) if f.remote is not None else f for f in desc.files)
    monkeypatch.setitem(registry.DESCRIPTORS, name, dataclasses.replace(desc, files=files))


@pytest.fixture
def mirror(tmp_path, server, monkeypatch):
    """The server holding every dataset's small files, and the descriptors describing them."""
    server.files = _published_files(tmp_path)

    def small(f):
        body = server.files[f.mirror_path]
        return {"size": len(body), "sha256": _sha(body), "count": CARS if f.remote.unpack == "tar" else f.remote.count}

    for name in sources.downloadable():
        _republish(monkeypatch, name, small, md5=None, check=None)
    monkeypatch.setitem(mpi3d.MPI3D_SIZES, 72, (2, 2, 2, 1, 1, 3, 3))
    return server


def _download(data_dir, server, *names, extra=()):
    return main(["data", "download", *names, "--data-dir", str(data_dir), "--url-base", server.url,
                 "--retries", "0", *extra])


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def _leftovers(data_dir) -> list[str]:
    return sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*")
                  if p.name.endswith((".part", ".unpacking")) or ".unpacking" in p.parts)


def test_download_everything_then_every_loader_opens_it(tmp_path, mirror, capsys, monkeypatch):
    data = tmp_path / "data"
    assert _download(data, mirror, "all") == 0
    assert set(mirror.paths_requested()) == {f"mirror/{p}" for p in mirror.files}
    assert _leftovers(data) == []
    # the loaders' layout
    assert (data / dsprites.DSPRITES_FILE.relpath).is_file() and (data / "scream" / "scream.jpg").is_file()
    assert (data / shapes3d.SHAPES3D_FILE.relpath).read_bytes() == mirror.files[shapes3d.SHAPES3D_FILE.mirror_path]
    for f in smallnorb.NORB_FILES:
        assert (data / f.relpath).read_bytes() == gzip.decompress(mirror.files[f.mirror_path])
    assert sorted(p.name for p in (data / "cars").iterdir()) == ["car_000_mesh.mat", "car_001_mesh.mat"]
    # every dataset opens from the downloaded files (Cars3D with the test archive's 2 cars)
    monkeypatch.setattr(cars3d.load_cars3d, "__defaults__", (CARS,))
    for name in sources.downloadable():
        ds = get_dataset(name, source="file", data_dir=data)
        assert ds.source == "file"
        x = ds.sample_observations(2, np.random.default_rng(0))
        assert x.shape[0] == 2 and 0 <= x.min() and x.max() <= 1
    assert get_dataset("scream_dsprites", source="file", data_dir=data).provenance["scream_texture"] == "file:scream.jpg"
    assert get_dataset("cars3d", source="file", data_dir=data).factor_sizes == (4, 24, CARS)
    # a second run downloads nothing, and `benchmark datasets` sees every file present
    capsys.readouterr()
    n = len(mirror.requests)
    assert _download(data, mirror, "all") == 0
    assert len(mirror.requests) == n
    assert "present (verified earlier)" in capsys.readouterr().err
    assert main(["datasets", "--data-dir", str(data)]) == 0
    listing = capsys.readouterr().out
    assert "missing" not in listing and "corrupt" not in listing
    assert re.search(r"^smallnorb .* present$", listing, re.M)


def test_cut_connection_keeps_the_part_and_the_next_run_resumes(tmp_path, mirror, capsys):
    data = tmp_path / "data"
    body = mirror.files[shapes3d.SHAPES3D_FILE.mirror_path]
    mirror.cut_at = len(body) // 2
    assert _download(data, mirror, "shapes3d") == 1
    errors = _errors(capsys)
    assert len(errors) == 1 and f"connection closed after {len(body) // 2} of {len(body)} bytes" in errors[0]
    target = data / shapes3d.SHAPES3D_FILE.relpath
    part = data / f"{shapes3d.SHAPES3D_FILE.mirror_path}.part"
    assert not target.exists() and part.stat().st_size == len(body) // 2
    with pytest.raises(UserError, match="not found"):
        get_dataset("shapes3d", source="file", data_dir=data)
    assert main(["datasets", "--data-dir", str(data)]) == 0
    assert re.search(r"^shapes3d .* missing$", capsys.readouterr().out, re.M)
    mirror.cut_at = None
    assert _download(data, mirror, "shapes3d") == 0
    assert mirror.requests[-1][1] == f"bytes={len(body) // 2}-"
    assert target.read_bytes() == body and not part.exists()


def test_a_cut_is_resumed_within_the_run_when_retries_allow(tmp_path, mirror):
    data = tmp_path / "data"
    body = mirror.files[dsprites.DSPRITES_FILE.mirror_path]
    mirror.cut_at, mirror.cut_once = 1000, True
    assert _download(data, mirror, "dsprites", extra=("--retries", "1")) == 0
    assert [r for _, r in mirror.requests] == [None, "bytes=1000-"]
    assert (data / dsprites.DSPRITES_FILE.relpath).read_bytes() == body


def test_server_without_range_support_restarts_cleanly(tmp_path, mirror):
    data = tmp_path / "data"
    body = mirror.files[shapes3d.SHAPES3D_FILE.mirror_path]
    mirror.cut_at = 5000
    assert _download(data, mirror, "shapes3d") == 1
    mirror.cut_at, mirror.ignore_range = None, True
    assert _download(data, mirror, "shapes3d") == 0
    assert mirror.requests[-1][1] == "bytes=5000-"  # asked to resume, got the whole file with 200
    assert (data / shapes3d.SHAPES3D_FILE.relpath).read_bytes() == body
    assert _leftovers(data) == []


def test_wrong_checksum_is_one_line_and_deletes_the_download(tmp_path, mirror, capsys, monkeypatch):
    data = tmp_path / "data"
    (f,) = registry.DESCRIPTORS["dsprites_full"].remote_files()
    _republish(monkeypatch, "dsprites_full", sha256="0" * 64)
    assert _download(data, mirror, "dsprites_full") == 1
    errors = _errors(capsys)
    assert errors == [f"error: {f.mirror_path}: SHA-256 mismatch: expected {'0' * 64}, got {f.remote.sha256}"]
    assert list(data.rglob("*.npz*")) == []
    assert sources.dataset_status("dsprites_full", data) == "missing"


def test_failed_content_check_deletes_the_download(tmp_path, mirror, capsys, monkeypatch):
    data = tmp_path / "data"
    _republish(monkeypatch, "mpi3d_toy", sha256=None, check=info.npz_array("images", (1036800, 64, 64, 3), "uint8"))
    assert _download(data, mirror, "mpi3d_toy") == 1
    (error,) = _errors(capsys)
    assert "mpi3d_toy/mpi3d_toy.npz: not the published file: 'images' is (72, 64, 64, 3)" in error
    assert list(data.rglob("*.npz*")) == []


def test_404_is_one_line_and_leaves_nothing(tmp_path, mirror, capsys):
    data = tmp_path / "data"
    gone = smallnorb.NORB_FILES[1].mirror_path
    mirror.missing.add(gone)
    assert _download(data, mirror, "smallnorb") == 1
    errors = _errors(capsys)
    assert len(errors) == 1 and gone in errors[0] and "HTTP 404" in errors[0]
    assert not (data / smallnorb.NORB_FILES[1].relpath).exists() and _leftovers(data) == []
    assert sources.dataset_status("smallnorb", data) == "missing"
    with pytest.raises(UserError, match="training-cat.mat"):
        get_dataset("smallnorb", source="file", data_dir=data)


def test_ctrl_c_while_unpacking_leaves_nothing_a_loader_accepts(tmp_path, mirror, capsys, monkeypatch):
    data = tmp_path / "data"

    copy = download.shutil.copyfileobj

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(download.shutil, "copyfileobj", interrupted)
    assert _download(data, mirror, "cars3d") == 130
    assert not list((data / "cars").glob("*.mat")) and _leftovers(data) == [
        f"{cars3d.CARS_FILES.mirror_path}.part"]  # verified download kept; unpacking starts over
    monkeypatch.setattr(download.shutil, "copyfileobj", copy)
    n = len(mirror.requests)
    assert _download(data, mirror, "cars3d") == 0
    assert len(mirror.requests) == n  # the complete download was not fetched again
    assert len(list((data / "cars").glob("*.mat"))) == CARS and _leftovers(data) == []


def test_status_is_cheap_and_sees_damage(tmp_path, mirror, capsys):
    data = tmp_path / "data"
    assert _download(data, mirror, "smallnorb", "mpi3d_real") == 0
    assert sources.dataset_status("smallnorb", data) == "present"
    victim = data / smallnorb.NORB_FILES[0].relpath
    victim.write_bytes(victim.read_bytes()[:-10])
    assert sources.dataset_status("smallnorb", data) == "corrupt"
    capsys.readouterr()
    assert main(["datasets", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^smallnorb .* corrupt$", out, re.M) and re.search(r"^mpi3d_real .* present$", out, re.M)
    assert "to fetch the missing files: benchmark data download dsprites_full" in out
    assert "smallnorb" in out.splitlines()[-1] and out.splitlines()[-1].endswith(f"--data-dir {data}")
    # the next run fetches the damaged file again and only that one
    mirror.requests.clear()
    assert _download(data, mirror, "smallnorb") == 0
    assert mirror.paths_requested() == [f"mirror/{smallnorb.NORB_FILES[0].mirror_path}"]


def test_files_put_there_by_hand_are_verified_once_or_left_alone(tmp_path, mirror, capsys, monkeypatch):
    data = tmp_path / "data"
    (data / "3dshapes").mkdir(parents=True)
    (data / shapes3d.SHAPES3D_FILE.relpath).write_bytes(mirror.files[shapes3d.SHAPES3D_FILE.mirror_path])
    (data / "mpi3d_toy").mkdir()
    (data / "mpi3d_toy" / "mpi3d_toy.npz").write_bytes(b"the user's own file")
    _republish(monkeypatch, "mpi3d_toy", sha256=None, size=None)
    assert _download(data, mirror, "shapes3d", "mpi3d_toy") == 0
    err = capsys.readouterr().err
    assert "present (verified now by size + SHA-256)" in err and "left as is" in err
    assert mirror.requests == []
    assert (data / "mpi3d_toy" / "mpi3d_toy.npz").read_bytes() == b"the user's own file"


def test_for_spec_fetches_the_file_datasets_of_a_study(tmp_path, mirror, write_spec):
    data = tmp_path / "data"
    spec = write_spec({"study": "s", "datasets": [{"name": "dsprites", "source": "file"},
                                                  {"name": "shapes3d", "source": "procedural"},
                                                  {"name": "smallnorb", "source": "file"}],
                       "methods": {"beta_vae": {"beta": 1}}, "seeds": [0]})
    assert _download(data, mirror, extra=("--for-spec", str(spec))) == 0
    assert sorted({p.split("/")[1] for p in mirror.paths_requested()}) == ["dsprites", "small_norb"]


def test_run_error_names_the_download_command(tmp_path, write_spec, capsys):
    spec = write_spec({"study": "s", "datasets": [{"name": "smallnorb", "source": "file"}],
                       "methods": {"beta_vae": {"beta": 1}}, "seeds": [0]})
    data = tmp_path / "data"
    data.mkdir()
    assert main(["run", str(spec), "--data-dir", str(data), "--results", str(tmp_path / "r")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(f"; download it with: benchmark data download --for-spec {spec} --data-dir {data}")
    assert main(["run", str(spec), "--results", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"--for-spec {spec} --data-dir DIR")


@pytest.mark.parametrize("argv, message", [
    (["data", "download"], "name the datasets"),
    (["data", "download", "nope", "--data-dir", "D"], "unknown dataset 'nope'"),
    (["data", "download", "identity", "--data-dir", "D"], "has no files to download"),
    (["data", "download", "cars3d"], "pass --data-dir or set $BENCHMARK_DATA"),
    (["data", "download", "cars3d", "--data-dir", "D", "--url-base", "ftp://x"], "not an http"),
])
def test_bad_input_is_one_line_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert message in line
    assert not (tmp_path / "D").exists()


def test_url_base_env_and_the_real_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(download.URL_BASE_ENV, "https://mirror.example/data/")
    assert main(["data", "download", "smallnorb", "cars3d", "--dry-run", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 7 and all(line.startswith("missing") for line in out)
    assert out[-1].endswith("cars/ (183 files)  <-  https://mirror.example/data/cars/nips2015-analogy-data.tar.gz")
    # every file of every dataset with a file source is published; each says where its facts come from
    assert sources.downloadable() == [n for n, d in registry.DESCRIPTORS.items() if d.file is not None]
    for desc in registry.DESCRIPTORS.values():
        assert desc.remote_files() == desc.files
        for f in desc.files:
            assert f.remote.source and (f.remote.sha256 or f.remote.md5 or f.remote.check)
            assert f.remote.unpack == "tar" or f.relpath == f.mirror_path.removesuffix(".gz") or f is dsprites.SCREAM_FILE
    assert dsprites.SCREAM_FILE.mirror_path == "scream/The_Scream.jpg"


def test_a_new_published_dataset_is_one_descriptor(tmp_path, server, monkeypatch, capsys):
    """A throwaway file dataset: its descriptor's DataFile alone says where to fetch it from."""
    body = np.arange(24, dtype=np.uint8).tobytes()
    grid = info.DataFile("toy/grid.bin", remote=info.RemoteFile(url="https://example.org/pub/grid-v1.bin",
                                                                size=len(body), sha256=_sha(body), source="test"))
    desc = info.DatasetInfo("toy_files", "a throwaway file dataset", file=lambda d: None, files=(grid,),
                            factor_names=("a",), factor_sizes=(2,), observation_shape=(1, 1, 1))
    monkeypatch.setitem(registry.DESCRIPTORS, desc.name, desc)
    assert grid.mirror_path == "toy/grid-v1.bin"
    server.files = {grid.mirror_path: body}
    data = tmp_path / "data"
    assert _download(data, server, "toy_files") == 0
    assert (data / "toy" / "grid.bin").read_bytes() == body
    assert sources.dataset_status("toy_files", data) == "present"
    with pytest.raises(ValueError, match="tar download fills a folder glob"):
        info.DataFile("toy/*.bin", remote=dataclasses.replace(grid.remote))
