"""Held networks: a teacher held by an objective (by reference) and a frozen base held by a model (by value)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

import genflow as gf
from genflow.objectives import OBJECTIVES, Objective
from genflow.pipeline import load_trained
from genflow.train import HeldNetwork, HeldNetworkError, Trainer, as_held_network, load_checkpoint
from genflow.train.held import file_sha256

DATA = TensorDataset(torch.randn(256, 2, generator=torch.Generator().manual_seed(1)))


class Distill(Objective):
    """Regress the student's output on a frozen teacher's at the same noised input."""

    config_components = {"teacher": "held_network"}

    def __init__(self, teacher: HeldNetwork | dict) -> None:
        self.teacher, self.process = as_held_network(teacher, "teacher"), gf.VPProcess()

    def draw(self, n, shapes, generator, *, dtype, device):
        t = 0.05 + 0.9 * torch.rand(n, generator=generator, dtype=dtype)
        return {"t": t.to(device), "noise": torch.randn((n, *shapes["x"]), generator=generator, dtype=dtype).to(device)}

    def loss(self, model, batch, draws):
        xt = self.process.sample(batch["x"], draws["t"], draws["noise"])
        with torch.no_grad():
            target = self.teacher(xt, draws["t"])
        return (model(xt, draws["t"]) - target).pow(2).mean()


class ResidualOnFrozen(gf.ScoreModel):
    """A frozen base model (held by value) plus a trainable linear correction."""

    parameterization = "eps"
    config_components = {"base": "held_network"}

    def __init__(self, base: HeldNetwork | dict) -> None:
        super().__init__()
        self.base = as_held_network(base, "base")
        self.correction = torch.nn.Linear(2, 2)

    def forward(self, x, t, *, cond=None, exit=None):
        return self.base(x, t) + self.correction(x)


@pytest.fixture(scope="module", autouse=True)
def registered():
    """Register this module's classes only while its tests run (the registry-wide tests build every model)."""
    OBJECTIVES.register("test_distill")(Distill)
    gf.MODELS.register("test_residual_on_frozen")(ResidualOnFrozen)
    try:
        yield
    finally:
        OBJECTIVES._entries.pop("test_distill")
        gf.MODELS._entries.pop("test_residual_on_frozen")


def _mlp(seed=0):
    torch.manual_seed(seed)
    return gf.MLPScoreNet(dim=2, hidden_size=16, depth=1, parameterization="eps")


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher")
    Trainer(_mlp(), gf.DenoisingScoreMatching("vp"), out_dir=folder, steps=5, batch_size=64, progress=False).fit(DATA)
    return folder


def _student(out_dir, teacher_run, steps=8, **kw):
    objective = Distill(HeldNetwork.from_checkpoint(teacher_run))
    return Trainer(_mlp(1), objective, out_dir=out_dir, steps=steps, batch_size=32, log_every=1, checkpoint_every=3,
                   lr=1e-2, progress=False, **kw)  # fmt: skip


def test_a_held_teacher_is_frozen_untrained_and_recorded_by_reference(tmp_path, teacher_run):
    trainer = _student(tmp_path, teacher_run)
    teacher = trainer.objective.teacher
    before = {k: v.clone() for k, v in teacher.module.state_dict().items()}
    trainer.fit(DATA)
    assert all(torch.equal(v, teacher.module.state_dict()[k]) for k, v in before.items())  # never trained
    assert not any(p.requires_grad for p in teacher.module.parameters()) and not teacher.module.training
    assert {id(p) for p in trainer.optimizer.param_groups[0]["params"]} == {id(p) for p in trainer.model.parameters()}
    ckpt = load_checkpoint(tmp_path)
    reference = ckpt.state["objective_config"]["teacher"]
    source = load_checkpoint(teacher_run)
    assert reference["sha256"] == file_sha256(teacher_run / f"step-{source.step:08d}" / "tensors.safetensors")
    assert reference["config"] == source.state["model_config"] and ckpt.held == {}
    assert len(ckpt.optimizer["state"]) == len(list(trainer.model.parameters()))
    # the teacher held the EMA weights of its run; rebuilding the objective from the config reloads them
    rebuilt = OBJECTIVES.from_config(ckpt.state["objective_config"]).teacher.module.state_dict()
    assert all(torch.equal(rebuilt[k], source.ema[k]) for k in source.ema)


def test_resume_with_a_held_teacher_is_exact_and_refuses_a_changed_teacher(tmp_path, teacher_run):
    full = _student(tmp_path / "full", teacher_run)
    full.fit(DATA)

    def crash(trainer, step, loss):
        if step == 5:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        _student(tmp_path / "crash", teacher_run).fit(DATA, callbacks=[crash])
    resumed = _student(tmp_path / "crash", teacher_run)
    resumed.fit(DATA)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # the teacher's checkpoint is retrained in place: the recorded reference no longer matches
    other = tmp_path / "other_teacher"
    Trainer(_mlp(7), gf.DenoisingScoreMatching("vp"), out_dir=other, steps=5, batch_size=64, progress=False).fit(DATA)
    changed = _student(tmp_path / "crash", other, steps=12)
    with pytest.raises(HeldNetworkError, match="held network 'objective.teacher' is not the one the run recorded"):
        changed.fit(DATA)
    config = load_checkpoint(tmp_path / "crash").state["objective_config"]["teacher"]
    with pytest.raises(HeldNetworkError, match="changed since it was recorded"):
        HeldNetwork.from_checkpoint(other, sha256=config["sha256"])


def test_a_model_holding_a_frozen_base_by_value_round_trips_through_checkpoints(tmp_path):
    base = _mlp(3)
    torch.manual_seed(0)
    model = ResidualOnFrozen(HeldNetwork(base)).double()
    assert next(base.parameters()).dtype == torch.float64  # moved with the model
    assert set(model.state_dict()) == {"correction.weight", "correction.bias"}
    trainer = Trainer(model, gf.DenoisingScoreMatching("vp"), out_dir=tmp_path, steps=4, batch_size=32,
                      ema_decay=0.9, progress=False)  # fmt: skip
    assert trainer.ema.base.module is model.base.module  # the EMA shares the frozen network
    trainer.fit(DATA)
    ckpt = load_checkpoint(tmp_path)
    assert set(ckpt.held) == {"model.base"} and set(ckpt.model) == {"correction.weight", "correction.bias"}
    assert all(torch.equal(ckpt.held["model.base"][k], v) for k, v in base.state_dict().items())
    _, loaded = load_trained(tmp_path)  # the base is rebuilt from its config and filled from the checkpoint
    x, t = torch.randn(5, 2, dtype=torch.float64), torch.full((5,), 0.3, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(loaded.double()(x, t), trainer.ema(x, t))
    # resuming with a base of other weights restores the saved base (held by value)
    torch.manual_seed(0)
    other = ResidualOnFrozen(HeldNetwork(_mlp(9))).double()
    Trainer(other, gf.DenoisingScoreMatching("vp"), out_dir=tmp_path, steps=6, batch_size=32, ema_decay=0.9,
            progress=False).fit(DATA)  # fmt: skip
    assert all(torch.equal(other.base.module.state_dict()[k], v) for k, v in base.state_dict().items())


def test_bad_held_networks_are_refused(tmp_path):
    with pytest.raises(gf.errors.ConfigError, match="HeldNetwork holds an nn.Module"):
        HeldNetwork("teacher")
    with pytest.raises(gf.errors.ConfigError, match="teacher must be a HeldNetwork or its config dict"):
        Distill(_mlp())
    with pytest.raises(HeldNetworkError, match="cannot load the held network"):
        HeldNetwork.from_checkpoint(tmp_path / "nothing")
