"""Demo section: early exit (ASE) on the demo's digits DiT, hand-made and calibrated schedules vs the full model.

References:
    Moon et al. 2024, "A Simple Early Exiting Framework for Accelerated Sampling in
    Diffusion Models" (ASE); genflow's calibrated schedules: docs/early_exit.md.
"""

from __future__ import annotations

import torch

from genflow.demo_sections.context import DemoContext

TITLE = "Early exit: fewer blocks at large t"


def section(ctx: DemoContext) -> list[str]:
    """Sample the demo's DiT with the ASE staircase and a calibrated schedule at the same budget vs all blocks."""
    from genflow.data import load_digits_split
    from genflow.exit import CalibratedExit, EarlyExitModel, StaircaseExit
    from genflow.metrics import digits_fd, digits_fd_floor
    from genflow.sampling import Sampler
    from genflow.solver import SOLVERS

    n, bins, held_out = (96, 5, 64) if ctx.quick else (368, 10, 176)
    solvers = [("dpm_solver_pp", {"order": 2}, 10)] + ([] if ctx.quick else [("ddim", {}, 25)])
    blocks = ctx.model.num_blocks
    costs = EarlyExitModel(ctx.model, "full").exit_costs
    block_flops = [costs[d + 1] - costs[d] for d in range(blocks)]
    staircase = StaircaseExit.ase_dit_xl(relative=True)
    budget = staircase.flop_fraction(blocks, block_flops=block_flops)
    calibrated = CalibratedExit.fit(
        ctx.model, ctx.process, load_digits_split("val").images[:held_out], budget=budget, bins=bins,
        block_flops=block_flops, generator=torch.Generator().manual_seed(ctx.seed),
    )  # fmt: skip
    policies = [("full", None), ("ASE staircase", staircase), (f"calibrated @ {budget:.0%}", calibrated)]
    lines = [
        f"The demo's DiT ({blocks} blocks) sampled with the exit schedule passed to `Sampler(..., exit_policy=...)`: "
        f"the released ASE staircase (as fractions of the depth: `{list(staircase.schedule(blocks).depths)}` blocks "
        f"per tenth of t, keeping {budget:.0%} of the block FLOPs) and a schedule calibrated on {held_out} held-out "
        f"digits at the same budget (`{list(calibrated.schedule(blocks).depths)}` over {bins} bins). No fine-tuning "
        f"here (see `benchmarks/early_exit.py` for before/after). {n} samples per row"
        + (" (quick mode: tiny settings, FD only indicative)." if ctx.quick else "."),
        "",
        "| solver | schedule | NFE | MFLOPs / sample | FLOPs vs full | seconds | digits FD |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, kwargs, steps in solvers:
        full_flops = None
        for label, policy in policies:
            out = Sampler(ctx.process, ctx.model, SOLVERS.create(name, **kwargs), exit_policy=policy).sample(
                (n, *ctx.model.event_shape), steps, generator=torch.Generator().manual_seed(ctx.seed)
            )
            full_flops = full_flops or out.flops
            fd = digits_fd(out.samples.clamp(-1, 1))
            lines.append(f"| {name} | {label} | {out.nfe} | {out.flops / n / 1e6:.2f} | {out.flops / full_flops:.0%} | "
                         f"{out.seconds:.2f} | {fd:.2f} |")  # fmt: skip
    floor = digits_fd_floor(n, generator=torch.Generator().manual_seed(ctx.seed + 1))
    lines += ["", f"Real-vs-real floor at {n} samples: {floor:.2f}."]
    return lines
