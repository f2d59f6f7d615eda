"""DPM-Solver++ error as steps are added: the measurement behind the step-ratio order drop and its open gap.

Exact Gaussian-mixture score on a VP process from 1000 discrete DDPM betas. Error:
root-mean-square distance between the sampler's output and the exact
probability-flow solution from the same prior draws (DPM-Solver++(3M), 500 steps on
the log-SNR grid), for orders 2 and 3, every registered grid, 5 to 20 steps; with
the order drop at fast-growing steps (``max_step_ratio = 2``, the default) and
without it (``max_step_ratio = inf``), and for 3M with the cap on third-order
steps (``max_third_order_step = 1``: a step longer than 1 in log-SNR is second
order, the default) and without it. A cell in bold is a rise over the previous
step count by more than 0.01.

Usage::

    .venv/bin/python benchmarks/dpm_solver_steps.py      # -> docs/benchmarks/dpm_solver_steps.md
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, machine_lines, write_text_atomic  # noqa: E402
from default_grids import MIXTURE  # noqa: E402

import genflow as gf  # noqa: E402
from genflow.errors import GenflowError  # noqa: E402
from genflow.sampling import ModelDenoiser  # noqa: E402
from genflow.testing import GaussianMixtureScore  # noqa: E402

PROCESS = gf.VPProcess.from_betas(torch.linspace(1e-4, 0.02, 1000))


def error(solver: gf.Solver, grid: str, steps: int, x: torch.Tensor, ref: torch.Tensor) -> float | None:
    try:
        ts = gf.TIME_GRIDS.create(grid)(PROCESS, steps)
    except GenflowError:
        return None
    out = solver.solve(ModelDenoiser(PROCESS, GaussianMixtureScore(MIXTURE, PROCESS)), x, ts).x
    return float((out - ref).pow(2).sum(1).mean().sqrt())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--steps", type=int, nargs=2, default=[5, 20], metavar=("FIRST", "LAST"))
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    steps = list(range(args.steps[0], args.steps[1] + 1))
    x = PROCESS.prior((args.n, 2), torch.Generator().manual_seed(0), dtype=torch.float64)
    denoiser = ModelDenoiser(PROCESS, GaussianMixtureScore(MIXTURE, PROCESS))
    ref = gf.DPMSolverPP(order=3).solve(denoiser, x, gf.TIME_GRIDS.create("logsnr")(PROCESS, 500)).x
    lines = [
        "# DPM-Solver++: error as steps are added",
        "",
        __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        f"Command: `{' '.join(['.venv/bin/python', *sys.argv])}`; n = {args.n} prior draws.",
        "",
        "| order | step-ratio drop | 3rd-order step cap | grid | " + " | ".join(map(str, steps)) + " |",
        "|---|---|---|---|" + "---:|" * len(steps),
    ]
    default_rises = []
    variants = [(2, 2.0, 1.0), (2, math.inf, 1.0), (3, 2.0, 1.0), (3, 2.0, math.inf), (3, math.inf, math.inf)]
    for order, ratio, cap in variants:
        solver = gf.DPMSolverPP(order=order)
        solver.max_step_ratio = ratio  # the class default is 2.0; inf switches the drop off
        solver.max_third_order_step = cap  # the class default is 1.0; inf switches the cap off
        for grid in gf.TIME_GRIDS.names():
            errs = [error(solver, grid, n, x, ref) for n in steps]
            cells = []
            for i, e in enumerate(errs):
                prev = errs[i - 1] if i else None
                text = "-" if e is None else f"{e:.3f}"
                cells.append(f"**{text}**" if e is not None and prev is not None and e > prev + 0.01 else text)
            label = "on (2)" if ratio == 2.0 else "off"
            cap_label = "-" if order < 3 else ("on (1)" if cap == 1.0 else "off")
            lines.append(f"| {order} | {label} | {cap_label} | {grid} | " + " | ".join(cells) + " |")
            print(order, label, cap, grid, cells, flush=True)
            if ratio == 2.0 and cap == 1.0:
                pairs = zip(steps[1:], errs[:-1], errs[1:], strict=True)
                default_rises += [f"{order} on {grid} at {n} steps (+{e - p:.3f})"
                                  for n, p, e in pairs if None not in (p, e) and e > p + 0.01]  # fmt: skip
    lines += ["", "Rises left with the defaults (order on grid at steps): "
              + ("; ".join(default_rises) if default_rises else "none") + ".", "", *machine_lines()]
    write_text_atomic(args.out_dir / "dpm_solver_steps.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
