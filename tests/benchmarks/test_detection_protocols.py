"""The detection protocols as their reference files state them, and the MMDetection options:
difficult boxes left out, L1 box losses, the 4conv1fc box head, schedules in epochs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torchvision.models.detection.roi_heads as roi_heads_module
import yaml
from torch import nn

from sslzoo.benchmarks.detection.detectron2_engine import detectron2_config
from sslzoo.benchmarks.detection.losses import (
    L1RegionProposalNetwork,
    L1RoIHeads,
    box_regression_loss,
    fastrcnn_l1_loss,
)
from sslzoo.benchmarks.detection.models import (
    InputConfig,
    ModelConfig,
    build_faster_rcnn_c4,
    build_mask_rcnn_c4,
    build_mask_rcnn_fpn,
    conv_fc_box_head,
)
from sslzoo.benchmarks.detection.train import load_detection_config
from sslzoo.benchmarks.protocol_files import schema_default
from sslzoo.checkpoints import random_backbone
from sslzoo.data.detection import VocDetection
from sslzoo.data.mini import MiniSizes
from sslzoo.errors import SslzooError
from tests.benchmarks.protocols import reference_gpus_and_batch

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs NumPy 2

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "benchmarks"
TINY_INPUT = InputConfig(min_size_train=(48, 64), max_size_train=100, min_size_test=64, max_size_test=100)
TINY_FPN = dict(
    anchor_sizes=(8, 16, 32, 64, 128),
    rpn_pre_nms_topk_train=200,
    rpn_pre_nms_topk_test=100,
    rpn_post_nms_topk_train=50,
    rpn_post_nms_topk_test=20,
    roi_batch_size_per_image=16,
    fpn_channels=32,
    box_fc_dim=64,
    mask_head_channels=16,
)


@pytest.fixture(scope="module")
def r18(tmp_path_factory) -> dict[str, torch.Tensor]:
    return random_backbone(18, 0, tmp_path_factory.mktemp("backbone") / "r18.pth")


# --------------------------------------------------------------------------------------------
# Protocol values against their reference files
# --------------------------------------------------------------------------------------------


def test_det_voc0712_is_mmselfsups_faster_rcnn_r50_c4_mstrain_24k_voc0712():
    """mmselfsup configs/benchmarks/mmdetection/voc0712/faster_rcnn_r50_c4_mstrain_24k_voc0712.py,
    _base_/models/faster_rcnn_r50_c4.py, _base_/schedules/schedule_24k.py, _base_/datasets/voc0712.py."""
    cfg, _ = load_detection_config(CONFIG_DIR / "det_voc0712.yaml")
    m, inp, sol = cfg.model, cfg.input, cfg.solver
    assert (cfg.dataset, cfg.engine, cfg.gpus) == ("voc0712", "torchvision", 8)  # 8 GPUs x batch_size 2
    assert (m.arch, m.norm, m.extra_norm) == ("faster_rcnn_c4", "SyncBN", True)  # ResLayerExtraNorm, SyncBN
    assert m.pooler_resolution == 14  # RoIAlign output_size 14
    assert m.anchor_sizes == (32, 64, 128, 256, 512)  # scales [2, 4, 8, 16, 32] x stride 16
    assert m.aspect_ratios == (0.5, 1.0, 2.0)
    assert (m.rpn_pre_nms_topk_train, m.rpn_post_nms_topk_train) == (12000, 2000)  # rpn_proposal
    assert (m.rpn_pre_nms_topk_test, m.rpn_post_nms_topk_test) == (6000, 1000)  # test_cfg.rpn
    assert (m.rpn_batch_size_per_image, m.roi_batch_size_per_image) == (256, 512)  # samplers
    assert (m.score_thresh_test, m.nms_thresh_test, m.detections_per_image) == (0.05, 0.5, 100)
    assert m.box_loss == "l1"  # RPNHead and BBoxHead loss_bbox L1Loss
    assert inp.min_size_train == (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)
    assert (inp.max_size_train, inp.min_size_test, inp.max_size_test, inp.flip_prob) == (1333, 800, 1333, 0.5)
    assert inp.pixel_mean == (123.675, 116.28, 103.53) and inp.pixel_std == (58.395, 57.12, 57.375)
    assert inp.ignore_difficult is True  # VOCDataset: difficult boxes are ignored instances
    assert (sol.batch_size, sol.base_lr, sol.momentum, sol.weight_decay) == (16, 0.02, 0.9, 1e-4)
    assert sol.weight_decay_norm == 1e-4  # no paramwise_cfg
    assert (sol.max_iter, sol.steps, sol.gamma) == (24000, (18000, 22000), 0.1)
    assert (sol.warmup_iters, sol.warmup_factor) == (100, 0.001)  # LinearLR start_factor 0.001, end 100
    assert cfg.test.precise_bn_iters == 0  # MMDetection has no precise BN
    assert reference_gpus_and_batch(CONFIG_DIR / "det_voc0712.yaml") == (8, 2)


def test_det_voc0712_moco_is_moco_pascal_voc_r_50_c4_24k_moco():
    """facebookresearch/moco detection/configs/pascal_voc_R_50_C4_24k_moco.yaml on
    pascal_voc_R_50_C4_24k.yaml and Base-RCNN-C4-BN.yaml (detectron2 defaults elsewhere)."""
    cfg, _ = load_detection_config(CONFIG_DIR / "det_voc0712_moco.yaml")
    m, inp, sol = cfg.model, cfg.input, cfg.solver
    assert (m.arch, m.norm, m.extra_norm, m.pooler_resolution) == ("faster_rcnn_c4", "SyncBN", True, 14)
    assert inp.ignore_difficult is False  # detectron2 trains on the difficult boxes
    assert m.box_loss == "l1"  # detectron2 defaults: RPN and ROI_BOX_HEAD SMOOTH_L1_BETA 0.0
    assert (sol.max_iter, sol.steps, sol.warmup_iters, sol.weight_decay_norm) == (
        24000,
        (18000, 22000),
        100,
        0.0,
    )
    assert cfg.test.precise_bn_iters == 200  # TEST.PRECISE_BN
    assert reference_gpus_and_batch(CONFIG_DIR / "det_voc0712_moco.yaml") == (8, 2)


def test_det_voc0712_moco_is_the_mean_of_five_runs_and_the_others_run_once():
    """facebookresearch/moco detection/README.md: "These results are means of 5 trials ... We
    recommend to run 5 trials and compute means"; wanggrun/triplet README.md: the average of
    multiple VOC runs. The mini protocol runs twice (a mean and a std); every other protocol once."""
    assert load_detection_config(CONFIG_DIR / "det_voc0712_moco.yaml")[0].repeats == 5
    assert load_detection_config(CONFIG_DIR / "det_voc0712_moco_mini.yaml")[0].repeats == 2
    others = sorted(set(CONFIG_DIR.glob("det_*.yaml")) - set(CONFIG_DIR.glob("det_voc0712_moco*.yaml")))
    assert len(others) == 6
    for path in others:
        assert load_detection_config(path)[0].repeats == 1, path.name
        assert "repeats" not in yaml.safe_load(path.read_text()), path.name  # the schema's default


def test_repeats_defaults_to_one_and_must_be_a_positive_integer(tmp_path):
    raw = yaml.safe_load((CONFIG_DIR / "det_voc0712_moco_mini.yaml").read_text())
    del raw["repeats"]
    (tmp_path / "once.yaml").write_text(yaml.safe_dump(raw))
    assert load_detection_config(tmp_path / "once.yaml")[0].repeats == 1
    for value, message in ((0, "0 is less than the minimum of 1"), (2.5, "2.5 is not of type 'integer'")):
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**raw, "repeats": value}))
        with pytest.raises(SslzooError, match=f"bad.yaml: repeats: {message}"):
            load_detection_config(tmp_path / "bad.yaml")


def test_det_coco_is_mmselfsups_mask_rcnn_r50_fpn_mstrain_1x_coco():
    """mmselfsup configs/benchmarks/mmdetection/coco/mask_rcnn_r50_fpn_mstrain_1x_coco.py on
    MMDetection configs/_base_/models/mask-rcnn_r50_fpn.py and _base_/schedules/schedule_1x.py."""
    cfg, _ = load_detection_config(CONFIG_DIR / "det_coco.yaml")
    m, inp, sol = cfg.model, cfg.input, cfg.solver
    assert (cfg.dataset, cfg.gpus, m.arch, m.norm, m.fpn_channels) == (
        "coco",
        8,
        "mask_rcnn_fpn",
        "SyncBN",
        256,
    )
    assert (m.box_head, m.box_conv_dim, m.box_fc_dim, m.head_norm) == ("4conv1fc", 256, 1024, True)
    assert (m.box_pooler_resolution, m.mask_head_channels, m.mask_pooler_resolution) == (7, 256, 14)
    assert m.anchor_sizes == (32, 64, 128, 256, 512)  # scales [8] x strides 4..64
    assert (m.rpn_pre_nms_topk_train, m.rpn_post_nms_topk_train) == (2000, 1000)
    assert (m.rpn_pre_nms_topk_test, m.rpn_post_nms_topk_test) == (1000, 1000)
    assert (m.rpn_batch_size_per_image, m.roi_batch_size_per_image, m.box_loss) == (256, 512, "l1")
    assert inp.min_size_train == (640, 672, 704, 736, 768, 800) and inp.min_size_test == 800
    assert (sol.batch_size, sol.base_lr, sol.weight_decay, sol.weight_decay_norm) == (16, 0.02, 1e-4, 1e-4)
    assert (sol.max_iter, sol.max_epochs, sol.steps, sol.gamma) == (None, 12, (8, 11), 0.1)
    assert (sol.warmup_iters, sol.warmup_factor) == (500, 0.001)
    assert cfg.test.precise_bn_iters == 0
    assert reference_gpus_and_batch(CONFIG_DIR / "det_coco.yaml") == (8, 2)


def test_det_coco_c4_moco_is_moco_coco_r_50_c4_2x_moco():
    """facebookresearch/moco detection/configs/coco_R_50_C4_2x_moco.yaml on coco_R_50_C4_2x.yaml and
    Base-RCNN-C4-BN.yaml; detectron2 config/defaults.py for the rest."""
    cfg, _ = load_detection_config(CONFIG_DIR / "det_coco_c4_moco.yaml")
    m, inp, sol = cfg.model, cfg.input, cfg.solver
    assert (cfg.dataset, cfg.gpus, m.arch, m.norm, m.extra_norm) == (
        "coco",
        8,
        "mask_rcnn_c4",
        "SyncBN",
        True,
    )
    assert (m.pooler_resolution, m.mask_head_channels) == (
        14,
        256,
    )  # POOLER_RESOLUTION, ROI_MASK_HEAD.CONV_DIM
    assert (m.rpn_pre_nms_topk_train, m.rpn_post_nms_topk_train) == (12000, 2000)  # detectron2 defaults
    assert (m.rpn_pre_nms_topk_test, m.rpn_post_nms_topk_test) == (6000, 1000)  # Base-RCNN-C4-BN.yaml
    assert m.box_loss == "l1"  # detectron2 defaults: RPN and ROI_BOX_HEAD SMOOTH_L1_BETA 0.0
    assert inp.min_size_train == (640, 672, 704, 736, 768, 800) and inp.min_size_test == 800
    assert (sol.batch_size, sol.base_lr, sol.weight_decay_norm) == (16, 0.02, 0.0)
    assert (sol.max_iter, sol.steps, sol.warmup_iters) == (180000, (120000, 160000), 1000)
    assert cfg.test.precise_bn_iters == 200
    assert reference_gpus_and_batch(CONFIG_DIR / "det_coco_c4_moco.yaml") == (8, 2)


def test_mini_files_have_their_full_protocols_shape():
    for name in ("det_voc0712", "det_voc0712_moco", "det_coco", "det_coco_c4_moco"):
        full, _ = load_detection_config(CONFIG_DIR / f"{name}.yaml")
        mini, _ = load_detection_config(CONFIG_DIR / f"{name}_mini.yaml")
        assert (mini.model.arch, mini.model.box_head, mini.model.head_norm) == (
            full.model.arch,
            full.model.box_head,
            full.model.head_norm,
        ), name
        assert (mini.model.box_loss, mini.input.ignore_difficult) == (
            full.model.box_loss,
            full.input.ignore_difficult,
        )
        assert mini.solver.weight_decay_norm == full.solver.weight_decay_norm, name
        assert (mini.test.precise_bn_iters > 0) == (full.test.precise_bn_iters > 0), name
        # the mini scale: one process, at most 100 training images seen
        assert mini.solver.max_iter * mini.solver.batch_size <= 100 and mini.gpus == 1, name
    full, mini = (load_detection_config(CONFIG_DIR / f"det_coco{s}.yaml")[0].solver for s in ("", "_mini"))
    # the mini COCO schedule steps at the full one's fractions of its epochs (8/12, 11/12)
    assert mini.steps == tuple(round(mini.max_iter * e / full.max_epochs) for e in full.steps)


def test_test_subsets_are_off_by_default_and_cut_only_mini_test_sets(tmp_path):
    assert schema_default("det", "test", "max_images") is None
    assert load_detection_config(CONFIG_DIR / "det_voc0712.yaml")[0].test.max_images is None
    for name in ("det_voc0712", "det_voc0712_moco", "det_coco", "det_coco_c4_moco"):
        full, raw = load_detection_config(CONFIG_DIR / f"{name}.yaml")
        assert full.test.max_images is None and "max_images" not in raw.get("test", {}), name
        mini = load_detection_config(CONFIG_DIR / f"{name}_mini.yaml")[0].test.max_images
        test_images = MiniSizes().voc2007_test if full.dataset == "voc0712" else MiniSizes().coco_val
        assert mini is None or mini < test_images, name  # a subset, not the split again
    for name in ("det_voc0712_mini", "det_voc0712_moco_mini"):  # the 400-image test split, cut
        assert load_detection_config(CONFIG_DIR / f"{name}.yaml")[0].test.max_images is not None, name
    raw = yaml.safe_load((CONFIG_DIR / "det_voc0712_moco.yaml").read_text())
    raw["engine"] = "detectron2"
    raw.setdefault("test", {})["max_images"] = 10
    (tmp_path / "d2.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SslzooError, match="d2.yaml: test.max_images: engine detectron2"):
        load_detection_config(tmp_path / "d2.yaml")
    raw["test"]["max_images"] = 0
    (tmp_path / "zero.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SslzooError, match="zero.yaml: test.max_images"):
        load_detection_config(tmp_path / "zero.yaml")


# --------------------------------------------------------------------------------------------
# Schedules in epochs
# --------------------------------------------------------------------------------------------


def test_epochs_become_iterations_from_the_training_set_size():
    solver = load_detection_config(CONFIG_DIR / "det_coco.yaml")[0].solver
    with pytest.raises(SslzooError, match="in_iterations"):
        solver.schedule()
    # train2017 images with annotations: 117266 / 16 = 7329.1 -> 7330 iterations an epoch
    iters = solver.in_iterations(117266)
    assert (iters.max_iter, iters.steps, iters.max_epochs) == (87960, (58640, 80630), None)
    schedule = iters.schedule()
    assert schedule.lr(0.02, 0) == pytest.approx(0.02 * 0.001)
    assert schedule.lr(0.02, 250) == pytest.approx(0.02 * (0.001 * 0.5 + 0.5))
    lrs = [schedule.lr(0.02, i) for i in (500, 58639, 58640, 80629, 80630, 87959)]
    assert lrs == pytest.approx([0.02, 0.02, 0.002, 0.002, 0.0002, 0.0002])
    assert solver.in_iterations(17).max_iter == 12 * 2  # a last partial batch is an iteration
    voc = load_detection_config(CONFIG_DIR / "det_voc0712.yaml")[0].solver
    assert voc.in_iterations(10) is voc  # already in iterations


def test_epoch_and_iteration_lengths_are_exclusive_and_steps_checked(tmp_path):
    raw = yaml.safe_load((CONFIG_DIR / "det_coco_mini.yaml").read_text())
    raw["solver"]["max_epochs"] = 3
    (tmp_path / "both.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SslzooError, match="both.yaml: solver"):
        load_detection_config(tmp_path / "both.yaml")
    del raw["solver"]["max_iter"]
    (tmp_path / "late.yaml").write_text(yaml.safe_dump(raw))
    late = re.escape(f"late.yaml: solver.steps: {raw['solver']['steps']} go past solver.max_epochs 3")
    with pytest.raises(SslzooError, match=late):
        load_detection_config(tmp_path / "late.yaml")


# --------------------------------------------------------------------------------------------
# Difficult boxes
# --------------------------------------------------------------------------------------------


def _voc(tmp_path: Path) -> Path:
    """A VOC folder of two 64x64 images: 'a' with a dog and a difficult cat, 'b' with a difficult cat only."""
    from PIL import Image

    root = tmp_path / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    objects = {
        "a": [("dog", 0, (5, 5, 30, 30)), ("cat", 1, (33, 33, 60, 60))],
        "b": [("cat", 1, (9, 9, 40, 40))],
    }
    for image_id, objs in objects.items():
        Image.new("RGB", (64, 64)).save(root / "JPEGImages" / f"{image_id}.jpg")
        body = "".join(
            f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
            f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for n, d, b in objs
        )
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>64</width><height>64</height>"
            f"<depth>3</depth></size>{body}</annotation>"
        )
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("a\nb\n")
    return root


def test_ignored_difficult_boxes_give_no_target_and_no_positive_anchor(tmp_path, r18):
    root = _voc(tmp_path)
    kept = VocDetection([(root, "trainval")], train=True)
    assert len(kept) == 2 and kept.target(0)["difficult"].tolist() == [False, True]
    ignored = VocDetection([(root, "trainval")], train=True, ignore_difficult=True)
    assert len(ignored) == 1  # 'b' has no box left (filter_empty_gt)
    target = ignored.target(0)
    assert target["boxes"].tolist() == [[4.0, 4.0, 30.0, 30.0]] and target["difficult"].tolist() == [False]
    # the RPN's assignment: an anchor on the difficult cat is a negative without it, a positive with it
    model = build_faster_rcnn_c4(
        20, ModelConfig(arch="faster_rcnn_c4", pooler_resolution=4), TINY_INPUT, state_dict=r18
    )
    anchors = [torch.tensor([[4.0, 4.0, 30.0, 30.0], [32.0, 32.0, 60.0, 60.0]])]
    labels, _ = model.rpn.assign_targets_to_anchors(anchors, [ignored.target(0)])
    assert labels[0].tolist() == [1.0, 0.0]
    labels, _ = model.rpn.assign_targets_to_anchors(anchors, [kept.target(0)])
    assert labels[0].tolist() == [1.0, 1.0]


# --------------------------------------------------------------------------------------------
# L1 and smooth L1
# --------------------------------------------------------------------------------------------


def test_l1_and_smooth_l1_on_a_hand_example():
    pred = torch.tensor([[0.05, 0.5, -2.0, 1.0]])
    target = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    # |d| = 0.05, 0.5, 2, 0 over 4 sampled boxes
    assert box_regression_loss(pred, target, 0.0, 4).item() == pytest.approx((0.05 + 0.5 + 2.0) / 4)
    # smooth L1, beta 1/9: 0.5 * 0.05^2 * 9 = 0.01125; 0.5 - 1/18; 2 - 1/18
    smooth = 0.01125 + (0.5 - 1 / 18) + (2.0 - 1 / 18)
    assert box_regression_loss(pred, target, 1 / 9, 4).item() == pytest.approx(smooth / 4)
    # the box head: only the positive RoI's deltas of its own class count, divided by all RoIs
    logits = torch.zeros(2, 3)
    deltas = torch.zeros(2, 12)
    deltas[0, 8:12] = pred[0]  # RoI 0 is class 2
    deltas[1] = 5.0  # RoI 1 is background: no box loss
    _, box_loss = fastrcnn_l1_loss(logits, deltas, [torch.tensor([2, 0])], [torch.cat([target, target])])
    assert box_loss.item() == pytest.approx(2.55 / 2)
    _, torchvision_loss = roi_heads_module.fastrcnn_loss(
        logits, deltas, [torch.tensor([2, 0])], [torch.cat([target, target])]
    )
    assert torchvision_loss.item() == pytest.approx(smooth / 2)


def test_l1_detectors_use_l1_in_rpn_and_box_head(r18):
    model = build_faster_rcnn_c4(
        3, ModelConfig(arch="faster_rcnn_c4", pooler_resolution=4, box_loss="l1"), TINY_INPUT, state_dict=r18
    )
    assert isinstance(model.rpn, L1RegionProposalNetwork) and isinstance(model.roi_heads, L1RoIHeads)
    # RPN: one positive and one negative anchor, both sampled (256 per image)
    objectness = torch.zeros(2)
    deltas = torch.tensor([[0.05, 0.5, -2.0, 1.0], [3.0, 3.0, 3.0, 3.0]])
    targets = [torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])]
    _, box_loss = model.rpn.compute_loss(objectness, deltas, [torch.tensor([1.0, 0.0])], targets)
    assert box_loss.item() == pytest.approx(2.55 / 2)
    # a training step runs with the L1 head loss and leaves torchvision's function in place
    original = roi_heads_module.fastrcnn_loss
    images = [torch.rand(3, 60, 80)]
    losses = model(images, [{"boxes": torch.tensor([[5.0, 5.0, 40.0, 45.0]]), "labels": torch.tensor([1])}])
    assert torch.isfinite(sum(losses.values())) and roi_heads_module.fastrcnn_loss is original
    default = build_faster_rcnn_c4(3, ModelConfig(arch="faster_rcnn_c4"), TINY_INPUT, state_dict=r18)
    assert type(default.rpn) is not L1RegionProposalNetwork and type(default.roi_heads) is not L1RoIHeads


# --------------------------------------------------------------------------------------------
# The 4conv1fc box head
# --------------------------------------------------------------------------------------------


def test_4conv1fc_head_shapes_parameters_and_init():
    head = conv_fc_box_head(256, 7, 256, 1024, norm=True)
    out = head(torch.randn(5, 256, 7, 7))
    assert out.shape == (5, 1024) and (out >= 0).all()  # ReLU after the FC
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in head.modules() if isinstance(m, nn.BatchNorm2d)]
    fcs = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 4 and [c.padding for c in convs] == [(1, 1)] * 4
    assert all(c.bias is None for c in convs) and len(norms) == 4  # ConvModule: no bias before a norm
    assert [(f.in_features, f.out_features) for f in fcs] == [(256 * 7 * 7, 1024)]
    # 4 convs 3x3 256 -> 256 (no bias) + 4 BN (weight, bias) + FC 12544 -> 1024 with bias
    assert sum(p.numel() for p in head.parameters()) == 4 * 256 * 256 * 9 + 4 * 2 * 256 + 12544 * 1024 + 1024
    assert sum(p.numel() for p in head.parameters()) == 15_207_424
    # mmcv init: xavier_uniform FC (bound sqrt(6 / (fan_in + fan_out))), zero bias
    assert fcs[0].weight.abs().max() <= (6 / (12544 + 1024)) ** 0.5 and fcs[0].bias.abs().sum() == 0
    plain = conv_fc_box_head(16, 7, 8, 32, norm=False)
    assert plain(torch.randn(2, 16, 7, 7)).shape == (2, 32)
    assert all(c.bias is not None for c in plain.modules() if isinstance(c, nn.Conv2d))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())


def test_mask_rcnn_with_4conv1fc_and_head_norms_trains(r18):
    cfg = ModelConfig(
        arch="mask_rcnn_fpn", box_head="4conv1fc", box_conv_dim=16, head_norm=True, box_loss="l1", **TINY_FPN
    )
    model = build_mask_rcnn_fpn(3, cfg, TINY_INPUT, state_dict=r18)
    heads = model.roi_heads
    assert sum(isinstance(m, nn.BatchNorm2d) for m in heads.box_head.modules()) == 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in heads.mask_head.modules()) == 4  # FCNMaskHead norm_cfg
    assert heads.box_predictor.cls_score.in_features == 64
    images = [torch.rand(3, 60, 80), torch.rand(3, 70, 50)]
    targets = []
    for image, (box, label) in zip(
        images, (([5.0, 5.0, 40.0, 45.0], 1), ([10.0, 10.0, 40.0, 60.0], 2)), strict=True
    ):
        mask = torch.zeros(1, *image.shape[1:], dtype=torch.uint8)
        x0, y0, x1, y1 = (int(v) for v in box)
        mask[0, y0:y1, x0:x1] = 1
        targets.append({"boxes": torch.tensor([box]), "labels": torch.tensor([label]), "masks": mask})
    torch.manual_seed(0)
    losses = model(images, targets)
    assert set(losses) >= {"loss_box_reg", "loss_mask"} and torch.isfinite(sum(losses.values()))
    sum(losses.values()).backward()
    assert heads.box_head[0][0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert out[0]["masks"].shape[1:] == (1, 60, 80)
    # the 2fc head (MoCo's protocol) stays without norms in its mask head
    moco = build_mask_rcnn_fpn(3, ModelConfig(arch="mask_rcnn_fpn", **TINY_FPN), TINY_INPUT, state_dict=r18)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in moco.roi_heads.modules())


def test_mask_rcnn_c4_shares_res5_and_predicts_masks(r18):
    cfg = ModelConfig(
        arch="mask_rcnn_c4",
        pooler_resolution=6,
        mask_head_channels=16,
        **{k: v for k, v in TINY_FPN.items() if k.startswith(("rpn_", "roi_"))},
    )
    model = build_mask_rcnn_c4(3, cfg, TINY_INPUT, state_dict=r18)
    heads = model.roi_heads
    assert heads.mask_head.box_head is heads.box_head  # one res5 and extra norm for both branches
    torch.testing.assert_close(heads.box_head.res5[0].conv1.weight, r18["layer4.0.conv1.weight"])
    # [N, C4, 6, 6] -> res5 -> [N, 512, 3, 3] -> deconv 2x2 -> [N, 16, 6, 6] -> [N, 4, 6, 6]
    pooled = torch.randn(2, 256, 6, 6)
    features = heads.mask_head(pooled)
    assert features.shape == (2, 512, 3, 3)
    assert heads.mask_predictor(features).shape == (2, 4, 6, 6)
    assert heads.mask_predictor.mask_fcn_logits.bias.abs().sum() == 0
    params = {id(p) for p in model.parameters()}
    assert len(params) == len(list(model.parameters()))  # shared, not duplicated
    images = [torch.rand(3, 60, 80)]
    mask = torch.zeros(1, 60, 80, dtype=torch.uint8)
    mask[0, 5:45, 5:40] = 1
    torch.manual_seed(0)
    losses = model(
        images,
        [{"boxes": torch.tensor([[5.0, 5.0, 40.0, 45.0]]), "labels": torch.tensor([1]), "masks": mask}],
    )
    assert "loss_mask" in losses and torch.isfinite(sum(losses.values()))
    sum(losses.values()).backward()
    assert heads.mask_predictor.conv5_mask.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert out[0]["masks"].shape[1:] == (1, 60, 80)


# --------------------------------------------------------------------------------------------
# detectron2 engine
# --------------------------------------------------------------------------------------------


def test_detectron2_config_of_the_mmdetection_options(tmp_path):
    voc, _ = load_detection_config(CONFIG_DIR / "det_voc0712.yaml")
    with pytest.raises(SslzooError, match="ignore_difficult"):
        detectron2_config(voc, 50, "w.pkl", "out")
    coco, _ = load_detection_config(CONFIG_DIR / "det_coco.yaml")
    with pytest.raises(SslzooError, match="max_epochs"):
        detectron2_config(coco, 50, "w.pkl", "out")
    raw = yaml.safe_load((CONFIG_DIR / "det_coco.yaml").read_text())
    raw["solver"].update(max_iter=90000, steps=[60000, 80000])
    del raw["solver"]["max_epochs"]
    (tmp_path / "coco_iters.yaml").write_text(yaml.safe_dump(raw))
    model = detectron2_config(load_detection_config(tmp_path / "coco_iters.yaml")[0], 50, "w.pkl", "out")[
        "MODEL"
    ]
    box = model["ROI_BOX_HEAD"]
    assert (box["NUM_CONV"], box["CONV_DIM"], box["NUM_FC"], box["FC_DIM"], box["NORM"]) == (
        4,
        256,
        1,
        1024,
        "SyncBN",
    )
    assert model["ROI_MASK_HEAD"]["NORM"] == "SyncBN"
    c4 = detectron2_config(load_detection_config(CONFIG_DIR / "det_coco_c4_moco.yaml")[0], 50, "w.pkl", "out")
    assert c4["MODEL"]["MASK_ON"] is True and c4["MODEL"]["ROI_HEADS"]["NAME"] == "Res5ROIHeadsExtraNorm"
    assert c4["MODEL"]["ROI_MASK_HEAD"] == {
        "NAME": "MaskRCNNConvUpsampleHead",
        "NUM_CONV": 0,
        "CONV_DIM": 256,
    }
    assert (c4["SOLVER"]["MAX_ITER"], c4["SOLVER"]["STEPS"]) == (180000, [120000, 160000])
