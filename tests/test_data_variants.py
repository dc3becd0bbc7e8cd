"""The dSprites variants follow disentanglement_lib's formulas and RandomState call order exactly."""

import numpy as np

from benchmark.data import dsprites, get_dataset
from benchmark.data import dsprites_render as R


def dlib_binary(factors, rs):
    rs.randint(1, size=len(factors))  # dlib samples the size-1 colour factor first
    return R.render_classes(factors)[..., None].astype(np.float32)  # NHWC


def test_color_matches_dlib_formula():
    f = get_dataset("dsprites").sample_factors(6, 0)
    ours = get_dataset("color_dsprites").sample_observations_from_factors(f, np.random.RandomState(5))
    rs = np.random.RandomState(5)
    obs = np.repeat(dlib_binary(f, rs), 3, axis=3)
    color = np.repeat(np.repeat(rs.uniform(0.5, 1, [6, 1, 1, 3]), 64, axis=1), 64, axis=2)
    ref = (obs * color).transpose(0, 3, 1, 2)
    assert np.allclose(ours, ref, atol=1e-7)
    # background stays 0, the sprite takes one colour per image
    assert ours[:, :, 0, 0].max() == 0
    assert (ours.reshape(6, 3, -1).max(2) >= 0.5).all()


def test_noisy_matches_dlib_formula():
    f = get_dataset("dsprites").sample_factors(4, 1)
    ours = get_dataset("noisy_dsprites").sample_observations_from_factors(f, np.random.RandomState(2))
    rs = np.random.RandomState(2)
    obs = np.repeat(dlib_binary(f, rs), 3, axis=3)
    ref = np.minimum(obs + rs.uniform(0, 1, [4, 64, 64, 3]), 1.0).transpose(0, 3, 1, 2)
    assert np.allclose(ours, ref, atol=1e-7)
    sprite = R.render_classes(f).astype(bool)
    assert (ours.transpose(1, 0, 2, 3)[:, sprite] == 1).all()


def test_scream_matches_dlib_formula():
    texture = dsprites.generated_scream_texture(seed=1)
    ds = dsprites.ScreamDSprites(texture)
    f = get_dataset("dsprites").sample_factors(3, 2)
    ours = ds.sample_observations_from_factors(f, np.random.RandomState(7))
    rs = np.random.RandomState(7)
    obs = np.repeat(dlib_binary(f, rs), 3, axis=3)
    for i in range(3):
        x = rs.randint(0, texture.shape[0] - 64)
        y = rs.randint(0, texture.shape[1] - 64)
        bg = (texture[x : x + 64, y : y + 64] + rs.uniform(0, 1, size=3)) / 2.0
        mask = obs[i] == 1
        bg[mask] = 1 - bg[mask]
        obs[i] = bg
    assert np.allclose(ours, obs.transpose(0, 3, 1, 2), atol=1e-6)


def test_scream_texture_provenance_and_user_image(tmp_path):
    ds = get_dataset("scream_dsprites", data_dir=tmp_path)
    assert ds.provenance["scream_texture"].startswith("generated")
    from PIL import Image

    (tmp_path / "scream").mkdir()
    rgb = (np.random.default_rng(0).uniform(0, 255, (500, 400, 3))).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "scream" / "scream.jpg")
    ds = get_dataset("scream_dsprites", data_dir=tmp_path)
    assert ds.provenance["scream_texture"] == "file:scream.jpg"
    assert ds.texture.shape == (274, 219, 3)  # thumbnail keeps the aspect inside 350 x 274
    assert ds.sample(2, 0)[1].shape == (2, 3, 64, 64)


def test_variants_are_not_deterministic_but_dsprites_is():
    assert get_dataset("dsprites").deterministic
    for name in ("color_dsprites", "noisy_dsprites", "scream_dsprites"):
        assert not get_dataset(name).deterministic
