"""Fetching files into the data directory: resumable HTTP, verification, unpacking, a marker per file.

This module knows no dataset: it fetches ``DataFile`` records that say where they are published
(``DataFile.remote``, an ``info.RemoteFile``, declared by each family next to its loader;
``sources.py`` collects them from the descriptors). For each file:

1. the download goes to ``<data dir>/<mirror_path>.part``; an interrupted one is resumed with an
   HTTP Range request on the next run (a server that answers a range with the whole file, status
   200, restarts it cleanly);
2. it is verified: size, then SHA-256 (or, where the publisher gives none, an MD5 that independent
   projects agree on), or a content check (keys, shapes, dtypes) where no digest is trustworthy; a
   mismatch deletes it;
3. it becomes the file the loaders read (renamed, gunzipped or taken out of a tar archive) only
   after that, so an interrupted run leaves nothing a loader accepts;
4. a marker ``<data dir>/.benchmark_downloads/<mirror_path>.json`` records the verified files and
   their sizes: a re-run compares sizes only, so big files are not hashed again.

HTTP is the standard library's (urllib honours ``http_proxy``/``https_proxy``/``no_proxy``); a URL
base (``--url-base`` / ``$BENCHMARK_DATA_URL_BASE``) fetches every file from a mirror holding the
downloads at their ``mirror_path``.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import http.client
import json
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from benchmark.data.info import DataFile
from benchmark.errors import UserError

URL_BASE_ENV = "BENCHMARK_DATA_URL_BASE"
MARKER_DIR = ".benchmark_downloads"
CHUNK = 1 << 20
TIMEOUT_S = 60
# Some hosts (Wikimedia) refuse requests without a descriptive User-Agent.
USER_AGENT = "disentanglement-benchmark/0.1 (dataset download; Python urllib)"


class DownloadError(Exception):
    """A file could not be fetched or did not verify: one line, exit code 1."""


class ConnectionLost(DownloadError):
    """The transfer stopped early; what arrived is kept for the next attempt to resume."""


# ------------------------------------------------------------------------------------------------
# Status without reading files


def target_path(f: DataFile) -> str:
    """What the download becomes, relative to the data directory: the file, or (a tar) the folder
    of the ``relpath`` glob."""
    return str(PurePosixPath(f.relpath).parent) if f.remote.unpack == "tar" else f.relpath


def marker_path(data_dir: Path, f: DataFile) -> Path:
    return data_dir / MARKER_DIR / f"{f.mirror_path}.json"


def _published(f: DataFile) -> dict:
    """What a marker must have been written for: the same published size and digests."""
    return {"size": f.remote.size, "sha256": f.remote.sha256, "md5": f.remote.md5}


def _read_marker(data_dir: Path, f: DataFile) -> dict | None:
    """The marker of ``f`` if it was written for the same published file (same size and digests)."""
    try:
        marker = json.loads(marker_path(data_dir, f).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("record") != _published(f) or not isinstance(marker.get("files"), dict):
        return None
    return marker


def _tar_outputs(data_dir: Path, f: DataFile) -> list[Path]:
    folder = data_dir / target_path(f)
    pattern = PurePosixPath(f.relpath).name
    return sorted(p for p in folder.glob(pattern) if p.is_file()) if folder.is_dir() else []


def file_status(f: DataFile, data_dir: Path | None) -> str:
    """"present" (verified here), "unverified" (there, not fetched here), "missing" or "corrupt".

    Cheap: reads the marker and file sizes only.
    """
    if data_dir is None:
        return "missing"
    marker = _read_marker(data_dir, f)
    if marker is not None:
        sizes = {rel: (data_dir / rel).stat().st_size if (data_dir / rel).is_file() else None
                 for rel in marker["files"]}
        if all(sizes[rel] == size for rel, size in marker["files"].items()):
            return "present"
        return "corrupt" if any(s is not None for s in sizes.values()) else "missing"
    rec = f.remote
    if rec.unpack == "tar":
        found = len(_tar_outputs(data_dir, f))
        if found == 0:
            return "missing"
        return "unverified" if rec.count is None or found == rec.count else "corrupt"
    target = data_dir / f.relpath
    if not target.is_file():
        return "missing"
    if rec.unpack == "none" and rec.size is not None and target.stat().st_size != rec.size:
        return "corrupt"
    return "unverified"


# ------------------------------------------------------------------------------------------------
# HTTP


def resolve_url_base(url_base: str | None) -> str | None:
    """``url_base``, else $BENCHMARK_DATA_URL_BASE, else None; UserError for a scheme urllib cannot fetch."""
    base = url_base or os.environ.get(URL_BASE_ENV) or None
    if base is not None and urllib.parse.urlsplit(base).scheme not in ("http", "https", "file"):
        raise UserError(f"--url-base {base!r} is not an http://, https:// or file:// URL")
    return base


def source_url(f: DataFile, url_base: str | None) -> str:
    """The publisher's URL, or ``<url_base>/<mirror_path>`` when a mirror is given."""
    if url_base:
        return url_base.rstrip("/") + "/" + urllib.parse.quote(f.mirror_path)
    return f.remote.url


def _content_range_start(value: str | None) -> int | None:
    """The first byte of a ``Content-Range: bytes START-END/TOTAL`` header."""
    try:
        unit, rest = (value or "").split(" ", 1)
        return int(rest.split("-", 1)[0]) if unit == "bytes" else None
    except ValueError:
        return None


def fetch(url: str, part: Path, size: int | None, label: str, show_progress: bool) -> None:
    """Download ``url`` into ``part``, resuming from its current length with a Range request.

    A 200 answer to a range (no Range support) restarts from byte 0; a range that does not start
    where asked deletes ``part`` (the next attempt starts over). Raises ``ConnectionLost`` when the
    body ends early (``part`` keeps what arrived), ``DownloadError`` for an HTTP error or an
    unreachable host.
    """
    have = part.stat().st_size if part.is_file() else 0
    if size is not None and have > size:  # longer than the published file: cannot be resumed
        part.unlink()
        have = 0
    if size is not None and have == size:
        return
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing past what we hold: it is complete, verification decides
            return
        raise DownloadError(f"{label}: {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"{label}: cannot reach {url} ({reason})") from None
    with resp:
        status = getattr(resp, "status", None) or 200  # file:// answers have no status
        if have and status == 206 and _content_range_start(resp.headers.get("Content-Range")) != have:
            part.unlink()  # another range than asked for: start over on the next attempt
            raise ConnectionLost(f"{label}: the server answered another range than bytes={have}-")
        if have and status != 206:
            have = 0  # the server ignores Range and sends the whole file: start over
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        total = have + expected if expected is not None else size
        got = 0
        from tqdm import tqdm

        with open(part, "ab" if have else "wb") as out, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                desc=label, disable=not show_progress, file=sys.stderr, leave=False) as bar:
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
                    raise ConnectionLost(f"{label}: connection lost after {have + got} bytes ({exc}); "
                                         "run again to resume") from None
                if not chunk:
                    break
                out.write(chunk)  # a full disk is an OSError for the caller, not a lost connection
                got += len(chunk)
                bar.update(len(chunk))
    if expected is not None and got < expected:
        raise ConnectionLost(f"{label}: connection closed after {have + got} of {have + expected} bytes; "
                             "run again to resume")


# ------------------------------------------------------------------------------------------------
# Verification and unpacking


def digests(path: Path) -> tuple[str, str]:
    """(SHA-256, MD5) of a file, read once."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def verify(path: Path, f: DataFile) -> dict:
    """Check ``path`` against ``f.remote`` (size, digest or content); DownloadError naming what differs.

    Returns what was checked and the file's SHA-256 (recorded in the marker).
    """
    rec, label = f.remote, f.mirror_path
    size = path.stat().st_size
    if rec.size is not None and size != rec.size:
        raise DownloadError(f"{label}: size mismatch: expected {rec.size} bytes, got {size}")
    sha, md5 = digests(path)
    if rec.sha256 is not None and sha != rec.sha256:
        raise DownloadError(f"{label}: SHA-256 mismatch: expected {rec.sha256}, got {sha}")
    if rec.md5 is not None and md5 != rec.md5:
        raise DownloadError(f"{label}: MD5 mismatch: expected {rec.md5}, got {md5}")
    if rec.check is not None:
        try:
            rec.check(path)
        except (UserError, ValueError, OSError) as exc:
            raise DownloadError(f"{label}: not the published file: {exc}") from None
    done = [what for what, known in (("size", rec.size), ("SHA-256", rec.sha256), ("MD5", rec.md5),
                                     ("content check", rec.check)) if known is not None]
    how = " + ".join(done) or "nothing known to check"
    return {"verified_by": how, "size": size, "sha256": sha}


def unpack(download: Path, f: DataFile, data_dir: Path) -> dict[str, int]:
    """Put the verified ``download`` where the loaders read it; returns {relative path: size}."""
    if f.remote.unpack == "tar":
        return _untar(download, f, data_dir)
    target = data_dir / f.relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    if f.remote.unpack == "none":
        os.replace(download, target)
    else:  # gunzip
        tmp = target.with_name(target.name + ".unpacking")
        try:
            with gzip.open(download, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            os.replace(tmp, target)
        except (OSError, EOFError) as exc:
            raise DownloadError(f"{f.mirror_path}: cannot gunzip ({exc})") from None
        finally:
            tmp.unlink(missing_ok=True)
    return {f.relpath: target.stat().st_size}


def _untar(download: Path, f: DataFile, data_dir: Path) -> dict[str, int]:
    """Members matching ``f.remote.members`` into the folder of ``f.relpath`` by base name (never a
    path from the archive)."""
    rec, rel = f.remote, target_path(f)
    folder = data_dir / rel
    tmp = folder / ".unpacking"  # hidden: the loaders' globs do not see half-extracted files
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        names = []
        try:
            with tarfile.open(download, "r:*") as tar:
                for member in tar:
                    if not (member.isfile() and fnmatch.fnmatchcase(member.name, rec.members)):
                        continue
                    name = PurePosixPath(member.name).name
                    with tar.extractfile(member) as src, open(tmp / name, "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
                    names.append(name)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DownloadError(f"{f.mirror_path}: cannot unpack ({exc})") from None
        if rec.count is not None and len(set(names)) != rec.count:
            raise DownloadError(f"{f.mirror_path}: {len(set(names))} files match {rec.members}, "
                                f"expected {rec.count}")
        out = {}
        for name in sorted(set(names)):
            os.replace(tmp / name, folder / name)
            out[f"{rel}/{name}"] = (folder / name).stat().st_size
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_marker(data_dir: Path, f: DataFile, url: str, checked: dict, files: dict[str, int]) -> None:
    path = marker_path(data_dir, f)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"record": _published(f), "url": url,
            **checked, "files": files}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------
# One file, many files


def fetch_record(f: DataFile, data_dir: Path, url_base: str | None = None, retries: int = 3,
                 show_progress: bool = False) -> str:
    """Make ``f`` present and verified under ``data_dir``; returns what was done (one line).

    Raises ``DownloadError`` (the download is deleted when it fails verification; a cut transfer
    is kept for the next run to resume after ``retries`` immediate resumes).
    """
    status = file_status(f, data_dir)
    if status == "present":
        return "present (verified earlier)"
    if status == "unverified":
        target = data_dir / f.relpath
        if f.remote.unpack != "none" or not (f.remote.sha256 or f.remote.md5):
            return "present (not downloaded here; left as is)"
        try:  # a file put here by hand: verify it once, keep it if it is the published one
            checked = verify(target, f)
        except DownloadError:
            pass  # replaced below, but only once the new download verifies
        else:
            write_marker(data_dir, f, "(present before)", checked, {f.relpath: target.stat().st_size})
            return f"present (verified now by {checked['verified_by']})"
    part = data_dir / f"{f.mirror_path}.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    url = source_url(f, url_base)
    for attempt in range(retries + 1):
        try:
            fetch(url, part, f.remote.size, f.mirror_path, show_progress)
            break
        except ConnectionLost:
            if attempt == retries:
                raise
            time.sleep(min(2**attempt, 30))
    try:
        checked = verify(part, f)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    try:
        files = unpack(part, f, data_dir)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    write_marker(data_dir, f, url, checked, files)
    part.unlink(missing_ok=True)
    what = f"{len(files)} files" if f.remote.unpack == "tar" else f.relpath
    return f"downloaded -> {what} (verified by {checked['verified_by']})"


@dataclass(frozen=True)
class Outcome:
    file: DataFile
    ok: bool
    message: str


def fetch_all(data_files: Sequence[DataFile], data_dir: Path, url_base: str | None = None,
              retries: int = 3, show_progress: bool | None = None,
              report: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """``fetch_record`` for each file (each mirror path once), going on after a failure.

    ``show_progress`` defaults to whether stderr is a terminal; ``report`` sees each outcome as it
    comes. Ctrl-C propagates (the partial download stays for the next run to resume).
    """
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    url_base = resolve_url_base(url_base)
    if data_dir.exists() and not data_dir.is_dir():
        raise UserError(f"data directory {data_dir} is not a directory")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the data directory {data_dir}: {exc.strerror or exc}") from None
    outcomes, seen = [], set()
    for f in data_files:
        if f.mirror_path in seen:
            continue
        seen.add(f.mirror_path)
        try:
            outcome = Outcome(f, True, fetch_record(f, data_dir, url_base, retries, show_progress))
        except DownloadError as exc:
            outcome = Outcome(f, False, str(exc))
        except OSError as exc:  # disk full, permissions: name the file, keep going
            outcome = Outcome(f, False, f"{f.mirror_path}: {exc.strerror or exc}")
        outcomes.append(outcome)
        if report is not None:
            report(outcome)
    return outcomes
