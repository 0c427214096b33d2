"""ResNet-18/50 backbones with torchvision's module names, construction order and initialisation.

HMR (SPIN's ``models/hmr.py``) keeps a ResNet's stem and stages at its top level under torchvision's names
(``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0`` …), so SPIN checkpoints and torchvision's
ImageNet weights load by name. Building them here instead of through ``torchvision.models`` gives the same
modules without importing torchvision, which pulls in ``torch._dynamo`` and triton: about 1.6 s of CPU in every
process that builds a regressor (each prediction, training and plotting job).

The random initialisation is torchvision's, draw for draw: modules are created in the same order (their default
``reset_parameters`` draws included), the ImageNet classifier ``fc`` is created and initialised although HMR drops
it, then every convolution is re-drawn with ``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` and every
BatchNorm set to weight 1, bias 0, in module order. A run seeded as before therefore starts from the same weights
and leaves the random stream where torchvision left it (``tests/test_model_losses.py`` compares the two).
Bottleneck blocks stride in their 3×3 convolution (torchvision's "ResNet v1.5", which SPIN's weights use).
"""

from __future__ import annotations

from torch import Tensor, nn

#: Blocks per stage of each architecture.
STAGE_BLOCKS: dict[str, tuple[int, int, int, int]] = {"resnet18": (2, 2, 2, 2), "resnet50": (3, 4, 6, 3)}
#: Width of the first stage; each later stage doubles it.
BASE_WIDTH = 64
#: Classes of the ImageNet classifier that torchvision creates (and HMR drops).
IMAGENET_CLASSES = 1000


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with an identity (or 1×1 projection) shortcut; ResNet-18/34."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided), 1×1 expand ×4, with a shortcut; ResNet-50 and deeper."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet(nn.Module):
    """torchvision's ``ResNet`` (groups 1, no dilation, BatchNorm), with the classifier ``fc``.

    Args:
        arch: ``resnet18`` or ``resnet50`` (:data:`STAGE_BLOCKS`).
    """

    def __init__(self, arch: str) -> None:
        super().__init__()
        if arch not in STAGE_BLOCKS:
            raise ValueError(f"unknown ResNet {arch!r}; allowed values: {', '.join(STAGE_BLOCKS)}")
        block: type[BasicBlock] | type[Bottleneck] = BasicBlock if arch == "resnet18" else Bottleneck
        self.inplanes = BASE_WIDTH
        self.conv1 = nn.Conv2d(3, BASE_WIDTH, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(BASE_WIDTH)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for k, blocks in enumerate(STAGE_BLOCKS[arch]):
            self.add_module(f"layer{k + 1}", self._stage(block, BASE_WIDTH * 2**k, blocks, stride=1 if k == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(BASE_WIDTH * 8 * block.expansion, IMAGENET_CLASSES)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _stage(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        out = planes * block.expansion
        if stride != 1 or self.inplanes != out:  # the projection is made before the block (torchvision's order)
            downsample = nn.Sequential(_conv1x1(self.inplanes, out, stride), nn.BatchNorm2d(out))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = out
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))
