"""Bridge runs: `genflow train dbn_digits` from an ensemble run, checkpoints (source held by reference),
`genflow evaluate` on a bridge run, and the recipe's typed errors."""

from __future__ import annotations

import json

import pytest
import torch

from genflow.bridge import bridge_dirs, load_bridge, load_bridge_run, train_dbn
from genflow.classify import CifarResNet, load_ensemble
from genflow.cli import main
from genflow.errors import ConfigError
from genflow.recipe import load_recipe

ENSEMBLE_TINY = ["trainer.steps=3", "trainer.batch_size=16", "trainer.validate_every=0", "trainer.log_every=1",
                 "model.depth=8", "model.width=4", "ensemble.members=3"]  # fmt: skip
BRIDGE_TINY = ["trainer.steps=4", "trainer.batch_size=32", "trainer.log_every=1", "distill.steps=3",
               "distill.batch_size=32", "model.widths=[4]", "model.embed_dim=8", "data.per_class=5"]  # fmt: skip


@pytest.mark.slow
def test_train_and_evaluate_a_bridge_run_from_the_command_line(tmp_path, capsys):
    ensemble, bridges = tmp_path / "ensemble", tmp_path / "dbn"
    assert main(["train", "digits_ensemble", *ENSEMBLE_TINY, "--out", str(ensemble), "--no-progress"]) == 0
    args = [f"bridge.ensemble_run={ensemble}", "bridge.targets=[[0, 1], [0, 2]]", *BRIDGE_TINY]
    assert main(["train", "dbn_digits", *args, "--out", str(bridges), "--no-progress"]) == 0
    assert "trained 2 bridge(s) and 2 one-step student(s)" in capsys.readouterr().out
    assert [p.name for p in bridge_dirs(bridges)] == ["bridge-0", "bridge-1"]
    state = json.loads(next((bridges / "bridge-0").glob("step-*/state.json")).read_text())
    held = state["model_config"]["source"]
    assert held["source"].endswith("step-00000003") and len(held["sha256"]) == 64  # by reference
    model = load_bridge_run(bridges)
    assert len(model) == 2 and all(b.steps == 1 for b in model.bridges)
    member = load_ensemble(ensemble).members[0]
    assert torch.equal(model.bridges[0].source.module.head.weight, member.head.weight)
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(bridges), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "one-step bridges" in printed and "| set | acc | nll | brier | ece | nll_ts | ece_ts |" in printed
    assert set(json.loads(out.read_text())) == {"multi_step", "one_step"}
    assert (bridges / "eval" / "one_step" / "reliability_clean.png").is_file()
    # typed errors, one line and exit status 2
    bad = [f"bridge.ensemble_run={ensemble}", "bridge.targets=[[1, 2]]", *BRIDGE_TINY]
    assert main(["train", "dbn_digits", *bad, "--out", str(tmp_path / "bad")]) == 2
    assert "must contain the source member 0" in capsys.readouterr().err
    bad = [f"bridge.ensemble_run={ensemble}", "bridge.targets=[[0, 5]]", *BRIDGE_TINY]
    assert main(["train", "dbn_digits", *bad, "--out", str(tmp_path / "bad")]) == 2
    assert "has 3 members" in capsys.readouterr().err


def test_bridge_recipe_sections_are_checked():
    recipe = load_recipe("dbn_digits")
    assert recipe.config["model"]["name"] == "dbn" and recipe.config["bridge"]["targets"] == [[0, 1, 2, 3]]
    with pytest.raises(ConfigError, match="distill.steps"):
        load_recipe("dbn_digits", ["distill.steps=0"])
    with pytest.raises(ConfigError, match="bridge recipe's section"):
        load_recipe("digits_dit", ["bridge={targets: [[0]]}"])


def test_checkpoint_of_a_bridge_holding_its_member_by_value(tmp_path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        members = [CifarResNet(num_classes=10, in_chans=1, image_size=8, depth=8, width=4).eval() for _ in range(2)]
    images = torch.rand(48, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    trained = train_dbn(members[0], members, images, bridge={"widths": [4], "embed_dim": 8},
                        trainer={"steps": 3, "batch_size": 16, "log_every": 1},
                        distill={"steps": 2, "batch_size": 16}, out_dir=tmp_path)  # fmt: skip
    for one_step, model in ((False, trained.bridge), (True, trained.one_step)):
        folder = tmp_path / ("bridge-0-one_step" if one_step else "bridge-0")
        loaded = load_bridge(folder)
        x = images[:5]
        assert torch.equal(loaded.predict(x), model.predict(x))  # member weights restored from the checkpoint
