"""Reflow and sequential reflow (SeqRF): teacher pairs, segments, segment-aware models and the segment sampler.

The objectives live in :mod:`genflow.objectives.reflow` and the straightness
metrics in :mod:`genflow.metrics.straightness`.
"""

from genflow.reflow.errors import PairShardError, SegmentSpecError
from genflow.reflow.model import SegmentConditionedModel
from genflow.reflow.pairs import PairGenerator, PairManifest
from genflow.reflow.sampler import SegmentEuler, SegmentField, SegmentHeun, SegmentRestartSolver, SegmentVelocity
from genflow.reflow.segments import SegmentGrid, SegmentSpec, split_steps
from genflow.reflow.shards import PAIR_FIELDS, PairDataset, PairsLoader, shard_path

__all__ = [
    "SegmentSpec",
    "SegmentGrid",
    "split_steps",
    "SegmentConditionedModel",
    "SegmentField",
    "SegmentVelocity",
    "SegmentRestartSolver",
    "SegmentEuler",
    "SegmentHeun",
    "PAIR_FIELDS",
    "PairGenerator",
    "PairManifest",
    "PairDataset",
    "PairsLoader",
    "shard_path",
    "SegmentSpecError",
    "PairShardError",
]
