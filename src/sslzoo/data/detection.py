"""Detection readers: Pascal VOC (XML annotations) and COCO instances (JSON), as torch Datasets.

Both return ``(image, target)`` in the form torchvision's detection models take:

- ``image``: float32 ``[3, H, W]`` RGB in [0, 1] (the model normalises, see
  :mod:`sslzoo.benchmarks.detection.models`);
- ``target``: ``boxes`` float32 ``[N, 4]`` (x0, y0, x1, y1) in continuous pixel coordinates,
  ``labels`` int64 ``[N]`` in 1..C (0 is the background), ``index`` int64 scalar (the row of the
  dataset), and for COCO ``masks`` uint8 ``[N, H, W]``; VOC adds ``difficult`` bool ``[N]``.

Conventions follow detectron2 (``detectron2/data/datasets/pascal_voc.py``, ``coco.py``, the
``DatasetMapper``):

- VOC ``<bndbox>`` values are 1-based inclusive pixel indices; a box ``xmin=1 .. xmax=W``
  covers the whole image, i.e. ``[0, W]`` in coordinates: ``x0 = xmin - 1``, ``y0 = ymin - 1``,
  ``x1 = xmax``, ``y1 = ymax``. Difficult objects are kept for training (detectron2 does) unless
  ``ignore_difficult`` (MMDetection leaves them out), and flagged for the evaluation, which
  ignores them.
- COCO ``bbox`` is ``[x, y, w, h]`` -> ``[x, y, x + w, y + h]``; category ids map to contiguous
  labels in sorted id order. For training, crowd annotations and empty boxes are dropped and
  images left without annotations are skipped (``DATALOADER.FILTER_EMPTY_ANNOTATIONS``).
- Training images are flipped horizontally with probability 0.5 (detectron2's ``RandomFlip``);
  the random choice comes from the sample seed the iteration sampler passes with the index
  (``dataset[(index, seed)]``), so a resumed run sees the same flips.

- A test set can be cut to a fixed subset (protocol ``test.max_images``, used by the mini
  protocols only): :func:`spread_positions` picks the images, ``select`` keeps them.

A malformed annotation file (not XML, not JSON, a missing or non-numeric field, an unknown
class) raises :class:`~sslzoo.errors.SslzooError` naming the file.
"""

from __future__ import annotations

import copy
import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from sslzoo.data.constants import VOC_CLASSES
from sslzoo.data.images import load_rgb
from sslzoo.errors import SslzooError

Target = dict[str, torch.Tensor]


# --------------------------------------------------------------------------------------------
# Pascal VOC
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VocObject:
    """One ``<object>``: class name, box as written (1-based inclusive ints), difficult flag."""

    name: str
    box: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax
    difficult: bool


@dataclass(frozen=True)
class VocAnnotation:
    """One ``Annotations/<id>.xml``."""

    image_id: str
    width: int
    height: int
    objects: tuple[VocObject, ...]


def _xml_int(node: ET.Element, path: str, source: Path) -> int:
    found = node.find(path)
    if found is None or found.text is None:
        raise SslzooError(f"{source}: missing <{path}>; the annotation file is incomplete, replace it")
    try:
        return int(float(found.text.strip()))
    except ValueError as err:
        raise SslzooError(f"{source}: <{path}> is {found.text!r}, not a number; replace the file") from err


def parse_voc_xml(path: str | os.PathLike[str], classes: tuple[str, ...] = VOC_CLASSES) -> VocAnnotation:
    """Read one VOC annotation file.

    ``<difficult>`` may be absent (counts as 0, as in some VOC2012 files); every other field
    used here must be present. Raises SslzooError naming ``path`` when it is missing or malformed.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError as err:
        raise SslzooError(f"{path}: annotation file not found; is the VOCdevkit complete?") from err
    except (ET.ParseError, OSError) as err:
        raise SslzooError(f"{path}: not a readable XML annotation ({err}); replace the file") from err
    width, height = _xml_int(root, "size/width", path), _xml_int(root, "size/height", path)
    objects = []
    for obj in root.findall("object"):
        name_node = obj.find("name")
        name = (name_node.text or "").strip() if name_node is not None else ""
        if name not in classes:
            raise SslzooError(f"{path}: object class {name!r} is not one of the {len(classes)} VOC classes")
        if obj.find("bndbox") is None:
            raise SslzooError(f"{path}: an object of class {name!r} has no <bndbox>; replace the file")
        box = tuple(_xml_int(obj, f"bndbox/{key}", path) for key in ("xmin", "ymin", "xmax", "ymax"))
        difficult_node = obj.find("difficult")
        difficult = False
        if difficult_node is not None and difficult_node.text is not None:
            difficult = _xml_int(obj, "difficult", path) == 1
        objects.append(VocObject(name, box, difficult))  # type: ignore[arg-type]
    return VocAnnotation(path.stem, width, height, tuple(objects))


def read_image_set(path: str | os.PathLike[str]) -> list[str]:
    """Image ids of an ``ImageSets/*/<split>.txt`` (first word of each non-empty line)."""
    path = Path(path)
    if not path.is_file():
        raise SslzooError(f"{path}: image set list not found; is the VOCdevkit complete?")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def voc_boxes_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """1-based inclusive ``[N, 4]`` VOC boxes -> 0-based continuous (x0 - 1, y0 - 1, x1, y1)."""
    out = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    out[:, :2] -= 1.0
    return out


def hflip_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    """Mirror continuous-coordinate boxes ``[N, 4]`` in an image ``width`` wide."""
    flipped = boxes.clone()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped


def _to_tensor(image: Any) -> torch.Tensor:
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def _split_item(item: int | tuple[int, int]) -> tuple[int, int | None]:
    if isinstance(item, tuple):
        return int(item[0]), int(item[1])
    return int(item), None


def spread_positions(count: int, max_images: int | None) -> list[int]:
    """Positions of the evaluated images among ``count`` test images (protocol ``test.max_images``).

    None, or a limit of at least ``count``: every position. Else ``max_images`` positions spread
    evenly over the list, ``floor(k * count / max_images)`` for ``k = 0 .. max_images - 1``
    (``count=10, max_images=4`` -> ``[0, 2, 5, 7]``): no random numbers, so the same images on
    every run and every machine, and the whole list is covered even where it is ordered by source.
    """
    if max_images is None or max_images >= count:
        return list(range(count))
    if max_images < 1:
        raise SslzooError(f"test.max_images must be at least 1 or null, got {max_images}")
    return [k * count // max_images for k in range(max_images)]


class VocDetection(Dataset):
    """VOC detection over one or more ``(VOC{year} dir, split)`` pairs, in the given order.

    ``VocDetection([(voc07, "trainval"), (voc12, "trainval")], train=True)`` is the VOC07+12
    training set; ``VocDetection([(voc07, "test")])`` the VOC07 test set. All annotation files
    are parsed up front (a broken one fails before training starts).

    Args:
        sources: ``(VOC{year} directory, ImageSets/Main split name)`` pairs.
        train: flip with probability ``flip_prob`` (needs ``dataset[(index, seed)]``).
        flip_prob: probability of a horizontal flip in training.
        ignore_difficult: leave out the objects marked difficult, and the images left without
            an object (MMDetection's ``VOCDataset``: difficult boxes are ignored instances, which
            no assigner uses, and ``filter_empty_gt``); False keeps them (detectron2 trains on
            them). For a training set; a test set keeps them to score them as difficult.
    """

    classes: tuple[str, ...] = VOC_CLASSES

    def __init__(
        self,
        sources: list[tuple[str | os.PathLike[str], str]],
        train: bool = False,
        flip_prob: float = 0.5,
        ignore_difficult: bool = False,
    ) -> None:
        self.train, self.flip_prob = train, flip_prob
        self.images: list[Path] = []
        self.annotations: list[VocAnnotation] = []
        for directory, split in sources:
            directory = Path(directory)
            for image_id in read_image_set(directory / "ImageSets" / "Main" / f"{split}.txt"):
                annotation = parse_voc_xml(directory / "Annotations" / f"{image_id}.xml")
                if ignore_difficult:
                    kept = [o for o in annotation.objects if not o.difficult]
                    if not kept:
                        continue
                    annotation = replace(annotation, objects=tuple(kept))
                self.annotations.append(annotation)
                self.images.append(directory / "JPEGImages" / f"{image_id}.jpg")
        if not self.images:
            raise SslzooError(f"{[str(s[0]) + ':' + s[1] for s in sources]}: no images listed")

    def __len__(self) -> int:
        return len(self.images)

    def select(self, positions: list[int]) -> VocDetection:
        """A copy holding only the images at ``positions`` (in that order), renumbered from 0."""
        subset = copy.copy(self)
        subset.images = [self.images[i] for i in positions]
        subset.annotations = [self.annotations[i] for i in positions]
        return subset

    def target(self, index: int) -> Target:
        """The annotation of image ``index`` as a target (no flip)."""
        ann = self.annotations[index]
        boxes = voc_boxes_to_xyxy(np.array([o.box for o in ann.objects], dtype=np.float32))
        return {
            "boxes": torch.from_numpy(boxes),
            "labels": torch.tensor([self.classes.index(o.name) + 1 for o in ann.objects], dtype=torch.int64),
            "difficult": torch.tensor([o.difficult for o in ann.objects], dtype=torch.bool),
            "index": torch.tensor(index, dtype=torch.int64),
        }

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, Target]:
        index, seed = _split_item(item)
        image = _to_tensor(load_rgb(self.images[index]))
        target = self.target(index)
        if self.train and seed is not None and np.random.default_rng(seed).random() < self.flip_prob:
            image = image.flip(-1)
            target["boxes"] = hflip_boxes(target["boxes"], image.shape[-1])
        return image, target


# --------------------------------------------------------------------------------------------
# COCO instances
# --------------------------------------------------------------------------------------------


def load_coco(annotation_file: str | os.PathLike[str]) -> Any:
    """A ``pycocotools.coco.COCO`` of ``annotation_file``, with the file checked first.

    Raises SslzooError naming the file when it is missing, not JSON, or lacks ``images``,
    ``annotations`` or ``categories``, or an annotation lacks a field used here.
    """
    path = Path(annotation_file)
    if not path.is_file():
        raise SslzooError(f"{path}: COCO annotation file not found")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SslzooError(
            f"{path}: not valid JSON ({err}); download or regenerate the annotation file"
        ) from err
    if not isinstance(doc, dict):
        raise SslzooError(f"{path}: expected a COCO JSON object, found {type(doc).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise SslzooError(f"{path}: missing list '{key}'; not a COCO instances file")
    for where, rows, fields in (
        ("images", doc["images"], ("id", "file_name", "width", "height")),
        ("annotations", doc["annotations"], ("id", "image_id", "category_id", "bbox")),
        ("categories", doc["categories"], ("id", "name")),
    ):
        for row in rows:
            missing = [f for f in fields if not isinstance(row, dict) or f not in row]
            if missing:
                raise SslzooError(f"{path}: an entry of '{where}' lacks {missing}: {str(row)[:200]}")
    coco = COCO()
    coco.dataset = doc
    coco.createIndex()
    return coco


class CocoDetection(Dataset):
    """COCO instances (boxes, and polygon/RLE masks when ``with_masks``) of one split.

    Args:
        image_dir: the folder of ``file_name`` (``coco/train2017``).
        annotation_file: ``instances_{split}.json``.
        train: drop crowd annotations and empty boxes, skip images without annotations,
            flip with probability ``flip_prob`` (needs ``dataset[(index, seed)]``).
        with_masks: add ``masks`` uint8 ``[N, H, W]`` to the targets.
    """

    def __init__(
        self,
        image_dir: str | os.PathLike[str],
        annotation_file: str | os.PathLike[str],
        train: bool = False,
        with_masks: bool = True,
        flip_prob: float = 0.5,
    ) -> None:
        self.image_dir = Path(image_dir)
        self.annotation_file = Path(annotation_file)
        self.coco = load_coco(annotation_file)
        self.train, self.with_masks, self.flip_prob = train, with_masks, flip_prob
        self.category_ids: list[int] = sorted(self.coco.getCatIds())
        self.classes: tuple[str, ...] = tuple(self.coco.cats[c]["name"] for c in self.category_ids)
        self.label_of = {cat: label for label, cat in enumerate(self.category_ids, start=1)}
        image_ids = sorted(self.coco.getImgIds())
        if train:
            image_ids = [i for i in image_ids if self._kept(self.coco.imgToAnns.get(i, []))]
        self.image_ids: list[int] = image_ids
        if not self.image_ids:
            raise SslzooError(f"{self.annotation_file}: no images{' with annotations' if train else ''}")

    def _kept(self, anns: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for ann in anns:
            if self.train and ann.get("iscrowd", 0):
                continue
            bbox = ann["bbox"]
            if not (isinstance(bbox, list) and len(bbox) == 4):
                raise SslzooError(f"{self.annotation_file}: annotation {ann['id']} has bbox {bbox!r}")
            if self.train and (bbox[2] <= 1e-5 or bbox[3] <= 1e-5):
                continue
            if ann["category_id"] not in self.label_of:
                raise SslzooError(
                    f"{self.annotation_file}: annotation {ann['id']} has unknown category {ann['category_id']}"
                )
            out.append(ann)
        return out

    def __len__(self) -> int:
        return len(self.image_ids)

    def select(self, positions: list[int]) -> CocoDetection:
        """A copy holding only the images at ``positions`` of ``image_ids`` (in that order),
        renumbered from 0; ``coco`` (all annotations) is shared."""
        subset = copy.copy(self)
        subset.image_ids = [self.image_ids[i] for i in positions]
        return subset

    def _mask(self, ann: dict[str, Any], height: int, width: int) -> np.ndarray:

        segm = ann.get("segmentation")
        if segm is None:
            raise SslzooError(f"{self.annotation_file}: annotation {ann['id']} has no 'segmentation'")
        try:
            if isinstance(segm, list):  # polygons
                rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
            elif isinstance(segm.get("counts"), list):  # uncompressed RLE
                rle = mask_utils.frPyObjects(segm, height, width)
            else:
                rle = segm
            return mask_utils.decode(rle).astype(np.uint8)
        except (TypeError, ValueError, AttributeError, IndexError, KeyError) as err:
            raise SslzooError(
                f"{self.annotation_file}: annotation {ann['id']} has a malformed segmentation ({err})"
            ) from err

    def target(self, index: int) -> Target:
        """The annotation of image ``index`` as a target (no flip)."""
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        anns = self._kept(self.coco.imgToAnns.get(image_id, []))
        boxes = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        target: Target = {
            "boxes": torch.from_numpy(boxes),
            "labels": torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.int64),
            "iscrowd": torch.tensor([int(a.get("iscrowd", 0)) for a in anns], dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
        }
        if self.with_masks:
            height, width = int(info["height"]), int(info["width"])
            masks = [self._mask(a, height, width) for a in anns]
            target["masks"] = torch.from_numpy(
                np.stack(masks) if masks else np.zeros((0, height, width), np.uint8)
            )
        return target

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, Target]:
        index, seed = _split_item(item)
        info = self.coco.imgs[self.image_ids[index]]
        image = _to_tensor(load_rgb(self.image_dir / info["file_name"]))
        target = self.target(index)
        if self.with_masks and target["masks"].shape[-2:] != image.shape[-2:]:
            raise SslzooError(
                f"{self.annotation_file}: image {info['file_name']} is {tuple(image.shape[-2:])} (H, W) but "
                f"the annotation file says {(info['height'], info['width'])}"
            )
        if self.train and seed is not None and np.random.default_rng(seed).random() < self.flip_prob:
            image = image.flip(-1)
            target["boxes"] = hflip_boxes(target["boxes"], image.shape[-1])
            if self.with_masks:
                target["masks"] = target["masks"].flip(-1)
        return image, target


def collate_detection(batch: list[tuple[torch.Tensor, Target]]) -> tuple[list[torch.Tensor], list[Target]]:
    """Images and targets as two lists (torchvision detection models take lists)."""
    return [image for image, _ in batch], [target for _, target in batch]
