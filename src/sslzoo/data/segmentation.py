"""Semantic-segmentation readers (VOC12 + SBD aug, Cityscapes) and MMSegmentation's data pipeline.

Samples are ``(image path, label path)`` pairs; labels are single-channel PNGs of class indices
with 255 = ignore:

- VOC12aug (mmseg ``configs/_base_/datasets/pascal_voc12_aug.py``): training reads
  ``ImageSets/Segmentation/trainaug.txt`` (VOC12 train + SBD, minus VOC12 val) with labels from
  ``SegmentationClassAug/`` (plain index PNGs); evaluation reads ``val.txt`` with the palette PNGs
  of ``SegmentationClass/`` (palette indices are the class indices). 21 classes (background + 20).
  (mmseg concatenates ``train.txt`` read from ``SegmentationClass`` with ``aug.txt`` read from
  ``SegmentationClassAug``: the same images; only the 255 border band of the VOC12 train labels,
  absent from their SBD-converted copies, differs.)
- Cityscapes (mmseg ``cityscapes.py``): ``leftImg8bit/{split}/<city>/*_leftImg8bit.png`` with
  ``gtFine/{split}/<city>/*_gtFine_labelIds.png``; labelIds map to the 19 trainIds of
  cityscapesScripts ``helpers/labels.py`` (:data:`CITYSCAPES_TRAIN_IDS`), everything else to 255.
  mmseg reads pre-converted ``*_labelTrainIds.png``; the mapping is the same.

The pipeline follows mmseg 0.x ``mmseg/datasets/pipelines/transforms.py``:

- training: ``Resize(img_scale, ratio_range)`` (a random ratio r, then the image is rescaled,
  aspect kept, to fit (r * long, r * short), bilinear; label nearest) -> ``RandomCrop(crop_size,
  cat_max_ratio=0.75)`` (up to 10 tries for a crop where no class covers 75% of the labelled
  pixels) -> ``RandomFlip(0.5)`` -> ``PhotoMetricDistortion`` (brightness +-32, contrast 0.5..1.5,
  saturation 0.5..1.5, hue +-18, each with probability 0.5, contrast first or last) ->
  ``Normalize`` (mean/std on RGB) -> ``Pad(crop_size)`` (image 0, label 255);
- evaluation: ``Resize(img_scale, keep_ratio)`` -> ``Normalize``; the label stays at the original
  size (predictions are resized back to it, as mmseg's ``rescale=True``).

Randomness comes from ``numpy.random.default_rng(seed)`` with the sample seed the iteration
sampler passes (``dataset[(index, seed)]``), so a resumed run sees the same crops.
A missing, unreadable or non-index label PNG raises SslzooError naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from sslzoo.benchmarks.protocol_files import schema_default
from sslzoo.data.constants import VOC_CLASSES
from sslzoo.data.detection import read_image_set
from sslzoo.data.images import load_rgb
from sslzoo.errors import SslzooError

IGNORE_INDEX = 255
VOC_SEG_CLASSES: tuple[str, ...] = ("background", *VOC_CLASSES)

# cityscapesScripts helpers/labels.py: labelId -> trainId of the 19 evaluated classes.
CITYSCAPES_TRAIN_IDS: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip

Sample = tuple[Path, Path]


def cityscapes_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes labelIds ``[H, W]`` (uint8) -> trainIds 0..18, 255 for every other id."""
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
        lut[label_id] = train_id
    return lut[np.asarray(label_ids, dtype=np.uint8)]


def read_label(path: str | os.PathLike[str]) -> np.ndarray:
    """An index PNG (mode ``P`` palette or ``L``) as uint8 ``[H, W]``; anything else raises SslzooError."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise SslzooError(
                    f"{path}: label image has mode {img.mode}, expected a palette (P) or grey (L) PNG of "
                    "class indices; colour-converted labels cannot be read back"
                )
            return np.array(img, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as err:
        raise SslzooError(
            f"{path}: cannot read label image ({type(err).__name__}: {err}); replace it"
        ) from err


def voc_segmentation_samples(voc12: str | os.PathLike[str], split: str) -> list[Sample]:
    """``(JPEGImages/<id>.jpg, label)`` of ``ImageSets/Segmentation/{split}.txt``.

    ``trainaug`` (and ``aug``) read ``SegmentationClassAug``; other splits ``SegmentationClass``.
    """
    voc12 = Path(voc12)
    label_dir = "SegmentationClassAug" if split in ("trainaug", "aug") else "SegmentationClass"
    samples = [
        (voc12 / "JPEGImages" / f"{i}.jpg", voc12 / label_dir / f"{i}.png")
        for i in read_image_set(voc12 / "ImageSets" / "Segmentation" / f"{split}.txt")
    ]
    missing = [str(label) for _, label in samples if not label.is_file()]
    if missing:
        raise SslzooError(f"{voc12}: {len(missing)} label file(s) of {split} missing, e.g. {missing[0]}")
    return samples


def cityscapes_samples(root: str | os.PathLike[str], split: str) -> list[Sample]:
    """``(leftImg8bit, gtFine labelIds)`` pairs of ``split`` under the Cityscapes ``root``, sorted."""
    root = Path(root)
    images = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
    if not images:
        raise SslzooError(f"{root / 'leftImg8bit' / split}: no *_leftImg8bit.png images found")
    samples = []
    for image in images:
        stem = image.name[: -len("_leftImg8bit.png")]
        label = root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelIds.png"
        if not label.is_file():
            raise SslzooError(f"{label}: label file of {image} missing")
        samples.append((image, label))
    return samples


# --------------------------------------------------------------------------------------------
# mmseg pipeline
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineConfig:
    """The data pipeline of one protocol (mmseg dataset config values; the defaults are those
    of ``sslzoo/schemas/segmentation.schema.yaml``).

    Attributes:
        img_scale: (long, short) side bounds of ``Resize`` (VOC12aug (2048, 512), Cityscapes
            (2049, 1025)).
        ratio_range: training scale ratios (0.5, 2.0).
        crop_size: (height, width) of the training crops (512, 512) / (769, 769).
        cat_max_ratio: ``RandomCrop``'s largest share of one class in a crop.
        flip_prob: horizontal flip probability.
        photometric: apply ``PhotoMetricDistortion``.
        mean, std: RGB normalisation (0..255 scale).
    """

    img_scale: tuple[int, int]
    ratio_range: tuple[float, float]
    crop_size: tuple[int, int]
    cat_max_ratio: float = schema_default("seg", "pipeline", "cat_max_ratio")
    flip_prob: float = schema_default("seg", "pipeline", "flip_prob")
    photometric: bool = schema_default("seg", "pipeline", "photometric")
    mean: tuple[float, float, float] = schema_default("seg", "pipeline", "mean")
    std: tuple[float, float, float] = schema_default("seg", "pipeline", "std")


def rescale_size(height: int, width: int, scale: tuple[float, float]) -> tuple[int, int]:
    """mmcv ``imrescale``: the (H, W) that fits ``max(scale)`` x ``min(scale)`` with the aspect kept."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def resize_pair(
    image: np.ndarray, label: np.ndarray | None, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize an RGB uint8 image (bilinear) and its label (nearest) to (H, W) ``size``."""
    height, width = size
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    if label is not None:
        label = cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)
    return image, label


def random_crop_box(
    rng: np.random.Generator, label: np.ndarray, crop_size: tuple[int, int], cat_max_ratio: float
) -> tuple[int, int, int, int]:
    """mmseg ``RandomCrop``: (y0, y1, x0, x1), re-drawn up to 10 times while one class dominates."""
    height, width = label.shape
    crop_h, crop_w = crop_size

    def draw() -> tuple[int, int, int, int]:
        y0 = int(rng.integers(0, max(height - crop_h, 0) + 1))
        x0 = int(rng.integers(0, max(width - crop_w, 0) + 1))
        return y0, min(y0 + crop_h, height), x0, min(x0 + crop_w, width)

    box = draw()
    if cat_max_ratio < 1.0:
        for _ in range(10):
            values, counts = np.unique(label[box[0] : box[1], box[2] : box[3]], return_counts=True)
            counts = counts[values != IGNORE_INDEX]
            if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
                break
            box = draw()
    return box


def _convert(values: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    return np.clip(values.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def photometric_distortion(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """mmseg ``PhotoMetricDistortion`` on an RGB uint8 image ``[H, W, 3]``.

    Brightness (add U(-32, 32)), then contrast first or last (multiply U(0.5, 1.5)), saturation
    (HSV S times U(0.5, 1.5)), hue (HSV H + an integer in [-18, 18) mod 180, numpy randint bounds
    as mmseg); each with probability 0.5.
    """
    image = _convert(image, beta=rng.uniform(-32, 32)) if rng.integers(2) else image
    contrast_first = bool(rng.integers(2))
    if contrast_first and rng.integers(2):
        image = _convert(image, alpha=rng.uniform(0.5, 1.5))
    if rng.integers(2):
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        hsv[:, :, 1] = _convert(hsv[:, :, 1], alpha=rng.uniform(0.5, 1.5))
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if rng.integers(2):
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        hsv[:, :, 0] = ((hsv[:, :, 0].astype(np.int64) + int(rng.integers(-18, 18))) % 180).astype(np.uint8)
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not contrast_first and rng.integers(2):
        image = _convert(image, alpha=rng.uniform(0.5, 1.5))
    return image


def normalize(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """RGB uint8 ``[H, W, 3]`` -> float32 ``[3, H, W]`` ``(x - mean) / std``."""
    array = (image.astype(np.float32) - np.array(mean, np.float32)) / np.array(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def train_pipeline(
    image: np.ndarray, label: np.ndarray, cfg: PipelineConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training transforms (module docstring): -> image ``[3, h, w]``, label int64 ``[h, w]``
    with ``(h, w) = crop_size``."""
    ratio = rng.uniform(*cfg.ratio_range)
    scale = (cfg.img_scale[0] * ratio, cfg.img_scale[1] * ratio)
    image, label = resize_pair(image, label, rescale_size(*label.shape, (int(scale[0]), int(scale[1]))))
    assert label is not None
    y0, y1, x0, x1 = random_crop_box(rng, label, cfg.crop_size, cfg.cat_max_ratio)
    image, label = image[y0:y1, x0:x1], label[y0:y1, x0:x1]
    if rng.random() < cfg.flip_prob:
        image, label = image[:, ::-1], label[:, ::-1]
    image = np.ascontiguousarray(image)
    if cfg.photometric:
        image = photometric_distortion(rng, image)
    tensor = normalize(image, cfg.mean, cfg.std)
    crop_h, crop_w = cfg.crop_size
    pad_h, pad_w = max(crop_h - tensor.shape[1], 0), max(crop_w - tensor.shape[2], 0)
    target = torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))
    if pad_h or pad_w:
        tensor = torch.nn.functional.pad(tensor, (0, pad_w, 0, pad_h), value=0.0)
        target = torch.nn.functional.pad(target, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)
    return tensor, target


def eval_pipeline(image: np.ndarray, cfg: PipelineConfig) -> torch.Tensor:
    """Evaluation input: resized to fit ``img_scale`` (aspect kept) and normalised, ``[3, h, w]``."""
    image, _ = resize_pair(image, None, rescale_size(image.shape[0], image.shape[1], cfg.img_scale))
    return normalize(image, cfg.mean, cfg.std)


class SegmentationDataset(Dataset):
    """``(image, label)`` samples through the training or the evaluation pipeline.

    ``dataset[(index, seed)]`` in training -> (image ``[3, h, w]``, label int64 ``[h, w]``);
    ``dataset[index]`` in evaluation -> (resized image ``[3, h, w]``, label int64 ``[H, W]`` at
    the original size). ``label_map`` converts raw labels (Cityscapes labelIds -> trainIds).
    """

    def __init__(
        self,
        samples: list[Sample],
        pipeline: PipelineConfig,
        train: bool,
        label_map: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if not samples:
            raise SslzooError("segmentation dataset: no samples")
        self.samples, self.pipeline, self.train, self.label_map = samples, pipeline, train, label_map

    def __len__(self) -> int:
        return len(self.samples)

    def label(self, index: int) -> np.ndarray:
        """The (mapped) label of sample ``index``, uint8 ``[H, W]``."""
        label = read_label(self.samples[index][1])
        return self.label_map(label) if self.label_map is not None else label

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = (int(item[0]), int(item[1])) if isinstance(item, tuple) else (int(item), 0)
        image_path, label_path = self.samples[index]
        image = np.asarray(load_rgb(image_path), dtype=np.uint8)
        label = self.label(index)
        if label.shape != image.shape[:2]:
            raise SslzooError(
                f"{label_path}: label is {label.shape} but image {image_path} is {image.shape[:2]}"
            )
        if self.train:
            return train_pipeline(image, label, self.pipeline, np.random.default_rng(seed))
        return eval_pipeline(image, self.pipeline), torch.from_numpy(label.astype(np.int64))
