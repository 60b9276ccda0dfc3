"""Segmentation benchmark: mIoU against a hand computation, the dilated backbone, the FCN heads
and losses, sliding-window inference, the poly schedule and tiny end-to-end runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torch import nn

from sslzoo.benchmarks.segmentation import (
    FCNConfig,
    FCNSegmentor,
    SegTrainSettings,
    dilate_resnet,
    intersect_and_union,
    load_segmentation_config,
    mean_iou,
    predict_labels,
    segmentation_losses,
    slide_logits,
)
from sslzoo.checkpoints import random_backbone
from sslzoo.data import mini
from sslzoo.errors import SslzooError
from sslzoo.models.backbone import ResNetBackbone
from sslzoo.steps import segmentation_benchmark as segmentation_step
from tests.benchmarks.protocols import reference_gpus_and_batch

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "benchmarks"
TINY = FCNConfig(channels=16, aux_channels=8)


def test_mean_iou_hand_computation_with_ignore_and_absent_classes():
    # 4 classes; class 3 appears nowhere (NaN, left out); class 2 is predicted but never labelled (IoU 0)
    label = np.array([[0, 0, 1, 1], [0, 255, 1, 255]])
    pred = np.array([[0, 1, 1, 2], [0, 2, 0, 3]])  # the two 255 pixels (predicted 2 and 3) do not count
    areas = intersect_and_union(pred, label, 4)
    # class 0: pred {(0,0),(1,0),(1,2)} label {(0,0),(0,1),(1,0)} -> inter 2, union 4
    # class 1: pred {(0,1),(0,2)}       label {(0,2),(0,3),(1,2)} -> inter 1, union 4
    # class 2: pred {(0,3)}             label {}                  -> inter 0, union 1
    np.testing.assert_array_equal(areas, [[2, 1, 0, 0], [4, 4, 1, 0], [3, 2, 1, 0], [3, 3, 0, 0]])
    second = intersect_and_union(np.array([[1, 1]]), np.array([[1, 0]]), 4)  # areas add up over images
    scores = mean_iou(areas + second)
    iou = [2 / 5, 2 / 6, 0.0]  # class 0: (2 + 0) / (4 + 1); class 1: (1 + 1) / (4 + 2)
    assert scores["mIoU"] == pytest.approx(100 * np.mean(iou))
    assert scores["IoU"][:3] == pytest.approx([100 * v for v in iou]) and np.isnan(scores["IoU"][3])
    assert scores["aAcc"] == pytest.approx(100 * 4 / 8)


@pytest.mark.parametrize("depth", [18, 50])
def test_dilated_backbone_has_output_stride_8(depth):
    backbone = dilate_resnet(ResNetBackbone(depth)).eval()
    with torch.no_grad():
        stage4, stage5 = backbone(torch.zeros(1, 3, 32, 48), (4, 5))
    assert stage4.shape[-2:] == (4, 6) and stage5.shape[-2:] == (4, 6)
    layer3, layer4 = backbone.layer3, backbone.layer4
    if depth == 50:  # contract_dilation: first block at half the dilation
        assert [b.conv2.dilation[0] for b in layer3] == [1] + [2] * 5
        assert [b.conv2.dilation[0] for b in layer4] == [2, 4, 4]
    else:  # basic blocks: conv1 dilated, conv2 not (mmseg's BasicBlock)
        assert [b.conv1.dilation[0] for b in layer4] == [2, 4] and [b.conv2.dilation[0] for b in layer4] == [
            1,
            1,
        ]


def test_dilation_equals_torchvisions_replace_stride_with_dilation():
    ours = dilate_resnet(ResNetBackbone(50))
    reference = ResNetBackbone(50, replace_stride_with_dilation=[False, True, True])
    reference.load_state_dict(ours.state_dict())
    convs = {n: m for n, m in reference.named_modules() if isinstance(m, nn.Conv2d)}
    for name, conv in ours.named_modules():
        if isinstance(conv, nn.Conv2d):
            ref = convs[name]
            assert (conv.stride, conv.dilation, conv.padding) == (ref.stride, ref.dilation, ref.padding), name
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x, (5,))[0], reference.eval()(x, (5,))[0])


def test_fcn_heads_and_losses():
    torch.manual_seed(0)
    model = FCNSegmentor(ResNetBackbone(18), 5, TINY)
    assert model.decode_head.conv_cat is not None and len(model.decode_head.convs) == 2
    assert model.auxiliary_head.conv_cat is None and len(model.auxiliary_head.convs) == 1
    assert (
        model.decode_head.convs[0][0].in_channels == 512
        and model.auxiliary_head.convs[0][0].in_channels == 256
    )
    images = torch.randn(2, 3, 48, 40)
    labels = torch.randint(0, 5, (2, 48, 40))
    labels[:, :10] = 255
    model.train()
    torch.manual_seed(1)
    outputs = model(images)
    assert outputs["decode"].shape == (2, 5, 6, 5) and outputs["aux"].shape == (2, 5, 6, 5)
    losses = segmentation_losses(outputs, labels, aux_weight=0.4, align_corners=False)

    def mean_ce(logits):  # mmseg: averaged over all pixels, the ignored ones counting 0
        up = F.interpolate(logits, size=(48, 40), mode="bilinear", align_corners=False)
        per_pixel = F.cross_entropy(up, labels, ignore_index=255, reduction="none")
        return per_pixel.sum() / labels.numel()

    torch.testing.assert_close(losses["loss_decode"], mean_ce(outputs["decode"]))
    torch.testing.assert_close(losses["loss_aux"], 0.4 * mean_ce(outputs["aux"]))
    sum(losses.values()).backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0  # everything fine-tunes
    model.eval()
    assert set(model(images)) == {"decode"}


def test_sliding_window_equals_whole_image_when_one_window_covers_it():
    torch.manual_seed(0)
    model = FCNSegmentor(
        ResNetBackbone(18), 4, FCNConfig(channels=16, aux_channels=8, align_corners=True)
    ).eval()
    image = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(slide_logits(model, image, (64, 64), (32, 32)), model.logits(image))
        # overlapping windows: each pixel is the mean of the windows that cover it
        windows = slide_logits(model, image, (40, 32), (40, 24))  # columns 0..32 and 24..56
        left, right = model.logits(image[:, :, :, :32]), model.logits(image[:, :, :, 24:])
        torch.testing.assert_close(windows[..., :24], left[..., :24])
        torch.testing.assert_close(windows[..., 24:32], (left[..., 24:] + right[..., :8]) / 2)
        torch.testing.assert_close(windows[..., 32:], right[..., 8:])
        labels = predict_labels(model, image, (20, 28), "slide", (64, 64), (32, 32))
    assert labels.shape == (1, 20, 28) and labels.max() < 4


def test_poly_schedule_is_mmcvs():
    train = SegTrainSettings(max_iter=100, batch_size=16, lr=0.01, power=0.9, min_lr=1e-4)
    assert train.lr_at(0.01, 0) == pytest.approx(0.01)
    assert train.lr_at(0.01, 50) == pytest.approx((0.01 - 1e-4) * 0.5**0.9 + 1e-4)
    assert train.lr_at(0.01, 100) == pytest.approx(1e-4)


def test_protocol_files_load():
    voc, _ = load_segmentation_config(CONFIG_DIR / "seg_voc12aug.yaml")
    assert voc.pipeline.crop_size == (512, 512) and voc.pipeline.img_scale == (2048, 512)
    assert (voc.train.max_iter, voc.train.batch_size, voc.train.lr, voc.train.weight_decay) == (
        20000,
        16,
        0.01,
        5e-4,
    )
    assert voc.model.aux_weight == 0.4 and voc.model.channels == 512 and voc.test.mode == "whole"
    city, _ = load_segmentation_config(CONFIG_DIR / "seg_cityscapes.yaml")
    assert city.model.align_corners and city.test.mode == "slide" and city.test.stride == (513, 513)
    assert (city.train.max_iter, city.train.batch_size, city.pipeline.crop_size) == (40000, 8, (769, 769))
    for name in ("seg_voc12aug_mini", "seg_cityscapes_mini"):
        assert load_segmentation_config(CONFIG_DIR / f"{name}.yaml")[0].gpus == 1


def test_protocol_gpus_are_the_reference_process_counts_and_bad_ones_are_named(tmp_path):
    for name in ("seg_voc12aug", "seg_cityscapes"):
        cfg, _ = load_segmentation_config(CONFIG_DIR / f"{name}.yaml")
        gpus, per_gpu = reference_gpus_and_batch(CONFIG_DIR / f"{name}.yaml")
        assert (cfg.gpus, cfg.train.batch_size) == (gpus, gpus * per_gpu), name
    raw = yaml.safe_load((CONFIG_DIR / "seg_voc12aug_mini.yaml").read_text())
    for value, message in (
        ("four", "gpus: 'four' is not of type 'integer'"),
        (3, r"train.batch_size: 4 .* gpus 3"),
    ):
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**raw, "gpus": value}))
        with pytest.raises(SslzooError, match=f"bad.yaml: {message}"):
            load_segmentation_config(tmp_path / "bad.yaml")


# --------------------------------------------------------------------------------------------
# End to end (tiny)
# --------------------------------------------------------------------------------------------


def _tiny_config(tmp_path: Path, name: str) -> Path:
    raw = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    raw["model"].update(channels=16, aux_channels=8)
    raw["train"].update(max_iter=2, batch_size=2, workers=0, checkpoint_period=1)
    raw["pipeline"].update(img_scale=[48, 32], crop_size=[32, 32])
    if raw["test"]["mode"] == "slide":
        raw["test"].update(crop_size=[32, 32], stride=[24, 24])
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _voc12(root: Path) -> Path:
    rng = np.random.default_rng(0)
    seg = root / "ImageSets" / "Segmentation"
    seg.mkdir(parents=True)
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationClassAug"):
        (root / sub).mkdir()
    ids = ["a", "b", "c", "d"]
    for image_id in ids:
        label = np.zeros((32, 40), np.uint8)
        label[8:24, 10:30] = 12  # a "dog"
        Image.fromarray(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)).save(
            root / "JPEGImages" / f"{image_id}.jpg"
        )
        Image.fromarray(label, mode="L").save(root / "SegmentationClassAug" / f"{image_id}.png")
        label[8, 10:30] = 255
        png = Image.fromarray(label, mode="P")
        png.putpalette(mini.voc_palette())
        png.save(root / "SegmentationClass" / f"{image_id}.png")
    (seg / "trainaug.txt").write_text("a\nb\nc\n")
    (seg / "val.txt").write_text("d\n")
    return root


def test_voc12aug_end_to_end_and_rerun(tmp_path):
    backbone = tmp_path / "r18.pth"
    random_backbone(18, 0, backbone)
    voc12 = _voc12(tmp_path / "VOC2012")
    out = tmp_path / "results" / "seg_voc12aug" / "random" / "metrics.json"
    args = argparse.Namespace(
        backbone=str(backbone),
        config=str(_tiny_config(tmp_path, "seg_voc12aug_mini")),
        benchmark="seg_voc12aug",
        model="random",
        work_dir=str(tmp_path / "work"),
        out=str(out),
        seed=0,
        voc12=str(voc12),
        cityscapes=None,
    )
    segmentation_step.main(args)
    metrics = json.loads(out.read_text())
    assert set(metrics) == {"mIOU", "meta"} and 0.0 <= metrics["mIOU"] <= 100.0
    meta = metrics["meta"]
    assert (meta["benchmark"], meta["model"], meta["iterations"], meta["num_train"], meta["num_val"]) == (
        "seg_voc12aug",
        "random",
        2,
        3,
        1,
    )
    # background and dog are labelled in val: their IoU is a number (classes neither labelled nor
    # predicted would be None)
    assert meta["IoU"]["background"] is not None and meta["IoU"]["dog"] is not None and len(meta["IoU"]) == 21
    run = meta["run"]  # one process took the whole batch of 2 (_tiny_config), the protocol's 1 x 2
    assert (run["world_size"], run["per_process_batch"], run["total_batch"], run["seed"]) == (1, 2, 2, 0)
    assert run["protocol"]["gpus"] == 1 and run["protocol"]["config"] == args.config
    assert not (tmp_path / "work" / "latest.pth").exists()  # the output written, the resume state goes
    segmentation_step.main(args)  # a rerun trains again, to the same numbers
    again = json.loads(out.read_text())
    assert again["meta"]["resumed_from_iteration"] == 0 and again["mIOU"] == metrics["mIOU"]
    args.voc12 = None
    with pytest.raises(SslzooError, match="--voc12"):
        segmentation_step.main(args)


def test_cityscapes_end_to_end_with_sliding_windows(tmp_path):
    backbone = tmp_path / "r18.pth"
    random_backbone(18, 0, backbone)
    root = tmp_path / "cityscapes"
    rng = np.random.default_rng(1)
    for split, count in (("train", 2), ("val", 1)):
        for k in range(count):
            stem = f"aachen_{k:06d}_000019"
            image = root / "leftImg8bit" / split / "aachen" / f"{stem}_leftImg8bit.png"
            label = root / "gtFine" / split / "aachen" / f"{stem}_gtFine_labelIds.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            label.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)).save(image)
            ids = np.full((32, 64), 7, np.uint8)  # road
            ids[:12] = 23  # sky
            ids[-3:] = 1  # ego vehicle: ignored
            Image.fromarray(ids, mode="L").save(label)
    out = tmp_path / "seg_cityscapes" / "random" / "metrics.json"
    from sslzoo.benchmarks.segmentation import segmentation_benchmark

    metrics = segmentation_benchmark(
        backbone,
        _tiny_config(tmp_path, "seg_cityscapes_mini"),
        tmp_path / "work",
        out,
        benchmark_name="seg_cityscapes",
        model_name="random",
        cityscapes=root,
    )
    assert metrics is not None and 0.0 <= metrics["mIOU"] <= 100.0
    iou = metrics["meta"]["IoU"]
    assert len(iou) == 19 and iou["road"] is not None and iou["sky"] is not None
