"""Per-point robustness results, split across ``torchrun`` ranks and merged back.

Rank ``r`` of ``W`` evaluates images ``r, r + W, r + 2W, ...``; every rank's results carry the
global index of each image, so :func:`merge_shards` can put them back in order and check that
every image was evaluated exactly once. The merge is plain tensor work, testable without a
process group; :func:`gather_shards` does the ``all_gather_object`` under ``torch.distributed``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from genflow.robustness.errors import ShardMergeError

__all__ = ["PointResults", "shard_indices", "merge_shards", "gather_shards"]


@dataclass
class PointResults:
    """What an evaluation found for each image (all tensors on the CPU).

    Attributes:
        index: ``(n,)`` global index of each image.
        labels: ``(n,)`` true labels.
        clean: ``(R, n)`` bool: the defence was right on the clean image in repeat ``r``.
        correct: ``(A, K, R, n)`` bool: right on attack ``a``'s adversarial example at budget ``k`` in repeat ``r``.
        attacks: The ``A`` preset names.
        epsilons: The ``K`` budgets, ascending.
        seconds: ``(A, K)`` attack wall time (summed over ranks after a merge).
    """

    index: Tensor
    labels: Tensor
    clean: Tensor
    correct: Tensor
    attacks: list[str]
    epsilons: list[float]
    seconds: Tensor

    def to_cpu(self) -> PointResults:
        return PointResults(**{f.name: getattr(self, f.name).cpu() if isinstance(getattr(self, f.name), Tensor)
                               else getattr(self, f.name) for f in fields(self)})  # fmt: skip


def shard_indices(n: int, rank: int, world: int) -> Tensor:
    """The global indices rank ``rank`` of ``world`` evaluates: ``rank, rank + world, ...`` below ``n``."""
    if not 0 <= rank < world:
        raise ShardMergeError(f"rank must be in [0, {world}); got {rank}")
    return torch.arange(rank, n, world)


def merge_shards(parts: list[PointResults]) -> PointResults:
    """Concatenate per-rank results in global index order.

    Raises:
        ShardMergeError: no parts; parts with other attacks, budgets or repeat counts; or indices
            that are not exactly ``0 .. n-1`` once each.
    """
    if not parts:
        raise ShardMergeError("merge_shards needs at least one part; got none")
    first = parts[0]
    for i, part in enumerate(parts[1:], 1):
        same_repeats = part.clean.shape[0] == first.clean.shape[0]
        if part.attacks != first.attacks or part.epsilons != first.epsilons or not same_repeats:
            raise ShardMergeError(
                f"part {i} has attacks {part.attacks}, budgets {part.epsilons}, {part.clean.shape[0]} repeats; "
                f"part 0 has {first.attacks}, {first.epsilons}, {first.clean.shape[0]}"
            )
    index = torch.cat([p.index for p in parts])
    order = index.argsort()
    expected = torch.arange(index.numel())
    if not torch.equal(index[order], expected):
        seen = index[order].tolist()
        dupes = sorted({v for v in seen if seen.count(v) > 1})
        missing = sorted(set(range(index.numel())) - set(seen))
        raise ShardMergeError(f"shards must hold each image index once; duplicated {dupes[:10]}, "
                              f"missing {missing[:10]} (of {index.numel()} results)")  # fmt: skip
    return PointResults(
        index=index[order],
        labels=torch.cat([p.labels for p in parts])[order],
        clean=torch.cat([p.clean for p in parts], dim=-1)[:, order],
        correct=torch.cat([p.correct for p in parts], dim=-1)[..., order],
        attacks=list(first.attacks),
        epsilons=list(first.epsilons),
        seconds=torch.stack([p.seconds for p in parts]).sum(0),
    )


def gather_shards(local: PointResults) -> PointResults:
    """All ranks' results merged (``torch.distributed.all_gather_object``); the local ones without a group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return local
    parts: list[PointResults | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local.to_cpu())
    return merge_shards([p for p in parts if p is not None])
