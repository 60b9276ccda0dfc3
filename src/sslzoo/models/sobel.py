"""The fixed Sobel input layer of DeepCluster (and, optionally, ODC) and the 2-channel stem after it.

Caron et al., "Deep Clustering for Unsupervised Learning of Visual Features", ECCV 2018, Sec. 4:
the network sees image gradients instead of colours. mmselfsup 0.x
``mmselfsup/models/utils/sobel.py``: a 1x1 conv averaging the three (normalised) channels
(weights 1/3, no bias), then a 3x3 conv with the horizontal and vertical Sobel kernels (padding
1, no bias), both frozen; the backbone then takes 2 input channels
(``deepcluster-sobel_resnet50_8xb64-steplr-200e_in1k.py``: ``backbone=dict(in_channels=2)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslzoo.models.backbone import ResNetBackbone

# [2, 1, 3, 3]: d/dx (columns left minus right) and d/dy (rows top minus bottom), as the reference
SOBEL_KERNELS = torch.tensor(
    [
        [[[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]],
        [[[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]]],
    ]
)


class Sobel(nn.Module):
    """``[B, 3, H, W]`` -> ``[B, 2, H, W]``: the channel mean, then the two Sobel responses
    (cross-correlation, zero padding 1). The weights are buffers: in the checkpoint, never trained."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("grey", torch.full((1, 3, 1, 1), 1.0 / 3.0))
        self.register_buffer("kernels", SOBEL_KERNELS.clone())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        grey = F.conv2d(images, self.grey.to(images.dtype))
        return F.conv2d(grey, self.kernels.to(images.dtype), padding=1)


def two_channel_stem(backbone: ResNetBackbone) -> None:
    """Replace ``backbone.conv1`` by a 7x7 stride-2 conv of 2 input channels (the Sobel output),
    drawn with the backbone's He init (``backbone.conv_init``, as the mmcls ResNet of the
    reference draws its ``in_channels=2`` stem)."""
    old = backbone.conv1
    conv = nn.Conv2d(2, old.out_channels, old.kernel_size, stride=old.stride, padding=old.padding, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode=backbone.conv_init, nonlinearity="relu")
    backbone.conv1 = conv.to(old.weight.device)
