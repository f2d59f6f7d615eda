"""The Sampler: the solver picks its field, exact NFE, chunking, seeds, conditioning, gradients, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given

import genflow as gf
from genflow.errors import (
    ComponentError,
    ConfigError,
    DTypeError,
    GeneratorRequiredError,
    NonFiniteError,
    ShapeError,
    TimeGridError,
    TimeRangeError,
)
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
    if isinstance(solver, (gf.FixedStepODESolver, gf.DDPM, gf.DDIM, gf.DPMSolverPP)):
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
    assert sampler.grid.registry_name == gf.DDIM.default_grid == "uniform"  # the solver's declared default wins
    assert isinstance(gf.Sampler(process, model, gf.RK4()).grid, gf.KarrasGrid)  # else the process's default
    assert gf.Sampler(gf.VPProcess(), model, gf.RK4()).grid.registry_name == "logsnr"
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


@pytest.mark.parametrize("solver", [gf.RK4(), gf.DDIM(eta=0.0)], ids=["rk4", "ddim"])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_gradient_through_sampling_matches_finite_differences(solver, checkpoint):
    """d <w, samples> / d x_init by autograd against central differences (exact mixture score, float64)."""
    process = gf.VPProcess()
    model = CountingModel(GaussianMixtureScore(MIXTURE, process))
    sampler = gf.Sampler(process, model, solver, t_start=0.6, grid="uniform")
    gen = torch.Generator().manual_seed(3)
    x_init = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    w = torch.randn(4, 2, generator=gen, dtype=torch.float64)

    def objective(x: torch.Tensor, grad: bool) -> torch.Tensor:
        out = sampler.sample((4, 2), 6, generator=torch.Generator(), x_init=x, dtype=torch.float64, grad=grad,
                             checkpoint=checkpoint)  # fmt: skip
        return (w * out.samples).sum()

    x = x_init.clone().requires_grad_(True)
    value = objective(x, grad=True)
    calls_forward = model.calls
    value.backward()
    assert value.requires_grad and x.grad is not None
    # checkpointing recomputes each model call in the backward pass; without it nothing runs again
    assert (model.calls > calls_forward) == checkpoint
    h = 1e-6
    for i in range(4):
        for j in range(2):
            step = torch.zeros_like(x_init)
            step[i, j] = h
            fd = (objective(x_init + step, grad=False) - objective(x_init - step, grad=False)) / (2 * h)
            assert float(x.grad[i, j]) == pytest.approx(float(fd), rel=1e-6, abs=1e-8)


def test_sampling_records_no_graph_by_default():
    process = gf.VPProcess()
    x_init = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    sampler = gf.Sampler(process, GaussianMixtureScore(MIXTURE, process), gf.Euler())
    out = sampler.sample((3, 2), 4, generator=torch.Generator(), x_init=x_init, dtype=torch.float64)
    assert not out.samples.requires_grad


class _ScoreLangevin(gf.Solver):
    """A toy solver family the Sampler has never heard of: Euler steps on the probability flow built from
    the denoiser's *score* (kind "score_flow"), to show that nothing in Sampler dispatches on kind."""

    kind = "score_flow"
    order = 1
    default_grid = "quadratic"

    def __init__(self) -> None:
        pass

    def field_from(self, denoiser):
        return denoiser.process.probability_flow(denoiser.score)

    def _solve(self, field, x, ts, *, generator, return_trajectory):
        states = [x]
        for t0, t1 in zip(ts[:-1], ts[1:], strict=True):
            states.append(states[-1] + (t1 - t0) * field(states[-1], t0))
        return states[-1], torch.stack(states), ts.numel() - 1


@pytest.fixture
def toy_solver_family():
    gf.SOLVERS.register("test_score_flow")(_ScoreLangevin)
    try:
        yield "test_score_flow"
    finally:
        gf.SOLVERS._entries.pop("test_score_flow")  # keep the registry as the other tests collected it


def test_a_new_solver_family_plugs_in_without_editing_sampler(toy_solver_family):
    process = gf.VPProcess()
    model = GaussianMixtureScore(MIXTURE, process)
    solver = gf.SOLVERS.create(toy_solver_family)
    sampler = gf.Sampler(process, model, solver)
    assert sampler.grid.registry_name == "quadratic"  # the solver's declared default beats the process's
    assert gf.Sampler(process, model, solver, grid="uniform").grid.registry_name == "uniform"
    out = sampler.sample((3, 2), 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # the same Euler scheme on the same probability-flow field gives the same result as the ODE solver
    euler = gf.Sampler(process, model, gf.Euler(), grid="quadratic")
    ref = euler.sample((3, 2), 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert out.nfe == 5 and torch.allclose(out.samples, ref.samples, atol=1e-10)


def test_denoise_final_refuses_a_non_finite_prediction():
    process = gf.VPProcess()
    model = GaussianMixtureScore(MIXTURE, process, parameterization="velocity")  # x0 from velocity: 0/0 at t = 0
    sampler = gf.Sampler(process, model, gf.Euler(), grid="uniform", t_end=0.0, denoise_final=True)
    with pytest.raises(NonFiniteError, match=r"final x0 prediction.*t=0\b") as info:
        sampler.sample((4, 2), 5, generator=torch.Generator().manual_seed(0))
    assert info.value.time == 0.0
    ok = gf.Sampler(process, model, gf.Euler(), grid="uniform", denoise_final=True)  # t_end = t_min > 0
    assert bool(torch.isfinite(ok.sample((4, 2), 5, generator=torch.Generator()).samples).all())


def test_steps_are_validated_before_anything_is_built():
    process = gf.VPProcess()
    built = []

    class RecordingGrid(gf.TimeGrid):
        def _grid(self, process, steps, t_start, t_end):
            built.append(steps)
            return torch.linspace(t_start, t_end, steps + 1, dtype=torch.float64)

    sampler = gf.Sampler(process, GaussianMixtureScore(MIXTURE, process), gf.DDIM(), grid=RecordingGrid())
    for bad in (100_000_000, 0, 2.5, True):
        with pytest.raises(TimeGridError, match=r"steps must be an integer in \[1, 100000\]"):
            sampler.sample((2, 2), bad, generator=torch.Generator())
    with pytest.raises(TimeGridError, match="steps"):
        RecordingGrid()(process, 100_001)
    assert built == []


def test_python_api_bad_arguments_raise_typed_errors():
    process = gf.VPProcess()
    sampler = gf.Sampler(process, GaussianMixtureScore(MIXTURE, process), gf.DDIM())
    gen = torch.Generator()
    with pytest.raises(DTypeError, match="cond must be a torch.Tensor or a list/tuple.*got int"):
        sampler.sample((2, 2), 3, generator=gen, cond=7)
    with pytest.raises(DTypeError, match="floating-point.*torch.int64"):
        sampler.sample((2, 2), 3, generator=gen, dtype=torch.int64)
    with pytest.raises(ConfigError, match="meta"):
        sampler.sample((2, 2), 3, generator=gen, device="meta")
    with pytest.raises(ConfigError, match="device string"):
        sampler.sample((2, 2), 3, generator=gen, device="not-a-device")
    with pytest.raises(DTypeError, match="x_init"):
        sampler.sample((2, 2), 3, generator=gen, x_init=[[0.0, 1.0], [1.0, 0.0]])
    lin = CountingModel(GaussianMixtureScore(MIXTURE, process))
    lin.register_parameter("w", torch.nn.Parameter(torch.zeros(1)))  # parameters on the CPU
    with pytest.raises(ComponentError, match="parameters are on cpu"):
        gf.Sampler(process, lin, gf.DDIM()).sample((2, 2), 3, generator=gen, device="cuda")


@pytest.mark.parametrize("solver", [gf.RK4(), gf.EulerMaruyama(), gf.DDIM()], ids=["rk4", "em", "ddim"])
def test_process_time_checks_cost_nothing_per_step(solver, monkeypatch):
    """Inside a solve the grid is already validated: the model's process calls skip their range checks."""
    import genflow.process.base as process_base

    checked = []
    original = process_base.check_time_range
    monkeypatch.setattr(process_base, "check_time_range", lambda t, name: checked.append(name) or original(t, name))
    process = gf.VPProcess()
    sampler = gf.Sampler(process, GaussianMixtureScore(MIXTURE, process), solver)
    out = sampler.sample((4, 2), 10, generator=torch.Generator().manual_seed(0))
    assert out.nfe >= 10
    # public calls outside the solve only (a log-SNR grid's end points, the prior's start time), none per step
    grid_calls = ["VPProcess.log_snr: t"] if sampler.grid.registry_name == "logsnr" else []
    assert checked == [*grid_calls, "VPProcess.prior: t"]
    with pytest.raises(TimeRangeError):
        process.sigma(torch.tensor([1.5]))  # outside a solve the check is on
