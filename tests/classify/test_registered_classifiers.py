"""Every registered classifier (the timm pattern): shapes, gradients, config round trip, features, FLOPs, errors."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genflow.classify import CLASSIFIERS, CifarResNet, TimmClassifier
from genflow.errors import ConfigError, DTypeError, ShapeError, UnknownComponentError
from tests.classify.builders import NAMES, NON_DEFAULT, build, images, perturb_


def test_classifiers_are_registered():
    assert {"cifar_resnet", "timm"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=3)
@given(batch=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_logits_have_the_declared_shape(name, batch, seed):
    model = perturb_(build(name).eval(), seed)
    x = images(model, batch, seed)
    logits = model(x)
    assert logits.shape == (batch, model.num_classes) and logits.dtype == x.dtype
    assert torch.isfinite(logits).all()
    # eval mode: each example's logits do not depend on the rest of the batch
    torch.testing.assert_close(model(x[:1]), logits[:1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    model = perturb_(build(name).train(), seed=1)
    x = images(model, 3, seed=2).requires_grad_(True)
    model(x).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient reaches {pname}"


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip_with_non_default_arguments_gives_identical_outputs(name):
    model = perturb_(build(name), seed=3).eval()
    config = json.loads(json.dumps(model.to_config()))
    for key, value in NON_DEFAULT[name].items():
        assert config[key] == value, f"{name}: argument {key} was not recorded"
    rebuilt = CLASSIFIERS.from_config(config)
    assert type(rebuilt) is type(model) and rebuilt.to_config() == config
    rebuilt.load_state_dict(model.state_dict())
    x = images(model, 2, seed=4)
    assert torch.equal(rebuilt.eval()(x), model(x))


@pytest.mark.parametrize("name", NAMES)
def test_features_are_an_early_feature_map(name):
    model = perturb_(build(name), seed=5).eval()
    x = images(model, 2, seed=6)
    feats = model.features(x)
    assert feats.ndim == 4 and feats.shape[0] == 2 and feats.shape[-1] <= model.image_size
    assert torch.isfinite(feats).all() and feats.abs().sum() > 0
    # the map depends on each example only
    torch.testing.assert_close(model.features(x[1:]), feats[1:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_flops_are_positive_and_linear_in_batch(name):
    model = build(name)
    assert model.flops(4) == 4 * model.flops(1) > 0
    assert model.training  # flops() restores the mode


def test_cifar_resnet_flops_match_a_hand_count():
    w, s, c = 4, 8, 10
    model = CifarResNet(num_classes=c, in_chans=1, image_size=s, depth=8, width=w)

    def conv(cin, cout, k, side):  # 2 * MACs of a convolution with a side x side output
        return 2 * cin * cout * k * k * side * side

    expected = (conv(1, w, 3, 8) + 2 * conv(w, w, 3, 8)
                + conv(w, 2 * w, 3, 4) + conv(2 * w, 2 * w, 3, 4) + conv(w, 2 * w, 1, 4)
                + conv(2 * w, 4 * w, 3, 2) + conv(4 * w, 4 * w, 3, 2) + conv(2 * w, 4 * w, 1, 2)
                + 2 * 4 * w * c)  # fmt: skip
    assert model.flops(1) == expected


@pytest.mark.parametrize("name", NAMES)
def test_bad_images_raise_typed_errors(name):
    model = build(name)
    x = images(model, 2, seed=7)
    with pytest.raises(ShapeError, match=r"expects images of shape .*got shape"):
        model(x[:, :, 1:])
    with pytest.raises(ShapeError, match=r"expects images of shape"):
        model(x[0])
    with pytest.raises(DTypeError, match="floating"):
        model((x * 255).to(torch.uint8))


def test_bad_arguments_raise_typed_errors():
    with pytest.raises(ConfigError, match="6 n \\+ 2"):
        CifarResNet(depth=10)
    with pytest.raises(ConfigError, match="width must be an int >= 1"):
        CifarResNet(width=0)
    with pytest.raises(UnknownComponentError, match="timm architecture"):
        TimmClassifier(arch="no_such_net")
    with pytest.raises(ConfigError, match="feature_index must be <"):
        TimmClassifier(arch="resnet10t", feature_index=9)
    with pytest.raises(TypeError, match="accepted arguments: num_classes"):
        CifarResNet(widht=8)
