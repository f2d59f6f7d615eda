"""PurifiedClassifier: S-draw combination rules, its own generator, the gradient-mode context, torchattacks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genflow.errors import ConfigError
from genflow.purify import GradientModeError, PurifiedClassifier, ScorePurifier
from tests.purify.helpers import SHAPE, gen, images, tiny_ncsn


def _classifier(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(SHAPE), 3)).double()


def _defence(draws: int = 4, combine: str = "softmax", seed: int = 0) -> PurifiedClassifier:
    purifier = ScorePurifier(tiny_ncsn(), sigma_inj=0.3, max_steps=2)
    return PurifiedClassifier(purifier, _classifier(), draws=draws, combine=combine, seed=seed)


def _draw_logits(defence: PurifiedClassifier, x: torch.Tensor, seed: int) -> torch.Tensor:
    """The S per-draw logits, replayed: one purification of the draw-major repeated batch."""
    purified = defence.purifier.purify(x.repeat(defence.draws, 1, 1, 1), gen(seed))
    return defence.classifier(purified).reshape(defence.draws, len(x), -1)


@pytest.mark.parametrize("combine", ["softmax", "logits", "vote"])
def test_combination_rules(combine):
    defence, x = _defence(combine=combine, seed=11), images(5)
    out = defence(x)
    logits = _draw_logits(defence, x, 11)
    if combine == "softmax":
        torch.testing.assert_close(out.softmax(-1), logits.softmax(-1).mean(0))
        torch.testing.assert_close(out, logits.softmax(-1).mean(0).log())
    elif combine == "logits":
        torch.testing.assert_close(out, logits.mean(0))
    else:
        votes = nn.functional.one_hot(logits.argmax(-1), 3).double().mean(0)
        torch.testing.assert_close(out.exp() * (votes > 0), votes)
        assert torch.equal(out.argmax(-1), votes.argmax(-1))


def test_own_generator_reseed_and_global_rng():
    defence, x = _defence(), images(4)
    first = defence(x)
    assert not torch.equal(first, defence(x))  # fresh defence noise on every call
    defence.reseed(0)
    torch.manual_seed(1234)  # what torchattacks' APGD does: it must not fix (or change) the defence's noise
    state = torch.get_rng_state()
    assert torch.equal(first, defence(x))
    assert torch.equal(state, torch.get_rng_state())


def test_gradient_mode_context_sets_and_restores():
    defence, x = _defence(), images(2).requires_grad_(True)
    with defence.gradient_mode("bpda"):
        assert defence.purifier.gradient_mode == "bpda"
        assert defence.purifier.to_config()["gradient_mode"] == "bpda"
        defence(x).sum().backward()
    assert defence.purifier.gradient_mode == "full"
    with pytest.raises(RuntimeError), defence.gradient_mode("surrogate"):
        raise RuntimeError("an attack failed")
    assert defence.purifier.gradient_mode == "full"
    with pytest.raises(GradientModeError), defence.gradient_mode("none"):
        pass


def test_full_gradient_reaches_the_input():
    defence, x = _defence(), images(3).requires_grad_(True)
    nn.functional.cross_entropy(defence(x), torch.tensor([0, 1, 2])).backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_torchattacks_drives_it_within_the_budget():
    torchattacks = pytest.importorskip("torchattacks")
    defence = _defence(draws=2).float()
    x, y = images(4, dtype=torch.float32), torch.tensor([0, 1, 2, 0])
    eps = 8 / 255
    attack = torchattacks.PGD(defence, eps=eps, alpha=2 / 255, steps=3, random_start=True)
    adv = attack(x, y)
    assert float((adv - x).abs().max()) <= eps + 1e-6
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    assert not torch.equal(adv, x)


def test_bad_arguments_raise_config_errors():
    purifier = ScorePurifier(tiny_ncsn())
    with pytest.raises(ConfigError, match="Purifier"):
        PurifiedClassifier(nn.Identity(), _classifier())
    with pytest.raises(ConfigError, match="classifier"):
        PurifiedClassifier(purifier, lambda x: x)
    with pytest.raises(ConfigError, match="draws"):
        PurifiedClassifier(purifier, _classifier(), draws=0)
    with pytest.raises(ConfigError, match="combine"):
        PurifiedClassifier(purifier, _classifier(), combine="mean")
    with pytest.raises(ConfigError, match="seed"):
        PurifiedClassifier(purifier, _classifier(), seed=1.5)
