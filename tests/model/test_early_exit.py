"""Early exit (ASE): the exit contract of every exitable model, and what DiT / U-ViT drop."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genflow.errors import DTypeError, ShapeError
from genflow.model import DiT, UViT, count_flops
from tests.model.builders import EXITABLE, build, inputs, perturb_
from tests.strategies import seeds


def test_transformers_are_exitable():
    assert {"dit", "uvit"} <= set(EXITABLE)


def _model(name: str, seed: int = 0):
    model, shape = build(name)
    return perturb_(model.eval(), seed), shape


@pytest.mark.parametrize("name", EXITABLE)
def test_full_exit_equals_no_exit(name):
    model, shape = _model(name)
    x, t = inputs(shape, 3, seed=1)
    full = model(x, t)
    assert torch.equal(model(x, t, exit=model.num_blocks), full)
    assert torch.equal(model(x, t, exit=torch.full((3,), model.num_blocks)), full)
    assert torch.equal(model(x, t, exit=torch.tensor(model.num_blocks)), full)


@pytest.mark.parametrize("name", EXITABLE)
@settings(max_examples=6)
@given(data=st.data(), seed=seeds)
def test_per_sample_depths_match_samples_run_alone(name, data, seed):
    model, shape = _model(name, seed % 1000)
    model.double()
    batch = data.draw(st.integers(2, 5), label="batch")
    depths = data.draw(st.lists(st.integers(0, model.num_blocks), min_size=batch, max_size=batch), label="depths")
    x, t = inputs(shape, batch, seed, dtype=torch.float64)
    out = model(x, t, exit=torch.tensor(depths))
    for i, d in enumerate(depths):
        torch.testing.assert_close(out[i : i + 1], model(x[i : i + 1], t[i : i + 1], exit=d), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", EXITABLE)
def test_fewer_blocks_cost_fewer_flops(name):
    model, shape = _model(name)
    x, t = inputs(shape, 2, seed=2)
    flops = [count_flops(model, x, t, exit=d) for d in range(model.num_blocks + 1)]
    assert all(a < b for a, b in zip(flops, flops[1:], strict=False)), flops
    report = model.block_flops(x, t)
    assert report.total == flops[-1] == count_flops(model, x, t)
    assert [report.at_exit(d) for d in range(model.num_blocks + 1)] == flops
    assert all(b > 0 for b in report.blocks)


@pytest.mark.parametrize("name", EXITABLE)
def test_per_sample_depths_save_compute(name):
    """Grouped execution: a mixed batch costs exactly the sum of its samples run alone."""
    model, shape = _model(name)
    x, t = inputs(shape, 3, seed=3)
    depths = [model.num_blocks, 0, 1]
    mixed = count_flops(model, x, t, exit=torch.tensor(depths))
    alone = sum(count_flops(model, x[i : i + 1], t[i : i + 1], exit=d) for i, d in enumerate(depths))
    assert mixed == alone < count_flops(model, x, t)


@pytest.mark.parametrize("name", EXITABLE)
def test_training_with_per_sample_depths(name):
    model, shape = _model(name)
    model.train()
    x, t = inputs(shape, 3, seed=4)
    model(x, t, exit=torch.tensor([1, 0, 1])).square().mean().backward()
    blocks = model.blocks if isinstance(model, DiT) else getattr(model, "out_blocks", None)
    if blocks is not None:  # blocks no sample reached get no gradient
        assert all(p.grad is not None for p in blocks[0].parameters())
        assert all(p.grad is None for p in blocks[-1].attn.parameters())


@pytest.mark.parametrize("name", EXITABLE)
def test_bad_exit_values_raise(name):
    model, shape = _model(name)
    x, t = inputs(shape, 2, seed=5)
    n = model.num_blocks
    for bad in (-1, n + 1, torch.tensor([0, n + 1])):
        with pytest.raises(ShapeError, match=rf"\[0, {n}\]; got values in"):
            model(x, t, exit=bad)
    with pytest.raises(ShapeError, match=r"\(2,\); got \(3,\)"):
        model(x, t, exit=torch.zeros(3, dtype=torch.long))
    for bad in (1.5, True, torch.tensor([1.0, 1.0]), "2"):
        with pytest.raises(DTypeError, match="exit must be"):
            model(x, t, exit=bad)


def _zero_branch_outputs(modules) -> None:
    with torch.no_grad():
        for module in modules:
            module.weight.zero_()
            module.bias.zero_()


@pytest.mark.parametrize("depth", [0, 2, 3])
def test_dit_exit_equals_identity_for_later_blocks(depth):
    """DiT with exit=d equals the full DiT whose blocks >= d are identities (adaLN-Zero gates at zero)."""
    model = perturb_(DiT(depth=4).eval(), 0)
    x, t = inputs(model.event_shape, 2, seed=6)
    early = model(x, t, exit=depth)
    _zero_branch_outputs(block.modulation[1] for block in model.blocks[depth:])
    torch.testing.assert_close(early, model(x, t), rtol=0, atol=1e-6)


def _count_calls(modules, counts: dict[str, int], key: str) -> list:
    def hook(*_):
        counts[key] += 1

    return [m.register_forward_hook(hook) for m in modules]


@pytest.mark.parametrize("depth", [0, 1])
def test_uvit_dropped_block_keeps_skip_fusion(depth):
    """U-ViT with exit=d equals the full U-ViT whose out-blocks >= d have zero attention and MLP outputs."""
    model = perturb_(UViT(depth=5).eval(), 0)
    x, t = inputs(model.event_shape, 2, seed=7)
    calls = {"fuse": 0, "attn": 0, "mlp": 0}
    hooks = _count_calls([b.skip_linear for b in model.out_blocks], calls, "fuse")
    hooks += _count_calls([b.attn for b in model.out_blocks], calls, "attn")
    hooks += _count_calls([b.mlp for b in model.out_blocks], calls, "mlp")
    early = model(x, t, exit=depth)
    for h in hooks:
        h.remove()
    assert calls == {"fuse": model.num_blocks, "attn": depth, "mlp": depth}
    dropped = model.out_blocks[depth:]
    _zero_branch_outputs([m for b in dropped for m in (b.attn.proj, b.mlp.fc2)])
    torch.testing.assert_close(early, model(x, t), rtol=0, atol=1e-6)
    with torch.no_grad():  # fusion bypassed too ([h ; skip] -> h): a different function
        for b in dropped:
            width = b.skip_linear.out_features
            b.skip_linear.weight.copy_(torch.cat([torch.eye(width), torch.zeros(width, width)], dim=1))
            b.skip_linear.bias.zero_()
    assert not torch.allclose(early, model(x, t), atol=1e-4)
