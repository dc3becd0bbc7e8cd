"""The procedural Shapes3D-like scene: grid, colours as a gather over fixed geometry, plausible layout."""

import numpy as np
import pytest

from benchmark.data import get_dataset
from benchmark.data import shapes3d as S


@pytest.fixture(scope="module")
def ds():
    return get_dataset("shapes3d")


def test_contract(ds):
    assert ds.source == "procedural" and ds.deterministic and "not pixel-compatible" in ds.provenance["note"]
    assert ds.factor_names == S.FACTOR_NAMES and ds.factor_sizes == (10, 10, 10, 8, 4, 15)
    assert ds.num_points == 480000 and ds.observation_shape == (3, 64, 64)
    f, x = ds.sample(8, 0)
    assert x.dtype == np.float32 and x.shape == (8, 3, 64, 64) and 0 <= x.min() and x.max() <= 1


def test_hue_to_rgb():
    assert np.allclose(S.hue_to_rgb(np.array([0.0, 1 / 3, 2 / 3, 0.5])), [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1]])


def test_layout_sky_wall_floor_object():
    w, _ = S.render_geometry(1.0, 2, 0.0)
    seg = w.argmax(0)
    assert (seg[:8] == 0).all()  # sky band at the top
    assert (seg[-8:] == 1).all()  # floor at the bottom
    assert (seg[20, :] == 2).sum() > 32  # back wall in the middle band
    obj = np.argwhere(seg == 3)
    assert 28 <= obj[:, 1].mean() <= 36  # the object sits in the middle
    # weights are shading folded into a partition of each pixel: between ambient and 1
    assert np.all(w.sum(0) <= 1 + 1e-6) and np.all(w.sum(0) >= S.AMBIENT * 0.99)


def test_each_factor_changes_the_image(ds):
    base = np.array([[2, 5, 7, 3, 1, 7]])
    x0 = ds.sample_observations_from_factors(base, 0)
    for k in range(6):
        other = base.copy()
        other[0, k] = (other[0, k] + 1) % ds.factor_sizes[k]
        assert not np.allclose(ds.sample_observations_from_factors(other, 0), x0), S.FACTOR_NAMES[k]


def test_floor_hue_only_changes_floor_pixels(ds):
    a = ds.sample_observations_from_factors(np.array([[0, 5, 7, 3, 1, 7]]), 0)[0]
    b = ds.sample_observations_from_factors(np.array([[3, 5, 7, 3, 1, 7]]), 0)[0]
    changed = np.abs(a - b).max(0) > 1e-6
    assert not changed[:8].any() and changed[-5:].all()
    # the floor takes the hue: pure red at hue 0 (up to shading)
    px = a[:, -1, 0]
    assert px[0] > 0.3 and px[1] == 0 and px[2] == 0


def test_scale_grows_the_object():
    small = (S.render_geometry(S.SCALES[0], 0, 0.0)[0].argmax(0) == 3).sum()
    large = (S.render_geometry(S.SCALES[-1], 0, 0.0)[0].argmax(0) == 3).sum()
    assert large > 2 * small


def test_lazy_table_equals_direct_render(ds):
    f = np.array([[1, 2, 3, 6, 3, 14]])
    x = ds.sample_observations_from_factors(f, 0)[0]
    w, spec = S.render_geometry(S.SCALES[6], 3, S.AZIMUTHS_DEG[14])
    col = np.concatenate([[S.SKY_RGB], S.hue_to_rgb(S.HUES[[1, 2, 3]])])
    ref = np.clip(np.einsum("khw,kc->chw", w, col) + spec, 0, 1)
    assert np.allclose(x, ref, atol=1e-6)
