"""Sampling with an exit policy: every solver, depths from the solver's own times, FLOPs as counted by torch."""

from __future__ import annotations

import pytest
import torch

import genflow as gf
from genflow.errors import ComponentError
from genflow.exit import EarlyExitModel, LinearExit, StaircaseExit
from genflow.exit.base import ExitSchedule
from genflow.model.flops import flop_counter
from tests.exit.helpers import tiny_dit, tiny_uvit

SHAPE = (3, 1, 8, 8)
STEPS = 6
ADAPTIVE = {"dopri5", "dopri8", "bosh3", "adaptive_heun"}


def _solver(name: str) -> gf.Solver:
    return gf.SOLVERS.create(name, rtol=5e-2, atol=5e-2) if name in ADAPTIVE else gf.SOLVERS.create(name)


def _sample(sampler: gf.Sampler, **kwargs) -> gf.SampleOutput:
    return sampler.sample(SHAPE, STEPS, generator=torch.Generator().manual_seed(1), **kwargs)


class RecordingDiT(gf.DiT):
    """A DiT that records the times and the ``exit=`` of every call."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seen: list[tuple[list[float], object]] = []

    def forward(self, x, t, *, cond=None, exit=None):
        self.seen.append((t.reshape(-1).tolist(), exit))
        return super().forward(x, t, cond=cond, exit=exit)


def _recording_dit() -> RecordingDiT:
    model = RecordingDiT(image_size=8, patch_size=4, hidden_size=32, depth=4, num_heads=2)
    model.load_state_dict(tiny_dit().state_dict())
    return model


@pytest.mark.parametrize("name", sorted(gf.SOLVERS.names()))
def test_the_full_policy_reproduces_plain_sampling_bit_for_bit(name):
    model = tiny_dit()
    plain = _sample(gf.Sampler(gf.VPProcess(), model, _solver(name)))
    full = _sample(gf.Sampler(gf.VPProcess(), model, _solver(name), exit_policy="full"))
    assert torch.equal(plain.samples, full.samples)
    assert plain.nfe == full.nfe and plain.flops == full.flops > 0


@pytest.mark.parametrize("name", ["ddpm", "ddim", "dpm_solver_pp", "heun", "dopri5", "euler_maruyama"])
def test_each_call_runs_the_policy_depth_for_the_time_the_solver_asked(name):
    model = _recording_dit()
    policy = LinearExit(1.0, 0.0)
    sampler = gf.Sampler(gf.VPProcess(), model, _solver(name), exit_policy=policy)
    model.seen.clear()  # the wrapper measured its per-block FLOPs on one call
    out = _sample(sampler)
    assert len(model.seen) == out.model_calls
    depths = set()
    for times, exit in model.seen:
        assert isinstance(exit, int)  # a time shared by the batch: a host int, no tensor op
        assert all(exit == policy.depth(t, 4) for t in times)
        depths.add(exit)
    assert len(depths) > 1


def test_an_adaptive_solver_gets_its_depths_from_its_own_times():
    model = _recording_dit()
    policy = StaircaseExit(depths=[4, 3, 2, 1])
    sampler = gf.Sampler(gf.VPProcess(), model, gf.Dopri5(rtol=1e-3, atol=1e-3), exit_policy=policy)
    model.seen.clear()
    out = _sample(sampler)
    grid = set(out.ts.tolist())
    off_grid = [(times[0], exit) for times, exit in model.seen if times[0] not in grid]
    assert off_grid  # dopri5 asks for times between the output times
    assert all(exit == policy.depth(t, 4) for t, exit in off_grid)


def test_per_sample_times_get_per_sample_depths():
    model = _recording_dit()
    wrapped = EarlyExitModel(model, LinearExit(1.0, 0.0))
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([0.05, 0.4, 0.6, 0.95])
    wrapped(x, t)
    exit = model.seen[-1][1]
    assert torch.equal(exit, torch.tensor([4, 2, 2, 0]))


def test_a_fixed_grid_is_read_once_and_its_depths_looked_up_by_index(monkeypatch):
    reads = []
    depth_at = ExitSchedule.depth_at
    monkeypatch.setattr(ExitSchedule, "depth_at", lambda self, t: reads.append(t) or depth_at(self, t))
    monkeypatch.setattr(torch, "bucketize", lambda *a, **k: pytest.fail("no per-step bucketize"))
    model = _recording_dit()
    sampler = gf.Sampler(gf.VPProcess(), model, gf.DDIM(), exit_policy=LinearExit(1.0, 0.0))
    model.seen.clear()
    out = _sample(sampler)
    assert len(reads) == STEPS + 1  # the whole grid, once, at the first call
    assert [exit for _, exit in model.seen] == [LinearExit(1.0, 0.0).depth(t, 4) for t in out.ts[:-1].tolist()]


def test_a_grid_changed_in_place_is_read_again():
    wrapped = EarlyExitModel(tiny_dit(), LinearExit(1.0, 0.0))
    grid = torch.tensor([0.9, 0.5, 0.1])
    assert wrapped.exit_depths(grid[0].expand(2), 2) == 0
    grid[0] = 0.05
    assert wrapped.exit_depths(grid[0].expand(2), 2) == 4


FLOP_CASES = [
    *((build, "ddim") for build in (tiny_dit, tiny_uvit)),
    (tiny_dit, "heun"),
]


@pytest.mark.parametrize(("build", "name"), FLOP_CASES)
@pytest.mark.parametrize("policy", [None, "full", LinearExit(1.0, 0.25)], ids=["plain", "full", "linear"])
def test_reported_flops_equal_torch_flop_counter_over_the_same_run(build, name, policy):
    sampler = gf.Sampler(gf.VPProcess(), build(), _solver(name), exit_policy=policy)
    for batch_size in (None, 2):  # the first run measures a plain model's cost, the second reuses it
        with flop_counter() as counter:
            out = _sample(sampler, batch_size=batch_size)
        assert out.flops == counter.get_total_flops() > 0
    if isinstance(policy, LinearExit):
        full = _sample(gf.Sampler(gf.VPProcess(), build(), _solver(name)))
        assert out.flops < full.flops


def test_exit_policy_errors():
    process, solver = gf.VPProcess(), gf.DDIM()
    with pytest.raises(ComponentError, match="num_blocks"):
        gf.Sampler(process, gf.MLPScoreNet(dim=2), solver, exit_policy="full")
    with pytest.raises(ComponentError, match="already wrapped"):
        gf.Sampler(process, EarlyExitModel(tiny_dit(), "full"), solver, exit_policy="full")
    with pytest.raises(ComponentError, match="more blocks|exit depths"):
        gf.Sampler(process, tiny_dit(), solver, exit_policy=StaircaseExit(depths=[8, 4]))


@pytest.mark.slow
def test_reported_flops_equal_torch_flop_counter_for_an_adaptive_solve():
    for policy in (None, LinearExit(1.0, 0.25)):
        sampler = gf.Sampler(gf.VPProcess(), tiny_dit(), _solver("dopri5"), exit_policy=policy)
        with flop_counter() as counter:
            out = _sample(sampler)
        assert out.flops == counter.get_total_flops() > 0
