"""Which time grid each native diffusion sampler works best on: the measurement behind ``default_grid``.

Exact Gaussian-mixture score (``genflow.testing``) on five processes (VP linear,
VP from 1000 discrete DDPM betas, VP cosine, sub-VP, VE), every registered
diffusion sampler (plus the 3M member of ``dpm_solver_pp``), every registered
time grid, at 10, 20 and 50 steps. Error: sliced Wasserstein-2 distance between
the sampler's output and the exact probability-flow pushforward of the same
prior draws (DPM-Solver++(3M) on a 500-step log-SNR grid), so the sampling
noise of a "truth" sample cancels. A grid that cannot be built for a process
(a non-finite end point) counts as missing. The recommended grid per sampler is
the one with the lowest mean rank over all (process, steps) cells (tied grids
share the mean of their places). The ``segments`` grid is left out: with its
default single segment it is the uniform grid (it exists for sequential reflow).

Usage::

    .venv/bin/python benchmarks/default_grids.py      # -> docs/benchmarks/default_grids.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, machine_lines, write_text_atomic  # noqa: E402

import genflow as gf  # noqa: E402
from genflow.errors import GenflowError  # noqa: E402
from genflow.metrics import sliced_wasserstein  # noqa: E402
from genflow.sampling import ModelDenoiser  # noqa: E402
from genflow.testing import GaussianMixture, GaussianMixtureScore  # noqa: E402

MIXTURE = GaussianMixture(
    [0.2, 0.3, 0.5], torch.tensor([[-3.0, 0.0], [3.0, 0.0], [0.0, 3.0]]),
    torch.tensor([[[0.25, 0.1], [0.1, 0.3]], [[0.5, 0.0], [0.0, 0.2]], [[0.16, -0.05], [-0.05, 0.2]]]),
)  # fmt: skip
PROCESSES = {
    "VP linear": gf.VPProcess(),
    "VP discrete betas": gf.VPProcess.from_betas(torch.linspace(1e-4, 0.02, 1000)),
    "VP cosine": gf.VPProcess(schedule="cosine"),
    "sub-VP": gf.SubVPProcess(),
    "VE": gf.VEProcess(),
}


def samplers() -> list[tuple[str, gf.Solver]]:
    names = [n for n in gf.SOLVERS.names() if issubclass(gf.SOLVERS.get(n), gf.DiffusionSampler)]
    return [(n, gf.SOLVERS.create(n)) for n in names] + [("dpm_solver_pp(order=3)", gf.DPMSolverPP(order=3))]


def error(solver: gf.Solver, process, grid: str, steps: int, x: torch.Tensor, ref: torch.Tensor) -> float | None:
    denoiser = ModelDenoiser(process, GaussianMixtureScore(MIXTURE, process))
    try:
        ts = gf.TIME_GRIDS.create(grid)(process, steps)
    except GenflowError:
        return None
    out = solver.solve(denoiser, x, ts, generator=torch.Generator().manual_seed(7)).x
    return float(sliced_wasserstein(out, ref, generator=torch.Generator().manual_seed(3)))


SKIPPED_GRIDS = ("segments",)  # the sequential-reflow grid: with its default single segment, the uniform grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    grids = [g for g in gf.TIME_GRIDS.names() if g not in SKIPPED_GRIDS]
    results: dict[str, dict[tuple[str, int], dict[str, float | None]]] = {}
    for pname, process in PROCESSES.items():
        x = process.prior((args.n, 2), torch.Generator().manual_seed(0), dtype=torch.float64)
        denoiser = ModelDenoiser(process, GaussianMixtureScore(MIXTURE, process))
        ref = gf.DPMSolverPP(order=3).solve(denoiser, x, gf.TIME_GRIDS.create("logsnr")(process, 500)).x
        for label, solver in samplers():
            for steps in args.steps:
                cell = {g: error(solver, process, g, steps, x, ref) for g in grids}
                results.setdefault(label, {})[(pname, steps)] = cell
                print(label, pname, steps, cell, flush=True)
    lines = ["# Default time grid per diffusion sampler", "", __doc__.split("\n\n")[1].replace("\n", " "), "",
             "Sliced W2 to the exact pushforward (lower is better); `-`: the grid cannot be built there.", ""]
    for label, cells in results.items():
        ranks = {g: [] for g in grids}
        lines += [f"## {label}", "", "| process | steps | " + " | ".join(grids) + " |",
                  "|---|---:|" + "---:|" * len(grids)]  # fmt: skip
        for (pname, steps), cell in cells.items():
            valid = [e for e in cell.values() if e is not None]
            for g, e in cell.items():
                if e is not None:  # tied grids share the mean of their places
                    ranks[g].append(sum(v < e for v in valid) + (sum(v == e for v in valid) + 1) / 2)
            shown = ("-" if cell[g] is None else f"{cell[g]:.4f}" for g in grids)
            lines.append(f"| {pname} | {steps} | " + " | ".join(shown) + " |")
        mean_rank = {g: statistics.mean(r) for g, r in ranks.items() if r}
        best = min(mean_rank, key=mean_rank.get)
        ordered = sorted(mean_rank.items(), key=lambda kv: kv[1])
        lines += ["", "Mean rank: " + ", ".join(f"{g} {r:.2f}" for g, r in ordered) + f". **Best: {best}.**", ""]
    lines += machine_lines()
    write_text_atomic(args.out_dir / "default_grids.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
