"""DiT and U-ViT specifics: class labels and label dropout, constructor and input errors."""

from __future__ import annotations

import pytest
import torch

from genflow.errors import ComponentError, ConfigError, DTypeError, ParameterizationError, ShapeError
from genflow.model import DiT, MLPScoreNet, UViT
from tests.model.builders import inputs, perturb_

TRANSFORMERS = [DiT, UViT]
SMALL = dict(hidden_size=32, depth=3, num_heads=2)


@pytest.mark.parametrize("cls", TRANSFORMERS)
def test_labels_condition_the_output_and_none_is_the_null_label(cls):
    model = perturb_(cls(num_classes=10, **SMALL).eval(), 0)
    x, t = inputs(model.event_shape, 3, seed=1)
    null = model(x, t)
    assert torch.equal(null, model(x, t, cond=torch.full((3,), 10)))
    labelled = model(x, t, cond=torch.tensor([0, 3, 9]))
    assert not torch.allclose(labelled, null)
    torch.testing.assert_close(labelled[1:2], model(x[1:2], t[1:2], cond=torch.tensor([3])))


@pytest.mark.parametrize("cls", TRANSFORMERS)
def test_label_dropout_only_in_training(cls):
    labels = torch.tensor([1, 2, 3])
    always = perturb_(cls(num_classes=10, class_dropout=1.0, **SMALL), 0)
    x, t = inputs(always.event_shape, 3, seed=2)
    null = always.eval()(x, t)
    assert not torch.allclose(always.eval()(x, t, cond=labels), null)
    torch.testing.assert_close(always.train()(x, t, cond=labels), always.train()(x, t))
    never = perturb_(cls(num_classes=10, class_dropout=0.0, **SMALL), 0)
    assert torch.equal(never.train()(x, t, cond=labels), never.eval()(x, t, cond=labels))


def test_label_drop_with_an_explicit_generator_is_reproducible():
    embed = DiT(num_classes=10).label_embed
    labels = torch.arange(10).repeat(20)
    first = embed.drop(labels, 0.3, torch.Generator().manual_seed(5))
    assert torch.equal(first, embed.drop(labels, 0.3, torch.Generator().manual_seed(5)))
    dropped = (first == embed.null_label).float().mean()
    assert 0.15 < dropped < 0.45 and torch.equal(first[first != 10], labels[first != 10])


@pytest.mark.parametrize("cls", TRANSFORMERS)
def test_bad_cond_raises(cls):
    x, t = inputs((1, 8, 8), 2, seed=3)
    with pytest.raises(ComponentError, match="num_classes=0.*no cond"):
        cls(**SMALL)(x, t, cond=torch.tensor([1, 2]))
    model = cls(num_classes=4, **SMALL)
    with pytest.raises(DTypeError, match="integer tensor"):
        model(x, t, cond=torch.tensor([1.0, 2.0]))
    with pytest.raises(ShapeError, match=r"\(2,\); got \(3,\)"):
        model(x, t, cond=torch.tensor([1, 2, 3]))
    with pytest.raises(ShapeError, match=r"\[0, 4\].*got values in \[1, 5\]"):
        model(x, t, cond=torch.tensor([1, 5]))


@pytest.mark.parametrize("cls", TRANSFORMERS)
def test_bad_input_dtype_raises(cls):
    model = cls(**SMALL)
    x, t = inputs(model.event_shape, 2, seed=4)
    with pytest.raises(DTypeError, match="float32 parameters; got x of dtype torch.float64"):
        model(x.double(), t)
    with pytest.raises(DTypeError, match="floating-point"):
        model(x.long(), t)


@pytest.mark.parametrize("cls", TRANSFORMERS)
def test_bad_constructor_arguments_raise(cls):
    with pytest.raises(ConfigError, match="patch_size must divide image_size"):
        cls(image_size=8, patch_size=3)
    with pytest.raises(ConfigError, match="divisible by num_heads"):
        cls(hidden_size=30, num_heads=4)
    with pytest.raises(ConfigError, match="class_dropout"):
        cls(class_dropout=1.5)
    with pytest.raises(ParameterizationError, match="got 'noise'"):
        cls(parameterization="noise")
    with pytest.raises(TypeError, match="accepted arguments: image_size, patch_size"):
        cls(learn_sigma=True)


def test_uvit_depth_must_be_odd_and_counts_out_blocks():
    with pytest.raises(ConfigError, match="odd"):
        UViT(depth=6)
    assert UViT(depth=7).num_blocks == 3 and DiT(depth=5).num_blocks == 5


def test_fresh_dit_outputs_zero_and_other_image_sizes_work():
    model = DiT(image_size=16, patch_size=4, in_channels=3, **SMALL)
    x, t = inputs(model.event_shape, 2, seed=5)
    assert torch.equal(model(x, t), torch.zeros_like(x))  # adaLN-Zero final layer
    assert UViT(image_size=16, patch_size=4, in_channels=3, **SMALL)(x, t).shape == x.shape


def test_parameterization_is_declared():
    assert DiT(parameterization="v").parameterization == "v"
    assert UViT(parameterization="x0").parameterization == "x0"
    assert MLPScoreNet(parameterization="velocity").parameterization == "velocity"


def test_mlp_score_net_is_unconditional():
    model = MLPScoreNet(dim=3)
    x, t = inputs((3,), 2, seed=6)
    with pytest.raises(ComponentError, match="unconditional"):
        model(x, t, cond=torch.tensor([0, 1]))
    assert torch.equal(model(x, t, exit=1), model(x, t))  # no exitable blocks: exit is ignored
    with pytest.raises(ConfigError, match="dim must be"):
        MLPScoreNet(dim=0)
