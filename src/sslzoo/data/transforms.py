"""Per-image augmentation pipelines of the pretraining methods (PIL image in, tensors out).

- BYOL's two asymmetric views (also Triplet's and ORL's global views): :func:`view_pipeline`,
  :class:`TwoViews`, :class:`RandomGaussianBlur`, the ``views`` keys :data:`BYOL_VIEW_KEYS`
  (configs/selfsup/_base_/datasets/imagenet_byol.py of MMSelfSup 0.x);
- Relative-Loc's 3x3 grid patches: :class:`RelativeLocPatches`, :func:`sample_patch_boxes`,
  :func:`crop_patches` (mmselfsup 0.x mmselfsup/datasets/relative_loc.py);
- ORL's RoI crops: :func:`aug_bbox`, :func:`roi_crop`, :func:`patch_pipeline` and the RoI
  ``views`` keys (:func:`split_views`; Jiahao000/ORL openselfsup/datasets/orl.py).

Every random draw is made in the same order and from the same generator as the reference
pipelines: torch's for the views and patches, Python's ``random`` for :func:`aug_bbox`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

import torch
from PIL import Image, ImageFilter
from torchvision import transforms
from torchvision.transforms import functional as TF

from sslzoo.config import section_with_defaults
from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD
from sslzoo.errors import SslzooError

Box = Sequence[float]

# views keys -> reference values (configs/selfsup/_base_/datasets/imagenet_byol.py); the
# two-element lists are (view 1, view 2).
BYOL_VIEW_KEYS: dict[str, Any] = {
    "image_size": 224,
    "scale": [0.08, 1.0],
    "interpolation": "bicubic",
    "flip_p": 0.5,
    "color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.1},
    "color_jitter_p": 0.8,
    "grayscale_p": 0.2,
    "blur_sigma": [0.1, 2.0],
    "blur_p": [1.0, 0.1],
    "solarize_threshold": 128,
    "solarize_p": [0.0, 0.2],
}
INTERPOLATIONS = {
    "bilinear": transforms.InterpolationMode.BILINEAR,
    "bicubic": transforms.InterpolationMode.BICUBIC,
}
# views keys ORL adds to BYOL_VIEW_KEYS (reference ORLDataset arguments and COCOORLJson.topk_knn_image)
ROI_VIEW_KEYS: dict[str, Any] = {
    "roi_size": 96,  # patch_size
    "roi_interpolation": "bilinear",  # interpolation=2 (PIL bilinear) of TF.resized_crop
    "knn_images": 10,  # topk_knn_image: the inter-RoI neighbour is one of the first knn_images
    "aug_bbox": {},
}
AUG_BBOX_KEYS: dict[str, Any] = {
    "shift": [-0.5, 0.5],  # centre shift, in units of the box's w and h
    "scale": [0.5, 2.0],  # area scale
    "ratio": [0.5, 2.0],  # aspect ratio w/h, log-uniform
    "min_iou": 0.5,  # iou_thr: IoU with the original box must exceed this (null: no check)
    "attempts": 200,  # attempt_num; after that the original box is returned
}
PATCH_GRID = 3  # Relative-Loc: patches per side of the grid


# --------------------------------------------------------------------------- BYOL views


class RandomGaussianBlur:
    """With probability ``p``, PIL Gaussian blur with radius (std) uniform in ``sigma``
    (mmselfsup 0.x mmselfsup/datasets/pipelines/transforms.py ``GaussianBlur``)."""

    def __init__(self, sigma: Sequence[float], p: float) -> None:
        self.sigma = (float(sigma[0]), float(sigma[1]))
        self.p = float(p)

    def __call__(self, img: Image.Image) -> Image.Image:
        if self.p <= 0 or torch.rand(()).item() >= self.p:
            return img
        lo, hi = self.sigma
        radius = lo + (hi - lo) * torch.rand(()).item()
        return img.filter(ImageFilter.GaussianBlur(radius=radius))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma={self.sigma}, p={self.p})"


def _pair(value: Any, key: str) -> tuple[Any, Any]:
    """A per-view setting: a two-element list (view 1, view 2) or one value for both."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise SslzooError(f"model config views.{key}: give one value or a list of two (view 1, view 2)")
        return value[0], value[1]
    return value, value


def view_pipeline(views: Mapping[str, Any], index: int) -> transforms.Compose:
    """The augmentation of view ``index`` (0 or 1) for the ``views`` config (keys of ``BYOL_VIEW_KEYS``).

    RandomResizedCrop(image_size, scale, interpolation) -> flip -> ColorJitter with probability ->
    RandomGrayscale -> Gaussian blur -> solarize -> ToTensor -> Normalize(ImageNet).
    """
    views = section_with_defaults(views, BYOL_VIEW_KEYS, "views")
    if views["interpolation"] not in INTERPOLATIONS:
        raise SslzooError(
            f"model config views.interpolation: {views['interpolation']!r} is not one of {sorted(INTERPOLATIONS)}"
        )
    jitter = section_with_defaults(
        views["color_jitter"], BYOL_VIEW_KEYS["color_jitter"], "views.color_jitter"
    )
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(
                int(views["image_size"]),
                scale=tuple(views["scale"]),
                interpolation=INTERPOLATIONS[views["interpolation"]],
            ),
            transforms.RandomHorizontalFlip(float(views["flip_p"])),
            transforms.RandomApply([transforms.ColorJitter(**jitter)], p=float(views["color_jitter_p"])),
            transforms.RandomGrayscale(float(views["grayscale_p"])),
            RandomGaussianBlur(views["blur_sigma"], _pair(views["blur_p"], "blur_p")[index]),
            transforms.RandomSolarize(
                float(views["solarize_threshold"]), p=float(_pair(views["solarize_p"], "solarize_p")[index])
            ),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


class TwoViews:
    """Per-image transform: PIL image -> ``(view1 [3, S, S], view2 [3, S, S])`` from two pipelines."""

    def __init__(
        self, first: Callable[[Image.Image], torch.Tensor], second: Callable[[Image.Image], torch.Tensor]
    ) -> None:
        self.first = first
        self.second = second

    def __call__(self, img: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        return self.first(img), self.second(img)


# --------------------------------------------------------------------------- Relative-Loc patches


def sample_patch_boxes(crop: int, patch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random patch boxes, one inside each cell of the 3x3 grid over a ``crop`` x ``crop`` image.

    The cell is ``crop // 3`` px; the patch is placed uniformly inside it (the reference's
    ``patch_jitter`` = cell - patch). mmselfsup 0.x mmselfsup/datasets/relative_loc.py
    ``image_to_patches``.

    Returns:
        int64 ``[9, 4]`` boxes ``(top, left, bottom, right)`` (bottom/right exclusive), grid
        cells in row-major order.
    """
    cell = crop // PATCH_GRID
    if not 0 < patch_size <= cell:
        raise ValueError(f"patch_size {patch_size} must be in 1..{cell} (the cell of a {crop} px crop)")
    jitter = torch.randint(0, cell - patch_size + 1, (PATCH_GRID * PATCH_GRID, 2), generator=generator)
    index = torch.arange(PATCH_GRID * PATCH_GRID)
    rows, cols = torch.div(index, PATCH_GRID, rounding_mode="floor"), index % PATCH_GRID
    top = rows * cell + jitter[:, 0]
    left = cols * cell + jitter[:, 1]
    return torch.stack([top, left, top + patch_size, left + patch_size], dim=1)


def crop_patches(image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Cut the boxes of :func:`sample_patch_boxes` out of ``image`` ``[3, H, W]`` -> ``[9, 3, P, P]``."""
    return torch.stack([image[:, t:b, le:r] for t, le, b, r in boxes.tolist()])


class RelativeLocPatches:
    """Per-image transform: PIL RGB image -> the 9 normalised grid patches ``[9, 3, P, P]``.

    Resize(``resize``, shorter side, bilinear) -> RandomCrop(``crop``) -> RandomGrayscale
    (``grayscale_p``) -> ToTensor -> Normalize(ImageNet) -> 3x3 grid patches of ``patch_size``
    (mmselfsup 0.x configs/selfsup/_base_/datasets/imagenet_relative-loc.py).
    """

    def __init__(
        self, resize: int = 292, crop: int = 255, grayscale_p: float = 0.66, patch_size: int = 64
    ) -> None:
        if not 0 < patch_size <= crop // PATCH_GRID:
            raise SslzooError(
                f"model config views.patch_size = {patch_size}: must be in 1..{crop // PATCH_GRID} "
                f"(views.crop {crop} // 3); lower patch_size or raise crop"
            )
        if crop > resize:
            raise SslzooError(
                f"model config views.crop = {crop} exceeds views.resize = {resize}; make crop <= resize"
            )
        self.crop = crop
        self.patch_size = patch_size
        self.prepare = transforms.Compose(
            [
                transforms.Resize(resize),
                transforms.RandomCrop(crop),
                transforms.RandomGrayscale(p=grayscale_p),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def __call__(self, img: Image.Image) -> torch.Tensor:
        image = self.prepare(img)
        return crop_patches(image, sample_patch_boxes(self.crop, self.patch_size))


# --------------------------------------------------------------------------- ORL RoI crops


def box_iou(a: Box, b: Box) -> float:
    """IoU of two ``[x, y, w, h]`` boxes (continuous coordinates, as the reference's ``get_iou``)."""
    iw = max(min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def aug_bbox(
    box: Box,
    image_size: tuple[int, int],
    shift: Sequence[float] = (-0.5, 0.5),
    scale: Sequence[float] = (0.5, 2.0),
    ratio: Sequence[float] = (0.5, 2.0),
    min_iou: float | None = 0.5,
    attempts: int = 200,
    rng: random.Random | ModuleType = random,
) -> list[float]:
    """A random box near ``box``: the second intra-RoI crop (Jiahao000/ORL datasets/orl.py ``aug_bbox``).

    Each attempt draws an area ``U(scale) * w h``, an aspect ratio ``exp(U(log ratio))``, sizes
    ``round(sqrt(area ratio))``, ``round(sqrt(area / ratio))`` and a centre shifted by
    ``U(shift) * w``, ``U(shift) * h``; it is kept if it lies inside the image and its IoU with
    ``box`` exceeds ``min_iou``. After ``attempts`` misses the original box is returned.

    Args:
        box: ``[x, y, w, h]`` in pixels.
        image_size: ``(width, height)`` (PIL's ``img.size``).
        rng: ``random`` or a ``random.Random``; four ``uniform`` draws per attempt.

    Returns:
        ``[x, y, w, h]`` with integer values, or ``list(box)``.
    """
    img_w, img_h = image_size
    x, y, w, h = (float(v) for v in box[:4])
    cx, cy = x + 0.5 * w, y + 0.5 * h
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(int(attempts)):
        area = rng.uniform(scale[0], scale[1]) * w * h
        aspect = math.exp(rng.uniform(*log_ratio))
        aug_w = int(round(math.sqrt(area * aspect)))
        aug_h = int(round(math.sqrt(area / aspect)))
        aug_cx = cx + rng.uniform(shift[0], shift[1]) * w
        aug_cy = cy + rng.uniform(shift[0], shift[1]) * h
        aug_x, aug_y = int(round(aug_cx - 0.5 * aug_w)), int(round(aug_cy - 0.5 * aug_h))
        if aug_x >= 0 and aug_y >= 0 and aug_x + aug_w <= img_w and aug_y + aug_h <= img_h:
            candidate = [aug_x, aug_y, aug_w, aug_h]
            if min_iou is None or box_iou(candidate, (x, y, w, h)) > min_iou:
                return [float(v) for v in candidate]
    return [float(v) for v in box[:4]]


def roi_crop(img: Image.Image, box: Box, size: int, interpolation: str = "bilinear") -> Image.Image:
    """``box`` ``[x, y, w, h]`` of ``img`` resized to ``size x size`` (``TF.resized_crop``, as the
    reference; PIL rounds the crop corners)."""
    x, y, w, h = box[:4]
    return TF.resized_crop(img, y, x, h, w, [size, size], interpolation=INTERPOLATIONS[interpolation])


def split_views(views: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """ORL's ``views`` -> (BYOL's keys for the global and patch pipelines, ORL's RoI keys with defaults).

    A key that neither knows raises :class:`SslzooError` naming both key sets.
    """
    views = dict(views or {})
    unknown = sorted(set(views) - set(BYOL_VIEW_KEYS) - set(ROI_VIEW_KEYS))
    if unknown:
        raise SslzooError(
            f"model config views: unknown key(s) {unknown}; allowed: {sorted(set(BYOL_VIEW_KEYS) | set(ROI_VIEW_KEYS))}"
        )
    byol = {k: v for k, v in views.items() if k in BYOL_VIEW_KEYS}
    roi = section_with_defaults(
        {k: v for k, v in views.items() if k in ROI_VIEW_KEYS}, ROI_VIEW_KEYS, "views"
    )
    roi["aug_bbox"] = section_with_defaults(roi["aug_bbox"], AUG_BBOX_KEYS, "views.aug_bbox")
    if roi["roi_interpolation"] not in INTERPOLATIONS:
        raise SslzooError(
            f"model config views.roi_interpolation: {roi['roi_interpolation']!r} is not one of {sorted(INTERPOLATIONS)}"
        )
    if int(roi["roi_size"]) < 1 or int(roi["knn_images"]) < 1:
        raise SslzooError("model config views.roi_size and views.knn_images must be at least 1")
    return byol, roi


def patch_pipeline(views: Mapping[str, Any], index: int) -> transforms.Compose:
    """View ``index``'s pipeline of BYOL without its RandomResizedCrop: flip -> jitter ->
    grayscale -> blur -> solarize -> ToTensor -> Normalize (reference ``train_patch_pipeline``)."""
    steps = view_pipeline(views, index).transforms
    if not isinstance(steps[0], transforms.RandomResizedCrop):
        raise RuntimeError("sslzoo.data.transforms.view_pipeline no longer starts with RandomResizedCrop")
    return transforms.Compose(steps[1:])
