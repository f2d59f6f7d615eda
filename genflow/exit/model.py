""":class:`EarlyExitModel`: a backbone that runs ``policy.depths(t)`` blocks at each call.

The wrapper is itself a :class:`~genflow.model.base.ScoreModel`, so every solver and
sampler works on it unchanged, adaptive ones included: the depth comes from the
``t`` the solver asks for, per sample. It also counts the FLOPs it spends, from the
backbone's measured per-block costs, so a speed-up can be stated in FLOPs.

References:
    Moon et al. 2024, "A Simple Early Exiting Framework for Accelerated Sampling in
    Diffusion Models" (ASE), sec. 3 (the exit schedule only changes the score function).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from genflow.config import build_component
from genflow.errors import ComponentError
from genflow.exit.base import EXIT_POLICIES, ExitPolicy, block_weights, model_num_blocks
from genflow.model.base import ScoreModel
from genflow.model.flops import BlockFlops
from genflow.validation import check_instance

__all__ = ["EarlyExitModel", "resolve_policy"]


def resolve_policy(policy: ExitPolicy | dict | str, name: str = "policy") -> ExitPolicy:
    """An :class:`ExitPolicy` from an instance, its registered name, or its config dict.

    Raises:
        UnknownComponentError: an unknown name. ComponentError: a class or another object.
    """
    if isinstance(policy, (str, dict)):
        policy = build_component(EXIT_POLICIES.family, policy, name)
    return check_instance(policy, ExitPolicy, name)


def _grid_position(t: Tensor) -> tuple[Tensor, int] | None:
    """``(grid, k)`` when the 0-d ``t`` is element ``k`` of a 1-D tensor it views, read from strides alone."""
    grid = t._base
    if grid is None or grid.ndim != 1 or grid.stride(0) < 1:
        return None
    k, rest = divmod(t.storage_offset() - grid.storage_offset(), grid.stride(0))
    return (grid, k) if rest == 0 and 0 <= k < grid.shape[0] else None


def _shared_time(t: Tensor) -> Tensor | None:
    """The one time all samples share, read from the strides alone (no sync), else ``None``.

    A 0-d tensor, a one-element tensor, or a stride-0 expansion (what ``ModelDenoiser``
    passes on a fixed grid) hold one time.
    """
    if t.ndim == 0:
        return t
    if t.ndim == 1 and (t.shape[0] == 1 or t.stride(0) == 0):
        return t[0]
    return None


class EarlyExitModel(ScoreModel):
    """``model`` run at ``policy``'s depth for each time; a drop-in :class:`ScoreModel`.

    ``forward(x, t, cond=None)`` calls ``model(x, t, cond=cond, exit=depths)``:

    - when every sample shares one time that is element ``k`` of a 1-D time grid (a
      view, as fixed-grid diffusion samplers pass), ``depths`` is an int looked up by
      ``k`` in host depths computed once for that grid: no device read per step;
    - when every sample shares one time on the host (a Python float or a CPU tensor),
      ``depths`` is an int found by bisection on the host, with no tensor op;
    - when they share one time on an accelerator, a 0-d depth from a ``bucketize`` on
      that device (the backbone reads it once);
    - otherwise per-sample depths ``(batch,)``, which the backbone groups by depth.

    Args:
        model: A backbone that declares ``num_blocks`` and accepts ``exit=`` (DiT, UViT).
        policy: An :class:`ExitPolicy`, its registered name or its config dict.
        block_flops: FLOPs of one sample's forward pass per block (``BlockFlops`` or its
            ``blocks`` with ``total``); default: measured once here on one zero sample
            with ``model.block_flops`` when the model has it.
        count_flops: Keep :attr:`flops_spent` (turn off for training, where it is not needed).

    Attributes:
        flops_spent: FLOPs of every call so far (reading it copies one number to the host).

    Raises:
        ComponentError: a model without ``num_blocks`` or ``parameterization``, a policy
            asking for more blocks than the model has, or a class instead of an instance.
    """

    def __init__(
        self,
        model: nn.Module,
        policy: ExitPolicy | dict | str = "full",
        *,
        block_flops: BlockFlops | None = None,
        count_flops: bool = True,
    ) -> None:
        super().__init__()
        check_instance(model, nn.Module, "model")
        self.num_blocks = model_num_blocks(model, "EarlyExitModel")
        parameterization = getattr(model, "parameterization", None)
        if parameterization is None:
            raise ComponentError(f"EarlyExitModel: {type(model).__name__} declares no parameterization")
        self.parameterization = parameterization
        self.model = model
        self.policy = resolve_policy(policy)
        self.schedule = self.policy.schedule(self.num_blocks)  # checks the depths fit the backbone now
        self._costs = self._exit_costs(block_flops) if count_flops else None
        self._tables: dict[torch.device, Tensor] = {}
        self._grid: tuple[Any, int, list[int]] | None = None  # (weakref to a time grid, its version, host depths)
        self.reset_flops()

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The backbone's event shape."""
        return tuple(self.model.event_shape)

    def block_flops(self, x: Tensor, t: Tensor, *, cond: Any = None) -> BlockFlops:
        """The backbone's :meth:`block_flops` (measured at full depth)."""
        return self.model.block_flops(x, t, cond=cond)

    def _exit_costs(self, block_flops: BlockFlops | None) -> tuple[int, ...] | None:
        """FLOPs of one sample's call at each depth ``0..num_blocks`` (``None`` if unknown)."""
        if block_flops is None:
            measure = getattr(self.model, "block_flops", None)
            shape = getattr(self.model, "event_shape", None)
            if measure is None or shape is None:
                return None
            param = next(iter(self.model.parameters()), None)
            like = {"dtype": param.dtype, "device": param.device} if param is not None else {}
            was_training = self.model.training
            self.model.eval()  # no label dropout: the measurement draws nothing from the global generator
            try:
                block_flops = measure(torch.zeros((1, *shape), **like), torch.full((1,), 0.5, **like))
            finally:
                self.model.train(was_training)
        if not isinstance(block_flops, BlockFlops):
            raise ComponentError(f"block_flops must be a BlockFlops; got {type(block_flops).__name__}")
        block_weights(self.num_blocks, block_flops.blocks)  # length and sign checks
        return tuple(block_flops.at_exit(d) for d in range(self.num_blocks + 1))

    def exit_depths(self, t: Tensor | float, batch: int) -> int | Tensor:
        """The ``exit=`` argument for times ``t`` (see the class docstring for its three forms).

        Args:
            t: A float, a 0-d tensor or ``(batch,)`` times.
            batch: The batch size (a Python-float ``t`` is shared by all samples).
        """
        t = t if isinstance(t, Tensor) else torch.tensor(float(t), dtype=torch.float64)
        shared = _shared_time(t)
        if shared is None:
            return self.schedule.depths_at(t)
        on_grid = _grid_position(shared)
        if on_grid is not None:
            return self._grid_depths(on_grid[0])[on_grid[1]]
        if shared.device.type == "cpu":
            return self.schedule.depth_at(float(shared))
        return self.schedule.depths_at(shared)

    def _grid_depths(self, grid: Tensor) -> list[int]:
        """Host depths at every time of ``grid``, read once per grid (while it lives unchanged).

        Fixed-grid samplers pass the model ``grid[k]`` (a view): its depth is then a
        host look-up by ``k``, with no device read per step on an accelerator.
        """
        cached = self._grid
        if cached is None or cached[0]() is not grid or cached[1] != grid._version:
            depths = [self.schedule.depth_at(v) for v in grid.detach().to("cpu", torch.float64).tolist()]
            self._grid = cached = (weakref.ref(grid), grid._version, depths)
        return cached[2]

    def forward(self, x: Tensor, t: Tensor, *, cond: Any = None, exit: Any = None) -> Tensor:
        """``model(x, t, cond=cond, exit=...)`` at the policy's depths for ``t``.

        Args:
            x: Noisy states ``(batch, *event_shape)``.
            t: Times, scalar or ``(batch,)``.
            cond: Passed to the backbone.
            exit: ``None``: the policy decides. An explicit depth (int or ``(batch,)``)
                overrides the policy for this call (e.g. depths computed once for a grid).

        Returns:
            The backbone's prediction in ``parameterization``.
        """
        depths = self.exit_depths(t, x.shape[0]) if exit is None else exit
        if self._costs is not None:
            self._count(depths, x.shape[0])
        return self.model(x, t, cond=cond, exit=depths)

    def _count(self, depths: int | Tensor, batch: int) -> None:
        if not isinstance(depths, Tensor):
            self._flops_host += batch * self._costs[int(depths)]
            return
        if depths.device not in self._tables:
            self._tables[depths.device] = torch.tensor(self._costs, dtype=torch.int64, device=depths.device)
        cost = self._tables[depths.device][depths]
        cost = cost * batch if cost.ndim == 0 else cost.sum()
        self._flops_device = cost if self._flops_device is None else self._flops_device + cost

    @property
    def exit_costs(self) -> tuple[int, ...] | None:
        """FLOPs of one sample's call at each depth ``0..num_blocks`` (``None`` if not counted)."""
        return self._costs

    @property
    def flops_spent(self) -> int | None:
        """FLOPs spent by every call since construction or :meth:`reset_flops` (``None`` if not counted)."""
        if self._costs is None:
            return None
        device = 0 if self._flops_device is None else int(self._flops_device)
        return self._flops_host + device

    def reset_flops(self) -> None:
        """Set :attr:`flops_spent` back to 0."""
        self._flops_host: int = 0
        self._flops_device: Tensor | None = None

    def flop_fraction(self, times: Tensor | Sequence[float] | None = None) -> float:
        """The policy's kept fraction of this backbone's block FLOPs (measured costs when known)."""
        blocks = None
        if self._costs is not None:
            blocks = [self._costs[d + 1] - self._costs[d] for d in range(self.num_blocks)]
        return self.policy.flop_fraction(self.num_blocks, times=times, block_flops=blocks)
