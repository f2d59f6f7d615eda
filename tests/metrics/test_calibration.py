"""Calibration and fidelity metrics against hand-worked cases, limits and their definitions."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genflow.errors import ConfigError, DTypeError, LabelError, NonFiniteError, ProbabilityError, ShapeError
from genflow.metrics import (
    accuracy,
    agreement,
    brier,
    deep_ensemble_equivalent,
    disagreement,
    ece,
    fit_temperature,
    kl,
    nll,
    reliability_bins,
    reliability_diagram,
    temperature_scaled_metrics,
)

PROBS = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5]])
LABELS = torch.tensor([0, 2, 2])


def test_hand_worked_case():
    assert accuracy(PROBS, LABELS) == pytest.approx(2 / 3)
    assert nll(PROBS, LABELS) == pytest.approx(-(math.log(0.7) + math.log(0.3) + math.log(0.5)) / 3)
    # (0.09 + 0.04 + 0.01) + (0.01 + 0.36 + 0.49) + (0.0625 + 0.0625 + 0.25)
    assert brier(PROBS, LABELS) == pytest.approx((0.14 + 0.86 + 0.375) / 3)
    # confidences 0.7, 0.6, 0.5 fall in three different bins of 15: |1 - 0.7| + |0 - 0.6| + |1 - 0.5|
    assert ece(PROBS, LABELS) == pytest.approx((0.3 + 0.6 + 0.5) / 3)
    assert ece(PROBS, LABELS, bins=1) == pytest.approx(abs(2 / 3 - 0.6))


def test_bins_are_right_closed():
    probs = torch.tensor([[0.6, 0.4], [0.5, 0.5], [1.0, 0.0]])
    stats = reliability_bins(probs, torch.tensor([0, 0, 0]), bins=2)
    # 0.5 -> [0, 0.5]; 0.6 and 1.0 -> (0.5, 1]
    assert stats.counts.tolist() == [1.0, 2.0]
    assert stats.confidence.tolist() == pytest.approx([0.5, 0.8])


def test_perfect_predictions():
    probs = torch.eye(4)
    labels = torch.arange(4)
    assert accuracy(probs, labels) == 1.0 and nll(probs, labels) == pytest.approx(0.0)
    assert brier(probs, labels) == 0.0 and ece(probs, labels) == 0.0


def _calibrated(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary predictor whose label is 0 with exactly the predicted probability (perfect calibration)."""
    g = torch.Generator().manual_seed(seed)
    p0 = torch.rand(n, generator=g, dtype=torch.float64)
    labels = (torch.rand(n, generator=g, dtype=torch.float64) >= p0).long()
    return torch.stack([p0, 1 - p0], 1), labels


def test_ece_of_a_calibrated_predictor_tends_to_zero():
    values = [sum(ece(*_calibrated(n, seed)) for seed in range(3)) / 3 for n in (300, 3_000, 30_000, 300_000)]
    assert all(b < a for a, b in zip(values[:-1], values[1:], strict=True)), values
    assert values[-1] < 0.005
    # the sampling error shrinks like 1/sqrt(N): 1000x the data, roughly 1/30 of the error
    assert values[-1] < values[0] / 10


logits_cases = st.tuples(st.integers(2, 40), st.integers(2, 6), st.integers(0, 10_000), st.floats(0.1, 20.0))


@settings(max_examples=20)
@given(case=logits_cases)
def test_temperature_scaling_never_raises_the_nll(case):
    n, c, seed, scale = case
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, c, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (n,), generator=g)
    t = fit_temperature(logits, labels)
    assert 0.01 <= t <= 100
    assert nll((logits / t).softmax(1), labels) <= nll(logits.softmax(1), labels) + 1e-12


def test_temperature_matches_a_fine_grid_search_and_recovers_the_true_temperature():
    g = torch.Generator().manual_seed(0)
    logits = 3.0 * torch.randn(20_000, 5, generator=g, dtype=torch.float64)
    labels = torch.multinomial((logits / 2.5).softmax(1), 1, generator=g).squeeze(1)  # drawn at T = 2.5
    t = fit_temperature(logits, labels)
    grid = torch.exp(torch.linspace(math.log(0.5), math.log(10), 2001, dtype=torch.float64))
    best = min(grid.tolist(), key=lambda s: nll((logits / s).softmax(1), labels))
    assert t == pytest.approx(best, rel=2e-3)
    assert t == pytest.approx(2.5, rel=0.05)


def test_separable_data_hits_the_range_end():
    logits = torch.tensor([[2.0, -1.0], [-3.0, 1.0]])
    assert fit_temperature(logits, torch.tensor([0, 1])) == pytest.approx(0.01)
    assert fit_temperature(logits, torch.tensor([0, 1]), t_min=0.5) == pytest.approx(0.5)


def test_temperature_scaled_metrics_use_the_fitted_temperature():
    g = torch.Generator().manual_seed(1)
    logits = 4.0 * torch.randn(500, 3, generator=g, dtype=torch.float64)
    labels = torch.multinomial((logits / 3).softmax(1), 1, generator=g).squeeze(1)
    out = temperature_scaled_metrics(logits[:250], labels[:250], logits[250:], labels[250:])
    probs = (logits[250:] / out["temperature"]).softmax(1)
    assert out["nll"] == pytest.approx(nll(probs, labels[250:]))
    assert out["ece"] == pytest.approx(ece(probs, labels[250:]))
    assert out["nll"] < nll(logits[250:].softmax(1), labels[250:])


def test_fidelity_and_diversity_hand_worked():
    p = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    q = torch.tensor([[0.25, 0.75], [0.8, 0.2]])
    assert agreement(p, q) == 0.5  # argmax of [0.5, 0.5] is class 0
    expected = (0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75) + 0.9 * math.log(0.9 / 0.8)
                + 0.1 * math.log(0.1 / 0.2)) / 2  # fmt: skip
    assert kl(p, q) == pytest.approx(expected)
    assert kl(p, p) == pytest.approx(0.0, abs=1e-15)
    a, b = torch.tensor([[1.0, 0.0]] * 4), torch.tensor([[0.0, 1.0]] * 4)
    c = torch.tensor([[1.0, 0.0]] * 2 + [[0.0, 1.0]] * 2)
    # pairs (a, b): 1, (a, c): 1/2, (b, c): 1/2
    assert disagreement(torch.stack([a, b, c])) == pytest.approx(2 / 3)
    assert disagreement([a, a]) == 0.0


def test_deep_ensemble_equivalent_interpolates_the_curve():
    curve = [0.40, 0.30, 0.26, 0.24]
    assert deep_ensemble_equivalent(0.30, curve) == pytest.approx(2.0)
    assert deep_ensemble_equivalent(0.35, curve) == pytest.approx(1.5)
    assert deep_ensemble_equivalent(0.25, curve) == pytest.approx(3.5)
    assert deep_ensemble_equivalent(0.50, curve) == 1.0 and deep_ensemble_equivalent(0.1, curve) == 4.0
    assert deep_ensemble_equivalent(0.35, [0.4, 0.3], sizes=[2, 6]) == pytest.approx(4.0)
    with pytest.raises(ConfigError, match="strictly increasing"):
        deep_ensemble_equivalent(0.3, curve, sizes=[1, 3, 2, 4])


def test_reliability_diagram_writes_a_png(tmp_path):
    path = reliability_diagram(*_calibrated(500, 0), tmp_path / "plots" / "rel.png", title="synthetic")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("probs", "labels", "error", "match"),
    [
        (torch.tensor([[0.5, 0.6]]), torch.tensor([0]), ProbabilityError, "sum to 1"),
        (torch.tensor([[1.2, -0.2]]), torch.tensor([0]), ProbabilityError, "non-negative"),
        (torch.tensor([[float("nan"), 1.0]]), torch.tensor([0]), ProbabilityError, "finite"),
        (torch.tensor([[0.5, 0.5]]), torch.tensor([2]), LabelError, r"\[0, 2\).*\[2, 2\]"),
        (torch.tensor([[0.5, 0.5]]), torch.tensor([-1]), LabelError, r"\[0, 2\)"),
        (torch.tensor([[0.5, 0.5]]), torch.tensor([0, 1]), ShapeError, r"\(1,\).*\(2,\)"),
        (torch.tensor([[0.5, 0.5]]), torch.tensor([0.0]), DTypeError, "integer"),
        (torch.tensor([0.5, 0.5]), torch.tensor([0]), ShapeError, r"\(N, C\)"),
        (torch.tensor([[1, 0]]), torch.tensor([0]), DTypeError, "floating"),
    ],
)
@pytest.mark.parametrize("metric", [accuracy, nll, brier, ece])
def test_bad_input_raises_typed_errors(metric, probs, labels, error, match):
    with pytest.raises(error, match=match):
        metric(probs, labels)


def test_bad_logits_and_pairs_raise_typed_errors():
    with pytest.raises(NonFiniteError, match="finite"):
        fit_temperature(torch.tensor([[0.0, float("inf")]]), torch.tensor([0]))
    with pytest.raises(ShapeError, match="same shape"):
        agreement(PROBS, PROBS[:2])
    with pytest.raises(ShapeError, match="at least 2"):
        disagreement(PROBS[None])
