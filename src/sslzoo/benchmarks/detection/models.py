"""The detectors of the detection protocols, from torchvision building blocks.

Three models (PROTOCOLS.md "Detection as the model zoo ran it" and "Detection (MoCo protocol,
detectron2)"; facebookresearch/moco ``detection/configs`` and ``train_net.py``, detectron2
``configs/Base-RCNN-C4.yaml`` / ``Base-RCNN-FPN.yaml`` and ``modeling/roi_heads/roi_heads.py``;
MMSelfSup ``configs/benchmarks/mmdetection/``):

- **Faster R-CNN R50-C4** (:func:`build_faster_rcnn_c4`): the ResNet up to res4 (``layer3``,
  stride 16) is the backbone; the RPN (one 3x3 conv, anchors 32..512 x ratios 0.5/1/2) runs on
  res4; each proposal is pooled 14x14 with ROIAlignV2 (``aligned=True``, sampling ratio 0 =
  adaptive) from res4 and fed through res5 (``layer4``, first block stride 2: 14 -> 7), the
  *extra BatchNorm after res5* of MoCo's ``Res5ROIHeadsExtraNorm``, and a global average pool;
  a linear classifier (C + 1 classes) and class-specific box regressor (4C) follow.
- **Mask R-CNN R50-C4** (:func:`build_mask_rcnn_c4`): that detector with detectron2's C4 mask
  branch: positive RoIs pooled from res4, res5 and the extra norm (shared with the box head),
  a 2x2 deconv (256) and a 1x1 conv per class: 14x14 mask logits.
- **Mask R-CNN R50-FPN** (:func:`build_mask_rcnn_fpn`): FPN P2..P6 (256 channels, P6 = max-pool
  of P5) with norm layers in the FPN convs (MoCo's ``FPN.NORM: SyncBN``); RPN on P2..P6 (anchor
  32..512, one size per level); box head: ROIAlignV2 7x7 -> 2 FC (1024) -> predictor
  (``box_head: 2fc``), or MMDetection's ``Shared4Conv1FCBBoxHead`` (``box_head: 4conv1fc``,
  :func:`conv_fc_box_head`: 4 convs 3x3 (256) with a norm each -> 1 FC (1024)); mask head:
  ROIAlignV2 14x14 -> 4 conv (256, with a norm each when ``head_norm``) -> deconv -> 1x1 per class.

Everything trains (``FREEZE_AT: 0``); every BatchNorm, the backbone's included, runs in training
mode; :func:`convert_sync_batchnorm` turns them into SyncBN when the run is distributed on GPUs
(``RESNETS.NORM: SyncBN``). Inputs are RGB in [0, 1]; :class:`DetectionTransform` normalises
with MoCo's ``PIXEL_MEAN``/``PIXEL_STD`` (given on the 0..255 scale), resizes the shorter side
to a random choice of ``min_size_train`` (``min_size_test`` in eval mode) with the longer side at
most ``max_size``, and pads the batch to a multiple of 32.

Where torchvision's defaults differ from detectron2 these models take detectron2's values:
RoIAlign ``aligned=True`` (torchvision's ``MultiScaleRoIAlign`` uses ``aligned=False``), the
level of an RoI ``floor(4 + log2(sqrt(area) / 224))`` clamped to P2..P5, the predictor init
(normal std 0.01 for scores, 0.001 for boxes and mask logits), FC init ``kaiming_uniform(a=1)``.
Kept from torchvision: anchor rounding, and by default its smooth-L1 box losses (beta 1/9) where
detectron2 and MMDetection use L1 (``box_loss: l1``, :mod:`.losses`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from sslzoo.benchmarks.detection.losses import set_box_loss
from sslzoo.benchmarks.protocol_files import schema_default
from sslzoo.errors import SslzooError
from sslzoo.models.backbone import ResNetBackbone, depth_from_state_dict

StateDict = dict[str, torch.Tensor]

ARCHITECTURES = ("faster_rcnn_c4", "mask_rcnn_c4", "mask_rcnn_fpn")
BOX_HEADS = ("2fc", "4conv1fc")
NORMS = ("BN", "SyncBN", "naiveSyncBN")


@dataclass(frozen=True)
class ModelConfig:
    """The ``model`` section of a detection protocol file (detectron2 names in brackets; the
    defaults are those of ``sslzoo/schemas/detection.schema.yaml``).

    Attributes:
        arch: ``faster_rcnn_c4``, ``mask_rcnn_c4`` or ``mask_rcnn_fpn``.
        norm: ``SyncBN`` / ``naiveSyncBN`` (SyncBatchNorm when distributed on GPUs) or ``BN``
            [RESNETS.NORM, FPN.NORM].
        extra_norm: the BN after res5 of the C4 box head (MoCo's Res5ROIHeadsExtraNorm).
        pooler_resolution: C4 box RoIAlign output [ROI_BOX_HEAD.POOLER_RESOLUTION, 14].
        box_pooler_resolution, mask_pooler_resolution: FPN heads (7, 14).
        box_head: the FPN box head, ``2fc`` or ``4conv1fc`` (MMDetection Shared4Conv1FCBBoxHead).
        box_conv_dim: channels of the 4conv1fc head's convs [ROI_BOX_HEAD.CONV_DIM, 256].
        head_norm: a norm after each conv of the 4conv1fc box head and of the mask head.
        box_loss: ``smooth_l1`` (torchvision's, beta 1/9) or ``l1`` (MMDetection, detectron2).
        anchor_sizes: [ANCHOR_GENERATOR.SIZES] (one per FPN level for FPN).
        aspect_ratios: [ANCHOR_GENERATOR.ASPECT_RATIOS].
        rpn_pre_nms_topk_train/test, rpn_post_nms_topk_train/test: [RPN.*_NMS_TOPK_*]
            (per level for FPN's pre-NMS).
        rpn_batch_size_per_image: [RPN.BATCH_SIZE_PER_IMAGE, 256].
        roi_batch_size_per_image: [ROI_HEADS.BATCH_SIZE_PER_IMAGE, 512].
        fpn_channels: [FPN.OUT_CHANNELS, 256].
        box_fc_dim: [ROI_BOX_HEAD.FC_DIM, 1024].
        mask_head_channels: [ROI_MASK_HEAD.CONV_DIM, 256].
        score_thresh_test, nms_thresh_test, detections_per_image: [ROI_HEADS.SCORE_THRESH_TEST
            0.05, NMS_THRESH_TEST 0.5, TEST.DETECTIONS_PER_IMAGE 100].
    """

    arch: str
    norm: str = schema_default("det", "model", "norm")
    extra_norm: bool = schema_default("det", "model", "extra_norm")
    pooler_resolution: int = schema_default("det", "model", "pooler_resolution")
    box_pooler_resolution: int = schema_default("det", "model", "box_pooler_resolution")
    mask_pooler_resolution: int = schema_default("det", "model", "mask_pooler_resolution")
    box_head: str = schema_default("det", "model", "box_head")
    box_conv_dim: int = schema_default("det", "model", "box_conv_dim")
    head_norm: bool = schema_default("det", "model", "head_norm")
    box_loss: str = schema_default("det", "model", "box_loss")
    anchor_sizes: tuple[int, ...] = schema_default("det", "model", "anchor_sizes")
    aspect_ratios: tuple[float, ...] = schema_default("det", "model", "aspect_ratios")
    rpn_pre_nms_topk_train: int = schema_default("det", "model", "rpn_pre_nms_topk_train")
    rpn_pre_nms_topk_test: int = schema_default("det", "model", "rpn_pre_nms_topk_test")
    rpn_post_nms_topk_train: int = schema_default("det", "model", "rpn_post_nms_topk_train")
    rpn_post_nms_topk_test: int = schema_default("det", "model", "rpn_post_nms_topk_test")
    rpn_batch_size_per_image: int = schema_default("det", "model", "rpn_batch_size_per_image")
    roi_batch_size_per_image: int = schema_default("det", "model", "roi_batch_size_per_image")
    fpn_channels: int = schema_default("det", "model", "fpn_channels")
    box_fc_dim: int = schema_default("det", "model", "box_fc_dim")
    mask_head_channels: int = schema_default("det", "model", "mask_head_channels")
    score_thresh_test: float = schema_default("det", "model", "score_thresh_test")
    nms_thresh_test: float = schema_default("det", "model", "nms_thresh_test")
    detections_per_image: int = schema_default("det", "model", "detections_per_image")


@dataclass(frozen=True)
class InputConfig:
    """The ``input`` section: resizing and normalisation [INPUT.*, MODEL.PIXEL_MEAN/STD], and
    ``ignore_difficult`` (VOC training without the difficult boxes); defaults: the schema's."""

    min_size_train: tuple[int, ...] = schema_default("det", "input", "min_size_train")
    max_size_train: int = schema_default("det", "input", "max_size_train")
    min_size_test: int = schema_default("det", "input", "min_size_test")
    max_size_test: int = schema_default("det", "input", "max_size_test")
    pixel_mean: tuple[float, float, float] = schema_default("det", "input", "pixel_mean")
    pixel_std: tuple[float, float, float] = schema_default("det", "input", "pixel_std")
    flip_prob: float = schema_default("det", "input", "flip_prob")
    ignore_difficult: bool = schema_default("det", "input", "ignore_difficult")


class DetectionTransform(GeneralizedRCNNTransform):
    """torchvision's transform with separate train/test sizes (detectron2 ``ResizeShortestEdge``).

    Training picks the shorter side uniformly from ``min_size_train`` per image (torch's global
    generator, reseeded every iteration by the training loop); eval mode uses ``min_size_test``.
    ``pixel_mean``/``pixel_std`` are on the 0..255 scale, images in [0, 1].
    """

    def __init__(self, cfg: InputConfig) -> None:
        super().__init__(
            min_size=cfg.min_size_train,
            max_size=cfg.max_size_train,
            image_mean=[m / 255.0 for m in cfg.pixel_mean],
            image_std=[s / 255.0 for s in cfg.pixel_std],
            size_divisible=32,
        )
        self.input_cfg = cfg

    def resize(self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None):  # type: ignore[override]
        if self.training:
            self.min_size, self.max_size = tuple(self.input_cfg.min_size_train), self.input_cfg.max_size_train
        else:
            self.min_size, self.max_size = (self.input_cfg.min_size_test,), self.input_cfg.max_size_test
        return super().resize(image, target)


class AlignedRoIPooler(MultiScaleRoIAlign):
    """detectron2's ``ROIPooler`` with ``ROIAlignV2``: RoIAlign ``aligned=True`` over feature levels.

    With one feature map every box is pooled from it (C4). With several (P2..P5, strides 4..32)
    a box of area A goes to level ``floor(4 + log2(sqrt(A) / 224 + 1e-8))`` clamped to the
    available levels (``assign_boxes_to_levels``). ``forward(features, boxes, image_shapes)``
    takes the signature torchvision's RoIHeads calls, returns ``[sum(N_i), C, R, R]``.
    """

    def __init__(
        self,
        featmap_names: Sequence[str],
        output_size: int,
        sampling_ratio: int = 0,
        canonical_box_size: int = 224,
        canonical_level: int = 4,
    ) -> None:
        # torchvision's detectors accept only MultiScaleRoIAlign poolers; forward is our own
        super().__init__(list(featmap_names), output_size, sampling_ratio)
        self.featmap_names = list(featmap_names)
        self.output_size = output_size  # type: ignore[assignment]
        self.sampling_ratio = sampling_ratio
        self.canonical_box_size, self.canonical_level = canonical_box_size, canonical_level

    @staticmethod
    def _scale(feature: torch.Tensor, image_size: tuple[int, int]) -> float:
        """Feature stride as a power of two, as torchvision's pooler infers it (1/16 for res4)."""
        approx = feature.shape[-2] / image_size[0]
        return 2.0 ** round(math.log2(approx))

    def forward(
        self,
        features: dict[str, torch.Tensor],
        boxes: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        maps = [features[name] for name in self.featmap_names]
        padded = (max(s[0] for s in image_shapes), max(s[1] for s in image_shapes))
        scales = [self._scale(m, padded) for m in maps]
        rois = torch.cat(
            [torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)], dim=0
        )
        if len(maps) == 1:
            return roi_align(maps[0], rois, self.output_size, scales[0], self.sampling_ratio, aligned=True)
        levels = [-int(round(math.log2(s))) for s in scales]
        sizes = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
        level = torch.floor(self.canonical_level + torch.log2(sizes / self.canonical_box_size + 1e-8))
        level = level.clamp(min(levels), max(levels)).to(torch.int64) - min(levels)
        out = rois.new_zeros((rois.shape[0], maps[0].shape[1], self.output_size, self.output_size))
        for k, (feature, scale) in enumerate(zip(maps, scales, strict=True)):
            index = torch.nonzero(level == k).squeeze(1)
            if index.numel():
                pooled = roi_align(
                    feature, rois[index], self.output_size, scale, self.sampling_ratio, aligned=True
                )
                out[index] = pooled.to(out.dtype)
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(featmap_names={self.featmap_names}, output_size={self.output_size}, "
            f"sampling_ratio={self.sampling_ratio}, aligned=True)"
        )


class ResNetC4Body(nn.Module):
    """Stem + ``layer1..layer3`` of a ResNet: ``[B, 3, H, W] -> {"res4": [B, C4, H/16, W/16]}``."""

    def __init__(self, resnet: ResNetBackbone) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3 = resnet.layer1, resnet.layer2, resnet.layer3
        self.out_channels = resnet.stage_channels[3]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return OrderedDict(res4=x)


class Res5BoxHead(nn.Module):
    """res5 on pooled RoIs, the extra BN (MoCo ``Res5ROIHeadsExtraNorm``), global average pool.

    ``[N, C4, R, R] -> [N, C5]``; ``res5`` is the backbone's ``layer4`` (weights from the
    pretrained backbone, as detectron2 loads ``res5.*`` into ``roi_heads.res5``).
    """

    def __init__(self, res5: nn.Module, channels: int, extra_norm: bool = True) -> None:
        super().__init__()
        self.res5 = res5
        self.norm: nn.Module = nn.BatchNorm2d(channels) if extra_norm else nn.Identity()
        self.out_channels = channels

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """res5 and the extra norm without the pooling: ``[N, C4, R, R] -> [N, C5, R/2, R/2]``."""
        return self.norm(self.res5(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


class Res5MaskHead(nn.Module):
    """The mask branch of detectron2's ``Res5ROIHeads``: the box head's res5 and extra norm (the
    same modules, shared weights) on RoIs pooled from res4, unpooled:
    ``[N, C4, R, R] -> [N, C5, R/2, R/2]``. detectron2 slices the foreground RoIs' res5 features
    out of the box branch's batch; here res5 runs again on them (torchvision's RoIHeads pools the
    mask RoIs itself), so in training the BatchNorms see the foreground RoIs as their own batch.
    """

    def __init__(self, box_head: Res5BoxHead) -> None:
        super().__init__()
        self.box_head = box_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.box_head.features(x)


def init_predictor(predictor: FastRCNNPredictor) -> FastRCNNPredictor:
    """detectron2 ``FastRCNNOutputLayers`` init: scores normal(0.01), boxes normal(0.001), biases 0."""
    nn.init.normal_(predictor.cls_score.weight, std=0.01)
    nn.init.normal_(predictor.bbox_pred.weight, std=0.001)
    for layer in (predictor.cls_score, predictor.bbox_pred):
        nn.init.zeros_(layer.bias)
    return predictor


def conv_fc_box_head(
    channels: int, resolution: int, conv_dim: int, fc_dim: int, norm: bool, num_convs: int = 4
) -> FastRCNNConvFCHead:
    """MMDetection's ``Shared4Conv1FCBBoxHead`` before its predictor (``ConvFCBBoxHead`` with
    ``num_shared_convs=4, num_shared_fcs=1``; detectron2 ``FastRCNNConvFCHead`` NUM_CONV 4, NUM_FC 1).

    ``[N, channels, R, R] -> [N, fc_dim]``: ``num_convs`` x (3x3 conv of ``conv_dim``, padding 1,
    no bias when ``norm``; BatchNorm when ``norm`` (SyncBN after :func:`convert_sync_batchnorm`);
    ReLU), flatten (``conv_dim * R * R``), one FC of ``fc_dim`` + ReLU. Init as mmcv: convs
    ``kaiming_normal(fan_out, relu)``, norms 1 / 0, FC ``xavier_uniform`` with zero bias. With
    the protocol's 256 channels, 7x7 RoIs and FC 1024 it holds
    ``4 * 256 * 256 * 9 + 4 * 2 * 256 + 256 * 49 * 1024 + 1024 = 15,207,424`` parameters.
    """
    head = FastRCNNConvFCHead(
        (channels, resolution, resolution),
        [conv_dim] * num_convs,
        [fc_dim],
        norm_layer=nn.BatchNorm2d if norm else None,
    )
    for module in head.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return head


def _resnet(depth: int, state_dict: StateDict | None) -> ResNetBackbone:
    resnet = ResNetBackbone(depth=depth)
    if state_dict is not None:
        load_resnet_weights(resnet, state_dict)
    return resnet


def load_resnet_weights(resnet: ResNetBackbone, state_dict: StateDict) -> None:
    """Load a torchvision backbone state dict (``fc.*`` ignored) strictly into ``resnet``."""
    weights = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
    try:
        resnet.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise SslzooError(f"backbone weights do not fit ResNet-{resnet.depth}: {err}") from err


def build_faster_rcnn_c4(
    num_classes: int,
    model_cfg: ModelConfig,
    input_cfg: InputConfig,
    depth: int = 50,
    state_dict: StateDict | None = None,
) -> FasterRCNN:
    """Faster R-CNN with a ResNet-C4 backbone and a res5 box head (module docstring).

    Args:
        num_classes: object classes, background excluded (20 for VOC).
        depth: ResNet depth (taken from ``state_dict`` when given).
        state_dict: torchvision backbone weights; res5 of the box head gets ``layer4.*``.
    """
    body, parts = _c4_parts(num_classes, model_cfg, depth, state_dict)
    model = FasterRCNN(body, **parts, **_detector_kwargs(model_cfg))
    model.transform = DetectionTransform(input_cfg)
    return set_box_loss(model, model_cfg.box_loss)


def _c4_parts(
    num_classes: int, model_cfg: ModelConfig, depth: int, state_dict: StateDict | None
) -> tuple[ResNetC4Body, dict[str, nn.Module]]:
    """The res4 body and the RPN and box-head arguments of a C4 detector."""
    if state_dict is not None:
        depth = depth_from_state_dict({k: v for k, v in state_dict.items() if not k.startswith("fc.")})
    resnet = _resnet(depth, state_dict)
    body = ResNetC4Body(resnet)
    anchors = AnchorGenerator((tuple(model_cfg.anchor_sizes),), (tuple(model_cfg.aspect_ratios),))
    box_head = Res5BoxHead(resnet.layer4, resnet.stage_channels[4], model_cfg.extra_norm)
    return body, {
        "rpn_anchor_generator": anchors,
        "rpn_head": RPNHead(body.out_channels, anchors.num_anchors_per_location()[0]),
        "box_roi_pool": AlignedRoIPooler(["res4"], model_cfg.pooler_resolution),
        "box_head": box_head,
        "box_predictor": init_predictor(FastRCNNPredictor(box_head.out_channels, num_classes + 1)),
    }


def build_mask_rcnn_c4(
    num_classes: int,
    model_cfg: ModelConfig,
    input_cfg: InputConfig,
    depth: int = 50,
    state_dict: StateDict | None = None,
) -> MaskRCNN:
    """Mask R-CNN R50-C4 (detectron2 ``Res5ROIHeads`` with ``MASK_ON``; MoCo's
    ``coco_R_50_C4_2x_moco.yaml``): the Faster R-CNN C4 of :func:`build_faster_rcnn_c4` plus a
    mask branch that pools the positive RoIs from res4 like the box branch (``pooler_resolution``),
    runs the box head's res5 and extra norm on them (:class:`Res5MaskHead`, shared weights;
    ``[N, C5, R/2, R/2]``) and ``ROI_MASK_HEAD`` ``MaskRCNNConvUpsampleHead`` with ``NUM_CONV 0``:
    a 2x2 stride-2 deconv to ``mask_head_channels`` + ReLU and a 1x1 conv per class,
    ``[N, C + 1, R, R]`` mask logits (14x14 at the protocol's 14). Init as detectron2: deconv
    ``kaiming_normal(fan_out)``, logits normal(0.001), biases 0.
    """
    body, parts = _c4_parts(num_classes, model_cfg, depth, state_dict)
    box_head = parts["box_head"]
    predictor = MaskRCNNPredictor(box_head.out_channels, model_cfg.mask_head_channels, num_classes + 1)
    nn.init.normal_(predictor.mask_fcn_logits.weight, std=0.001)
    nn.init.zeros_(predictor.mask_fcn_logits.bias)
    model = MaskRCNN(
        body,
        **parts,
        mask_roi_pool=AlignedRoIPooler(["res4"], model_cfg.pooler_resolution),
        mask_head=Res5MaskHead(box_head),  # type: ignore[arg-type]
        mask_predictor=predictor,
        **_detector_kwargs(model_cfg),
    )
    model.transform = DetectionTransform(input_cfg)
    return set_box_loss(model, model_cfg.box_loss)


def build_mask_rcnn_fpn(
    num_classes: int,
    model_cfg: ModelConfig,
    input_cfg: InputConfig,
    depth: int = 50,
    state_dict: StateDict | None = None,
) -> MaskRCNN:
    """Mask R-CNN with a ResNet-FPN backbone (module docstring); FPN convs carry BatchNorm."""
    if state_dict is not None:
        depth = depth_from_state_dict({k: v for k, v in state_dict.items() if not k.startswith("fc.")})
    resnet = _resnet(depth, state_dict)
    backbone = BackboneWithFPN(
        resnet,
        return_layers={"layer1": "p2", "layer2": "p3", "layer3": "p4", "layer4": "p5"},
        in_channels_list=list(resnet.stage_channels[1:]),
        out_channels=model_cfg.fpn_channels,
        extra_blocks=LastLevelMaxPool(),
        norm_layer=nn.BatchNorm2d,  # FPN.NORM (SyncBN after convert_sync_batchnorm)
    )
    levels = ["p2", "p3", "p4", "p5"]
    if len(model_cfg.anchor_sizes) != len(levels) + 1:
        raise SslzooError(
            f"model.anchor_sizes: the FPN model needs one anchor size per level P2..P6 (5), got "
            f"{list(model_cfg.anchor_sizes)}"
        )
    sizes = tuple((s,) for s in model_cfg.anchor_sizes)
    anchors = AnchorGenerator(sizes, (tuple(model_cfg.aspect_ratios),) * len(sizes))
    channels = model_cfg.fpn_channels
    resolution = model_cfg.box_pooler_resolution
    box_head: nn.Module
    if model_cfg.box_head == "4conv1fc":
        box_head = conv_fc_box_head(
            channels, resolution, model_cfg.box_conv_dim, model_cfg.box_fc_dim, model_cfg.head_norm
        )
    elif model_cfg.box_head == "2fc":
        box_head = TwoMLPHead(channels * resolution**2, model_cfg.box_fc_dim)
        for fc in (box_head.fc6, box_head.fc7):
            nn.init.kaiming_uniform_(fc.weight, a=1)  # detectron2 c2_xavier_fill
            nn.init.zeros_(fc.bias)
    else:
        raise SslzooError(f"model.box_head must be one of {list(BOX_HEADS)}, got {model_cfg.box_head!r}")
    mask_channels = model_cfg.mask_head_channels
    mask_predictor = MaskRCNNPredictor(mask_channels, mask_channels, num_classes + 1)
    nn.init.normal_(mask_predictor.mask_fcn_logits.weight, std=0.001)
    nn.init.zeros_(mask_predictor.mask_fcn_logits.bias)
    model = MaskRCNN(
        backbone,
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(channels, anchors.num_anchors_per_location()[0]),
        box_roi_pool=AlignedRoIPooler(levels, resolution),
        box_head=box_head,
        box_predictor=init_predictor(FastRCNNPredictor(model_cfg.box_fc_dim, num_classes + 1)),
        mask_roi_pool=AlignedRoIPooler(levels, model_cfg.mask_pooler_resolution),
        mask_head=MaskRCNNHeads(
            channels, [mask_channels] * 4, 1, norm_layer=nn.BatchNorm2d if model_cfg.head_norm else None
        ),
        mask_predictor=mask_predictor,
        **_detector_kwargs(model_cfg),
    )
    model.transform = DetectionTransform(input_cfg)
    return set_box_loss(model, model_cfg.box_loss)


def _detector_kwargs(cfg: ModelConfig) -> dict[str, float | int]:
    return dict(
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_topk_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_topk_test,
        rpn_post_nms_top_n_train=cfg.rpn_post_nms_topk_train,
        rpn_post_nms_top_n_test=cfg.rpn_post_nms_topk_test,
        rpn_batch_size_per_image=cfg.rpn_batch_size_per_image,
        box_batch_size_per_image=cfg.roi_batch_size_per_image,
        box_score_thresh=cfg.score_thresh_test,
        box_nms_thresh=cfg.nms_thresh_test,
        box_detections_per_img=cfg.detections_per_image,
    )


BUILDERS = {
    "faster_rcnn_c4": build_faster_rcnn_c4,
    "mask_rcnn_c4": build_mask_rcnn_c4,
    "mask_rcnn_fpn": build_mask_rcnn_fpn,
}


def build_detector(
    num_classes: int, model_cfg: ModelConfig, input_cfg: InputConfig, state_dict: StateDict
) -> nn.Module:
    """The protocol's detector initialised from a backbone state dict (its depth inferred)."""
    if model_cfg.arch not in BUILDERS:
        raise SslzooError(f"model.arch must be one of {list(BUILDERS)}, got {model_cfg.arch!r}")
    return BUILDERS[model_cfg.arch](num_classes, model_cfg, input_cfg, state_dict=state_dict)


def convert_sync_batchnorm(model: nn.Module, norm: str, distributed: bool, device: torch.device) -> nn.Module:
    """SyncBatchNorm for ``SyncBN``/``naiveSyncBN`` when running distributed on GPUs, else unchanged.

    (On CPU, under gloo, every process normalises over its own images.)
    """
    if norm in ("SyncBN", "naiveSyncBN") and distributed and device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model
