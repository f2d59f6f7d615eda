"""Solvers: ODE (torchdiffeq), SDE (torchsde) and native diffusion samplers, plus time grids."""

from genflow.solver.base import SDE, SOLVERS, Denoiser, Solution, Solver
from genflow.solver.diffusion import DDIM, DDPM, DeterministicDDIM, DiffusionSampler, StochasticDDIM
from genflow.solver.dpm_solver import DPMSolverPP, DPMSolverPP1, DPMSolverPP2M, DPMSolverPP3M
from genflow.solver.edm import EDMHeun
from genflow.solver.grids import TIME_GRIDS, KarrasGrid, LogSNRGrid, QuadraticGrid, TimeGrid, UniformGrid
from genflow.solver.ode import (
    RK4,
    AdaptiveHeun,
    AdaptiveODESolver,
    Bosh3,
    Dopri5,
    Dopri8,
    Euler,
    FixedStepODESolver,
    Heun,
    Midpoint,
    TorchdiffeqSolver,
)
from genflow.solver.sde import SRK, EulerMaruyama, Milstein, ReversibleHeun, TorchsdeSolver

__all__ = [
    "SOLVERS",
    "TIME_GRIDS",
    "Solver",
    "Solution",
    "SDE",
    "Denoiser",
    "TimeGrid",
    "UniformGrid",
    "QuadraticGrid",
    "LogSNRGrid",
    "KarrasGrid",
    "Euler",
    "Midpoint",
    "Heun",
    "RK4",
    "Dopri5",
    "Bosh3",
    "AdaptiveHeun",
    "Dopri8",
    "EulerMaruyama",
    "Milstein",
    "SRK",
    "ReversibleHeun",
    "DDPM",
    "DDIM",
    "DPMSolverPP",
    "TorchdiffeqSolver",
    "FixedStepODESolver",
    "AdaptiveODESolver",
    "TorchsdeSolver",
    "DiffusionSampler",
    "DeterministicDDIM",
    "StochasticDDIM",
    "DPMSolverPP1",
    "DPMSolverPP2M",
    "DPMSolverPP3M",
    "EDMHeun",
]
