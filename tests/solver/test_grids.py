"""Time grids: shape, order, end points and their defining spacing, for every process."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import genflow as gf
from genflow.errors import TimeGridError
from tests.strategies import gaussian_processes

PROCS = gaussian_processes()


@pytest.mark.parametrize("grid_name", gf.TIME_GRIDS.names())
@pytest.mark.parametrize("proc_name", sorted(PROCS))
@given(steps=st.integers(1, 60))
def test_grid_is_decreasing_with_exact_ends(grid_name, proc_name, steps):
    proc = PROCS[proc_name]
    if grid_name in ("logsnr", "karras") and proc_name == "linear_interpolant":  # alpha(1) = 0, sigma(0) = 0
        with pytest.raises(TimeGridError, match="finite"):
            gf.TIME_GRIDS.create(grid_name)(proc, steps)
        return
    ts = gf.TIME_GRIDS.create(grid_name)(proc, steps)
    assert ts.shape == (steps + 1,)
    assert float(ts[0]) == proc.t_max and float(ts[-1]) == proc.t_min
    assert bool((ts[1:] < ts[:-1]).all())


def test_logsnr_grid_has_equal_lambda_steps():
    vp = gf.VPProcess()
    lam = vp.log_snr(gf.LogSNRGrid()(vp, 20))
    assert torch.allclose(lam.diff(), lam.diff()[0].expand(20), rtol=1e-6)


def test_karras_grid_matches_its_formula():
    ve = gf.VEProcess(sigma_min=0.01, sigma_max=50.0)
    ts = gf.KarrasGrid(rho=7.0)(ve, 10)
    i = torch.arange(11, dtype=torch.float64) / 10
    sigmas = (50.0 ** (1 / 7) + i * (0.01 ** (1 / 7) - 50.0 ** (1 / 7))) ** 7
    assert torch.allclose(ve.sigma(ts), sigmas, rtol=1e-8)


def test_uniform_and_quadratic_grids():
    vp = gf.VPProcess()
    assert torch.allclose(gf.UniformGrid()(vp, 4), torch.linspace(1.0, 1e-3, 5, dtype=torch.float64))
    q = gf.QuadraticGrid()(vp, 4)
    assert torch.allclose(q, 1e-3 + (1 - 1e-3) * (1 - torch.arange(5, dtype=torch.float64) / 4) ** 2)


def test_bad_grid_requests():
    vp = gf.VPProcess()
    with pytest.raises(TimeGridError, match=r"steps must be an integer in \[1, 100000\]; got 0"):
        gf.UniformGrid()(vp, 0)
    with pytest.raises(TimeGridError, match=r"steps must be an integer in \[1, 100000\]; got 100000000"):
        gf.UniformGrid()(vp, 100_000_000)  # refused before a 100-million-point grid is allocated
    assert gf.UniformGrid()(vp, 100_000).shape == (100_001,)
    with pytest.raises(TimeGridError, match="t_end < t_start"):
        gf.UniformGrid()(vp, 5, t_start=0.2, t_end=0.5)
