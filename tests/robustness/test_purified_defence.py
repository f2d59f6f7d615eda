"""genflow.robustness drives genflow.purify's PurifiedClassifier: hooks used, noise private, BPDA != full."""

from __future__ import annotations

import torch

from genflow.model.ncsn import NoiseConditionalScoreNet
from genflow.process import VEProcess
from genflow.purify import PurifiedClassifier, ScorePurifier
from genflow.robustness import PRESETS, attack_batch, evaluate_robustness, preset_settings


def _defended(classifier) -> PurifiedClassifier:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        score = NoiseConditionalScoreNet(
            event_shape=(1, 8, 8), process=VEProcess(0.01, 5.0), hidden_size=8, depth=1
        ).eval()
    return PurifiedClassifier(ScorePurifier(score, sigma_inj=0.1, max_steps=2), classifier, draws=1, seed=0)


def test_purified_classifier_is_evaluated_with_its_hooks(classifier, digits_test):
    x, y = digits_test[0][:8], digits_test[1][:8]
    defended = _defended(classifier)
    report = evaluate_robustness(defended, x, y, epsilons=[16 / 255], attacks=["blind_pgd", "bpda_eot", "pgd_eot"],
                                 repeats=2, settings={"*": {"steps": 2, "eot_draws": 2}})  # fmt: skip
    assert report.protocol["gradient_modes"] and report.protocol["reseedable"]
    assert defended.purifier.gradient_mode == "full"  # restored after the BPDA attack
    assert report.points.correct.shape == (3, 1, 2, 8)


def test_bpda_and_full_gradients_give_different_attacks(classifier, digits_test):
    x, y = digits_test[0][:6], digits_test[1][:6]
    defended = _defended(classifier)
    advs = {
        name: attack_batch(name, defended, x, y, eps=16 / 255, norm="Linf", seed=4,
                           settings={**preset_settings(PRESETS[name], {"steps": 2, "eot_draws": 1}), "n_classes": 10})
        for name in ("bpda_eot", "pgd_eot")
    }  # fmt: skip
    assert not torch.equal(advs["bpda_eot"], advs["pgd_eot"])
