"""Resize of the shorter image side, with the pixels of either MMSelfSup generation's backend.

The feature pipelines start with "shorter side to ``size``" (kNN: Resize 256 / CenterCrop 224).
The two MMSelfSup generations do it with different libraries, which give different pixels:

- ``"pillow"``: torchvision ``transforms.Resize(size)`` on the PIL image, PIL's bilinear filter
  whose support widens with the downscale factor (antialiased); mmselfsup 0.x
  ``configs/benchmarks/classification/knn_imagenet.py`` ``dict(type='Resize', size=256)``.
- ``"cv2"``: ``cv2.resize(..., interpolation=cv2.INTER_LINEAR)`` of the uint8 array (two-tap
  bilinear, no antialiasing); mmselfsup 1.x (main) ``configs/benchmarks/classification/knn_imagenet.py``
  ``dict(type='mmcls.ResizeEdge', scale=256, edge='short')``, whose ``backend='cv2'`` and
  ``interpolation='bilinear'`` defaults call mmcv ``imresize`` -> ``cv2.resize`` with
  ``cv2.INTER_LINEAR`` (mmcls 1.x ``mmcls/datasets/transforms/processing.py`` ``ResizeEdge``,
  mmcv 2.x ``mmcv/image/geometric.py`` ``imresize`` and ``cv2_interp_codes``).

Both round the output size alike (:func:`short_edge_size`), and the CenterCrop that follows
takes the same offsets in torchvision and mmcv (``int(round((side - crop) / 2))``), so the
backend is the only difference between the two pipelines.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image
from torchvision import transforms


def short_edge_size(width: int, height: int, size: int) -> tuple[int, int]:
    """Output ``(width, height)`` with the shorter side ``size`` and the longer side truncated.

    mmcls 1.x ``ResizeEdge(edge='short')``: a portrait image (``width < height``) gets width
    ``size`` and height ``int(size * height / width)``, any other (a square included) height
    ``size`` and width ``int(size * width / height)``; torchvision's ``Resize(int)`` computes
    the same numbers (``_compute_resized_output_size``).
    """
    if width < height:
        return size, int(size * height / width)
    return int(size * width / height), size


def _resize_pillow(image: Image.Image, size: int) -> Image.Image:
    return transforms.Resize(size)(image)


def _resize_cv2(image: Image.Image, size: int) -> Image.Image:
    try:
        import cv2
    except ImportError as error:
        raise ImportError(
            "resize_backend cv2 needs OpenCV: pip install -c constraints.txt opencv-contrib-python-headless"
        ) from error
    pixels = np.asarray(image)
    resized = cv2.resize(
        pixels, short_edge_size(image.width, image.height, size), interpolation=cv2.INTER_LINEAR
    )
    return Image.fromarray(resized)


# resize_backend of the features config -> PIL image, shorter side -> resized PIL image
RESIZERS: dict[str, Callable[[Image.Image, int], Image.Image]] = {
    "pillow": _resize_pillow,
    "cv2": _resize_cv2,
}


class ShortEdgeResize:
    """PIL image -> PIL image whose shorter side is ``size``, resized by ``backend`` (:data:`RESIZERS`)."""

    def __init__(self, size: int, backend: str) -> None:
        if backend not in RESIZERS:
            raise ValueError(f"resize backend {backend!r} is not one of {sorted(RESIZERS)}")
        self.size = size
        self.backend = backend

    def __call__(self, image: Image.Image) -> Image.Image:
        return RESIZERS[self.backend](image, self.size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, backend={self.backend!r})"
