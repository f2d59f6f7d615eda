import math

import pytest
import torch

from genflow.classify import CLASSIFIERS, ClassifierCheckpointError, train_members
from genflow.distill import BatchEnsemble, DistillationError, EnsembleDistillation, kd_loss
from genflow.errors import ConfigError, UnknownComponentError
from genflow.objectives import OBJECTIVES
from genflow.train import HeldNetworkError, Trainer, load_checkpoint
from tests.distill.fixtures import TEACHER_MODEL, teacher_run, tiny_data  # noqa: F401  (fixture)


def _batch(n=6, seed=3):
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.rand((n, 1, 4, 4), generator=g), "label": torch.arange(n) % 3}


def _draws(objective, n=6, seed=4):
    return objective.draw(n, {"x": (1, 4, 4), "label": ()}, torch.Generator().manual_seed(seed),
                          dtype=torch.float32, device="cpu")  # fmt: skip


def test_kd_loss_on_a_hand_worked_case():
    # teacher p = (1/2, 1/2); student logits (0, log 3) q = softmax((0, log 3) / 2) = (1, sqrt 3) / (1+sqrt 3)
    p = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    z = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)
    q = torch.tensor([1.0, math.sqrt(3.0)], dtype=torch.float64) / (1 + math.sqrt(3.0))
    expected = 4.0 * (0.5 * math.log(0.5 / q[0]) + 0.5 * math.log(0.5 / q[1]))
    assert kd_loss(z, p, 2.0).item() == pytest.approx(expected, rel=1e-12)
    assert kd_loss(z, torch.tensor([[1.0, 0.0]], dtype=torch.float64), 1.0).item() == pytest.approx(math.log(4.0))


def test_objective_loss_is_its_definition(teacher_run):  # noqa: F811
    objective = EnsembleDistillation(teacher_run, alpha=0.7, temperature=3.0, pad=0)
    torch.manual_seed(0)
    student = CLASSIFIERS.from_config(dict(TEACHER_MODEL)).eval()
    batch = _batch()
    teachers = [t.module for t in objective.teachers]
    with torch.no_grad():
        p = torch.stack([torch.softmax(t(batch["x"]) / 3.0, -1) for t in teachers]).mean(0)
        z = student(batch["x"])
        ce = torch.nn.functional.cross_entropy(z, batch["label"])
        kl = (p * (p.log() - torch.log_softmax(z / 3.0, -1))).sum(-1).mean()
        loss = objective.loss(student, batch, _draws(objective))
    torch.testing.assert_close(loss, 0.3 * ce + 0.7 * 9.0 * kl)
    # a BatchEnsemble student: member i against teacher i, both terms averaged over members
    torch.manual_seed(0)
    be = BatchEnsemble(TEACHER_MODEL, members=2).eval()
    with torch.no_grad():
        zs = be.member_logits(batch["x"])
        ce = sum(torch.nn.functional.cross_entropy(zs[i], batch["label"]) for i in range(2)) / 2
        kl = sum((lambda pi, zi: (pi * (pi.log() - torch.log_softmax(zi / 3.0, -1))).sum(-1).mean())(
            torch.softmax(teachers[i](batch["x"]) / 3.0, -1), zs[i]) for i in range(2)) / 2  # fmt: skip
        loss = objective.loss(be, batch, _draws(objective))
    torch.testing.assert_close(loss, 0.3 * ce + 0.7 * 9.0 * kl)


@pytest.mark.parametrize("perturbation", ["ods", {"name": "confods", "step": 0.3, "norm": "linf"}, "gaussian"])
def test_training_with_a_perturbation_keeps_teachers_out_and_resumes_exactly(teacher_run, tmp_path, perturbation):  # noqa: F811
    objective = EnsembleDistillation(str(teacher_run), perturbation=perturbation)
    config = objective.to_config()
    for i, held in enumerate(config["teachers"]):  # recorded by reference: checkpoint path and content hash
        assert held["source"].startswith(str((teacher_run / f"member-{i}").resolve()) + "/step-")
        assert len(held["sha256"]) == 64 and held["config"] == TEACHER_MODEL
    settings = {"steps": 4, "batch_size": 6, "lr": 1e-2, "log_every": 1, "progress": False, "checkpoint_every": 2}
    torch.manual_seed(0)
    student = BatchEnsemble(TEACHER_MODEL, members=2)
    Trainer(student, objective, out_dir=tmp_path / "a", seed=1, **settings).fit(tiny_data())
    ckpt = load_checkpoint(tmp_path / "a")
    assert not any(k.startswith("teacher") for k in ckpt.model) and not ckpt.held  # by reference, not by value
    teacher_keys = set(CLASSIFIERS.from_config(dict(TEACHER_MODEL)).state_dict())
    assert not teacher_keys & set(ckpt.model)
    # interrupted after 2 steps, resumed from the recorded config: identical weights
    torch.manual_seed(0)
    twin = BatchEnsemble(TEACHER_MODEL, members=2)
    Trainer(twin, objective, out_dir=tmp_path / "b", seed=1, **{**settings, "steps": 2}).fit(tiny_data())
    rebuilt = OBJECTIVES.from_config(config)
    Trainer(twin, rebuilt, out_dir=tmp_path / "b", seed=1, **settings).fit(tiny_data())
    for key, value in ckpt.model.items():
        assert torch.equal(value, load_checkpoint(tmp_path / "b").model[key]), key


def test_typed_errors(teacher_run, tmp_path):  # noqa: F811
    with pytest.raises(ClassifierCheckpointError, match="ensemble run folder with member-0/.*has none"):
        EnsembleDistillation(tmp_path)
    for bad, message in (({"alpha": 1.5}, "alpha must be in"), ({"temperature": 0.0}, "temperature must be > 0"),
                         ({"pad": -1}, "pad must be an int >= 0"), ({"perturbation": "fgsm"}, "unknown perturbation")):
        with pytest.raises((ConfigError, UnknownComponentError), match=message):
            EnsembleDistillation(teacher_run, **bad)
    objective = EnsembleDistillation(teacher_run)
    wrong = CLASSIFIERS.from_config({**TEACHER_MODEL, "num_classes": 5})
    with pytest.raises(DistillationError, match="student has num_classes=5; the teachers have 3"):
        objective.loss(wrong, _batch(), _draws(objective))
    with pytest.raises(DistillationError, match="needs 2 members; got 3"):
        objective.loss(BatchEnsemble(TEACHER_MODEL, members=3), _batch(), _draws(objective))
    other = tmp_path / "other"
    train_members({**TEACHER_MODEL, "num_classes": 4}, OBJECTIVES.create("cross_entropy"),
                  torch.utils.data.TensorDataset(torch.rand(8, 1, 4, 4), torch.arange(8) % 4), members=1,
                  out_dir=other, trainer={"steps": 1, "batch_size": 4})  # fmt: skip
    config = objective.to_config()
    config["teachers"].append(EnsembleDistillation(other).to_config()["teachers"][0])
    with pytest.raises(DistillationError, match=r"same num_classes; got \[3, 3, 4\]"):
        OBJECTIVES.from_config(config)
    config = objective.to_config()
    config["teachers"][0]["sha256"] = "0" * 64
    with pytest.raises(HeldNetworkError, match="changed since it was recorded"):
        OBJECTIVES.from_config(config)
