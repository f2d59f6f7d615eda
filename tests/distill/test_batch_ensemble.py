import pytest
import torch

from genflow.classify import CLASSIFIERS, CifarResNet
from genflow.distill import BatchEnsemble, Rank1Layer, member_diversity
from genflow.errors import ConfigError, ShapeError
from tests.distill.fixtures import TEACHER_MODEL

ARCHS = {
    "cifar_resnet": dict(TEACHER_MODEL),
    "timm": {"name": "timm", "arch": "resnet10t", "num_classes": 3, "in_chans": 1, "image_size": 16,
             "model_args": {"stem_width": 4}},  # fmt: skip
}


def _twins(config, members):
    torch.manual_seed(0)
    shared = CLASSIFIERS.from_config(dict(config))
    torch.manual_seed(0)
    be = BatchEnsemble(CLASSIFIERS.from_config(dict(config)), members=members, init="ones")
    return shared, be


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_identical_fast_weights_equal_the_shared_network(arch):
    shared, be = _twins(ARCHS[arch], 3)
    size = shared.image_size
    x = torch.rand((5, 1, size, size), generator=torch.Generator().manual_seed(1))
    for mode in (False, True):  # train mode too: tiling a batch leaves the batch-norm batch statistics unchanged
        shared.train(mode), be.train(mode)
        expected = shared(x)
        members = be.member_logits(x)
        assert members.shape == (3, 5, 3)
        for m in members:
            torch.testing.assert_close(m, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(be(x), torch.log_softmax(expected, -1), rtol=1e-5, atol=1e-5)


def test_members_differ_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    be = BatchEnsemble(TEACHER_MODEL, members=4)
    x = torch.rand((6, 1, 4, 4), generator=torch.Generator().manual_seed(2))
    logits = be(x, per_member=True)
    assert not torch.allclose(logits[0], logits[1])
    logits.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in be.parameters())
    shared = CifarResNet(**{k: v for k, v in TEACHER_MODEL.items() if k != "name"})
    extra = sum(p.numel() for p in be.parameters()) - sum(p.numel() for p in shared.parameters())
    layers = [m for m in be.modules() if isinstance(m, Rank1Layer)]
    assert extra == sum(m.r.numel() + m.s.numel() + (m.bias.numel() - m.bias.shape[1] if m.bias is not None else 0)
                        for m in layers)  # fmt: skip
    assert be.flops(1) >= 4 * shared.flops(1)  # M forward passes (fast weights add elementwise products only)


def test_member_diversity():
    torch.manual_seed(0)
    be = BatchEnsemble(TEACHER_MODEL, members=3, init="normal")
    images = torch.rand((20, 1, 4, 4), generator=torch.Generator().manual_seed(3))
    from genflow.data import ImageTensorDataset

    data = ImageTensorDataset(images, torch.arange(20) % 3, "classification", ["a", "b", "c"])
    div = member_diversity(be, data)
    assert 0.0 <= div["disagreement"] <= 1.0 and div["kl"] > 0.0
    torch.manual_seed(0)
    same = member_diversity(BatchEnsemble(TEACHER_MODEL, members=3, init="ones"), data)
    assert same["disagreement"] == 0.0 and same["kl"] < 1e-10


def test_bad_arguments():
    with pytest.raises(ConfigError, match="init must be one of random_sign, normal, ones; got 'zeros'"):
        BatchEnsemble(TEACHER_MODEL, init="zeros")
    with pytest.raises(ConfigError, match="members must be an int >= 1; got 0"):
        BatchEnsemble(TEACHER_MODEL, members=0)
    with pytest.raises(ShapeError):
        BatchEnsemble(TEACHER_MODEL, members=2)(torch.rand(2, 1, 8, 8))
