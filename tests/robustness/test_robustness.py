"""genflow.robustness: budgets, monotonicity, attack strength, the RNG guard, EOT, shards and errors."""

from __future__ import annotations

import pytest
import torch
import torchattacks

from genflow.robustness import (
    EOT,
    PRESETS,
    AttackConfigError,
    GlobalRNGDefenceError,
    ImageRangeError,
    ImageShapeError,
    PointResults,
    RobustnessReport,
    ShardMergeError,
    attack_batch,
    evaluate_robustness,
    merge_shards,
    preset_settings,
    shard_indices,
)
from tests.robustness.conftest import GlobalNoiseDefence

TINY = {"*": {"steps": 5, "eot_draws": 2, "queries": 30, "eot_iter": 2}}


def _settings(name: str, **extra):
    return {**preset_settings(PRESETS[name], TINY["*"]), "n_classes": 10, **extra}


@pytest.mark.parametrize("norm,eps", [("Linf", 16 / 255), ("L2", 0.5)])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_attacks_respect_budget_and_range(name, norm, eps, defence, digits_test):
    x, y = digits_test[0][:6], digits_test[1][:6]
    adv = attack_batch(name, defence, x, y, eps=eps, norm=norm, settings=_settings(name), seed=1)
    assert adv.shape == x.shape and adv.min() >= 0 and adv.max() <= 1
    delta = (adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
    assert (size <= eps * (1 + 1e-5)).all()
    if not name.startswith("autoattack"):  # AutoAttack returns the clean image where no attack succeeded
        assert size.max() > 0.5 * eps  # the attack moved the images


def test_accuracy_non_increasing_in_eps(classifier, digits_test):
    x, y = digits_test[0][:48], digits_test[1][:48]
    report = evaluate_robustness(classifier, x, y, epsilons=[32 / 255, 4 / 255, 12 / 255], attacks=["pgd_eot"],
                                 repeats=1, settings={"pgd_eot": {"steps": 20}})  # fmt: skip
    assert report.points.epsilons == sorted(report.points.epsilons)
    means = [report.accuracy("pgd_eot", k)["mean"] for k in range(3)]
    assert means[0] >= means[1] >= means[2]
    assert means[-1] < 10.0  # an undefended MLP falls at 32/255
    worst = [s["mean"] for s in report.summary()["worst_case"]]
    assert all(a >= b for a, b in zip(worst, worst[1:], strict=False)) and report.clean()["mean"] >= worst[0]


@pytest.mark.parametrize("name", ["pgd_eot", "apgd_eot"])
def test_more_steps_never_help_the_defence(name, defence, digits_test):
    x, y = digits_test[0][:48], digits_test[1][:48]
    acc = {}
    for steps in (1, 12):
        report = evaluate_robustness(defence, x, y, epsilons=[8 / 255], attacks=[name], repeats=2, seed=3,
                                     settings={name: {"steps": steps, "eot_draws": 2}})  # fmt: skip
        acc[steps] = report.accuracy(name, 0)["mean"]
    assert acc[12] <= acc[1]
    assert acc[12] < report.clean()["mean"]


def test_guard_refuses_a_defence_on_the_global_rng(classifier, digits_test):
    x, y = digits_test[0][:4], digits_test[1][:4]
    with pytest.raises(GlobalRNGDefenceError, match="global torch RNG"):
        evaluate_robustness(GlobalNoiseDefence(classifier), x, y, epsilons=[8 / 255], attacks=["pgd_eot"],
                            repeats=1, settings=TINY)  # fmt: skip


class _ReseedingPGD(torchattacks.PGD):
    """A PGD that reseeds the global RNG before every forward pass (worse than APGD, which does it once)."""

    def get_logits(self, inputs, labels=None, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        torch.manual_seed(0)
        return super().get_logits(inputs)


def test_reseeding_attack_does_not_fix_the_defence_noise(defence, digits_test):
    x, y = digits_test[0][:4], digits_test[1][:4]
    state = torch.random.get_rng_state()
    _ReseedingPGD(defence, eps=8 / 255, alpha=2 / 255, steps=3)(x, y)
    torch.random.set_rng_state(state)  # this test's attack touched the global RNG on purpose
    noises = defence.noises
    assert len(noises) == 3 and not torch.equal(noises[0], noises[1]) and not torch.equal(noises[1], noises[2])


def test_evaluation_keeps_the_callers_global_rng(defence, digits_test):
    x, y = digits_test[0][:4], digits_test[1][:4]
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    evaluate_robustness(defence, x, y, epsilons=[8 / 255], attacks=["apgd_eot", "square"], repeats=1, settings=TINY)
    assert torch.equal(torch.rand(3), expected)  # APGD and Square reseed the global RNG inside fork_rng only


def test_evaluation_is_reproducible_and_reevaluates_with_fresh_noise(defence, digits_test):
    x, y = digits_test[0][:16], digits_test[1][:16]
    first, second = (evaluate_robustness(defence, x, y, epsilons=[8 / 255], attacks=["pgd_eot"], repeats=3, seed=5,
                                         settings=TINY) for _ in range(2))  # fmt: skip
    assert torch.equal(first.points.correct, second.points.correct)
    assert first.protocol["reseedable"] and first.protocol["gradient_modes"]


def test_eot_gradient_is_the_mean_of_per_draw_gradients(defence, digits_test):
    x = digits_test[0][:3].clone().requires_grad_(True)
    defence.reseed(7)
    (grad,) = torch.autograd.grad(EOT(defence, 3)(x)[:, 2].sum(), x)
    defence.reseed(7)
    per_draw = [torch.autograd.grad(defence(x)[:, 2].sum(), x)[0] for _ in range(3)]
    torch.testing.assert_close(grad, torch.stack(per_draw).mean(0))
    defence.reseed(7)
    torch.testing.assert_close(EOT(defence, 1)(x), (defence.reseed(7), defence(x))[1])


def test_bpda_gradient_differs_from_full(defence, digits_test):
    x, y = digits_test[0][:8], digits_test[1][:8]
    bpda = attack_batch("bpda_eot", defence, x, y, eps=8 / 255, norm="Linf", settings=_settings("bpda_eot"), seed=0)
    full = attack_batch("pgd_eot", defence, x, y, eps=8 / 255, norm="Linf", settings=_settings("pgd_eot"), seed=0)
    assert not torch.equal(bpda, full) and defence.mode == "full"  # the mode is restored after the attack


def _points(n: int, seed: int = 0) -> PointResults:
    g = torch.Generator().manual_seed(seed)
    return PointResults(torch.arange(n), torch.randint(0, 10, (n,), generator=g),
                        torch.rand(2, n, generator=g) > 0.3, torch.rand(2, 3, 2, n, generator=g) > 0.5,
                        ["pgd_eot", "square"], [0.01, 0.02, 0.03], torch.ones(2, 3))  # fmt: skip


def _take(points: PointResults, index: torch.Tensor) -> PointResults:
    return PointResults(points.index[index], points.labels[index], points.clean[:, index],
                        points.correct[..., index], points.attacks, points.epsilons, points.seconds)  # fmt: skip


def test_merge_shards_restores_the_single_process_results():
    full = _points(11)
    parts = [_take(full, shard_indices(11, r, 3)) for r in (2, 0, 1)]
    merged = merge_shards(parts)
    for name in ("index", "labels", "clean", "correct"):
        assert torch.equal(getattr(merged, name), getattr(full, name))
    assert torch.equal(merged.seconds, 3 * full.seconds)


def test_merge_shards_rejects_overlap_gaps_and_mismatch():
    full = _points(6)
    with pytest.raises(ShardMergeError, match="duplicated"):
        merge_shards([_take(full, torch.tensor([0, 1, 2, 3])), _take(full, torch.tensor([3, 4, 5]))])
    with pytest.raises(ShardMergeError, match="missing"):
        merge_shards([_take(full, torch.tensor([0, 1])), _take(full, torch.tensor([3, 4, 5, 2]))[:0] if False
                      else _take(full, torch.tensor([4, 5]))])  # fmt: skip
    other = _take(full, torch.tensor([3, 4, 5]))
    other.epsilons = [0.5, 0.6, 0.7]
    with pytest.raises(ShardMergeError, match="budgets"):
        merge_shards([_take(full, torch.tensor([0, 1, 2])), other])
    with pytest.raises(ShardMergeError):
        merge_shards([])


def test_report_states_protocol_and_labels_weak_attacks(defence, digits_test, tmp_path):
    x, y = digits_test[0][:8], digits_test[1][:8]
    report = evaluate_robustness(defence, x, y, epsilons=[8 / 255, 16 / 255], attacks=["bpda_eot", "pgd_eot"],
                                 repeats=2, draws=2, settings=TINY, eps_denominator=255)  # fmt: skip
    text = report.markdown()
    assert "bpda_eot (weak)" in text and "2 repeats of 2 draw(s)" in text and "eps 8/255" in text
    assert "worst case over attacks" in text and "fresh defence noise" in text
    paths = report.save(tmp_path)
    assert all(p.exists() for p in paths.values())


@pytest.mark.parametrize(
    "change,error",
    [
        (lambda x, y: (x * 2, y), ImageRangeError),
        (lambda x, y: (x[:, 0], y), ImageShapeError),
        (lambda x, y: (x, y[:-1]), ImageShapeError),
        (lambda x, y: (x, y.float()), ImageShapeError),
    ],
)
def test_bad_inputs_raise_typed_errors(change, error, defence, digits_test):
    x, y = change(digits_test[0][:4], digits_test[1][:4])
    with pytest.raises(error):
        evaluate_robustness(defence, x, y, epsilons=[8 / 255], attacks=["pgd_eot"], settings=TINY)


@pytest.mark.parametrize(
    "kwargs",
    [{"attacks": ["nope"]}, {"attacks": []}, {"epsilons": [0.0]}, {"epsilons": []}, {"norm": "L1"},
     {"repeats": 0}, {"draws": 1.5}, {"settings": {"pgd_eot": {"steps": 0}}}],
)  # fmt: skip
def test_bad_settings_raise_attack_config_error(kwargs, defence, digits_test):
    args = {"epsilons": [8 / 255], "attacks": ["pgd_eot"], **kwargs}
    with pytest.raises(AttackConfigError):
        evaluate_robustness(defence, digits_test[0][:4], digits_test[1][:4], **args)


def test_worst_case_is_the_per_point_minimum_over_clean_attacks_and_smaller_budgets():
    points = _points(40, seed=3)
    worst = RobustnessReport(points, {}).worst_case()
    for k in range(3):
        expected = points.clean.clone()
        for j in range(k + 1):
            expected &= points.correct[:, j].all(0)
        assert torch.equal(worst[k], expected)


@pytest.mark.slow
def test_torchrun_shards_images_and_merges_them(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("_torchrun_script.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    subprocess.run([sys.executable, str(script), str(tmp_path / "one.json")], check=True, env=env, timeout=300)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    subprocess.run([*launcher, str(script), str(tmp_path / "two.json")], check=True, env=env, timeout=300)
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert one["ranks"] == 1 and two["ranks"] == 2
    assert two["index"] == list(range(10)) and two["labels"] == one["labels"] and two["clean"] == one["clean"]
    assert two["correct_shape"] == one["correct_shape"] == [1, 1, 1, 10]
