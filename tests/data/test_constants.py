"""The shared dataset constants against the references they come from."""

from __future__ import annotations

import pytest

from sslzoo.data.constants import (
    IMAGENET_MEAN,
    IMAGENET_MEAN_PIXELS,
    IMAGENET_STD,
    IMAGENET_STD_PIXELS,
    VOC_CLASSES,
)

# detectron2/data/datasets/pascal_voc.py CLASS_NAMES, as the file writes it.
DETECTRON2_CLASS_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def test_voc_classes_are_detectron2s_in_its_order() -> None:
    assert VOC_CLASSES == DETECTRON2_CLASS_NAMES


def test_pixel_statistics_are_the_unit_statistics_times_255() -> None:
    for pixels, unit in ((IMAGENET_MEAN_PIXELS, IMAGENET_MEAN), (IMAGENET_STD_PIXELS, IMAGENET_STD)):
        assert pixels == pytest.approx(tuple(255 * v for v in unit), abs=1e-9)
