"""The cross-entropy objective: crops against a hand construction, the loss against its formula, metrics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genflow.classify import CifarResNet
from genflow.errors import ConfigError, DTypeError, GeneratorRequiredError, LabelError, ShapeError
from genflow.objectives import OBJECTIVES, CrossEntropy
from genflow.objectives.classification import random_crop
from tests.classify.builders import images, perturb_


def test_crop_at_the_centre_is_the_identity_and_a_shift_moves_pixels():
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3)
    torch.testing.assert_close(random_crop(x, torch.tensor([[1, 1], [1, 1]]), 1), x)
    out = random_crop(x, torch.tensor([[0, 2], [2, 1]]), 1)
    # example 0: window starts one row up and one column right -> top row zero, left two columns shifted left
    expected0 = torch.tensor([[0, 0, 0], [1, 2, 0], [4, 5, 0]], dtype=torch.float32)
    expected1 = torch.tensor([[12, 13, 14], [15, 16, 17], [0, 0, 0]], dtype=torch.float32)
    torch.testing.assert_close(out[0, 0], expected0)
    torch.testing.assert_close(out[1, 0], expected1)
    flipped = random_crop(x, torch.tensor([[1, 1], [1, 1]]), 1, flips=torch.tensor([True, False]))
    torch.testing.assert_close(flipped[0], x[0].flip(-1))
    torch.testing.assert_close(flipped[1], x[1])


def test_draw_is_reproducible_and_in_range():
    objective = CrossEntropy(pad=2, flip=True)
    shapes = {"x": (1, 8, 8), "label": ()}
    a = objective.draw(500, shapes, torch.Generator().manual_seed(0), dtype=torch.float32, device="cpu")
    b = objective.draw(500, shapes, torch.Generator().manual_seed(0), dtype=torch.float32, device="cpu")
    assert torch.equal(a["offsets"], b["offsets"]) and torch.equal(a["flips"], b["flips"])
    assert a["offsets"].shape == (500, 2) and set(a["offsets"].unique().tolist()) == {0, 1, 2, 3, 4}
    assert 0.4 < a["flips"].float().mean() < 0.6
    with pytest.raises(GeneratorRequiredError):
        objective.draw(4, shapes, None, dtype=torch.float32, device="cpu")


def test_loss_matches_the_smoothed_cross_entropy_formula():
    model = perturb_(CifarResNet(width=4), seed=0, scale=0.3).eval()
    x, labels = images(model, 6, seed=1), torch.tensor([0, 1, 2, 3, 4, 9])
    objective = CrossEntropy(label_smoothing=0.1, pad=1)
    draws = objective.draw(6, {"x": (1, 8, 8)}, torch.Generator().manual_seed(2), dtype=torch.float32, device="cpu")
    loss = objective.loss(model, {"x": x, "label": labels}, draws)
    log_p = model(random_crop(x, draws["offsets"], 1)).log_softmax(-1)
    target = 0.9 * F.one_hot(labels, 10) + 0.1 / 10
    torch.testing.assert_close(loss, -(target * log_p).sum(-1).mean())


def test_metrics_are_per_example_accuracy_and_nll():
    model = perturb_(CifarResNet(width=4), seed=3, scale=0.3).eval()
    x, labels = images(model, 5, seed=4), torch.tensor([0, 1, 2, 3, 4])
    metrics = CrossEntropy().metrics(model, {"x": x, "label": labels})
    log_p = model(x).log_softmax(-1)
    torch.testing.assert_close(metrics["nll"], -log_p[torch.arange(5), labels])
    torch.testing.assert_close(metrics["accuracy"], (log_p.argmax(-1) == labels).float())


def test_registered_fields_config_and_errors():
    assert CrossEntropy.fields == ("x", "label")
    objective = OBJECTIVES.from_config({"name": "cross_entropy", "label_smoothing": 0.2, "pad": 3, "flip": True})
    assert (objective.label_smoothing, objective.pad, objective.flip) == (0.2, 3, True)
    assert OBJECTIVES.from_config(objective.to_config()).to_config() == objective.to_config()
    with pytest.raises(ConfigError, match=r"label_smoothing must be in \[0, 1\)"):
        CrossEntropy(label_smoothing=1.0)
    with pytest.raises(ConfigError, match="pad must be an int >= 0"):
        CrossEntropy(pad=-1)
    model = CifarResNet(width=4)
    with pytest.raises(ShapeError, match="missing"):
        CrossEntropy().loss(model, {"x": torch.rand(2, 1, 8, 8)}, {"offsets": torch.ones(2, 2, dtype=torch.long)})
    offsets = {"offsets": torch.ones(2, 2, dtype=torch.long)}
    with pytest.raises(LabelError, match=r"\[0, 10\).*\[3, 12\]"):
        CrossEntropy().loss(model, {"x": torch.rand(2, 1, 8, 8), "label": torch.tensor([3, 12])}, offsets)
    with pytest.raises(DTypeError, match="integer"):
        CrossEntropy().metrics(model, {"x": torch.rand(2, 1, 8, 8), "label": torch.tensor([0.0, 1.0])})

