"""Training curves in TensorBoard (read back with tensorboard's EventAccumulator) and run info in checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import TensorDataset

from genflow.objectives import DenoisingScoreMatching
from genflow.train import Trainer, load_checkpoint
from tests.train._ddp_script import TinyNet
from tests.train.test_batches import MeanAbsError

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

DATA = TensorDataset(torch.randn(128, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64))


def _scalars(folder):
    events = EventAccumulator(str(folder / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_scalars_equal_the_json_log(tmp_path):
    valid = TensorDataset(torch.randn(20, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    torch.manual_seed(0)
    Trainer(TinyNet().double(), MeanAbsError(), out_dir=tmp_path, steps=6, batch_size=32, log_every=2,
            validation=valid, validate_every=3, tensorboard=True, progress=False).fit(DATA)  # fmt: skip
    scalars = _scalars(tmp_path)
    assert set(scalars) == {"train/loss", "train/lr", "train/grad_norm", "val/mae"}
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    tags = {"loss": "train/loss", "lr": "train/lr", "grad_norm": "train/grad_norm", "val_mae": "val/mae"}
    for key, tag in tags.items():
        logged = [(r["step"], r[key]) for r in records if key in r]
        assert [s for s, _ in scalars[tag]] == [s for s, _ in logged], tag
        assert [v for _, v in scalars[tag]] == pytest.approx([v for _, v in logged], rel=1e-6), tag  # float32 events
    assert [s for s, _ in scalars["val/mae"]] == [3, 6]


def test_a_resumed_run_rewrites_the_curve_after_its_checkpoint(tmp_path):
    def make():
        torch.manual_seed(0)
        return Trainer(TinyNet().double(), DenoisingScoreMatching("vp"), out_dir=tmp_path, steps=8, batch_size=32,
                       log_every=1, checkpoint_every=4, tensorboard=True, progress=False)  # fmt: skip

    def crash(trainer, step, loss):
        if step == 6:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        make().fit(DATA, callbacks=[crash])
    make().fit(DATA)
    steps = [s for s, _ in _scalars(tmp_path)["train/loss"]]
    assert steps == list(range(1, 9))  # steps 5 and 6 of the crashed attempt are purged, not doubled


def test_run_info_is_saved_in_every_checkpoint(tmp_path):
    info = {"data": {"name": "toy2d", "args": {"name": "moons", "n": 128}}, "recipe": "toy"}
    torch.manual_seed(0)
    Trainer(TinyNet().double(), DenoisingScoreMatching("vp"), out_dir=tmp_path, steps=4, batch_size=32,
            checkpoint_every=2, keep_last=5, run_info=info, progress=False).fit(DATA)  # fmt: skip
    for step in (2, 4):
        assert load_checkpoint(tmp_path / f"step-{step:08d}").state["run"] == info
