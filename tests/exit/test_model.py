"""EarlyExitModel: the backbone at the policy's depth, through every kind of solver, with its FLOPs counted."""

from __future__ import annotations

import pytest
import torch

import genflow as gf
from genflow.errors import ComponentError
from genflow.exit import EarlyExitModel, FullExit, LinearExit, StaircaseExit, TableExit
from genflow.model.flops import flop_counter
from tests.exit.helpers import tiny_dit, tiny_uvit


def _batch(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.rand(n, generator=g)


@pytest.mark.parametrize("build", [tiny_dit, tiny_uvit], ids=["dit", "uvit"])
def test_a_constant_depth_equals_calling_the_model_with_that_exit(build):
    model = build()
    x, _ = _batch()
    for depth in range(model.num_blocks + 1):
        wrapped = EarlyExitModel(model, TableExit([depth], model.num_blocks))
        expected = model(x, torch.full((6,), 0.4), exit=depth)
        for t in (0.4, torch.tensor(0.4), torch.tensor(0.4).expand(6), torch.full((6,), 0.4)):
            assert torch.equal(wrapped(x, t), expected)
    assert not torch.equal(model(x, torch.full((6,), 0.4), exit=0), model(x, torch.full((6,), 0.4)))


@pytest.mark.parametrize("build", [tiny_dit, tiny_uvit], ids=["dit", "uvit"])
def test_per_sample_exits_equal_the_per_sample_runs(build):
    model = build()
    policy = LinearExit(1.0, 0.0)
    wrapped = EarlyExitModel(model, policy)
    x, t = _batch(8)
    depths = policy.depths(t, model.num_blocks)
    assert len(set(depths.tolist())) > 1  # the batch mixes depths
    out = wrapped(x, t)
    for i in range(8):
        alone = model(x[i : i + 1], t[i : i + 1], exit=int(depths[i]))
        torch.testing.assert_close(out[i : i + 1], alone, rtol=1e-5, atol=1e-6)


def test_exit_argument_forms():
    model = tiny_dit()
    wrapped = EarlyExitModel(model, StaircaseExit(depths=[4, 3, 1]))
    assert wrapped.exit_depths(0.5, 3) == 3 and isinstance(wrapped.exit_depths(0.5, 3), int)
    shared = wrapped.exit_depths(torch.tensor(0.9, dtype=torch.float64).expand(3), 3)
    assert shared == 1 and isinstance(shared, int)  # CPU time shared by the batch: a host int
    per_sample = wrapped.exit_depths(torch.tensor([0.1, 0.5, 0.9]), 3)
    assert isinstance(per_sample, torch.Tensor) and per_sample.tolist() == [4, 3, 1]
    x, _ = _batch(3)
    # an explicit exit overrides the policy
    assert torch.equal(wrapped(x, torch.full((3,), 0.9), exit=2), model(x, torch.full((3,), 0.9), exit=2))


def test_wrapper_forwards_the_backbone_declarations():
    model = tiny_dit(parameterization="v")
    wrapped = EarlyExitModel(model, "full")
    assert (wrapped.parameterization, wrapped.num_blocks, wrapped.event_shape) == ("v", 4, (1, 8, 8))
    assert isinstance(wrapped, gf.ScoreModel)
    assert list(wrapped.parameters()) == list(model.parameters())


@pytest.mark.parametrize("build", [tiny_dit, tiny_uvit], ids=["dit", "uvit"])
def test_flops_spent_equal_the_flop_counter_over_the_same_calls(build):
    model = build()
    wrapped = EarlyExitModel(model, LinearExit(1.0, 0.0))
    x, t = _batch(5)
    with flop_counter() as counter, torch.no_grad():
        wrapped(x, t)  # per-sample depths
        wrapped(x, 0.8)  # shared time on the host
        wrapped(x, torch.tensor(0.2).expand(5))
    assert wrapped.flops_spent == counter.get_total_flops() > 0
    wrapped.reset_flops()
    assert wrapped.flops_spent == 0
    given = EarlyExitModel(model, "full", block_flops=model.block_flops(x[:1], t[:1]))
    assert given._costs == wrapped._costs
    assert EarlyExitModel(model, "full", count_flops=False).flops_spent is None


def test_building_the_wrapper_leaves_the_mode_and_the_global_generator_alone():
    model = tiny_dit(num_classes=3).train()
    state = torch.get_rng_state()
    EarlyExitModel(model, "full")
    assert model.training and torch.equal(torch.get_rng_state(), state)


def test_flop_fraction_uses_the_measured_block_costs():
    wrapped = EarlyExitModel(tiny_dit(), StaircaseExit(depths=[4, 2]))
    # DiT blocks all cost the same, so the measured fraction equals the equal-blocks one
    assert wrapped.flop_fraction() == pytest.approx(0.75)
    assert wrapped.flop_fraction(times=[0.9, 0.8]) == pytest.approx(0.5)


def _process_solver_cases():
    return [
        ("eps", gf.VPProcess(), gf.DDIM()),
        ("eps", gf.VPProcess(), gf.Euler()),
        ("velocity", gf.LinearInterpolant(), gf.Heun()),
    ]


@pytest.mark.parametrize(("kind", "process", "solver"), _process_solver_cases(), ids=["ddim", "euler", "heun"])
def test_full_policy_reproduces_plain_sampling_bit_for_bit(kind, process, solver):
    model = tiny_dit(parameterization=kind)
    sampler_args = {"shape": (3, 1, 8, 8), "steps": 4}
    plain = gf.Sampler(process, model, solver).sample(**sampler_args, generator=torch.Generator().manual_seed(1))
    wrapped = EarlyExitModel(model, FullExit())
    exited = gf.Sampler(process, wrapped, solver).sample(**sampler_args, generator=torch.Generator().manual_seed(1))
    assert torch.equal(plain.samples, exited.samples) and plain.nfe == exited.nfe
    assert wrapped.flops_spent == exited.model_calls * 3 * wrapped._costs[-1]  # 3 samples at full depth


def test_an_adaptive_solver_gets_each_call_at_the_depth_of_its_own_time():
    model = tiny_dit()
    policy = StaircaseExit(depths=[4, 3, 2, 1])
    sampler = gf.Sampler(gf.VPProcess(), EarlyExitModel(model, policy), gf.Dopri5(rtol=1e-3, atol=1e-3))
    seen: list[tuple[torch.Tensor, object]] = []
    hook = model.register_forward_pre_hook(lambda m, args, kw: seen.append((args[1], kw["exit"])), with_kwargs=True)
    try:
        out = sampler.sample((2, 1, 8, 8), 2, generator=torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert bool(torch.isfinite(out.samples).all()) and len(seen) == out.model_calls
    times = [float(t[0]) for t, _ in seen]
    assert len(set(times)) > 4  # the solver chose its own times
    for t, exit in seen:
        expected = policy.depths(t, 4)
        assert torch.equal(torch.as_tensor(exit).expand_as(expected), expected)
    assert {int(torch.as_tensor(e).reshape(-1)[0]) for _, e in seen} == {4, 3, 2, 1}


def test_models_without_blocks_or_policies_that_do_not_fit_are_refused():
    with pytest.raises(ComponentError, match="num_blocks"):
        EarlyExitModel(gf.MLPScoreNet(), "full")
    with pytest.raises(ComponentError, match=r"\[0, 4\]"):
        EarlyExitModel(tiny_dit(), StaircaseExit(depths=[6, 2]))
    with pytest.raises(ComponentError, match="did you mean"):
        EarlyExitModel(tiny_dit(), FullExit)
