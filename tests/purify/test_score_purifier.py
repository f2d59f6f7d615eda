"""ADP (ScorePurifier): closed form on a Gaussian, determinism, stopping, gradient modes, typed errors."""

from __future__ import annotations

import pytest
import torch

import genflow as gf
from genflow.errors import ConfigError, DTypeError, GeneratorRequiredError
from genflow.purify import ChannelError, GradientModeError, PixelRangeError, ScorePurifier
from genflow.testing import GaussianMixture, GaussianMixtureScore
from tests.purify.helpers import SHAPE, VE, gen, images, point_score, tiny_energy, tiny_ncsn


def test_steps_follow_the_closed_form_on_a_gaussian():
    """For N(c, s0^2 I): f = -sigma (x - c) / (sigma^2 + s0^2), the line search gives alpha = lambda (sigma^2 + s0^2)
    / sigma exactly, so every step moves a fraction lambda of the way to c: x_K - c = (1 - lambda)^K (x_0 - c)."""
    purifier = ScorePurifier(point_score(0.5, 0.1), sigma_inj=0.05, max_steps=7, step_scale=0.05)
    x = images()
    out = purifier.purify(x, gen(1))
    start = (x + 0.05 * torch.randn(x.shape, generator=gen(1), dtype=x.dtype)).clamp(0, 1)
    torch.testing.assert_close(out, 0.5 + 0.95**7 * (start - 0.5))
    assert purifier.last_cost.evaluations == 2 * 7 * len(x)


def test_step_size_is_lambda_times_sigma_for_a_point_mass_and_is_clipped():
    purifier = ScorePurifier(point_score(0.5, 1e-4), sigma_inj=0.2, step_scale=0.05, max_step=0.1)
    from genflow.sampling import ModelDenoiser

    denoiser = ModelDenoiser(purifier.process, purifier.model)
    x = images()
    alpha = purifier.step_size(denoiser, x, purifier.direction(denoiser, x))
    torch.testing.assert_close(alpha, torch.full((3,), 0.05 * 0.2, dtype=x.dtype), rtol=1e-4, atol=0)
    clipped = ScorePurifier(point_score(0.5, 1e-4), sigma_inj=0.2, step_scale=5.0, max_step=0.1)
    alpha = clipped.step_size(denoiser, x, clipped.direction(denoiser, x))
    assert torch.equal(alpha, torch.full((3,), 0.1, dtype=x.dtype))


def test_samples_stop_for_good_when_the_step_is_small():
    x = images(4)
    frozen = ScorePurifier(point_score(), sigma_inj=0.1, stop_step=0.5)  # every step size (<= 0.1) stops at once
    out = frozen.purify(x, gen(2))
    torch.testing.assert_close(out, (x + 0.1 * torch.randn(x.shape, generator=gen(2), dtype=x.dtype)).clamp(0, 1))
    assert frozen.last_cost.evaluations == 2 * len(x)  # one line search each, no update
    never = ScorePurifier(point_score(), sigma_inj=0.1, stop_step=0.0, max_steps=5)
    never.purify(x, gen(2))
    assert never.last_cost.evaluations == 2 * 5 * len(x)


def test_per_sample_stopping_keeps_the_others_going():
    """Two tight clusters of different widths: alpha ~ lambda (sigma^2 + s_k^2) / sigma is 0.005 near the narrow
    one (stops at stop_step 0.01) and 0.05 near the wide one (keeps going)."""
    means = torch.stack([torch.full(SHAPE, 0.2), torch.full(SHAPE, 0.8)]).double()
    covariances = torch.stack([1e-4 * torch.eye(16), 0.09 * torch.eye(16)])
    mixture = GaussianMixture(torch.tensor([0.5, 0.5]), means, covariances)
    model = GaussianMixtureScore(mixture, VE, parameterization="score")
    purifier = ScorePurifier(model, sigma_inj=0.01, score_sigma=0.1, max_steps=5, stop_step=0.01)
    x = torch.stack([torch.full(SHAPE, 0.2), torch.full(SHAPE, 0.7)]).double()
    out = purifier.purify(x, gen(3))
    start = (x + 0.01 * torch.randn(x.shape, generator=gen(3), dtype=x.dtype)).clamp(0, 1)
    assert purifier.last_cost.evaluations == 2 + 2 * 5
    assert torch.equal(out[0], start[0])  # stopped at its first line search
    assert float((out[1] - 0.8).abs().mean()) < float((start[1] - 0.8).abs().mean())  # moved towards its mean


def test_deterministic_given_the_generator_and_blind_to_the_global_rng():
    purifier = ScorePurifier(tiny_ncsn(dtype=torch.float32), max_steps=3)
    x = images(dtype=torch.float32)
    torch.manual_seed(0)
    a = purifier.purify(x, gen(5))
    torch.manual_seed(123)  # an attack reseeding the global RNG changes nothing
    state = torch.get_rng_state()
    b = purifier.purify(x, gen(5))
    assert torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state())  # and the purifier never draws from it
    assert not torch.equal(a, purifier.purify(x, gen(6)))


def _directional_check(purifier, x, seed=3):
    """Autograd's directional derivative of <w, purify(x)> against central finite differences."""
    g = gen(9)
    v, w = torch.randn(x.shape, generator=g, dtype=x.dtype), torch.randn(x.shape, generator=g, dtype=x.dtype)
    x = x.clone().requires_grad_(True)
    (purifier.purify(x, gen(seed)) * w).sum().backward()
    h = 1e-6
    with torch.no_grad():
        plus = (purifier.purify(x + h * v, gen(seed)) * w).sum()
        minus = (purifier.purify(x - h * v, gen(seed)) * w).sum()
    fd = float((plus - minus) / (2 * h))
    assert abs(float((x.grad * v).sum()) - fd) < 1e-5 * max(1.0, abs(fd)), (float((x.grad * v).sum()), fd)


@pytest.mark.parametrize("build, checkpoint", [(tiny_ncsn, False), (tiny_energy, False), (tiny_energy, True)])
def test_full_gradient_matches_finite_differences(build, checkpoint):
    """With a fixed step size (min_step = max_step) the purification is a smooth function of x."""
    purifier = ScorePurifier(build(), sigma_inj=0.02, max_steps=3, min_step=2e-3, max_step=2e-3, stop_step=0.0,
                             checkpoint=checkpoint)  # fmt: skip
    _directional_check(purifier, images())


def test_full_gradient_on_the_gaussian_is_the_contraction():
    purifier = ScorePurifier(point_score(), sigma_inj=0.05, max_steps=4)
    x = images().requires_grad_(True)
    purifier.purify(x, gen()).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 0.95**4))


def test_bpda_gradient_is_the_identity_and_the_forward_is_unchanged():
    purifier = ScorePurifier(tiny_ncsn(), sigma_inj=0.1, max_steps=3, gradient_mode="bpda")
    x = images().requires_grad_(True)
    w = torch.randn(x.shape, generator=gen(4), dtype=x.dtype)
    out = purifier.purify(x, gen(1))
    (out * w).sum().backward()
    assert torch.equal(x.grad, w)
    purifier.gradient_mode = "full"
    with torch.no_grad():
        torch.testing.assert_close(out.detach(), purifier.purify(x, gen(1)))


def test_surrogate_runs_fewer_steps():
    purifier = ScorePurifier(point_score(), sigma_inj=0.05, max_steps=6, surrogate_steps=2, gradient_mode="surrogate")
    x = images()
    out = purifier.purify(x, gen())
    assert purifier.last_cost.evaluations == 2 * 2 * len(x)
    start = (x + 0.05 * torch.randn(x.shape, generator=gen(), dtype=x.dtype)).clamp(0, 1)
    torch.testing.assert_close(out, 0.5 + 0.95**2 * (start - 0.5))


def test_output_stays_in_the_unit_interval():
    purifier = ScorePurifier(tiny_ncsn(), sigma_inj=0.5, max_steps=3, min_step=0.1, max_step=0.1, stop_step=0.0)
    out = purifier.purify(images(8, lo=0.0, hi=1.0), gen())
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_bad_inputs_raise_typed_errors():
    purifier = ScorePurifier(tiny_ncsn())
    x = images()
    with pytest.raises(PixelRangeError, match=r"\[0, 1\]"):
        purifier.purify(x * 2 - 1, gen())
    with pytest.raises(PixelRangeError):
        purifier.purify(torch.full_like(x, float("nan")), gen())
    with pytest.raises(ChannelError, match="1 channel"):
        purifier.purify(x.repeat(1, 3, 1, 1), gen())
    with pytest.raises(ChannelError):
        purifier.purify(x[:, 0], gen())
    with pytest.raises(DTypeError):
        purifier.purify((x * 255).long(), gen())
    with pytest.raises(GeneratorRequiredError):
        purifier.purify(x, None)
    with pytest.raises(GradientModeError):
        purifier.gradient_mode = "identity"


def test_bad_arguments_raise_config_errors():
    with pytest.raises(ConfigError, match="variance-exploding"):
        ScorePurifier(tiny_ncsn(), process=gf.VPProcess())
    with pytest.raises(ConfigError, match="outside the process's noise levels"):
        ScorePurifier(tiny_ncsn(), score_sigma=20.0)
    with pytest.raises(ConfigError, match="min_step <= max_step"):
        ScorePurifier(tiny_ncsn(), min_step=0.2, max_step=0.1)
    with pytest.raises(ConfigError, match="max_steps"):
        ScorePurifier(tiny_ncsn(), max_steps=-1)
    with pytest.raises(ConfigError, match="process"):
        ScorePurifier(gf.MLPScoreNet(dim=16))
    with pytest.raises(GradientModeError):
        ScorePurifier(tiny_ncsn(), gradient_mode="straight")


def test_generation_range_models_see_mapped_pixels():
    """A model trained on [-1, 1] gets 2 x - 1 and sigma doubled; the purified pixels are the same."""
    direct = ScorePurifier(point_score(0.5, 0.1), sigma_inj=0.05, max_steps=3)
    mapped = ScorePurifier(point_score(0.0, 0.2), sigma_inj=0.05, max_steps=3, value_range="generation")
    x = images()
    torch.testing.assert_close(direct.purify(x, gen()), mapped.purify(x, gen()))
    assert mapped.image_shape == SHAPE


def test_full_gradient_holds_the_adaptive_step_sizes_fixed():
    """With adaptive steps, the full gradient is the derivative of the same computation with every step size (and
    stopping decision) held at the values the forward pass chose: finite differences of a replay agree."""
    means = torch.stack([torch.full(SHAPE, 0.4), torch.full(SHAPE, 0.6)]).double()
    covariances = torch.stack([0.05**2 * torch.eye(16), 0.2**2 * torch.eye(16)])  # between two unequal clusters,
    model = GaussianMixtureScore(GaussianMixture(torch.tensor([0.5, 0.5]), means, covariances), VE, "score")
    purifier = ScorePurifier(model, sigma_inj=0.02, score_sigma=0.2, max_steps=3, step_scale=0.3, stop_step=0.0)
    recorded = []  # the curvature along g, hence alpha, depends on x
    original = purifier.step_size

    def record(*args):
        alpha = original(*args)
        recorded.append(alpha.clone())
        return alpha

    purifier.step_size = record
    x = images(lo=0.45, hi=0.55).requires_grad_(True)
    w = torch.randn(x.shape, generator=gen(9), dtype=x.dtype)
    (purifier.purify(x, gen(3)) * w).sum().backward()
    assert len(recorded) == 3

    def replay(x_eval):
        steps = iter(recorded)
        purifier.step_size = lambda *args: next(steps)
        with torch.no_grad():
            return (purifier.purify(x_eval, gen(3)) * w).sum()

    v = torch.randn(x.shape, generator=gen(10), dtype=x.dtype)
    h = 1e-6
    fd = float((replay(x + h * v) - replay(x - h * v)) / (2 * h))
    grad = float((x.grad * v).sum())
    assert abs(grad - fd) < 1e-5 * max(1.0, abs(fd))
    purifier.step_size = original  # the derivative through the step sizes too is measurably different
    with torch.no_grad():
        full = (purifier.purify(x + h * v, gen(3)) * w).sum() - (purifier.purify(x - h * v, gen(3)) * w).sum()
    assert abs(float(full) / (2 * h) - grad) > 0.01 * abs(grad)
