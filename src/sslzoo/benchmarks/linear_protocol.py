"""The protocol files of the supervised benchmarks: reading and checking ``config/benchmarks/*.yaml``.

Shared by linear evaluation (:mod:`sslzoo.benchmarks.linear`), semi-supervised fine-tuning
(:mod:`sslzoo.benchmarks.semi`), detection and segmentation: the epochs, batch and step
schedule (:class:`TrainSettings`), the reference's process count (:func:`check_gpus`) and the
augmentation settings (:class:`TrainTransformConfig`, :class:`EvalTransformConfig`; the
transforms themselves are built in :mod:`sslzoo.benchmarks.classifier_transforms`). The keys,
their types and defaults are those of the schemas (``sslzoo/schemas/linear.schema.yaml``,
``protocol_common.schema.yaml``; :mod:`sslzoo.benchmarks.protocol_files`); the functions here
take the validated, default-filled mapping and add the checks a schema cannot express.

The linear-evaluation protocol (:class:`LinearConfig`, :func:`load_linear_config`) follows
mmselfsup 0.x ``configs/benchmarks/classification`` (PROTOCOLS.md "Linear evaluation"):
multi-head, ``layers: [feature1, ..., feature5]``
(``imagenet/resnet50_mhead_linear-8xb32-steplr-90e_in1k.py``, ``places205/...-28e_places205.py``,
``inaturalist2018/...-84e_inat18.py``), each layer average pooled with the
``AvgPool2d(kernel, stride, padding)`` of a features config's pooling table
(:func:`read_pooling_table`); or AvgPool, ``layers: [avgpool]``
(``imagenet/resnet50_linear-8xb32-steplr-100e_in1k.py``, the MoCo protocol; with LARS and a
cosine schedule ``imagenet/resnet50_linear-8xb512-coslr-90e_in1k.py``, BYOL's; with SGD and a
cosine schedule after a linear warm-up wanggrun/triplet's
``configs/benchmarks/linear_classification/imagenet/r50_last_cos_for_{Less,More}SslEpoch.py``).
:data:`LAYER_COLUMNS` names the table column of each layer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslzoo.benchmarks.features import GLOBAL_POOL
from sslzoo.benchmarks.protocol_files import read_protocol
from sslzoo.errors import SslzooError
from sslzoo.models.backbone import STAGE_NAMES
from sslzoo.runtime.schedules import LrSchedule

# layer of the backbone -> column of the linear evaluation tables (sslzoo.tables.SECTIONS)
LAYER_COLUMNS: dict[str, str] = {
    **{name: f"Feature{name[-1]}" for name in STAGE_NAMES},
    GLOBAL_POOL: "AvgPool",
}


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
        lighting_std: alpha std of AlexNet PCA lighting
            (:class:`~sslzoo.benchmarks.classifier_transforms.Lighting`); 0 for none.
    """

    crop: str
    size: int
    resize: int
    flip: bool
    color_jitter: tuple[float, float, float, float] | None
    lighting_std: float


@dataclass(frozen=True)
class EvalTransformConfig:
    """Evaluation: Resize(resize) of the shorter side, CenterCrop(crop) (``eval_transform``)."""

    resize: int
    crop: int


@dataclass(frozen=True)
class TrainSettings:
    """Epochs, batch and lr schedule of a supervised run (``schedule:``, the shared definition of
    ``protocol_common.schema.yaml``; the formulas are :mod:`sslzoo.runtime.schedules`').

    Attributes:
        epochs: training epochs.
        batch_size: images per optimizer step summed over all processes.
        workers: data-loading worker processes per process.
        steps: epochs at which the step schedule multiplies the lr by ``gamma`` (empty for cosine).
        gamma: the decay factor of the step schedule.
        schedule: ``step`` or ``cosine`` (mmcv ``CosineAnnealing``).
        min_lr: the floor of the step schedule, the end of the cosine schedule.
        by_epoch: the regular lr constant within an epoch (mmcv's default) or updated every iteration.
        warmup_epochs: length of the linear warm-up (mmcv ``warmup_iters`` with
            ``warmup_by_epoch=True``), per iteration; 0 for none.
        warmup_ratio: the warm-up starts at ``warmup_ratio`` x the regular lr.
    """

    epochs: int
    batch_size: int
    workers: int
    steps: tuple[int, ...]
    gamma: float
    schedule: str
    min_lr: float
    by_epoch: bool
    warmup_epochs: float
    warmup_ratio: float

    def lr_schedule(self, iters_per_epoch: int) -> LrSchedule:
        """The lr of every iteration of a run of ``iters_per_epoch`` optimizer steps per epoch."""
        return LrSchedule(
            name=self.schedule,
            epochs=self.epochs,
            iters_per_epoch=iters_per_epoch,
            steps=tuple(float(s) for s in self.steps),
            gamma=self.gamma,
            min_lr=self.min_lr,
            by_epoch=self.by_epoch,
            warmup_epochs=self.warmup_epochs,
            warmup_ratio=self.warmup_ratio,
        )


@dataclass(frozen=True)
class LinearConfig:
    """``config/benchmarks/linear_*.yaml`` (see :func:`load_linear_config`)."""

    layers: tuple[str, ...]
    pooling: dict[str, tuple[int, int, int]]
    bn_momentum: float
    optimizer: str  # sgd or lars
    lr: float
    momentum: float
    weight_decay: float
    nesterov: bool
    norm_weight_decay: float
    eta: float  # LARS trust coefficient (lars only)
    train: TrainSettings
    train_transform: TrainTransformConfig
    eval_transform: EvalTransformConfig
    gpus: int  # the reference's process count (check_gpus)


def parse_train_settings(cfg: dict[str, Any], source: str) -> TrainSettings:
    """``epochs``, ``batch_size``, ``workers`` and ``schedule`` of a validated, default-filled protocol."""
    schedule = cfg["schedule"]
    steps = schedule.get("steps", [])  # the schema requires them for step
    if schedule["name"] != "step" and steps:
        raise SslzooError(
            f"{source}: schedule.steps: the {schedule['name']} schedule has no steps; remove them or "
            "set schedule.name: step"
        )
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise SslzooError(f"{source}: schedule.steps: expected increasing epochs, got {steps!r}")
    if schedule["warmup_epochs"] > cfg["epochs"]:
        raise SslzooError(
            f"{source}: schedule.warmup_epochs: {schedule['warmup_epochs']} is longer than the "
            f"{cfg['epochs']} epochs of training; shorten the warm-up"
        )
    return TrainSettings(
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        workers=cfg["workers"],
        steps=tuple(steps),
        gamma=float(schedule["gamma"]),
        schedule=schedule["name"],
        min_lr=float(schedule["min_lr"]),
        by_epoch=schedule["by_epoch"],
        warmup_epochs=float(schedule["warmup_epochs"]),
        warmup_ratio=float(schedule["warmup_ratio"]),
    )


def check_gpus(cfg: dict[str, Any], source: str, total_batch: int, batch_key: str = "batch_size") -> int:
    """The ``gpus`` of a validated training protocol: the reference's process count (the 8 of
    ``8xb32``; its default is the schema's, ``protocol_common.schema.yaml``).

    The total batch (``batch_key``) must divide by it: the reference's per-GPU batch is whole.
    Training splits the total batch over the processes it actually has; ``gpus`` is recorded
    beside them (``meta.run.protocol``) so that the tables can footnote a run that differs.
    """
    gpus = cfg["gpus"]
    if total_batch % gpus:
        raise SslzooError(
            f"{source}: {batch_key}: {total_batch} (the total over processes) does not divide by "
            f"gpus {gpus}; the reference's per-GPU batch is {batch_key} / gpus: fix one of them"
        )
    return gpus


def parse_train_transform(cfg: dict[str, Any], source: str) -> TrainTransformConfig:
    """The validated ``train_transform`` mapping (keys of :class:`TrainTransformConfig`)."""
    section = cfg["train_transform"]
    size = section["size"]
    resize = section.get("resize", size)  # a default that is another key's value
    if section["crop"] == "center_random" and resize < size:
        raise SslzooError(
            f"{source}: train_transform.resize: ({resize}) must be at least size ({size}) for center_random"
        )
    jitter = section["color_jitter"]
    return TrainTransformConfig(
        crop=section["crop"],
        size=size,
        resize=resize,
        flip=section["flip"],
        color_jitter=None if jitter is None else tuple(float(v) for v in jitter),  # type: ignore[arg-type]
        lighting_std=float(section["lighting_std"]),
    )


def parse_eval_transform(cfg: dict[str, Any], source: str) -> EvalTransformConfig:
    """The validated ``eval_transform`` mapping: ``resize``, ``crop``."""
    resize, crop = cfg["eval_transform"]["resize"], cfg["eval_transform"]["crop"]
    if resize < crop:
        raise SslzooError(f"{source}: eval_transform.resize: ({resize}) must be at least crop ({crop})")
    return EvalTransformConfig(resize=resize, crop=crop)


def read_pooling_table(
    path: str | os.PathLike[str], layers: Sequence[str]
) -> dict[str, tuple[int, int, int]]:
    """``featureN -> (kernel, stride, padding)`` of ``layers`` from a features config's ``pooling``.

    The features config is validated with its schema (``features.schema.yaml``).
    """
    _, cfg = read_protocol(path, "features")
    pooling: dict[str, tuple[int, int, int]] = {}
    for layer in layers:
        if layer not in cfg["pooling"]:
            raise SslzooError(f"{path}: pooling.{layer}: missing; give [kernel, stride, padding] integers")
        kernel, stride, padding = cfg["pooling"][layer]
        pooling[layer] = (kernel, stride, padding)
    return pooling


def load_linear_config(path: str | os.PathLike[str]) -> tuple[LinearConfig, dict[str, Any]]:
    """Read and validate a linear-evaluation protocol file (``sslzoo/schemas/linear.schema.yaml``).

    Keys: ``gpus`` (the reference's process count, :func:`check_gpus`), ``layers`` (among
    feature1..feature5, avgpool), ``pooling_from`` (the features config holding the pooling
    table, relative to this file; needed for featureN layers), ``bn_momentum``, ``epochs``,
    ``batch_size`` (total), ``workers``, ``optimizer: {name, lr, momentum, weight_decay,
    nesterov, norm_weight_decay, eta}``, ``schedule: {name, steps, gamma, min_lr, by_epoch,
    warmup_epochs, warmup_ratio}`` (:class:`TrainSettings`),
    ``train_transform`` (:class:`TrainTransformConfig`), ``eval_transform`` (resize, crop).

    Returns:
        The config and the file's mapping with the pooling table filled in (recorded in metrics.json).
    """
    source = str(path)
    raw, cfg = read_protocol(path, "linear")
    layers = cfg["layers"]
    pooled = [layer for layer in layers if layer != GLOBAL_POOL]
    pooling = read_pooling_table(Path(path).parent / cfg["pooling_from"], pooled) if pooled else {}
    optimizer = cfg["optimizer"]
    if optimizer["nesterov"] and optimizer["momentum"] <= 0:
        raise SslzooError(
            f"{source}: optimizer.momentum: must be > 0 with nesterov, got {optimizer['momentum']!r}"
        )
    if optimizer["name"] != "lars" and "eta" in raw["optimizer"]:
        raise SslzooError(
            f"{source}: optimizer.eta: the LARS trust coefficient, but the optimizer is "
            f"{optimizer['name']}; remove eta or set optimizer.name: lars"
        )
    weight_decay = float(optimizer["weight_decay"])
    train = parse_train_settings(cfg, source)
    config = LinearConfig(
        layers=tuple(layers),
        pooling=pooling,
        bn_momentum=float(cfg["bn_momentum"]),
        optimizer=optimizer["name"],
        lr=float(optimizer["lr"]),
        momentum=float(optimizer["momentum"]),
        weight_decay=weight_decay,
        nesterov=optimizer["nesterov"],
        # a default that is another key's value: the decay of every other parameter
        norm_weight_decay=float(optimizer.get("norm_weight_decay", weight_decay)),
        eta=float(optimizer["eta"]),
        train=train,
        train_transform=parse_train_transform(cfg, source),
        eval_transform=parse_eval_transform(cfg, source),
        gpus=check_gpus(cfg, source, train.batch_size),
    )
    return config, {**raw, "pooling": {layer: list(p) for layer, p in pooling.items()}}
