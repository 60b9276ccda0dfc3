"""Detection and segmentation metrics against independent implementations on the same predictions.

- COCO box and mask AP (``sslzoo.benchmarks.detection.evaluate.coco_metrics`` on
  ``coco_results``) against ``pycocotools.cocoeval.COCOeval`` driven here from the annotation
  file, with the boxes handed over as the ``[image_id, x, y, w, h, score, category]`` array of
  ``COCO.loadRes`` (another path than our result dicts);
- VOC07 AP50 / AP75 / AP (``voc_detection_metrics``) against py-faster-rcnn's ``voc_eval``
  (11-point AP, "+1" IoU, difficult ignored) written out below, reading the annotation XML itself
  and the detections from result files in detectron2's ``PascalVOCDetectionEvaluator`` format;
- mIoU (``intersect_and_union`` + ``mean_iou``) against ``torchmetrics``' ``MulticlassJaccardIndex``.

The predictions are the mini datasets' ground truth, jittered, partly dropped, with false
positives added (seeded; tests/parity/predictions.py), so that every AP lies well inside (0, 100).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sslzoo.benchmarks.detection.evaluate import coco_metrics, coco_results, voc_detection_metrics
from sslzoo.benchmarks.segmentation import intersect_and_union, mean_iou
from sslzoo.data.constants import VOC_CLASSES
from sslzoo.data.detection import CocoDetection, VocDetection
from tests.parity.predictions import coco_predictions, voc_predictions
from tests.parity.reference import Recorder, import_side

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs NumPy 2


# --------------------------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------------------------


def pycocotools_metrics(annotation_file: Path, predictions: dict[int, dict[str, Any]]) -> dict[str, float]:
    """COCOeval of the predictions, set up here from the annotation file."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(annotation_file))
    image_ids = sorted(gt.getImgIds())
    category_ids = sorted(gt.getCatIds())
    rows, segments = [], []
    for index, pred in predictions.items():
        for box, score, label, rle in zip(
            pred["boxes"], pred["scores"], pred["labels"], pred["masks"], strict=True
        ):
            x0, y0, x1, y1 = (float(v) for v in box)
            category = category_ids[int(label) - 1]
            rows.append([image_ids[index], x0, y0, x1 - x0, y1 - y0, float(score), category])
            segments.append({"image_id": image_ids[index], "category_id": category, "segmentation": rle,
                             "score": float(score)})  # fmt: skip
    out = {}
    for iou_type, detections, column in (("bbox", np.array(rows), "Box"), ("segm", segments, "Mask")):
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = COCOeval(gt, gt.loadRes(detections), iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        out.update({f"mAP({column})": 100 * evaluator.stats[0], f"AP50({column})": 100 * evaluator.stats[1],
                    f"AP75({column})": 100 * evaluator.stats[2]})  # fmt: skip
    return out


def test_coco_box_and_mask_ap_equal_cocoeval(mini: Any, record: Recorder) -> None:
    annotation_file = mini.root / "coco" / "annotations" / "instances_val2017.json"
    data = CocoDetection(mini.root / "coco" / "val2017", annotation_file, train=False)
    predictions = coco_predictions(data, seed=0)
    ours = coco_metrics(
        data.coco, coco_results(predictions, data.image_ids, data.category_ids), ("bbox", "segm")
    )
    reference = pycocotools_metrics(annotation_file, predictions)
    for key in reference:
        record.add("coco", metric=key, ours=ours[key], pycocotools=reference[key])
    assert set(ours) == set(reference)
    for key, value in reference.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key
        assert 5.0 < value < 95.0, key  # the predictions are neither hopeless nor perfect


# --------------------------------------------------------------------------------------------
# Pascal VOC 2007
# --------------------------------------------------------------------------------------------


def write_detectron2_results(predictions: dict[int, dict[str, Any]], image_ids: list[str], out: Path) -> None:
    """``{class}.txt`` lines ``image score x0 y0 x1 y1`` as detectron2's PascalVOCDetectionEvaluator
    writes them (1-based: ``x0 + 1, y0 + 1``; 3 and 1 decimals)."""
    lines: dict[str, list[str]] = {name: [] for name in VOC_CLASSES}
    for index, pred in predictions.items():
        for box, score, label in zip(pred["boxes"], pred["scores"], pred["labels"], strict=True):
            x0, y0, x1, y1 = (float(v) for v in box)
            lines[VOC_CLASSES[int(label) - 1]].append(
                f"{image_ids[index]} {score:.3f} {x0 + 1:.1f} {y0 + 1:.1f} {x1:.1f} {y1:.1f}"
            )
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in lines.items():
        (out / f"{name}.txt").write_text("".join(row + "\n" for row in rows))


def voc_eval(
    detections_file: Path, annotations: Path, image_ids: list[str], name: str, threshold: float
) -> float:
    """py-faster-rcnn ``lib/datasets/voc_eval.py`` ``voc_eval(..., use_07_metric=True)``, written out."""
    gt: dict[str, dict[str, Any]] = {}
    positives = 0
    for image_id in image_ids:
        objects = [
            o
            for o in ET.parse(annotations / f"{image_id}.xml").findall("object")
            if o.find("name").text == name
        ]
        boxes = np.array([[float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
                          for o in objects]).reshape(-1, 4)  # fmt: skip
        difficult = np.array([int(o.find("difficult").text) for o in objects], bool)
        gt[image_id] = {"boxes": boxes, "difficult": difficult, "seen": [False] * len(objects)}
        positives += int((~difficult).sum())
    rows = [line.split() for line in detections_file.read_text().splitlines()]
    if not rows:
        return 0.0
    confidence = np.array([float(r[1]) for r in rows])
    boxes = np.array([[float(v) for v in r[2:]] for r in rows])
    order = np.argsort(-confidence)
    tp, fp = np.zeros(len(rows)), np.zeros(len(rows))
    for d, k in enumerate(order):
        entry, box = gt[rows[k][0]], boxes[k]
        best, overlap = -1, -np.inf
        if len(entry["boxes"]):
            g = entry["boxes"]
            iw = np.maximum(np.minimum(g[:, 2], box[2]) - np.maximum(g[:, 0], box[0]) + 1.0, 0.0)
            ih = np.maximum(np.minimum(g[:, 3], box[3]) - np.maximum(g[:, 1], box[1]) + 1.0, 0.0)
            inter = iw * ih
            union = (
                (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
                + (g[:, 2] - g[:, 0] + 1.0) * (g[:, 3] - g[:, 1] + 1.0)
                - inter
            )
            overlaps = inter / union
            best, overlap = int(np.argmax(overlaps)), float(np.max(overlaps))
        if overlap > threshold:
            if not entry["difficult"][best]:
                if not entry["seen"][best]:
                    tp[d], entry["seen"][best] = 1.0, True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    recall = tp / float(positives)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    ap = 0.0
    for t in np.arange(0.0, 1.1, 0.1):
        ap += (np.max(precision[recall >= t]) if np.sum(recall >= t) else 0.0) / 11.0
    return float(ap)


def test_voc07_ap_equals_an_independent_eleven_point_evaluation(
    mini: Any, tmp_path: Path, record: Recorder
) -> None:
    voc07 = mini.root / "voc" / "VOCdevkit" / "VOC2007"
    data = VocDetection([(voc07, "test")])
    image_ids = [a.image_id for a in data.annotations]
    predictions = voc_predictions(data, seed=1)
    ours = voc_detection_metrics(predictions, data.annotations, VOC_CLASSES, use_07_metric=True)
    write_detectron2_results(predictions, image_ids, tmp_path / "results")
    per_threshold = {}
    for t in range(50, 100, 5):
        per_class = [
            100
            * voc_eval(tmp_path / "results" / f"{name}.txt", voc07 / "Annotations", image_ids, name, t / 100)
            for name in VOC_CLASSES
        ]
        per_threshold[t] = per_class
        assert ours["AP_per_threshold"][f"AP{t}"] == pytest.approx(float(np.mean(per_class)), abs=1e-9), t
    reference = {"AP50": np.mean(per_threshold[50]), "AP75": np.mean(per_threshold[75]),
                 "AP": np.mean([np.mean(v) for v in per_threshold.values()])}  # fmt: skip
    for key, value in reference.items():
        record.add("voc07_detection", metric=key, ours=ours[key], independent=value)
        assert ours[key] == pytest.approx(value, abs=1e-9), key
    for name, value in zip(VOC_CLASSES, per_threshold[50], strict=True):
        assert ours["per_class_AP50"][name] == pytest.approx(value, abs=1e-9), name
    assert 5.0 < reference["AP"] < reference["AP50"] < 95.0


# --------------------------------------------------------------------------------------------
# mIoU
# --------------------------------------------------------------------------------------------


def test_miou_equals_torchmetrics_jaccard_index(record: Recorder) -> None:
    """21 classes, 255 ignored, several images of different sizes summed; one class nowhere (NaN,
    left out of the mean), one only predicted (IoU 0)."""
    classification = import_side("torchmetrics.classification", "torchmetrics==1.9.0")
    num_classes = 21
    metric = classification.MulticlassJaccardIndex(
        num_classes=num_classes, ignore_index=255, average=None, zero_division=float("nan")
    )
    rng = np.random.default_rng(5)
    areas = np.zeros((4, num_classes), np.int64)
    for height, width in ((37, 50), (64, 41), (23, 23)):
        label = rng.integers(0, 19, (height, width))  # classes 19, 20 never labelled
        label[rng.random((height, width)) < 0.1] = 255
        pred = np.where(rng.random((height, width)) < 0.6, label, rng.integers(0, 20, (height, width)))
        pred[pred == 255] = 0  # a prediction is a class; class 20 is never predicted either
        areas += intersect_and_union(pred, label, num_classes)
        metric.update(torch.from_numpy(pred), torch.from_numpy(label))
    ours = mean_iou(areas)
    reference = (100 * metric.compute()).tolist()
    record.add("miou", ours=ours["mIoU"], torchmetrics=float(np.nanmean(reference)))
    np.testing.assert_allclose(ours["IoU"], reference, rtol=0, atol=1e-4, equal_nan=True)
    assert np.isnan(ours["IoU"][20]) and ours["IoU"][19] == 0.0
    assert ours["mIoU"] == pytest.approx(float(np.nanmean(reference)), abs=1e-4)
