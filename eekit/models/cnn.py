"""Early-exit CNNs for the CNN track: a BranchyNet-style LeNet (MNIST) and a ResNet-9-style net (CIFAR-10).

Builders in the torchvision style: ``branchy_lenet()``, ``resnet_ee()``. Inputs are float images in ``[0, 1]``;
each model normalizes its own input, so data never needs a separate transform at test time.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from .exits import EarlyExitNet, ExitHeads, Normalize, SharedExitHead, SharedPlusFinal, pooled_head

__all__ = ["Normalize", "branchy_lenet", "resnet_ee", "MNIST_MEAN_STD", "CIFAR10_MEAN_STD"]

MNIST_MEAN_STD = ((0.1307,), (0.3081,))
CIFAR10_MEAN_STD = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def branchy_lenet(num_classes: int = 10, shared_head: bool = False) -> EarlyExitNet:
    """B-LeNet (BranchyNet, Teerapittayanon et al. 2016) for 28x28 grayscale digits, with 3 exits.

    Exit 1 sits after the first conv block (a small conv branch, as in the paper), exit 2 after the second,
    and exit 3 is the ordinary LeNet classifier. With ``shared_head=True`` the two early exits are one FreeML
    gNet (:class:`SharedExitHead`) instead of two branches: far fewer head weights, for batteryless devices.
    """
    stages = [
        nn.Sequential(Normalize(*MNIST_MEAN_STD), nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2)),
        nn.Sequential(nn.Flatten(1), nn.Linear(32 * 7 * 7, 128), nn.ReLU(inplace=True)),
    ]
    if shared_head:
        exits = SharedPlusFinal(SharedExitHead([16, 32], num_classes), final=nn.Linear(128, num_classes))
        return EarlyExitNet(stages, exits, exit_names=["conv1 (shared)", "conv2 (shared)", "fc (final)"])
    heads = [
        nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Flatten(1),
                      nn.Linear(8 * 7 * 7, num_classes)),
        nn.Sequential(nn.MaxPool2d(2), nn.Flatten(1), nn.Linear(32 * 3 * 3, num_classes)),
        nn.Linear(128, num_classes),
    ]
    return EarlyExitNet(stages, ExitHeads(heads), exit_names=["conv1", "conv2", "fc (final)"])


def _conv_bn(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """``x + f(x)`` with two conv-bn-relu blocks (ResNet-9's residual unit)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(channels, channels), _conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, x + self.body(x))


def resnet_ee(num_classes: int = 10, width: int = 24) -> EarlyExitNet:
    """A ResNet-9-style CNN for 32x32 colour images (Page's DAWNBench net), cut into 5 stages with an exit after
    each, spread over depth as in Shallow-Deep Networks. ``width`` is the first conv's channel count; the stages
    have ``width x (2, 2, 4, 8, 8)`` channels.

    Two choices make the early exits pay off. The first stage pools *before* it widens, so exit 1 costs about 7 %
    of the model instead of 21 % (ResNet-9 widens at full resolution); each later stage costs about 23 %.
    Early heads max-pool to 4x4 and use one linear layer, as Shallow-Deep Networks' internal classifiers do.
    """
    w = width
    stages = [
        nn.Sequential(Normalize(*CIFAR10_MEAN_STD), _conv_bn(3, w, pool=True), _conv_bn(w, 2 * w)),  # 16x16
        Residual(2 * w),                                                                             # 16x16
        _conv_bn(2 * w, 4 * w, pool=True),                                                           # 8x8
        _conv_bn(4 * w, 8 * w, pool=True),                                                           # 4x4
        Residual(8 * w),                                                                             # 4x4
    ]
    heads = [pooled_head(c, num_classes, pool_size=4, pool="max") for c in (2 * w, 2 * w, 4 * w, 8 * w)]
    heads.append(pooled_head(8 * w, num_classes, pool="max"))
    return EarlyExitNet(stages, ExitHeads(heads), exit_names=["block1", "res1", "block2", "block3", "res2 (final)"])
