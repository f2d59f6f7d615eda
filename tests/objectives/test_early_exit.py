"""EarlyExitDSM: the denoising loss with per-sample depths, against the loss computed sample by sample."""

from __future__ import annotations

import pytest
import torch

import genflow as gf
from genflow.errors import ComponentError
from genflow.exit import StaircaseExit, TableExit
from genflow.objectives import OBJECTIVES
from genflow.objectives.early_exit import EarlyExitDSM, freeze_time_embedding
from tests.exit.helpers import tiny_dit, tiny_uvit


def _batch_and_draws(objective, n: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    batch = {"x": torch.randn(n, 1, 8, 8, generator=g), "label": torch.randint(0, 3, (n,), generator=g)}
    draws = objective.draw(n, {"x": (1, 8, 8), "label": ()}, g, dtype=torch.float32, device="cpu")
    return batch, draws


@pytest.mark.parametrize("weighting", ["none", "min_snr"])
def test_loss_equals_the_per_sample_depth_loss_by_hand(weighting):
    model = tiny_dit(num_classes=3).eval()
    policy = StaircaseExit(depths=[4, 3, 2, 1])
    objective = EarlyExitDSM(policy, gf.VPProcess(), weighting=weighting, cond_field="label")
    batch, draws = _batch_and_draws(objective)
    t, eps, x = draws["t"], draws["noise"], batch["x"]
    depths = policy.depths(t, 4)
    assert len(set(depths.tolist())) > 1
    process, plain = gf.VPProcess(), gf.DenoisingScoreMatching(gf.VPProcess(), weighting=weighting)
    per_sample = []
    for i in range(8):
        xt = process.sample(x[i : i + 1], t[i : i + 1], eps[i : i + 1])
        pred = model(xt, t[i : i + 1], cond=batch["label"][i : i + 1], exit=int(depths[i]))
        err = (pred - eps[i : i + 1]).pow(2).mean()
        if weighting == "min_snr":
            err = err * plain._min_snr_weight("eps", xt, t[i : i + 1])[0]
        per_sample.append(err)
    torch.testing.assert_close(objective.loss(model, batch, draws), torch.stack(per_sample).mean())


@pytest.mark.parametrize("build", [tiny_dit, tiny_uvit], ids=["dit", "uvit"])
def test_gradients_skip_the_frozen_time_embedding_and_blocks_no_sample_reaches(build):
    model = build()
    frozen = freeze_time_embedding(model)
    assert frozen and all(not p.requires_grad for p in model.time_embed.parameters())
    last = model.num_blocks - 1  # no sample runs the last exitable block
    objective = EarlyExitDSM(TableExit([last, last - 1 if last else 0], model.num_blocks))
    batch, draws = _batch_and_draws(objective)
    objective.loss(model, batch, draws).backward()
    assert all(p.grad is None for p in model.time_embed.parameters())
    blocks = model.blocks if isinstance(model, gf.DiT) else [b.attn for b in model.out_blocks]
    unreached = [p.grad for p in blocks[last].parameters()]
    assert all(g is None for g in unreached)
    reached = [p.grad for p in blocks[0].parameters()] if last else []
    assert all(g is not None for g in reached)
    assert model.patch_embed.proj.weight.grad is not None and bool(model.patch_embed.proj.weight.grad.abs().sum() > 0)


def test_config_round_trip_gives_the_same_loss_and_the_default_is_the_relative_ase_staircase():
    model = tiny_dit()
    objective = EarlyExitDSM(StaircaseExit(fractions=[1.0, 0.5]), "vp", weighting="min_snr", t_min=0.01)
    clone = OBJECTIVES.from_config(objective.to_config())
    batch, draws = _batch_and_draws(objective)
    assert torch.equal(clone.loss(model, batch, draws), objective.loss(model, batch, draws))
    default = OBJECTIVES.create("early_exit_dsm")
    assert default.policy.schedule(28).depths == (28, 28, 24, 24, 20, 20, 16, 16, 12, 12)
    assert gf.EarlyExitDSM is EarlyExitDSM


def test_models_without_a_time_embedding_or_blocks_are_refused():
    with pytest.raises(ComponentError, match="time_embed"):
        freeze_time_embedding(torch.nn.Linear(2, 2))
    objective = EarlyExitDSM()
    batch, draws = _batch_and_draws(objective)
    with pytest.raises(ComponentError, match="num_blocks"):
        flat_draws = {**draws, "noise": draws["noise"].flatten(1)}
        objective.loss(gf.MLPScoreNet(dim=64), {"x": batch["x"].flatten(1)}, flat_draws)
