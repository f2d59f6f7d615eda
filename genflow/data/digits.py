"""scikit-learn's real 8x8 handwritten digits, split and resized deterministically.

The images ship inside scikit-learn (``sklearn.datasets.load_digits``: 1,797
grey-scale images of the digits 0-9, integer pixel values 0..16), so nothing is
downloaded.

**Split.** Stratified by label, 70/10/20, from a seeded permutation of the data
order: one ``g = torch.Generator().manual_seed(seed)`` is created and, for each
label 0, 1, ..., 9 in turn, that label's indices (in scikit-learn's order) are
permuted by ``torch.randperm(n, generator=g)``; the first ``7 n // 10`` go to
train, the next ``n // 10`` to val and the rest to test (integer floors). That
gives train/val/test = 1,253 / 176 / 368 images whatever the seed. The split uses
no scikit-learn RNG; torch's CPU ``randperm`` on a seeded CPU generator gives the
same permutation on every platform, and a test pins the seed-0 split so a change
in a future version would be caught. Each split is returned in scikit-learn's
original order. (``genflow.metrics``' digits feature network was trained on this
same split.)

**Resize.** Pixels are scaled to ``[0, 1]`` (divided by 16) and resized with
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
antialias=True)``; antialiasing only changes the result when shrinking, and the
digits are only enlarged (8 -> 16 or 32). Bilinear weights are convex, so values
stay in ``[0, 1]``; the result is then mapped to the value range.

References:
    Alpaydin and Kaynak 1998, "Optical Recognition of Handwritten Digits",
    UCI Machine Learning Repository (the test part of which scikit-learn ships).
"""

from __future__ import annotations

import functools
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from genflow.data.base import ImageTensorDataset, check_choice, check_value_range, to_value_range
from genflow.data.errors import DataOptionError

__all__ = ["DIGITS_SIZES", "DIGITS_SPLITS", "DIGITS_SPLIT_COUNTS", "digits_split_indices", "load_digits_split"]

DIGITS_SPLITS: tuple[str, ...] = ("train", "val", "test")
DIGITS_SIZES: tuple[int, ...] = (8, 16, 32)
DIGITS_SPLIT_COUNTS: dict[str, int] = {"train": 1253, "val": 176, "test": 368}
_CLASSES = tuple(str(k) for k in range(10))


@functools.lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``(1797, 64)`` uint8 in 0..16 and labels ``(1797,)`` int64, read once (read-only arrays)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.ascontiguousarray(bunch.data, dtype=np.uint8)
    labels = np.ascontiguousarray(bunch.target, dtype=np.int64)
    pixels.setflags(write=False)
    labels.setflags(write=False)
    return pixels, labels


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise DataOptionError(f"seed must be an int; got {seed!r} ({type(seed).__name__})")
    return int(seed)


@functools.lru_cache(maxsize=8)
def _split_indices(seed: int) -> dict[str, tuple[int, ...]]:
    _, labels = _raw_digits()
    generator = torch.Generator().manual_seed(seed)  # one generator, shared by the labels in ascending order
    parts: dict[str, list[int]] = {name: [] for name in DIGITS_SPLITS}
    for label in range(10):
        members = torch.from_numpy(np.flatnonzero(labels == label))  # this label's indices, data order
        n = members.numel()
        members = members[torch.randperm(n, generator=generator)].tolist()
        n_train, n_val = 7 * n // 10, n // 10  # integer floors (0.7 * 180 is 125.999... in floating point)
        parts["train"] += members[:n_train]
        parts["val"] += members[n_train : n_train + n_val]
        parts["test"] += members[n_train + n_val :]
    return {name: tuple(sorted(idx)) for name, idx in parts.items()}


def digits_split_indices(split: str, *, seed: int = 0) -> Tensor:
    """Indices (into scikit-learn's order) of the images in ``split``.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        seed: Seed of the split's permutation (see the module docstring).

    Returns:
        Sorted ``(n,)`` int64 tensor; the three splits are disjoint and cover all 1,797 images.

    Raises:
        DataOptionError: unknown ``split`` or a non-integer ``seed``.
    """
    split = check_choice(split, DIGITS_SPLITS, "split")
    return torch.tensor(_split_indices(_check_seed(seed))[split], dtype=torch.int64)


def _resize_images(x: Tensor, size: int) -> Tensor:
    """Resize ``(N, C, H, W)`` images to ``(N, C, size, size)`` (bilinear, antialiased; no-op at the same size)."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def load_digits_split(
    split: str = "train", *, size: int = 8, value_range: str = "generation", seed: int = 0
) -> ImageTensorDataset:
    """One split of the scikit-learn digits as an in-memory dataset.

    Args:
        split: ``"train"`` (1,253 images), ``"val"`` (176) or ``"test"`` (368).
        size: Side length of the returned images: 8 (original), 16 or 32.
        value_range: ``"generation"`` for ``[-1, 1]``, ``"classification"`` for ``[0, 1]``.
        seed: Seed of the split's permutation; 0 is the documented split.

    Returns:
        :class:`ImageTensorDataset` with ``.images`` float32 and ``.labels`` int64
        (digit 0-9), ``.classes == ("0", ..., "9")``.

    Shapes:
        ``images``: ``(N, 1, size, size)``; ``labels``: ``(N,)``.

    Raises:
        DataOptionError: unknown ``split``, ``size`` or ``value_range``, or a non-integer ``seed``.
    """
    split = check_choice(split, DIGITS_SPLITS, "split")
    size = check_choice(size, DIGITS_SIZES, "size")
    value_range = check_value_range(value_range)
    index = digits_split_indices(split, seed=seed)
    pixels, labels = _raw_digits()
    x = torch.tensor(pixels, dtype=torch.float32)[index].reshape(-1, 1, 8, 8) / 16.0
    x = _resize_images(x, size).clamp_(0.0, 1.0)
    return ImageTensorDataset(to_value_range(x, value_range), torch.tensor(labels)[index], value_range, _CLASSES)
