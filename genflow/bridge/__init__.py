"""Diffusion bridges between paired end points: the :class:`Bridge` ABC (``BRIDGES``), Diffusion Bridge
Networks over classifier logits, their objectives, training, distillation and loading. See ``docs/bridges.md``."""

from genflow.bridge.average import AveragedBridges
from genflow.bridge.base import BRIDGES, Bridge, calibrate, check_endpoints, time_index
from genflow.bridge.dbn import DiffusionBridgeNetwork, beta_1_5, centred
from genflow.bridge.network import BridgeConvNet, InvertedResidual
from genflow.bridge.objectives import BridgeDistillation, BridgeMatching
from genflow.bridge.recipe import evaluate_bridge_run, is_bridge_run, train_bridge_recipe
from genflow.bridge.training import (
    BridgeCheckpointError,
    TrainedBridge,
    bridge_dir,
    bridge_dirs,
    bridge_pairs,
    distillation_pairs,
    load_bridge,
    load_bridge_run,
    train_dbn,
    with_crops,
)

__all__ = [
    "BRIDGES",
    "Bridge",
    "DiffusionBridgeNetwork",
    "AveragedBridges",
    "BridgeConvNet",
    "InvertedResidual",
    "BridgeMatching",
    "BridgeDistillation",
    "BridgeCheckpointError",
    "TrainedBridge",
    "bridge_dir",
    "bridge_dirs",
    "bridge_pairs",
    "distillation_pairs",
    "load_bridge",
    "load_bridge_run",
    "train_dbn",
    "with_crops",
    "train_bridge_recipe",
    "evaluate_bridge_run",
    "is_bridge_run",
    "calibrate",
    "check_endpoints",
    "time_index",
    "beta_1_5",
    "centred",
]
