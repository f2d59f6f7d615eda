"""CIFAR-10 from its real on-disk format (a tiny fake) and image folders written by the test.

The fake CIFAR-10 is written exactly as the official python version is laid out
(``cifar-10-batches-py/data_batch_1..5``, ``test_batch``, ``batches.meta``, pickled
dicts with the keys torchvision reads). torchvision checks each file's md5 against
the official sums before unpickling; the tiny fake cannot match them, so the round
trip test substitutes, in the test only, a ``torchvision.datasets.CIFAR10``
subclass whose checksum table lists the fake's md5 sums: the check itself still
runs. Without that substitution the fake is rejected with ``DataIntegrityError``.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import CIFAR10

import genflow.data.images as images_module
from genflow.data import (
    CIFAR10Images,
    DataIntegrityError,
    DataNotFoundError,
    DataOptionError,
    load_cifar10,
    load_image_folder,
)
from genflow.errors import GenflowError

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PER_BATCH = 3


def _write_batch(path: Path, pixels: np.ndarray, labels: list[int], name: str) -> None:
    """One batch as CIFAR-10 stores it: rows of 3072 uint8 (1024 red, 1024 green, 1024 blue, row-major)."""
    entry = {
        "batch_label": name,
        "labels": labels,
        "data": pixels.reshape(len(labels), 3072),
        "filenames": [f"{name}_{i}.png" for i in range(len(labels))],
    }
    path.write_bytes(pickle.dumps(entry, protocol=2))


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_cifar(tmp_path):
    """Write a tiny CIFAR-10 (3 images a batch) and return (root, train pixels, train labels, test pixels, labels)."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)  # a local numpy generator only shapes the test's fake data
    train_pixels, train_labels = [], []
    for b in range(1, 6):
        pixels = rng.integers(0, 256, size=(PER_BATCH, 3, 32, 32), dtype=np.uint8)
        labels = [(b * PER_BATCH + i) % 10 for i in range(PER_BATCH)]
        _write_batch(folder / f"data_batch_{b}", pixels, labels, f"training batch {b} of 5")
        train_pixels.append(pixels)
        train_labels += labels
    test_pixels = rng.integers(0, 256, size=(PER_BATCH, 3, 32, 32), dtype=np.uint8)
    test_labels = [9, 0, 4]
    _write_batch(folder / "test_batch", test_pixels, test_labels, "testing batch 1 of 1")
    meta = {"label_names": CLASSES, "num_cases_per_batch": PER_BATCH, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return tmp_path, np.concatenate(train_pixels), train_labels, test_pixels, test_labels


@pytest.fixture
def trust_fake(fake_cifar, monkeypatch):
    """Make genflow use a CIFAR10 subclass whose md5 table lists the fake's sums (test only)."""
    folder = fake_cifar[0] / "cifar-10-batches-py"
    table = {
        "train_list": [[f"data_batch_{b}", _md5(folder / f"data_batch_{b}")] for b in range(1, 6)],
        "test_list": [["test_batch", _md5(folder / "test_batch")]],
        "meta": {"filename": "batches.meta", "key": "label_names", "md5": _md5(folder / "batches.meta")},
    }
    monkeypatch.setattr(images_module, "CIFAR10", type("TinyCIFAR10", (CIFAR10,), table))
    return fake_cifar


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("value_range", ["generation", "classification"])
def test_cifar_round_trip(trust_fake, train, value_range):
    root, train_pixels, train_labels, test_pixels, test_labels = trust_fake
    pixels, labels = (train_pixels, train_labels) if train else (test_pixels, test_labels)
    data = load_cifar10(root, train=train, value_range=value_range)
    assert isinstance(data, CIFAR10Images) and len(data) == len(labels)
    assert data.classes == tuple(CLASSES)
    assert data.pixels.dtype == torch.uint8 and torch.equal(data.pixels, torch.from_numpy(pixels))
    assert data.labels.tolist() == labels
    image, label = data[1]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and int(label) == labels[1]
    expected = torch.from_numpy(pixels[1]).float() / 255.0
    torch.testing.assert_close(image, 2 * expected - 1 if value_range == "generation" else expected)


def test_cifar_md5_check_rejects_the_fake(fake_cifar):
    root = fake_cifar[0]
    with pytest.raises(DataIntegrityError, match="md5") as info:
        load_cifar10(root)
    assert str(root / "cifar-10-batches-py") in str(info.value)


def test_cifar_missing_folder_says_where_and_how(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError) as info:
        load_cifar10(root)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, GenflowError)
    assert str(root / "cifar-10-batches-py") in message
    assert "download=True" in message and "https://www.cs.toronto.edu/~kriz/cifar.html" in message
    assert not root.exists()  # nothing was downloaded or created


def test_cifar_missing_file_is_named(fake_cifar):
    root = fake_cifar[0]
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataNotFoundError, match="missing: data_batch_3"):
        load_cifar10(root)


def test_cifar_bad_value_range(tmp_path):
    with pytest.raises(DataOptionError, match="value_range"):
        load_cifar10(tmp_path, value_range="0-255")


@pytest.fixture
def image_root(tmp_path):
    """Two classes of PNGs with different sizes and modes."""
    (tmp_path / "red").mkdir()
    (tmp_path / "white").mkdir()
    Image.new("RGB", (20, 12), (255, 0, 0)).save(tmp_path / "red" / "a.png")
    Image.new("RGB", (40, 40), (255, 0, 0)).save(tmp_path / "red" / "b.png")
    Image.new("L", (9, 30), 255).save(tmp_path / "white" / "c.png")
    return tmp_path


@pytest.mark.parametrize("value_range, lo", [("generation", -1.0), ("classification", 0.0)])
def test_image_folder(image_root, value_range, lo):
    data = load_image_folder(image_root, size=16, value_range=value_range)
    assert data.classes == ["red", "white"] and len(data) == 3
    for index, (colour, label) in enumerate([((1.0, lo, lo), 0), ((1.0, lo, lo), 0), ((1.0, 1.0, 1.0), 1)]):
        image, target = data[index]
        assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and target == label
        torch.testing.assert_close(image, torch.tensor(colour).view(3, 1, 1).expand(3, 16, 16))


def test_image_folder_grayscale(image_root):
    image, _ = load_image_folder(image_root, size=8, grayscale=True, value_range="classification")[2]
    assert image.shape == (1, 8, 8)
    torch.testing.assert_close(image, torch.ones(1, 8, 8))


def test_image_folder_missing_or_empty(tmp_path):
    with pytest.raises(DataNotFoundError, match="is not a directory") as info:
        load_image_folder(tmp_path / "absent")
    assert "<class name>/<image file>" in str(info.value)
    with pytest.raises(DataNotFoundError, match="no usable images"):
        load_image_folder(tmp_path)  # exists, but no class sub-folders


@pytest.mark.parametrize("size", [0, -1, 2.0, True])
def test_image_folder_bad_size(image_root, size):
    with pytest.raises(DataOptionError, match="size must be an integer >= 1"):
        load_image_folder(image_root, size=size)
