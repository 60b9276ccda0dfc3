"""Detection benchmark: VOC and COCO AP against hand computations, the two detectors, the
iteration loop (resume), the detectron2 config and conversion, and tiny end-to-end runs."""

from __future__ import annotations

import argparse
import json
import pickle
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from pycocotools import mask as mask_utils
from torch import nn
from torchvision.ops import roi_align

from sslzoo.benchmarks.detection import detection_benchmark
from sslzoo.benchmarks.detection.detectron2_engine import (
    detectron2_available,
    detectron2_config,
    wait_for_file,
    write_detectron2_config,
)
from sslzoo.benchmarks.detection.evaluate import (
    coco_metrics,
    coco_results,
    encode_masks,
    voc_ap,
    voc_class_ap,
    voc_detection_metrics,
)
from sslzoo.benchmarks.detection.models import (
    AlignedRoIPooler,
    DetectionTransform,
    InputConfig,
    ModelConfig,
    build_faster_rcnn_c4,
    build_mask_rcnn_fpn,
)
from sslzoo.benchmarks.detection.train import (
    IterationSettings,
    load_detection_config,
    train_iterations,
)
from sslzoo.checkpoints import from_detectron2, random_backbone, save_detectron2
from sslzoo.data.constants import VOC_CLASSES
from sslzoo.data.detection import CocoDetection, VocAnnotation, VocObject
from sslzoo.errors import SslzooError
from sslzoo.runtime.loaders import IterationSampler
from sslzoo.steps import detection_benchmark as detection_step
from tests.benchmarks.protocols import reference_gpus_and_batch

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs NumPy 2

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "benchmarks"
TINY_MODEL = dict(
    pooler_resolution=4,
    anchor_sizes=(16, 32, 64),
    rpn_pre_nms_topk_train=200,
    rpn_pre_nms_topk_test=100,
    rpn_post_nms_topk_train=50,
    rpn_post_nms_topk_test=20,
    roi_batch_size_per_image=16,
    fpn_channels=32,
    box_fc_dim=64,
    mask_head_channels=16,
)
TINY_INPUT = InputConfig(min_size_train=(48, 64), max_size_train=100, min_size_test=64, max_size_test=100)


@pytest.fixture(scope="module")
def r18(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    path = tmp_path_factory.mktemp("backbone") / "r18.pth"
    return path, random_backbone(18, 0, path)


# --------------------------------------------------------------------------------------------
# VOC AP
# --------------------------------------------------------------------------------------------

# dog: two images; image 0 holds A and a difficult B, image 1 holds C and D.
A, B, C, D = [1, 1, 10, 10], [21, 21, 30, 30], [1, 1, 10, 10], [11, 11, 20, 20]
D_LOOSE = [11, 11, 20, 24]  # IoU with D = 100 / 140 = 0.714: a hit at 0.5..0.7, a miss from 0.75
DOG_GT = {
    0: (np.array([A, B], float), np.array([False, True])),
    1: (np.array([C, D], float), np.array([False, False])),
}
DOG_DETS = [  # (image, score, box): TP, difficult (ignored), FP, TP, duplicate FP, TP only below 0.714
    (0, 0.95, A), (0, 0.9, B), (1, 0.85, [30, 30, 40, 40]), (1, 0.8, C), (0, 0.7, A), (1, 0.6, D_LOOSE),
]  # fmt: skip
# At IoU 0.5 the ranked list is TP, -, FP, TP, FP, TP with 3 positives:
# recall 1/3 1/3 1/3 2/3 2/3 1, precision 1 1 .5 2/3 .5 .6.
AP07_AT_50 = (4 * 1 + 3 * (2 / 3) + 4 * 0.6) / 11  # levels 0..0.3 | 0.4..0.6 | 0.7..1.0
AREA_AT_50 = 1 / 3 * 1 + 1 / 3 * (2 / 3) + 1 / 3 * 0.6  # envelope 1, 2/3, 0.6 on the three recall steps
AP07_AT_75 = (4 * 1 + 3 * (2 / 3)) / 11  # the last detection misses: recall stops at 2/3


def test_voc_ap_eleven_point_and_area():
    recall = np.array([1, 1, 1, 2, 2, 3]) / 3
    precision = np.array([1, 1, 0.5, 2 / 3, 0.5, 0.6])
    assert voc_ap(recall, precision, use_07_metric=True) == pytest.approx(AP07_AT_50)
    assert voc_ap(recall, precision, use_07_metric=False) == pytest.approx(AREA_AT_50)
    # detectron2's 11 levels come from np.arange: 0.3 is 0.30000000000000004, so recall 0.3 misses it
    assert voc_ap(np.array([0.3]), np.array([1.0]), True) == pytest.approx(3 / 11)


def test_voc_class_ap_difficult_duplicates_and_thresholds():
    assert voc_class_ap(DOG_DETS, DOG_GT, 0.5, True) == pytest.approx(AP07_AT_50)
    assert voc_class_ap(DOG_DETS, DOG_GT, 0.5, False) == pytest.approx(AREA_AT_50)
    assert voc_class_ap(DOG_DETS, DOG_GT, 0.75, True) == pytest.approx(AP07_AT_75)
    # B not difficult: TP TP FP TP FP TP over 4 positives, recall 1/4 2/4 2/4 3/4 3/4 1, precision
    # 1 1 2/3 3/4 3/5 2/3 -> levels 0..0.5 score 1, 0.6..0.7 score 3/4, 0.8..1.0 score 2/3
    hard = {0: (DOG_GT[0][0], np.array([False, False])), 1: DOG_GT[1]}
    assert voc_class_ap(DOG_DETS, hard, 0.5, True) == pytest.approx((6 + 2 * 0.75 + 3 * (2 / 3)) / 11)
    no_positives = {0: (np.zeros((0, 4)), np.zeros(0, bool))}
    assert np.isnan(voc_class_ap(DOG_DETS, no_positives, 0.5, True))


def _annotations() -> list[VocAnnotation]:
    dog, cat = "dog", "cat"
    return [
        VocAnnotation(
            "0",
            50,
            50,
            (
                VocObject(dog, tuple(A), False),
                VocObject(dog, tuple(B), True),
                VocObject(cat, (5, 20, 40, 45), False),
            ),
        ),
        VocAnnotation("1", 50, 50, (VocObject(dog, tuple(C), False), VocObject(dog, tuple(D), False))),
    ]


def _as_predictions(detections: list[tuple[int, float, list[float], str]]) -> dict[int, dict]:
    """1-based VOC boxes -> the model's 0-based coordinates (x0 - 1, y0 - 1, x1, y1)."""
    out: dict[int, dict] = {
        0: {"boxes": [], "scores": [], "labels": []},
        1: {"boxes": [], "scores": [], "labels": []},
    }
    for image, score, box, name in detections:
        out[image]["boxes"].append([box[0] - 1, box[1] - 1, box[2], box[3]])
        out[image]["scores"].append(score)
        out[image]["labels"].append(VOC_CLASSES.index(name) + 1)
    return {
        k: {key: np.array(v, float).reshape(-1, 4) if key == "boxes" else np.array(v) for key, v in p.items()}
        for k, p in out.items()
    }


def test_voc_detection_metrics_hand_values_and_perfect():
    dets = [(i, s, b, "dog") for i, s, b in DOG_DETS] + [(0, 0.5, [5, 20, 40, 45], "cat")]
    scores = voc_detection_metrics(_as_predictions(dets), _annotations(), VOC_CLASSES)
    # cat is perfect (AP 1 everywhere), the 18 classes without boxes are left out
    assert scores["AP50"] == pytest.approx(100 * (AP07_AT_50 + 1) / 2)
    assert scores["AP75"] == pytest.approx(100 * (AP07_AT_75 + 1) / 2)
    per_threshold = [AP07_AT_50] * 5 + [AP07_AT_75] * 5  # D_LOOSE hits at 0.50..0.70 only
    assert scores["AP"] == pytest.approx(100 * np.mean([(v + 1) / 2 for v in per_threshold]))
    assert scores["per_class_AP50"]["cat"] == pytest.approx(100.0) and np.isnan(
        scores["per_class_AP50"]["bus"]
    )
    perfect = [(0, 0.9, A, "dog"), (1, 0.8, C, "dog"), (1, 0.7, D, "dog"), (0, 0.6, [5, 20, 40, 45], "cat")]
    scores = voc_detection_metrics(_as_predictions(perfect), _annotations(), VOC_CLASSES)
    assert (scores["AP50"], scores["AP"], scores["AP75"]) == pytest.approx((100.0, 100.0, 100.0))


def test_voc_ties_in_score_break_in_image_order_whatever_the_order_of_the_dict():
    # Equal scores: a false positive in image 0, a hit (C) in image 1. In image order FP, TP:
    # precision 0, 1/2 at recall 0, 1/3 -> 4 of the 11 levels at 1/2 (1 the other way round),
    # also when the predictions come in another order (gathered from several processes).
    dets = [(0, 0.5, [30, 30, 40, 40], "dog"), (1, 0.5, C, "dog")]
    forward = _as_predictions(dets)
    for predictions in (forward, {1: forward[1], 0: forward[0]}):
        scores = voc_detection_metrics(predictions, _annotations(), VOC_CLASSES)
        assert scores["per_class_AP50"]["dog"] == pytest.approx(100 * 4 * 0.5 / 11)


# --------------------------------------------------------------------------------------------
# COCO AP
# --------------------------------------------------------------------------------------------


def _square(x: float, y: float, w: float, h: float) -> list[list[float]]:
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def _coco_gt(tmp_path: Path):
    anns = [(1, 1, 1, [10, 10, 20, 20]), (2, 2, 1, [5, 5, 30, 15]), (3, 2, 2, [40, 10, 10, 10])]
    doc = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": 60, "height": 40} for i in (1, 2)],
        "annotations": [
            {
                "id": a,
                "image_id": im,
                "category_id": c,
                "bbox": b,
                "area": float(b[2] * b[3]),
                "iscrowd": 0,
                "segmentation": _square(*b),
            }
            for a, im, c, b in anns
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    images = tmp_path / "images"
    images.mkdir()
    for i in (1, 2):
        Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(images / f"{i:012d}.jpg")
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    return CocoDetection(images, path, train=False), anns


def _rle(segmentation: list[list[float]]) -> dict:
    rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, 40, 60))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def test_coco_metrics_perfect_and_one_miss(tmp_path):
    data, anns = _coco_gt(tmp_path)
    index_of = {image_id: k for k, image_id in enumerate(data.image_ids)}

    def predictions(keep: list[int]) -> dict[int, dict]:
        out: dict[int, dict] = {}
        for a, image_id, category, (x, y, w, h) in anns:
            if a not in keep:
                continue
            p = out.setdefault(index_of[image_id], {"boxes": [], "scores": [], "labels": [], "masks": []})
            p["boxes"].append([x, y, x + w, y + h])
            p["scores"].append(0.9)
            p["labels"].append(data.label_of[category])
            p["masks"].append(_rle(_square(x, y, w, h)))
        return {k: {**v, "boxes": np.array(v["boxes"], float)} for k, v in out.items()}

    perfect = coco_results(predictions([1, 2, 3]), data.image_ids, data.category_ids)
    assert perfect[0]["bbox"] == [10.0, 10.0, 20.0, 20.0] and perfect[0]["category_id"] == 1
    scores = coco_metrics(data.coco, perfect, ("bbox", "segm"))
    assert scores == pytest.approx(
        {f"{m}({t})": 100.0 for m in ("mAP", "AP50", "AP75") for t in ("Box", "Mask")}
    )
    # category 1 loses one of its two boxes: recall 0.5 at precision 1 -> 51 of COCO's 101 recall
    # levels (0, 0.01, ..., 0.5) score 1; category 2 stays perfect
    missed = coco_results(predictions([1, 3]), data.image_ids, data.category_ids)
    expected = 100 * (51 / 101 + 1) / 2
    scores = coco_metrics(data.coco, missed, ("bbox", "segm"))
    assert scores == pytest.approx(
        {f"{m}({t})": expected for m in ("mAP", "AP50", "AP75") for t in ("Box", "Mask")}
    )
    assert coco_metrics(data.coco, [], ("bbox",)) == {"mAP(Box)": 0.0, "AP50(Box)": 0.0, "AP75(Box)": 0.0}


def test_ground_truth_as_model_output_scores_100_and_masks_below_half_score_0(tmp_path):
    # the path of a model's output: boxes as xyxy, mask probabilities [K, 1, H, W] -> RLEs
    data, _ = _coco_gt(tmp_path)

    def as_output(low: float, high: float) -> dict[int, dict]:
        out = {}
        for index in range(len(data)):
            target = data.target(index)
            probs = target["masks"].float()[:, None] * (high - low) + low
            out[index] = {
                "boxes": target["boxes"].numpy(),
                "scores": np.full(len(target["boxes"]), 0.9),
                "labels": target["labels"].numpy(),
                "masks": encode_masks(probs),
            }
        return out

    perfect = coco_results(as_output(0.1, 0.9), data.image_ids, data.category_ids)
    assert coco_metrics(data.coco, perfect, ("bbox", "segm"), data.image_ids) == pytest.approx(
        {f"{m}({t})": 100.0 for m in ("mAP", "AP50", "AP75") for t in ("Box", "Mask")}
    )
    empty = coco_results(as_output(0.1, 0.45), data.image_ids, data.category_ids)  # all < 0.5
    scores = coco_metrics(data.coco, empty, ("bbox", "segm"), data.image_ids)
    assert scores["mAP(Box)"] == pytest.approx(100.0) and scores["mAP(Mask)"] == 0.0


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def _batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 60, 80, generator=generator), torch.rand(3, 70, 50, generator=generator)]
    targets = [
        {"boxes": torch.tensor([[5.0, 5.0, 40.0, 45.0]]), "labels": torch.tensor([1])},
        {
            "boxes": torch.tensor([[10.0, 10.0, 40.0, 60.0], [0.0, 0.0, 20.0, 20.0]]),
            "labels": torch.tensor([2, 3]),
        },
    ]
    for image, target in zip(images, targets, strict=True):
        masks = torch.zeros(len(target["boxes"]), *image.shape[1:], dtype=torch.uint8)
        for k, (x0, y0, x1, y1) in enumerate(target["boxes"].int().tolist()):
            masks[k, y0:y1, x0:x1] = 1
        target["masks"] = masks
    return images, targets


def test_faster_rcnn_c4_trains_and_detects(r18):
    _, state_dict = r18
    torch.manual_seed(0)
    model = build_faster_rcnn_c4(
        3, ModelConfig(arch="faster_rcnn_c4", **TINY_MODEL), TINY_INPUT, state_dict=state_dict
    )
    # backbone weights loaded: res2..res4 in the body, res5 in the box head
    torch.testing.assert_close(model.backbone.conv1.weight, state_dict["conv1.weight"])
    torch.testing.assert_close(model.backbone.layer3[1].conv2.weight, state_dict["layer3.1.conv2.weight"])
    box_head = model.roi_heads.box_head
    torch.testing.assert_close(box_head.res5[0].conv1.weight, state_dict["layer4.0.conv1.weight"])
    # MoCo's extra norm after res5
    assert isinstance(box_head.norm, nn.BatchNorm2d) and box_head.norm.num_features == 512
    assert (
        isinstance(model.roi_heads.box_roi_pool, AlignedRoIPooler)
        and model.roi_heads.box_roi_pool.output_size == 4
    )
    assert model.roi_heads.box_predictor.cls_score.out_features == 4  # 3 classes + background
    images, targets = _batch()
    model.train()
    losses = model(images, [{k: v for k, v in t.items() if k != "masks"} for t in targets])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    # FREEZE_AT 0: the stem trains too, and so does the extra norm
    assert all(p.requires_grad for p in model.parameters())
    assert model.backbone.conv1.weight.grad.abs().sum() > 0 and box_head.norm.weight.grad is not None
    model.eval()
    with torch.no_grad():
        outputs = model(images)
    for image, out in zip(images, outputs, strict=True):
        assert set(out) == {"boxes", "scores", "labels"}
        boxes = out["boxes"]
        assert (boxes[:, 2] <= image.shape[2] + 1e-3).all() and (boxes[:, 3] <= image.shape[1] + 1e-3).all()
        assert len(boxes) <= 100 and (out["scores"] >= 0.05).all()


def test_mask_rcnn_fpn_trains_and_segments(r18):
    _, state_dict = r18
    torch.manual_seed(0)
    fpn = ModelConfig(arch="mask_rcnn_fpn", **{**TINY_MODEL, "anchor_sizes": (8, 16, 32, 64, 128)})
    model = build_mask_rcnn_fpn(3, fpn, TINY_INPUT, state_dict=state_dict)
    torch.testing.assert_close(
        model.backbone.body.layer4[0].conv1.weight, state_dict["layer4.0.conv1.weight"]
    )
    fpn_norms = [m for m in model.backbone.fpn.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(fpn_norms) == 8  # a norm in every lateral and output conv (FPN.NORM)
    images, targets = _batch()
    model.train()
    losses = model(images, targets)
    assert "loss_mask" in losses and torch.isfinite(sum(losses.values()))
    sum(losses.values()).backward()
    assert model.backbone.body.conv1.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        outputs = model(images)
    assert outputs[1]["masks"].shape[1:] == (1, 70, 50)


def test_aligned_pooler_levels_and_alignment():
    pooler = AlignedRoIPooler(["p2", "p3", "p4", "p5"], 2)
    features = {f"p{k}": torch.full((1, 1, 512 // 2**k, 512 // 2**k), float(k)) for k in (2, 3, 4, 5)}
    sides = [20.0, 112.0, 224.0, 448.0]  # sqrt(area) -> level floor(4 + log2(side / 224)), clamped
    boxes = torch.tensor([[10.0, 10.0, 10.0 + s, 10.0 + s] for s in sides])
    pooled = pooler(features, [boxes], [(512, 512)])
    assert pooled[:, 0, 0, 0].tolist() == [2.0, 3.0, 4.0, 5.0]
    single = AlignedRoIPooler(["res4"], 3)
    feature = torch.randn(2, 4, 8, 8)
    boxes = [torch.tensor([[0.0, 0.0, 64.0, 64.0]]), torch.tensor([[16.0, 8.0, 40.0, 60.0]])]
    expected = roi_align(feature, boxes, 3, 1 / 16, 0, aligned=True)
    torch.testing.assert_close(single({"res4": feature}, boxes, [(128, 128), (128, 100)]), expected)


def test_transform_sizes_train_and_test():
    transform = DetectionTransform(TINY_INPUT)
    image = torch.rand(3, 60, 80)
    transform.eval()
    batch, _ = transform([image])
    assert batch.image_sizes == [(64, 85)]  # min(64 / 60, 100 / 80) = 1.0667
    transform.train()
    sizes = set()
    for seed in range(12):
        torch.manual_seed(seed)
        batch, _ = transform(
            [image], [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([1])}]
        )
        sizes.add(batch.image_sizes[0][0])
    assert sizes == {48, 64}
    mean = torch.tensor([123.675, 116.28, 103.53]) / 255
    assert torch.allclose(torch.tensor(transform.image_mean), mean)


# --------------------------------------------------------------------------------------------
# Protocol files, schedule, iteration loop
# --------------------------------------------------------------------------------------------


def test_protocol_files_load_and_typos_fail(tmp_path):
    for name in (
        "det_voc0712",
        "det_voc0712_mini",
        "det_voc0712_moco",
        "det_voc0712_moco_mini",
        "det_coco",
        "det_coco_mini",
    ):
        cfg, _ = load_detection_config(CONFIG_DIR / f"{name}.yaml")
        assert cfg.engine == "torchvision" and cfg.input.pixel_std == (58.395, 57.12, 57.375)
    voc, _ = load_detection_config(CONFIG_DIR / "det_voc0712_moco.yaml")
    assert voc.model.arch == "faster_rcnn_c4" and voc.model.pooler_resolution == 14 and voc.model.extra_norm
    assert voc.input.min_size_train == tuple(range(480, 801, 32)) and voc.input.min_size_test == 800
    assert (voc.solver.batch_size, voc.solver.base_lr, voc.solver.max_iter, voc.solver.steps) == (
        16,
        0.02,
        24000,
        (18000, 22000),
    )
    coco, _ = load_detection_config(CONFIG_DIR / "det_coco.yaml")
    assert coco.model.arch == "mask_rcnn_fpn" and coco.input.min_size_train == tuple(range(640, 801, 32))
    assert (coco.solver.max_epochs, coco.solver.steps) == (12, (8, 11))
    raw = yaml.safe_load((CONFIG_DIR / "det_voc0712_mini.yaml").read_text())
    raw["solver"]["base_lr_typo"] = 1
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SslzooError, match="typo.yaml: solver.*base_lr_typo"):
        load_detection_config(tmp_path / "typo.yaml")
    raw["solver"].pop("base_lr_typo")
    raw["input"]["min_size_train"] = [96, "big"]
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SslzooError, match="min_size_train"):
        load_detection_config(tmp_path / "typo.yaml")


def test_protocol_gpus_are_the_reference_process_counts_and_bad_ones_are_named(tmp_path):
    for name in ("det_voc0712", "det_voc0712_moco", "det_coco"):
        cfg, _ = load_detection_config(CONFIG_DIR / f"{name}.yaml")
        gpus, per_gpu = reference_gpus_and_batch(CONFIG_DIR / f"{name}.yaml")
        assert (cfg.gpus, cfg.solver.batch_size) == (gpus, gpus * per_gpu), name
    raw = yaml.safe_load((CONFIG_DIR / "det_voc0712_mini.yaml").read_text())
    assert load_detection_config(CONFIG_DIR / "det_voc0712_mini.yaml")[0].gpus == raw["gpus"] == 1
    for value, message in (
        (2.5, "gpus: 2.5 is not of type 'integer'"),
        (3, r"solver.batch_size: 4 .* gpus 3"),
    ):
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**raw, "gpus": value}))
        with pytest.raises(SslzooError, match=f"bad.yaml: {message}"):
            load_detection_config(tmp_path / "bad.yaml")


def test_warmup_multistep_schedule_is_detectron2s():
    schedule = load_detection_config(CONFIG_DIR / "det_voc0712_moco.yaml")[0].solver.schedule()
    assert schedule.lr(0.02, 0) == pytest.approx(0.02 * 0.001)
    assert schedule.lr(0.02, 50) == pytest.approx(0.02 * (0.001 * 0.5 + 0.5))
    assert [schedule.lr(0.02, i) for i in (100, 17999, 18000, 21999, 22000, 23999)] == pytest.approx(
        [0.02, 0.02, 0.002, 0.002, 0.0002, 0.0002]
    )


def test_iteration_sampler_does_not_depend_on_the_start():
    full = list(IterationSampler(7, 3, 1, 2, 3, 0, 6))
    assert len(full) == 18 and {i for i, _ in full} <= set(range(7))
    assert list(IterationSampler(7, 3, 1, 2, 3, 4, 6)) == full[12:]
    # the two ranks read disjoint halves of each epoch
    rank0 = [i for i, _ in IterationSampler(8, 3, 0, 2, 4, 0, 1)]
    rank1 = [i for i, _ in IterationSampler(8, 3, 1, 2, 4, 0, 1)]
    assert sorted(rank0 + rank1) == list(range(8))


class _Toy(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, item):
        index, seed = item
        noise = float(np.random.default_rng(seed).normal())
        return torch.tensor([float(index), 1.0]), torch.tensor([2.0 * index + noise])


def _fit(work_dir: Path, fail_at: int | None = None, fingerprint: dict | None = None):
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    calls = {"n": 0}

    def losses(runner, batch):
        calls["n"] += 1
        if fail_at is not None and calls["n"] == fail_at:
            raise KeyboardInterrupt  # the job is killed
        x, y = batch
        return {"mse": ((runner(x) - y) ** 2).mean()}

    settings = IterationSettings(max_iter=6, batch_size=4, workers=0, checkpoint_period=2)
    summary = train_iterations(
        model,
        optimizer,
        _Toy(),
        settings,
        lambda base, i: base * (1 - i / 6),
        losses,
        work_dir,
        fingerprint or {"run": 1},
        seed=5,
    )
    return model, summary


def test_train_iterations_resume_reproduces_the_run(tmp_path):
    straight, summary = _fit(tmp_path / "a")
    assert summary == {"iterations": 6, "resumed_from_iteration": 0, "per_process_batch": 4}
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "b", fail_at=5)  # dies in iteration 5; latest.pth holds iteration 4
    resumed, summary = _fit(tmp_path / "b")
    assert summary["resumed_from_iteration"] == 4
    torch.testing.assert_close(resumed.weight, straight.weight)
    log = [json.loads(line) for line in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log] == [1, 2, 3, 4, 5, 6] and log[0]["lr"] == pytest.approx(0.01)
    _, summary = _fit(tmp_path / "b", fingerprint={"run": 2})  # other settings: start over
    assert summary["resumed_from_iteration"] == 0 and list((tmp_path / "b").glob("superseded-*/latest.pth"))


# --------------------------------------------------------------------------------------------
# detectron2 engine
# --------------------------------------------------------------------------------------------


def _moco_coco(tmp_path: Path) -> Path:
    """MoCo's coco_R_50_FPN_1x_moco.yaml as a protocol file: det_coco.yaml with detectron2's FPN
    heads and 1x schedule (2 FC box head without norms, 90k iterations, steps 60k/80k)."""
    raw = yaml.safe_load((CONFIG_DIR / "det_coco.yaml").read_text())
    for key in ("box_head", "box_conv_dim", "head_norm", "box_loss"):
        del raw["model"][key]
    del raw["solver"]["max_epochs"]
    raw["solver"].update(max_iter=90000, steps=[60000, 80000], warmup_iters=1000, weight_decay_norm=0.0)
    raw["test"]["precise_bn_iters"] = 200
    path = tmp_path / "coco_R_50_FPN_1x_moco.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_detectron2_config_has_the_moco_values(tmp_path):
    cfg, _ = load_detection_config(CONFIG_DIR / "det_voc0712_moco.yaml")
    config = detectron2_config(cfg, 50, tmp_path / "backbone.pkl", tmp_path / "out", seed=3)
    write_detectron2_config(config, tmp_path / "voc.yaml")
    d2 = yaml.safe_load((tmp_path / "voc.yaml").read_text())
    model = d2["MODEL"]
    assert model["WEIGHTS"] == str(tmp_path / "backbone.pkl") and model["MASK_ON"] is False
    assert model["RESNETS"]["NORM"] == "SyncBN" and model["RESNETS"]["STRIDE_IN_1X1"] is False
    assert model["RESNETS"]["DEPTH"] == 50 and model["RESNETS"]["OUT_FEATURES"] == ["res4"]
    assert model["BACKBONE"] == {"NAME": "build_resnet_backbone", "FREEZE_AT": 0}
    assert model["PIXEL_MEAN"] == [123.675, 116.28, 103.53] and model["PIXEL_STD"] == [58.395, 57.12, 57.375]
    assert model["ROI_HEADS"]["NAME"] == "Res5ROIHeadsExtraNorm" and model["ROI_HEADS"]["NUM_CLASSES"] == 20
    assert (
        model["ROI_BOX_HEAD"]["POOLER_RESOLUTION"] == 14
        and model["ROI_BOX_HEAD"]["POOLER_TYPE"] == "ROIAlignV2"
    )
    assert model["RPN"]["PRE_NMS_TOPK_TEST"] == 6000 and model["RPN"]["POST_NMS_TOPK_TEST"] == 1000
    assert d2["INPUT"]["FORMAT"] == "RGB" and d2["INPUT"]["MIN_SIZE_TRAIN"] == list(range(480, 801, 32))
    assert d2["INPUT"]["MIN_SIZE_TEST"] == 800 and d2["INPUT"]["MAX_SIZE_TRAIN"] == 1333
    solver = d2["SOLVER"]
    assert (solver["IMS_PER_BATCH"], solver["BASE_LR"], solver["MAX_ITER"]) == (16, 0.02, 24000)
    assert solver["STEPS"] == [18000, 22000] and solver["WARMUP_ITERS"] == 100
    assert d2["TEST"]["PRECISE_BN"] == {"ENABLED": True, "NUM_ITER": 200}
    assert (
        d2["DATASETS"]["TRAIN"] == ["sslzoo_voc_2007_trainval", "sslzoo_voc_2012_trainval"]
        and d2["SEED"] == 3
    )

    coco_cfg, _ = load_detection_config(_moco_coco(tmp_path))
    coco = detectron2_config(coco_cfg, 50, "w.pkl", "out")
    assert coco["MODEL"]["MASK_ON"] is True and coco["MODEL"]["FPN"]["NORM"] == "SyncBN"
    assert coco["MODEL"]["RESNETS"]["NORM"] == "SyncBN" and coco["MODEL"]["BACKBONE"]["FREEZE_AT"] == 0
    assert coco["MODEL"]["BACKBONE"]["NAME"] == "build_resnet_fpn_backbone"
    assert coco["MODEL"]["ANCHOR_GENERATOR"]["SIZES"] == [[32], [64], [128], [256], [512]]
    assert coco["SOLVER"]["STEPS"] == [60000, 80000] and coco["SOLVER"]["MAX_ITER"] == 90000
    assert coco["INPUT"]["MIN_SIZE_TRAIN"] == [640, 672, 704, 736, 768, 800]
    assert detectron2_config(coco_cfg, 18, "w.pkl", "out")["MODEL"]["RESNETS"]["RES2_OUT_CHANNELS"] == 64
    with pytest.raises(SslzooError, match="ResNet-50 or deeper"):
        detectron2_config(cfg, 18, "w.pkl", "out")


def test_detectron2_weights_round_trip(r18, tmp_path):
    _, state_dict = r18
    save_detectron2(state_dict, tmp_path / "w.pkl")
    checkpoint = pickle.loads((tmp_path / "w.pkl").read_bytes())
    assert checkpoint["matching_heuristics"] is True
    assert "stem.conv1.norm.weight" in checkpoint["model"] and "stem.bn1.weight" not in checkpoint["model"]
    assert (
        "stem.conv1.weight" in checkpoint["model"] and "res5.1.conv2.norm.running_var" in checkpoint["model"]
    )
    back = from_detectron2(checkpoint)
    expected = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
    assert set(back) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(back[key], value)


@pytest.mark.skipif(detectron2_available(), reason="detectron2 is installed here")
def test_detectron2_engine_without_detectron2_is_a_clear_error(tmp_path, r18):
    raw = yaml.safe_load((CONFIG_DIR / "det_voc0712_mini.yaml").read_text())
    raw["engine"] = "detectron2"
    raw["test"].pop("max_images", None)  # detectron2 evaluates every test image
    config = tmp_path / "d2.yaml"
    config.write_text(yaml.safe_dump(raw))
    voc = tmp_path / "VOC2007"
    voc.mkdir()
    with pytest.raises(SslzooError, match="detectron2 is not installed.*engine: torchvision"):
        detection_benchmark(
            r18[0],
            config,
            tmp_path / "w",
            tmp_path / "m.json",
            benchmark_name="det_voc0712",
            model_name="random",
            voc07=voc,
            voc12=voc,
        )


# --------------------------------------------------------------------------------------------
# End to end (tiny)
# --------------------------------------------------------------------------------------------


def _voc_dir(root: Path, ids: list[str], split: str) -> Path:
    rng = np.random.default_rng(len(ids))
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image_id in ids:
        pixels = rng.integers(0, 60, (48, 64, 3)).astype(np.uint8)
        pixels[8:40, 10:42] = (200, 40, 40)
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{image_id}.jpg")
        (root / "Annotations" / f"{image_id}.xml").write_text(
            "<annotation><size><width>64</width><height>48</height></size><object><name>dog</name>"
            "<difficult>0</difficult><bndbox><xmin>11</xmin><ymin>9</ymin><xmax>42</xmax><ymax>40</ymax>"
            "</bndbox></object></annotation>"
        )
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def test_voc_benchmark_end_to_end_and_rerun(tmp_path, r18):
    voc07 = _voc_dir(tmp_path / "VOC2007", ["000001", "000002", "000003"], "trainval")
    _voc_dir(voc07, ["000004", "000005"], "test")
    voc12 = _voc_dir(tmp_path / "VOC2012", ["2012_000001"], "trainval")
    raw = yaml.safe_load((CONFIG_DIR / "det_voc0712_mini.yaml").read_text())
    raw["input"].update(min_size_train=[48], min_size_test=48, max_size_train=64, max_size_test=64)
    raw["solver"].update(batch_size=2, max_iter=2, steps=[1, 2], warmup_iters=1, checkpoint_period=1)
    raw["model"].update(roi_batch_size_per_image=8, rpn_post_nms_topk_train=20, rpn_post_nms_topk_test=10)
    raw.update(workers=0, test={"precise_bn_iters": 1, "batch_size": 2})
    config = tmp_path / "det.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "results" / "det_voc0712" / "random" / "metrics.json"
    args = argparse.Namespace(
        backbone=str(r18[0]),
        config=str(config),
        benchmark="det_voc0712",
        model="random",
        work_dir=str(tmp_path / "work"),
        out=str(out),
        seed=0,
        voc07=str(voc07),
        voc12=str(voc12),
        coco_images_train=None,
        coco_ann_train=None,
        coco_images_val=None,
        coco_ann_val=None,
    )
    detection_step.main(args)
    metrics = json.loads(out.read_text())
    assert set(metrics) == {"AP50", "AP", "AP75", "meta"}
    assert all(0.0 <= metrics[k] <= 100.0 for k in ("AP50", "AP", "AP75"))
    meta = metrics["meta"]
    assert (meta["benchmark"], meta["model"], meta["engine"], meta["iterations"]) == (
        "det_voc0712",
        "random",
        "torchvision",
        2,
    )
    assert meta["num_train"] == 4 and meta["num_test"] == meta["num_test_split"] == 2
    run = meta["run"]  # one process took the whole batch of 2, as the mini protocol's one process
    assert (run["world_size"], run["per_process_batch"], run["total_batch"], run["seed"]) == (1, 2, 2, 0)
    assert run["protocol"]["gpus"] == raw["gpus"] and run["protocol"]["total_batch"] == 2
    assert run["protocol"]["config"] == str(config) and run["torch"] == torch.__version__
    assert not (tmp_path / "work" / "latest.pth").exists()  # the output written, the resume state goes
    detection_step.main(args)  # a rerun trains again, to the same numbers
    again = json.loads(out.read_text())
    assert again["meta"]["resumed_from_iteration"] == 0
    assert (again["AP50"], again["AP"]) == (metrics["AP50"], metrics["AP"])
    with pytest.raises(SslzooError, match="--voc12"):
        detection_benchmark(
            r18[0],
            config,
            tmp_path / "work",
            out,
            benchmark_name="det_voc0712",
            model_name="random",
            voc07=voc07,
        )


@pytest.mark.parametrize("protocol", ["det_coco_mini", "det_coco_c4_moco_mini"])
def test_coco_benchmark_end_to_end(tmp_path, r18, protocol):
    data, _ = _coco_gt(tmp_path)
    raw = yaml.safe_load((CONFIG_DIR / f"{protocol}.yaml").read_text())
    raw["model"].update(mask_head_channels=16, roi_batch_size_per_image=8)
    if raw["model"]["arch"] == "mask_rcnn_fpn":
        raw["model"].update(fpn_channels=32, box_fc_dim=64, box_conv_dim=16)
    raw["input"].update(min_size_train=[40], min_size_test=40, max_size_train=60, max_size_test=60)
    # one epoch (solver.max_epochs): as many iterations as batches of 2 in the training set
    del raw["solver"]["max_iter"]
    raw["solver"].update(batch_size=2, max_epochs=1, steps=[1], warmup_iters=1)
    raw.update(workers=0, test={"precise_bn_iters": 0, "batch_size": 2, "max_images": 1})
    config = tmp_path / "coco.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "det_coco" / "random" / "metrics.json"
    ann = data.annotation_file
    metrics = detection_benchmark(
        r18[0],
        config,
        tmp_path / "work",
        out,
        benchmark_name="det_coco",
        model_name="random",
        coco_images_train=data.image_dir,
        coco_ann_train=ann,
        coco_images_val=data.image_dir,
        coco_ann_val=ann,
    )
    columns = {"mAP(Box)", "AP50(Box)", "AP75(Box)", "mAP(Mask)", "AP50(Mask)", "AP75(Mask)"}
    assert metrics is not None and set(metrics) == columns | {"meta"}
    meta = json.loads(out.read_text())["meta"]
    assert meta["num_classes"] == 2 and meta["num_train"] >= 2
    assert meta["max_iter"] == meta["iterations"] == -(-meta["num_train"] // 2)
    assert (meta["num_test"], meta["num_test_split"]) == (1, 2)  # test.max_images: the first of two


def test_rank0_wait_ends_when_the_file_holds_the_text_and_fails_clearly_after_its_timeout(tmp_path):
    target = tmp_path / "detectron2_config.yaml"
    target.write_text("old: 1\n")
    writer = threading.Timer(0.2, target.write_text, args=("new: 2\n",))
    writer.start()
    start = time.monotonic()
    wait_for_file(target, "new: 2\n", "the config", timeout_s=10.0, poll_s=0.05)
    assert 0.15 <= time.monotonic() - start < 5.0
    writer.join()
    start = time.monotonic()
    with pytest.raises(
        SslzooError, match=r"waited 0.3 s for the config in .*detectron2_config.yaml, which still holds other"
    ):
        wait_for_file(target, "newer: 3\n", "the config", timeout_s=0.3, poll_s=0.05)
    assert 0.3 <= time.monotonic() - start < 3.0
    with pytest.raises(SslzooError, match=r"missing.yaml, which still does not exist"):
        wait_for_file(tmp_path / "missing.yaml", "x", "the config", timeout_s=0.1, poll_s=0.05)
