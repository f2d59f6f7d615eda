"""Trains a tiny model with the Trainer; run directly (one process) or under torchrun (several).

Usage: python _ddp_script.py OUT_DIR BATCH_SIZE
"""

from __future__ import annotations

import sys

import torch
from safetensors.torch import save_file
from torch.utils.data import TensorDataset

import genflow as gf
from genflow.objectives import DenoisingScoreMatching
from genflow.train import Trainer, init_distributed


class TinyNet(gf.ScoreModel):
    parameterization = "eps"

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.SiLU(), torch.nn.Linear(32, 2))

    def forward(self, x, t, *, cond=None, exit=None):
        return self.net(torch.cat([x, t[:, None]], dim=1))


def main(out_dir: str, batch_size: int) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = TinyNet().double()
    data = TensorDataset(torch.randn(256, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    ctx = init_distributed("cpu")
    trainer = Trainer(
        model, DenoisingScoreMatching("vp"), out_dir=out_dir, steps=12, batch_size=batch_size, lr=1e-2,
        ema_decay=0.9, log_every=1, progress=False, context=ctx,
    )  # fmt: skip
    trainer.fit(data, resume=False)
    if ctx.is_main:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out_dir}/final.safetensors")
    if ctx.enabled:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
