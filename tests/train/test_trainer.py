"""Trainer: exact resume, atomic checkpoints that are never unpickled, DDP equals the doubled batch."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import TensorDataset

from genflow.errors import ConfigError
from genflow.objectives import DenoisingScoreMatching
from genflow.train import CheckpointError, Trainer, load_checkpoint
from tests.train._ddp_script import TinyNet, WeightedConditionalDSM
from tests.train._ddp_script import dataset as named_dataset

DATA = TensorDataset(torch.randn(200, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64))


def _trainer(out_dir, steps=20, **kw):
    torch.manual_seed(0)
    settings = dict(out_dir=out_dir, steps=steps, batch_size=32, lr=1e-2, ema_decay=0.9, log_every=1, progress=False)
    settings.update(kw)
    return Trainer(TinyNet().double(), DenoisingScoreMatching("vp"), **settings)


class Crash(Exception):
    pass


def _crash_at(step):
    def callback(trainer, s, loss):
        if s == step:
            raise Crash(f"killed at step {s}")

    return callback


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    full = _trainer(tmp_path / "full")
    full_result = full.fit(DATA)
    crashed = _trainer(tmp_path / "crash", checkpoint_every=5)
    with pytest.raises(Crash):
        crashed.fit(DATA, callbacks=[_crash_at(13)])  # last checkpoint: step 10; steps 11-13 are lost
    resumed = _trainer(tmp_path / "crash", checkpoint_every=5)
    result = resumed.fit(DATA)
    assert result.step == 20 and resumed.step == 20
    losses = [r["loss"] for r in full_result.history]
    logged = [json.loads(line) for line in (tmp_path / "crash" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == list(range(1, 21))
    assert [r["loss"] for r in logged] == losses  # bitwise: the same loss curve
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(full.ema.state_dict().values(), resumed.ema.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_keeps_last_checkpoints_and_round_trips(tmp_path):
    trainer = _trainer(tmp_path, steps=12, checkpoint_every=3, keep_last=2)
    trainer.fit(DATA)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-00000009", "step-00000012"]
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 12 and ckpt.state["trainer"]["batch_size"] == 32
    assert ckpt.state["objective_config"]["name"] == "dsm"
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(ckpt.model[k], v)
    assert set(ckpt.optimizer["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_checkpoint_is_refused(tmp_path):
    _trainer(tmp_path, steps=2).fit(DATA)
    ckpt_dir = next(tmp_path.glob("step-*"))
    marker = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.marker = marker
    (ckpt_dir / "tensors.safetensors").write_bytes(pickle.dumps(exploit))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(ckpt_dir)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        load_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        load_checkpoint(tmp_path / "empty")


def test_bad_trainer_settings():
    with pytest.raises(ConfigError, match="lr_schedule"):
        _trainer(None, lr_schedule="linear")
    with pytest.raises(ConfigError, match="batch_size must be an int >= 1; got 0"):
        _trainer(None, batch_size=0)
    with pytest.raises(ConfigError, match="smaller than one global batch"):
        _trainer(None, batch_size=500).fit(DATA)


def test_cosine_schedule_with_warmup_reaches_zero(tmp_path):
    trainer = _trainer(None, steps=10, lr_schedule="cosine", warmup_steps=2)
    result = trainer.fit(DATA)
    lrs = [r["lr"] for r in result.history]  # the rate each step used
    assert lrs[:2] == pytest.approx([5e-3, 1e-2])  # linear warm-up over 2 steps
    assert all(b < a for a, b in zip(lrs[2:], lrs[3:], strict=False)) and lrs[-1] < 1e-3  # cosine decay


@pytest.mark.slow
def test_ddp_two_processes_match_one_process_on_the_doubled_batch(tmp_path):
    script = Path(__file__).with_name("_ddp_script.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    single, double = tmp_path / "single", tmp_path / "ddp"
    subprocess.run([sys.executable, str(script), str(single), "64"], check=True, env=env, timeout=300)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    subprocess.run([*launcher, str(script), str(double), "32"], check=True, env=env, timeout=300)
    a, b = load_file(str(single / "final.safetensors")), load_file(str(double / "final.safetensors"))
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-9, atol=1e-11), k
    loss_a = [json.loads(x)["loss"] for x in (single / "metrics.jsonl").read_text().splitlines()]
    loss_b = [json.loads(x)["loss"] for x in (double / "metrics.jsonl").read_text().splitlines()]
    assert loss_a == pytest.approx(loss_b, rel=1e-9)
    assert len(list(double.glob("step-*"))) == 1  # only rank 0 wrote


class DropoutNet(TinyNet):
    """Draws from torch's global RNG inside forward (like dropout and label dropout)."""

    def __init__(self) -> None:
        super().__init__()
        self.net.insert(1, torch.nn.Dropout(0.3))


def test_resume_is_exact_for_models_that_use_the_global_rng(tmp_path):
    def make(out):
        torch.manual_seed(0)
        return Trainer(DropoutNet().double(), DenoisingScoreMatching("vp"), out_dir=out, steps=12, batch_size=32,
                       lr=1e-2, log_every=1, checkpoint_every=4, progress=False)  # fmt: skip

    full = make(tmp_path / "full")
    full.fit(DATA)
    crashed = make(tmp_path / "crash")
    with pytest.raises(Crash):
        crashed.fit(DATA, callbacks=[_crash_at(6)])
    torch.manual_seed(123)  # whatever the caller's global RNG state, resume continues the same run
    state = torch.random.get_rng_state()
    resumed = make(tmp_path / "crash")
    torch.random.set_rng_state(state)
    resumed.fit(DATA)
    assert torch.equal(state, torch.random.get_rng_state())  # training left the caller's RNG untouched
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    resumed.fit(DATA)  # refitting a finished run writes nothing new and keeps the checkpoint
    assert load_checkpoint(tmp_path / "crash").step == 12


def test_fresh_run_into_a_used_folder_and_changed_settings_are_refused(tmp_path):
    _trainer(tmp_path, steps=4).fit(DATA)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        _trainer(tmp_path, steps=4).fit(DATA, resume=False)
    with pytest.raises(ConfigError, match="batch_size: saved 32, now 16"):
        _trainer(tmp_path, steps=8, batch_size=16).fit(DATA)
    assert _trainer(tmp_path, steps=8).fit(DATA).step == 8  # same settings: resumes and extends


def test_resume_is_exact_with_named_fields(tmp_path):
    def make(out):
        torch.manual_seed(0)
        return Trainer(TinyNet(num_classes=3).double(), WeightedConditionalDSM(), out_dir=out, steps=12, batch_size=32,
                       lr=1e-2, ema_decay=0.9, log_every=1, checkpoint_every=4, progress=False)  # fmt: skip

    data = named_dataset()
    full = make(tmp_path / "full")
    full.fit(data)
    with pytest.raises(Crash):
        make(tmp_path / "crash").fit(data, callbacks=[_crash_at(6)])
    resumed = make(tmp_path / "crash")
    resumed.fit(data)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    def curve(run):
        return [json.loads(line)["loss"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    assert curve("crash") == curve("full")


def test_unknown_arguments_list_the_accepted_ones_and_conditional_points_to_cond_field():
    from genflow.train.errors import UnknownTrainerArgumentError

    with pytest.raises(UnknownTrainerArgumentError, match=r"cond_field='label'.*accepted: model, objective, out_dir"):
        _trainer(None, conditional=True)
    with pytest.raises(TypeError, match=r"unknown arguments \['stpes'\]"):
        _trainer(None, stpes=3)
