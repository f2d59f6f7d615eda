"""The Sampler: dispatch by solver kind, exact NFE, chunking, seeds, conditioning."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given

import genflow as gf
from genflow.errors import ComponentError, GeneratorRequiredError, ShapeError
from genflow.testing import GaussianMixture, GaussianMixtureScore
from tests.strategies import event_shapes, seeds

MIXTURE = GaussianMixture.isotropic([0.4, 0.6], torch.tensor([[-1.0, 0.5], [1.0, -0.5]]), [0.3, 0.5])


class CountingModel(gf.ScoreModel):
    """Wraps a model, counts calls and records every time it is asked about."""

    def __init__(self, inner: gf.ScoreModel) -> None:
        super().__init__()
        self.inner = inner
        self.parameterization = inner.parameterization
        self.calls = 0
        self.times: list[float] = []
        self.conds: list = []

    def forward(self, x, t, *, cond=None, exit=None):
        self.calls += 1
        self.times += t.tolist()
        self.conds.append(cond)
        return self.inner(x, t)


SOLVER_CASES = [
    (gf.RK4(), 5),
    (gf.Dopri5(rtol=1e-4, atol=1e-4), 3),
    (gf.EulerMaruyama(), 8),
    (gf.SRK(), 4),
    (gf.DDPM(), 7),
    (gf.DDIM(eta=0.3), 6),
    (gf.DPMSolverPP(order=3), 9),
]


@pytest.mark.parametrize("solver,steps", SOLVER_CASES, ids=[type(s).__name__ for s, _ in SOLVER_CASES])
@pytest.mark.parametrize("denoise_final", [False, True])
def test_nfe_is_exact_and_times_stay_in_range(solver, steps, denoise_final):
    process = gf.VPProcess()
    model = CountingModel(GaussianMixtureScore(MIXTURE, process))
    out = gf.Sampler(process, model, solver, denoise_final=denoise_final).sample(
        (10, 2), steps, generator=torch.Generator().manual_seed(0), batch_size=4
    )
    assert out.model_calls == model.calls
    assert out.nfe == model.calls // 3 or solver.adaptive  # 3 chunks of the same work
    if solver.kind in ("diffusion",) or (solver.kind == "ode" and not solver.adaptive):
        assert out.nfe == steps * solver.nfe_per_step + int(denoise_final)
    assert 0.0 <= min(model.times) and max(model.times) <= 1.0
    assert out.samples.shape == (10, 2) and bool(torch.isfinite(out.samples).all())


@pytest.mark.parametrize("solver", [gf.DDPM(), gf.EulerMaruyama(), gf.DDIM()], ids=["ddpm", "em", "ddim"])
@given(seed=seeds, shape=event_shapes)
def test_same_seed_same_samples_any_event_shape(solver, seed, shape):
    d = 1
    for s in shape:
        d *= s
    mixture = GaussianMixture.isotropic([1.0], torch.zeros(1, *shape), 0.5)
    process = gf.VEProcess()
    sampler = gf.Sampler(process, GaussianMixtureScore(mixture, process), solver)
    a = sampler.sample((3, *shape), 4, generator=torch.Generator().manual_seed(seed), return_trajectory=True)
    b = sampler.sample((3, *shape), 4, generator=torch.Generator().manual_seed(seed))
    c = sampler.sample((3, *shape), 4, generator=torch.Generator().manual_seed(seed + 1))
    assert a.samples.shape == (3, *shape) and a.trajectory.shape == (5, 3, *shape)
    assert torch.equal(a.samples, b.samples) and not torch.equal(a.samples, c.samples)


def test_chunking_matches_per_chunk_sampling_and_slices_cond():
    process = gf.VPProcess()
    model = CountingModel(GaussianMixtureScore(MIXTURE, process))
    sampler = gf.Sampler(process, model, gf.DDIM())
    cond = torch.arange(10)
    out = sampler.sample((10, 2), 5, generator=torch.Generator().manual_seed(1), batch_size=4, cond=cond)
    assert [c.tolist() for c in model.conds[::5]] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    gen = torch.Generator().manual_seed(1)
    expected = torch.cat(
        [gf.Sampler(process, model.inner, gf.DDIM()).sample((b, 2), 5, generator=gen).samples for b in (4, 4, 2)]
    )
    assert torch.allclose(out.samples, expected)


def test_sampler_defaults_and_errors():
    process = gf.VEProcess()
    model = GaussianMixtureScore(MIXTURE, process)
    sampler = gf.Sampler(process, model, gf.DDIM())
    assert isinstance(sampler.grid, gf.KarrasGrid)  # the process's default grid
    assert gf.Sampler(gf.VPProcess(), model, gf.DDIM()).grid.registry_name == "logsnr"
    with pytest.raises(ShapeError, match="batch_size"):
        sampler.sample((4, 2), 3, batch_size=0, generator=torch.Generator())
    with pytest.raises(ShapeError, match="n >= 1"):
        sampler.sample((0, 2), 3, generator=torch.Generator())

    class Plain(torch.nn.Module):
        def forward(self, x, t):
            return x

    with pytest.raises(ComponentError, match="instance of ScoreModel; got Plain"):
        gf.Sampler(process, Plain(), gf.DDIM())

    class NoParam(gf.ScoreModel):
        def forward(self, x, t, *, cond=None, exit=None):
            return x

    with pytest.raises(ComponentError, match="parameterization"):
        gf.Sampler(process, NoParam(), gf.DDIM())
    with pytest.raises(GeneratorRequiredError, match="Sampler.sample.*manual_seed"):
        sampler.sample((4, 2), 3)

    class WrongShape(gf.ScoreModel):
        parameterization = "eps"

        def forward(self, x, t, *, cond=None, exit=None):
            return x[:, :1]

    with pytest.raises(ShapeError, match="returned shape"):
        gf.Sampler(process, WrongShape(), gf.DDIM()).sample((4, 2), 3, generator=torch.Generator())


@pytest.mark.parametrize("solver", [gf.DDIM(), gf.Euler()], ids=["ddim", "euler"])
def test_t_start_draws_the_prior_at_that_time_and_x_init_is_used(solver):
    mixture = GaussianMixture.isotropic([1.0], torch.zeros(1, 2), 0.05)
    process = gf.VEProcess()
    sampler = gf.Sampler(process, GaussianMixtureScore(mixture, process), solver, t_start=0.3, grid="uniform")
    out = sampler.sample((4000, 2), 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert 0.03 < float(out.samples.std()) < 0.08  # the data's 0.05, not sigma_max's scale
    x_init = torch.full((3, 2), 0.5, dtype=torch.float64)
    started = sampler.sample((3, 2), 5, generator=torch.Generator(), dtype=torch.float64, x_init=x_init,
                             return_trajectory=True)  # fmt: skip
    assert torch.equal(started.trajectory[0], x_init)
    with pytest.raises(ShapeError, match="x_init"):
        sampler.sample((4, 2), 5, generator=torch.Generator(), x_init=x_init)
    with pytest.raises(ShapeError, match="cond must have one entry per sample"):
        sampler.sample((8, 2), 5, generator=torch.Generator(), cond=torch.arange(3), batch_size=4)
