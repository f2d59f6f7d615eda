"""Datasets: scikit-learn's bundled 8x8 digits (default, no download), shifted digits for calibration
under shift, 2-D toy distributions, and CIFAR-10 or image folders a user has on disk.

Every loader is also reachable by name through :func:`load_dataset` (the registry ``DATASET_LOADERS``,
which users extend by registering a :class:`DatasetLoader`). See ``docs/data.md``.
"""

from genflow.data.base import VALUE_RANGES, ImageTensorDataset, NamedTensorDataset, to_value_range
from genflow.data.catalog import DATASET_LOADERS, DatasetLoader, load_dataset
from genflow.data.corrupted import CORRUPTION_PARAMETERS, CORRUPTIONS, SEVERITIES, digits_corrupted
from genflow.data.digits import (
    DIGITS_SIZES,
    DIGITS_SPLIT_COUNTS,
    DIGITS_SPLITS,
    digits_split_indices,
    load_digits_split,
)
from genflow.data.errors import DataIntegrityError, DataNotFoundError, DataOptionError
from genflow.data.images import CIFAR10Images, PILToValueRange, load_cifar10, load_image_folder
from genflow.data.toy2d import TOY2D_NAMES, toy2d

__all__ = [
    "VALUE_RANGES",
    "ImageTensorDataset",
    "to_value_range",
    "DATASET_LOADERS",
    "DatasetLoader",
    "load_dataset",
    "CORRUPTIONS",
    "CORRUPTION_PARAMETERS",
    "SEVERITIES",
    "digits_corrupted",
    "DIGITS_SPLITS",
    "DIGITS_SIZES",
    "DIGITS_SPLIT_COUNTS",
    "digits_split_indices",
    "load_digits_split",
    "DataNotFoundError",
    "DataIntegrityError",
    "DataOptionError",
    "CIFAR10Images",
    "PILToValueRange",
    "load_cifar10",
    "load_image_folder",
    "TOY2D_NAMES",
    "toy2d",
    "NamedTensorDataset",
]
