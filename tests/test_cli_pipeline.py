"""Recipes, the Python pipeline and the genflow command, end to end on tiny runs."""

from __future__ import annotations

import importlib
import json
import re

import pytest
import torch

import genflow as gf
from genflow.cli import main
from genflow.errors import ConfigError, UnknownArgumentError
from genflow.pipeline import build, load_trained, sample_with
from genflow.recipe import apply_overrides, load_recipe, recipe_names

TINY = ["trainer.steps=6", "trainer.batch_size=16", "trainer.checkpoint_every=3", "trainer.log_every=1",
        "model.hidden_size=16", "model.depth=2", "model.num_heads=2"]  # fmt: skip


def test_shipped_recipes_build():
    assert {"digits_dit", "digits_flow"} <= set(recipe_names())
    for name in recipe_names():
        if load_recipe(name).config["model"]["name"] in gf.classify.CLASSIFIERS:
            continue  # classifier recipes train through genflow.classify.train_recipe (tests/classify)
        model = load_recipe(name).config["model"]
        tiny = [o for o in TINY if not o.startswith("model.num_heads") or "num_heads" in model]  # conv models: none
        parts = build(load_recipe(name, tiny))
        assert isinstance(parts.process, gf.GaussianProcess) and isinstance(parts.model, gf.ScoreModel)
        assert len(parts.dataset) == 1253


def test_classifier_recipes_have_their_own_sections():
    recipe = load_recipe("digits_ensemble")
    assert "process" not in recipe.config and recipe.config["ensemble"] == {"members": 4}
    with pytest.raises(ConfigError, match="is a classifier; train it with genflow.classify.train_recipe"):
        build(recipe)
    with pytest.raises(ConfigError, match=r"ensemble.members must be an integer >= 1; got 0"):
        load_recipe("digits_ensemble", ["ensemble.members=0"])
    with pytest.raises(UnknownArgumentError, match="'size'; accepted arguments: members"):
        load_recipe("digits_ensemble", ["ensemble={members: 2, size: 3}"])
    with pytest.raises(ConfigError, match="'validation' is a classifier recipe's section"):
        load_recipe("digits_dit", ["validation={name: digits}"])
    with pytest.raises(ConfigError, match="lacks the section.s. process, sample; a recipe needs data, process"):
        load_recipe("digits_classifier", ["model={name: dit}"])


def test_overrides_and_errors(tmp_path):
    config = apply_overrides(
        {"trainer": {"steps": 1}, "model": {"name": "dit"}}, ["trainer.steps=5", "model.depth=[1]"]
    )
    assert config == {"trainer": {"steps": 5}, "model": {"name": "dit", "depth": [1]}}
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["steps"])
    with pytest.raises(ConfigError, match="'nope' is not a section"):
        apply_overrides({"trainer": {}}, ["nope.steps=1"])
    with pytest.raises(ConfigError, match="unknown recipe 'nope'; shipped recipes: .*digits_dit"):
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


@pytest.mark.slow
def test_demo_writes_report_with_table_grid_and_every_method_section(tmp_path):
    from genflow.demo_sections import SECTIONS

    overrides = [f"--override={o}" for o in [*TINY, "sample.n=65"]]
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress", *overrides]) == 0
    report = (tmp_path / "report.md").read_text()
    for solver in ("| ddpm |", "| ddim |", "| dpm_solver_pp(order=2) |", "| dopri5(rtol=0.001, atol=0.001) |"):
        assert solver in report
    assert "Real-vs-real floor" in report and "![samples](samples.png)" in report and "Core check" in report
    assert (tmp_path / "samples.png").read_bytes()[:4] == b"\x89PNG"
    for name in SECTIONS:
        title = importlib.import_module(f"genflow.demo_sections.{name}").TITLE
        assert f"## {title}" in report
    for picture in re.findall(r"!\[[^]]*\]\(([^)]+)\)", report):
        assert (tmp_path / picture).is_file(), picture


def test_demo_sections_are_chosen_by_name():
    from genflow.demo import chosen_sections
    from genflow.demo_sections import SECTIONS

    assert chosen_sections("all") == list(SECTIONS) and chosen_sections("none") == []
    if SECTIONS:
        assert chosen_sections(f" {SECTIONS[0]} ") == [SECTIONS[0]]
    with pytest.raises(ConfigError, match="unknown section"):
        chosen_sections("no_such_section")


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


# --------------------------------------------------------------------------- plugins and init_from
DOCS = __import__("pathlib").Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def _doc_block(title: str) -> str:
    import re

    match = re.search(rf'```\w+ title="{re.escape(title)}"\n(.*?)```', DOCS.read_text(), flags=re.S)
    assert match, f"docs/extending.md has no block titled {title}"
    return match.group(1)


def test_the_documented_plugin_trains_from_a_recipe_and_samples(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    (tmp_path / "my_plugin.py").write_text(_doc_block("my_plugin.py"))
    recipe = tmp_path / "my_recipe.yaml"
    recipe.write_text(_doc_block("my_recipe.yaml").replace("trainer: {steps: 40", "trainer: {steps: 4"))
    plain = tmp_path / "plain.yaml"  # the same recipe without the plugins key: --plugin on the command line
    plain.write_text("".join(line for line in recipe.read_text().splitlines(True) if not line.startswith("plugins")))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main(["train", str(plain), "--out", str(tmp_path / "no_plugin"), "--no-progress"]) == 2
        assert main(["--plugin", "my_plugin", "train", str(plain), "--out", str(tmp_path / "a"), "--no-progress"]) == 0
        assert main(["train", str(recipe), "--out", str(tmp_path / "b"), "--no-progress",
                     "--plugin", "my_plugin"]) == 0  # fmt: skip  (imported once: no second registration)
        assert gf.MODELS.get("my_residual_mlp").__module__ == "my_plugin"
    finally:
        gf.MODELS._entries.pop("my_residual_mlp", None)
        sys.modules.pop("my_plugin", None)
    # a fresh process finds the plugin through the run's saved recipe alone
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(DOCS.parents[1])])}
    grid = tmp_path / "moons.png"
    command = [sys.executable, "-m", "genflow.cli", "sample", str(tmp_path / "b"), "--solver", "euler", "--steps", "3",
               "--n", "16", "--out", str(grid)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert grid.read_bytes()[:4] == b"\x89PNG"


def test_documented_nested_config_example_runs():
    import re
    import subprocess
    import sys

    block = next(b for b in re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S) if "my_two_process" in b)
    done = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["{'name': 've', 'sigma_min': 0.01, 'sigma_max': 20.0}", "SubVPProcess"]


def test_plugin_file_paths_and_missing_plugins(tmp_path):
    from genflow.plugins import import_plugins

    plugin = tmp_path / "counting_plugin.py"
    plugin.write_text("import builtins\nbuiltins.genflow_plugin_runs = getattr(builtins, 'genflow_plugin_runs', 0) + 1")
    import builtins

    try:
        import_plugins([str(plugin), str(plugin)])
        assert builtins.genflow_plugin_runs == 1  # imported once
    finally:
        del builtins.genflow_plugin_runs
    with pytest.raises(ConfigError, match="does not exist"):
        import_plugins([str(tmp_path / "absent.py")])
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("import genflow_module_that_does_not_exist\n")
    with pytest.raises(ModuleNotFoundError):  # the plugin's own failure keeps its traceback
        import_plugins([str(broken)])


def _initialized(overrides, path, ema):
    """The recipe's model after ``Trainer.initialize_from(path, ema=ema)`` (what ``init_from`` runs)."""
    parts = build(load_recipe("digits_dit", overrides))
    gf.Trainer(parts.model, parts.objective, progress=False).initialize_from(path, ema=ema)
    return parts.model


def test_init_from_starts_from_the_checkpoints_weights(tmp_path, capsys):
    from genflow.train import load_checkpoint

    source = tmp_path / "source"
    assert main(["train", "digits_dit", *TINY, "--out", str(source), "--no-progress"]) == 0
    ckpt = load_checkpoint(source)
    assert not torch.equal(build(load_recipe("digits_dit", TINY)).model.state_dict()["final.linear.weight"],
                           ckpt.model["final.linear.weight"])  # fmt: skip
    for ema, weights in [(False, ckpt.model), (True, ckpt.ema)]:
        model = _initialized(TINY, source, ema)
        assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    # through the command line: with a vanishing learning rate one step stays at the loaded weights
    tuned = tmp_path / "tuned"
    assert main(["train", "digits_dit", *TINY, "trainer.steps=1", "trainer.lr=1e-30", "trainer.ema_decay=0",
                 f"init_from={{path: {source}, ema: true}}", "--out", str(tuned), "--no-progress"]) == 0  # fmt: skip
    after = load_checkpoint(tuned).model
    assert all(torch.allclose(after[k], ckpt.ema[k], atol=1e-6) for k in after)
    # weights that do not fit are named
    with pytest.raises(ConfigError, match=r"shape mismatch\(es\) \(saved vs model\): .*\(16,\) vs \(32,\)"):
        _initialized([*TINY, "model.hidden_size=32"], source, False)
    with pytest.raises(ConfigError, match=r"missing key\(s\): blocks\.2\."):
        _initialized([*TINY, "model.depth=3"], source, False)
    assert main(["train", "digits_dit", *TINY, "model.depth=3", f"init_from={source}",
                 "--out", str(tmp_path / "bad"), "--no-progress"]) == 2  # fmt: skip
    assert "missing key(s): blocks.2." in capsys.readouterr().err


CLASSIFIER_TINY = ["trainer.steps=3", "trainer.batch_size=16", "trainer.validate_every=0", "trainer.log_every=1",
                   "model.depth=8", "model.width=4"]  # fmt: skip


def test_train_and_evaluate_a_classifier_run_from_the_command_line(tmp_path, capsys):
    from genflow.classify import load_classifier, load_ensemble

    single, ensemble = tmp_path / "single", tmp_path / "ensemble"
    assert main(["train", "digits_classifier", *CLASSIFIER_TINY, "--out", str(single), "--no-progress"]) == 0
    assert main(["train", "digits_ensemble", *CLASSIFIER_TINY, "ensemble.members=2", "--out", str(ensemble),
                 "--no-progress"]) == 0  # fmt: skip
    assert "trained 2 classifier(s), 3 steps each" in capsys.readouterr().out
    assert load_recipe(str(ensemble / "recipe.yaml")).config["ensemble"] == {"members": 2}
    assert len(load_ensemble(ensemble)) == 2 and (single / "step-00000003").is_dir()
    result = tmp_path / "metrics.json"
    assert main(["evaluate", str(single), "--out", str(result)]) == 0
    table = capsys.readouterr().out
    assert "| set | acc | nll | brier | ece | nll_ts | ece_ts |" in table and "| clean |" in table
    assert (single / "eval" / "metrics.md").is_file() and (single / "eval" / "reliability_clean.png").is_file()
    # the clean accuracy is the classifier's, recomputed here from its own predictions on the test split
    from genflow.classify import protocol_data

    test = protocol_data(8).test
    model = load_classifier(single)
    with torch.no_grad():
        expected = (model(test.images).argmax(-1) == test.labels).double().mean().item()
    clean = next(r for r in json.loads(result.read_text())["rows"] if r["set"] == "clean")
    assert clean["acc"] == pytest.approx(expected)
    report = tmp_path / "ens_eval"
    assert main(["evaluate", str(ensemble), "--report-dir", str(report)]) == 0
    assert "ensemble of 2" in (report / "metrics.md").read_text()
    # one step folder of a classifier run is a classifier checkpoint too; solvers do not apply
    assert main(["evaluate", str(single / "step-00000003"), "--solvers", '[{"name": "ddim", "steps": 3}]']) == 2
    assert "is a classifier run" in capsys.readouterr().err
    # a typed error is one line and exit status 2
    assert main(["train", "digits_ensemble", *CLASSIFIER_TINY, "ensemble.members=0", "--out", str(ensemble)]) == 2
    assert "ensemble.members must be an integer >= 1" in capsys.readouterr().err


def test_ctrl_c_in_an_ensemble_names_the_last_members_checkpoint(tmp_path, capsys, monkeypatch):
    from genflow.objectives.classification import CrossEntropy

    calls = []
    loss = CrossEntropy.loss

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # member 0 ran its 2 steps; member 1 is stopped in its second step
            raise KeyboardInterrupt
        return loss(self, *args, **kwargs)

    monkeypatch.setattr(CrossEntropy, "loss", interrupted)
    out = tmp_path / "ens"
    assert main(["train", "digits_ensemble", *CLASSIFIER_TINY, "trainer.steps=2", "trainer.checkpoint_every=1",
                 "ensemble.members=2", "--out", str(out), "--no-progress"]) == 130  # fmt: skip
    assert f"the last checkpoint is {out / 'member-1' / 'step-00000001'}" in capsys.readouterr().err
