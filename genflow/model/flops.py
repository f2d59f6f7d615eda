"""FLOPs measured with ``torch.utils.flop_counter.FlopCounterMode`` (no hand counting).

The counter records matrix products, convolutions and attention (``2 * m * n * k``
per product; elementwise ops, norms and activations count zero). Attention on the
CPU is counted with PyTorch's own attention formula, which the counter only
registers for the GPU kernels. ``count_flops``
measures one inference call; ``block_flops`` splits a forward pass into the part
an early exit can drop, block by block, and the rest.

References:
    PyTorch ``torch.utils.flop_counter`` documentation (counting rules per operator).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

__all__ = ["count_flops", "BlockFlops", "measure_block_flops", "flop_counter", "TotalFlopCounter"]

_aten = torch.ops.aten


def _cpu_attention(query_shape, key_shape, value_shape, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_attention_backward(grad_shape, query_shape, key_shape, value_shape, *args: Any, **kwargs: Any) -> int:
    return sdpa_backward_flop_count(grad_shape, query_shape, key_shape, value_shape)


# PyTorch's counter registers the CUDA attention kernels but not the CPU one, so
# attention would count zero on the CPU; route it to PyTorch's own sdpa formulas.
_CPU_ATTENTION: dict[Any, Any] = {}
if hasattr(_aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _CPU_ATTENTION[_aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_attention
if hasattr(_aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
    _CPU_ATTENTION[_aten._scaled_dot_product_flash_attention_for_cpu_backward] = _cpu_attention_backward


def flop_counter() -> FlopCounterMode:
    """A silent ``FlopCounterMode`` that also counts CPU attention (same formula as on the GPU)."""
    return FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION)


class TotalFlopCounter(TorchDispatchMode):
    """Total FLOPs of everything run inside it, by ``flop_counter``'s per-operator rules.

    Unlike ``FlopCounterMode`` it tracks no modules (no hooks on the model), so it
    can wrap any call, including models that differentiate inside their forward
    pass while gradients are off. ``total`` is the sum so far.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rules = flop_counter().flop_registry
        self.total = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        rule = self.rules.get(getattr(func, "_overloadpacket", func))
        if rule is not None:
            self.total += int(rule(*args, **kwargs, out_val=out))
        return out


def count_flops(model: nn.Module, x: Tensor, t: Tensor, **kwargs: Any) -> int:
    """FLOPs of one call ``model(x, t, **kwargs)`` under ``torch.no_grad()``.

    An energy model's score still counts its inner backward pass (it runs under
    ``torch.enable_grad()``), which is the real cost of evaluating it.

    Args:
        model: Any module called as ``model(x, t, **kwargs)``.
        x: Input state.
        t: Times.
        **kwargs: Passed on (``cond=``, ``exit=``).

    Returns:
        Total FLOPs (int).
    """
    with flop_counter() as counter, torch.no_grad():
        model(x, t, **kwargs)
    return int(counter.get_total_flops())


class BlockFlops(NamedTuple):
    """Per-block FLOPs of a backbone.

    Attributes:
        blocks: ``blocks[k]``: FLOPs that exiting before block ``k`` saves.
        total: FLOPs of the full forward pass.

    With ``exit=d`` the cost is ``total - sum(blocks[d:])``.
    """

    blocks: tuple[int, ...]
    total: int

    def at_exit(self, depth: int) -> int:
        """FLOPs of a forward pass that runs ``depth`` blocks."""
        return self.total - sum(self.blocks[depth:])


def _module_total(counts: dict[str, dict[Any, int]], name: str) -> int:
    return int(sum(counts.get(name, {}).values()))


def measure_block_flops(
    model: nn.Module, x: Tensor, t: Tensor, blocks: Sequence[Sequence[str]], **kwargs: Any
) -> BlockFlops:
    """Run ``model(x, t, **kwargs)`` at full depth once and read the counter per submodule.

    Args:
        model: The backbone (the root of the counted call).
        x: Input state.
        t: Times.
        blocks: For each exitable block, in order, the qualified names (as in
            ``named_modules``) of the submodules an exit before it skips. Only modules
            entered through ``__call__`` are tracked, so name the called submodules.
        **kwargs: Passed on (``cond=``).

    Returns:
        :class:`BlockFlops`.
    """
    root = type(model).__name__
    with flop_counter() as counter, torch.no_grad():
        model(x, t, **kwargs)
    counts = counter.get_flop_counts()
    per_block = tuple(sum(_module_total(counts, f"{root}.{name}") for name in names) for names in blocks)
    return BlockFlops(per_block, int(counter.get_total_flops()))
