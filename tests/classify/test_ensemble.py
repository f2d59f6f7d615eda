"""Ensemble: the mean of member probabilities (or logits), per-member outputs, features, FLOPs, errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from genflow.classify import CifarResNet, Ensemble, TimmClassifier, combine_logits
from genflow.errors import ComponentError, ConfigError
from tests.classify.builders import images, perturb_


def _members(count=3, **kwargs):
    args = {"num_classes": 5, "image_size": 8, "width": 4, **kwargs}
    return [perturb_(CifarResNet(**args), seed=i, scale=0.3).eval() for i in range(count)]


def test_forward_is_the_log_of_the_mean_member_probability():
    members = _members()
    x = images(members[0], 4, seed=0)
    probs = torch.stack([m(x).softmax(-1) for m in members]).mean(0)
    ensemble = Ensemble(members).eval()
    torch.testing.assert_close(ensemble(x).exp(), probs)
    torch.testing.assert_close(ensemble.predict_proba(x), probs)
    torch.testing.assert_close(ensemble.member_logits(x), torch.stack([m(x) for m in members]))
    averaged = Ensemble(members, combine="logits").eval()
    torch.testing.assert_close(averaged.predict_proba(x), torch.stack([m(x) for m in members]).mean(0).softmax(-1))


def test_combine_is_stable_for_extreme_logits():
    logits = torch.tensor([[[1000.0, 0.0]], [[0.0, 1000.0]]], dtype=torch.float64)  # (M=2, N=1, C=2)
    torch.testing.assert_close(combine_logits(logits), torch.full((1, 2), math.log(0.5), dtype=torch.float64))


def test_features_flops_and_subsets():
    members = _members()
    ensemble = Ensemble(members)
    x = images(members[0], 2, seed=1)
    feats = ensemble.features(x)
    assert len(feats) == 3 and all(torch.equal(f, m.features(x)) for f, m in zip(feats, members, strict=True))
    assert ensemble.flops(2) == sum(m.flops(2) for m in members) == 3 * members[0].flops(2)
    pair = ensemble.subset(2)
    assert len(pair) == 2 and pair.members[1] is members[1]


def test_members_of_different_architectures_combine():
    resnet = _members(1, in_chans=1, image_size=16)[0]
    other = TimmClassifier(arch="resnet10t", num_classes=5, in_chans=1, image_size=16).eval()
    ensemble = Ensemble([resnet, other]).eval()
    x = images(resnet, 2, seed=2)
    assert ensemble(x).shape == (2, 5)
    assert [f.shape[1] for f in ensemble.features(x)] == [4, other.features(x).shape[1]]


def test_config_round_trip():
    members = _members(2)
    ensemble = Ensemble(members, combine="logits")
    config = json.loads(json.dumps(ensemble.to_config()))
    rebuilt = Ensemble(config["members"], combine=config["combine"])
    rebuilt.load_state_dict(ensemble.state_dict())
    x = images(members[0], 2, seed=3)
    assert torch.equal(rebuilt.eval()(x), ensemble.eval()(x))


def test_bad_members_raise_typed_errors():
    with pytest.raises(ConfigError, match="at least one member"):
        Ensemble([])
    with pytest.raises(ConfigError, match="combine must be one of probs, logits"):
        Ensemble(_members(1), combine="median")
    with pytest.raises(ComponentError, match=r"members\[1\].num_classes must equal members\[0\]'s 5; got 3"):
        Ensemble([*_members(1), *_members(1, num_classes=3)])
    with pytest.raises(ComponentError, match="got the class CifarResNet itself"):
        Ensemble([CifarResNet])
    with pytest.raises(ConfigError, match=r"count must be in \[1, 2\]"):
        Ensemble(_members(2)).subset(3)
