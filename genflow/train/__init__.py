"""Training: the generic Trainer, checkpoints and multi-process (DDP) support."""

from genflow.train.checkpoint import Checkpoint, CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from genflow.train.distributed import DistributedContext, init_distributed
from genflow.train.errors import NonFiniteLossError, RunLockedError, TrainingInterrupted, UnknownTrainerArgumentError
from genflow.train.held import HELD_NETWORKS, HeldNetwork, HeldNetworkError, as_held_network
from genflow.train.trainer import Trainer, TrainResult

__all__ = [
    "Trainer", "TrainResult", "Checkpoint", "CheckpointError", "load_checkpoint", "save_checkpoint",
    "latest_checkpoint", "DistributedContext", "init_distributed", "HeldNetwork", "HeldNetworkError",
    "as_held_network", "NonFiniteLossError", "RunLockedError", "TrainingInterrupted", "UnknownTrainerArgumentError",
    "HELD_NETWORKS",
]  # fmt: skip
