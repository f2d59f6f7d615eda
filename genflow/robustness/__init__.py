"""Honest robustness evaluation of (stochastic) defences with torchattacks. See ``docs/robustness.md``.

Attack presets from the weakest (labelled) to the strongest adaptive attacks, an EOT wrapper, a
guard against attacks that reseed the global RNG, re-evaluation of every adversarial example with
fresh defence noise, a per-point worst case over attacks, and ``torchrun`` sharding.
"""

from genflow.robustness.defence import EOT, GRADIENT_MODES, check_images, gradient_mode, predict_probs, reseed
from genflow.robustness.errors import (
    AttackConfigError,
    GlobalRNGDefenceError,
    ImageRangeError,
    ImageShapeError,
    ShardMergeError,
)
from genflow.robustness.evaluate import DEFAULT_ATTACKS, attack_batch, evaluate_robustness, project
from genflow.robustness.presets import NORMS, PRESETS, AttackPreset, build_attack, preset_settings
from genflow.robustness.report import RobustnessReport, accuracy_summary
from genflow.robustness.rng import GlobalRNGGuard, attack_rng
from genflow.robustness.shards import PointResults, gather_shards, merge_shards, shard_indices

__all__ = [
    "EOT",
    "GRADIENT_MODES",
    "check_images",
    "gradient_mode",
    "predict_probs",
    "reseed",
    "AttackConfigError",
    "GlobalRNGDefenceError",
    "ImageRangeError",
    "ImageShapeError",
    "ShardMergeError",
    "DEFAULT_ATTACKS",
    "attack_batch",
    "evaluate_robustness",
    "project",
    "NORMS",
    "PRESETS",
    "AttackPreset",
    "build_attack",
    "preset_settings",
    "RobustnessReport",
    "accuracy_summary",
    "GlobalRNGGuard",
    "attack_rng",
    "PointResults",
    "gather_shards",
    "merge_shards",
    "shard_indices",
]
