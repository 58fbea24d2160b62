"""The architectures, written here (there is no torchvision for the pinned torch), and their
registry: a new architecture is one function and one entry in `ARCHITECTURES`.

Every model takes float32 NCHW images in [0, 1] and returns logits (n, classes); the
normalisation is inside, so saliency is computed with respect to the pixels themselves.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class Normalize(nn.Module):
    """[0, 1] pixels -> roughly zero mean, unit variance (fixed constants: BatchNorm does the
    rest, and the model stays independent of the dataset it was trained on)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - 0.5) / 0.25


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def simple_cnn(num_classes: int, width: int = 32, input_size: int = 64) -> nn.Module:
    """A plain stack of conv-BN-ReLU + max-pool stages, halving the image until it is about
    8 pixels wide, the width doubling up to 4x; then global average pooling and a linear head."""
    layers: list[nn.Module] = [Normalize()]
    cin, cout, size = 3, width, input_size
    while True:
        layers += [conv_bn(cin, cout)]
        cin = cout
        if size <= 8:
            break
        layers += [nn.MaxPool2d(2)]
        size //= 2
        cout = min(2 * cout, 4 * width)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet-18's layout (four stages of two basic blocks, widths w, 2w, 4w, 8w; He et al.
    2016). Small images (under 128 px) get the CIFAR stem, a stride-1 3x3 convolution without
    max-pooling, so that a 32-px image is not reduced to 1 px; larger ones the ImageNet stem."""

    def __init__(self, num_classes: int, width: int = 64, input_size: int = 224,
                 blocks: tuple[int, ...] = (2, 2, 2, 2)):
        super().__init__()
        if input_size < 128:
            stem = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True)]
        else:
            stem = [nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        self.stem = nn.Sequential(Normalize(), *stem)
        stages, cin = [], width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            stages += [BasicBlock(cin if j == 0 else cout, cout, 2 if i and j == 0 else 1)
                       for j in range(n)]
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(cin, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for block in self.stages:  # each residual branch starts as the identity (Goyal et al.)
            nn.init.zeros_(block.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def resnet18(num_classes: int, width: int = 64, input_size: int = 224) -> nn.Module:
    return ResNet(num_classes, width, input_size)


# name -> constructor(num_classes, width, input_size). The names are also listed in
# cuelab.config.TrainSettings.model, which must not import torch (a test keeps the two equal).
ARCHITECTURES: dict[str, Callable[[int, int, int], nn.Module]] = {
    "simple_cnn": simple_cnn,
    "resnet18": resnet18,
}


def build_model(architecture: str, num_classes: int, width: int, input_size: int) -> nn.Module:
    from ..errors import CuelabError

    if architecture not in ARCHITECTURES:
        raise CuelabError(f"train.model: got {architecture!r}; one of "
                          + ", ".join(ARCHITECTURES))
    return ARCHITECTURES[architecture](num_classes, width, input_size)
