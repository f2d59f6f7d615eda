"""Analytic velocity models for the reflow tests: a straight teacher with a known map, and a learnable affine one."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from genflow.model.base import ScoreModel
from genflow.reflow import SegmentSpec

A = (0.5, 2.0)  # the data is the map z -> A z + B of the noise (A diagonal)
B = (1.0, -0.5)


class LinearMapVelocity(ScoreModel):
    """The rectified flow of the deterministic coupling ``x0 = A z + B``: straight lines ``(1 - t) x0 + t z``.

    At ``(x_t, t)``: ``z = (x_t - (1 - t) B) / (t + (1 - t) A)`` and ``dx/dt = z - x0 = (1 - A) z - B``.
    Declares ``segments`` when given, and then ignores the segment it is told (its flow is straight everywhere).
    """

    parameterization = "velocity"

    def __init__(self, segments: SegmentSpec | None = None) -> None:
        super().__init__()
        self.register_buffer("a", torch.tensor(A))
        self.register_buffer("b", torch.tensor(B))
        if segments is not None:
            self.segments = segments
        self.seen_segments: list[Tensor] = []

    def noise_of(self, x: Tensor, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0]).unsqueeze(1)
        return (x - (1 - t) * self.b.to(x.dtype)) / (t + (1 - t) * self.a.to(x.dtype))

    def data_of(self, z: Tensor) -> Tensor:
        return self.a.to(z.dtype) * z + self.b.to(z.dtype)

    def forward(self, x: Tensor, t: Tensor, *, cond: Any = None, exit: Any = None, segment: Any = None) -> Tensor:
        if segment is not None:
            self.seen_segments.append(torch.as_tensor(segment))
        z = self.noise_of(x, t)
        return z - self.data_of(z)


class AffineVelocity(ScoreModel):
    """``v(x, t) = W x + c``: enough for the one-step map of a linear coupling (``W = I - A``, ``c = -B``)."""

    parameterization = "velocity"

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)

    def forward(self, x: Tensor, t: Tensor, *, cond: Any = None, exit: Any = None) -> Tensor:
        return self.linear(x)
