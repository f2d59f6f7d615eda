"""EarlyExitDSM fine-tuning: a frozen time embedding, and DDP with blocks no sample reaches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import genflow as gf
from tests.exit.helpers import tiny_dit


def test_the_objective_freezes_the_time_embedding_and_trains_the_rest():
    model = tiny_dit()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    objective = gf.EarlyExitDSM(gf.StaircaseExit(depths=[4, 2]), gf.VPProcess(), freeze_time_embedding=True)
    data = torch.utils.data.TensorDataset(torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    gf.Trainer(model, objective, steps=2, batch_size=16, lr=1e-3, ema_decay=0.0, progress=False).fit(data)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after if k.startswith("time_embed."))
    assert all(p.grad is None for p in model.time_embed.parameters())
    assert not torch.equal(before["blocks.0.attn.qkv.weight"], after["blocks.0.attn.qkv.weight"])
    assert not model.time_embed._forward_hooks  # the detaching hook lives only during the loss


@pytest.mark.slow
def test_ddp_fine_tuning_with_unreached_blocks_matches_one_process(tmp_path):
    script = Path(__file__).with_name("_ddp_exit_script.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    single, double = tmp_path / "single", tmp_path / "ddp"
    subprocess.run([sys.executable, str(script), str(single), "16"], check=True, env=env, timeout=300)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    subprocess.run([*launcher, str(script), str(double), "8"], check=True, env=env, timeout=300)
    a, b = load_file(str(single / "final.safetensors")), load_file(str(double / "final.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
    assert torch.equal(a["blocks.3.mlp.fc1.weight"], b["blocks.3.mlp.fc1.weight"])  # never reached: untouched
