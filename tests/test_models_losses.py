"""Each objective's maths against hand-computed values on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.models import losses
from benchmark.models.autoencoders import corrupt
from benchmark.models.base import BuildContext
from benchmark.models.infogan import gaussian_nll
from benchmark.models.vae import DIPVAE, AnnealedVAE, BetaTCVAE, GaussianVAE

LN2 = math.log(2.0)
T = torch.tensor
CTX = BuildContext((1, 4, 4), 2, "fc", "bernoulli", 1e-4, 8)


def test_bernoulli_loss_sums_over_pixels():
    x = T([[[[1.0, 0.0]]], [[[1.0, 1.0]]]])
    logits = T([[[[0.0, 0.0]]], [[[2.0, -1.0]]]])
    expected = [2 * LN2, math.log1p(math.exp(-2)) + math.log1p(math.exp(1))]
    assert losses.bernoulli_loss(x, logits).tolist() == pytest.approx(expected)


def test_l2_loss_applies_sigmoid():
    x, logits = T([[[[1.0, 0.0]]]]), T([[[[0.0, 0.0]]]])
    assert losses.l2_loss(x, logits).item() == pytest.approx(0.5)


def test_kl_of_known_gaussians():
    mean, logvar = T([[1.0, 0.0], [0.0, 0.0]]), T([[0.0, math.log(2.0)], [0.0, 0.0]])
    per_dim = losses.gaussian_kl_per_dim(mean, logvar)
    torch.testing.assert_close(per_dim, T([[0.5, 0.5 * (1 - LN2)], [0.0, 0.0]]))
    assert losses.gaussian_kl(mean, logvar).item() == pytest.approx((0.5 + 0.5 * (1 - LN2)) / 2)


def test_anneal_ramps_then_saturates():
    assert losses.anneal(10.0, 0, 100) == 0.0
    assert losses.anneal(10.0, 50, 100) == 5.0
    assert losses.anneal(10.0, 200, 100) == 10.0
    assert losses.annealed_regularizer(T(3.0), 1000.0, 5.0).item() == 2000.0


def test_covariance_and_dip_penalties():
    mean = T([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    torch.testing.assert_close(losses.covariance(mean), T([[0.5, 0.0], [0.0, 2.0]]))
    shifted = mean + T([3.0, -7.0])  # covariance is shift invariant
    torch.testing.assert_close(losses.covariance(shifted), T([[0.5, 0.0], [0.0, 2.0]]))
    cov = T([[2.0, 0.5], [0.5, 1.0]])
    assert losses.dip_penalty(cov, 3.0, 7.0).item() == pytest.approx(3 * 0.5 + 7 * 1.0)
    logvar = torch.log(T([[1.0, 3.0], [3.0, 1.0], [1.0, 3.0], [3.0, 1.0]]))  # E[σ²] = (2, 2)
    ii = losses.dip_covariance(mean, logvar, "ii")
    torch.testing.assert_close(ii, T([[2.5, 0.0], [0.0, 4.0]]))
    vae = DIPVAE(CTX, lambda_od=2.0, lambda_d_factor=10.0, dip_type="ii")
    reg = vae.regularizer(T(1.5), mean, logvar, mean, 0)
    assert reg.item() == pytest.approx(1.5 + 20.0 * ((2.5 - 1) ** 2 + (4.0 - 1) ** 2))


def test_tc_estimator_known_cases():
    # One latent dimension: q(z) and the product of marginals coincide → TC = 0 exactly.
    z = torch.randn(6, 1, generator=torch.Generator().manual_seed(0))
    assert losses.total_correlation(z, z * 0.5, torch.zeros(6, 1)).item() == pytest.approx(0, abs=1e-6)
    # Two sharp posteriors that share dimension 0 and are far apart in dimension 1: every marginal
    # logsumexp over dim 0 picks up both samples (+log 2), the joint only one → TC = −log 2.
    mean = T([[0.0, 0.0], [0.0, 10.0]])
    logvar = torch.full((2, 2), -10.0)
    assert losses.total_correlation(mean, mean, logvar).item() == pytest.approx(-LN2, abs=1e-5)


def test_tc_estimator_matches_a_direct_loop():
    g = torch.Generator().manual_seed(1)
    z, mean, logvar = (torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(3))
    expected = 0.0
    for j in range(5):
        logq = [[-0.5 * ((z[j, k] - mean[i, k]) ** 2 / logvar[i, k].exp() + logvar[i, k]
                         + math.log(2 * math.pi)) for k in range(3)] for i in range(5)]
        joint = torch.logsumexp(T([sum(row) for row in logq], dtype=torch.float64), 0)
        marg = sum(torch.logsumexp(T([logq[i][k] for i in range(5)], dtype=torch.float64), 0)
                   for k in range(3))
        expected += float(joint - marg) / 5
    assert losses.total_correlation(z, mean, logvar).item() == pytest.approx(expected, rel=1e-10)


def test_objective_regularizers():
    kl, mean, logvar = T(2.0), torch.zeros(3, 2), torch.zeros(3, 2)
    assert GaussianVAE(CTX, beta=4.0).regularizer(kl, mean, logvar, mean, 0).item() == 8.0
    annealed = AnnealedVAE(CTX, gamma=1000.0, c_max=10.0, iteration_threshold=100)
    assert annealed.regularizer(kl, mean, logvar, mean, 10).item() == pytest.approx(1000.0 * 1.0)
    assert annealed.regularizer(kl, mean, logvar, mean, 1000).item() == pytest.approx(8000.0)
    z = T([[0.0, 0.0], [0.0, 10.0]])
    tcvae = BetaTCVAE(CTX, beta=6.0)
    assert tcvae.regularizer(kl, z, torch.full((2, 2), -10.0), z, 0).item() == pytest.approx(
        2.0 - 5.0 * LN2, abs=1e-4)


def test_beta_tc_vae_is_dlibs_objective():
    # dlib's BetaTCVAE.regularizer, transcribed: kl + (beta - 1) * total_correlation, whose
    # minibatch-weighted estimate drops the log(N*M) constants (vae.py, `total_correlation`).
    g = torch.Generator().manual_seed(2)
    z, mean, logvar = (torch.randn(6, 3, generator=g, dtype=torch.float64) for _ in range(3))
    kl = T(1.5, dtype=torch.float64)
    zj, mi, lvi = z[:, None], mean[None], logvar[None]
    log_qz_prob = -0.5 * (math.log(2 * math.pi) + lvi + (zj - mi) ** 2 * torch.exp(-lvi))
    log_qz_product = torch.logsumexp(log_qz_prob, dim=1).sum(dim=1)
    log_qz = torch.logsumexp(log_qz_prob.sum(dim=2), dim=1)
    dlib = kl + (4.0 - 1.0) * (log_qz - log_qz_product).mean()
    ours = BetaTCVAE(CTX, beta=4.0).regularizer(kl, mean, logvar, z, 0)
    assert ours.item() == pytest.approx(dlib.item(), rel=1e-10)


def test_shuffle_codes_permutes_each_dimension_independently():
    z = torch.arange(40.0).view(20, 2)
    s = losses.shuffle_codes(z, torch.Generator().manual_seed(0))
    for j in range(2):
        assert sorted(s[:, j].tolist()) == z[:, j].tolist()
    assert not torch.equal(s, z)
    # pairs are broken: the row pairing of the two columns changed
    assert (s[:, 1] - s[:, 0] != 1).any()


def test_factor_vae_tc_and_discriminator_loss():
    assert losses.factor_vae_tc(T([[3.0, 1.0], [1.0, 0.0]])).item() == pytest.approx(1.5)
    probs_z = T([[0.5, 0.5], [0.5, 0.5]])
    probs_s = T([[0.75, 0.25], [0.75, 0.25]])
    assert losses.factor_vae_discriminator_loss(probs_z, probs_s).item() == pytest.approx(1.5 * LN2)


def test_sparsity_kl_and_gaussian_nll():
    assert losses.sparsity_kl(0.05, T([0.05, 0.05])).item() == pytest.approx(0.0, abs=1e-7)
    assert losses.sparsity_kl(0.05, T([0.5])).item() == pytest.approx(
        0.05 * math.log(0.1) + 0.95 * math.log(1.9))
    nll = gaussian_nll(T([[1.0, 0.0]]), T([[0.0, 0.0]]), T([[0.0, 0.0]]))
    assert nll.item() == pytest.approx(0.5 + math.log(2 * math.pi))


def test_corruptions():
    g = torch.Generator().manual_seed(0)
    x = torch.ones(1, 1, 100, 100)
    masked = corrupt(x, "masking", 0.25, g)
    assert set(masked.unique().tolist()) == {0.0, 1.0}
    assert float((masked == 0).float().mean()) == pytest.approx(0.25, abs=0.02)
    sp = corrupt(torch.full((1, 1, 100, 100), 0.5), "salt_pepper", 0.4, g)
    assert float((sp != 0.5).float().mean()) == pytest.approx(0.4, abs=0.02)
    assert float(corrupt(x, "gaussian", 0.1, g).std()) == pytest.approx(0.1, rel=0.1)
