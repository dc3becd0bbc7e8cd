"""Dataset names -> constructors, per source ("procedural" rendered here, "file" from the user's files)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmark.data import dsprites, synthetic
from benchmark.data.base import GroundTruthData
from benchmark.errors import UserError

SOURCES = ("procedural", "file")
DATA_DIR_ENV = ("BENCHMARK_DATA", "DISENTANGLEMENT_LIB_DATA")


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    procedural: Callable[[Path | None], GroundTruthData] | None = None
    file: Callable[[Path], GroundTruthData] | None = None


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """``data_dir``, else $BENCHMARK_DATA, else $DISENTANGLEMENT_LIB_DATA (dlib's layout is accepted), else None."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    for var in DATA_DIR_ENV:
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    return None


def _scream_texture(data_dir: Path | None):
    """The user's scream/scream.jpg if present in the data directory, else the generated stand-in."""
    if data_dir is not None:
        path = data_dir / "scream" / "scream.jpg"
        if path.is_file():
            try:
                return dsprites.load_scream(path), f"file:{path.name}"
            except OSError as exc:
                raise UserError(f"cannot read the scream image {path}: {exc}") from exc
    return dsprites.generated_scream_texture(), "generated-v1 (not The Scream)"


def _procedural_scream(data_dir: Path | None) -> GroundTruthData:
    from benchmark.data.dsprites_render import RENDERER_VERSION

    texture, what = _scream_texture(data_dir)
    return dsprites.ScreamDSprites(texture, provenance={"renderer": RENDERER_VERSION, "scream_texture": what})


def _shapes3d() -> GroundTruthData:
    from benchmark.data.shapes3d import ProceduralShapes3D

    return ProceduralShapes3D()


def _file(name: str) -> Callable[[Path], GroundTruthData]:
    def load(data_dir: Path) -> GroundTruthData:
        from benchmark.data import files

        return files.load(name, data_dir)

    return load


_ENTRIES = [
    Entry("dsprites_full", "dSprites: binary 2-D shapes (Matthey et al. 2017)",
          procedural=lambda d: dsprites.DSprites(), file=_file("dsprites_full")),
    Entry("color_dsprites", "dSprites times a random colour per image (dlib)",
          procedural=lambda d: dsprites.ColorDSprites(), file=_file("color_dsprites")),
    Entry("noisy_dsprites", "dSprites on uniform noise (dlib)",
          procedural=lambda d: dsprites.NoisyDSprites(), file=_file("noisy_dsprites")),
    Entry("scream_dsprites", "dSprites on crops of The Scream, inverted under the sprite (dlib)",
          procedural=_procedural_scream, file=_file("scream_dsprites")),
    Entry("shapes3d", "3D shapes in a room (Kim & Mnih 2018); procedural = look-alike, not the original pixels",
          procedural=lambda d: _shapes3d(), file=_file("shapes3d")),
    Entry("smallnorb", "SmallNORB toy photographs (LeCun et al. 2004)", file=_file("smallnorb")),
    Entry("cars3d", "Cars3D renders (Reed et al. 2015)", file=_file("cars3d")),
    Entry("mpi3d_toy", "MPI3D simplistic renders (Gondal et al. 2019)", file=_file("mpi3d_toy")),
    Entry("mpi3d_realistic", "MPI3D realistic renders (Gondal et al. 2019)", file=_file("mpi3d_realistic")),
    Entry("mpi3d_real", "MPI3D camera images (Gondal et al. 2019)", file=_file("mpi3d_real")),
    Entry("identity", "test set: observations are the normalised factors, shape (K, 1, 1)",
          procedural=lambda d: synthetic.IdentityData()),
    Entry("dummy_data", "test set: 10 factors x 5, uniform-noise images (dlib)",
          procedural=lambda d: synthetic.DummyData()),
    Entry("xy_object", "test set: one coloured square, factors x, y, scale, color (disent)",
          procedural=lambda d: synthetic.XYObject()),
    Entry("xy_tiny", "test set: 128 grey squares (x 8, y 8, scale 2)",
          procedural=lambda d: synthetic.xy_tiny()),
]

ENTRIES: dict[str, Entry] = {e.name: e for e in _ENTRIES}
ALIASES = {"dsprites": "dsprites_full"}


def register(entry: Entry) -> None:
    """Add or replace a dataset (used by modules that render heavier datasets, e.g. shapes3d)."""
    ENTRIES[entry.name] = entry


def canonical_name(name: str) -> str:
    """The registry name of ``name`` (aliases resolved); UserError when unknown."""
    key = ALIASES.get(name, name)
    if key not in ENTRIES:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(sorted(ENTRIES) + sorted(ALIASES))}")
    return key


def available_sources(name: str) -> tuple[str, ...]:
    entry = ENTRIES[canonical_name(name)]
    return tuple(s for s in SOURCES if getattr(entry, s) is not None)


def get_dataset(name: str, source: str = "procedural", data_dir: str | Path | None = None) -> GroundTruthData:
    """The dataset ``name`` rendered here (``source="procedural"``) or read from ``data_dir`` (``"file"``).

    ``data_dir`` defaults to $BENCHMARK_DATA (then $DISENTANGLEMENT_LIB_DATA). Unknown names, sources
    a dataset does not have, and missing or corrupt files raise ``UserError`` with one line.
    """
    key = canonical_name(name)
    if source not in SOURCES:
        raise UserError(f"unknown dataset source {source!r}; use one of {', '.join(SOURCES)}")
    entry = ENTRIES[key]
    factory = getattr(entry, source)
    if factory is None:
        other = [s for s in SOURCES if getattr(entry, s) is not None]
        raise UserError(f"dataset {key!r} has no {source} source; available: {', '.join(other)}")
    root = resolve_data_dir(data_dir)
    if source == "file" and root is None:
        raise UserError(f"dataset {key!r} from files needs a data directory: pass --data-dir or set $BENCHMARK_DATA")
    return factory(root)
