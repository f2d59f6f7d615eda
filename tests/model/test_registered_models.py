"""Every registered score model (the timm pattern): shapes, gradients, dtypes, errors, config round trip."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings

import genflow as gf
from genflow.errors import ShapeError
from genflow.model import count_flops
from tests.model.builders import NAMES, build, inputs, perturb_
from tests.strategies import batch_sizes, seeds

NO_SHAPE_CHECK: dict[str, str] = {}  # registered models that do not validate x (none today)


def _param(name: str):
    marks = []
    if name in NO_SHAPE_CHECK:
        marks.append(pytest.mark.xfail(reason=NO_SHAPE_CHECK[name], raises=RuntimeError, strict=True))
    return pytest.param(name, marks=marks)


def test_models_are_registered():
    assert {"dit", "uvit", "mlp", "energy_mlp"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=4)
@given(batch=batch_sizes, seed=seeds)
def test_output_has_input_shape(name, batch, seed):
    model, shape = build(name)
    perturb_(model.eval(), seed)
    x, t = inputs(shape, batch, seed)
    out = model(x, t)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()
    assert torch.equal(model(x, t[0]), model(x, t[:1].expand(batch)))  # scalar t broadcasts


@pytest.mark.parametrize("name", NAMES)
def test_declares_parameterization_and_blocks(name):
    model, _ = build(name)
    assert model.parameterization in gf.PARAMETERIZATIONS
    assert model.num_blocks is None or (isinstance(model.num_blocks, int) and model.num_blocks >= 0)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    model, shape = build(name)
    perturb_(model.train(), seed=1)
    x, t = inputs(shape, 3, seed=2)
    x.requires_grad_(True)
    model(x, t).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient at {pname}"


@pytest.mark.parametrize("name", NAMES)
def test_float32_and_float64_agree(name):
    model, shape = build(name)
    perturb_(model.eval(), seed=3)
    x, t = inputs(shape, 2, seed=4)
    out32 = model(x, t)
    out64 = model.double()(x.double(), t.double())
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), out32, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", [_param(n) for n in NAMES])
def test_bad_shapes_raise_shape_error(name):
    model, shape = build(name)
    x, t = inputs(shape, 2, seed=5)
    wrong_size = torch.randn(2, *shape[:-1], shape[-1] + 1)
    with pytest.raises(ShapeError, match=r"expect.*got"):
        model(wrong_size, t)
    with pytest.raises(ShapeError, match=r"expect.*got"):
        model(x.unsqueeze(1), t)
    with pytest.raises(ShapeError, match=r"\(2,\); got shape \(3,\)"):
        model(x, torch.rand(3))


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip_gives_identical_outputs(name):
    torch.manual_seed(0)
    model, shape = build(name)
    perturb_(model, seed=6)
    config = json.loads(json.dumps(model.to_config()))
    torch.manual_seed(0)
    rebuilt = gf.MODELS.from_config(config)
    assert type(rebuilt) is type(model) and rebuilt.to_config() == config
    rebuilt.load_state_dict(model.state_dict())
    x, t = inputs(shape, 2, seed=7)
    assert torch.equal(rebuilt.eval()(x, t), model.eval()(x, t))


@pytest.mark.parametrize("name", NAMES)
def test_flops_scale_with_batch(name):
    model, shape = build(name)
    x, t = inputs(shape, 4, seed=8)
    assert count_flops(model, x, t) == 2 * count_flops(model, x[:2], t[:2]) > 0
