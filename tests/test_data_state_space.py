import numpy as np
import pytest

from benchmark.data import DATASETS, GroundTruthData, StateSpace, get_dataset
from benchmark.errors import UserError


def test_round_trip_and_row_major_order():
    space = StateSpace((3, 6, 40, 32, 32))
    idx = np.arange(space.num_points)
    f = space.index_to_factors(idx)
    assert np.array_equal(space.factors_to_index(f), idx)
    # last factor fastest, as np.unravel_index in C order
    ref = np.stack(np.unravel_index(idx, space.factor_sizes), axis=1)
    assert np.array_equal(f, ref)
    assert list(space.strides) == [245760, 40960, 1024, 32, 1]


def test_iter_factors_covers_grid_in_order():
    space = StateSpace((2, 3, 5))
    batches = list(space.iter_factors(7))
    assert [len(b) for b in batches] == [7, 7, 7, 7, 2]
    assert np.array_equal(np.concatenate(batches), space.all_factors())


def test_sample_factors_uniform_and_seeded():
    space = StateSpace((4, 7))
    a = space.sample_factors(10000, np.random.default_rng(1))
    assert a.min() == 0 and a[:, 0].max() == 3 and a[:, 1].max() == 6
    assert np.allclose(np.bincount(a[:, 1]) / 10000, 1 / 7, atol=0.02)
    # RandomState draws column by column like disentanglement_lib
    rs = np.random.RandomState(0)
    b = space.sample_factors(5, np.random.RandomState(0))
    assert np.array_equal(b[:, 0], rs.randint(4, size=5)) and np.array_equal(b[:, 1], rs.randint(7, size=5))


def test_out_of_range_index_raises():
    space = StateSpace((2, 2))
    with pytest.raises(ValueError):
        space.index_to_factors(4)
    with pytest.raises(ValueError):
        space.factors_to_index(np.array([[0, 2]]))


def test_registry_names_and_errors():
    assert "dsprites" in DATASETS and "dsprites_full" in DATASETS and "identity" in DATASETS
    with pytest.raises(UserError, match="unknown dataset 'nope'"):
        get_dataset("nope")
    with pytest.raises(UserError, match="source"):
        get_dataset("dsprites", source="web")
    with pytest.raises(UserError, match="no procedural source"):
        get_dataset("mpi3d_toy")


@pytest.mark.parametrize("name", ["dsprites", "color_dsprites", "noisy_dsprites", "scream_dsprites",
                                  "identity", "dummy_data", "xy_object", "xy_tiny"])
def test_contract_for_every_procedural_dataset(name):
    ds = get_dataset(name)
    assert isinstance(ds, GroundTruthData)
    assert len(ds.factor_names) == len(ds.factor_sizes) == ds.num_factors
    f, x = ds.sample(9, 0)
    assert f.shape == (9, ds.num_factors) and f.dtype == np.int64
    assert x.shape == (9, *ds.observation_shape) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert np.array_equal(ds.index_to_factors(ds.factors_to_index(f)), f)
    f2, x2 = ds.sample(9, 0)
    assert np.array_equal(f, f2) and np.array_equal(x, x2)


def test_identity_observations_are_the_factors():
    ds = get_dataset("identity")
    f = ds.all_factors()
    x = ds.sample_observations_from_factors(f, 0).reshape(len(f), -1)
    sizes = np.array(ds.factor_sizes)
    assert np.allclose(x * (sizes - 1), f)
    assert ds.observation_shape == (len(sizes), 1, 1)


def test_xy_tiny_grid_is_distinct_squares():
    ds = get_dataset("xy_tiny")
    assert ds.factor_sizes == (8, 8, 2) and ds.num_points == 128
    x = ds.sample_observations_from_factors(ds.all_factors(), 0)[:, 0]
    assert len({img.tobytes() for img in x}) == 128
    areas = x.reshape(128, -1).sum(1)
    assert set(areas) == {100.0, 256.0}


def test_xy_object_square_position():
    ds = get_dataset("xy_object")
    assert ds.factor_sizes == (25, 25, 5, 24)
    img = ds.sample_observations_from_factors(np.array([[3, 10, 0, 23]]), 0)[0]
    r, c = np.nonzero(img.max(0))
    # size 7 at placement 3 (x) / 10 (y): start 2*i + (15 - 7)//2
    assert (c.min(), c.max(), r.min(), r.max()) == (10, 16, 24, 30)
    assert np.allclose(img[:, 24, 10], [1, 0, 1])  # colour 23 = brightest magenta
