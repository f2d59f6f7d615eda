"""``genflow reflow pairs`` and the reflow recipes: reproducible, resumable, rank-split shards; the recipe chain."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import genflow as gf
from genflow.cli import EXIT_ERROR, main
from genflow.data import NamedTensorDataset
from genflow.errors import ConfigError
from genflow.pipeline import build, load_trained
from genflow.recipe import load_recipe, recipe_names
from genflow.reflow import PairDataset, PairGenerator, SegmentConditionedModel, SegmentEuler, SegmentGrid, shard_path
from genflow.reflow.command import training_data
from genflow.reflow.stages import euler_sampler, train_stage
from tests.reflow.analytic import LinearMapVelocity

TINY = ["trainer.steps=3", "trainer.batch_size=16", "trainer.checkpoint_every=3", "trainer.warmup_steps=0",
        "model.hidden_size=16", "model.depth=1", "data.args.n=256"]  # fmt: skip


@pytest.fixture
def pair_shards(tmp_path):
    """A folder of 2 shards of 4 pairs (a straight analytic teacher, 2 segments)."""
    folder = tmp_path / "pairs"
    data = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    PairGenerator(LinearMapVelocity(), segments=2, data=data, shard_size=4, progress=False).generate(folder, 2)
    return str(folder)


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A 1-rectified-flow toy run trained 3 steps with the toy_flow recipe (its recipe.yaml saved)."""
    out = tmp_path_factory.mktemp("toy") / "toy_flow"
    assert main(["train", "toy_flow", *TINY, "--out", str(out), "--no-progress"]) == 0
    return out


def _pairs(run, out, *extra):
    return main(["reflow", "pairs", str(run), "--n", "30", "--batch-size", "8", "--out", str(out), "--no-progress",
                 "--solver", "rk4", "--steps", "2", *extra])  # fmt: skip


def _shards(folder):
    return {p.name: load_file(str(p)) for p in sorted(folder.glob("shard-*.safetensors"))}


def test_pairs_are_reproducible_and_an_interrupted_run_resumes_to_the_same_shards(teacher_run, tmp_path, capsys):
    assert _pairs(teacher_run, tmp_path / "a", "--segments", "3") == 0
    assert "32 pairs in 4 shard(s)" in capsys.readouterr().out  # 30 rounded up to whole shards of 8
    first = _shards(tmp_path / "a")
    assert _pairs(teacher_run, tmp_path / "b", "--segments", "3") == 0
    assert _shards(tmp_path / "b").keys() == first.keys()
    for name, tensors in _shards(tmp_path / "b").items():
        for key, value in tensors.items():
            assert torch.equal(value, first[name][key]), (name, key)
    shard_path(tmp_path / "a", 2).unlink()  # killed before shard 2 was written
    assert _pairs(teacher_run, tmp_path / "a", "--segments", "3") == 0
    for key, value in _shards(tmp_path / "a")["shard-000002.safetensors"].items():
        assert torch.equal(value, first["shard-000002.safetensors"][key])
    assert sorted(PairDataset(tmp_path / "a").tensors[4].unique().tolist()) == [0, 1, 2]
    assert _pairs(teacher_run, tmp_path / "a", "--segments", "3", "--seed", "1") == EXIT_ERROR  # other settings
    assert "other settings" in capsys.readouterr().err


def test_under_torchrun_each_rank_writes_its_own_shards(teacher_run, tmp_path, monkeypatch):
    assert _pairs(teacher_run, tmp_path / "one") == 0
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        assert _pairs(teacher_run, tmp_path / "two") == 0
    assert (tmp_path / "two" / "manifest-rank0.json").is_file() and (tmp_path / "two" / "manifest-rank1.json").is_file()
    one, two = _shards(tmp_path / "one"), _shards(tmp_path / "two")
    assert one.keys() == two.keys()
    assert all(torch.equal(one[n]["end"], two[n]["end"]) for n in one)


def test_bad_arguments_are_one_line_errors(teacher_run, tmp_path, capsys, monkeypatch):
    assert main(["reflow", "pairs", str(teacher_run), "--n", "0", "--out", str(tmp_path)]) == EXIT_ERROR
    assert "--n must be >= 1" in capsys.readouterr().err
    assert _pairs(teacher_run, tmp_path / "x", "--solver-args", "[1]") == EXIT_ERROR
    assert "--solver-args must be a JSON object" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "two")
    assert _pairs(teacher_run, tmp_path / "y") == EXIT_ERROR
    assert "RANK and WORLD_SIZE must be integers" in capsys.readouterr().err
    monkeypatch.delenv("RANK")
    (tmp_path / "a_file").write_text("")
    assert _pairs(teacher_run, tmp_path / "a_file") == EXIT_ERROR
    assert "--out" in capsys.readouterr().err and not (tmp_path / "a_file").read_text()
    with pytest.raises(ConfigError, match="no saved recipe.yaml"):
        training_data(tmp_path)


def test_the_pairs_loader_reads_a_shard_folder_and_reflow_refuses_another_process(pair_shards):
    recipe = load_recipe("toy_reflow", [f"data.directory={pair_shards}", "init_from=unused"])
    parts = build(recipe)
    assert isinstance(parts.dataset, PairDataset) and len(parts.dataset) == 8
    assert parts.objective.process.to_config() == gf.LinearInterpolant().to_config()
    with pytest.raises(ConfigError, match="make them agree"):
        build(load_recipe("toy_reflow", [f"data.directory={pair_shards}", "init_from=unused", "process.name=vp"]))


def test_every_reflow_recipe_builds(pair_shards):
    names = [n for n in recipe_names() if load_recipe(n).config["data"]["name"] == "reflow_pairs"]
    assert {f"{d}_{s}" for d in ("toy", "digits") for s in ("reflow", "seqrf", "reflow_distill", "seqrf_distill")} \
        == set(names)
    for name in names:
        parts = build(load_recipe(name, [f"data.directory={pair_shards}"]))
        assert isinstance(parts.dataset, PairDataset) and parts.model.parameterization == "velocity"
        assert isinstance(parts.model, SegmentConditionedModel) == ("seqrf" in name)
        assert parts.objective.distill == name.endswith("distill")
    assert len(build(load_recipe("toy_flow")).dataset) == 20000


def test_segment_solvers_restart_on_their_own_grid_when_the_sampler_is_given_none():
    model = SegmentConditionedModel(gf.MLPScoreNet(hidden_size=8, depth=1, parameterization="velocity"), segments=3)
    process = gf.LinearInterpolant()
    outs = [
        gf.Sampler(process, model, SegmentEuler(3), grid=grid).sample((5, 2), 7, generator=torch.Generator())
        for grid in (None, SegmentGrid(3))
    ]
    assert torch.equal(outs[0].ts, outs[1].ts) and torch.equal(outs[0].samples, outs[1].samples)


def test_the_toy_recipe_chain_runs_end_to_end_and_seqrf_starts_from_its_teacher(teacher_run, tmp_path):
    """1-RF -> pairs -> 2-RF and SeqRF (init_from the teacher) -> their pairs -> both distillations."""
    runs = {"toy_flow": teacher_run}
    for segments, teacher, folder in ((1, "toy_flow", "toy_pairs_k1"), (4, "toy_flow", "toy_pairs_k4")):
        assert _pairs(runs[teacher], tmp_path / folder, "--segments", str(segments)) == 0
    stages = [("toy_reflow", "toy_flow", "toy_pairs_k1"), ("toy_seqrf", "toy_flow", "toy_pairs_k4"),
              ("toy_reflow_distill", "toy_reflow", "toy_reflow_pairs_k4"),
              ("toy_seqrf_distill", "toy_seqrf", "toy_seqrf_pairs_k4")]  # fmt: skip
    for name, init, pairs in stages:
        if not (tmp_path / pairs).exists():  # the distillations' pairs come from the stage they distil
            assert _pairs(runs[init], tmp_path / pairs, "--segments", "4") == 0
        runs[name] = tmp_path / name
        overrides = [o for o in TINY if not o.startswith("data.")] + [f"init_from={runs[init]}",
                                                                      f"data.directory={tmp_path / pairs}"]
        if "seqrf" in name:
            overrides = [o.replace("model.", "model.backbone.") for o in overrides]
        if name == "toy_seqrf":  # initialised from the teacher: before any step it computes the teacher's velocity
            recipe = load_recipe(name, overrides)
            trainer = gf.Trainer(build(recipe).model, gf.SequentialReflow(), steps=1, progress=False)
            trainer.initialize_from(runs[init])
            _, teacher = load_trained(runs[init])
            x, t = torch.randn(6, 2), torch.rand(6)
            torch.testing.assert_close(trainer.model(x, t, segment=torch.arange(6) % 4), teacher(x, t))
        assert main(["train", name, *overrides, "--out", str(runs[name]), "--no-progress"]) == 0
    _, distilled = load_trained(runs["toy_seqrf_distill"])
    out = gf.Sampler(gf.LinearInterpolant(), distilled, SegmentEuler(4)).sample((10, 2), 4, generator=torch.Generator())
    assert out.nfe == 4 and torch.isfinite(out.samples).all()


def test_train_stage_trains_a_frozen_copy_and_returns_its_ema():
    model = gf.MLPScoreNet(hidden_size=8, depth=1, parameterization="velocity").eval().requires_grad_(False)
    before = [p.clone() for p in model.parameters()]
    data = NamedTensorDataset(x=torch.randn(64, 2, generator=torch.Generator().manual_seed(0)))
    ema = train_stage(model, gf.FlowMatching(), data, steps=3, batch_size=16, ema_decay=0.5)
    assert ema is not model and not ema.training
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # trained in place
    plain = train_stage(model, gf.FlowMatching(), data, steps=1, batch_size=16, ema_decay=0.0)
    assert plain is model
    x = torch.randn(4, 2)
    one = euler_sampler(model).sample((4, 2), 3, x_init=x, generator=torch.Generator())
    ref = gf.Sampler(gf.LinearInterpolant(), model, gf.Euler()).sample((4, 2), 3, x_init=x, generator=torch.Generator())
    assert torch.equal(one.samples, ref.samples) and euler_sampler(model, 3).solver.segments.num_segments == 3
