"""The sigma^2 weighting of denoising score matching (Song & Ermon 2019, eq. 6) on VE score models."""

from __future__ import annotations

import torch

import genflow as gf
from genflow.model.ncsn import NoiseConditionalScoreNet

VE = gf.VEProcess(0.01, 5.0)


def _level_losses(model, objective, x, sigmas, seed=0):
    """The objective's loss with every sample at one noise level, per level."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for sigma in sigmas:
        t = VE.t_from_log_snr(torch.tensor(-float(torch.log(torch.tensor(sigma))))).float().clamp(0, 1).expand(len(x))
        draws = {"t": t, "noise": torch.randn(x.shape, generator=g)}
        with torch.no_grad():
            out.append(float(objective.loss(model, {"x": x}, draws)))
    return torch.tensor(out)


def _digits(n=64):
    data = gf.load_digits_split("train", size=8, value_range="classification")
    return torch.stack([data[i][0] for i in range(n)])


def test_sigma2_weight_is_sigma_squared_for_score_and_one_for_eps():
    objective = gf.DenoisingScoreMatching(VE, weighting="sigma2")
    t = torch.tensor([0.0, 0.3, 0.9])
    xt = torch.zeros(3, 2)
    torch.testing.assert_close(objective._sigma2_weight("score", xt, t), VE.sigma(t.clamp(1e-5, 1 - 1e-5)) ** 2)
    torch.testing.assert_close(objective._sigma2_weight("eps", xt, t), torch.ones(3))


def test_sigma2_loss_of_ncsn_is_the_eps_error_of_its_trunk():
    torch.manual_seed(0)
    model = NoiseConditionalScoreNet((1, 8, 8), VE, hidden_size=8, depth=1)
    x = _digits(8)
    g = torch.Generator().manual_seed(1)
    draws = gf.DenoisingScoreMatching(VE).draw(8, {"x": (1, 8, 8)}, g, dtype=torch.float32, device="cpu")
    loss = gf.DenoisingScoreMatching(VE, weighting="sigma2").loss(model, {"x": x}, draws)
    xt = x + VE.sigma(draws["t"])[:, None, None, None] * draws["noise"]
    expected = (model.trunk(xt, draws["t"]) - draws["noise"]).pow(2).mean()  # s = -F / sigma, target -eps / sigma
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-6)


def test_weighted_per_level_losses_are_order_one_after_short_training():
    """Unweighted, the score loss spans ~1/sigma^2 (5 decades over 0.01..5); sigma^2-weighted every level is O(1)
    and short training lowers all of them."""
    x = _digits(128)
    sigmas = [0.01, 0.05, 0.2, 1.0, 5.0]
    torch.manual_seed(0)
    model = NoiseConditionalScoreNet((1, 8, 8), VE, hidden_size=16, depth=2)
    weighted = gf.DenoisingScoreMatching(VE, weighting="sigma2")
    plain = gf.DenoisingScoreMatching(VE)
    raw = _level_losses(model, plain, x, sigmas)
    assert raw[0] / raw[-1] > 1e4  # the imbalance the weighting removes
    before = _level_losses(model, weighted, x, sigmas)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    g = torch.Generator().manual_seed(2)
    for _ in range(60):
        draws = weighted.draw(len(x), {"x": (1, 8, 8)}, g, dtype=torch.float32, device="cpu")
        loss = weighted.loss(model, {"x": x}, draws)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _level_losses(model, weighted, x, sigmas)
    assert bool(((before > 0.3) & (before < 3.0)).all()), before
    assert bool(((after > 0.01) & (after < 1.5)).all()), after
    assert float(after.mean()) < 0.8 * float(before.mean())
