"""Faults found by using the ``genflow`` command as a user would (issue 7): each one is a test that failed
before its fix. No run is lost to a refused command, no meaningless value passes silently, and bad input
gives one line on stderr and exit status 2 (130 for Ctrl-C) instead of a traceback."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

import genflow.pipeline as pipeline
from genflow.cli import main
from genflow.train.trainer import Trainer

TINY = ["trainer.steps=4", "trainer.batch_size=16", "trainer.checkpoint_every=2", "trainer.log_every=1",
        "model.hidden_size=16", "model.depth=1", "model.num_heads=2"]  # fmt: skip


def _fail(argv, capsys, *needles):
    """Run the command; it must exit 2 with one line on stderr holding every needle."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"genflow {next(a for a in argv if not a.startswith('-'))}:")
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny finished digits run (4 steps, checkpoints at 2 and 4)."""
    out = tmp_path_factory.mktemp("faults") / "run"
    assert main(["train", "digits_dit", *TINY, "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture
def no_sampling(monkeypatch):
    """Fail the test if anything is sampled: the command must refuse before any work."""

    def refuse(*args, **kwargs):
        raise AssertionError("sampled before the input was checked")

    monkeypatch.setattr(pipeline, "sample_with", refuse)


# ----------------------------------------------------------------------------------- data loss
def test_a_refused_or_failed_train_keeps_the_runs_recipe(run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = (copy / "recipe.yaml").read_text()
    _fail(["train", "digits_dit", *TINY, "seed=1", "--out", str(copy), "--no-progress"], capsys, "seed")
    _fail(["train", "digits_dit", *TINY, "model.hidden_size=32", "--out", str(copy), "--no-progress"], capsys)
    _fail(["train", "digits_dit", *TINY, "model.depht=2", "--out", str(copy), "--no-progress"], capsys, "'depht'")
    assert (copy / "recipe.yaml").read_text() == before
    assert yaml.safe_load(before)["data"] == {"name": "digits", "split": "train", "size": 8,
                                              "value_range": "generation"}  # fmt: skip


def test_the_data_config_and_tensorboard_reach_the_trainer(tmp_path, monkeypatch):
    seen = {}

    class Recording(Trainer):
        def __init__(self, *args, run_info=None, tensorboard=False, **kwargs):
            seen.update(run_info=run_info, tensorboard=tensorboard)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(pipeline, "Trainer", Recording)
    out = tmp_path / "run"
    assert main(["train", "digits_dit", *TINY, "trainer.steps=1", "--out", str(out), "--no-progress",
                 "--tensorboard"]) == 0  # fmt: skip
    assert seen["tensorboard"] is True
    assert seen["run_info"]["data"] == yaml.safe_load((out / "recipe.yaml").read_text())["data"]
    assert main(["train", "digits_dit", *TINY, "trainer.steps=1", "trainer.tensorboard=true", "--out",
                 str(tmp_path / "run2"), "--no-progress"]) == 0  # fmt: skip
    assert seen["tensorboard"] is True


def test_state_json_records_the_data_config(run):
    state = json.loads(next(run.glob("step-*/state.json")).read_text())
    assert state["run"]["data"]["name"] == "digits"


def test_demo_checks_its_overrides_before_touching_a_finished_run(tmp_path, capsys):
    finished = tmp_path / "train" / "step-00000600"
    finished.mkdir(parents=True)
    _fail(["demo", "--quick", "--out", str(tmp_path), "--override", "foo.bar=1"], capsys, "'foo'")
    _fail(["demo", "--quick", "--out", str(tmp_path), "--override", "sample.n=2"], capsys, "sample.n")
    _fail(["demo", "--quick", "--out", str(tmp_path), "--override", "trainer.steps=5"], capsys, "--fresh")
    assert finished.is_dir()  # never deleted without being asked


# --------------------------------------------------------------------------- meaningless values
@pytest.mark.parametrize(
    "override, needles",
    [
        ("trainer.steps=true", ["trainer.steps must be an integer >= 1", "True (bool)"]),
        ("trainer.checkpoint_every=-1", ["trainer.checkpoint_every must be an integer >= 0"]),
        ("sead=7", ["'sead'", "accepted arguments: data, process"]),
        ("trainer.lr=abc", ["trainer.lr must be a number > 0", "'abc' (str)"]),
        ("trainer.lr=-1", ["trainer.lr must be a number > 0"]),
        ("trainer.stpes=3", ["'stpes'", "accepted arguments: steps, batch_size"]),
        ("model.depht=2", ["'depht'", "accepted arguments: image_size"]),
        ("data=digits", ["data must be a section", "'digits' (str)"]),
        ("data={name: image_folder}", ["missing required argument(s) 'root'"]),
        ("init_from={path: x, emma: true}", ["'emma'"]),
        ("plugins=[no_such_genflow_plugin]", ["no module named 'no_such_genflow_plugin'"]),
    ],
)
def test_bad_recipe_values_are_one_line_errors(override, needles, tmp_path, capsys):
    _fail(["train", "digits_dit", *TINY, override, "--out", str(tmp_path / "run"), "--no-progress"], capsys, *needles)
    assert not (tmp_path / "run" / "recipe.yaml").exists()


def test_an_out_dir_that_is_a_file_or_unwritable_is_refused(tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("")
    _fail(["train", "digits_dit", *TINY, "--out", str(file), "--no-progress"], capsys, "is a file")
    _fail(["train", "digits_dit", *TINY, "--out", str(file / "run"), "--no-progress"], capsys, "cannot write")


def test_ctrl_c_says_where_the_last_checkpoint_is(tmp_path, capsys, monkeypatch):
    from genflow.objectives.dsm import DenoisingScoreMatching

    calls = []
    loss = DenoisingScoreMatching.loss

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return loss(self, *args, **kwargs)

    monkeypatch.setattr(DenoisingScoreMatching, "loss", interrupted)
    out = tmp_path / "run"
    assert main(["train", "digits_dit", *TINY, "--out", str(out), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert f"the last checkpoint is {out / 'step-00000002'}" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------ sample
@pytest.mark.parametrize(
    "args, needles",
    [
        (["--solver-args", "[3]"], ["--solver-args must be a JSON object"]),
        (["--solver-args", "{order: 3}"], ["--solver-args is not valid JSON"]),
        (["--solver-args", '{"ordr": 3}'], ["'ordr'", "accepted arguments: order, lower_order_final"]),
        (["--solver-args", '{"steps": 3}'], ["use --steps"]),
        (["--out", "."], ["is a folder"]),
        (["--save", "missing/s.safetensors"], ["does not exist"]),
    ],
)
def test_sample_checks_its_arguments_before_sampling(run, args, needles, capsys, no_sampling, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fail(["sample", str(run), *args], capsys, *needles)


def test_sample_keeps_one_output_when_the_other_fails(run, tmp_path, capsys, monkeypatch):
    import genflow.cli as cli

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "save_grid", broken)
    saved = tmp_path / "s.safetensors"
    _fail(["sample", str(run), "--n", "4", "--steps", "2", "--out", str(tmp_path / "g.png"), "--save", str(saved)],
          capsys, "No space left on device")  # fmt: skip
    assert saved.stat().st_size > 0


# ---------------------------------------------------------------------------------------- evaluate
def _broken_run(run, tmp_path, edit):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    edit(copy)
    return copy


@pytest.mark.parametrize(
    "edit, needles",
    [
        (lambda r: (r / "step-00000004").rename(r / "best"), ["named step-XXXXXXXX", "'best'"]),
        (lambda r: _edit_state(r, lambda s: s.pop("step")), ["expected 'step' to be the integer 4", "None"]),
        (lambda r: _edit_state(r, lambda s: s.update(step="four")), ["'four'"]),
        (lambda r: (r / "recipe.yaml").write_text("data: [\n"), ["recipe.yaml is not valid YAML"]),
        (lambda r: (r / "recipe.yaml").write_text("seed: 1\n"), ["lacks the section(s) data"]),
    ],
)
def test_evaluate_reports_a_damaged_run_in_one_line(run, tmp_path, capsys, edit, needles, no_sampling):
    broken = _broken_run(run, tmp_path, edit)
    target = broken / "best" if (broken / "best").exists() else broken
    _fail(["evaluate", str(target), "--n", "65"], capsys, *needles)


def _edit_state(run, change):
    path = run / "step-00000004" / "state.json"
    state = json.loads(path.read_text())
    change(state)
    path.write_text(json.dumps(state))


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--n", "2"], ["--n must be an integer in [65, 1253]"]),
        (["--n", "5000"], ["--n must be an integer in [65, 1253]"]),
        (["--solvers", "ddim"], ["--solvers is not valid JSON"]),
        (["--solvers", '{"name": "ddim"}'], ["--solvers must be a JSON list"]),
        (["--solvers", '[{"name": "ddim"}]'], ["needs 'steps'"]),
        (["--solvers", '[{"name": "ddim", "steps": 2}, {"name": "ddim", "et": 1, "steps": 2}]'], ["'et'"]),
        (["--out", "missing/eval.json"], ["does not exist"]),
    ],
)
def test_evaluate_checks_its_arguments_before_sampling(run, args, needles, capsys, no_sampling):
    _fail(["evaluate", str(run), *args], capsys, *needles)
