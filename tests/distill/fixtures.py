"""A tiny teacher ensemble run on disk (2 members, 3 classes, 4x4 images), shared by the distillation tests."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from genflow.classify import train_members
from genflow.objectives.classification import CrossEntropy

TEACHER_MODEL = {"name": "cifar_resnet", "num_classes": 3, "in_chans": 1, "image_size": 4, "depth": 8, "width": 4}


def tiny_data(n: int = 12, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand((n, 1, 4, 4), generator=g), torch.arange(n) % 3)


@pytest.fixture(scope="session")
def teacher_run(tmp_path_factory):
    """An ensemble run folder (``member-0/``, ``member-1/``) of two briefly trained tiny ResNets."""
    out = tmp_path_factory.mktemp("teachers")
    trainer = {"steps": 3, "batch_size": 6, "lr": 1e-2, "ema_decay": 0.0, "log_every": 1}
    train_members(TEACHER_MODEL, CrossEntropy(), tiny_data(), members=2, seed=5, out_dir=out, trainer=trainer)
    return out
