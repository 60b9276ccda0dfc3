"""One augmented view per image: the pipeline of NPID and of the supervised baseline.

RandomResizedCrop(``image_size``, ``scale``, bilinear) -> RandomGrayscale(``grayscale_p``) ->
ColorJitter with probability ``color_jitter_p`` -> RandomHorizontalFlip(``flip_p``) -> ToTensor
-> Normalize(ImageNet), the torchvision transforms in the order of mmselfsup 0.x
configs/selfsup/_base_/datasets/imagenet_npid.py (grey before jitter). The classification recipe
(mmcls configs/_base_/datasets/imagenet_bs32.py) is the same with no grey and no jitter.

Each method states its reference values of :data:`SINGLE_VIEW_KEYS` (the keys a config's
``views`` may set) and passes them as ``defaults`` to :func:`single_view_pipeline`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torchvision import transforms

from sslzoo.config import section_with_defaults
from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD
from sslzoo.errors import SslzooError

#: the ``views`` keys of a single-view method (values: what each method's reference sets)
SINGLE_VIEW_KEYS: tuple[str, ...] = (
    "image_size",
    "scale",
    "grayscale_p",
    "color_jitter",
    "color_jitter_p",
    "flip_p",
)
JITTER_KEYS: tuple[str, ...] = ("brightness", "contrast", "saturation", "hue")


def single_view_pipeline(views: Mapping[str, Any] | None, defaults: Mapping[str, Any]) -> transforms.Compose:
    """The transform ``PIL image -> [3, image_size, image_size]`` of ``views`` over ``defaults``.

    Args:
        views: the model config's ``views`` (keys of :data:`SINGLE_VIEW_KEYS`).
        defaults: the method's reference value of every key of :data:`SINGLE_VIEW_KEYS`.

    Raises:
        SslzooError: an unknown key, a crop size below 1, a scale outside (0, 1] or a
            probability outside [0, 1], naming the key.
    """
    if set(defaults) != set(SINGLE_VIEW_KEYS):
        raise ValueError(f"single-view defaults must give exactly {list(SINGLE_VIEW_KEYS)}")
    cfg = section_with_defaults(views, defaults, "views")
    jitter = section_with_defaults(
        cfg["color_jitter"], {key: 0.0 for key in JITTER_KEYS}, "views.color_jitter"
    )
    size, scale = cfg["image_size"], cfg["scale"]
    if not isinstance(size, int) or size < 1:
        raise SslzooError(f"model config views.image_size: expected the crop size in pixels, got {size!r}")
    if not (isinstance(scale, list | tuple) and len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
        raise SslzooError(
            f"model config views.scale: expected [min, max] area fractions in (0, 1], got {scale!r}"
        )
    for key in ("grayscale_p", "color_jitter_p", "flip_p"):
        if not 0.0 <= float(cfg[key]) <= 1.0:
            raise SslzooError(f"model config views.{key}: {cfg[key]} is not a probability in [0, 1]")
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(size, scale=(float(scale[0]), float(scale[1]))),
            transforms.RandomGrayscale(float(cfg["grayscale_p"])),
            transforms.RandomApply([transforms.ColorJitter(**jitter)], p=float(cfg["color_jitter_p"])),
            transforms.RandomHorizontalFlip(float(cfg["flip_p"])),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
