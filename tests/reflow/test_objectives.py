"""Reflow and SeqRF objectives: the straight-segment target, segment routing, distillation, and a trained recovery."""

from __future__ import annotations

import json

import pytest
import torch

import genflow as gf
from genflow.errors import ConfigError
from genflow.objectives.reflow import Reflow, SequentialReflow, segment_interpolation
from genflow.reflow import PairDataset, PairGenerator, SegmentSpec
from tests.reflow.analytic import AffineVelocity, LinearMapVelocity

G = torch.Generator().manual_seed(0)
BATCH = {
    "start": torch.randn(8, 2, generator=G, dtype=torch.float64),
    "end": torch.randn(8, 2, generator=G, dtype=torch.float64),
    "t_start": torch.tensor([1.0, 0.5] * 4, dtype=torch.float64),
    "t_end": torch.tensor([0.5, 0.0] * 4, dtype=torch.float64),
    "segment": torch.tensor([0, 1] * 4),
}


def test_interpolation_runs_from_the_data_side_end_to_the_noise_side_start():
    s = torch.tensor([0.0, 1.0, 0.25, 0.5, 0.0, 1.0, 0.75, 0.5], dtype=torch.float64)
    x_s, tau, target = segment_interpolation(BATCH, s)
    torch.testing.assert_close(x_s[:2], torch.stack([BATCH["end"][0], BATCH["start"][1]]))
    torch.testing.assert_close(tau[:4], torch.tensor([0.5, 0.5, 0.625, 0.25], dtype=torch.float64))
    # dx/dt of the straight segment, t = 0 data: (start - end) / (t_start - t_end), like flow matching's z - x0
    torch.testing.assert_close(target, (BATCH["start"] - BATCH["end"]) / 0.5)
    # the finite difference of x_s in tau is the target
    ds = 1e-6
    x_hi, tau_hi, _ = segment_interpolation(BATCH, s + ds)
    torch.testing.assert_close((x_hi - x_s) / (tau_hi - tau).unsqueeze(1), target, rtol=1e-6, atol=1e-6)


def test_flow_matching_and_reflow_agree_on_full_trajectory_pairs():
    # on a pair (z, x0) at t in [0, 1], reflow's target and point are flow matching's (same sign convention)
    x0, z, t = BATCH["end"], BATCH["start"], torch.full((8,), 0.3, dtype=torch.float64)
    full = {**BATCH, "t_start": torch.ones(8, dtype=torch.float64), "t_end": torch.zeros(8, dtype=torch.float64)}
    x_s, tau, target = segment_interpolation(full, t)
    proc = gf.LinearInterpolant()
    torch.testing.assert_close(x_s, proc.sample(x0, t, z))
    torch.testing.assert_close(target, proc.from_x0_eps(x0, z, "velocity", x_s, t))
    torch.testing.assert_close(tau, t)


class _Recorder(torch.nn.Module):
    parameterization = "velocity"

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, **kwargs):
        self.calls.append((x, t, kwargs))
        return torch.zeros_like(x)


def test_seqrf_routes_the_segment_and_reflow_does_not():
    draws = SequentialReflow().draw(
        8, {"start": (2,)}, torch.Generator().manual_seed(1), dtype=torch.float64, device="cpu"
    )
    for objective, expects_segment in ((Reflow(), False), (SequentialReflow(), True)):
        model = _Recorder()
        loss = objective.loss(model, BATCH, draws)
        _, _, target = segment_interpolation(BATCH, draws["s"])
        torch.testing.assert_close(loss, target.pow(2).mean())  # a zero model's loss is the target's mean square
        kwargs = model.calls[0][2]
        assert ("segment" in kwargs) == expects_segment
        if expects_segment:
            assert torch.equal(kwargs["segment"], BATCH["segment"])
    assert set(SequentialReflow.fields) - set(Reflow.fields) == {"segment"}


def test_distillation_trains_at_each_segment_start():
    objective = SequentialReflow(distill=True)
    draws = objective.draw(8, {"start": (2,)}, torch.Generator().manual_seed(1), dtype=torch.float64, device="cpu")
    assert torch.equal(draws["s"], torch.ones(8, dtype=torch.float64))
    model = _Recorder()
    objective.loss(model, BATCH, draws)
    x, t, _ = model.calls[0]
    assert torch.equal(x, BATCH["start"]) and torch.equal(t, BATCH["t_start"])


def test_exact_straight_teacher_has_zero_loss_and_endpoint_error(tmp_path):
    spec = SegmentSpec.uniform(2)
    data = torch.randn(32, 2, generator=torch.Generator().manual_seed(2))
    PairGenerator(LinearMapVelocity(), segments=spec, data=data, shard_size=16, progress=False).generate(tmp_path, 1)
    pairs = PairDataset(tmp_path)
    batch = dict(zip(pairs.fields, pairs.tensors, strict=True))
    teacher = LinearMapVelocity(segments=spec)
    for objective in (Reflow(), SequentialReflow(), SequentialReflow(distill=True)):
        draws = objective.draw(16, {"start": (2,)}, torch.Generator().manual_seed(3), dtype=torch.float32, device="cpu")
        assert float(objective.loss(teacher, batch, draws)) < 1e-5
        assert float(objective.metrics(teacher, batch)["endpoint_error"].max()) < 1e-6
    with torch.no_grad():
        assert float(Reflow().loss(AffineVelocity(), batch, draws)) > 1e-2


def test_velocity_models_only_and_config_round_trip():
    with pytest.raises(ConfigError, match="velocity model; got parameterization 'eps'"):
        Reflow().loss(gf.MLPScoreNet(dim=2, hidden_size=8, depth=1), BATCH, {"s": torch.rand(8)})
    for objective in (Reflow(distill=True), SequentialReflow()):
        clone = gf.OBJECTIVES.from_config(json.loads(json.dumps(objective.to_config())))
        assert type(clone) is type(objective) and clone.distill == objective.distill


def test_distilled_reflow_recovers_a_known_linear_map(tmp_path):
    # pairs of the map z -> A z + B; the one-step map of the distilled model must be that map: W = I - A, c = -B
    teacher = LinearMapVelocity()
    PairGenerator(teacher, event_shape=(2,), shard_size=128, progress=False).generate(tmp_path / "pairs", 2)
    model = AffineVelocity()
    gf.Trainer(
        model, Reflow(distill=True), steps=120, batch_size=64, lr=5e-2, ema_decay=0.0, grad_clip=0.0,
        log_every=100, progress=False,
    ).fit(PairDataset(tmp_path / "pairs"))  # fmt: skip
    torch.testing.assert_close(model.linear.weight.detach(), torch.eye(2) - torch.diag(teacher.a), atol=2e-2, rtol=0)
    torch.testing.assert_close(model.linear.bias.detach(), -teacher.b, atol=2e-2, rtol=0)
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(4))
    one_step = gf.Sampler(gf.LinearInterpolant(), model, gf.Euler()).sample(
        (16, 2), 1, generator=torch.Generator(), x_init=z
    )
    torch.testing.assert_close(one_step.samples, teacher.data_of(z), atol=5e-2, rtol=0)


def test_seqrf_refuses_pairs_made_with_another_number_of_segments(tmp_path):
    from genflow.reflow import PairDataset, PairGenerator, SegmentSpecError

    data = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    PairGenerator(LinearMapVelocity(), segments=2, data=data, shard_size=6, progress=False).generate(tmp_path, 1)
    batch = dict(zip(PairDataset(tmp_path).fields, PairDataset(tmp_path).tensors, strict=True))
    objective = gf.SequentialReflow()
    draws = objective.draw(6, {}, torch.Generator(), dtype=torch.float32, device="cpu")
    ok = gf.SegmentConditionedModel(gf.MLPScoreNet(hidden_size=8, depth=1, parameterization="velocity"), segments=2)
    assert torch.isfinite(objective.loss(ok, batch, draws))
    for segments in (3, [1.0, 0.3, 0.0]):  # another K; the same K with other boundaries
        wrong = gf.SegmentConditionedModel(gf.MLPScoreNet(hidden_size=8, depth=1, parameterization="velocity"),
                                           segments=segments)  # fmt: skip
        with pytest.raises(SegmentSpecError, match="do not match the model's segments"):
            objective.loss(wrong, batch, draws)
