"""Digits-sized CIFAR-style ResNets from timm's :class:`~timm.models.resnet.BasicBlock`.

Three stages of ``n`` basic blocks each (``depth = 6 n + 2`` layers with
weights: the stem, ``2 n`` convolutions per stage and the head), widths
``width, 2 width, 4 width``, stride 1 in the first stage and 2 in the others,
then global average pooling and a linear head. ``depth=8, width=16`` is small
enough that a 4-member ensemble on 8x8 digits trains in well under a minute on
two CPU cores.

References:
    He et al. 2016, "Deep Residual Learning for Image Recognition", sec. 4.2 (the CIFAR-10 ResNets, 6n+2 layers).
"""

from __future__ import annotations

from timm.models.resnet import BasicBlock
from torch import Tensor, nn

from genflow.classify.base import CLASSIFIERS, Classifier, check_positive_int
from genflow.errors import ConfigError

__all__ = ["CifarResNet"]


def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes:  # a 1x1 projection on the shortcut when the shape changes
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))
    layers = [BasicBlock(inplanes, planes, stride=stride, downsample=downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


@CLASSIFIERS.register("cifar_resnet")
class CifarResNet(Classifier):
    """A CIFAR-style ResNet (He et al. 2016, sec. 4.2) sized by ``depth`` and ``width``.

    Args:
        num_classes: Number of classes.
        in_chans: Image channels.
        image_size: Side of the square input images.
        depth: Layers with weights, ``6 n + 2`` (8, 14, 20, ...): ``n`` blocks per stage.
        width: Channels of the first stage (the others have 2x and 4x).

    Raises:
        ConfigError: a size that is not a positive int, or ``depth`` not of the form ``6 n + 2``.
    """

    def __init__(
        self, num_classes: int = 10, in_chans: int = 1, image_size: int = 8, depth: int = 8, width: int = 16
    ) -> None:
        super().__init__()
        for name, value, lo in (("num_classes", num_classes, 2), ("in_chans", in_chans, 1),
                                ("image_size", image_size, 1), ("width", width, 1), ("depth", depth, 8)):  # fmt: skip
            check_positive_int(name, value, lo)
        if (depth - 2) % 6:
            raise ConfigError(f"depth must be 6 n + 2 (8, 14, 20, ...); got {depth}")
        self.num_classes, self.in_chans, self.image_size = num_classes, in_chans, image_size
        blocks = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        self.layer1 = _stage(width, width, blocks, 1)
        self.layer2 = _stage(width, 2 * width, blocks, 2)
        self.layer3 = _stage(2 * width, 4 * width, blocks, 2)
        self.head = nn.Linear(4 * width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: Tensor) -> Tensor:
        """The first stage's output ``(batch, width, image_size, image_size)``."""
        return self.layer1(self.stem(self.check_input(x)))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(batch, num_classes)``.

        Raises:
            ShapeError: ``x`` is not ``(batch, in_chans, image_size, image_size)``.
            DTypeError: ``x`` is not floating.
        """
        return self.logits_and_features(x)[0]

    def logits_and_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits and the first stage's output from one pass."""
        features = self.features(x)
        h = self.layer3(self.layer2(features))
        return self.head(h.mean(dim=(-2, -1))), features
