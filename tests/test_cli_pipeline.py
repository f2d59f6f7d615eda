"""Recipes, the Python pipeline and the genflow command, end to end on tiny runs."""

from __future__ import annotations

import json

import pytest
import torch

import genflow as gf
from genflow.cli import main
from genflow.errors import ConfigError
from genflow.pipeline import build, load_trained, sample_with
from genflow.recipe import apply_overrides, load_recipe, recipe_names

TINY = ["trainer.steps=6", "trainer.batch_size=16", "trainer.checkpoint_every=3", "trainer.log_every=1",
        "model.hidden_size=16", "model.depth=2", "model.num_heads=2"]  # fmt: skip


def test_shipped_recipes_build():
    assert {"digits_dit", "digits_flow"} <= set(recipe_names())
    for name in recipe_names():
        parts = build(load_recipe(name, TINY))
        assert isinstance(parts.process, gf.GaussianProcess) and isinstance(parts.model, gf.ScoreModel)
        assert len(parts.dataset) == 1253


def test_overrides_and_errors(tmp_path):
    config = apply_overrides(
        {"trainer": {"steps": 1}, "model": {"name": "dit"}}, ["trainer.steps=5", "model.depth=[1]"]
    )
    assert config == {"trainer": {"steps": 5}, "model": {"name": "dit", "depth": [1]}}
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["steps"])
    with pytest.raises(ConfigError, match="'nope' is not a section"):
        apply_overrides({"trainer": {}}, ["nope.steps=1"])
    with pytest.raises(ConfigError, match="unknown recipe 'nope'; shipped recipes: digits_dit"):
        load_recipe("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {name: digits}\n")
    with pytest.raises(ConfigError, match="lacks the section"):
        load_recipe(bad)
    with pytest.raises(TypeError, match="accepted arguments"):
        build(load_recipe("digits_dit", ["model.depht=2"]))


def test_train_sample_evaluate_commands(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "digits_dit", *TINY, "--out", str(run), "--no-progress"]) == 0
    assert sorted(p.name for p in run.glob("step-*")) == ["step-00000003", "step-00000006"]
    process, model = load_trained(run)
    out = sample_with(process, model, {"name": "ddim", "steps": 3}, 5, seed=1)
    assert out.samples.shape == (5, 1, 8, 8) and out.nfe == 3
    grid, saved = tmp_path / "grid.png", tmp_path / "s.safetensors"
    assert main(["sample", str(run), "--solver", "dpm_solver_pp", "--solver-args", '{"order": 3}', "--steps", "4",
                 "--n", "8", "--out", str(grid), "--save", str(saved)]) == 0  # fmt: skip
    assert grid.read_bytes()[:4] == b"\x89PNG" and saved.exists()
    result = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--solvers", '[{"name": "ddim", "steps": 3}]', "--n", "65",
                 "--out", str(result)]) == 0  # fmt: skip
    data = json.loads(result.read_text())
    assert data["checkpoint_step"] == 6 and data["rows"][0]["NFE"] == 3 and data["floor"] > 0
    # resuming a finished run trains no further
    assert main(["train", "digits_dit", *TINY, "--out", str(run), "--no-progress"]) == 0
    assert "trained 6 steps" in capsys.readouterr().out


def test_demo_writes_report_with_table_and_grid(tmp_path):
    overrides = [f"--override={o}" for o in [*TINY, "sample.n=65"]]
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress", *overrides]) == 0
    report = (tmp_path / "report.md").read_text()
    for solver in ("| ddpm |", "| ddim |", "| dpm_solver_pp(order=2) |", "| dopri5(rtol=0.001, atol=0.001) |"):
        assert solver in report
    assert "Real-vs-real floor" in report and "![samples](samples.png)" in report and "Core check" in report
    assert (tmp_path / "samples.png").read_bytes()[:4] == b"\x89PNG"


def test_help_explains_each_command(capsys):
    for command in ("demo", "train", "sample", "evaluate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert len(capsys.readouterr().out) > 200
    torch.manual_seed(0)  # the commands never touch the caller's global RNG state
    state = torch.random.get_rng_state()
    build(load_recipe("digits_dit", TINY))
    assert torch.equal(state, torch.random.get_rng_state())


def test_toy2d_recipe_with_flow_matching_and_yaml_floats(tmp_path):
    recipe = tmp_path / "moons.yaml"
    recipe.write_text(
        "seed: 3\nout_dir: unused\n"
        "data: {name: toy2d, args: {name: moons, n: 256}}\n"
        "process: {name: linear_interpolant}\n"
        "model: {name: mlp, dim: 2, hidden_size: 32, depth: 2, parameterization: velocity}\n"
        "objective: {name: flow_matching}\n"
        "trainer: {steps: 4, batch_size: 32, lr: 1e-3, log_every: 1}\n"
        "sample: {n: 16, solvers: [{name: euler, steps: 4}]}\n"
    )
    loaded = load_recipe(recipe)
    assert loaded.config["trainer"]["lr"] == 1e-3  # YAML 1.1 alone would read 1e-3 as a string
    parts = build(loaded)
    assert parts.dataset.tensors[0].shape == (256, 2)
    assert torch.equal(parts.dataset.tensors[0], build(loaded).dataset.tensors[0])  # seeded from the recipe
    main(["train", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"])
    process, model = load_trained(tmp_path / "run")
    assert isinstance(process, gf.LinearInterpolant)
    assert sample_with(process, model, {"name": "euler", "steps": 4}, 8).samples.shape == (8, 2)


def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    assert main(["train", "nope"]) == 2
    assert "genflow train: error: unknown recipe 'nope'" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "missing")]) == 2
    assert "no checkpoint found" in capsys.readouterr().err


def test_evaluate_uses_the_runs_own_recipe(tmp_path):
    from genflow.cli import _default_solvers

    run = tmp_path / "run"
    assert main(["train", "digits_dit", *TINY, "sample.solvers=[{name: ddim, steps: 2}]", "--out", str(run),
                 "--no-progress"]) == 0  # fmt: skip
    assert _default_solvers(str(run)) == [{"name": "ddim", "steps": 2}]
    assert _default_solvers(str(next(run.glob("step-*")))) == [{"name": "ddim", "steps": 2}]
