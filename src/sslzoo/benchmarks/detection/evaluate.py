"""Detection metrics: Pascal VOC AP as detectron2 reports it, and COCO box/mask AP.

**VOC** (detectron2 ``evaluation/pascal_voc_evaluation.py``, ``PascalVOCDetectionEvaluator``,
itself a port of py-faster-rcnn ``voc_eval.py``): for every class and every IoU threshold
t in 0.50, 0.55, ..., 0.95, detections of all test images are sorted by score; one is a true
positive when its best-overlapping ground-truth box of that class has IoU > t, is not
difficult and was not matched before; a match to a difficult box counts neither way; the
number of positives excludes difficult boxes. IoUs use the VOC "+1" pixel convention on the
1-based inclusive ground truth, predictions are shifted back to it (``x0 + 1, y0 + 1``) and,
as in detectron2's result files, scores are rounded to 3 and coordinates to 1 decimal.
For VOC2007 the AP of *every* threshold is the 11-point interpolated AP (``use_07_metric``,
mean over recall r in 0, 0.1, ..., 1 of the best precision at recall >= r); otherwise the area
under the interpolated precision envelope. Reported (in %): ``AP50`` = mean over classes at
t = 0.5, ``AP75`` at 0.75, ``AP`` = mean over the ten thresholds of the class means. A class
without positives in the test set gets NaN and is left out of the mean (detectron2 would
propagate the NaN; the real VOC07 test set has positives of every class).

**COCO** (detectron2 ``COCOEvaluator``): boxes as ``[x, y, w, h]``, masks thresholded at 0.5
and RLE-encoded, scored by ``pycocotools.cocoeval.COCOeval``; ``stats[0..2]`` (AP at IoU
0.50:0.95, 0.50, 0.75, all areas, 100 detections) x 100 give ``mAP(Box)``, ``AP50(Box)``,
``AP75(Box)`` and the ``(Mask)`` columns.

Prediction (:func:`predict`) splits the test images over the processes; the per-image outputs
are gathered so the metrics do not depend on the process count.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from sslzoo.data.detection import VocAnnotation, collate_detection
from sslzoo.runtime.dist import DistContext, all_gather_object

VOC_IOU_THRESHOLDS: tuple[int, ...] = tuple(range(50, 100, 5))  # percent
Prediction = dict[str, Any]  # boxes [K, 4] float (0-based xyxy), scores [K], labels [K] (1..C), masks (RLEs)


# --------------------------------------------------------------------------------------------
# Pascal VOC
# --------------------------------------------------------------------------------------------


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
    """AP of one precision/recall curve (points in detection order).

    ``use_07_metric``: mean over the 11 recall levels ``np.arange(0, 1.1, 0.1)`` of the highest
    precision at recall >= level (0 where none); the levels are detectron2's floats (0.3 is
    0.30000000000000004, so a recall of exactly 3/10 does not reach it). Else the area under the
    monotone precision envelope.
    """
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if use_07_metric:
        total = 0.0
        for level in np.arange(0.0, 1.1, 0.1):  # detectron2's levels, float rounding included
            reached = recall >= level
            total += float(precision[reached].max()) if reached.any() else 0.0
        return total / 11.0
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _voc_iou(box: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of one box ``[4]`` with ``[M, 4]`` boxes, VOC's inclusive-pixel "+1" widths."""
    iw = np.maximum(np.minimum(gt[:, 2], box[2]) - np.maximum(gt[:, 0], box[0]) + 1.0, 0.0)
    ih = np.maximum(np.minimum(gt[:, 3], box[3]) - np.maximum(gt[:, 1], box[1]) + 1.0, 0.0)
    inter = iw * ih
    union = (
        (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
        + (gt[:, 2] - gt[:, 0] + 1.0) * (gt[:, 3] - gt[:, 1] + 1.0)
        - inter
    )
    return inter / union


def voc_class_ap(
    detections: Sequence[tuple[int, float, Sequence[float]]],
    ground_truth: dict[int, tuple[np.ndarray, np.ndarray]],
    iou_threshold: float,
    use_07_metric: bool,
) -> float:
    """AP of one class at one IoU threshold (module docstring).

    Args:
        detections: ``(image, score, (x0, y0, x1, y1))`` in VOC's 1-based convention.
        ground_truth: image -> (boxes ``[M, 4]`` 1-based inclusive, difficult bool ``[M]``) of
            this class, for every test image (empty arrays where the class is absent).
        iou_threshold: a detection matches when IoU > threshold.

    Returns:
        The AP in [0, 1], NaN when the class has no non-difficult box.
    """
    positives = sum(int((~difficult).sum()) for _, difficult in ground_truth.values())
    if positives == 0:
        return float("nan")
    scores = np.array([d[1] for d in detections], np.float64)
    order = np.argsort(-scores, kind="stable")
    matched = {image: np.zeros(len(boxes), bool) for image, (boxes, _) in ground_truth.items()}
    tp, fp = np.zeros(len(order)), np.zeros(len(order))
    for rank, k in enumerate(order):
        image, _, box = detections[k]
        boxes, difficult = ground_truth.get(image, (np.zeros((0, 4)), np.zeros(0, bool)))
        if len(boxes) == 0:
            fp[rank] = 1.0
            continue
        ious = _voc_iou(np.asarray(box, np.float64), boxes.astype(np.float64))
        best = int(np.argmax(ious))
        if ious[best] > iou_threshold:
            if difficult[best]:
                continue
            if not matched[image][best]:
                tp[rank], matched[image][best] = 1.0, True
            else:
                fp[rank] = 1.0
        else:
            fp[rank] = 1.0
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / positives
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return voc_ap(recall, precision, use_07_metric)


def voc_detection_metrics(
    predictions: dict[int, Prediction],
    annotations: Sequence[VocAnnotation],
    classes: Sequence[str],
    use_07_metric: bool = True,
) -> dict[str, Any]:
    """``{"AP50", "AP", "AP75"}`` (%) and per-class AP50 of ``predictions`` on a VOC test set.

    Args:
        predictions: image index (position in ``annotations``) -> ``boxes`` ``[K, 4]`` (0-based
            continuous xyxy, as the models output), ``scores`` ``[K]``, ``labels`` ``[K]`` (1..C).
        annotations: the parsed test annotations.
        classes: class names; label ``l`` is ``classes[l - 1]``.
        use_07_metric: the VOC2007 11-point AP (True for the VOC07 test set).
    """
    per_threshold: dict[int, list[float]] = {t: [] for t in VOC_IOU_THRESHOLDS}
    class_ap50: dict[str, float] = {}
    for label, name in enumerate(classes, start=1):
        ground_truth = {}
        for image, ann in enumerate(annotations):
            objects = [o for o in ann.objects if o.name == name]
            ground_truth[image] = (
                np.array([o.box for o in objects], np.float64).reshape(-1, 4),
                np.array([o.difficult for o in objects], bool),
            )
        detections = []
        for image, pred in sorted(predictions.items()):  # image order: ties in score break alike
            for box, score, lab in zip(pred["boxes"], pred["scores"], pred["labels"], strict=True):
                if int(lab) != label:
                    continue
                x0, y0, x1, y1 = (float(v) for v in box)
                shifted = (round(x0 + 1.0, 1), round(y0 + 1.0, 1), round(x1, 1), round(y1, 1))
                detections.append((image, round(float(score), 3), shifted))
        for threshold in VOC_IOU_THRESHOLDS:
            ap = voc_class_ap(detections, ground_truth, threshold / 100.0, use_07_metric)
            per_threshold[threshold].append(100.0 * ap)
        class_ap50[name] = per_threshold[50][-1]
    means = {
        t: float(np.nanmean(v)) if not np.all(np.isnan(v)) else float("nan") for t, v in per_threshold.items()
    }
    return {
        "AP50": means[50],
        "AP": float(np.mean(list(means.values()))),
        "AP75": means[75],
        "per_class_AP50": class_ap50,
        "AP_per_threshold": {f"AP{t}": v for t, v in means.items()},
    }


# --------------------------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------------------------


def coco_results(
    predictions: dict[int, Prediction], image_ids: Sequence[int], category_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """COCO result dicts: ``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``, ``score``
    (and ``segmentation`` RLE when the prediction has ``masks``)."""
    results = []
    for index, pred in predictions.items():
        masks = pred.get("masks")
        for k, (box, score, label) in enumerate(
            zip(pred["boxes"], pred["scores"], pred["labels"], strict=True)
        ):
            x0, y0, x1, y1 = (float(v) for v in box)
            row: dict[str, Any] = {
                "image_id": int(image_ids[index]),
                "category_id": int(category_ids[int(label) - 1]),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "score": float(score),
            }
            if masks is not None:
                row["segmentation"] = masks[k]
            results.append(row)
    return results


COCO_COLUMNS = {"bbox": "Box", "segm": "Mask"}


def coco_metrics(
    coco_gt: Any,
    results: list[dict[str, Any]],
    iou_types: Sequence[str],
    image_ids: Sequence[int] | None = None,
) -> dict[str, float]:
    """``mAP(Box)``, ``AP50(Box)``, ``AP75(Box)`` (and ``(Mask)``) in % via ``COCOeval``.

    ``image_ids`` restricts the evaluation (default: every image of ``coco_gt``). With no
    results at all every AP is 0. COCOeval's report goes to stderr.
    """
    metrics: dict[str, float] = {}
    for iou_type in iou_types:
        suffix = COCO_COLUMNS[iou_type]
        rows = [r for r in results if iou_type == "bbox" or "segmentation" in r]
        if not rows:
            metrics.update({f"mAP({suffix})": 0.0, f"AP50({suffix})": 0.0, f"AP75({suffix})": 0.0})
            continue
        with contextlib.redirect_stdout(sys.stderr):
            coco_dt = coco_gt.loadRes([dict(r) for r in rows])
            evaluator = COCOeval(coco_gt, coco_dt, iou_type)
            if image_ids is not None:
                evaluator.params.imgIds = list(image_ids)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        stats = [max(float(s), 0.0) * 100.0 for s in evaluator.stats[:3]]  # -1 (no GT) -> 0
        metrics.update({f"mAP({suffix})": stats[0], f"AP50({suffix})": stats[1], f"AP75({suffix})": stats[2]})
    return metrics


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------


def encode_masks(masks: torch.Tensor, threshold: float = 0.5) -> list[dict[str, Any]]:
    """Mask probabilities ``[K, 1, H, W]`` -> COCO RLEs of ``mask >= threshold`` (counts as str)."""
    binary = (masks[:, 0] >= threshold).cpu().numpy().astype(np.uint8)
    rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0))) if len(binary) else []
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return list(rles)


@torch.no_grad()
def predict(
    model: nn.Module, dataset: Dataset, ctx: DistContext | None = None, batch_size: int = 1, workers: int = 2
) -> dict[int, Prediction]:
    """Detections of ``model`` (eval mode) on every image of ``dataset``: index -> prediction.

    Rank r runs images r, r + W, ...; every process returns the merged dict, in index order
    whatever the number of processes. Masks, when the model predicts them, come back as COCO RLEs.
    """
    ctx = ctx or DistContext()
    model.eval()
    subset = Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size))  # type: ignore[arg-type]
    loader = DataLoader(
        subset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_detection
    )
    mine: dict[int, Prediction] = {}
    for images, targets in tqdm(loader, desc="detect", file=sys.stderr, disable=not ctx.is_main, leave=False):
        outputs = model([image.to(ctx.device) for image in images])
        for target, output in zip(targets, outputs, strict=True):
            pred: Prediction = {
                "boxes": output["boxes"].float().cpu().numpy(),
                "scores": output["scores"].float().cpu().numpy(),
                "labels": output["labels"].cpu().numpy(),
            }
            if "masks" in output:
                pred["masks"] = encode_masks(output["masks"])
            mine[int(target["index"])] = pred
    merged: dict[int, Prediction] = {}
    for part in all_gather_object(mine, ctx):
        merged.update(part)
    # in dataset order, as one process has them: the VOC AP breaks ties in (rounded) score by
    # the order of the detections, which the rank order of the parts would otherwise change
    return {index: merged[index] for index in sorted(merged)}
