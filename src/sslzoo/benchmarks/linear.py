"""Linear evaluation on a frozen backbone, and the supervised training loop it shares with
semi-supervised fine-tuning (:mod:`sslzoo.benchmarks.semi`).

Two protocols of mmselfsup 0.x ``configs/benchmarks/classification`` (PROTOCOLS.md "Linear
evaluation"), chosen by the config's ``layers``:

- multi-head, ``layers: [feature1, ..., feature5]`` (``imagenet/resnet50_mhead_linear-8xb32-steplr-90e_in1k.py``,
  ``places205/...-28e_places205.py``, ``inaturalist2018/...-84e_inat18.py``; head
  ``mmselfsup/models/heads/multi_cls_head.py``): every stage map is average pooled with the
  ``AvgPool2d(kernel, stride, padding)`` of the features config's pooling table (ResNet-50 at
  224 px: 9216 / 9216 / 8192 / 9216 / 8192 values), normalised by a ``BatchNorm2d`` over its
  channels without affine parameters (the reference builds the norm on the pooled *map*, one
  mean and variance per channel), flattened and fed to its own ``Linear`` (normal std 0.01,
  bias 0). The heads are independent: the loss is the sum of their cross-entropies.
- AvgPool, ``layers: [avgpool]`` (``imagenet/resnet50_linear-8xb32-steplr-100e_in1k.py``, the
  MoCo protocol): global average pool of feature5 -> ``Linear`` (normal std 0.01, bias 0).

The backbone stays in eval mode (BN running statistics frozen) and runs without gradients; only
the heads train: SGD with step decay per epoch, top-1 and top-5 accuracy on the validation set
(Resize + CenterCrop) after the last epoch. Table columns: ``Feature1`` .. ``Feature5``, ``AvgPool``.

Training (:func:`fit_classifier`) follows the conventions of :mod:`sslzoo.engine.trainer`:
torchrun/DDP with the seeded :class:`~sslzoo.engine.trainer.EpochSampler` (``batch_size`` in
the config is the total over processes), global RNGs reseeded at each epoch start, one JSON
line per iteration in ``work_dir/train_log.jsonl``, ``work_dir/latest.pth`` written atomically
after every epoch and resumed from when everything that defines the run (config, seed, backbone
and manifest contents) is unchanged. Evaluation (:func:`evaluate_classifier`) splits the images
over the processes and sums the hit counts, so the accuracy does not depend on the process count.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms
from tqdm import tqdm

from sslzoo.benchmarks.features import GLOBAL_POOL
from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD
from sslzoo.engine.dist import DistContext, all_reduce_mean, barrier, init_distributed
from sslzoo.engine.optim import NORM_LAYERS
from sslzoo.engine.schedules import LrSchedule, apply_lr
from sslzoo.engine.trainer import (
    EpochSampler,
    derived_seed,
    move_to_device,
    save_atomic,
    seed_everything,
)
from sslzoo.errors import SslzooError
from sslzoo.io import git_revision, read_yaml, write_json
from sslzoo.models.backbone import STAGE_NAMES, ResNetBackbone
from sslzoo.run_record import RunRecord, protocol_batch, run_record

LATEST = "latest.pth"
TRAIN_LOG = "train_log.jsonl"
# layer of the backbone -> column of the linear evaluation tables (sslzoo.tables.SECTIONS)
LAYER_COLUMNS: dict[str, str] = {
    **{name: f"Feature{name[-1]}" for name in STAGE_NAMES},
    GLOBAL_POOL: "AvgPool",
}


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


def config_value(
    mapping: Any, key: str, where: str, kind: type | tuple[type, ...], default: Any = ...
) -> Any:
    """``mapping[key]`` checked to be a ``kind``; ints pass for float; missing -> ``default`` or error.

    ``where`` names the file and the enclosing key (``config/benchmarks/x.yaml: optimizer``).
    """
    if not isinstance(mapping, dict):
        raise SslzooError(f"{where}: expected a mapping, got {mapping!r}")
    if key not in mapping:
        if default is ...:
            raise SslzooError(f"{where}: missing key '{key}'")
        return default
    value = mapping[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise SslzooError(f"{where}: '{key}' must be {names}, got {value!r}")
    return value


def reject_unknown_keys(mapping: dict[str, Any], allowed: Sequence[str], where: str) -> None:
    """A typo in a protocol file never passes silently."""
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise SslzooError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


@dataclass(frozen=True)
class TrainTransformConfig:
    """Training augmentation (``train_transform``).

    Attributes:
        crop: ``random_resized`` = RandomResizedCrop(size) (scale 0.08..1, ImageNet / iNat18), or
            ``center_random`` = Resize(resize) + CenterCrop(resize) + RandomCrop(size) (Places205).
        size: side of the training crop.
        resize: the shorter side before the crops of ``center_random``.
        flip: RandomHorizontalFlip(0.5).
        color_jitter: (brightness, contrast, saturation, hue) of ColorJitter, or None.
        lighting_std: alpha std of AlexNet PCA lighting (:class:`Lighting`); 0 for none.
    """

    crop: str = "random_resized"
    size: int = 224
    resize: int = 256
    flip: bool = True
    color_jitter: tuple[float, float, float, float] | None = None
    lighting_std: float = 0.0


@dataclass(frozen=True)
class EvalTransformConfig:
    """Evaluation: Resize(resize) of the shorter side, CenterCrop(crop) (``eval_transform``)."""

    resize: int = 256
    crop: int = 224


@dataclass(frozen=True)
class TrainSettings:
    """Epochs, batch and step schedule of a supervised run.

    Attributes:
        epochs: training epochs.
        batch_size: images per optimizer step summed over all processes.
        workers: data-loading worker processes per process.
        steps: epochs at which the lr is multiplied by ``gamma``.
        gamma: the decay factor.
    """

    epochs: int
    batch_size: int
    workers: int
    steps: tuple[int, ...]
    gamma: float


@dataclass(frozen=True)
class LinearConfig:
    """``config/benchmarks/linear_*.yaml`` (see :func:`load_linear_config`)."""

    layers: tuple[str, ...]
    pooling: dict[str, tuple[int, int, int]]
    bn_momentum: float
    lr: float
    momentum: float
    weight_decay: float
    nesterov: bool
    norm_weight_decay: float
    train: TrainSettings
    train_transform: TrainTransformConfig
    eval_transform: EvalTransformConfig
    gpus: int  # the reference's process count (parse_gpus)


def _positive_int(mapping: dict[str, Any], key: str, where: str, default: Any = ...) -> int:
    value = config_value(mapping, key, where, int, default)
    if value < 1:
        raise SslzooError(f"{where}: '{key}' must be a positive integer, got {value!r}")
    return value


def _non_negative(mapping: dict[str, Any], key: str, where: str, default: Any = ...) -> float:
    value = config_value(mapping, key, where, float, default)
    if not math.isfinite(value) or value < 0:
        raise SslzooError(f"{where}: '{key}' must be a non-negative number, got {value!r}")
    return value


def parse_train_settings(raw: dict[str, Any], source: str) -> TrainSettings:
    """``epochs``, ``batch_size``, ``workers`` and ``schedule: {steps, gamma}`` of a protocol file."""
    epochs = _positive_int(raw, "epochs", source)
    schedule = config_value(raw, "schedule", source, dict)
    where = f"{source}: schedule"
    reject_unknown_keys(schedule, ("steps", "gamma"), where)
    steps = config_value(schedule, "steps", where, list)
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in steps) or any(
        b <= a for a, b in zip(steps, steps[1:], strict=False)
    ):
        raise SslzooError(f"{where}: 'steps' must be increasing positive epochs, got {steps!r}")
    gamma = config_value(schedule, "gamma", where, float, 0.1)
    if not 0 < gamma <= 1:
        raise SslzooError(f"{where}: 'gamma' must be in (0, 1], got {gamma!r}")
    return TrainSettings(
        epochs=epochs,
        batch_size=_positive_int(raw, "batch_size", source),
        workers=int(_non_negative(raw, "workers", source, 4)),
        steps=tuple(steps),
        gamma=gamma,
    )


# The process count of a training protocol that does not state ``gpus``.
DEFAULT_GPUS = 1


def parse_gpus(raw: dict[str, Any], source: str, total_batch: int, batch_key: str = "batch_size") -> int:
    """The top-level ``gpus`` of a training protocol: the reference's process count (the 8 of
    ``8xb32``), :data:`DEFAULT_GPUS` when absent.

    The total batch (``batch_key``) must divide by it: the reference's per-GPU batch is whole.
    Training splits the total batch over the processes it actually has; ``gpus`` is recorded
    beside them (``meta.run.protocol``) so that the tables can footnote a run that differs.
    """
    gpus = config_value(raw, "gpus", source, int, DEFAULT_GPUS)
    if gpus < 1:
        raise SslzooError(
            f"{source}: 'gpus' must be a positive integer (the reference's process count, "
            f"e.g. 8 for 8xb32), got {gpus!r}"
        )
    if total_batch % gpus:
        raise SslzooError(
            f"{source}: '{batch_key}' {total_batch} (the total over processes) does not divide by "
            f"'gpus' {gpus}; the reference's per-GPU batch is {batch_key} / gpus: fix one of them"
        )
    return gpus


def parse_train_transform(raw: dict[str, Any], source: str) -> TrainTransformConfig:
    """The ``train_transform`` mapping (keys of :class:`TrainTransformConfig`)."""
    where = f"{source}: train_transform"
    section = config_value(raw, "train_transform", source, dict)
    reject_unknown_keys(section, tuple(TrainTransformConfig.__dataclass_fields__), where)
    crop = config_value(section, "crop", where, str, "random_resized")
    if crop not in ("random_resized", "center_random"):
        raise SslzooError(f"{where}: 'crop' must be random_resized or center_random, got {crop!r}")
    jitter = config_value(section, "color_jitter", where, (list, type(None)), None)
    if jitter is not None and not (
        len(jitter) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in jitter)
    ):
        raise SslzooError(
            f"{where}: 'color_jitter' must be [brightness, contrast, saturation, hue] or null, got {jitter!r}"
        )
    size = _positive_int(section, "size", where)
    resize = _positive_int(section, "resize", where, size)
    if crop == "center_random" and resize < size:
        raise SslzooError(f"{where}: 'resize' ({resize}) must be at least 'size' ({size}) for center_random")
    return TrainTransformConfig(
        crop=crop,
        size=size,
        resize=resize,
        flip=config_value(section, "flip", where, bool, True),
        color_jitter=None if jitter is None else tuple(float(v) for v in jitter),  # type: ignore[arg-type]
        lighting_std=_non_negative(section, "lighting_std", where, 0.0),
    )


def parse_eval_transform(raw: dict[str, Any], source: str) -> EvalTransformConfig:
    """The ``eval_transform`` mapping: ``resize``, ``crop``."""
    where = f"{source}: eval_transform"
    section = config_value(raw, "eval_transform", source, dict)
    reject_unknown_keys(section, ("resize", "crop"), where)
    resize, crop = _positive_int(section, "resize", where), _positive_int(section, "crop", where)
    if resize < crop:
        raise SslzooError(f"{where}: 'resize' ({resize}) must be at least 'crop' ({crop})")
    return EvalTransformConfig(resize=resize, crop=crop)


def read_pooling_table(
    path: str | os.PathLike[str], layers: Sequence[str]
) -> dict[str, tuple[int, int, int]]:
    """``featureN -> (kernel, stride, padding)`` of ``layers`` from a features config's ``pooling``."""
    cfg = read_yaml(path)
    table = cfg.get("pooling") if isinstance(cfg, dict) else None
    if not isinstance(table, dict):
        raise SslzooError(f"{path}: missing key 'pooling' (featureN: [kernel, stride, padding])")
    pooling: dict[str, tuple[int, int, int]] = {}
    for layer in layers:
        value = table.get(layer)
        if not (
            isinstance(value, list)
            and len(value) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            and value[0] >= 1
            and value[1] >= 1
            and value[2] >= 0
        ):
            raise SslzooError(
                f"{path}: pooling.{layer} must be [kernel, stride, padding] integers, got {value!r}"
            )
        pooling[layer] = (value[0], value[1], value[2])
    return pooling


_LINEAR_KEYS = (
    "gpus",
    "layers",
    "pooling_from",
    "bn_momentum",
    "epochs",
    "batch_size",
    "workers",
    "optimizer",
    "schedule",
    "train_transform",
    "eval_transform",
)


def load_linear_config(path: str | os.PathLike[str]) -> tuple[LinearConfig, dict[str, Any]]:
    """Read and validate a linear-evaluation protocol file.

    Keys: ``gpus`` (the reference's process count, :func:`parse_gpus`), ``layers`` (among
    feature1..feature5, avgpool), ``pooling_from`` (the features config holding the pooling
    table, relative to this file; needed for featureN layers), ``bn_momentum``, ``epochs``,
    ``batch_size`` (total), ``workers``, ``optimizer: {lr, momentum, weight_decay, nesterov,
    norm_weight_decay}``, ``schedule: {steps, gamma}``,
    ``train_transform`` (:class:`TrainTransformConfig`), ``eval_transform`` (resize, crop).

    Returns:
        The config and the raw dict with the pooling table filled in (recorded in metrics.json).
    """
    source = str(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SslzooError(f"{source}: expected a mapping of linear-evaluation settings")
    reject_unknown_keys(raw, _LINEAR_KEYS, source)
    layers = config_value(raw, "layers", source, list)
    if not layers or len(set(layers)) != len(layers) or not set(layers) <= set(LAYER_COLUMNS):
        raise SslzooError(
            f"{source}: 'layers' must be distinct names among {list(LAYER_COLUMNS)}, got {layers!r}"
        )
    pooled = [layer for layer in layers if layer != GLOBAL_POOL]
    pooling: dict[str, tuple[int, int, int]] = {}
    if pooled:
        pooling_from = config_value(raw, "pooling_from", source, str)
        pooling = read_pooling_table(Path(path).parent / pooling_from, pooled)
    optimizer = config_value(raw, "optimizer", source, dict)
    where = f"{source}: optimizer"
    reject_unknown_keys(optimizer, ("lr", "momentum", "weight_decay", "nesterov", "norm_weight_decay"), where)
    lr = _non_negative(optimizer, "lr", where)
    momentum = _non_negative(optimizer, "momentum", where, 0.9)
    nesterov = config_value(optimizer, "nesterov", where, bool, False)
    if lr <= 0 or (nesterov and momentum <= 0):
        raise SslzooError(f"{where}: needs lr > 0 (and momentum > 0 with nesterov), got {optimizer!r}")
    weight_decay = _non_negative(optimizer, "weight_decay", where, 0.0)
    bn_momentum = _non_negative(raw, "bn_momentum", source, 0.1)
    train = parse_train_settings(raw, source)
    config = LinearConfig(
        layers=tuple(layers),
        pooling=pooling,
        bn_momentum=bn_momentum,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=nesterov,
        norm_weight_decay=_non_negative(optimizer, "norm_weight_decay", where, weight_decay),
        train=train,
        train_transform=parse_train_transform(raw, source),
        eval_transform=parse_eval_transform(raw, source),
        gpus=parse_gpus(raw, source, train.batch_size),
    )
    return config, {**raw, "pooling": {layer: list(p) for layer, p in pooling.items()}}


# --------------------------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------------------------

# PCA of ImageNet RGB pixels in [0, 1] (Krizhevsky et al. 2012, as fb.resnet.torch and
# mmselfsup 0.x mmselfsup/datasets/pipelines/transforms.py Lighting): eigenvalues and the
# eigenvectors as COLUMNS (row = R, G, B).
IMAGENET_PCA_EIGVAL: tuple[float, float, float] = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC: tuple[tuple[float, float, float], ...] = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


class Lighting:
    """AlexNet-style PCA lighting noise on an RGB tensor ``[3, H, W]`` in [0, 1] (before Normalize).

    Draws ``alpha = alphastd * randn(3)`` from torch's global generator (seeded per epoch and
    worker) and adds the same offset ``eigvec @ (alpha * eigval)`` to every pixel.
    """

    def __init__(self, alphastd: float = 0.1) -> None:
        self.alphastd = alphastd
        self.eigval = torch.tensor(IMAGENET_PCA_EIGVAL)
        self.eigvec = torch.tensor(IMAGENET_PCA_EIGVEC)

    def offset(self, alpha: torch.Tensor) -> torch.Tensor:
        """The RGB offset ``[3]`` for the coefficients ``alpha`` ``[3]``."""
        return self.eigvec @ (alpha * self.eigval)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.alphastd == 0:
            return image
        alpha = torch.randn(3) * self.alphastd
        return image + self.offset(alpha).to(image.dtype).view(3, 1, 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alphastd={self.alphastd})"


def build_train_transform(cfg: TrainTransformConfig) -> Callable[[Any], torch.Tensor]:
    """PIL image -> normalised ``[3, size, size]`` tensor with the protocol's augmentation."""
    steps: list[Callable[[Any], Any]]
    if cfg.crop == "random_resized":
        steps = [transforms.RandomResizedCrop(cfg.size)]
    else:
        steps = [
            transforms.Resize(cfg.resize),
            transforms.CenterCrop(cfg.resize),
            transforms.RandomCrop(cfg.size),
        ]
    if cfg.flip:
        steps.append(transforms.RandomHorizontalFlip())
    if cfg.color_jitter is not None:
        steps.append(transforms.ColorJitter(*cfg.color_jitter))
    steps.append(transforms.ToTensor())
    if cfg.lighting_std > 0:
        steps.append(Lighting(cfg.lighting_std))
    steps.append(transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return transforms.Compose(steps)


def build_eval_transform(cfg: EvalTransformConfig) -> Callable[[Any], torch.Tensor]:
    """PIL image -> Resize(resize), CenterCrop(crop), normalised ``[3, crop, crop]`` tensor."""
    return transforms.Compose(
        [
            transforms.Resize(cfg.resize),
            transforms.CenterCrop(cfg.crop),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


# --------------------------------------------------------------------------------------------
# Heads and the frozen-backbone classifier
# --------------------------------------------------------------------------------------------


def init_linear(layer: nn.Linear, std: float = 0.01) -> nn.Linear:
    """Normal(0, std) weights and zero bias (mmselfsup's ``ClsHead`` / ``MultiClsHead`` init)."""
    nn.init.normal_(layer.weight, mean=0.0, std=std)
    nn.init.zeros_(layer.bias)
    return layer


class PooledLinearHead(nn.Module):
    """``AvgPool2d(k, s, p)`` -> ``BatchNorm2d(C, affine=False)`` -> flatten -> ``Linear``.

    One branch of mmselfsup 0.x ``MultiClsHead`` (``pool_type='specified'``). Input
    ``[B, C, H, W]``, output logits ``[B, num_classes]``; ``pooled_dim = C * H' * W'``.
    """

    def __init__(
        self,
        channels: int,
        pooling: tuple[int, int, int],
        pooled_dim: int,
        num_classes: int,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        kernel, stride, padding = pooling
        self.pool = nn.AvgPool2d(kernel, stride, padding)
        self.norm = nn.BatchNorm2d(channels, momentum=bn_momentum, affine=False)
        self.fc = init_linear(nn.Linear(pooled_dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.norm(self.pool(x)), 1))


class GlobalPoolLinearHead(nn.Module):
    """Global average pool -> ``Linear`` (mmselfsup ``ClsHead(with_avg_pool=True)``): ``[B, C, H, W] -> [B, classes]``."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = init_linear(nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def stage_of(layer: str) -> int:
    """Backbone stage (1..5) a layer reads: ``featureN`` -> N, ``avgpool`` -> 5."""
    return 5 if layer == GLOBAL_POOL else int(layer[-1])


def pooled_size(size: int, pooling: tuple[int, int, int]) -> int:
    """Output side of ``AvgPool2d(kernel, stride, padding)`` (floor mode) on a ``size`` map."""
    kernel, stride, padding = pooling
    return (size + 2 * padding - kernel) // stride + 1


class FrozenBackboneClassifier(nn.Module):
    """A frozen :class:`ResNetBackbone` (eval mode, no gradients) with one linear head per layer.

    ``forward(images [B, 3, H, W]) -> {layer: logits [B, num_classes]}``. ``train()`` trains the
    heads only; the backbone's BN keeps its running statistics.
    """

    def __init__(self, backbone: ResNetBackbone, heads: dict[str, nn.Module]) -> None:
        super().__init__()
        self.backbone = backbone.eval()
        for param in self.backbone.parameters():
            param.requires_grad_(False)
        self.heads = nn.ModuleDict(heads)
        self.stages = sorted({stage_of(layer) for layer in heads})

    def train(self, mode: bool = True) -> FrozenBackboneClassifier:
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            maps = dict(zip(self.stages, self.backbone(images, self.stages), strict=True))
        return {layer: head(maps[stage_of(layer)]) for layer, head in self.heads.items()}


def build_linear_classifier(
    backbone: ResNetBackbone,
    layers: Sequence[str],
    pooling: dict[str, tuple[int, int, int]],
    num_classes: int,
    crop: int,
    bn_momentum: float = 0.1,
) -> FrozenBackboneClassifier:
    """Heads for ``layers`` sized by a probe forward of a ``crop`` x ``crop`` image.

    Raises:
        SslzooError: a pooling window larger than its (padded) stage map at this crop.
    """
    stages = sorted({stage_of(layer) for layer in layers})
    was_training = backbone.training
    with torch.no_grad():
        probe = torch.zeros(1, 3, crop, crop, device=next(backbone.parameters()).device)
        shapes = {s: tuple(m.shape[1:]) for s, m in zip(stages, backbone.eval()(probe, stages), strict=True)}
    backbone.train(was_training)
    heads: dict[str, nn.Module] = {}
    for layer in layers:
        channels, height, width = shapes[stage_of(layer)]
        if layer == GLOBAL_POOL:
            heads[layer] = GlobalPoolLinearHead(channels, num_classes)
            continue
        out_h, out_w = pooled_size(height, pooling[layer]), pooled_size(width, pooling[layer])
        if out_h < 1 or out_w < 1:
            raise SslzooError(
                f"pooling.{layer} {list(pooling[layer])} does not fit the {height}x{width} map of a {crop} px "
                "crop; pick a smaller kernel in the features config or a larger crop"
            )
        heads[layer] = PooledLinearHead(
            channels, pooling[layer], channels * out_h * out_w, num_classes, bn_momentum
        )
    return FrozenBackboneClassifier(backbone, heads)


def norm_param_groups(
    module: nn.Module, lr: float, weight_decay: float, norm_weight_decay: float
) -> list[dict[str, Any]]:
    """Trainable parameters of ``module``: norm layers with ``norm_weight_decay`` (mmcv's
    ``norm_decay_mult``), the rest with ``weight_decay``; empty groups left out."""
    norm_ids = {
        id(p) for m in module.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters(recurse=False)
    }
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if id(p) not in norm_ids], "lr": lr, "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in norm_ids], "lr": lr, "weight_decay": norm_weight_decay},
    ]
    return [group for group in groups if group["params"]]


# --------------------------------------------------------------------------------------------
# Supervised training and evaluation (shared with semi-supervised fine-tuning)
# --------------------------------------------------------------------------------------------


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (identifies a backbone or manifest for resuming)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _say(ctx: DistContext, message: str) -> None:
    if ctx.is_main:
        tqdm.write(message, file=sys.stderr)


def _truncate_log(log_path: Path, iterations: int) -> None:
    """Keep the log lines of the first ``iterations`` iterations (a resumed run redoes the rest)."""
    if not log_path.exists():
        return
    kept = []
    for line in log_path.read_text().splitlines():
        try:
            if json.loads(line)["iter"] <= iterations:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            break  # a line cut by a kill: what follows is stale too
    log_path.write_text("".join(f"{line}\n" for line in kept))


def _resume_state(work_dir: Path, fingerprint: dict[str, Any], ctx: DistContext) -> dict[str, Any] | None:
    """The saved state when it was written for the same run, else None (a stale one is set aside)."""
    latest, log_path = work_dir / LATEST, work_dir / TRAIN_LOG
    state = torch.load(latest, map_location="cpu", weights_only=True) if latest.exists() else None
    if state is None or state.get("fingerprint") == fingerprint:
        return state
    old = state.get("fingerprint") or {}
    changed = sorted(key for key in set(old) | set(fingerprint) if old.get(key) != fingerprint.get(key))
    barrier(ctx)
    if ctx.is_main:
        aside = work_dir / time.strftime("superseded-%Y%m%d-%H%M%S")
        aside.mkdir(parents=True, exist_ok=True)
        for path in (latest, log_path):
            if path.exists():
                path.replace(aside / path.name)
        _say(ctx, f"{latest} belongs to another run ({', '.join(changed)} changed): starting from scratch; "
                  f"the old state is kept in {aside}")  # fmt: skip
    barrier(ctx)
    return None


def fit_classifier(
    model: nn.Module,
    optimizer: Optimizer,
    train_set: Dataset,
    settings: TrainSettings,
    work_dir: str | os.PathLike[str],
    fingerprint: dict[str, Any],
    *,
    seed: int = 0,
    ctx: DistContext | None = None,
    state_module: nn.Module | None = None,
) -> dict[str, Any]:
    """Train ``model`` with the sum of the cross-entropies of its outputs; resume when possible.

    Args:
        model: ``forward(images [B, 3, H, W]) -> {name: logits [B, C]}``, already on ``ctx.device``
            and identical on every process.
        optimizer: over ``model``'s trainable parameters; each group's ``lr`` is its base lr
            (recorded as ``initial_lr``), decayed by ``settings.gamma`` at ``settings.steps``.
        train_set: ``(image tensor, label)`` pairs.
        settings: epochs, total batch (split evenly over the processes), workers, lr steps.
        work_dir: ``latest.pth`` (after every epoch) and ``train_log.jsonl`` (every iteration).
        fingerprint: JSON-able description of the run (config, seed, input digests); a saved
            state with another fingerprint is set aside instead of resumed.
        seed: data order and augmentation seed (with the epoch, rank and worker).
        ctx: this process's place in the process group (default: one CPU process).
        state_module: the part of ``model`` that is saved (default all; linear evaluation saves
            the heads only).

    Returns:
        ``{"epochs", "iterations", "iters_per_epoch", "resumed_from_epoch"}``.
    """
    ctx = ctx or DistContext()
    state_module = state_module or model
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    latest, log_path = work_dir / LATEST, work_dir / TRAIN_LOG
    if settings.batch_size % ctx.world_size:
        raise SslzooError(
            f"batch_size {settings.batch_size} (the total over processes) is not divisible by the "
            f"{ctx.world_size} processes; change batch_size in the protocol file or the process count"
        )
    per_rank = settings.batch_size // ctx.world_size
    iters_per_epoch = len(EpochSampler(len(train_set), seed, 0, ctx.rank, ctx.world_size)) // per_rank  # type: ignore[arg-type]
    if iters_per_epoch < 1:
        raise SslzooError(
            f"{len(train_set)} training images give no full batch of batch_size {settings.batch_size}; "  # type: ignore[arg-type]
            "lower batch_size in the protocol file"
        )
    schedule = LrSchedule(
        name="step",
        epochs=settings.epochs,
        iters_per_epoch=iters_per_epoch,
        steps=tuple(float(s) for s in settings.steps),
        gamma=settings.gamma,
    )
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    fingerprint = json.loads(json.dumps({**fingerprint, "iters_per_epoch": iters_per_epoch}))

    start_epoch = iteration = 0
    state = _resume_state(work_dir, fingerprint, ctx)
    if state is not None:
        state_module.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, iteration = int(state["epoch"]), int(state["iteration"])
        _say(ctx, f"resuming from {latest}: epoch {start_epoch}/{settings.epochs}, iteration {iteration}")
        del state
    if ctx.is_main:
        _truncate_log(log_path, iteration)
    barrier(ctx)

    device = ctx.device
    runner: nn.Module = model
    if ctx.distributed:
        runner = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    for epoch in range(start_epoch, settings.epochs):
        epoch_seed = derived_seed(seed, epoch, ctx.rank)
        seed_everything(epoch_seed)
        loader = DataLoader(
            train_set,
            batch_size=per_rank,
            sampler=EpochSampler(len(train_set), seed, epoch, ctx.rank, ctx.world_size),  # type: ignore[arg-type]
            num_workers=settings.workers,
            drop_last=True,
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(epoch_seed),
        )
        runner.train()
        bar = tqdm(
            total=iters_per_epoch,
            desc=f"epoch {epoch + 1}/{settings.epochs}",
            file=sys.stderr,
            disable=not ctx.is_main,
            dynamic_ncols=True,
            leave=False,
            mininterval=0.5 if sys.stderr.isatty() else 30.0,
        )
        tick = time.perf_counter()
        with open(log_path, "a") if ctx.is_main else nullcontext() as log:
            for images, labels in loader:
                lr = apply_lr(optimizer, schedule, iteration)
                images, labels = move_to_device((images, labels), device)
                outputs = runner(images)
                losses = {name: F.cross_entropy(logits, labels) for name, logits in outputs.items()}
                loss = torch.stack(list(losses.values())).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                iteration += 1
                names = list(losses)
                values = torch.stack([loss.detach()] + [losses[n].detach() for n in names]).float()
                means = all_reduce_mean(values, ctx).tolist()
                if not math.isfinite(means[0]):
                    raise SslzooError(
                        f"loss is {means[0]} at epoch {epoch + 1}, iteration {iteration}; "
                        "lower optimizer.lr in the protocol file"
                    )
                now = time.perf_counter()
                record = {"epoch": epoch + 1, "iter": iteration, "loss": means[0], "lr": lr,
                          "time": round(now - tick, 4)}  # fmt: skip
                if len(names) > 1:
                    record.update({f"loss.{n}": v for n, v in zip(names, means[1:], strict=True)})
                tick = now
                if log is not None:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{means[0]:.4f}", lr=f"{lr:.3g}")
        bar.close()
        if ctx.is_main:
            save_atomic(
                {
                    "state_dict": state_module.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch + 1,
                    "iteration": iteration,
                    "fingerprint": fingerprint,
                },
                latest,
            )
            _say(ctx, f"epoch {epoch + 1}/{settings.epochs} done ({iteration} iterations); saved {latest}")
        barrier(ctx)
    return {
        "epochs": settings.epochs,
        "iterations": iteration,
        "iters_per_epoch": iters_per_epoch,
        "resumed_from_epoch": start_epoch,
    }


def training_run_record(
    config_path: str | os.PathLike[str], gpus: int, total_batch: int, seed: int, ctx: DistContext
) -> RunRecord:
    """``meta.run`` of a supervised benchmark run (linear, semi-supervised, detection,
    segmentation): ``total_batch`` (the protocol's, over all processes) split evenly over this
    run's ``ctx.world_size`` processes, no accumulation; the protocol's ``gpus`` beside it."""
    return run_record(
        world_size=ctx.world_size,
        per_process_batch=total_batch // ctx.world_size,
        accumulate=1,
        seed=seed,
        device=ctx.device,
        protocol=protocol_batch(config_path, gpus, total_batch=total_batch),
    )


@dataclass(frozen=True)
class Accuracy:
    """Top-1 and top-5 accuracy (%) of one head."""

    top1: float
    top5: float


def topk_hits(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[int]:
    """How many rows have their label among the ``k`` highest logits, per k (k capped at C).

    Args:
        logits: ``[B, C]``.
        labels: ``[B]`` class indices.
    """
    ranked = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = ranked == labels.view(-1, 1)
    return [int(hits[:, :k].any(dim=1).sum()) for k in ks]


def broadcast_buffers(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (BN running statistics) to every process."""
    if ctx.distributed:
        import torch.distributed as dist

        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    dataset: Dataset,
    names: Sequence[str],
    batch_size: int = 64,
    workers: int = 2,
    ctx: DistContext | None = None,
) -> dict[str, Accuracy]:
    """Top-1/top-5 accuracy of each output ``names`` of ``model`` on the whole ``dataset``.

    Rank ``r`` classifies images ``r, r + W, ...`` with rank 0's buffers; the hit counts are
    summed over processes, so every process returns the single-process numbers.
    """
    ctx = ctx or DistContext()
    broadcast_buffers(model, ctx)
    model.eval()
    total = len(dataset)  # type: ignore[arg-type]
    loader = DataLoader(
        Subset(dataset, range(ctx.rank, total, ctx.world_size)),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=ctx.device.type == "cuda",
    )
    hits = torch.zeros(len(names), 2, dtype=torch.int64)
    for images, labels in tqdm(
        loader, desc="evaluate", file=sys.stderr, disable=not ctx.is_main, leave=False
    ):
        outputs = model(images.to(ctx.device, non_blocking=True))
        labels = labels.to(ctx.device)
        for row, name in enumerate(names):
            hits[row] += torch.tensor(topk_hits(outputs[name], labels))
    if ctx.distributed:
        import torch.distributed as dist

        hits = hits.to(ctx.device)
        dist.all_reduce(hits, op=dist.ReduceOp.SUM)
        hits = hits.cpu()
    return {
        name: Accuracy(top1=100.0 * int(hits[row, 0]) / total, top5=100.0 * int(hits[row, 1]) / total)
        for row, name in enumerate(names)
    }


def check_same_classes(train_set: Any, val_set: Any, train_manifest: Any, val_manifest: Any) -> int:
    """The class count; the train and val manifests must list the same classes in the same order."""
    if list(train_set.classes) != list(val_set.classes):
        raise SslzooError(
            f"{train_manifest} and {val_manifest}: different class lists ({len(train_set.classes)} vs "
            f"{len(val_set.classes)} classes); build both manifests from the same dataset"
        )
    return len(train_set.classes)


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


def linear_benchmark(
    backbone_path: str | os.PathLike[str],
    train_manifest: str | os.PathLike[str],
    val_manifest: str | os.PathLike[str],
    config_path: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    seed: int = 0,
    ctx: DistContext | None = None,
) -> dict[str, Any] | None:
    """Train the linear heads of ``config_path`` on a frozen backbone and write metrics.json.

    ``results/benchmarks/{benchmark}/{model}/metrics.json``: ``{"Feature1": top-1 %, ...}`` (or
    ``{"AvgPool": ...}``) and ``meta`` with the top-5 accuracies, the config and the inputs. The
    benchmark and model names are the two directories above ``out_path``. Under torchrun every
    process trains its share of each batch; rank 0 writes and returns the metrics, the others None.
    """
    from sslzoo.benchmarks.features import load_backbone_model
    from sslzoo.data.datasets import ManifestDataset

    ctx = ctx or init_distributed()
    config, raw_config = load_linear_config(config_path)
    train_set = ManifestDataset(train_manifest, build_train_transform(config.train_transform))
    val_set = ManifestDataset(val_manifest, build_eval_transform(config.eval_transform))
    num_classes = check_same_classes(train_set, val_set, train_manifest, val_manifest)

    torch.manual_seed(seed)
    model = build_linear_classifier(
        load_backbone_model(backbone_path),
        config.layers,
        config.pooling,
        num_classes,
        config.train_transform.size,
        config.bn_momentum,
    ).to(ctx.device)
    if ctx.distributed and ctx.device.type == "cuda":  # the reference's SyncBN heads
        model.heads = nn.SyncBatchNorm.convert_sync_batchnorm(model.heads)
    optimizer = torch.optim.SGD(
        norm_param_groups(model.heads, config.lr, config.weight_decay, config.norm_weight_decay),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
    )
    fingerprint = {
        "config": raw_config,
        "seed": seed,
        "backbone": file_digest(backbone_path),
        "train_manifest": file_digest(train_manifest),
    }
    summary = fit_classifier(
        model, optimizer, train_set, config.train, work_dir, fingerprint,
        seed=seed, ctx=ctx, state_module=model.heads,
    )  # fmt: skip
    accuracy = evaluate_classifier(
        model,
        val_set,
        list(config.layers),
        batch_size=max(1, config.train.batch_size // ctx.world_size),
        workers=config.train.workers,
        ctx=ctx,
    )
    if not ctx.is_main:
        return None
    out_path = Path(out_path)
    metrics: dict[str, Any] = {LAYER_COLUMNS[layer]: accuracy[layer].top1 for layer in config.layers}
    metrics["meta"] = {
        "benchmark": out_path.parent.parent.name,
        "model": out_path.parent.name,
        "config": raw_config,
        "config_path": str(config_path),
        "git_rev": git_revision(),
        "backbone": str(backbone_path),
        "train_manifest": str(train_manifest),
        "val_manifest": str(val_manifest),
        "num_train": len(train_set),
        "num_val": len(val_set),
        "num_classes": num_classes,
        "seed": seed,
        "world_size": ctx.world_size,
        "top5": {LAYER_COLUMNS[layer]: accuracy[layer].top5 for layer in config.layers},
        **summary,
        "run": training_run_record(config_path, config.gpus, config.train.batch_size, seed, ctx),
    }
    write_json(out_path, metrics)
    return metrics
