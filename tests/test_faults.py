"""Training faults (issue 7): each test reproduces a failure that used to corrupt or block a run.

Non-finite training, two runs in one folder, a torn metric log, resumes that silently change the learned
function or cannot load, a full disk, Ctrl-C, an empty dataset, resuming past ``steps``, bad arguments.
"""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

import genflow as gf
from genflow.errors import ConfigError, NonFiniteError
from genflow.objectives import DenoisingScoreMatching
from genflow.train import CheckpointError, Trainer, latest_checkpoint, load_checkpoint
from genflow.train.errors import NonFiniteLossError, RunLockedError, TrainingInterrupted
from tests.train._ddp_script import TinyNet

X = torch.randn(200, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _trainer(out_dir, steps=20, model=None, objective=None, **kw):
    torch.manual_seed(0)
    settings = dict(out_dir=out_dir, steps=steps, batch_size=32, lr=1e-2, ema_decay=0.9, log_every=1, progress=False)
    settings.update(kw)
    return Trainer(model or TinyNet().double(), objective or DenoisingScoreMatching("vp"), **settings)


def _records(folder):
    """Every line of metrics.jsonl parsed strictly: a bare NaN or Infinity is an error, as in other JSON readers."""

    def refuse(token):
        raise ValueError(f"invalid JSON constant {token}")

    return [json.loads(line, parse_constant=refuse) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _first_step_with(trainer, index, n=200):
    """The first step (1-based) whose global batch holds dataset example ``index``."""
    step = 0
    while index not in trainer._global_indices(n, step).tolist():
        step += 1
    return step + 1


def _finite(weights):
    weights = weights.state_dict() if isinstance(weights, torch.nn.Module) else weights
    return all(bool(torch.isfinite(v).all()) for v in weights.values())


# ----------------------------------------------------------------------------------------- non-finite training
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_nonfinite_pixel_stops_training_naming_the_step_and_the_example(tmp_path, bad):
    probe = _trainer(None)
    bad_index = probe._global_indices(200, 4)[3].item()  # first seen at step 5 (an epoch is a permutation)
    assert _first_step_with(probe, bad_index) == 5
    data = X.clone()
    data[bad_index, 1] = bad
    trainer = _trainer(tmp_path, checkpoint_every=2, keep_last=2, log_every=3)  # checks at steps 2, 3, 4, 6
    with pytest.raises(NonFiniteLossError, match=rf"at step 5 .*x at indices \[{bad_index}\]") as info:
        trainer.fit(TensorDataset(data))
    assert isinstance(info.value, NonFiniteError) and info.value.step == 5 and bad_index in info.value.indices
    # the finite checkpoints survive (nothing pruned), nothing later was saved, the log is valid JSON
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-00000002", "step-00000004"]
    assert info.value.last_checkpoint == tmp_path / "step-00000004"
    assert _finite(load_checkpoint(tmp_path).model)
    assert [r["step"] for r in _records(tmp_path)] == [3]


class SqrtAtZero(TinyNet):
    """Finite output, infinite gradient: d sqrt(u)/du at u = 0 (a stand-in for a diverging run)."""

    def forward(self, x, t, *, cond=None, exit=None):
        out = super().forward(x, t)
        return out + torch.sqrt((out - out.detach()).pow(2).sum())


def test_a_nonfinite_gradient_with_a_finite_loss_stops_at_the_first_step(tmp_path):
    trainer = _trainer(tmp_path, model=SqrtAtZero().double(), grad_clip=0.0, log_every=5)
    with pytest.raises(NonFiniteLossError, match="at step 1 .*data of that batch is finite"):
        trainer.fit(TensorDataset(X))
    assert latest_checkpoint(tmp_path) is None and _records(tmp_path) == []


def test_skip_nonfinite_skips_and_counts_the_bad_steps_and_saves_finite_weights(tmp_path):
    data = X.clone()
    data[11, 0] = math.nan
    trainer = _trainer(tmp_path, steps=24, skip_nonfinite=True, checkpoint_every=6)
    bad_steps = [s + 1 for s in range(24) if 11 in trainer._global_indices(200, s).tolist()]
    assert len(bad_steps) == 4  # one per epoch of 6 batches
    result = trainer.fit(TensorDataset(data))
    assert result.step == 24 and result.skipped_steps == 4
    records = _records(tmp_path)
    assert [r["step"] for r in records if r["loss"] is None] == bad_steps  # logged as null, not NaN
    assert records[-1]["skipped_steps"] == 4
    assert _finite(trainer.model) and _finite(load_checkpoint(tmp_path).model)
    assert load_checkpoint(tmp_path).state["skipped_steps"] == 4


# -------------------------------------------------------------------------------------------- one run, one folder
def test_a_second_training_into_a_running_folder_is_refused(tmp_path):
    seen = []

    def start_another(trainer, step, loss):
        if step == 2:
            with pytest.raises(RunLockedError, match=rf"in use by another training \(pid {os.getpid()} on host"):
                _trainer(tmp_path).fit(TensorDataset(X))
            seen.append(step)

    _trainer(tmp_path, steps=4).fit(TensorDataset(X), callbacks=[start_another])
    assert seen == [2]
    assert _trainer(tmp_path, steps=6).fit(TensorDataset(X)).step == 6  # released when the first one ended


def test_the_lock_of_a_killed_process_is_not_stale(tmp_path):
    holder = (
        "import sys, time; from genflow.train.runlock import RunLock; "
        "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"pid {proc.pid}"):
            _trainer(tmp_path, steps=2).fit(TensorDataset(X))
    finally:
        proc.kill()
        proc.wait()
    time.sleep(0.1)
    assert _trainer(tmp_path, steps=2).fit(TensorDataset(X)).step == 2  # the kernel released the dead holder's lock


# --------------------------------------------------------------------------------------------------------- resume
class Crash(Exception):
    pass


def _crash_at(step, error=Crash):
    def callback(trainer, s, loss):
        if s == step:
            raise error(f"killed at step {s}")

    return callback


def test_resume_drops_a_torn_last_line_of_the_metric_log(tmp_path):
    with pytest.raises(Crash):
        _trainer(tmp_path, checkpoint_every=5).fit(TensorDataset(X), callbacks=[_crash_at(13)])
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 14, "loss": 0.3')  # the crash came mid-append
    assert _trainer(tmp_path, checkpoint_every=5).fit(TensorDataset(X)).step == 20
    assert [r["step"] for r in _records(tmp_path)] == list(range(1, 21))


def _mlp_run(folder, parameterization="v", process=None, weighting="none", steps=4, **kw):
    torch.manual_seed(0)
    model = gf.MLPScoreNet(dim=2, hidden_size=16, depth=1, parameterization=parameterization).double()
    objective = DenoisingScoreMatching(process or gf.VPProcess(), weighting=weighting)
    return _trainer(folder, steps=steps, model=model, objective=objective, **kw)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"parameterization": "eps"}, "model.parameterization: saved 'v', now 'eps'"),
        ({"process": gf.VPProcess(beta_max=5.0)}, "objective.process.beta_max: saved 20.0, now 5.0"),
        ({"weighting": "min_snr"}, "objective.weighting: saved 'none', now 'min_snr'"),
    ],
)
def test_resume_refuses_a_changed_model_process_or_objective(tmp_path, change, message):
    _mlp_run(tmp_path).fit(TensorDataset(X))
    with pytest.raises(ConfigError, match=rf"learned function changed \({message}\).*initialize_from"):
        _mlp_run(tmp_path, steps=8, **change).fit(TensorDataset(X))
    # the deliberate change: a new run initialised from the old weights
    new = _mlp_run(tmp_path / "finetune", steps=8, **change)
    new.initialize_from(tmp_path, ema=False)
    for key, value in load_checkpoint(tmp_path).model.items():
        assert torch.equal(new.model.state_dict()[key], value)
    new.fit(TensorDataset(X))
    assert load_checkpoint(tmp_path / "finetune").state["init_from"]["step"] == 4


def test_weights_of_another_model_size_fail_in_one_line(tmp_path):
    _mlp_run(tmp_path).fit(TensorDataset(X))
    torch.manual_seed(0)
    wider = _trainer(tmp_path / "wide", model=gf.MLPScoreNet(dim=2, hidden_size=32, depth=2, parameterization="v"))
    with pytest.raises(ConfigError) as info:
        wider.initialize_from(tmp_path)
    text = str(info.value)
    assert "\n" not in text and len(text) < 900
    assert "missing key(s): blocks.1." in text and "unexpected" not in text and "shape mismatch(es)" in text
    assert "(16,) vs (32,)" in text or "(16, 2) vs (32, 2)" in text


def test_resuming_a_run_past_its_steps_is_refused(tmp_path):
    _trainer(tmp_path, steps=6).fit(TensorDataset(X))
    with pytest.raises(ConfigError, match=r"at step 6, past steps=4; pass steps >= 6"):
        _trainer(tmp_path, steps=4).fit(TensorDataset(X))


# ----------------------------------------------------------------------------------------------- disk and Ctrl-C
def test_a_full_disk_during_a_save_loses_nothing(tmp_path, monkeypatch):
    import genflow.train.checkpoint as checkpoint

    real_save, calls = checkpoint.save_file, []

    def save_file(tensors, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(tensors, path)

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    trainer = _trainer(tmp_path, steps=12, checkpoint_every=4, keep_last=1)
    with pytest.raises(CheckpointError, match=r"disk is full.*last complete checkpoint is .*step-00000004"):
        trainer.fit(TensorDataset(X))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".step", "step"))] == ["step-00000004"]
    assert load_checkpoint(tmp_path).step == 4


@pytest.mark.parametrize("where", ["callback", "loss"])
def test_ctrl_c_saves_nothing_partial_and_names_the_last_checkpoint(tmp_path, where):
    class InterruptingDSM(DenoisingScoreMatching):
        def loss(self, model, batch, draws):
            if self.calls == 6:
                raise KeyboardInterrupt
            self.calls += 1
            return super().loss(model, batch, draws)

    objective = InterruptingDSM("vp") if where == "loss" else None
    if objective is not None:
        objective.calls = 0
    callbacks = [_crash_at(7, KeyboardInterrupt)] if where == "callback" else []
    trainer = _trainer(tmp_path, checkpoint_every=5, objective=objective)
    with pytest.raises(TrainingInterrupted, match="last complete checkpoint is .*step-00000005") as info:
        trainer.fit(TensorDataset(X), callbacks=callbacks)
    assert isinstance(info.value, KeyboardInterrupt) and info.value.last_checkpoint == tmp_path / "step-00000005"
    assert [p.name for p in tmp_path.glob("*step-*")] == ["step-00000005"]
    assert _trainer(tmp_path, checkpoint_every=5).fit(TensorDataset(X)).step == 20  # unlocked, resumable


# ------------------------------------------------------------------------------------------- data and arguments
def test_an_empty_dataset_is_a_typed_error():
    with pytest.raises(ConfigError, match="is empty"):
        _trainer(None).fit(TensorDataset(torch.zeros(0, 2, dtype=torch.float64)))


@pytest.mark.parametrize(
    "setting,message",
    [
        ({"steps": True}, "steps must be an int >= 1; got True"),
        ({"steps": 10.0}, "steps must be an int >= 1; got 10.0"),
        ({"checkpoint_every": -1}, "checkpoint_every must be an int >= 0; got -1"),
        ({"keep_last": 0}, "keep_last must be an int >= 1"),
        ({"warmup_steps": -2}, "warmup_steps must be an int >= 0"),
        ({"seed": "0"}, "seed must be an int >= 0"),
        ({"lr": 0.0}, r"lr must be a finite number in \(0.0, inf\)"),
        ({"lr": math.nan}, "lr must be a finite number"),
        ({"lr": "1e-3"}, "lr must be a finite number"),
        ({"weight_decay": -0.1}, "weight_decay must be"),
        ({"betas": (0.9,)}, "betas must be two numbers"),
        ({"betas": (0.9, 1.0)}, r"betas\[1\] must be a finite number in \[0.0, 1.0\)"),
        ({"ema_decay": 1.0}, "ema_decay must be"),
        ({"grad_clip": -1.0}, "grad_clip must be"),
        ({"mixed_precision": "yes"}, "mixed_precision must be True or False"),
        ({"progress": 1}, "progress must be True or False"),
        ({"validate_every": 5}, "needs a validation dataset"),
        ({"validation": [1, 2]}, "validation must be a torch Dataset"),
        ({"tensorboard": True}, "tensorboard=True writes under out_dir"),
        ({"run_info": {"x": math.nan}}, "run_info must hold only JSON values"),
        ({"out_dir": 3}, "out_dir must be a path"),
        ({"context": "cpu"}, "context must be a DistributedContext"),
    ],
)
def test_every_trainer_argument_is_checked(setting, message):
    with pytest.raises(ConfigError, match=message):
        _trainer(setting.pop("out_dir", None), **setting)


# ------------------------------------------------------------------------------------------------ SIGKILL, resume
_KILLED_RUN = """
import sys, time
from torch.utils.data import TensorDataset
from tests.test_faults import X, _trainer

def slow(trainer, step, loss):
    print(step, flush=True)
    time.sleep(0.05)

_trainer(sys.argv[1], steps=40, checkpoint_every=3).fit(TensorDataset(X), callbacks=[slow])
"""


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [7, 17])
def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path, kill_after):
    """A real SIGKILL (no exception handler runs) anywhere in a run: the resumed run equals the uninterrupted one."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RUN, str(tmp_path / "killed")], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        for line in proc.stdout:
            if int(line) >= kill_after:
                proc.kill()  # SIGKILL: no cleanup, possibly in the middle of a checkpoint or log write
                break
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -9
    assert latest_checkpoint(tmp_path / "killed") is not None
    resumed = _trainer(tmp_path / "killed", steps=40, checkpoint_every=3)
    assert resumed.fit(TensorDataset(X)).step == 40
    straight = _trainer(tmp_path / "straight", steps=40, checkpoint_every=3)
    straight.fit(TensorDataset(X))
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(resumed.ema.state_dict().values(), straight.ema.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    killed_log, straight_log = _records(tmp_path / "killed"), _records(tmp_path / "straight")
    assert [r["step"] for r in killed_log] == list(range(1, 41))  # no step lost or logged twice
    assert [r["loss"] for r in killed_log] == [r["loss"] for r in straight_log]
