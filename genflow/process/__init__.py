"""Processes: forward corruption between data (t=0) and prior (t=1)."""

from genflow.process.base import PROCESSES, Process, broadcast_time
from genflow.process.bridge import BrownianBridge
from genflow.process.gaussian import PARAMETERIZATIONS, GaussianProcess
from genflow.process.interpolant import LinearInterpolant
from genflow.process.subvp import SubVPProcess
from genflow.process.ve import VEProcess
from genflow.process.vp import VPProcess

__all__ = [
    "PROCESSES",
    "PARAMETERIZATIONS",
    "Process",
    "GaussianProcess",
    "VPProcess",
    "VEProcess",
    "SubVPProcess",
    "LinearInterpolant",
    "BrownianBridge",
    "broadcast_time",
]
