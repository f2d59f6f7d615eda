"""Segment specifications and the segment grid: validation, membership of times, step splitting."""

from __future__ import annotations

import json

import pytest
import torch

import genflow as gf
from genflow.errors import ConfigError, TimeGridError
from genflow.reflow import SegmentGrid, SegmentSpec, SegmentSpecError, split_steps


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "4"])
def test_number_of_segments_must_be_a_positive_int(bad):
    with pytest.raises(SegmentSpecError, match="K >= 1|K must be an int >= 1"):
        SegmentSpec.of(bad)


@pytest.mark.parametrize(
    ("boundaries", "message"),
    [
        ([1.0], "at least one segment"),
        ([1.0, 0.5, 0.5, 0.0], "strictly decreasing"),
        ([1.0, 0.2, 0.6, 0.0], "strictly decreasing"),
        ([0.0, 0.5, 1.0], "from 1 .noise. to 0"),
        ([0.9, 0.0], "from 1 .noise. to 0"),
        (["a", 0.0], "sequence of floats"),
    ],
)
def test_bad_boundaries_raise_a_typed_error(boundaries, message):
    with pytest.raises(SegmentSpecError, match=message) as info:
        SegmentSpec(boundaries)
    assert isinstance(info.value, ConfigError)


def test_uniform_boundaries_are_seqrf_taus():
    spec = SegmentSpec.uniform(4)
    assert spec.boundaries == (1.0, 0.75, 0.5, 0.25, 0.0) and spec.num_segments == 4
    assert spec.interval(1) == (0.75, 0.5)
    assert SegmentSpec.of([1.0, 0.75, 0.5, 0.25, 0.0]) == spec == SegmentSpec.of(spec)
    assert SegmentSpec.of(json.loads(json.dumps(spec.to_config()))) == spec
    with pytest.raises(SegmentSpecError, match=r"0\.\.3; got 4"):
        spec.interval(4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_time_belongs_to_the_segment_it_starts(dtype):
    spec = SegmentSpec.uniform(3)  # boundaries 1, 2/3, 1/3, 0: 1/3 and 2/3 are inexact in both dtypes
    ts = torch.tensor([1.0, 0.9, 2 / 3, 0.5, 1 / 3, 0.1, 0.0], dtype=torch.float64).to(dtype)
    assert spec.segment_of(ts).tolist() == [0, 0, 1, 1, 2, 2, 2]


def test_steps_split_with_the_remainder_to_the_first_segments():
    assert split_steps(10, 4) == [3, 3, 2, 2]
    assert split_steps(4, 4) == [1, 1, 1, 1]
    with pytest.raises(TimeGridError, match="one step per segment: 4 segment"):
        split_steps(3, 4)


def test_segment_grid_puts_every_boundary_on_the_grid():
    ts = SegmentGrid(3)(gf.LinearInterpolant(), 7)
    spec = SegmentSpec.uniform(3)
    # 7 steps over 3 segments: 3, 2, 2, uniform inside each segment
    expected = [1.0, 1 - 1 / 9, 1 - 2 / 9, spec.boundaries[1], 0.5, spec.boundaries[2], 1 / 6, 0.0]
    torch.testing.assert_close(ts, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-15)
    assert float(ts[3]) == spec.boundaries[1] and float(ts[5]) == spec.boundaries[2]  # bit for bit


def test_one_segment_grid_is_the_uniform_grid():
    proc = gf.LinearInterpolant()
    assert torch.equal(SegmentGrid(1)(proc, 9), gf.UniformGrid()(proc, 9))


def test_segment_grid_over_a_partial_range_uses_the_overlapping_segments():
    ts = SegmentGrid(4)(gf.LinearInterpolant(), 4, t_start=0.6, t_end=0.1)  # pieces 0.6-0.5, 0.5-0.25, 0.25-0.1
    torch.testing.assert_close(ts, torch.tensor([0.6, 0.55, 0.5, 0.25, 0.1], dtype=torch.float64))
    with pytest.raises(TimeGridError, match="3 segment"):
        SegmentGrid(4)(gf.LinearInterpolant(), 2, t_start=0.6, t_end=0.1)


def test_segment_grid_config_round_trip():
    grid = SegmentGrid([1.0, 0.6, 0.0])
    clone = gf.TIME_GRIDS.from_config(json.loads(json.dumps(grid.to_config())))
    proc = gf.LinearInterpolant()
    assert clone.segments == grid.segments and torch.equal(clone(proc, 5), grid(proc, 5))
