"""The two pipelines of the clustering methods (DeepCluster, ODC): the augmented training view and
the deterministic view their features are clustered from.

mmselfsup 0.x ``configs/selfsup/_base_/datasets/imagenet_deepcluster.py`` and ``imagenet_odc.py``
(the same pipelines; torchvision transforms with their defaults):

- train: RandomResizedCrop(224) (bilinear, scale 0.08..1) -> RandomHorizontalFlip ->
  RandomRotation(2 degrees) -> ColorJitter(0.4, 0.4, 1.0, 0.5) -> RandomGrayscale(0.2) ->
  ToTensor -> Normalize(ImageNet);
- extract: Resize(256) -> CenterCrop(224) -> ToTensor -> Normalize(ImageNet); ``extract_grey``
  (not in the reference, off by default) adds Grayscale(3 channels) before ToTensor, for a run
  that clusters shapes without the Sobel layer while its training views are grey.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torchvision import transforms

from sslzoo.config import section_with_defaults
from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD

# views keys -> the reference's values
CLUSTER_VIEW_KEYS: dict[str, Any] = {
    "image_size": 224,  # RandomResizedCrop(size=224)
    "scale": [0.08, 1.0],  # torchvision's default
    "flip_p": 0.5,  # RandomHorizontalFlip()
    "rotation": 2.0,  # RandomRotation(degrees=2)
    "color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 1.0, "hue": 0.5},
    "grayscale_p": 0.2,  # RandomGrayscale(p=0.2)
    "extract_resize": 256,  # extract_pipeline Resize(size=256)
    "extract_crop": 224,  # extract_pipeline CenterCrop(size=224)
    "extract_grey": False,  # not in the reference
}


def _views(views: Mapping[str, Any] | None) -> dict[str, Any]:
    views = section_with_defaults(views, CLUSTER_VIEW_KEYS, "views")
    views["color_jitter"] = section_with_defaults(
        views["color_jitter"], CLUSTER_VIEW_KEYS["color_jitter"], "views.color_jitter"
    )
    return views


def train_view(views: Mapping[str, Any] | None) -> transforms.Compose:
    """PIL image -> the augmented training view ``[3, S, S]`` (S = ``image_size``)."""
    views = _views(views)
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(int(views["image_size"]), scale=tuple(views["scale"])),
            transforms.RandomHorizontalFlip(float(views["flip_p"])),
            transforms.RandomRotation(float(views["rotation"])),
            transforms.ColorJitter(**views["color_jitter"]),
            transforms.RandomGrayscale(float(views["grayscale_p"])),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def extract_view(views: Mapping[str, Any] | None) -> transforms.Compose:
    """PIL image -> the centre crop ``[3, C, C]`` (C = ``extract_crop``) features are clustered from."""
    views = _views(views)
    grey = [transforms.Grayscale(num_output_channels=3)] if views["extract_grey"] else []
    return transforms.Compose(
        [
            transforms.Resize(int(views["extract_resize"])),
            transforms.CenterCrop(int(views["extract_crop"])),
            *grey,
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
