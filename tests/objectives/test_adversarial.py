"""PGD adversarial training: the inner attack against FGSM and its budget, the loss formula, draws, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genflow.classify import CifarResNet, train_recipe
from genflow.errors import ConfigError, GeneratorRequiredError
from genflow.objectives import OBJECTIVES, PGDAdversarialTraining
from genflow.objectives.adversarial import pgd_perturb, project
from genflow.objectives.classification import random_crop
from genflow.recipe import load_recipe
from tests.classify.builders import images, perturb_


def _model() -> CifarResNet:
    return perturb_(CifarResNet(width=4), seed=0, scale=0.3).eval()


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_draw_is_reproducible_and_inside_the_unit_ball(norm):
    objective = PGDAdversarialTraining(norm=norm, pad=2)
    shapes = {"x": (1, 8, 8), "label": ()}
    a, b = (objective.draw(200, shapes, torch.Generator().manual_seed(0), dtype=torch.float32, device="cpu")
            for _ in range(2))  # fmt: skip
    assert torch.equal(a["start"], b["start"]) and torch.equal(a["offsets"], b["offsets"])
    size = a["start"].flatten(1).abs().amax(1) if norm == "Linf" else a["start"].flatten(1).norm(dim=1)
    assert a["start"].shape == (200, 1, 8, 8) and size.max() <= 1 + 1e-6 and size.mean() > 0.4
    with pytest.raises(GeneratorRequiredError):
        objective.draw(4, shapes, None, dtype=torch.float32, device="cpu")


def test_one_linf_step_from_zero_is_fgsm():
    model, labels = _model(), torch.tensor([0, 1, 2, 3])
    x = images(model, 4, seed=1)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), labels), x)
    fgsm = (x + 0.1 * grad.sign()).clamp(0, 1).detach()
    adv = pgd_perturb(model, x.detach(), labels, torch.zeros_like(x), eps=0.1, step_size=0.1, steps=1, norm="Linf")
    torch.testing.assert_close(adv, fgsm)


@pytest.mark.parametrize("norm,eps", [("Linf", 8 / 255), ("L2", 0.3)])
def test_pgd_respects_budget_and_raises_the_loss(norm, eps):
    model, labels = _model(), torch.arange(8) % 10
    x = images(model, 8, seed=2)
    start = torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) * 2 - 1
    start = start if norm == "Linf" else start / start.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    adv = pgd_perturb(model, x, labels, start, eps=eps, step_size=eps / 3, steps=6, norm=norm)
    delta = (adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
    assert (size <= eps * (1 + 1e-5)).all() and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(model(adv), labels) > F.cross_entropy(model(x), labels)
    torch.testing.assert_close(project(adv, x, eps, norm), adv)


def test_loss_is_cross_entropy_at_the_pgd_examples_of_the_crops():
    model, labels = _model().train(), torch.tensor([0, 1, 2, 3, 4, 9])
    x = images(model, 6, seed=4)
    objective = PGDAdversarialTraining(epsilon=0.1, step_size=0.05, steps=2, clean_weight=0.25)
    draws = objective.draw(6, {"x": (1, 8, 8)}, torch.Generator().manual_seed(5), dtype=torch.float32, device="cpu")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    loss = objective.loss(model, {"x": x, "label": labels}, draws)
    model.load_state_dict(state)  # undo the batch-norm statistics the training forward passes updated
    assert model.training  # the inner attack ran in eval mode and restored the mode
    crops = random_crop(x, draws["offsets"], 1)
    model.eval()
    adv = pgd_perturb(model, crops, labels, draws["start"], eps=0.1, step_size=0.05, steps=2, norm="Linf")
    model.train()
    expected = 0.75 * F.cross_entropy(model(adv), labels) + 0.25 * F.cross_entropy(model(crops), labels)
    torch.testing.assert_close(loss, expected)
    metrics = objective.metrics(model.eval(), {"x": x, "label": labels})
    assert set(metrics) == {"accuracy", "nll", "robust_accuracy"} and metrics["robust_accuracy"].shape == (6,)
    assert metrics["robust_accuracy"].sum() <= metrics["accuracy"].sum()


@pytest.mark.parametrize(
    "kwargs",
    [{"epsilon": 0.0}, {"step_size": -1.0}, {"steps": 0}, {"norm": "L1"}, {"clean_weight": 1.5}, {"pad": -1}],
)
def test_bad_arguments_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        PGDAdversarialTraining(**kwargs)


def test_recipe_trains_through_the_trainer(tmp_path):
    recipe = load_recipe("digits_pgd_at", ["trainer.steps=4", "trainer.validate_every=2", "model.width=4"])
    assert OBJECTIVES.from_config(recipe.config["objective"]).to_config() == recipe.config["objective"]
    trained = train_recipe(recipe, out_dir=tmp_path, progress=False)
    assert "val_robust_accuracy" in trained.validations[0][0]
