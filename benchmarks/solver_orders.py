"""Empirical orders of convergence of every solver, measured against closed forms.

* ODE solvers: global error on ``dx/dt = A x`` against ``expm``, fixed grids.
* SDE solvers: strong error on geometric Brownian motion against its exact
  path on shared Brownian paths, on increasing and on decreasing grids.
* DPM-Solver++ 1/2/3: error against the probability-flow ODE of a Gaussian
  mixture (exact score) solved to 1e-11 from the same prior draws, plus the
  widely copied reference 3M update (half the second difference) for comparison.

The order is the least-squares slope of log error against log steps. The test
suite checks the same quantities against the declared orders.

Usage::

    .venv/bin/python benchmarks/solver_orders.py      # -> docs/benchmarks/solver_orders.md (about 1 min)
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torchsde

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, machine_lines, write_text_atomic  # noqa: E402

import genflow as gf  # noqa: E402
from genflow.sampling import ModelDenoiser  # noqa: E402
from genflow.testing import GaussianMixture, GaussianMixtureScore, GeometricBrownianMotion, LinearODE  # noqa: E402


def slope(steps: list[int], errors: list[float]) -> float:
    return float(-np.polyfit(np.log(steps), np.log(errors), 1)[0])


def ode_orders() -> list[tuple[str, float, float]]:
    problem = LinearODE(torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=torch.float64))
    x0 = torch.tensor([[1.0, 0.0], [0.3, -0.7]], dtype=torch.float64)
    exact = problem.solution(x0, 0.0, 1.0)
    rows = []
    for name in gf.SOLVERS.names():
        cls = gf.SOLVERS.get(name)
        if cls.kind != "ode" or cls.adaptive:
            continue
        steps = [8, 16, 32] if cls.order < 4 else [4, 8, 16]
        errs = [float((gf.SOLVERS.create(name).solve(problem, x0, torch.linspace(0, 1, n + 1, dtype=torch.float64)).x
                       - exact).abs().max()) for n in steps]  # fmt: skip
        rows.append((name, cls.order, slope(steps, errs)))
    return rows


def sde_orders() -> list[tuple[str, float, float, float]]:
    gbm = GeometricBrownianMotion(mu=1.0, s=0.5)
    paths, steps = 1000, [16, 32, 64, 128]
    bm = torchsde.BrownianInterval(t0=0.0, t1=1.0, size=(paths, 1), dtype=torch.float64, entropy=123,
                                   levy_area_approximation="space-time")  # fmt: skip
    x0, w = torch.ones(paths, 1, dtype=torch.float64), bm(0.0, 1.0)
    exact = {False: gbm.exact(x0, 1.0, w), True: x0 * torch.exp((-gbm.mu - 0.5 * gbm.s**2) + gbm.s * w)}
    rows = []
    for name in gf.SOLVERS.names():
        cls = gf.SOLVERS.get(name)
        if cls.kind != "sde":
            continue
        measured = []
        for decreasing in (False, True):
            errs = []
            for n in steps:
                ts = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)
                with torch.no_grad():
                    x = gf.SOLVERS.create(name).solve(gbm, x0, ts.flip(0) if decreasing else ts, brownian=bm).x
                errs.append(float((x - exact[decreasing]).abs().mean()))
            measured.append(slope(steps, errs))
        rows.append((name, cls.strong_order, *measured))
    return rows


class ReferenceDPMSolverPP3M(gf.DPMSolverPP3M):
    """The widely copied 3M update: our step with half the second difference (for comparison only)."""

    def _step(self, x, x0, eps, k, run):
        out = super()._step(x, x0, eps, k, run)
        if run.plan[k] < 3:
            return out
        lam, history = run.schedule.log_snr, run.history
        h = lam[k + 1] - lam[k]
        r0, r1 = (lam[k] - lam[k - 1]) / h, (lam[k - 1] - lam[k - 2]) / h
        d2 = 2.0 * ((history[-1] - history[-2]) / r0 - (history[-2] - history[-3]) / r1) / (r0 + r1)
        phi3 = (math.expm1(-h) / h + 1.0) / h - 0.5
        return out + 0.5 * run.schedule.alpha[k + 1] * phi3 * d2  # undo half of the -alpha phi3 d2 term


def dpm_orders() -> list[tuple[str, float]]:
    mixture = GaussianMixture(
        [0.2, 0.3, 0.5], torch.tensor([[-3.0, 0.0], [3.0, 0.0], [0.0, 3.0]]),
        torch.tensor([[[0.25, 0.1], [0.1, 0.3]], [[0.5, 0.0], [0.0, 0.2]], [[0.16, -0.05], [-0.05, 0.2]]]),
    )  # fmt: skip
    process = gf.VPProcess()
    model = GaussianMixtureScore(mixture, process)
    denoiser = ModelDenoiser(process, model)
    x = process.prior((256, 2), torch.Generator().manual_seed(4), dtype=torch.float64)
    reference = gf.SOLVERS.create("dopri5", rtol=1e-11, atol=1e-11)
    rows, steps = [], [40, 80, 160, 320]
    solvers = [
        (f"DPM-Solver++({o}{'M' if o > 1 else ''})", gf.DPMSolverPP(order=o, lower_order_final=False))
        for o in (1, 2, 3)
    ]
    solvers.append(("reference 3M update (half D2)", ReferenceDPMSolverPP3M(lower_order_final=False)))
    for label, solver in solvers:
        errs = []
        for n in steps:
            ts = gf.Sampler(process, model, solver).time_grid(n, dtype=torch.float64)
            ref = reference.solve(denoiser.velocity, x, ts[[0, -1]]).x
            errs.append(float((solver.solve(denoiser, x, ts).x - ref).norm(dim=1).mean()))
        rows.append((label, slope(steps, errs)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    lines = ["# Empirical orders of convergence", "", "## ODE solvers (linear ODE against expm)", "",
             "| solver | declared order | measured |", "|---|---:|---:|"]  # fmt: skip
    lines += [f"| {n} | {d} | {m:.2f} |" for n, d, m in ode_orders()]
    lines += ["", "## SDE solvers (strong order on geometric Brownian motion, shared paths)", "",
              "| solver | declared strong order (general noise) | measured, increasing grid "
              "| measured, decreasing grid |",
              "|---|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {n} | {d} | {a:.2f} | {b:.2f} |" for n, d, a, b in sde_orders()]
    lines += ["", "GBM's noise is diagonal, hence commutative: Heun-type Stratonovich methods reach order 1 there.", "",
              "## DPM-Solver++ (global error against the probability-flow ODE, VP, exact mixture score, 40-320 steps)",
              "", "| update | measured order |", "|---|---:|"]  # fmt: skip
    lines += [f"| {n} | {m:.2f} |" for n, m in dpm_orders()]
    lines += ["", *machine_lines()]
    write_text_atomic(args.out_dir / "solver_orders.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
