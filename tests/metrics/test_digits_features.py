"""The shipped digits feature network, its loader, and the digits Frechet distance."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from genflow.data.digits import DIGITS_SPLITS as SPLITS
from genflow.data.digits import digits_split_indices
from genflow.errors import ConfigError, GeneratorRequiredError, ShapeError
from genflow.metrics import (
    DigitsFeatureNet,
    WeightsFormatError,
    default_digits_weights_path,
    digits_fd,
    digits_fd_floor,
    digits_features,
    load_digits_feature_net,
)
from genflow.metrics.digits_features import load_digits_split

WEIGHTS = default_digits_weights_path()


@pytest.fixture(scope="module")
def net() -> DigitsFeatureNet:
    return load_digits_feature_net()


@pytest.fixture(scope="module")
def test_images() -> torch.Tensor:
    return load_digits_split("test")[0]


def test_split_rule_is_stratified_disjoint_and_complete():
    from sklearn.datasets import load_digits

    labels = torch.as_tensor(load_digits().target)
    index = {s: digits_split_indices(s) for s in SPLITS}
    joined = torch.cat([index[s] for s in SPLITS])
    assert torch.equal(torch.sort(joined).values, torch.arange(len(labels)))
    for label in range(10):
        n = int((labels == label).sum())
        counts = [int((labels[index[s]] == label).sum()) for s in SPLITS]
        assert counts == [7 * n // 10, n // 10, n - 7 * n // 10 - n // 10]
    assert all(torch.equal(index[s], digits_split_indices(s)) for s in SPLITS)  # deterministic
    x, y = load_digits_split("test")
    assert x.shape == (len(y), 1, 8, 8) and x.dtype == torch.float32 and 0 <= float(x.min()) <= float(x.max()) == 1


def test_shipped_network_is_accurate_on_the_test_split(net, test_images):
    labels = load_digits_split("test")[1]
    with torch.no_grad():
        accuracy = float((net(test_images).argmax(1) == labels).double().mean())
    assert accuracy >= 0.97
    assert net.features(test_images).shape == (len(labels), DigitsFeatureNet.feature_dim)


def test_record_sha256_matches_the_shipped_weights():
    record = json.loads(WEIGHTS.with_suffix(".json").read_text(encoding="utf-8"))
    data = WEIGHTS.read_bytes()
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["bytes"] == len(data) < 1_000_000


class _Tripwire:
    """Unpickling this object would create a file: proof that the loader never unpickles."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_loader_refuses_pickles_without_unpickling(tmp_path):
    saved = tmp_path / "weights.pt"
    torch.save(DigitsFeatureNet().state_dict(), saved)
    with pytest.raises(WeightsFormatError, match="not a safetensors file.*zip"):
        load_digits_feature_net(saved)
    marker = tmp_path / "unpickled"
    raw = tmp_path / "weights.safetensors"
    raw.write_bytes(pickle.dumps(_Tripwire(marker)))
    with pytest.raises(WeightsFormatError):
        load_digits_feature_net(raw)
    assert not marker.exists()
    with pytest.raises(FileNotFoundError):
        load_digits_feature_net(tmp_path / "absent.safetensors")


def test_loader_refuses_safetensors_with_other_tensors(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3)}, str(path))
    with pytest.raises(WeightsFormatError, match="missing"):
        load_digits_feature_net(path)
    state = {k: v.clone() for k, v in DigitsFeatureNet().state_dict().items()}
    state["head.2.bias"] = torch.zeros(11)
    save_file(state, str(path))
    with pytest.raises(WeightsFormatError, match="head.2.bias"):
        load_digits_feature_net(path)


def test_value_range_is_an_affine_map_onto_unit_range(net, test_images):
    sym = load_digits_feature_net(value_range="generation")
    x = test_images[:32]
    torch.testing.assert_close(sym(2 * x - 1), net(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        digits_features(2 * x - 1, value_range="generation", net=net),
        digits_features(x.reshape(32, 64), value_range=(0.0, 1.0), net=sym),
    )


def test_fd_of_test_split_against_itself_is_zero_and_floor_is_positive(net, test_images):
    assert digits_fd(test_images, value_range="classification", net=net) == pytest.approx(0.0, abs=1e-6)
    assert digits_fd(2 * test_images - 1, net=net) == pytest.approx(0.0, abs=1e-6)
    n = len(test_images)
    floor = digits_fd_floor(n, generator=torch.Generator().manual_seed(0), net=net)
    assert floor > 0
    assert floor == digits_fd_floor(n, generator=torch.Generator().manual_seed(0), net=net)  # same seed, same value
    assert digits_fd_floor(net=net) < floor  # more samples, less bias
    noise = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert digits_fd(noise, net=net) > 20 * floor


def test_bad_input_raises_typed_errors(net):
    with pytest.raises(ShapeError, match="64 pixels|\\(N, 1, 8, 8\\)"):
        digits_fd(torch.zeros(10, 1, 9, 9), net=net)
    with pytest.raises(ShapeError, match="at least 2"):
        digits_fd(torch.zeros(1, 1, 8, 8), net=net)
    with pytest.raises(ShapeError, match=r"\(N, 1, 8, 8\)"):
        net(torch.zeros(4, 64))
    with pytest.raises(ConfigError, match="reference"):
        digits_fd(torch.zeros(10, 1, 8, 8), reference="holdout", net=net)
    with pytest.raises(ConfigError, match="value_range"):
        digits_fd(torch.zeros(10, 1, 8, 8), value_range="pixels", net=net)
    with pytest.raises(ConfigError, match="low < high"):
        DigitsFeatureNet((1.0, 0.0))
    with pytest.raises(GeneratorRequiredError):
        digits_fd_floor(100, net=net)
    with pytest.raises(ConfigError, match="num_samples"):
        digits_fd_floor(10_000, net=net)
