"""Image datasets a user has on disk: CIFAR-10 (python version) and folders of images.

Nothing here downloads unless asked: :func:`load_cifar10` reads a local copy and
only fetches one with ``download=True``; :func:`load_image_folder` only reads.

**Integrity and unpickling.** CIFAR-10's python version stores its batches as
Python pickles, and reading them (torchvision's ``CIFAR10`` does it) means
unpickling, which can run arbitrary code if a file is hostile. genflow keeps
torchvision's integrity check: before anything is unpickled, the md5 sum of
every batch file and of ``batches.meta`` is compared with the official CIFAR-10
checksums, and a mismatch raises :class:`~genflow.data.DataIntegrityError`.
So only the genuine CIFAR-10 files are ever unpickled; point ``root`` only at
CIFAR-10 files you obtained yourself. genflow unpickles nothing else. (genflow's
tests build a tiny fake in the real on-disk format and, in the test only,
substitute a ``CIFAR10`` subclass whose checksum table lists the fake's md5 sums,
so the check still runs for real.)

References:
    Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny Images"
    (CIFAR-10, https://www.cs.toronto.edu/~kriz/cifar.html).
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.datasets import CIFAR10, ImageFolder
from torchvision.transforms.functional import pil_to_tensor

from genflow.data.base import check_value_range, to_value_range
from genflow.data.errors import DataIntegrityError, DataNotFoundError, DataOptionError

__all__ = ["CIFAR10Images", "PILToValueRange", "load_cifar10", "load_image_folder"]

_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


class CIFAR10Images(Dataset):
    """CIFAR-10 held in memory as uint8; item ``i`` is ``(image, label)`` with the image in ``value_range``.

    Pixels stay uint8 (150 MB for the training set instead of 600 MB as float32)
    and are converted per item.

    Args:
        pixels: ``(N, 3, 32, 32)`` uint8 tensor.
        labels: ``(N,)`` int64 tensor.
        classes: The 10 class names, ``classes[k]`` names label ``k``.
        value_range: ``"generation"`` (``[-1, 1]``) or ``"classification"`` (``[0, 1]``).

    Shapes:
        item: ``((3, 32, 32) float32, () int64)``.
    """

    def __init__(self, pixels: Tensor, labels: Tensor, classes: tuple[str, ...], value_range: str) -> None:
        self.pixels = pixels
        self.labels = labels
        self.classes = tuple(classes)
        self.value_range = check_value_range(value_range)

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return to_value_range(self.pixels[index].to(torch.float32) / 255.0, self.value_range), self.labels[index]

    def __repr__(self) -> str:
        return f"CIFAR10Images(n={len(self)}, value_range={self.value_range!r})"


def _cifar_files(dataset_class: type[CIFAR10]) -> list[str]:
    names = [name for name, _ in dataset_class.train_list + dataset_class.test_list]
    return names + [dataset_class.meta["filename"]]


def load_cifar10(
    root: str | os.PathLike[str], *, train: bool = True, value_range: str = "generation", download: bool = False
) -> CIFAR10Images:
    """CIFAR-10 from ``root/cifar-10-batches-py`` through ``torchvision.datasets.CIFAR10``.

    Unpickles the CIFAR-10 batch files after torchvision has checked their md5
    sums against the official ones (see the module docstring): use it only on
    CIFAR-10 files you obtained yourself.

    Args:
        root: Folder that holds ``cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``,
            ``test_batch``, ``batches.meta``).
        train: The 50,000 training images if true, else the 10,000 test images.
        value_range: ``"generation"`` (``[-1, 1]``) or ``"classification"`` (``[0, 1]``).
        download: Fetch and extract the archive (about 163 MB) into ``root`` first if it
            is not there. Off by default: genflow never downloads on its own.

    Returns:
        :class:`CIFAR10Images`.

    Shapes:
        ``pixels``: ``(N, 3, 32, 32)`` uint8; each item's image ``(3, 32, 32)`` float32.

    Raises:
        DataNotFoundError: files missing and ``download`` false (the message names the folder,
            the missing files and how to get them).
        DataIntegrityError: the files fail torchvision's md5 check.
        DataOptionError: unknown ``value_range``.
    """
    check_value_range(value_range)
    root = Path(root).expanduser()
    folder = root / CIFAR10.base_folder
    if not download:
        missing = [name for name in _cifar_files(CIFAR10) if not (folder / name).is_file()]
        if missing:
            what = "the folder does not exist" if not folder.is_dir() else f"missing: {', '.join(missing)}"
            raise DataNotFoundError(
                f"CIFAR-10 not found: expected the python version of CIFAR-10 in {folder} "
                f"(files {', '.join(_cifar_files(CIFAR10))}); {what}. "
                f"Get it with load_cifar10({str(root)!r}, download=True), or download cifar-10-python.tar.gz "
                f"from {_CIFAR_URL} and extract it into {root}."
            )
    try:
        dataset = CIFAR10(str(root), train=train, download=download)
    except RuntimeError as err:  # torchvision's "not found or corrupted": a file failed its md5 check
        raise DataIntegrityError(
            f"CIFAR-10 files in {folder} failed torchvision's md5 check ({err}); delete the folder and "
            f"download cifar-10-python.tar.gz again from {_CIFAR_URL}, or pass download=True."
        ) from err
    pixels = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # HWC -> CHW
    labels = torch.tensor(dataset.targets, dtype=torch.int64)
    return CIFAR10Images(pixels, labels, tuple(dataset.classes), value_range)


class PILToValueRange:
    """Transform: PIL image -> ``(C, H, W)`` float32 tensor in ``value_range`` (a class, so it pickles)."""

    def __init__(self, value_range: str) -> None:
        self.value_range = check_value_range(value_range)

    def __call__(self, image: Image.Image) -> Tensor:
        return to_value_range(pil_to_tensor(image).to(torch.float32) / 255.0, self.value_range)

    def __repr__(self) -> str:
        return f"PILToValueRange({self.value_range!r})"


def load_image_folder(
    root: str | os.PathLike[str], *, size: int = 32, value_range: str = "generation", grayscale: bool = False
) -> ImageFolder:
    """A folder of images, one sub-folder per class, through ``torchvision.datasets.ImageFolder``.

    Each image is loaded as RGB (or converted to one grey channel), its shorter side
    resized to ``size`` (bilinear, antialiased), centre-cropped to ``size x size`` and
    mapped to ``value_range``. Labels index the sorted sub-folder names (``.classes``).

    Args:
        root: Folder laid out as ``root/<class name>/<image>`` (.png, .jpg, .jpeg, .bmp, ...).
        size: Side length of the returned images, at least 1.
        value_range: ``"generation"`` (``[-1, 1]``) or ``"classification"`` (``[0, 1]``).
        grayscale: One grey channel instead of three RGB channels.

    Returns:
        The ``ImageFolder`` with the transform set; item ``i`` is ``(image, label)``.

    Shapes:
        image: ``(3, size, size)`` (``(1, size, size)`` if ``grayscale``) float32.

    Raises:
        DataNotFoundError: ``root`` does not exist, has no class sub-folders, or a class has no images.
        DataOptionError: ``size`` is not an integer >= 1, or unknown ``value_range``.
    """
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise DataOptionError(f"size must be an integer >= 1; got {size!r}")
    size = int(size)
    check_value_range(value_range)
    root = Path(root).expanduser()
    layout = f"expected {root}/<class name>/<image file> (one sub-folder per class, e.g. {root}/cat/0001.png)"
    if not root.is_dir():
        raise DataNotFoundError(f"image folder not found: {root} is not a directory; {layout}")
    steps = [transforms.Grayscale(num_output_channels=1)] if grayscale else []
    steps += [
        transforms.Resize(size, interpolation=transforms.InterpolationMode.BILINEAR, antialias=True),
        transforms.CenterCrop(size),
        PILToValueRange(value_range),
    ]
    try:
        return ImageFolder(str(root), transform=transforms.Compose(steps))
    except FileNotFoundError as err:  # no class folders, or a class folder without images
        raise DataNotFoundError(f"no usable images in {root}: {err}; {layout}") from err
