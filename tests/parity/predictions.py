"""Stand-in detections for the metric tests: the mini datasets' ground truth, jittered, partly
dropped, with false positives added (seeded), in the prediction format of
``sslzoo.benchmarks.detection.evaluate`` (image index -> boxes, scores, labels, masks)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import nn

from sslzoo.data.constants import VOC_CLASSES
from sslzoo.data.detection import CocoDetection, VocDetection


def _jitter(box: np.ndarray, scale: float, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """``[x0, y0, x1, y1]`` moved by up to ``scale`` of its size per side, kept in the image."""
    size = np.array([box[2] - box[0], box[3] - box[1]] * 2)
    moved = box + rng.uniform(-scale, scale, 4) * size
    moved = np.clip(moved, 0, [width, height, width, height])
    return np.array([min(moved[0], moved[2] - 1), min(moved[1], moved[3] - 1), moved[2], moved[3]])


def coco_predictions(data: CocoDetection, seed: int) -> dict[int, dict[str, Any]]:
    """Per image index: jittered ground-truth boxes and masks (some dropped), plus false positives."""
    rng = np.random.default_rng(seed)
    scores = iter(rng.permutation(np.arange(1, 1000)) / 1000.0)  # distinct
    out = {}
    for index, image_id in enumerate(data.image_ids):
        info = data.coco.imgs[image_id]
        width, height = info["width"], info["height"]
        boxes, labels, masks = [], [], []
        for ann in data.coco.imgToAnns.get(image_id, []):
            if rng.random() < 0.15:
                continue  # a miss
            x, y, w, h = ann["bbox"]
            boxes.append(_jitter(np.array([x, y, x + w, y + h]), 0.15, rng, width, height))
            labels.append(data.label_of[ann["category_id"]])
            mask = data.coco.annToMask(ann)
            shift = rng.integers(-2, 3, 2)
            masks.append(np.roll(mask, tuple(shift), axis=(0, 1)))
        for _ in range(int(rng.integers(1, 4))):  # false positives
            x0, y0 = rng.uniform(0, width * 0.7), rng.uniform(0, height * 0.7)
            boxes.append(
                np.array([x0, y0, x0 + rng.uniform(8, width * 0.3), y0 + rng.uniform(8, height * 0.3)])
            )
            labels.append(int(rng.integers(1, len(data.category_ids) + 1)))
            fake = np.zeros((height, width), np.uint8)
            b = boxes[-1].astype(int)
            fake[b[1] : b[3], b[0] : b[2]] = 1
            masks.append(fake)
        rles = mask_utils.encode(np.asfortranarray(np.stack(masks, axis=2).astype(np.uint8)))
        for rle in rles:
            rle["counts"] = rle["counts"].decode("ascii")
        out[index] = {
            "boxes": np.array(boxes, np.float32),
            "scores": np.array([next(scores) for _ in boxes], np.float32),
            "labels": np.array(labels),
            "masks": list(rles),
        }
    return out


def voc_predictions(data: VocDetection, seed: int) -> dict[int, dict[str, Any]]:
    """Per test image: jittered ground-truth boxes (0-based continuous xyxy, as the models give),
    some dropped, some duplicated, plus false positives; distinct scores."""
    rng = np.random.default_rng(seed)
    # distinct at the 3 decimals of the result files: no ties for the sorts to break differently
    scores = iter(rng.permutation(np.arange(1, 1000)) / 1000.0)
    out = {}
    for index, ann in enumerate(data.annotations):
        boxes, labels = [], []
        for obj in ann.objects:
            x0, y0, x1, y1 = obj.box
            gt = np.array([x0 - 1.0, y0 - 1.0, x1, y1])  # 1-based inclusive -> 0-based continuous
            for _ in range(1 + int(rng.random() < 0.1)):  # a duplicate now and then
                if rng.random() < 0.15:
                    continue
                boxes.append(_jitter(gt, 0.2, rng, ann.width, ann.height))
                labels.append(VOC_CLASSES.index(obj.name) + 1)
        for _ in range(int(rng.integers(0, 3))):
            x0, y0 = rng.uniform(0, ann.width * 0.7), rng.uniform(0, ann.height * 0.7)
            boxes.append(np.array([x0, y0, x0 + rng.uniform(8, 40), y0 + rng.uniform(8, 40)]))
            labels.append(int(rng.integers(1, 21)))
        out[index] = {
            "boxes": np.array(boxes, np.float32).reshape(-1, 4),
            "scores": np.array([next(scores) for _ in boxes], np.float32),
            "labels": np.array(labels, np.int64),
        }
    return out


class OracleDetector(nn.Module):
    """A stand-in detector for ``predict``: it looks each image up, by its pixels, in a table of
    predictions (masks as probabilities ``[K, 1, H, W]``, as a Mask R-CNN gives them)."""

    def __init__(self, dataset: Any, predictions: dict[int, dict[str, Any]]) -> None:
        super().__init__()
        self.table = {_key(dataset[index][0]): pred for index, pred in predictions.items()}

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        out = []
        for image in images:
            pred = self.table[_key(image)]
            row = {
                "boxes": torch.as_tensor(pred["boxes"], dtype=torch.float32).reshape(-1, 4),
                "scores": torch.as_tensor(pred["scores"], dtype=torch.float32),
                "labels": torch.as_tensor(pred["labels"], dtype=torch.int64),
            }
            if "masks" in pred:
                masks = mask_utils.decode(pred["masks"]).transpose(2, 0, 1)  # [K, H, W]
                row["masks"] = torch.from_numpy(masks.astype(np.float32))[:, None]
            out.append(row)
        return out


def _key(image: torch.Tensor) -> bytes:
    return hashlib.sha1(image.cpu().numpy().tobytes()).digest()
