"""SegmentConditionedModel: the wrapped backbone unchanged at start, segment routing, errors, copies, sampling."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import genflow as gf
from genflow.errors import ComponentError, ShapeError
from genflow.reflow import SegmentConditionedModel, SegmentGrid, SegmentHeun, SegmentSpecError

X = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
T = torch.tensor([1.0, 0.8, 0.6, 0.5, 0.2, 0.0])


def _backbone(kind="mlp"):
    torch.manual_seed(0)
    if kind == "dit":
        return gf.DiT(image_size=4, patch_size=2, hidden_size=16, depth=1, num_heads=2, parameterization="velocity")
    return gf.MLPScoreNet(dim=2, hidden_size=16, depth=1, parameterization="velocity")


def _perturbed(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.segment_embed.weight.add_(torch.randn(model.segment_embed.weight.shape, generator=g))
    return model


def test_fresh_wrapper_computes_what_its_backbone_computes():
    backbone = _backbone()
    model = SegmentConditionedModel(backbone, segments=3)
    assert model.parameterization == "velocity" and model.event_shape == (2,)
    with torch.no_grad():
        assert torch.equal(model(X, T), backbone(X, T))
        assert torch.equal(model(X, T, segment=2), backbone(X, T))


def test_segment_embedding_is_added_to_the_time_embedding():
    model = _perturbed(SegmentConditionedModel(_backbone(), segments=3))
    backbone, e = model.backbone, model.segment_embed.weight
    k = torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        c = backbone.time_embed(T) + e[k]  # the backbone's forward with c shifted by e_k, by hand
        h = backbone.input(X)
        for block in backbone.blocks:
            h = block(h, c)
        by_hand = backbone.output(torch.nn.functional.silu(backbone.out_norm(h)))
        torch.testing.assert_close(model(X, T, segment=k), by_hand)
        assert not torch.allclose(model(X, T, segment=0), model(X, T, segment=1))
        # no segment: taken from t, (tau_{k+1}, tau_k] is segment k
        torch.testing.assert_close(model(X, T), model(X, T, segment=model.segments.segment_of(T)))
        assert torch.equal(
            backbone(X, T), SegmentConditionedModel(_backbone(), segments=3)(X, T)
        )  # hook is per wrapper


def test_bad_segments_raise_typed_errors():
    model = SegmentConditionedModel(_backbone(), segments=3)
    with pytest.raises(SegmentSpecError, match=r"0\.\.2; got 3"):
        model(X, T, segment=3)
    with pytest.raises(SegmentSpecError, match=r"0\.\.2"):
        model(X, T, segment=torch.tensor([0, 1, 2, 3, 0, 0]))
    with pytest.raises(SegmentSpecError, match="integer tensor"):
        model(X, T, segment=torch.zeros(6))
    with pytest.raises(ShapeError, match=r"\(6,\); got \(2,\)"):
        model(X, T, segment=torch.tensor([0, 1]))
    with pytest.raises(ComponentError, match="no submodule 'embed'"):
        SegmentConditionedModel(_backbone(), segments=3, time_embedding="embed")
    with pytest.raises(SegmentSpecError):
        SegmentConditionedModel(_backbone(), segments=0)


def test_gradients_reach_the_segment_embedding_and_the_backbone():
    model = _perturbed(SegmentConditionedModel(_backbone(), segments=3))
    model(X, T).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert model.segment_embed.weight.grad.abs().sum(1).gt(0).all()  # every segment appears in T


def test_a_deep_copy_uses_its_own_embedding():
    model = _perturbed(SegmentConditionedModel(_backbone(), segments=3))
    clone = copy.deepcopy(model)  # what an EMA copy does
    with torch.no_grad():
        clone.segment_embed.weight.zero_()
        assert torch.equal(clone(X, T), clone.backbone(X, T))
        assert not torch.equal(model(X, T), model.backbone(X, T))


def test_config_round_trip_and_registry():
    model = _perturbed(SegmentConditionedModel(_backbone(), segments=[1.0, 0.4, 0.0]))
    rebuilt = gf.MODELS.from_config(json.loads(json.dumps(model.to_config())))
    rebuilt.load_state_dict(model.state_dict())
    assert type(rebuilt) is SegmentConditionedModel and rebuilt.segments == model.segments
    with torch.no_grad():
        assert torch.equal(rebuilt(X, T), model(X, T))


def test_wraps_a_transformer_backbone_and_samples_through_the_sampler():
    model = SegmentConditionedModel(_backbone("dit"), segments=2)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # DiT starts with a zero output layer (adaLN-Zero): give every parameter signal
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert not torch.allclose(
            model(x, torch.full((3,), 0.7), segment=0), model(x, torch.full((3,), 0.7), segment=1)
        )
    out = gf.Sampler(gf.LinearInterpolant(), model, SegmentHeun(2), grid=SegmentGrid(2)).sample(
        (3, 1, 4, 4), 4, generator=torch.Generator().manual_seed(0)
    )
    assert out.samples.shape == (3, 1, 4, 4) and out.nfe == 8 and torch.isfinite(out.samples).all()


def test_initial_weights_map_a_backbone_checkpoint_and_keep_a_full_one():
    backbone = gf.MLPScoreNet(hidden_size=8, depth=1, parameterization="velocity")
    model = SegmentConditionedModel(copy.deepcopy(backbone), segments=2)
    mapped = model.initial_weights(backbone.state_dict())
    assert set(mapped) == set(model.state_dict()) and not mapped["segment_embed.weight"].any()
    own = model.state_dict()
    assert model.initial_weights(own) is own
