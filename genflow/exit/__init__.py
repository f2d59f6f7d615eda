"""Early exit: time-dependent schedules of how many backbone blocks to run (ASE), and a model wrapper."""

from genflow.exit.base import EXIT_POLICIES, ExitPolicy, ExitSchedule
from genflow.exit.calibrated import CalibratedExit, choose_depths, measure_exit_errors
from genflow.exit.model import EarlyExitModel
from genflow.exit.schedules import FullExit, LinearExit, StaircaseExit, TableExit
from genflow.exit.spec import exit_policy_from

__all__ = [
    "EXIT_POLICIES",
    "ExitPolicy",
    "ExitSchedule",
    "FullExit",
    "StaircaseExit",
    "LinearExit",
    "TableExit",
    "CalibratedExit",
    "choose_depths",
    "measure_exit_errors",
    "EarlyExitModel",
    "exit_policy_from",
]
