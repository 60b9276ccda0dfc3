"""Semantic segmentation benchmark: FCN-R50-D8 fine-tuned on VOC12aug or Cityscapes, mIoU.

The MMSegmentation protocol of MMSelfSup's model zoo (PROTOCOLS.md "Segmentation"; mmselfsup
``configs/benchmarks/mmsegmentation/_base_/models/fcn_r50-d8.py``,
``voc12aug/fcn_r50-d8_512x512_20k_voc12aug.py``, ``cityscapes/fcn_r50-d8_769x769_40k_cityscapes.py``,
``_base_/schedules/schedule_{20k,40k}.py``; mmseg 0.x ``mmseg/models/decode_heads/fcn_head.py``,
``utils/res_layer.py``, ``segmentors/encoder_decoder.py``, ``core/evaluation/metrics.py``).

**Backbone.** The pretrained torchvision ResNet with strides (1, 2, 1, 1) and dilations
(1, 1, 2, 4) in layer1..layer4 and ``contract_dilation``: the first block of a dilated stage
uses half the dilation (layer3: 1 then 2; layer4: 2 then 4), the rest the full one
(:func:`dilate_resnet`, mmseg ``ResLayer``). For bottleneck ResNets this is exactly torchvision's
``replace_stride_with_dilation=[False, True, True]`` (whose first block takes the previous
stage's dilation); for basic-block ResNets (18/34, the mini zoo; torchvision refuses to dilate
them) the 3x3 conv1 of each block is dilated and conv2 is not, as in mmseg's BasicBlock.
Output stride 8. *The stem:* mmseg's own ``fcn_r50-d8.py`` uses ``ResNetV1c``, whose stem is
three 3x3 convs (32-32-64 channels); MMSelfSup's benchmark copy of it sets ``type='ResNet'``,
torchvision's 7x7 stem, so that self-supervised checkpoints load. We do the same: the body
(layer1..layer4) is identical to ResNetV1c-D8's, the stem is torchvision's.

**Heads.** FCN head on layer4: ``num_convs`` 3x3 ConvModules (conv without bias, BN, ReLU) to
``channels`` (512, 2 convs), ``concat_input``: one more 3x3 ConvModule on
``cat(input, convs(input))``, then Dropout2d(0.1) and a 1x1 classifier (normal std 0.01, bias 0).
Auxiliary FCN head on layer3: 1 conv to 256, no concat, Dropout2d(0.1), 1x1 classifier; its
loss has weight 0.4. Losses are cross-entropies (ignore 255) on the logits bilinearly upsampled
to the label size (``align_corners`` per protocol), averaged over *all* pixels, ignored ones
counting 0 (mmseg's default ``avg_non_ignore=False``). Every BN trains; SyncBN when
distributed on GPUs.

**Optimisation.** SGD lr 0.01, momentum 0.9, weight decay 5e-4 on every parameter; poly
schedule ``lr = (lr0 - min_lr) * (1 - i / max_iter) ** 0.9 + min_lr`` (mmcv
``PolyLrUpdaterHook``, ``by_epoch=False``), no warm-up; iteration-based
(:func:`sslzoo.benchmarks.detection.train.train_iterations`: resumable, seeded, jsonl log).

**Inference and metric.** ``whole``: the test image resized to fit ``img_scale`` goes through
the network at once; ``slide`` (Cityscapes): windows of ``crop_size`` every ``stride`` pixels
(the last window of a row/column flush with the border), logits of each window upsampled to the
window and summed, divided by the number of windows covering each pixel. The logits are then
resized to the original image (mmseg ``rescale=True``) and the arg-max is the prediction.
Over the whole validation set, per class c: intersection = #(pred = c and label = c), union =
#(pred = c) + #(label = c) - intersection, pixels labelled 255 excluded; IoU = intersection /
union; mIoU = mean over classes whose union is non-zero (NaN classes, absent from labels and
predictions, are left out: ``np.nanmean``). Reported as ``mIOU`` in %.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from torchvision.models.resnet import BasicBlock, Bottleneck
from tqdm import tqdm

from sslzoo.benchmarks.classifier_loop import training_run_record
from sslzoo.benchmarks.detection.models import load_resnet_weights
from sslzoo.benchmarks.detection.train import IterationSettings, train_iterations
from sslzoo.benchmarks.linear_protocol import check_gpus
from sslzoo.benchmarks.protocol_files import build_dataclass, read_protocol, schema_default
from sslzoo.checkpoints import load_backbone
from sslzoo.data import segmentation as seg
from sslzoo.data.segmentation import IGNORE_INDEX, PipelineConfig
from sslzoo.errors import SslzooError
from sslzoo.io import file_digest, git_revision, write_json
from sslzoo.models.backbone import ResNetBackbone, depth_from_state_dict
from sslzoo.runtime.dist import DistContext, all_gather_object, broadcast_buffers, init_distributed

DATASETS = ("voc12aug", "cityscapes")


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


def dilate_resnet(
    resnet: ResNetBackbone,
    strides: Sequence[int] = (1, 2, 1, 1),
    dilations: Sequence[int] = (1, 1, 2, 4),
    contract_dilation: bool = True,
) -> ResNetBackbone:
    """Set the strides and dilations of ``layer1..layer4`` in place (module docstring); returns it.

    The weights are untouched: only the stride, dilation and padding of the 3x3 convs (and the
    stride of the 1x1 shortcut convs) change.
    """
    layers = (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)
    for layer, stride, dilation in zip(layers, strides, dilations, strict=True):
        for index, block in enumerate(layer):
            block_dilation = dilation // 2 if index == 0 and dilation > 1 and contract_dilation else dilation
            block_stride = stride if index == 0 else 1
            if isinstance(block, Bottleneck):
                strided, dilated = block.conv2, [block.conv2]
            elif isinstance(block, BasicBlock):
                strided, dilated = block.conv1, [block.conv1]
            else:
                raise TypeError(f"not a ResNet block: {type(block).__name__}")
            strided.stride = (block_stride, block_stride)
            for conv in dilated:
                conv.dilation = (block_dilation, block_dilation)
                conv.padding = (block_dilation, block_dilation)
            if block.downsample is not None:
                block.downsample[0].stride = (block_stride, block_stride)
            elif block_stride != 1:
                raise SslzooError(f"stride {block_stride} needs a shortcut conv in block {index}")
    return resnet


class ConvModule(nn.Sequential):
    """mmcv ``ConvModule(conv_cfg=None, norm_cfg=BN, act_cfg=ReLU)``: conv (no bias), BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        nn.init.kaiming_normal_(self[0].weight, mode="fan_out", nonlinearity="relu")


class FCNHead(nn.Module):
    """mmseg ``FCNHead``: ``[B, C_in, h, w] -> [B, num_classes, h, w]``.

    Args:
        in_channels: channels of the input stage.
        channels: width of the convs (512 decode, 256 auxiliary).
        num_convs: 3x3 ConvModules (2 decode, 1 auxiliary).
        concat_input: a fusing ConvModule on ``cat(input, convs)`` (decode head only).
        dropout: Dropout2d before the classifier.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        num_convs: int = 2,
        concat_input: bool = True,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if num_convs < 1:
            raise SslzooError(f"FCN head: num_convs must be at least 1, got {num_convs}")
        self.convs = nn.Sequential(
            *[ConvModule(in_channels if i == 0 else channels, channels) for i in range(num_convs)]
        )
        self.conv_cat = ConvModule(in_channels + channels, channels) if concat_input else None
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs(x)
        if self.conv_cat is not None:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.conv_seg(self.dropout(out))


@dataclass(frozen=True)
class FCNConfig:
    """The ``model`` section of a segmentation protocol (mmseg ``fcn_r50-d8.py`` values, the
    defaults of ``sslzoo/schemas/segmentation.schema.yaml``).

    Attributes:
        norm: ``SyncBN`` (SyncBatchNorm when distributed on GPUs) or ``BN``.
        channels, num_convs, concat_input, dropout: decode head.
        aux_channels, aux_num_convs, aux_weight: auxiliary head on layer3 (0 weight: none).
        align_corners: of every bilinear resize (False for VOC, True for Cityscapes 769).
        strides, dilations, contract_dilation: of the backbone stages.
    """

    norm: str = schema_default("seg", "model", "norm")
    channels: int = schema_default("seg", "model", "channels")
    num_convs: int = schema_default("seg", "model", "num_convs")
    concat_input: bool = schema_default("seg", "model", "concat_input")
    dropout: float = schema_default("seg", "model", "dropout")
    aux_channels: int = schema_default("seg", "model", "aux_channels")
    aux_num_convs: int = schema_default("seg", "model", "aux_num_convs")
    aux_weight: float = schema_default("seg", "model", "aux_weight")
    align_corners: bool = schema_default("seg", "model", "align_corners")
    strides: tuple[int, ...] = schema_default("seg", "model", "strides")
    dilations: tuple[int, ...] = schema_default("seg", "model", "dilations")
    contract_dilation: bool = schema_default("seg", "model", "contract_dilation")


class FCNSegmentor(nn.Module):
    """mmseg ``EncoderDecoder`` with an FCN decode head (layer4) and an FCN auxiliary head (layer3).

    ``forward(images [B, 3, H, W]) -> {"decode": [B, K, H/8, W/8], "aux": [B, K, H/8, W/8]}``
    (``aux`` only in training mode and when the auxiliary head exists).
    """

    def __init__(self, backbone: ResNetBackbone, num_classes: int, cfg: FCNConfig) -> None:
        super().__init__()
        self.backbone = dilate_resnet(backbone, cfg.strides, cfg.dilations, cfg.contract_dilation)
        self.num_classes, self.align_corners, self.aux_weight = num_classes, cfg.align_corners, cfg.aux_weight
        channels = backbone.stage_channels
        self.decode_head = FCNHead(
            channels[4], cfg.channels, num_classes, cfg.num_convs, cfg.concat_input, cfg.dropout
        )
        self.auxiliary_head = (
            FCNHead(channels[3], cfg.aux_channels, num_classes, cfg.aux_num_convs, False, cfg.dropout)
            if cfg.aux_weight > 0
            else None
        )

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        stage4, stage5 = self.backbone(images, (4, 5))
        out = {"decode": self.decode_head(stage5)}
        if self.training and self.auxiliary_head is not None:
            out["aux"] = self.auxiliary_head(stage4)
        return out

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Decode logits upsampled to the input size, ``[B, K, H, W]`` (mmseg ``encode_decode``)."""
        return upsample(self(images)["decode"], images.shape[-2:], self.align_corners)


def upsample(logits: torch.Tensor, size: Sequence[int], align_corners: bool) -> torch.Tensor:
    """Bilinear resize of ``[B, K, h, w]`` logits to ``size`` (H, W)."""
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=align_corners)


def segmentation_losses(
    outputs: dict[str, torch.Tensor], labels: torch.Tensor, aux_weight: float, align_corners: bool
) -> dict[str, torch.Tensor]:
    """``{"loss_decode", "loss_aux"}``: pixel cross-entropies, ignore 255, mean over all pixels.

    Args:
        outputs: :class:`FCNSegmentor` training outputs.
        labels: int64 ``[B, H, W]``.
        aux_weight: factor of the auxiliary loss (0.4).
    """

    def ce(logits: torch.Tensor) -> torch.Tensor:
        full = upsample(logits, labels.shape[-2:], align_corners)
        return F.cross_entropy(full, labels, ignore_index=IGNORE_INDEX, reduction="none").mean()

    losses = {"loss_decode": ce(outputs["decode"])}
    if "aux" in outputs:
        losses["loss_aux"] = aux_weight * ce(outputs["aux"])
    return losses


def build_fcn(num_classes: int, cfg: FCNConfig, state_dict: dict[str, torch.Tensor]) -> FCNSegmentor:
    """An :class:`FCNSegmentor` whose backbone holds ``state_dict`` (torchvision layout, depth inferred)."""
    weights = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
    backbone = ResNetBackbone(depth=depth_from_state_dict(weights))
    load_resnet_weights(backbone, weights)
    return FCNSegmentor(backbone, num_classes, cfg)


# --------------------------------------------------------------------------------------------
# Inference and mIoU
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def slide_logits(
    model: FCNSegmentor, image: torch.Tensor, crop_size: Sequence[int], stride: Sequence[int]
) -> torch.Tensor:
    """mmseg ``slide_inference``: averaged window logits ``[B, K, H, W]`` of ``image`` ``[B, 3, H, W]``."""
    batch, _, height, width = image.shape
    crop_h, crop_w = crop_size
    stride_h, stride_w = stride
    rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    cols = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    total = image.new_zeros((batch, model.num_classes, height, width))
    count = image.new_zeros((batch, 1, height, width))
    for row in range(rows):
        for col in range(cols):
            y1, x1 = min(row * stride_h + crop_h, height), min(col * stride_w + crop_w, width)
            y0, x0 = max(y1 - crop_h, 0), max(x1 - crop_w, 0)
            total[:, :, y0:y1, x0:x1] += model.logits(image[:, :, y0:y1, x0:x1])
            count[:, :, y0:y1, x0:x1] += 1
    return total / count


@torch.no_grad()
def predict_labels(
    model: FCNSegmentor,
    image: torch.Tensor,
    out_size: Sequence[int],
    mode: str = "whole",
    crop_size: Sequence[int] = (769, 769),
    stride: Sequence[int] = (513, 513),
) -> torch.Tensor:
    """Predicted class per pixel, int64 ``[B, *out_size]``: whole or sliding-window logits resized
    to the original size (``align_corners`` of the model), arg-max over classes."""
    if mode == "slide":
        logits = slide_logits(model, image, crop_size, stride)
    elif mode == "whole":
        logits = model.logits(image)
    else:
        raise SslzooError(f"test.mode must be whole or slide, got {mode!r}")
    return upsample(logits, out_size, model.align_corners).argmax(dim=1)


def intersect_and_union(pred: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class pixel counts ``[4, K]``: intersection, union, predicted, labelled (255 excluded)."""
    keep = label != IGNORE_INDEX
    pred, label = pred[keep].astype(np.int64), label[keep].astype(np.int64)
    inside = (pred >= 0) & (pred < num_classes)
    area_pred = np.bincount(pred[inside], minlength=num_classes)[:num_classes]
    area_label = np.bincount(label[(label >= 0) & (label < num_classes)], minlength=num_classes)[:num_classes]
    area_inter = np.bincount(label[pred == label], minlength=num_classes)[:num_classes]
    return np.stack([area_inter, area_pred + area_label - area_inter, area_pred, area_label]).astype(np.int64)


def mean_iou(areas: np.ndarray) -> dict[str, Any]:
    """``mIoU`` (%, NaN classes excluded), per-class ``IoU`` (% or NaN) and ``aAcc`` (%) of summed areas."""
    inter, union, _pred, label = areas.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    valid = ~np.isnan(iou)
    return {
        "mIoU": float(np.mean(iou[valid]) * 100.0) if valid.any() else float("nan"),
        "IoU": [float(v * 100.0) for v in iou],
        "aAcc": float(inter.sum() / max(label.sum(), 1.0) * 100.0),
    }


@dataclass(frozen=True)
class EvalSettings:
    """The ``test`` section: ``mode`` (whole | slide), ``crop_size`` and ``stride`` of the windows."""

    mode: str
    crop_size: tuple[int, int]
    stride: tuple[int, int]


@torch.no_grad()
def evaluate_segmentation(
    model: FCNSegmentor,
    dataset: Dataset,
    num_classes: int,
    test: EvalSettings,
    ctx: DistContext | None = None,
) -> dict[str, Any]:
    """mIoU of ``model`` over ``dataset`` (eval pipeline: resized image, original-size label).

    Rank r predicts images r, r + W, ...; the areas are summed over processes, so the result
    does not depend on the process count.
    """
    ctx = ctx or DistContext()
    model.eval()
    areas = np.zeros((4, num_classes), np.int64)
    indices = range(ctx.rank, len(dataset), ctx.world_size)  # type: ignore[arg-type]
    for index in tqdm(indices, desc="segment", file=sys.stderr, disable=not ctx.is_main, leave=False):
        image, label = dataset[index]
        pred = predict_labels(
            model, image[None].to(ctx.device), label.shape, test.mode, test.crop_size, test.stride
        )[0]
        areas += intersect_and_union(pred.cpu().numpy(), label.numpy(), num_classes)
    total = np.sum(all_gather_object(areas, ctx), axis=0)
    return mean_iou(total)


# --------------------------------------------------------------------------------------------
# Protocol file and the benchmark
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegTrainSettings:
    """The ``train`` section (mmseg ``schedule_*.py`` and ``data.samples_per_gpu`` x GPUs; the
    defaults of ``sslzoo/schemas/segmentation.schema.yaml``).

    Attributes:
        max_iter: iterations (20000 VOC12aug, 40000 Cityscapes).
        batch_size: images per iteration over all processes (16 / 8).
        workers: data-loading processes per process.
        lr, momentum, weight_decay: SGD (0.01, 0.9, 5e-4).
        power, min_lr: poly schedule (0.9, 1e-4).
        checkpoint_period: iterations between resume checkpoints.
    """

    max_iter: int
    batch_size: int
    workers: int = schema_default("seg", "train", "workers")
    lr: float = schema_default("seg", "train", "lr")
    momentum: float = schema_default("seg", "train", "momentum")
    weight_decay: float = schema_default("seg", "train", "weight_decay")
    power: float = schema_default("seg", "train", "power")
    min_lr: float = schema_default("seg", "train", "min_lr")
    checkpoint_period: int = schema_default("seg", "train", "checkpoint_period")

    def lr_at(self, base_lr: float, iteration: int) -> float:
        """mmcv poly: ``(base - min_lr) * (1 - i / max_iter) ** power + min_lr``."""
        return (base_lr - self.min_lr) * (1.0 - iteration / self.max_iter) ** self.power + self.min_lr


@dataclass(frozen=True)
class SegmentationConfig:
    """A validated segmentation protocol file."""

    dataset: str
    model: FCNConfig
    train: SegTrainSettings
    pipeline: PipelineConfig
    test: EvalSettings
    gpus: int  # the reference's process count (check_gpus)


def load_segmentation_config(path: str | os.PathLike[str]) -> tuple[SegmentationConfig, dict[str, Any]]:
    """Read and validate ``config/benchmarks/seg_*.yaml`` (``sslzoo/schemas/segmentation.schema.yaml``);
    returns the config and the file's mapping as written.

    Keys: ``gpus`` (the reference's process count, :func:`~sslzoo.benchmarks.linear_protocol.check_gpus`),
    ``dataset`` (voc12aug | cityscapes), ``model`` (:class:`FCNConfig`), ``train``
    (:class:`SegTrainSettings`), ``pipeline`` (:class:`~sslzoo.data.segmentation.PipelineConfig`),
    ``test`` (:class:`EvalSettings`).
    """
    source = str(path)
    raw, cfg = read_protocol(path, "seg")
    train = build_dataclass(SegTrainSettings, cfg["train"])
    return (
        SegmentationConfig(
            dataset=cfg["dataset"],
            model=build_dataclass(FCNConfig, cfg["model"]),
            train=train,
            pipeline=build_dataclass(PipelineConfig, cfg["pipeline"]),
            test=build_dataclass(EvalSettings, cfg["test"]),
            gpus=check_gpus(cfg, source, train.batch_size, "train.batch_size"),
        ),
        raw,
    )


def segmentation_benchmark(
    backbone_path: str | os.PathLike[str],
    config_path: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    benchmark_name: str,
    model_name: str,
    voc12: str | os.PathLike[str] | None = None,
    cityscapes: str | os.PathLike[str] | None = None,
    seed: int = 0,
    ctx: DistContext | None = None,
) -> dict[str, Any] | None:
    """Fine-tune FCN from ``backbone_path`` with protocol ``config_path``; write metrics.json.

    Args:
        benchmark_name: the benchmark ``meta`` records (a benchmark of
            :mod:`sslzoo.benchmarks.registry`).
        model_name: the model ``meta`` records.
        voc12: ``VOCdevkit/VOC2012`` with ``SegmentationClassAug`` and ``trainaug.txt``
            (dataset ``voc12aug``: train on trainaug, test on val).
        cityscapes: the Cityscapes root with ``leftImg8bit`` and ``gtFine`` (train / val).
        ctx: process context (default: from the torchrun environment).

    Returns:
        ``{"mIOU": %, "meta": {...}}`` on rank 0, None elsewhere.
    """
    cfg, raw = load_segmentation_config(config_path)
    if cfg.dataset == "voc12aug":
        if voc12 is None or not Path(voc12).is_dir():
            raise SslzooError(
                f"{config_path}: dataset voc12aug needs --voc12 VOCdevkit/VOC2012 (got {voc12})"
            )
        train_samples = seg.voc_segmentation_samples(voc12, "trainaug")
        val_samples = seg.voc_segmentation_samples(voc12, "val")
        classes, label_map = seg.VOC_SEG_CLASSES, None
    else:
        if cityscapes is None or not Path(cityscapes).is_dir():
            raise SslzooError(f"{config_path}: dataset cityscapes needs --cityscapes DIR (got {cityscapes})")
        train_samples = seg.cityscapes_samples(cityscapes, "train")
        val_samples = seg.cityscapes_samples(cityscapes, "val")
        classes, label_map = seg.CITYSCAPES_CLASSES, seg.cityscapes_train_ids
    train_set = seg.SegmentationDataset(train_samples, cfg.pipeline, train=True, label_map=label_map)
    val_set = seg.SegmentationDataset(val_samples, cfg.pipeline, train=False, label_map=label_map)

    ctx = ctx or init_distributed()
    torch.manual_seed(seed)
    model: nn.Module = build_fcn(len(classes), cfg.model, load_backbone(backbone_path)).to(ctx.device)
    if cfg.model.norm == "SyncBN" and ctx.distributed and ctx.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    tr = cfg.train
    optimizer = torch.optim.SGD(
        model.parameters(), lr=tr.lr, momentum=tr.momentum, weight_decay=tr.weight_decay
    )
    device = ctx.device

    def step_losses(runner: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        images, labels = batch
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        return segmentation_losses(runner(images), labels, cfg.model.aux_weight, cfg.model.align_corners)

    fingerprint = {"config": raw, "seed": seed, "backbone": file_digest(backbone_path)}
    summary = train_iterations(
        model,
        optimizer,
        train_set,
        IterationSettings(tr.max_iter, tr.batch_size, tr.workers, tr.checkpoint_period),
        tr.lr_at,
        step_losses,
        work_dir,
        fingerprint,
        seed=seed,
        ctx=ctx,
    )
    broadcast_buffers(model, ctx)
    segmentor = model
    scores = evaluate_segmentation(segmentor, val_set, len(classes), cfg.test, ctx)  # type: ignore[arg-type]
    if not ctx.is_main:
        return None
    out_path = Path(out_path)
    result = {
        "mIOU": scores["mIoU"],
        "meta": {
            "benchmark": benchmark_name,
            "model": model_name,
            "config": raw,
            "config_path": str(config_path),
            "git_rev": git_revision(),
            "backbone": str(backbone_path),
            "dataset": str(voc12 if cfg.dataset == "voc12aug" else cityscapes),
            "seed": seed,
            "world_size": ctx.world_size,
            "max_iter": tr.max_iter,
            "num_train": len(train_set),
            "num_val": len(val_set),
            "aAcc": scores["aAcc"],
            "IoU": {
                name: (None if math.isnan(v) else v) for name, v in zip(classes, scores["IoU"], strict=True)
            },
            **summary,
            "run": training_run_record(config_path, cfg.gpus, tr.batch_size, seed, ctx),
        },
    }
    write_json(out_path, result)
    return result
