"""``genflow sample --exit`` and a recipe's ``sample.exit`` block; exit policy specs."""

from __future__ import annotations

import json
import re

import pytest

from genflow.cli import main
from genflow.errors import ConfigError, UnknownArgumentError, UnknownComponentError
from genflow.exit import LinearExit, StaircaseExit, exit_policy_from
from genflow.recipe import load_recipe

TINY = ["trainer.steps=2", "trainer.batch_size=8", "trainer.checkpoint_every=2", "trainer.log_every=1",
        "model.hidden_size=16", "model.depth=4", "model.num_heads=2"]  # fmt: skip


def _gflops(text: str) -> float:
    return float(re.search(r"([0-9.e+-]+) GFLOPs", text).group(1))


def test_sample_command_takes_an_exit_policy_or_the_recipe_block(tmp_path, capsys):
    run = tmp_path / "run"
    block = 'sample.exit={name: staircase, fractions: [1.0, 0.5]}'
    assert main(["train", "digits_dit", *TINY, block, "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    common = ["sample", str(run), "--solver", "ddim", "--steps", "4", "--n", "4", "--out", ""]
    assert main([*common, "--exit", "full"]) == 0
    full = _gflops(capsys.readouterr().out)
    assert main(common) == 0  # the recipe's block: all blocks on [0, 0.5), two of four after
    recipe_out = capsys.readouterr().out
    assert "exit staircase" in recipe_out and _gflops(recipe_out) < full
    assert main([*common, "--exit", 'linear:{"start": 0.5, "end": 0.0}']) == 0
    assert _gflops(capsys.readouterr().out) < _gflops(recipe_out)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(StaircaseExit(depths=[4, 1]).to_config()))
    assert main([*common, "--exit", str(policy)]) == 0
    assert main([*common, "--exit", "linear:{oops"]) == 2
    assert "--exit arguments of 'linear' is not valid JSON" in capsys.readouterr().err
    result = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--solvers", '[{"name": "ddim", "steps": 2}]', "--n", "65",
                 "--exit", "full", "--out", str(result)]) == 0  # fmt: skip
    assert json.loads(result.read_text())["exit"] == {"name": "full"}
    assert main(["evaluate", str(run), "--solvers", '[{"name": "ddim", "steps": 2}]', "--n", "65",
                 "--out", str(result)]) == 0  # fmt: skip
    assert json.loads(result.read_text())["exit"]["name"] == "staircase"  # the recipe's block


def test_exit_policy_specs():
    assert isinstance(exit_policy_from("full"), type(exit_policy_from({"name": "full"})))
    linear = exit_policy_from('linear:{"start": 0.9, "end": 0.3}')
    assert isinstance(linear, LinearExit) and (linear.start, linear.end) == (0.9, 0.3)
    assert exit_policy_from(linear) is linear
    with pytest.raises(UnknownComponentError):
        exit_policy_from("nope")
    with pytest.raises(UnknownArgumentError):
        exit_policy_from('linear:{"slope": 1}')
    with pytest.raises(ConfigError, match="JSON object"):
        exit_policy_from("linear:[1, 2]")
    with pytest.raises(ConfigError, match="does not exist"):
        exit_policy_from("missing.json", "--exit")
    with pytest.raises(ConfigError, match="exit policy"):
        exit_policy_from(3)
    with pytest.raises(ConfigError, match="sample.exit must be an exit policy"):
        load_recipe("digits_dit", ["sample.exit=3"])
