"""How straight a flow's sampled trajectories are: straightness and a curvature summary.

Straightness (Liu et al. 2023, eq. 6, in genflow's convention t = 0 data,
t = 1 noise, velocity ``dx/dt``):

    S = E_x E_t || v(x_t, t) - (x_1 - x_0) ||^2,

``S = 0`` exactly when every trajectory is a straight line run at constant
speed, which one Euler step integrates exactly. Here ``x_1`` and ``x_0`` are
the trajectory's states at the ends of its time range ``[a, b]`` (for a full
solve, the noise and the sample) and the chord velocity is
``(x(b) - x(a)) / (b - a)``; the time average over ``[a, b]`` uses the
trapezoidal rule on the trajectory's grid, so it converges at second order as
the grid is refined.

The curvature summary :func:`chord_deviation` is the largest distance of a
trajectory from its chord run at constant speed, relative to the chord's
length (``0`` for a straight trajectory; ``tan(w / 4) / 2`` for a uniform
circular arc of angle ``w``).

References:
    Liu et al. 2023, "Flow Straight and Fast" (rectified flow), sec. 2 (straightness of a flow);
    Yoon et al. 2024, "Sequential Flow Straightening for Generative Modeling" (SeqRF),
    experiments (straightness).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from genflow.errors import ShapeError, TimeGridError

__all__ = ["straightness", "chord_deviation"]


def _check(trajectory: Tensor, ts: Tensor) -> tuple[Tensor, Tensor]:
    ts = torch.as_tensor(ts)
    if ts.ndim != 1 or ts.numel() < 2:
        raise TimeGridError(f"ts must be a 1-D grid of at least 2 times; got shape {tuple(ts.shape)}")
    if trajectory.ndim < 3 or trajectory.shape[0] != ts.numel():
        raise ShapeError(
            f"trajectory must have shape (len(ts)={ts.numel()}, batch, *event_shape); got {tuple(trajectory.shape)}"
        )
    steps = ts.diff()
    if not (bool((steps > 0).all()) or bool((steps < 0).all())):
        raise TimeGridError(f"ts must be strictly monotone; got {ts.tolist()}")
    if bool(steps[0] < 0):  # put the grid in increasing time, data side first
        ts, trajectory = ts.flip(0), trajectory.flip(0)
    return trajectory, ts.to(device=trajectory.device, dtype=trajectory.dtype)


def _chord(trajectory: Tensor, ts: Tensor) -> Tensor:
    return (trajectory[-1] - trajectory[0]) / (ts[-1] - ts[0])


def straightness(
    field: Callable[[Tensor, Tensor], Tensor], trajectory: Tensor, ts: Tensor, *, per_example: bool = False
) -> Tensor:
    """``E_t || v(x_t, t) - chord velocity ||^2`` along sampled trajectories (summed over coordinates).

    Args:
        field: The velocity ``v(x, t) -> dx/dt`` (e.g. ``ModelDenoiser(process, model).velocity``).
        trajectory: States at ``ts``, ``(len(ts), batch, *event_shape)``, e.g. a solve's or a
            sampler's ``trajectory`` (``return_trajectory=True``).
        ts: The strictly monotone grid of the trajectory.
        per_example: Return one value per trajectory instead of the mean.

    Returns:
        The mean over trajectories (a scalar), or ``(batch,)`` with ``per_example``.

    Raises:
        ShapeError: ``trajectory`` does not match ``ts``.
        TimeGridError: ``ts`` is not a strictly monotone 1-D grid of at least two times.
    """
    trajectory, ts = _check(trajectory, ts)
    chord = _chord(trajectory, ts)
    errors = torch.stack(
        [(field(x, t.expand(x.shape[0])) - chord).pow(2).flatten(1).sum(1) for x, t in zip(trajectory, ts, strict=True)]
    )
    value = torch.trapezoid(errors, ts, dim=0) / (ts[-1] - ts[0])
    return value if per_example else value.mean()


def chord_deviation(trajectory: Tensor, ts: Tensor, *, per_example: bool = False) -> Tensor:
    """``max_t || x_t - x_lin(t) || / || x(b) - x(a) ||`` with ``x_lin`` the chord run at constant speed.

    Args:
        trajectory: States at ``ts``, ``(len(ts), batch, *event_shape)``.
        ts: The strictly monotone grid of the trajectory.
        per_example: Return one value per trajectory instead of the mean.

    Raises:
        ShapeError / TimeGridError: as :func:`straightness`.
    """
    trajectory, ts = _check(trajectory, ts)
    chord = _chord(trajectory, ts)
    grow = (-1, *([1] * (trajectory.ndim - 1)))
    line = trajectory[0] + (ts - ts[0]).reshape(grow) * chord
    distance = (trajectory - line).flatten(2).norm(dim=2).amax(0)
    value = distance / ((trajectory[-1] - trajectory[0]).flatten(1).norm(dim=1) + torch.finfo(trajectory.dtype).tiny)
    return value if per_example else value.mean()
