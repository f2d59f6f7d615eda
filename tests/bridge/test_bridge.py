"""The Bridge ABC and the Diffusion Bridge Network: marginals, time grid, exactness, learning, typed errors."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import genflow as gf
from genflow.bridge import (
    AveragedBridges,
    Bridge,
    BridgeDistillation,
    BridgeMatching,
    DiffusionBridgeNetwork,
    beta_1_5,
    bridge_pairs,
    centred,
    time_index,
)
from genflow.classify import CifarResNet
from genflow.data import NamedTensorDataset
from genflow.errors import ComponentError, ConfigError, GeneratorRequiredError, NonFiniteError, ShapeError


def tiny_member(seed: int = 0, num_classes: int = 4) -> CifarResNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CifarResNet(num_classes=num_classes, in_chans=1, image_size=4, depth=8, width=4).eval()


def tiny_dbn(beta: float = 1e-4, steps: int = 5, seed: int = 0, **kw) -> DiffusionBridgeNetwork:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DiffusionBridgeNetwork(tiny_member(seed), process=gf.BrownianBridge(beta), steps=steps,
                                      widths=[8], embed_dim=16, **kw)  # fmt: skip


class OracleBridge(Bridge):
    """A bridge whose noise prediction is exact for one known target ``z0``."""

    def __init__(self, z0: Tensor, beta: float = 0.5, steps: int = 6) -> None:
        super().__init__(gf.BrownianBridge(beta), steps)
        self.z0 = z0

    def eps(self, z: Tensor, cond: Tensor, t: Tensor) -> Tensor:
        return self.process.eps_from_x0(z, self.z0, t)

    def predict(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def flops(self, batch: int = 1) -> int:
        return 0


def test_forward_marginals_match_closed_form():
    bridge = tiny_dbn(beta=0.3)
    g = torch.Generator().manual_seed(0)
    n, t = 200_000, 0.4
    z0, z1 = torch.tensor([[1.0, -2.0, 0.5, 0.5]], dtype=torch.float64), torch.tensor([[0.0, 3.0, -1.0, -2.0]])
    noise = torch.randn(n, 4, generator=g, dtype=torch.float64)
    z = bridge.corrupt(z0.expand(n, 4), z1.double().expand(n, 4), torch.full((n,), t, dtype=torch.float64), noise)
    var = 0.3 * t * (1 - t)
    se = (var / n) ** 0.5
    assert torch.allclose(z.mean(0), (1 - t) * z0[0] + t * z1[0].double(), atol=5 * se)
    assert torch.allclose(z.var(0), torch.full((4,), var, dtype=torch.float64), rtol=0.02)


def test_time_draws_cover_the_grid_uniformly():
    u = torch.rand(60_000, generator=torch.Generator().manual_seed(1))
    counts = torch.bincount(time_index(u, 5), minlength=6)
    assert counts[0] == 0 and torch.allclose(counts[1:] / 60_000.0, torch.full((5,), 0.2),
                                             atol=0.01)  # fmt: skip
    assert time_index(torch.tensor([0.0, 0.999999, 1.0]), 5).tolist() == [1, 5, 5]


def test_trains_on_exactly_the_times_it_samples_at():
    bridge = tiny_dbn(steps=5)
    seen: list[float] = []
    bridge.network.register_forward_pre_hook(lambda mod, args: seen.extend(args[2].tolist()))
    n, objective = 512, BridgeMatching()
    batch = {"source": torch.randn(n, 4), "target": torch.randn(n, 4), "cond": torch.randn(n, *bridge.feature_shape)}
    draws = objective.draw(n, {k: tuple(v.shape[1:]) for k, v in batch.items()}, torch.Generator().manual_seed(2),
                           dtype=torch.float32, device="cpu")  # fmt: skip
    objective.loss(bridge, batch, draws)
    trained = sorted(set(seen))
    seen.clear()
    bridge.sample(batch["source"][:3], batch["cond"][:3], generator=torch.Generator().manual_seed(3))
    sampled = sorted(set(seen))
    assert trained == sampled == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    seen.clear()
    bridge.sample(batch["source"][:3], batch["cond"][:3], steps=1, noise=False)
    assert seen == [1.0, 1.0, 1.0]  # a coarser grid uses a subset of the trained times
    with pytest.raises(ConfigError, match="divide"):
        bridge.sample(batch["source"][:3], batch["cond"][:3], steps=3, noise=False)


@pytest.mark.parametrize("steps", [1, 2, 3, 6])
def test_sampler_with_exact_eps_returns_z0_exactly(steps):
    g = torch.Generator().manual_seed(4)
    z0, z1 = torch.randn(5, 7, generator=g, dtype=torch.float64), torch.randn(5, 7, generator=g, dtype=torch.float64)
    bridge = OracleBridge(z0)
    out = bridge.sample(z1, torch.zeros(5, 1), steps=steps, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(out, z0, rtol=0, atol=1e-12)


def test_t0_and_t1_are_safe():
    process = gf.BrownianBridge(1e-4)
    x0, xt = torch.randn(3, 4), torch.randn(3, 4)
    mean, std = process.posterior(x0, x0, torch.zeros(3), torch.zeros(3))
    assert torch.equal(mean, x0) and torch.equal(std, torch.zeros_like(std))
    assert torch.equal(process.eps_from_x0(x0, x0, torch.zeros(3)), torch.zeros(3, 4))
    _, std1 = process.marginal(x0, torch.ones(3), x1=xt)
    assert torch.equal(std1, torch.zeros_like(std1))
    bridge = tiny_dbn()
    h = torch.randn(3, *bridge.feature_shape)
    for t in (torch.zeros(3), torch.ones(3)):
        assert torch.isfinite(bridge.eps(xt, h, t)).all()
    batch = {"source": xt, "target": x0, "cond": h}
    for u in (0.0, 1.0 - 1e-7, 1.0):
        draws = {"time": torch.full((3,), u), "noise": torch.randn(3, 4), "temperature": torch.full((3,), u)}
        assert torch.isfinite(bridge.loss(batch, draws))


def test_temperature_draws_and_test_temperature():
    u = torch.rand(100_000, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    b = beta_1_5(u)
    assert abs(b.mean().item() - 1 / 6) < 3e-3 and abs(b.var().item() - 5 / 252) < 1e-3  # Beta(1, 5) moments
    bridge = tiny_dbn()
    assert bridge.test_temperature == pytest.approx(2 + 0.4 / 6)
    logits = torch.randn(4, 4)
    assert torch.allclose(bridge.source_logits(logits), centred(logits / (2 + 0.4 / 6)))
    assert torch.allclose(bridge.source_logits(logits, torch.zeros(4)), centred(logits / 2.0))


@pytest.mark.slow
def test_training_then_sampling_recovers_a_known_target_map():
    """Synthetic task: target = c(A pool(h) + source / 2), learnable from (z_t, h); trained with the Trainer."""
    bridge = tiny_dbn(beta=1e-3, steps=3, temperature_low=1.0, temperature_spread=0.0)
    g = torch.Generator().manual_seed(7)
    n = 768
    h = torch.randn(n, *bridge.feature_shape, generator=g)
    source = 2.0 * torch.randn(n, 4, generator=g)
    a = torch.randn(4, bridge.feature_shape[0], generator=g)
    target = centred(h.mean(dim=(-2, -1)) @ a.T + source / 2)
    pairs = NamedTensorDataset(source=source[:640], target=target[:640], cond=h[:640])
    gf.Trainer(bridge, BridgeMatching(), steps=500, batch_size=128, lr=3e-3, ema_decay=0.0, lr_schedule="cosine",
               progress=False).fit(pairs)  # fmt: skip
    out = bridge.eval().sample(centred(source[640:]), h[640:], generator=torch.Generator().manual_seed(8))
    residual = (out - target[640:]).pow(2).mean() / target[640:].var()
    baseline = (centred(source[640:]) - target[640:]).pow(2).mean() / target[640:].var()
    assert residual < 0.05 < baseline


def test_bad_inputs_raise_typed_errors():
    bridge = tiny_dbn()
    h = torch.randn(3, *bridge.feature_shape)
    good = {"source": torch.randn(3, 4), "target": torch.randn(3, 4), "cond": h}
    draws = {"time": torch.rand(3), "noise": torch.randn(3, 4)}
    with pytest.raises(ShapeError, match="batch"):  # features of another batch than the logits
        bridge.loss({**good, "cond": h[:2]}, draws)
    with pytest.raises(ShapeError, match="feature map"):  # features of another shape
        bridge.sample(good["source"], torch.randn(3, 2, 4, 4), noise=False)
    with pytest.raises(ShapeError, match="source's shape"):
        bridge.loss({**good, "target": torch.randn(3, 5)}, draws)
    with pytest.raises(ShapeError, match="5 classes"):  # a source with another class count
        bridge.sample(torch.randn(3, 5), h, noise=False)
    bad = good["source"].clone()
    bad[1, 2] = float("nan")
    with pytest.raises(NonFiniteError, match="source"):
        bridge.loss({**good, "source": bad}, draws)
    with pytest.raises(NonFiniteError, match="target"):
        bridge.loss({**good, "target": good["target"] / 0.0}, draws)
    with pytest.raises(ShapeError, match="missing"):
        bridge.loss({"source": good["source"]}, draws)
    with pytest.raises(GeneratorRequiredError):
        bridge.sample(good["source"], h)
    with pytest.raises(ComponentError, match="10 classes"):  # a target ensemble with another class count
        bridge_pairs(tiny_member(), [tiny_member(1, num_classes=10)], torch.rand(2, 1, 4, 4))
    with pytest.raises(ComponentError, match="bridge process"):
        DiffusionBridgeNetwork(tiny_member(), process=gf.VPProcess())
    with pytest.raises(ComponentError, match="Classifier"):
        DiffusionBridgeNetwork(gf.train.HeldNetwork(gf.MLPScoreNet(dim=2, hidden_size=4, depth=1)))
    with pytest.raises(ConfigError, match="steps"):
        tiny_dbn(steps=0)
    with pytest.raises(ComponentError, match="another member"):
        AveragedBridges([tiny_dbn(seed=0), tiny_dbn(seed=1)])
    with pytest.raises(ComponentError, match="Bridge"):
        BridgeDistillation().loss(tiny_member(), good, {})


def test_averaged_bridges_average_probabilities_and_count_flops():
    first = tiny_dbn(seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(9)
        second = DiffusionBridgeNetwork(first.source, process=gf.BrownianBridge(1e-4), widths=[8], embed_dim=16)
        for p in [*first.network.head.parameters(), *second.network.head.parameters()]:
            torch.nn.init.normal_(p, std=0.3)  # non-zero heads, so the two bridges differ
    both = AveragedBridges([first, second])
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(10))
    expected = (first.predict(x) + second.predict(x)) / 2
    assert torch.allclose(both.predict(x), expected, atol=1e-6)
    member = first.source.module.flops(1)
    assert both.flops(1) == member + 5 * (first.network_flops() + second.network_flops())
    assert first.flops(2) == 2 * member + 2 * 5 * first.network_flops()
    assert torch.allclose(both(x).exp(), both.predict(x), atol=1e-6)


def test_calibration_fits_a_temperature_that_lowers_nll():
    bridge = tiny_dbn()
    torch.nn.init.normal_(bridge.network.head.weight, std=2.0)  # an over-confident bridge
    x = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(11))
    labels = torch.arange(64) % 4
    raw = torch.nn.functional.nll_loss(bridge(x), labels).item()
    temperature = bridge.calibrate(x, labels)
    assert bridge.output_temperature.item() == temperature
    assert torch.nn.functional.nll_loss(bridge(x), labels).item() <= raw + 1e-6
