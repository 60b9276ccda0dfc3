"""Dataset constants shared by the data writers, the methods and the benchmarks: one home each.

- ``VOC_CLASSES``: the 20 Pascal VOC classes in the order of the devkit, of detectron2's
  ``CLASS_NAMES`` (detectron2/data/datasets/pascal_voc.py; a detection label is its index + 1)
  and of mmselfsup's VOC07 SVM labels (tools/data_converters/extract_voc_labels / the
  ``ImageSets/Main`` class lists).
- ``IMAGENET_MEAN`` / ``IMAGENET_STD``: the per-channel RGB statistics on [0, 1] pixels that
  torchvision's ``Normalize`` takes (mmselfsup 0.x ``img_norm_cfg`` divided by 255).
- ``IMAGENET_MEAN_PIXELS`` / ``IMAGENET_STD_PIXELS``: the same statistics on [0, 255] pixels,
  written as the detectron2 (``MODEL.PIXEL_MEAN/STD`` of the mmselfsup benchmark configs) and
  mmsegmentation (``img_norm_cfg``) configs write them; 123.675 = 0.485 * 255 and so on.
"""

from __future__ import annotations

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
IMAGENET_MEAN_PIXELS: tuple[float, float, float] = (123.675, 116.28, 103.53)
IMAGENET_STD_PIXELS: tuple[float, float, float] = (58.395, 57.12, 57.375)
