"""Reading reflow pair shards: the shard format, its checks, and :class:`PairDataset`.

A shard is a safetensors file ``shard-NNNNNN.safetensors`` holding ``start``
and ``end`` (floating, ``(n, *event_shape)``), ``t_start`` and ``t_end``
(floating, ``(n,)``, ``t_start > t_end``) and ``segment`` (integer, ``(n,)``),
with string metadata naming the format, the generator settings' fingerprint
and the teacher's cost. Shards are never unpickled; anything else raises
:class:`~genflow.reflow.errors.PairShardError`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor
from torch.utils.data import Dataset

from genflow.data.base import NamedTensorDataset
from genflow.data.catalog import DATASET_LOADERS, DatasetLoader
from genflow.reflow.errors import PairShardError

__all__ = ["PAIR_FIELDS", "FORMAT", "shard_path", "read_shard_metadata", "PairDataset", "PairsLoader"]

PAIR_FIELDS = ("start", "end", "t_start", "t_end", "segment")
FORMAT = "genflow.reflow.pairs/1"


def shard_path(directory: str | os.PathLike[str], index: int) -> Path:
    """Where shard ``index`` lives in ``directory``."""
    return Path(directory) / f"shard-{index:06d}.safetensors"


def read_shard_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a pair shard.

    Raises:
        PairShardError: not a readable safetensors file, or not a reflow pair shard.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise PairShardError(f"{path} is not a readable safetensors shard ({err})") from None
    if meta.get("format") != FORMAT:
        raise PairShardError(
            f"{path} is not a reflow pair shard: metadata format {meta.get('format')!r}, expected {FORMAT!r}"
        )
    return meta


def _check_shard(path: Path, tensors: dict[str, Tensor]) -> None:
    if set(tensors) != set(PAIR_FIELDS):
        raise PairShardError(f"{path} must hold exactly {list(PAIR_FIELDS)}; got {sorted(tensors)}")
    start, end, n = tensors["start"], tensors["end"], tensors["start"].shape[0] if tensors["start"].ndim else -1
    if start.ndim < 2 or end.shape != start.shape or not start.is_floating_point() or not end.is_floating_point():
        raise PairShardError(
            f"{path}: start and end must be floating (n, *event_shape) of one shape; "
            f"got start {tuple(start.shape)} {start.dtype}, end {tuple(end.shape)} {end.dtype}"
        )
    for name in ("t_start", "t_end", "segment"):
        value = tensors[name]
        floating = name != "segment"
        if value.shape != (n,) or value.is_floating_point() != floating:
            kind = "floating" if floating else "integer"
            raise PairShardError(
                f"{path}: {name} must be {kind} of shape ({n},); got {tuple(value.shape)} {value.dtype}"
            )
    if not bool((tensors["t_start"] > tensors["t_end"]).all()):
        raise PairShardError(f"{path}: every pair must have t_start > t_end (noise side first)")


class PairDataset(Dataset):
    """Every shard in a folder, as one dataset of named pairs (fields ``start, end, t_start, t_end, segment``).

    Args:
        directory: The folder :meth:`PairGenerator.generate` wrote.

    Attributes:
        settings: The generator settings the shards were made with.
        teacher_nfe / teacher_evaluations: The teacher's cost summed over the shards.

    Raises:
        PairShardError: no shards, a shard that is not a reflow pair shard (keys, shapes, dtypes,
            metadata), or shards made with different settings.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        paths = sorted(Path(directory).glob("shard-*.safetensors"))
        if not paths:
            raise PairShardError(f"no pair shards (shard-*.safetensors) in {directory}")
        parts: dict[str, list[Tensor]] = {name: [] for name in PAIR_FIELDS}
        fingerprints, self.teacher_nfe, self.teacher_evaluations = set(), 0, 0
        for path in paths:
            meta = read_shard_metadata(path)
            try:
                tensors = load_file(str(path))
            except (SafetensorError, OSError) as err:
                raise PairShardError(f"{path} is not a readable safetensors shard ({err})") from None
            _check_shard(path, tensors)
            for name in PAIR_FIELDS:
                parts[name].append(tensors[name])
            fingerprints.add(meta.get("fingerprint"))
            self.teacher_nfe += int(meta.get("nfe", 0))
            self.teacher_evaluations += int(meta.get("evaluations", 0))
        if len(fingerprints) > 1:
            raise PairShardError(f"the shards in {directory} were made with {len(fingerprints)} different settings")
        shapes = {tuple(p.shape[1:]) for p in parts["start"]}
        if len(shapes) > 1:
            raise PairShardError(f"the shards in {directory} hold different event shapes: {sorted(shapes)}")
        self.settings: dict[str, Any] = json.loads(meta.get("settings", "{}"))
        self._pairs = NamedTensorDataset(**{name: torch.cat(parts[name]) for name in PAIR_FIELDS})

    @property
    def fields(self) -> tuple[str, ...]:
        """``("start", "end", "t_start", "t_end", "segment")``."""
        return self._pairs.fields

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        """The field tensors, in the order of :attr:`fields`."""
        return self._pairs.tensors

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self._pairs[index]

    def __repr__(self) -> str:
        return f"PairDataset(n={len(self)}, event_shape={tuple(self.tensors[0].shape[1:])})"


@DATASET_LOADERS.register("reflow_pairs")
class PairsLoader(DatasetLoader):
    """:class:`PairDataset` of a folder of pair shards, so a recipe's ``data`` section can name teacher pairs
    (``data: {name: reflow_pairs, directory: runs/toy_pairs}``; made by ``genflow reflow pairs``).

    Raises:
        PairShardError: (in ``load``) no shards, or shards that are not reflow pair shards.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        pass

    def load(self, generator: torch.Generator | None = None) -> PairDataset:
        return PairDataset(self.arguments["directory"])
