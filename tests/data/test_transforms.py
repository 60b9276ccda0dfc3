"""The augmentation pipelines: BYOL's blur, Relative-Loc's grid patches, ORL's RoI boxes and patch pipelines."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD
from sslzoo.data.transforms import (
    RandomGaussianBlur,
    RelativeLocPatches,
    aug_bbox,
    box_iou,
    crop_patches,
    patch_pipeline,
    sample_patch_boxes,
)
from tests.data.orl_files import PLAIN_VIEWS


def square_image(size: int = 32) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def normalised(img: Image.Image) -> torch.Tensor:
    return TF.normalize(TF.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD)


# --------------------------------------------------------------------------- BYOL views


def test_gaussian_blur_probability() -> None:
    torch.manual_seed(0)
    img = square_image()
    blur = RandomGaussianBlur((1.0, 1.0), p=0.25)
    blurred = sum(not np.array_equal(np.asarray(blur(img)), np.asarray(img)) for _ in range(400))
    assert 60 < blurred < 140


# --------------------------------------------------------------------------- Relative-Loc patches


@pytest.mark.parametrize(("crop", "patch"), [(255, 64), (64, 16), (30, 10)])
def test_every_patch_lies_inside_its_cell(crop: int, patch: int) -> None:
    cell = crop // 3
    generator = torch.Generator().manual_seed(0)
    offsets = []
    for _ in range(300):
        boxes = sample_patch_boxes(crop, patch, generator)
        assert boxes.shape == (9, 4)
        for index, (top, left, bottom, right) in enumerate(boxes.tolist()):
            row, col = divmod(index, 3)
            assert bottom - top == patch and right - left == patch
            assert row * cell <= top and bottom <= (row + 1) * cell
            assert col * cell <= left and right <= (col + 1) * cell
            offsets += [top - row * cell, left - col * cell]
    # the jitter spans the whole cell: both extreme placements occur
    assert min(offsets) == 0 and max(offsets) == cell - patch


def test_crop_patches_cuts_the_boxes() -> None:
    rows = torch.arange(30.0).view(30, 1).expand(30, 30)
    cols = torch.arange(30.0).view(1, 30).expand(30, 30)
    image = torch.stack([rows, cols, rows * 100 + cols])
    boxes = sample_patch_boxes(30, 7, torch.Generator().manual_seed(3))
    patches = crop_patches(image, boxes)
    assert patches.shape == (9, 3, 7, 7)
    for patch, (top, left, _, _) in zip(patches, boxes.tolist(), strict=True):
        assert torch.equal(patch[0, :, 0], torch.arange(top, top + 7, dtype=torch.float32))
        assert torch.equal(patch[1, 0, :], torch.arange(left, left + 7, dtype=torch.float32))


def test_views_normalise_each_patch_with_imagenet_statistics() -> None:
    transform = RelativeLocPatches(resize=73, crop=64, grayscale_p=0.66, patch_size=16)
    grey = Image.new("RGB", (90, 80), (128, 128, 128))  # grayscale leaves it unchanged
    patches = transform(grey)
    assert patches.shape == (9, 3, 16, 16)
    for channel in range(3):
        expected = (128 / 255 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        assert torch.allclose(patches[:, channel], torch.full((9, 16, 16), expected), atol=1e-5)


# --------------------------------------------------------------------------- ORL boxes and patches


def pixel_iou(a: list[float], b: list[float], size: int = 300) -> float:
    """IoU of two integer [x, y, w, h] boxes by counting pixels."""
    masks = []
    for x, y, w, h in (a, b):
        mask = np.zeros((size, size), dtype=bool)
        mask[int(y) : int(y + h), int(x) : int(x + w)] = True
        masks.append(mask)
    return float((masks[0] & masks[1]).sum() / (masks[0] | masks[1]).sum())


def test_box_iou_matches_pixel_counting() -> None:
    cases = [
        ([0, 0, 10, 10], [5, 5, 10, 10]),
        ([3, 4, 20, 7], [3, 4, 20, 7]),
        ([0, 0, 10, 10], [10, 0, 10, 10]),
        ([2, 8, 30, 12], [10, 0, 5, 40]),
    ]
    for a, b in cases:
        assert box_iou(a, b) == pytest.approx(pixel_iou(a, b), abs=1e-12)
    assert box_iou([0, 0, 10, 10], [5, 5, 10, 10]) == pytest.approx(25 / 175)


def test_aug_bbox_is_the_reference_formula_on_fixed_draws() -> None:
    class Midpoints:
        """Every uniform draw is the middle of its range."""

        def uniform(self, lo: float, hi: float) -> float:
            return (lo + hi) / 2

    # area 1.25 * 40 * 30 = 1500, aspect exp(0) = 1 -> 39 x 39; centre (30, 35) unshifted;
    # x = round(10.5) = 10, y = round(15.5) = 16 (Python's round, as the reference); IoU 1170 / 1551
    box = aug_bbox([10, 20, 40, 30], (200, 200), rng=Midpoints())  # type: ignore[arg-type]
    assert box == [10, 16, 39, 39]
    assert box_iou(box, [10, 20, 40, 30]) == pytest.approx(1170 / 1551)


def test_aug_bbox_constraints_over_many_seeds() -> None:
    moved = 0
    for seed in range(300):
        rng = random.Random(seed)
        img_w, img_h = rng.randint(60, 300), rng.randint(60, 300)
        w, h = rng.randint(20, img_w), rng.randint(20, img_h)
        x, y = rng.randint(0, img_w - w), rng.randint(0, img_h - h)
        box = [x, y, w, h]
        new = aug_bbox(box, (img_w, img_h), rng=rng)
        assert all(float(v).is_integer() for v in new)
        nx, ny, nw, nh = new
        assert nx >= 0 and ny >= 0 and nx + nw <= img_w and ny + nh <= img_h
        if new == box:
            continue
        moved += 1
        assert pixel_iou(new, box) > 0.5
        # the draws are rounded to whole pixels: allow half a pixel on each side
        area_lo = (math.sqrt(0.5 * w * h) - 0.5 * math.sqrt(2)) ** 2
        assert area_lo <= nw * nh <= 2 * w * h + (nw + nh) + 1
        assert (nw - 0.5) / (nh + 0.5) <= 2.0 and (nw + 0.5) / (nh - 0.5) >= 0.5
        assert abs((nx + nw / 2) - (x + w / 2)) <= 0.5 * w + 1.0
        assert abs((ny + nh / 2) - (y + h / 2)) <= 0.5 * h + 1.0
    assert moved > 200  # the fallback is rare (boxes here may fill their image)


class CountingRandom(random.Random):
    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.draws = 0

    def uniform(self, a: float, b: float) -> float:
        self.draws += 1
        return super().uniform(a, b)


@pytest.mark.parametrize("attempts", [200, 7])
def test_aug_bbox_falls_back_to_the_box_after_all_attempts(attempts: int) -> None:
    # a box larger than its image: every candidate (at least half its area) falls outside
    rng = CountingRandom(0)
    box = [0, 0, 40, 40]
    assert aug_bbox(box, (20, 20), attempts=attempts, rng=rng) == box
    assert rng.draws == 4 * attempts
    # an IoU nothing can exceed: the same
    rng = CountingRandom(1)
    assert aug_bbox([10, 10, 20, 20], (100, 100), min_iou=1.0, attempts=attempts, rng=rng) == [10, 10, 20, 20]
    assert rng.draws == 4 * attempts


def test_patch_pipeline_is_the_view_pipeline_without_the_crop() -> None:
    views = {k: v for k, v in PLAIN_VIEWS.items() if k not in ("roi_size", "knn_images")}
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    for index in (0, 1):
        assert torch.allclose(patch_pipeline(views, index)(img), normalised(img))
    reference = [type(t).__name__ for t in patch_pipeline({}, 1).transforms]
    assert reference[0] == "RandomHorizontalFlip" and "RandomResizedCrop" not in reference
    blur1, blur2 = (patch_pipeline({}, i).transforms[3] for i in (0, 1))
    assert (blur1.p, blur2.p) == (1.0, 0.1)
    solarize1, solarize2 = (patch_pipeline({}, i).transforms[4] for i in (0, 1))
    assert (solarize1.p, solarize2.p) == (0.0, 0.2)
