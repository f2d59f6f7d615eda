"""Frechet distance on the 8x8 digits in the feature space of a small shipped classifier.

The classifier :class:`DigitsFeatureNet` is trained by
``benchmarks/train_digits_features.py`` on the train split and ships inside the
package as ``genflow/metrics/weights/digits_features.safetensors`` (loaded with
safetensors, never pickle), with ``digits_features.json`` beside it recording the
training config, test accuracy and the file's sha256.

Value ranges (always explicit; the names of ``genflow.data``): ``"classification"``
is ``[0, 1]`` (pixels / 16, what classifiers take and how the digits split is
loaded); ``"generation"`` is ``[-1, 1]`` (``2 x - 1``, the range diffusion and flow
models are trained and sample in); a ``(low, high)`` pair names any other range.

References: Heusel et al. 2017 (Frechet distance in a classifier's feature space).
"""

from __future__ import annotations

import math
import struct
from importlib import resources
from pathlib import Path
from typing import Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from genflow.data.digits import DIGITS_SPLITS as SPLITS
from genflow.data.digits import load_digits_split as _load_digits
from genflow.errors import ConfigError, GenflowError, ShapeError
from genflow.metrics.frechet import frechet_distance
from genflow.random import require_generator
from genflow.validation import check_state

__all__ = [
    "WeightsFormatError",
    "DigitsFeatureNet",
    "default_digits_weights_path",
    "resolve_value_range",
    "load_digits_feature_net",
    "digits_features",
    "digits_fd",
    "digits_fd_floor",
]

ValueRange = Union[str, tuple[float, float]]
_NAMED_RANGES = {"classification": (0.0, 1.0), "generation": (-1.0, 1.0)}


def load_digits_split(split: str) -> tuple[Tensor, Tensor]:
    """Images in ``[0, 1]`` ``(N, 1, 8, 8)`` and labels of a split of :mod:`genflow.data.digits`."""
    data = _load_digits(split, size=8, value_range="classification")
    return data.images, data.labels


class WeightsFormatError(GenflowError, ValueError):
    """A weights file is not a safetensors file, or does not hold the tensors the network expects."""


def resolve_value_range(value_range: ValueRange) -> tuple[float, float]:
    """``"classification"`` -> ``(0, 1)``, ``"generation"`` -> ``(-1, 1)``, ``(low, high)`` -> itself.

    Raises:
        ConfigError: an unknown name, or a pair that is not finite with ``low < high``.
    """
    if isinstance(value_range, str):
        if value_range not in _NAMED_RANGES:
            raise ConfigError(f"value_range must be one of {list(_NAMED_RANGES)} or (low, high); got {value_range!r}")
        return _NAMED_RANGES[value_range]
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ConfigError(
            f"value_range must be one of {list(_NAMED_RANGES)} or (low, high); got {value_range!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(f"value_range (low, high) must be finite with low < high; got {value_range!r}")
    return low, high


class DigitsFeatureNet(nn.Module):
    """Small CNN classifier for ``(N, 1, 8, 8)`` digits; its penultimate layer is the FD feature space.

    ``conv3x3(32) - ReLU - conv3x3(32) - ReLU - maxpool2 - conv3x3(64) - ReLU - maxpool2
    - linear(256 -> 64) [features] - ReLU - dropout - linear(64 -> 10) [logits]``.
    About 45k parameters. Inputs in ``value_range`` are mapped affinely to ``[0, 1]``,
    the range the shipped weights were trained on; values are not clipped.

    Args:
        value_range: Range of the inputs (see :func:`resolve_value_range`).
        dropout: Dropout before the classifier head (active in training mode only).

    Shapes:
        ``x``: ``(N, 1, 8, 8)``; ``features(x)``: ``(N, 64)``; ``forward(x)``: ``(N, 10)``.
    """

    feature_dim = 64
    num_classes = 10

    def __init__(self, value_range: ValueRange = "classification", *, dropout: float = 0.2) -> None:
        super().__init__()
        self.value_range = resolve_value_range(value_range)
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 2 * 2, self.feature_dim),
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(self.feature_dim, self.num_classes))

    def _to_unit(self, x: Tensor) -> Tensor:
        check_state(x, "x")
        if tuple(x.shape[1:]) != (1, 8, 8):
            raise ShapeError(f"DigitsFeatureNet expects images of shape (N, 1, 8, 8); got {tuple(x.shape)}")
        low, high = self.value_range
        return x if (low, high) == (0.0, 1.0) else (x - low) / (high - low)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate embedding (the 64 pre-activations before the head's ReLU), ``(N, 64)``."""
        return self.body(self._to_unit(x))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits, ``(N, 10)``."""
        return self.head(self.features(x))


def default_digits_weights_path() -> Path:
    """Path of the shipped weights, ``genflow/metrics/weights/digits_features.safetensors``."""
    return Path(str(resources.files("genflow.metrics").joinpath("weights", "digits_features.safetensors")))


def _check_safetensors_header(path: Path) -> None:
    """Cheap check of the safetensors layout: 8-byte little-endian header size, then a JSON object."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        raise WeightsFormatError(f"{path} is not a safetensors file: only {size} bytes")
    (header_len,) = struct.unpack("<Q", head[:8])
    if head[8:9] != b"{" or header_len > size - 8:
        hint = " (a zip archive, as torch.save writes: pickle is never loaded)" if head[:4] == b"PK\x03\x04" else ""
        raise WeightsFormatError(
            f"{path} is not a safetensors file: expected an 8-byte header size then a JSON header, "
            f"got leading bytes {head!r}{hint}"
        )


def load_digits_feature_net(
    path: str | Path | None = None, *, value_range: ValueRange = "classification", device: torch.device | str = "cpu"
) -> DigitsFeatureNet:
    """Load a :class:`DigitsFeatureNet` from safetensors weights (the shipped ones by default).

    The network is returned in eval mode with ``requires_grad=False`` parameters
    (gradients still flow to the input).

    Args:
        path: A ``.safetensors`` file; ``None`` loads the weights shipped in the package.
        value_range: Range of the images the network will be given.
        device: Where to put the network.

    Returns:
        The network.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        WeightsFormatError: not a safetensors file, or tensors missing, unexpected or of the wrong shape/dtype.
    """
    path = default_digits_weights_path() if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    _check_safetensors_header(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsFormatError(f"{path} could not be read as safetensors: {exc}") from exc
    net = DigitsFeatureNet(value_range)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k}: expected {tuple(v.shape)} {v.dtype}, got {tuple(tensors[k].shape)} {tensors[k].dtype}"
        for k, v in expected.items()
        if k in tensors and (tensors[k].shape != v.shape or tensors[k].dtype != v.dtype)
    ]
    if missing or unexpected or wrong:
        raise WeightsFormatError(
            f"{path} does not hold DigitsFeatureNet weights: missing {missing}, unexpected {unexpected}, "
            f"mismatched {wrong}"
        )
    net.load_state_dict(tensors)
    return net.requires_grad_(False).eval().to(device)


def digits_features(
    images: Tensor, *, value_range: ValueRange, net: DigitsFeatureNet | None = None, batch_size: int = 1024
) -> Tensor:
    """Feature vectors of digit images, in batches, without gradients.

    Args:
        images: ``(N, 1, 8, 8)``, ``(N, 8, 8)`` or ``(N, 64)`` images in ``value_range``.
        value_range: Range of ``images`` (``"classification"``, ``"generation"`` or ``(low, high)``).
        net: Feature network (images are mapped onto its ``value_range``); ``None`` loads the shipped one.
        batch_size: Images per forward pass.

    Returns:
        ``(N, 64)`` float64 CPU tensor.

    Raises:
        ShapeError: images that do not have 64 pixels each.
        DTypeError: not a floating-point tensor.
        ConfigError: an invalid ``value_range``.
    """
    check_state(images, "images")
    if math.prod(images.shape[1:]) != 64 or images.ndim not in (2, 3, 4):
        raise ShapeError(f"digit images must have shape (N, 1, 8, 8), (N, 8, 8) or (N, 64); got {tuple(images.shape)}")
    low, high = resolve_value_range(value_range)
    net = load_digits_feature_net() if net is None else net
    net_low, net_high = net.value_range
    # affine map from the images' range onto the range the network was built for
    scale = (net_high - net_low) / (high - low)
    device = next(net.parameters()).device
    x = images.reshape(-1, 1, 8, 8).to(device=device, dtype=torch.float32)
    x = (x - low) * scale + net_low
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            feats = [net.features(chunk) for chunk in x.split(batch_size)]
    finally:
        net.train(was_training)
    return torch.cat(feats).to(device="cpu", dtype=torch.float64)


def _reference_images(reference: str) -> Tensor:
    if reference not in SPLITS:
        raise ConfigError(f"reference must be one of {list(SPLITS)}; got {reference!r}")
    return load_digits_split(reference)[0]


def digits_fd(
    samples: Tensor,
    reference: str = "test",
    value_range: ValueRange = "generation",
    *,
    net: DigitsFeatureNet | None = None,
) -> float:
    """Frechet distance between generated digits and a real split, in :class:`DigitsFeatureNet` features.

    The estimate is biased upwards and the bias shrinks with the number of samples
    (roughly like ``1 / n``; see :func:`genflow.metrics.frechet_distance`): even
    real digits score ``> 0``. Report it next to :func:`digits_fd_floor` computed
    with the same ``num_samples=len(samples)`` and the same ``reference``; only
    values at equal sample counts are comparable.

    Args:
        samples: ``(N, 1, 8, 8)`` (or ``(N, 8, 8)``, ``(N, 64)``) images in ``value_range``, ``N >= 2``.
            Not clipped: clip or quantise them first if your pipeline does.
        reference: The real split compared with: ``"test"`` (default), ``"val"`` or ``"train"``.
        value_range: Range of ``samples``: ``"generation"`` (``[-1, 1]``, default), ``"classification"``
            (``[0, 1]``) or ``(low, high)``.
        net: Feature network; ``None`` loads the shipped one (on the CPU). Samples are moved
            to the network's device.

    Returns:
        The distance as a Python float.

    Raises:
        ShapeError: images without 64 pixels each, or fewer than 2 samples.
        ConfigError: an unknown ``reference`` or invalid ``value_range``.
        NonFiniteError: NaN/Inf in ``samples``' features.

    References: Heusel et al. 2017, Eq. (6).
    """
    net = load_digits_feature_net() if net is None else net
    real = digits_features(_reference_images(reference), value_range="classification", net=net)
    fake = digits_features(samples, value_range=value_range, net=net)
    return frechet_distance(fake, real)


def digits_fd_floor(
    num_samples: int | None = None,
    *,
    reference: str = "test",
    generator: torch.Generator | None = None,
    net: DigitsFeatureNet | None = None,
) -> float:
    """The real-vs-real floor: :func:`digits_fd` of train-split images against ``reference``.

    A generator cannot be expected to beat this value at the same sample count.
    The feature network was trained on the train split, so these images may map
    to slightly more typical features than unseen ones; read the floor as a
    slightly optimistic lower reference, not an exact bound.

    Args:
        num_samples: How many train images stand in for the generated samples; ``None``
            uses the whole train split. Fewer than the split draws a subset without
            replacement with ``generator``.
        reference: ``"test"`` (default) or ``"val"``.
        generator: Needed when ``num_samples`` is smaller than the train split.
        net: Feature network; ``None`` loads the shipped one.

    Returns:
        The distance as a Python float.

    Raises:
        ConfigError: ``num_samples`` not in ``[2, len(train)]`` or ``reference`` not ``"test"``/``"val"``.
        GeneratorRequiredError: a subset is asked for without a generator.
    """
    if reference not in ("test", "val"):
        raise ConfigError(
            f"reference for the floor must be 'test' or 'val' (train is the sample side); got {reference!r}"
        )
    train = load_digits_split("train")[0]
    if num_samples is not None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or not 2 <= num_samples <= len(train):
            raise ConfigError(f"num_samples must be an int in [2, {len(train)}] (the train split); got {num_samples!r}")
        if num_samples < len(train):
            generator = require_generator(generator, "digits_fd_floor with num_samples < len(train)")
            train = train[torch.randperm(len(train), generator=generator)[:num_samples]]
    return digits_fd(train, reference=reference, value_range="classification", net=net)
