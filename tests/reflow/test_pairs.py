"""Pair generation: closed-form ends, reproducibility, resume after interruption, typed errors for bad shards."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import genflow as gf
from genflow.errors import ComponentError, ConfigError
from genflow.reflow import PAIR_FIELDS, PairDataset, PairGenerator, PairShardError, SegmentSpec, shard_path
from tests.reflow.analytic import LinearMapVelocity

DATA = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))


def _generator(segments=1, seed=0, **kw) -> PairGenerator:
    data = DATA if segments != 1 else None
    return PairGenerator(
        LinearMapVelocity(),
        segments=segments,
        data=data,
        event_shape=(2,),
        shard_size=6,
        seed=seed,
        progress=False,
        **kw,
    )


def test_full_trajectory_pairs_are_the_teachers_map(tmp_path):
    manifest = _generator().generate(tmp_path, 2)
    pairs = PairDataset(tmp_path)
    start, end, t_start, t_end, segment = pairs.tensors
    assert pairs.fields == PAIR_FIELDS and len(pairs) == 12 == manifest.pairs
    torch.testing.assert_close(end, LinearMapVelocity().data_of(start), rtol=1e-3, atol=1e-3)  # dopri5, tol 1e-4
    assert bool((t_start == 1).all() and (t_end == 0).all() and (segment == 0).all())
    assert manifest.teacher_nfe == pairs.teacher_nfe > 0 and manifest.teacher_evaluations == 6 * manifest.teacher_nfe
    assert json.loads((tmp_path / "manifest.json").read_text())["teacher_nfe"] == manifest.teacher_nfe


def test_segment_pairs_follow_the_teacher_across_their_segment(tmp_path):
    _generator(segments=3).generate(tmp_path, 2)
    start, end, t_start, t_end, segment = PairDataset(tmp_path).tensors
    spec = SegmentSpec.uniform(3)
    assert segment.tolist() == [i % 3 for i in range(12)]
    bounds = torch.tensor(spec.boundaries)
    assert torch.equal(t_start, bounds[segment]) and torch.equal(t_end, bounds[segment + 1])
    teacher = LinearMapVelocity()
    z = teacher.noise_of(start, t_start.unsqueeze(1).double()[:, 0])  # the straight line through each start
    expected = (1 - t_end.unsqueeze(1)) * teacher.data_of(z) + t_end.unsqueeze(1) * z
    torch.testing.assert_close(end, expected.float(), rtol=1e-3, atol=1e-3)


def test_any_registered_ode_solver_by_name(tmp_path):
    manifest = _generator(solver="rk4", steps=4).generate(tmp_path, 1)
    assert manifest.teacher_nfe == 16  # 4 RK4 steps of 4 evaluations
    start, end = PairDataset(tmp_path).tensors[:2]
    torch.testing.assert_close(end, LinearMapVelocity().data_of(start), rtol=1e-3, atol=1e-3)


def test_a_segment_aware_teacher_is_evaluated_in_the_segment_it_crosses(tmp_path):
    spec = SegmentSpec.uniform(3)
    teacher = LinearMapVelocity(segments=spec)
    gen = PairGenerator(teacher, segments=spec, data=DATA, shard_size=6, solver="rk4", steps=2, progress=False)
    gen.make_shard(0)
    # one RK4 solve per segment, 2 steps of 4 evaluations each, the last on the segment's data-side boundary
    assert [int(k) for k in teacher.seen_segments] == [0] * 8 + [1] * 8 + [2] * 8


def test_same_seed_same_pairs_other_seed_other_pairs(tmp_path):
    _generator(seed=5).generate(tmp_path / "a", 2)
    _generator(seed=5).generate(tmp_path / "b", 2)
    _generator(seed=6).generate(tmp_path / "c", 2)
    a, b, c = (PairDataset(tmp_path / d).tensors[0] for d in "abc")
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_interrupted_run_resumes_to_the_same_shards(tmp_path):
    gen = _generator(segments=2)
    gen.generate(tmp_path / "whole", 6)
    gen.generate(tmp_path / "resumed", 3)  # "killed" after shards 0..2
    shard_path(tmp_path / "resumed", 2).unlink()  # ... and shard 2 never got written
    calls = []
    resumed = _generator(segments=2)
    original = resumed.make_shard
    resumed.make_shard = lambda index: calls.append(index) or original(index)
    manifest = resumed.generate(tmp_path / "resumed", 6)
    assert calls == [2, 3, 4, 5] and manifest.shards == list(range(6))
    for index in range(6):
        whole, again = (load_file(str(shard_path(tmp_path / d, index))) for d in ("whole", "resumed"))
        assert all(torch.equal(whole[k], again[k]) for k in PAIR_FIELDS)
    assert manifest.teacher_nfe == PairDataset(tmp_path / "whole").teacher_nfe


def test_ranks_split_the_shards(tmp_path):
    for rank in range(2):
        _generator().generate(tmp_path, 5, rank=rank, world_size=2)
    assert (tmp_path / "manifest-rank1.json").exists()
    single = _generator()
    for index in range(5):
        assert torch.equal(load_file(str(shard_path(tmp_path, index)))["end"], single.make_shard(index)[0]["end"])


def test_resuming_with_other_settings_is_refused(tmp_path):
    _generator(seed=1).generate(tmp_path, 1)
    with pytest.raises(PairShardError, match="other settings"):
        _generator(seed=2).generate(tmp_path, 2)


def _write(path, tensors, metadata=None):
    save_file(tensors, str(path), metadata=metadata if metadata is not None else {"format": "genflow.reflow.pairs/1"})


GOOD = {
    "start": torch.zeros(4, 2), "end": torch.ones(4, 2), "t_start": torch.ones(4), "t_end": torch.zeros(4),
    "segment": torch.zeros(4, dtype=torch.int64),
}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"start": None}, "exactly"),
        ({"extra": torch.zeros(4)}, "exactly"),
        ({"end": torch.ones(4, 3)}, "one shape"),
        ({"start": torch.zeros(4), "end": torch.zeros(4)}, r"\(n, \*event_shape\)"),
        ({"t_start": torch.ones(5)}, r"t_start must be floating of shape \(4,\)"),
        ({"segment": torch.zeros(4)}, "segment must be integer"),
        ({"t_end": torch.full((4,), 2.0)}, "t_start > t_end"),
    ],
)
def test_shards_of_the_wrong_shape_or_keys_raise(tmp_path, change, message):
    tensors = {**GOOD, **change}
    _write(shard_path(tmp_path, 0), {k: v for k, v in tensors.items() if v is not None})
    with pytest.raises(PairShardError, match=message):
        PairDataset(tmp_path)


def test_unreadable_foreign_or_missing_shards_raise(tmp_path):
    with pytest.raises(PairShardError, match="no pair shards"):
        PairDataset(tmp_path)
    shard_path(tmp_path, 0).write_bytes(b"not a safetensors file")
    with pytest.raises(PairShardError, match="not a readable safetensors"):
        PairDataset(tmp_path)
    _write(shard_path(tmp_path, 0), GOOD, metadata={})
    with pytest.raises(PairShardError, match="not a reflow pair shard"):
        PairDataset(tmp_path)


def test_bad_generator_settings_raise():
    with pytest.raises(ConfigError, match="data="):
        PairGenerator(LinearMapVelocity(), segments=2, event_shape=(2,))
    with pytest.raises(ComponentError, match="ODE solve"):
        PairGenerator(LinearMapVelocity(), solver=gf.EulerMaruyama(), event_shape=(2,))
    with pytest.raises(ConfigError, match="shard_size"):
        PairGenerator(LinearMapVelocity(), event_shape=(2,), shard_size=0)
    with pytest.raises(ConfigError, match="rank"):
        _generator().generate("unused", 2, rank=2, world_size=2)
