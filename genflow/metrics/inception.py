"""Inception FID through torch-fidelity, for users who have it (optional extra ``genflow[fid]``).

torch-fidelity computes the Frechet distance in the pool features of its
Inception-v3, matching the reference implementation. Its weights are not part
of genflow: torch-fidelity fetches them into its cache on first use, so this
metric is never used by genflow's tests, CI or demo (which use the digits FD).

Reference: Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule", eq. (6).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from genflow.errors import ConfigError, ShapeError
from genflow.metrics.digits_features import ValueRange, resolve_value_range

__all__ = ["inception_fid", "to_uint8_rgb"]


def to_uint8_rgb(images: Tensor, value_range: ValueRange = "generation") -> Tensor:
    """Map images ``(N, C, H, W)`` in ``value_range`` (C = 1 or 3) to uint8 RGB ``(N, 3, H, W)``, clipping.

    Raises:
        ShapeError: not 4-D or a channel count other than 1 or 3.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ShapeError(f"images must have shape (N, 1 or 3, H, W); got {tuple(images.shape)}")
    lo, hi = resolve_value_range(value_range)
    unit = ((images.detach().float().cpu() - lo) / (hi - lo)).clamp(0.0, 1.0)
    return (unit * 255.0).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()


class _Images(Dataset):
    def __init__(self, images: Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> Tensor:
        return self.images[index]


def inception_fid(
    samples: Tensor, reference: Tensor | str, *, value_range: ValueRange = "generation", cuda: bool | None = None
) -> float:
    """Inception FID between ``samples`` and ``reference`` (images, or a folder of image files).

    Args:
        samples: ``(N, C, H, W)`` images in ``value_range``.
        reference: Images like ``samples`` or a path torch-fidelity reads.
        value_range: Range of the image tensors.
        cuda: Use CUDA (default: if available).

    Raises:
        ConfigError: torch-fidelity is not installed.
    """
    try:
        import torch_fidelity
    except ImportError as err:
        raise ConfigError("inception_fid needs torch-fidelity: pip install 'genflow[fid]'") from err
    inputs: list[Any] = [_Images(to_uint8_rgb(samples, value_range))]
    inputs.append(reference if isinstance(reference, str) else _Images(to_uint8_rgb(reference, value_range)))
    metrics = torch_fidelity.calculate_metrics(
        input1=inputs[0], input2=inputs[1], fid=True, cuda=torch.cuda.is_available() if cuda is None else cuda,
        verbose=False,
    )  # fmt: skip
    return float(metrics["frechet_inception_distance"])
