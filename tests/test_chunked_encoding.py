"""BetaVAE and FactorVAE on noisy data encode in pieces within a memory budget, and the pieces are
bitwise the codes of encoding everything at once: the same images (each gets the noise it got
before), the same metric values.

The golden digests below were recorded with the code before pieces existed (one call per array);
the datasets paint integer sprites and a random texture (no trigonometry), so the digests do not
depend on the CPU's maths library. A test here fails if the chunking ever changes a value.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from benchmark.data import get_dataset
from benchmark.data.dsprites import ColorDSprites, NoisyDSprites, ScreamDSprites
from benchmark.metrics import beta_vae, factor_vae
from benchmark.metrics.sampling import FactorEncoder
from benchmark.metrics.suite import evaluate


def _pattern(factors: np.ndarray) -> np.ndarray:
    """Binary 64x64 'sprites' from integer arithmetic, each depending on every factor."""
    yy, xx = np.mgrid[0:64, 0:64]
    f = factors[:, :, None, None]
    return ((((xx + 2 * f[:, 3] + f[:, 2]) * (yy + 2 * f[:, 4] + f[:, 1]) + f[:, 0]) % 3) == 0
            ).astype(np.uint8)


TEXTURE = np.random.default_rng(1).uniform(0.0, 1.0, (80, 90, 3))
DATA = {"color": lambda: ColorDSprites(_pattern), "noisy": lambda: NoisyDSprites(_pattern),
        "scream": lambda: ScreamDSprites(TEXTURE, _pattern)}
PIXELS = np.random.default_rng(7).choice(3 * 64 * 64, 16, replace=False)


def _representations(declare: bool) -> dict:
    """16 pixels, the same with noise of its own (fresh on every call), and all pixels.
    ``declare``: the noise-free ones say they are deterministic (then BetaVAE's pairs are cut)."""
    def pixels(obs):
        return obs.reshape(len(obs), -1)[:, PIXELS]

    gen = np.random.default_rng(11)

    def noisy(obs):
        z = obs.reshape(len(obs), -1)[:, PIXELS]
        return z + gen.standard_normal(z.shape).astype(np.float32)

    def raw(obs):
        return obs.reshape(len(obs), -1)

    if declare:
        pixels.deterministic = raw.deterministic = True
    return {"pixels": pixels, "noisy": noisy, "raw": raw}


def _digest(*arrays) -> str:
    h = hashlib.blake2b(digest_size=8)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


# Pool codes, BetaVAE features and labels, FactorVAE votes, and the next draw of the stream.
GOLDEN = {"color/noisy": "928c07b437ee7164", "color/pixels": "e0386e7cf16f6e3c",
          "color/raw": "1abd4f2fb3508f5b", "noisy/noisy": "454a154c8331b579",
          "noisy/pixels": "0bc1159cd4794165", "noisy/raw": "571d0b59b54322e1",
          "scream/noisy": "b1ab92324ccf131c", "scream/pixels": "4f867b47617b8a1e",
          "scream/raw": "5bd59f1950797e85"}


@pytest.mark.parametrize("chunk_bytes", [None, 1])
@pytest.mark.parametrize("declare", [False, True])
@pytest.mark.parametrize("variant", sorted(DATA))
def test_pieces_are_bitwise_one_call(variant, declare, chunk_bytes):
    data = DATA[variant]()
    draw = data.sample_factors
    for rep_name, rep in _representations(declare).items():
        rng = np.random.default_rng(3)
        # 24-row encoder batches: 3 points of 8 rows, the smallest direct piece
        enc = FactorEncoder(data, rep, rng, batch_size=24, chunk_bytes=chunk_bytes)
        pool = enc(draw(40, rng))
        x, y = beta_vae.features(draw, enc, 5, rng, 8, 10)
        codes = enc(draw(50, rng))
        gv = np.var(codes, axis=0, ddof=1)
        votes = factor_vae.votes(draw, enc, 5, rng, 8, 10, gv, np.sqrt(gv) >= 0.05)
        got = _digest(pool, x, y, votes, np.array([rng.integers(2**62)]))
        assert got == GOLDEN[f"{variant}/{rep_name}"], (variant, rep_name)


def test_a_small_budget_cuts_pieces_and_skips_the_first_arrays_draws():
    data = DATA["noisy"]()
    rep = _representations(True)["raw"]
    f1, f2 = (data.sample_factors(80, np.random.default_rng(s)) for s in (1, 2))
    enc = FactorEncoder(data, rep, np.random.default_rng(0), batch_size=24, chunk_bytes=1)
    pieces = list(enc.pairs(f1, f2, 8))
    assert [len(a) for a, _ in pieces] == [24, 24, 24, 8]
    whole = FactorEncoder(data, rep, np.random.default_rng(0), batch_size=24)
    c1, c2 = whole(f1), whole(f2)
    assert np.array_equal(np.concatenate([a for a, _ in pieces]), c1)
    assert np.array_equal(np.concatenate([b for _, b in pieces]), c2)
    assert enc.rng.integers(2**62) == whole.rng.integers(2**62)  # the stream goes on alike
    assert [len(c) for c in enc.chunks(f1, 8)] == [24, 24, 24, 8]
    # with noise of its own, the representation sees its calls in their order: no pieces
    noisy = _representations(True)["noisy"]
    assert len(list(FactorEncoder(data, noisy, np.random.default_rng(0), batch_size=24,
                                  chunk_bytes=1).pairs(f1, f2, 8))) == 1


# Values of the small noisy evaluation below, recorded before pieces existed.
GOLDEN_ROWS = {
    "noisy/beta_vae/eval_accuracy": "0x1.5555555555555p-3",
    "noisy/beta_vae/train_accuracy": "0x1.d555555555555p-1",
    "noisy/factor_vae/eval_accuracy": "0x1.5555555555555p-3",
    "noisy/factor_vae/num_active_dims": "0x1.0000000000000p+4",
    "noisy/factor_vae/train_accuracy": "0x1.2aaaaaaaaaaabp-1",
    "pixels/beta_vae/eval_accuracy": "0x1.5555555555555p-3",
    "pixels/beta_vae/train_accuracy": "0x1.aaaaaaaaaaaabp-2",
    "pixels/factor_vae/eval_accuracy": "0x1.5555555555555p-3",
    "pixels/factor_vae/num_active_dims": "0x1.0000000000000p+4",
    "pixels/factor_vae/train_accuracy": "0x1.5555555555555p-1",
}


@pytest.mark.parametrize("memory_bytes", [None, 32])  # 32 bytes: one piece per encoder batch
def test_noisy_evaluation_values_do_not_depend_on_the_memory_budget(memory_bytes):
    ov = {"beta_vae": {"batch_size": 8, "num_train": 12, "num_eval": 6},
          "factor_vae": {"batch_size": 8, "num_train": 12, "num_eval": 6,
                         "num_variance_estimate": 100}}
    reps = _representations(declare=True)
    rows = evaluate(DATA["noisy"](), {k: reps[k] for k in ("pixels", "noisy")}, seed=3,
                    metrics=list(ov), overrides=ov, encode_batch_size=32, memory_bytes=memory_bytes)
    got = {f"{r['representation']}/{r['metric']}/{r['key']}": float(r["value"]).hex() for r in rows}
    assert got == GOLDEN_ROWS


def _datasets():
    yield from (get_dataset(n) for n in ("dsprites_full", "color_dsprites", "noisy_dsprites",
                                         "scream_dsprites", "dummy_data"))


@pytest.mark.parametrize("data", list(_datasets()), ids=lambda d: d.name)
@pytest.mark.parametrize("state", [np.random.default_rng, np.random.RandomState])
def test_skipping_a_batch_leaves_the_state_rendering_it_leaves(data, state):
    a, b = (data.sample_factors(n, np.random.default_rng(n)) for n in (5, 3))
    rendered, skipped = state(4), state(4)
    data.sample_observations_from_factors(a, rendered)
    data.skip_observations(a, skipped)
    after = data.sample_observations_from_factors(b, rendered)
    assert np.array_equal(data.sample_observations_from_factors(b, skipped), after)
    assert np.array_equal(rendered.uniform(size=4), skipped.uniform(size=4))


def test_a_trained_models_representations_say_whether_they_are_deterministic():
    from benchmark.data.synthetic import IdentityData
    from benchmark.settings import TrainingSettings
    from benchmark.training import train

    data = IdentityData((3, 4, 5))
    config = TrainingSettings(steps=2, batch_size=8, num_latent=3, eval_batches=0, fit_samples=100,
                              device="cpu")
    vae = train("beta_vae", None, data, seed=0, config=config)
    raw = train("raw_pixels", None, data, seed=0, config=config)
    # the VAE's "sampled" draws fresh noise on every call: its pairs stay whole, in call order
    assert vae.represent("mean").deterministic and not vae.represent("sampled", seed=1).deterministic
    assert raw.represent("mean").deterministic and raw.represent("sampled", seed=1).deterministic
