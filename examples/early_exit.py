"""Early exit on the digits: sample a deep DiT with fewer blocks at large t, hand-made and calibrated schedules.

Trains the 12-block ``digits_dit_deep`` recipe into ``--out`` (or loads it from there), then:

1. builds the ASE staircase (the released DiT-XL/2 schedule, as fractions of the depth) and a
   schedule calibrated on the held-out val split at the same share of block FLOPs;
2. fine-tunes the model through the staircase (``EarlyExitDSM``, time embedding frozen);
3. samples with DPM-Solver++ through ``Sampler(..., exit_policy=...)`` and prints digits FD,
   FLOPs per sample (``SampleOutput.flops``) and seconds for each schedule next to the full model.

    python examples/early_exit.py            # 800 training steps: about 5 minutes on 2 idle CPU cores
    python examples/early_exit.py --quick    # an 8-block model, 150 steps: under a minute
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

import genflow as gf
from genflow.metrics import digits_fd, digits_fd_floor
from genflow.pipeline import load_trained, train
from genflow.train import latest_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small model and short runs (CI)")
    parser.add_argument("--out", default="runs/example_early_exit")
    args = parser.parse_args()
    steps, tune_steps, n = (150, 20, 128) if args.quick else (800, 200, 368)
    overrides = [f"trainer.steps={steps}", f"trainer.checkpoint_every={steps}"]
    if args.quick:
        overrides += ["model.depth=8", "trainer.batch_size=64"]
    run = Path(args.out) / "base"
    if latest_checkpoint(run) is None:  # train once; later runs load it
        train(gf.load_recipe("digits_dit_deep", overrides), out_dir=run, progress=False)
    process, model = load_trained(run)
    blocks = model.num_blocks

    staircase = gf.StaircaseExit.ase_dit_xl(relative=True)
    budget = staircase.flop_fraction(blocks)
    calibrated = gf.CalibratedExit.fit(
        model, process, gf.load_digits_split("val").images, budget=budget, generator=torch.Generator().manual_seed(0)
    )
    print(f"{blocks} blocks; staircase depths {staircase.schedule(blocks).depths}, keeps {budget:.0%} of block FLOPs")
    print(f"calibrated at the same budget: {calibrated.schedule(blocks).depths}")

    tuned = copy.deepcopy(model).train()
    gf.freeze_time_embedding(tuned)
    trainer = gf.Trainer(tuned, gf.EarlyExitDSM(staircase, process), steps=tune_steps, batch_size=64, lr=1e-4,
                         weight_decay=0.0, ema_decay=0.99, progress=False)  # fmt: skip
    trainer.fit(gf.load_digits_split("train"))
    tuned = trainer.ema  # the EMA weights are sampled, as for the base model

    solver = gf.DPMSolverPP(order=2)
    rows = [("full", model, None), ("staircase", model, staircase), ("staircase, fine-tuned", tuned, staircase),
            ("calibrated", model, calibrated)]  # fmt: skip
    full_flops = None
    for name, net, policy in rows:
        out = gf.Sampler(process, net, solver, exit_policy=policy).sample(
            (n, 1, 8, 8), 10, generator=torch.Generator().manual_seed(0)
        )
        full_flops = full_flops or out.flops
        fd = digits_fd(out.samples.clamp(-1, 1))
        print(f"{name:22s} NFE {out.nfe:3d}  {out.flops / n / 1e6:6.2f} MFLOPs/sample ({out.flops / full_flops:4.0%})  "
              f"{out.seconds:5.2f} s  digits FD {fd:7.2f}")  # fmt: skip
    print(f"real-vs-real floor at n={n}: {digits_fd_floor(n, generator=torch.Generator().manual_seed(1)):.2f}")


if __name__ == "__main__":
    main()
