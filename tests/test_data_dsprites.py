"""Procedural dSprites against the facts measured on the original frames (bench/dsprites_validate.py)."""

import numpy as np
import pytest

from benchmark.data import dsprites_render as R
from benchmark.data import get_dataset


def one(shape, scale, orient, px, py):
    return R.render_classes(np.array([[shape, scale, orient, px, py]]))[0]


def bbox(img):
    r, c = np.nonzero(img)
    return (c.min(), c.max(), r.min(), r.max())


@pytest.mark.parametrize(
    "shape,scale,area,box",
    [
        (0, 5, 400, (6, 25, 6, 25)),  # square scale 1: cols/rows 6..25
        (1, 5, 288, (3, 28, 9, 22)),  # ellipse scale 1
        (1, 0, 76, None),  # ellipse scale 0.5
        (2, 5, 222, (6, 25, 7, 23)),  # heart scale 1
        (2, 0, 58, None),  # heart scale 0.5
    ],
)
def test_area_and_bbox_at_origin(shape, scale, area, box):
    img = one(shape, scale, 0, 0, 0)
    assert set(np.unique(img)) <= {0, 1}
    assert img.sum() == area
    if box is not None:
        assert bbox(img) == box


def test_square_side_is_19_2_times_scale():
    for k, s in enumerate(R.SCALES):
        side = np.sum(one(0, k, 0, 0, 0)[16])  # the row through the centre
        lo, hi = 16 - 9.6 * s, 16 + 9.6 * s
        assert side == np.sum((np.arange(64) + 0.5 >= lo) & (np.arange(64) + 0.5 <= hi))


def test_position_moves_columns_for_x_and_rows_for_y():
    base = bbox(one(0, 5, 0, 0, 0))
    # posX = 31 -> centre 48 px: a 32-px shift to the right, rows unchanged
    assert bbox(one(0, 5, 0, 31, 0)) == (base[0] + 32, base[1] + 32, base[2], base[3])
    assert bbox(one(0, 5, 0, 0, 31)) == (base[0], base[1], base[2] + 32, base[3] + 32)
    # centre of mass follows 16 + 32 * pos along the right axis (square: symmetric)
    for k in (0, 7, 15, 31):
        r, c = np.nonzero(one(0, 5, 0, k, 31 - k))
        assert abs(c.mean() + 0.5 - (16 + 32 * k / 31)) <= 0.5
        assert abs(r.mean() + 0.5 - (16 + 32 * (31 - k) / 31)) <= 0.5


def test_orientation_endpoint_duplicates_zero():
    assert len(R.ORIENTATIONS) == 40 and R.ORIENTATIONS[-1] == pytest.approx(2 * np.pi)
    for shape in range(3):
        for scale in (0, 5):
            assert np.array_equal(one(shape, scale, 0, 3, 9), one(shape, scale, 39, 3, 9))
    assert not np.array_equal(one(2, 5, 0, 0, 0), one(2, 5, 10, 0, 0))


def test_rotation_is_counter_clockwise_as_displayed():
    # ellipse, major axis horizontal at 0; a small positive turn lifts its right end (smaller row)
    img = one(1, 5, 3, 15, 15)  # 3 * 2pi/39 = 27.7 degrees
    r, c = np.nonzero(img)
    right = c > c.mean() + 6
    left = c < c.mean() - 6
    assert r[right].mean() < r[left].mean()


def test_heart_lobes_up_and_tip_down():
    img = one(2, 5, 0, 0, 0)
    top, bottom = img[7:12].sum(1), img[20:24].sum(1)
    assert top.max() > bottom.max()
    # notch: the middle column is off just below the top of the lobes
    assert img[8, 15] == 0 and img[8, 16] == 0 and img[8, 11] == 1 and img[8, 20] == 1
    assert img[23].sum() <= 2  # a narrow tip


def test_every_sprite_stays_inside_the_image():
    ds = get_dataset("dsprites")
    corner = np.array([[s, 5, o, x, y] for s in range(3) for o in (0, 5, 10) for x in (0, 31) for y in (0, 31)])
    imgs = ds.sample_observations_from_factors(corner, 0)[:, 0]
    assert imgs[:, 0].sum() == 0 and imgs[:, -1].sum() == 0
    assert imgs[:, :, 0].sum() == 0 and imgs[:, :, -1].sum() == 0
    assert (imgs.reshape(len(corner), -1).sum(1) > 50).all()


def test_dataset_contract_and_index_order():
    ds = get_dataset("dsprites")
    assert ds.name == "dsprites_full" and ds.source == "procedural" and ds.deterministic
    assert ds.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert ds.factor_sizes == (3, 6, 40, 32, 32) and ds.num_points == 737280
    assert ds.observation_shape == (1, 64, 64)
    assert list(ds.state_space.strides) == [245760, 40960, 1024, 32, 1]
    f, x = ds.sample(64, 3)
    assert f.dtype == np.int64 and f.shape == (64, 5)
    assert x.dtype == np.float32 and x.shape == (64, 1, 64, 64)
    # same seed, same draws; rendering is a pure function of the factors
    f2, x2 = ds.sample(64, np.random.default_rng(3))
    assert np.array_equal(f, f2) and np.array_equal(x, x2)
    assert np.array_equal(ds.sample_observations_from_factors(f[:5], 99), x[:5])


def test_batch_render_matches_single_render():
    rng = np.random.default_rng(0)
    ds = get_dataset("dsprites")
    f = ds.sample_factors(40, rng)
    batch = R.render_classes(f)
    for i in range(0, 40, 7):
        assert np.array_equal(batch[i], R.render_classes(f[i : i + 1])[0])


def test_bad_factors_are_rejected():
    ds = get_dataset("dsprites")
    with pytest.raises(ValueError, match="outside"):
        ds.sample_observations_from_factors(np.array([[3, 0, 0, 0, 0]]), 0)
    with pytest.raises(ValueError, match="shape"):
        ds.sample_observations_from_factors(np.zeros((2, 4), int), 0)
