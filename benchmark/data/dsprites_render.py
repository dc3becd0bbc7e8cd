"""Procedural dSprites renderer with the original's geometry, as measured on its frames (below).

dSprites (Matthey et al. 2017, deepmind/dsprites-dataset) was drawn with the LOVE engine without
antialiasing; its generator was never published. The geometry here was measured on the 320 native
frames of ``dsprites.gif`` and reproduces them by point sampling: pixel (r, c) is on iff its centre
(c + 0.5, r + 0.5) lies inside the shape.

- centre ``(16 + 32 posX, 16 + 32 posY)`` px: posX along columns (0 = left), posY along rows (0 = top);
- square side ``19.2 scale``; ellipse semi-axes ``12.75 scale x 7.25 scale`` (major axis horizontal);
  heart = the parametric heart x = 16 sin^3 t, y = 13 cos t - 5 cos 2t - 2 cos 3t - cos 4t scaled by
  ``HEART_SCALE`` and lifted by ``HEART_SHIFT`` px (lobes up), then multiplied by ``scale``;
- rotation by the orientation angle about the centre, counter-clockwise as displayed;
- factor grids: scale linspace(0.5, 1, 6), orientation linspace(0, 2 pi, 40) *with* the endpoint (so
  classes 0 and 39 give the same image, as in the original), posX/posY linspace(0, 1, 32).

Agreement with the 320 original frames: square 8 wrong pixels in all, ellipse 0.9 and heart 0.85
wrong pixels per image on average (``bench/dsprites_validate.py`` measures it).
"""

from __future__ import annotations

import functools

import numpy as np

RENDERER_VERSION = "dsprites-pointsample-v1"

IMAGE_SIZE = 64
SHAPES = ("square", "ellipse", "heart")
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2.0 * np.pi, 40)
POSITIONS = np.linspace(0.0, 1.0, 32)

SQUARE_HALF_SIDE = 9.6  # 0.3 * 64 / 2
ELLIPSE_SEMI_AXES = (12.75, 7.25)  # along x at orientation 0, along y; best fit to the frames
HEART_SCALE = (0.6, 0.66)  # multiplies the classic parametric heart (width 32 -> 19.2 px)
HEART_SHIFT = 1.45  # px, upwards, before the sprite scale is applied

# Heart lookup table: inside/outside on a fine grid of the local (unit-scale, y-up) frame.
_HEART_EXTENT = 11.0  # half-width of the table in px; the heart spans |x| <= 9.6, -9.8 <= y <= 9.3
_HEART_RES = 2048  # cells per side: 0.0107 px per cell


def heart_polygon(num_vertices: int = 4096) -> np.ndarray:
    """Vertices (V, 2) of the unit-scale heart in the local y-up frame (px)."""
    t = np.linspace(0.0, 2.0 * np.pi, num_vertices, endpoint=False)
    x = 16.0 * np.sin(t) ** 3
    y = 13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t)
    return np.stack([HEART_SCALE[0] * x, HEART_SCALE[1] * y + HEART_SHIFT], axis=1)


def polygon_mask(vertices: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Even-odd fill of a polygon sampled at grid points: mask[i, j] for the point (xs[j], ys[i]).

    Scan-line crossing counts, vectorised over edges: exact at the sample points.
    """
    x0, y0 = vertices[:, 0], vertices[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    mask = np.zeros((ys.size, xs.size), dtype=bool)
    for i, y in enumerate(ys):
        crosses = (y0 <= y) != (y1 <= y)
        if not crosses.any():
            continue
        xa, ya, xb, yb = x0[crosses], y0[crosses], x1[crosses], y1[crosses]
        xc = np.sort(xa + (y - ya) * (xb - xa) / (yb - ya))
        # a point is inside when an odd number of crossings lie to its left
        mask[i] = (np.searchsorted(xc, xs, side="right") % 2) == 1
    return mask


@functools.lru_cache(maxsize=1)
def _heart_table() -> np.ndarray:
    centres = (np.arange(_HEART_RES) + 0.5) * (2 * _HEART_EXTENT / _HEART_RES) - _HEART_EXTENT
    return polygon_mask(heart_polygon(), centres, centres)


def _inside(shape: int, lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
    """Whether local unit-scale y-up coordinates lie inside shape 0 (square), 1 (ellipse), 2 (heart)."""
    if shape == 0:
        return (np.abs(lx) <= SQUARE_HALF_SIDE) & (np.abs(ly) <= SQUARE_HALF_SIDE)
    if shape == 1:
        a, b = ELLIPSE_SEMI_AXES
        return (lx / a) ** 2 + (ly / b) ** 2 <= 1.0
    if shape == 2:
        table = _heart_table()
        step = 2 * _HEART_EXTENT / _HEART_RES
        col = np.floor((lx + _HEART_EXTENT) / step).astype(np.int64)
        row = np.floor((ly + _HEART_EXTENT) / step).astype(np.int64)
        ok = (col >= 0) & (col < _HEART_RES) & (row >= 0) & (row < _HEART_RES)
        out = np.zeros(lx.shape, dtype=bool)
        out[ok] = table[row[ok], col[ok]]
        return out
    raise ValueError(f"unknown dSprites shape class {shape}")


def render_values(
    shape: np.ndarray,
    scale: np.ndarray,
    angle: np.ndarray,
    pos_x: np.ndarray,
    pos_y: np.ndarray,
    size: int = IMAGE_SIZE,
    chunk: int = 512,
) -> np.ndarray:
    """Binary sprites (n, size, size) uint8 from factor *values* (shape class, scale, radians, pos in [0,1])."""
    shape = np.asarray(shape, dtype=np.int64).reshape(-1)
    n = shape.size
    scale, angle, pos_x, pos_y = (
        np.broadcast_to(np.asarray(v, dtype=np.float64).reshape(-1), (n,)) for v in (scale, angle, pos_x, pos_y)
    )
    out = np.zeros((n, size, size), dtype=np.uint8)
    unit = size / 64.0
    centres = np.arange(size, dtype=np.float64) + 0.5
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        cx = (16.0 + 32.0 * pos_x[sl]) * unit
        cy = (16.0 + 32.0 * pos_y[sl]) * unit
        # offsets of pixel centres from the sprite centre, y pointing up (rows grow downwards)
        dx = centres[None, None, :] - cx[:, None, None]
        dy = cy[:, None, None] - centres[None, :, None]
        cos, sin = np.cos(angle[sl])[:, None, None], np.sin(angle[sl])[:, None, None]
        inv = 1.0 / (scale[sl] * unit)[:, None, None]
        # rotate by -angle to undo a counter-clockwise rotation, then undo the scale
        lx = (cos * dx + sin * dy) * inv
        ly = (cos * dy - sin * dx) * inv
        shapes = shape[sl]
        block = out[sl]
        for s in np.unique(shapes):
            sel = shapes == s
            block[sel] = _inside(int(s), lx[sel], ly[sel])
    return out


def render_classes(factors: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Binary sprites (n, size, size) uint8 from class indices (n, 5): shape, scale, orientation, posX, posY."""
    f = np.asarray(factors, dtype=np.int64)
    return render_values(
        f[:, 0], SCALES[f[:, 1]], ORIENTATIONS[f[:, 2]], POSITIONS[f[:, 3]], POSITIONS[f[:, 4]], size=size
    )
