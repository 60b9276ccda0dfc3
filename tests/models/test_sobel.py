"""The Sobel input layer against a loop over pixels, and the 2-channel stem behind it."""

from __future__ import annotations

import math

import pytest
import torch

from sslzoo.models.backbone import ResNetBackbone
from sslzoo.models.sobel import Sobel, two_channel_stem

KX = [[1, 0, -1], [2, 0, -2], [1, 0, -1]]
KY = [[1, 2, 1], [0, 0, 0], [-1, -2, -1]]


def sobel_by_hand(image: torch.Tensor) -> torch.Tensor:
    """Channel mean, then each kernel slid over the zero-padded grey image (cross-correlation)."""
    grey = image.double().mean(dim=0)
    height, width = grey.shape
    out = torch.zeros(2, height, width, dtype=torch.float64)
    for k, kernel in enumerate((KX, KY)):
        for i in range(height):
            for j in range(width):
                total = 0.0
                for u in range(3):
                    for v in range(3):
                        y, x = i + u - 1, j + v - 1
                        if 0 <= y < height and 0 <= x < width:
                            total += kernel[u][v] * float(grey[y, x])
                out[k, i, j] = total
    return out


def test_sobel_is_the_grey_image_gradient_by_hand() -> None:
    images = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(0))
    out = Sobel()(images)
    assert out.shape == (2, 2, 5, 6)
    for b in range(2):
        torch.testing.assert_close(out[b].double(), sobel_by_hand(images[b]), rtol=1e-5, atol=1e-5)


def test_sobel_has_no_trainable_weights_but_is_in_the_checkpoint() -> None:
    layer = Sobel()
    assert list(layer.parameters()) == []
    assert set(layer.state_dict()) == {"grey", "kernels"}


@pytest.mark.parametrize("mode", ["fan_out", "fan_in"])
def test_two_channel_stem_keeps_the_geometry_and_the_init_mode(mode: str) -> None:
    torch.manual_seed(0)
    backbone = ResNetBackbone(18, conv_init=mode)
    two_channel_stem(backbone)
    conv = backbone.conv1
    assert conv.weight.shape == (64, 2, 7, 7) and conv.bias is None
    assert (conv.stride, conv.padding) == ((2, 2), (3, 3))
    fan = 2 * 49 if mode == "fan_in" else 64 * 49
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / fan), rel=0.05)
    assert backbone(torch.randn(2, 2, 32, 32))[0].shape == (2, 512, 1, 1)
