"""EDM's deterministic Heun sampler: cost, order of convergence, and agreement with its Euler half."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import genflow as gf
from genflow.sampling import ModelDenoiser
from genflow.testing import GaussianMixtureScore
from tests.solver.test_diffusion import MIXTURE


@pytest.mark.parametrize("process", [gf.VPProcess(), gf.VEProcess()], ids=["vp", "ve"])
def test_edm_heun_is_second_order_with_2n_minus_1_calls(process):
    """Global error against DPM-Solver++(3M) on a 2000-step grid (error ~1e-9) from the same prior draws."""
    denoiser = ModelDenoiser(process, GaussianMixtureScore(MIXTURE, process))
    x = process.prior((128, 2), torch.Generator().manual_seed(4), dtype=torch.float64)
    grid = gf.TIME_GRIDS.create("karras")
    ref = gf.DPMSolverPP(order=3).solve(denoiser, x, grid(process, 2000)).x
    steps, errors = [20, 40, 80], []
    for n in steps:
        sol = gf.EDMHeun().solve(denoiser, x, grid(process, n))
        assert sol.nfe == 2 * n - 1
        errors.append(float((sol.x - ref).norm(dim=1).mean()))
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert slope > 1.75, f"EDM Heun: empirical order {slope:.2f} ({errors})"


def test_one_step_is_the_euler_step_of_ddim():
    """A one-step run has no correction: it is DDIM's (first-order) update, in sigma/alpha coordinates."""
    process = gf.VPProcess(schedule="cosine")
    denoiser = ModelDenoiser(process, GaussianMixtureScore(MIXTURE, process, "v"))
    x = process.prior((32, 2), torch.Generator().manual_seed(1), dtype=torch.float64)
    ts = torch.tensor([0.7, 0.3], dtype=torch.float64)
    assert torch.allclose(gf.EDMHeun().solve(denoiser, x, ts).x, gf.DDIM().solve(denoiser, x, ts).x, atol=1e-12)


def test_the_worked_example_in_extending_md_runs(capsys):
    """docs/extending.md's EDM block runs as written and matches genflow's edm_heun."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "extending.md"
    block = doc.read_text().split("## Worked example: EDM's Heun sampler", 1)[1]
    code = re.findall(r"```python\n(.*?)```", block, flags=re.S)[0]
    if "my_edm_heun" in gf.SOLVERS:  # a second run in the same session
        code = code.replace('@gf.SOLVERS.register("my_edm_heun")\n', "")
    exec(compile(code, "extending.md[edm]", "exec"), {"__name__": "__docs__"})
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [["VPProcess", "35"], ["VEProcess", "35"]]
    assert all(line.endswith("True") for line in lines)
