"""The protocol files of the supervised benchmarks: reading and checking ``config/benchmarks/*.yaml``.

Shared by linear evaluation (:mod:`sslzoo.benchmarks.linear`), semi-supervised fine-tuning
(:mod:`sslzoo.benchmarks.semi`), detection and segmentation: typed look-ups
(:func:`config_value`, :func:`reject_unknown_keys`), the epochs, batch and step schedule
(:class:`TrainSettings`), the reference's process count (:func:`parse_gpus`) and the
augmentation settings (:class:`TrainTransformConfig`, :class:`EvalTransformConfig`; the
transforms themselves are built in :mod:`sslzoo.benchmarks.classifier_transforms`).

The linear-evaluation protocol (:class:`LinearConfig`, :func:`load_linear_config`) follows
mmselfsup 0.x ``configs/benchmarks/classification`` (PROTOCOLS.md "Linear evaluation"):
multi-head, ``layers: [feature1, ..., feature5]``
(``imagenet/resnet50_mhead_linear-8xb32-steplr-90e_in1k.py``, ``places205/...-28e_places205.py``,
``inaturalist2018/...-84e_inat18.py``), each layer average pooled with the
``AvgPool2d(kernel, stride, padding)`` of a features config's pooling table
(:func:`read_pooling_table`); or AvgPool, ``layers: [avgpool]``
(``imagenet/resnet50_linear-8xb32-steplr-100e_in1k.py``, the MoCo protocol).
:data:`LAYER_COLUMNS` names the table column of each layer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslzoo.benchmarks.features import GLOBAL_POOL
from sslzoo.errors import SslzooError
from sslzoo.io import read_yaml
from sslzoo.models.backbone import STAGE_NAMES

# layer of the backbone -> column of the linear evaluation tables (sslzoo.tables.SECTIONS)
LAYER_COLUMNS: dict[str, str] = {
    **{name: f"Feature{name[-1]}" for name in STAGE_NAMES},
    GLOBAL_POOL: "AvgPool",
}


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
        lighting_std: alpha std of AlexNet PCA lighting
            (:class:`~sslzoo.benchmarks.classifier_transforms.Lighting`); 0 for none.
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
