"""Datasets at device speed: the factor grid held in the training device's memory, batches gathered there.

A pack of 64 models consumes 4,096 images a step; rendering them on the host (about 9,000 dSprites
images per second and core) would starve a GPU. Instead each dataset's grid (``GroundTruthData.
grid_source``: dSprites' 737,280 binary sprites, shared by its colour, noise and Scream variants;
the images of a file dataset; the observations of a deterministic procedural one) is rendered or
loaded once per process and device, in chunks, into one tensor of exact codes (``grid.py``: bits,
uint8 or float32), and a `DeviceSampler` draws each model's batches from it:

1. the factor classes: ``data.sample_factors(n, rng)``, the very calls of ``sample_observations``;
2. the grid rows: ``data.grid_rows(factors, rng)``, drawing what ``_observations`` draws before its
   per-image randomness (dSprites' size-1 colour factor, SmallNORB's instance), then factor index
   arithmetic (``state_space``) and the file's lookup;
3. a gather of those rows on the device, decoded to float32;
4. the per-image randomness: ``data.finish_on_device(x, rng, sampler)``.

What is bitwise the host path, on the CPU and on CUDA: the factor indices of every batch, the
images gathered (decoding is exact: bits, k/255 by table, float32 as stored), colour-dSprites'
colours (3 numpy draws an image, multiplied on the device: x is 0 or 1), Scream-dSprites' crops
(positions and colour drawn with numpy in dlib's order; the float64 arithmetic then runs on the
device, where it is IEEE-exact as on the host), and the data stream's state after each batch (so
checkpoints and resumes see the same stream). What is identical only in distribution: the per-pixel
noise of noisy-dSprites (4,096 x 3 values an image) on a non-CPU device (``noise="generator"``, the
default there): it comes from a torch generator on the device, seeded by one 64-bit draw of the
model's data stream, and the stream is then advanced past the remaining draws of the host path
(PCG64 ``advance``), so the next batch's factors are again the host path's. On the CPU the noise is
drawn with numpy as on the host (bitwise; ``noise="numpy"``), which is also the fallback for a
random state that cannot be advanced (``RandomState``, dlib's order).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark.data.grid import U8_VALUES, GridSource, encode, narrowest, row_bytes
from benchmark.data.rng import as_rng, uniform
from benchmark.errors import UserError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MODES = ("auto", "on", "off")  # the training setting `data_on_device`
NOISE = ("numpy", "generator")
#: a grid may take at most this fraction of the device memory free when it is built
GRID_MEMORY_FRACTION = 0.5
CHUNK_BYTES = 64 * 2**20  # of float32 observations rendered at a time
_BIT_SHIFTS = (7, 6, 5, 4, 3, 2, 1, 0)  # np.packbits' order: the first pixel is the high bit


class DeviceGrid:
    """A `GridSource`'s codes in one tensor on `device`, built chunk by chunk (progress logged)."""

    def __init__(self, source: GridSource, device: torch.device, name: str = "grid") -> None:
        import torch

        self.device, self.shape, self.rows = device, tuple(source.shape), source.rows
        self.encoding = source.encoding
        self._constants: dict[str, torch.Tensor] = {}
        t0, logged = time.perf_counter(), -1
        codes = None
        step = max(1, CHUNK_BYTES // row_bytes(self.shape, "f32"))
        for start in range(0, source.rows, step):
            stop = min(start + step, source.rows)
            chunk = source.chunk(start, stop)
            if source.encoding == "auto":  # float32 observations: the first chunk picks the encoding
                if self.encoding == "auto":
                    self.encoding = narrowest(chunk)
                chunk = encode(chunk, self.encoding)
            if codes is None:
                codes = torch.empty((source.rows, *chunk.shape[1:]), dtype=torch.from_numpy(chunk[:0]).dtype,
                                    device=device)
            codes[start:stop].copy_(torch.from_numpy(np.ascontiguousarray(chunk)))
            if 10 * stop // source.rows > logged:  # each tenth of the grid
                logged = 10 * stop // source.rows
                log.info("%s on %s: %d/%d images (%.0f%%) in %.1f s", name, device, stop, source.rows,
                         100 * stop / source.rows, time.perf_counter() - t0)
        self.codes = codes
        self.nbytes = codes.numel() * codes.element_size()
        self._values = torch.from_numpy(U8_VALUES).to(device)
        self._shifts = torch.tensor(_BIT_SHIFTS, dtype=torch.uint8, device=device)

    def gather(self, rows: np.ndarray) -> torch.Tensor:
        """The float32 images (n, C, H, W) of grid `rows`, on the device: bitwise the host's values."""
        import torch

        codes = self.codes.index_select(0, torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device))
        n = len(codes)
        if self.encoding == "bits":
            bits = (codes.unsqueeze(-1) >> self._shifts) & 1
            return bits.reshape(n, -1)[:, : int(np.prod(self.shape))].reshape(n, *self.shape).float()
        if self.encoding == "u8":
            return self._values[codes.long()]
        return codes

    def constant(self, array: np.ndarray) -> torch.Tensor:
        """`array` on the device, copied once per content (a Scream texture)."""
        import torch

        array = np.ascontiguousarray(array)
        key = f"{array.dtype}{array.shape}" + hashlib.sha1(array.tobytes()).hexdigest()
        if key not in self._constants:
            self._constants[key] = torch.from_numpy(array).to(self.device)
        return self._constants[key]


# one grid per device and process, shared by every model of every pack (the last dataset used)
_GRIDS: dict[str, tuple[Any, DeviceGrid, Any]] = {}  # device -> (key, grid, dataset kept alive)


def grid_key(data: Any, source: GridSource) -> Any:
    return source.key if source.key is not None else ("object", id(data))


def device_grid(data: Any, device: torch.device, source: GridSource | None = None) -> DeviceGrid:
    """`data`'s grid on `device`, built on first use and kept for the process (one per device)."""
    source = source if source is not None else data.grid_source()
    key = grid_key(data, source)
    held = _GRIDS.get(str(device))
    if held is not None and held[0] == key:
        return held[1]
    _GRIDS.pop(str(device), None)  # free the previous dataset's grid before building this one
    grid = DeviceGrid(source, device, name=f"{getattr(data, 'name', 'dataset')} grid")
    _GRIDS[str(device)] = (key, grid, data)
    return grid


def clear_grids() -> None:
    """Forget every grid of this process (their memory is freed with the last sampler using them)."""
    _GRIDS.clear()


def free_bytes(device: torch.device) -> int:
    """Memory free on `device` now: CUDA's free memory, else the host's MemAvailable."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            line = next(x for x in f if x.startswith("MemAvailable:"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class DeviceSampler:
    """`data.sample_observations(n, rng)` with the images gathered from `grid` on its device; returns a
    float32 tensor there. `noise`: where per-pixel noise is drawn ("numpy": bitwise the host path;
    "generator": a torch generator on the device, identical in distribution; module docstring)."""

    def __init__(self, data: Any, grid: DeviceGrid, noise: str | None = None) -> None:
        if noise not in (None, *NOISE):
            raise ValueError(f"noise must be one of {NOISE}, got {noise!r}")
        self.data, self.grid, self.device = data, grid, grid.device
        self.noise = noise or ("numpy" if grid.device.type == "cpu" else "generator")
        self.noise_drawn: set[str] = set()  # how noise was actually drawn (for the provenance)
        self._generator = None

    def sample_observations(self, n: int, rng: Any) -> torch.Tensor:
        state = as_rng(rng)
        factors = self.data.sample_factors(n, state)
        x = self.grid.gather(self.data.grid_rows(factors, state))
        return self.data.finish_on_device(x, state, self)

    # ---- for the datasets' finish_on_device --------------------------------------------------
    def tensor(self, array: np.ndarray) -> torch.Tensor:
        """A host array drawn per batch (colours, crop positions), on the device."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def constant(self, array: np.ndarray) -> torch.Tensor:
        return self.grid.constant(array)

    def uniform_noise(self, rng: Any, shape: tuple[int, ...]) -> torch.Tensor:
        """U(0, 1) of `shape` in place of the host path's `uniform(rng, 0, 1, shape)`: those very
        float64 values ("numpy"), or float32 values from a device generator seeded by the stream,
        which then stands where the host path leaves it ("generator")."""
        import torch

        count = int(np.prod(shape))
        seed = skip_uniform(rng, count) if self.noise == "generator" and count > 0 else None
        if seed is None:
            self.noise_drawn.add("numpy")
            return self.tensor(uniform(rng, 0.0, 1.0, shape))
        self.noise_drawn.add("generator")
        if self._generator is None:
            self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(seed)
        return torch.rand(shape, generator=self._generator, device=self.device)

    @property
    def provenance(self) -> dict[str, Any]:
        """What the rows say about the data path: the grid's encoding and size, and the noise."""
        out: dict[str, Any] = {"on_device": True, "encoding": self.grid.encoding, "grid_bytes": self.grid.nbytes}
        if self.noise_drawn:
            out["noise"] = "+".join(sorted(self.noise_drawn))
        return out


def skip_uniform(rng: Any, count: int) -> int | None:
    """A 63-bit seed drawn from `rng`, which is then left exactly where `rng.uniform(size=count)`
    would leave it (PCG64 draws one 64-bit word per double: one for the seed, `advance(count - 1)`
    for the rest, the buffered 32-bit half-word kept as it was). None, touching nothing, for a
    random state that cannot be advanced (RandomState, other bit generators)."""
    bitgen = getattr(rng, "bit_generator", None)
    if not isinstance(rng, np.random.Generator) or not isinstance(bitgen, np.random.PCG64):
        return None
    before = bitgen.state
    seed = int(bitgen.random_raw()) >> 1
    bitgen.advance(count - 1)
    after = bitgen.state  # advance() drops the buffered half-word; uniform() would not have
    after["has_uint32"], after["uinteger"] = before["has_uint32"], before["uinteger"]
    bitgen.state = after
    return seed


def data_sampler(data: Any, device: torch.device, mode: str = "auto",
                 noise: str | None = None) -> DeviceSampler | None:
    """The sampler drawing `data`'s batches on `device`, or None for the host path.

    mode "off": None. "auto": a sampler on a non-CPU device when the dataset has a grid
    (`grid_source`) and it fits in `GRID_MEMORY_FRACTION` of the device's free memory, else None
    (logged). "on": a sampler on any device (the CPU included), a UserError when impossible."""
    if mode not in MODES:
        raise UserError(f"data_on_device must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "off" or (mode == "auto" and device.type == "cpu"):
        return None
    source = data.grid_source() if hasattr(data, "grid_source") else None
    name = getattr(data, "name", type(data).__name__)
    if source is None:
        why = f"dataset {name} has no enumerable grid (its observations are not a function of its factors)"
    else:
        held = _GRIDS.get(str(device))
        need = source.rows * row_bytes(source.shape, source.encoding if source.encoding != "auto" else "f32")
        room = int(GRID_MEMORY_FRACTION * free_bytes(device))
        why = None
        if (held is None or held[0] != grid_key(data, source)) and need > room:
            why = (f"the {name} grid needs {need / 2**30:.1f} GiB, more than {GRID_MEMORY_FRACTION:.0%} "
                   f"of the {room / GRID_MEMORY_FRACTION / 2**30:.1f} GiB free on {device}")
    if why is not None:
        if mode == "on":
            raise UserError(f"data_on_device is on but {why}")
        log.info("data stay on the host: %s", why)
        return None
    try:
        grid = device_grid(data, device, source)
    except ValueError as e:  # a chunk did not fit the grid's encoding: a dataset bug, not the user's
        if mode == "on":
            raise
        log.warning("data stay on the host: the %s grid could not be built: %s", name, e)
        return None
    return DeviceSampler(data, grid, noise)
