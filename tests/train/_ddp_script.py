"""Trains a tiny model with the Trainer; run directly (one process) or under torchrun (several).

The batch has three named fields (a float state ``x``, an integer ``label`` the model is conditioned
on, and a float per-example ``weight`` the loss reads), so the test checks that every field, not only
``x``, is sliced by rank exactly as the single-process run would see it.

Usage: python _ddp_script.py OUT_DIR BATCH_SIZE
"""

from __future__ import annotations

import sys

import torch
from safetensors.torch import save_file

import genflow as gf
from genflow.data import NamedTensorDataset
from genflow.objectives import Objective
from genflow.train import Trainer, init_distributed


class TinyNet(gf.ScoreModel):
    parameterization = "eps"

    def __init__(self, num_classes: int = 0) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(num_classes, 2) if num_classes else None
        width = 3 + (2 if num_classes else 0)
        self.net = torch.nn.Sequential(torch.nn.Linear(width, 32), torch.nn.SiLU(), torch.nn.Linear(32, 2))

    def forward(self, x, t, *, cond=None, exit=None):
        parts = [x, t[:, None]] + ([self.embed(cond)] if self.embed is not None else [])
        return self.net(torch.cat(parts, dim=1))


class WeightedConditionalDSM(Objective):
    """eps-prediction DSM on VP, conditioned on ``label``, each example's error scaled by its ``weight``."""

    fields = ("x", "label", "weight")

    def __init__(self) -> None:
        self.process = gf.VPProcess()

    def draw(self, n, shapes, generator, *, dtype, device):
        t = 0.01 + 0.99 * torch.rand(n, generator=generator, dtype=dtype)
        return {"t": t.to(device), "noise": torch.randn((n, *shapes["x"]), generator=generator, dtype=dtype).to(device)}

    def loss(self, model, batch, draws):
        xt = self.process.sample(batch["x"], draws["t"], draws["noise"])
        error = (model(xt, draws["t"], cond=batch["label"]) - draws["noise"]).pow(2).mean(1)
        return (batch["weight"] * error).mean()


def dataset(n: int = 256) -> NamedTensorDataset:
    g = torch.Generator().manual_seed(1)
    return NamedTensorDataset(
        x=torch.randn(n, 2, generator=g, dtype=torch.float64),
        label=torch.randint(0, 3, (n,), generator=g),
        weight=torch.rand(n, generator=g, dtype=torch.float64) + 0.5,
    )


def main(out_dir: str, batch_size: int) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = TinyNet(num_classes=3).double()
    ctx = init_distributed("cpu")
    trainer = Trainer(
        model, WeightedConditionalDSM(), out_dir=out_dir, steps=12, batch_size=batch_size, lr=1e-2,
        ema_decay=0.9, log_every=1, progress=False, context=ctx,
    )  # fmt: skip
    trainer.fit(dataset(), resume=False)
    if ctx.is_main:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out_dir}/final.safetensors")
    if ctx.enabled:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
