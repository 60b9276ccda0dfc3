"""Shorter-side resize: the reference's output size on edge cases, the cv2 backend pixel for pixel
equal to cv2.resize INTER_LINEAR, the pillow backend equal to torchvision's Resize."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from torchvision import transforms

from sslzoo.data.resize import ShortEdgeResize, short_edge_size

cv2 = pytest.importorskip(
    "cv2", reason="OpenCV (opencv-contrib-python-headless, a dependency in pyproject.toml) is not installed"
)

# (width, height): landscape, portrait, square, odd sizes, and ratios whose size * long / short
# lies just above or below an integer
SIZES = [(500, 333), (333, 500), (256, 256), (97, 97), (57, 41), (41, 57), (300, 299), (299, 300), (3, 1000)]


def reference_size(width: int, height: int, scale: int) -> tuple[int, int]:
    """mmcls 1.x ResizeEdge(scale, edge='short').transform, written out: (width, height)."""
    if width < height:
        return scale, int(scale * height / width)
    return int(scale * width / height), scale


def image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize("scale", [256, 37, 73])
def test_output_size_is_resize_edges(width: int, height: int, scale: int) -> None:
    assert short_edge_size(width, height, scale) == reference_size(width, height, scale)
    # torchvision's Resize(int) rounds alike, so both backends give the same size
    assert transforms.Resize(scale)(image(width, height)).size == reference_size(width, height, scale)


def test_output_size_edge_cases() -> None:
    # 256 * 500 / 333 = 384.38..., truncated; a square keeps both sides at the scale
    assert short_edge_size(500, 333, 256) == (384, 256)
    assert short_edge_size(333, 500, 256) == (256, 384)
    assert short_edge_size(256, 256, 256) == (256, 256)


@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize("scale", [256, 37])
def test_cv2_backend_equals_cv2_resize_inter_linear(width: int, height: int, scale: int) -> None:
    pil = image(width, height, seed=width * height)
    ours = np.asarray(ShortEdgeResize(scale, "cv2")(pil))
    pixels = np.asarray(pil)
    theirs = cv2.resize(pixels, reference_size(width, height, scale), interpolation=cv2.INTER_LINEAR)
    assert ours.dtype == np.uint8 and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize(("width", "height"), [(500, 333), (57, 41)])
def test_pillow_backend_is_torchvision_resize(width: int, height: int) -> None:
    pil = image(width, height)
    ours = np.asarray(ShortEdgeResize(256, "pillow")(pil))
    assert np.array_equal(ours, np.asarray(transforms.Resize(256)(pil)))
    # the backends differ: PIL's bilinear is antialiased when it shrinks, cv2's is not
    assert not np.array_equal(ours, np.asarray(ShortEdgeResize(256, "cv2")(pil)))


def test_an_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="resize backend 'skimage' is not one of"):
        ShortEdgeResize(256, "skimage")
