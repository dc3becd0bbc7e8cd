"""Wrong pixels per image of the procedural dSprites against the 320 original frames of dsprites.gif.

    python bench/dsprites_validate.py PATH_TO_dsprites.gif

The gif (deepmind/dsprites-dataset, Apache-2.0, `dsprites.gif` in that repository) is not part of this project; `frame_factors` below
gives the frame -> factor map used here.
"""

from __future__ import annotations

import sys

import numpy as np
from PIL import Image

from benchmark.data import dsprites_render as R


def frame_factors() -> np.ndarray:
    """Factor classes (320, 5) of the gif's frames, in order."""
    rows = []
    for shape in (2, 1, 0):  # heart, ellipse, square
        sweep = list(range(6)) + list(range(5, -1, -1)) + list(range(6))
        rows += [(shape, s, 0, 0, 0) for s in sweep]
        rows += [(shape, 5, o, 0, 0) for o in range(40)]
        if shape == 2:  # only the heart tours the positions
            rows += [(shape, 5, 0, 0, y) for y in range(32)]
            rows += [(shape, 5, 0, x, 31) for x in range(32)]
            rows += [(shape, 5, 0, 31, y) for y in range(31, -1, -1)]
            rows += [(shape, 5, 0, x, 0) for x in range(31, -1, -1)]
        rows += [(shape, s, 0, 0, 0) for s in range(5, -1, -1)]
    return np.array(rows)


def main(path: str) -> None:
    gif = Image.open(path)
    frames = []
    for i in range(gif.n_frames):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("L")) > 127)
    frames = np.array(frames)
    factors = frame_factors()
    if len(frames) != len(factors):
        sys.exit(f"error: expected {len(factors)} frames in {path}, found {len(frames)}")
    wrong = (R.render_classes(factors).astype(bool) != frames).reshape(len(frames), -1).sum(1)
    print(f"{'shape':8} {'frames':>6} {'wrong px':>9} {'per image':>9} {'max':>4} {'exact frames':>12}")
    for s, name in enumerate(R.SHAPES):
        w = wrong[factors[:, 0] == s]
        print(f"{name:8} {len(w):6d} {w.sum():9d} {w.mean():9.2f} {w.max():4d} {np.mean(w == 0):11.0%}")
    print(f"{'all':8} {len(wrong):6d} {wrong.sum():9d} {wrong.mean():9.2f} {wrong.max():4d} {np.mean(wrong == 0):11.0%}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python bench/dsprites_validate.py PATH_TO_dsprites.gif")
    main(sys.argv[1])
