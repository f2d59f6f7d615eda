"""Hypothesis strategies shared by the tests, and the registered component lists."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

import genflow as gf

event_shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)
batch_sizes = st.integers(1, 5)
seeds = st.integers(0, 2**31 - 1)
dtypes = st.sampled_from([torch.float32, torch.float64])
inner_times = st.floats(0.05, 0.95)


def solvers_of_kind(kind: str) -> list[str]:
    return [n for n in gf.SOLVERS.names() if gf.SOLVERS.get(n).kind == kind]


ODE_SOLVERS = solvers_of_kind("ode")
SDE_SOLVERS = solvers_of_kind("sde")
DIFFUSION_SOLVERS = solvers_of_kind("diffusion")
FIXED_ODE_SOLVERS = [n for n in ODE_SOLVERS if not gf.SOLVERS.get(n).adaptive]
ADAPTIVE_ODE_SOLVERS = [n for n in ODE_SOLVERS if gf.SOLVERS.get(n).adaptive]


def gaussian_processes() -> dict[str, gf.GaussianProcess]:
    """One instance of every registered Gaussian process, plus the VP schedule variants."""
    procs = {
        name: gf.PROCESSES.create(name)
        for name in gf.PROCESSES.names()
        if issubclass(gf.PROCESSES.get(name), gf.GaussianProcess)
    }
    procs["vp_cosine"] = gf.VPProcess(schedule="cosine")
    procs["vp_discrete"] = gf.VPProcess.from_betas(torch.linspace(1e-4, 0.02, 1000))
    return procs
