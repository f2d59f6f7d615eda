"""genflow: fast generative-model inference and efficient uncertainty and robustness.

One ODE/SDE layer (processes, solvers, samplers) under five published methods.
"""

from genflow import errors
from genflow.model import MODELS, ScoreModel
from genflow.process import (
    PARAMETERIZATIONS,
    PROCESSES,
    BrownianBridge,
    GaussianProcess,
    LinearInterpolant,
    Process,
    SubVPProcess,
    VEProcess,
    VPProcess,
)
from genflow.registry import Registry
from genflow.sampling import ModelDenoiser, SampleOutput, Sampler
from genflow.solver import (
    DDIM,
    DDPM,
    RK4,
    SDE,
    SOLVERS,
    SRK,
    TIME_GRIDS,
    AdaptiveHeun,
    Bosh3,
    Denoiser,
    Dopri5,
    Dopri8,
    DPMSolverPP,
    Euler,
    EulerMaruyama,
    Heun,
    KarrasGrid,
    LogSNRGrid,
    Midpoint,
    Milstein,
    QuadraticGrid,
    ReversibleHeun,
    Solution,
    Solver,
    TimeGrid,
    UniformGrid,
)

__version__ = "0.1.0"

__all__ = [
    "errors", "Registry", "__version__",
    "PROCESSES", "PARAMETERIZATIONS", "Process", "GaussianProcess", "VPProcess", "VEProcess", "SubVPProcess",
    "LinearInterpolant", "BrownianBridge",
    "SOLVERS", "TIME_GRIDS", "Solver", "Solution", "SDE", "Denoiser", "TimeGrid",
    "UniformGrid", "QuadraticGrid", "LogSNRGrid", "KarrasGrid",
    "Euler", "Midpoint", "Heun", "RK4", "Dopri5", "Bosh3", "AdaptiveHeun", "Dopri8",
    "EulerMaruyama", "Milstein", "SRK", "ReversibleHeun", "DDPM", "DDIM", "DPMSolverPP",
    "MODELS", "ScoreModel", "Sampler", "SampleOutput", "ModelDenoiser",
]
