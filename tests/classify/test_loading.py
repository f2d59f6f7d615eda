"""load_classifier / load_ensemble: identical outputs from a saved run, typed errors for the wrong checkpoint."""

from __future__ import annotations

import pytest
import torch

from genflow.classify import CifarResNet, ClassifierCheckpointError, load_classifier, load_ensemble, member_dirs
from genflow.classify.loading import member_dir
from genflow.model import MLPScoreNet
from genflow.process import VPProcess
from genflow.train import Checkpoint, CheckpointError, save_checkpoint
from tests.classify.builders import images, perturb_


def _save_classifier(folder, seed, num_classes=10, ema=True):
    model = perturb_(CifarResNet(num_classes=num_classes, width=4), seed=seed, scale=0.3)
    ema_model = perturb_(CifarResNet(num_classes=num_classes, width=4), seed=seed + 100, scale=0.3)
    state = {"model_config": model.to_config(), "objective_config": {"name": "cross_entropy"}, "process_config": None}
    save_checkpoint(folder, Checkpoint(7, model.state_dict(), ema_model.state_dict() if ema else {}, None, state))
    return model.eval(), ema_model.eval()


def test_load_classifier_gives_the_saved_weights(tmp_path):
    model, ema_model = _save_classifier(tmp_path / "run", seed=0)
    x = images(model, 3, seed=1)
    loaded = load_classifier(tmp_path / "run")
    assert not loaded.training and torch.equal(loaded(x), ema_model(x))  # EMA weights by default
    assert torch.equal(load_classifier(tmp_path / "run" / "step-00000007", ema=False)(x), model(x))


def test_load_ensemble_orders_members_by_index(tmp_path):
    saved = [_save_classifier(member_dir(tmp_path, i), seed=i, ema=False)[0] for i in (0, 1, 2, 10)]
    assert [p.name for p in member_dirs(tmp_path)] == ["member-0", "member-1", "member-2", "member-10"]
    ensemble = load_ensemble(tmp_path)
    x = images(saved[0], 2, seed=3)
    torch.testing.assert_close(ensemble.predict_proba(x), torch.stack([m(x).softmax(-1) for m in saved]).mean(0))


def test_a_generator_checkpoint_is_refused_with_a_typed_error(tmp_path):
    model, process = MLPScoreNet(dim=2), VPProcess()
    state = {"model_config": model.to_config(), "process_config": process.to_config()}
    save_checkpoint(tmp_path / "gen", Checkpoint(1, model.state_dict(), {}, None, state))
    with pytest.raises(ClassifierCheckpointError, match=r"generator checkpoint \(model 'mlp' on process 'vp'\)"):
        load_classifier(tmp_path / "gen")
    save_checkpoint(member_dir(tmp_path / "ens", 0), Checkpoint(1, model.state_dict(), {}, None, state))
    with pytest.raises(ClassifierCheckpointError, match="generator checkpoint"):
        load_ensemble(tmp_path / "ens")


def test_wrong_class_count_and_missing_runs_raise_typed_errors(tmp_path):
    _save_classifier(tmp_path / "run", seed=0, num_classes=7)
    with pytest.raises(ClassifierCheckpointError, match="7 classes; expected 10"):
        load_classifier(tmp_path / "run", num_classes=10)
    with pytest.raises(ClassifierCheckpointError, match="not an ensemble run: expected member-0/"):
        load_ensemble(tmp_path / "run")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_classifier(tmp_path / "nowhere")
    save_checkpoint(tmp_path / "bare", Checkpoint(1, {}, {}, None, {}))
    with pytest.raises(ClassifierCheckpointError, match="expected a model_config naming one of .*cifar_resnet"):
        load_classifier(tmp_path / "bare")
