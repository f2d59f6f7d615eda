"""Fine-tunes a tiny DiT through an exit schedule that never reaches its last blocks; run directly or under torchrun.

Usage: python _ddp_exit_script.py OUT_DIR BATCH_SIZE
"""

from __future__ import annotations

import sys

import torch
from safetensors.torch import save_file

import genflow as gf
from genflow.train import Trainer, init_distributed


def main(out_dir: str, batch_size: int) -> None:
    ctx = init_distributed()
    torch.manual_seed(0)
    model = gf.DiT(image_size=8, patch_size=4, hidden_size=16, depth=4, num_heads=2)
    data = torch.utils.data.TensorDataset(torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(1)))
    objective = gf.EarlyExitDSM(gf.StaircaseExit(depths=[2, 1]), gf.VPProcess(), freeze_time_embedding=True)
    trainer = Trainer(model, objective, out_dir=out_dir, steps=3, batch_size=batch_size, lr=1e-3, ema_decay=0.0,
                      log_every=1, progress=False, context=ctx)  # fmt: skip
    trainer.fit(data)
    if ctx.is_main:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out_dir}/final.safetensors")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
