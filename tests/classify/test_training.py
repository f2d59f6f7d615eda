"""Training members through the Trainer: checkpoints, validation metrics, exact resume, recipes, the protocol."""

from __future__ import annotations

import pytest
import torch
import yaml

from genflow.classify import (
    CifarResNet,
    build_classifier,
    digits_protocol,
    evaluate_run,
    load_classifier,
    load_ensemble,
    load_run,
    stratified_subset,
    train_members,
    train_recipe,
)
from genflow.classify.training import classification_data
from genflow.data import load_digits_split
from genflow.errors import ConfigError
from genflow.objectives import CrossEntropy
from genflow.recipe import load_recipe
from genflow.train import Trainer

TINY = {"name": "cifar_resnet", "width": 4}
TRAINER = {"steps": 6, "batch_size": 16, "lr": 3e-3, "ema_decay": 0.0, "log_every": 3}


@pytest.fixture(scope="module")
def data():
    train = classification_data({"name": "digits", "split": "train", "size": 8, "value_range": "classification",
                                 "per_class": 5})  # fmt: skip
    return train, load_digits_split("val", size=8, value_range="classification")


def test_stratified_subset_takes_the_first_examples_of_each_class():
    full = load_digits_split("train", size=8, value_range="classification")
    subset = stratified_subset(full, 3)
    assert torch.bincount(subset.labels).tolist() == [3] * 10
    first = torch.nonzero(full.labels == 4).flatten()[:3]
    assert torch.equal(subset.images[subset.labels == 4], full.images[first])
    with pytest.raises(ConfigError, match="has only"):
        stratified_subset(full, 1000)


def test_members_are_checkpointed_validated_and_reloaded(tmp_path, data):
    train, val = data
    trained = train_members(TINY, CrossEntropy(), train, members=2, seed=5, out_dir=tmp_path, validation=val,
                            trainer=TRAINER)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["member-0", "member-1"]
    reloaded = load_ensemble(tmp_path)
    assert len(load_run(tmp_path)) == 2 and isinstance(load_run(tmp_path / "member-0"), CifarResNet)
    x = val.images[:32]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), trained.ensemble(x))
        assert not torch.equal(trained.ensemble.members[0](x), trained.ensemble.members[1](x))  # different seeds
        # the logged validation NLL is the mean NLL of the final member on the validation split
        nll = torch.nn.functional.cross_entropy(trained.ensemble.members[1](val.images), val.labels)
    final = trained.validations[1][-1]
    assert final["val_nll"] == pytest.approx(float(nll), rel=1e-4)
    assert 0.0 <= final["val_accuracy"] <= 1.0 and len(trained.seconds) == 2


def test_resume_is_exact_with_augmentation(tmp_path, data):
    train, _ = data
    objective = CrossEntropy(pad=2, flip=True)

    def run(folder, steps):
        model = build_classifier(TINY, seed=3)
        Trainer(model, objective, out_dir=folder, seed=3, progress=False, **{**TRAINER, "steps": steps}).fit(train)
        return model

    straight = run(tmp_path / "a", 6)
    run(tmp_path / "b", 3)
    resumed = run(tmp_path / "b", 6)
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_build_classifier_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = build_classifier(TINY, 1), build_classifier(TINY, 1), build_classifier(TINY, 2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.head.weight, b.head.weight) and not torch.equal(a.head.weight, c.head.weight)
    assert isinstance(a, CifarResNet)


def test_classifier_recipe_trains_into_its_run_folder(tmp_path):
    recipe = load_recipe("digits_classifier", ["trainer.steps=3", "trainer.validate_every=0", "model.width=4"])
    trained = train_recipe(recipe, out_dir=tmp_path, progress=False)
    assert yaml.safe_load((tmp_path / "recipe.yaml").read_text())["trainer"]["steps"] == 3
    model = load_classifier(tmp_path, num_classes=10)
    report = evaluate_run(tmp_path)
    assert (tmp_path / "eval" / "metrics.md").is_file() and report.rows[0]["set"] == "clean"
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), trained.ensemble.members[0](x))


def test_recipe_errors_are_typed(tmp_path):
    recipe = load_recipe("digits_classifier", ["objective={name: flow_matching}"])
    with pytest.raises(ConfigError, match="does not read labels"):
        train_recipe(recipe, out_dir=tmp_path)
    with pytest.raises(ConfigError, match="members must be 1"):
        train_members(TINY, CrossEntropy(), None, members=2, member_folders=False)


def test_protocol_smoke_run():
    result = digits_protocol(1, members=2, overrides=["trainer.steps=3", "trainer.validate_every=0"])
    assert len(result.ensemble) == 2 and len(result.seconds) == 2 and result.seed == 1
    assert result.config["seed"] == 1000 and result.config["data"]["per_class"] == 50
    assert len(result.data.test) == 368 and len(result.data.shifted_pooled()) == 12 * 368


def test_every_shipped_classifier_recipe_loads_its_parts():
    from genflow.classify import CLASSIFIERS
    from genflow.objectives import OBJECTIVES
    from genflow.recipe import recipe_names

    names = [n for n in recipe_names() if load_recipe(n).config["model"]["name"] in CLASSIFIERS]
    assert {"digits_classifier", "digits_ensemble"} <= set(names)
    for name in names:
        config = load_recipe(name).config
        model = CLASSIFIERS.from_config(config["model"])
        if "teachers" in config["objective"]:  # distillation: the teachers are a run trained first
            assert "label" in OBJECTIVES.get(config["objective"]["name"]).fields
        else:
            assert "label" in OBJECTIVES.from_config(config["objective"]).fields
        train = classification_data(config["data"])
        assert train.images.shape[1:] == (model.in_chans, model.image_size, model.image_size)
