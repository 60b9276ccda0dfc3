"""Semi-supervised ImageNet classification: fine-tune the whole backbone with a linear head on
1% or 10% of the training labels.

Protocol of mmselfsup 0.x ``configs/benchmarks/classification/imagenet/imagenet_1percent/``
and ``imagenet_10percent/`` (``resnet50_head{1,10,100}_4xb64-steplr{1e-1,1e-2,1e-3}-20e_in1k-*.py``;
PROTOCOLS.md "Semi-supervised"):

- ResNet (SyncBN under torchrun on GPU) -> global average pool -> ``Linear`` (normal std 0.01,
  bias 0), every parameter trained; cross-entropy.
- SGD momentum 0.9, weight decay 5e-4 (1%) or 1e-4 (10%) on every parameter; the head's lr is
  the backbone's times a multiplier; lr x 0.2 at epochs 12 and 16 of 20; batch 256 in all.
- RandomResizedCrop 224 + flip for training, Resize 256 + CenterCrop 224 for evaluation.
- A grid of ``lr`` in {0.1, 0.01, 0.001} x head multiplier in {1, 10, 100}: every setting is one
  job (:func:`semi_benchmark`) and :func:`sslzoo.benchmarks.semi_grid.select_best` reports the best top-1.

The labelled subset is the standard split file when the config names one (SimCLR's
``1percent.txt`` / ``10percent.txt``: one image file name per line, matched by file name), else a
class-balanced subset drawn with the seed (``round(fraction * n_c)`` images of each class ``c``,
at least one).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Subset

from sslzoo.benchmarks.classifier_loop import (
    check_same_classes,
    evaluate_classifier,
    fit_classifier,
    training_run_record,
)
from sslzoo.benchmarks.classifier_transforms import build_eval_transform, build_train_transform
from sslzoo.benchmarks.features import load_backbone_model
from sslzoo.benchmarks.heads import init_linear
from sslzoo.benchmarks.linear_protocol import (
    EvalTransformConfig,
    TrainSettings,
    TrainTransformConfig,
    check_gpus,
    parse_eval_transform,
    parse_train_settings,
    parse_train_transform,
)
from sslzoo.benchmarks.protocol_files import read_protocol
from sslzoo.benchmarks.semi_grid import TOP1, TOP5, setting_label
from sslzoo.data.datasets import ManifestDataset
from sslzoo.errors import SslzooError
from sslzoo.io import file_digest, git_revision, write_json
from sslzoo.models.backbone import ResNetBackbone
from sslzoo.runtime.dist import DistContext, init_distributed

HEAD = "head"


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SemiConfig:
    """``config/benchmarks/semi_in1k_*.yaml`` (see :func:`load_semi_config`)."""

    split_file: str | None
    fraction: float
    lrs: tuple[float, ...]
    head_mults: tuple[float, ...]
    sync_bn: bool
    momentum: float
    weight_decay: float
    nesterov: bool
    train: TrainSettings
    train_transform: TrainTransformConfig
    eval_transform: EvalTransformConfig
    gpus: int  # the reference's process count (check_gpus)


def load_semi_config(path: str | os.PathLike[str]) -> tuple[SemiConfig, dict[str, Any]]:
    """Read and validate a semi-supervised protocol file (``sslzoo/schemas/semi.schema.yaml``).

    Keys: ``gpus`` (the reference's process count, :func:`~sslzoo.benchmarks.linear_protocol.check_gpus`),
    ``split_file`` (standard subset list, relative to the working directory, or null),
    ``fraction`` (of each class, when there is no split file), ``lrs`` and ``head_mults`` (the
    grid the workflow expands into jobs), ``sync_bn``, ``epochs``, ``batch_size`` (total),
    ``workers``, ``optimizer: {momentum, weight_decay, nesterov}``, ``schedule: {steps, gamma}``,
    ``train_transform``, ``eval_transform`` (as in :mod:`sslzoo.benchmarks.linear_protocol`).

    Returns:
        The config and the file's mapping as written (recorded in metrics.json).
    """
    source = str(path)
    raw, cfg = read_protocol(path, "semi")
    optimizer = cfg["optimizer"]
    if optimizer["nesterov"] and optimizer["momentum"] <= 0:
        raise SslzooError(
            f"{source}: optimizer.momentum: must be > 0 with nesterov, got {optimizer['momentum']!r}"
        )
    train = parse_train_settings(cfg, source)
    config = SemiConfig(
        split_file=cfg["split_file"],
        fraction=float(cfg["fraction"]),
        lrs=tuple(float(v) for v in cfg["lrs"]),
        head_mults=tuple(float(v) for v in cfg["head_mults"]),
        sync_bn=cfg["sync_bn"],
        momentum=float(optimizer["momentum"]),
        weight_decay=float(optimizer["weight_decay"]),
        nesterov=optimizer["nesterov"],
        train=train,
        train_transform=parse_train_transform(cfg, source),
        eval_transform=parse_eval_transform(cfg, source),
        gpus=check_gpus(cfg, source, train.batch_size),
    )
    return config, raw


# --------------------------------------------------------------------------------------------
# The labelled subset
# --------------------------------------------------------------------------------------------


def class_balanced_subset(labels: Sequence[int] | np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of ``round(fraction * n_c)`` (at least 1) random samples of each class.

    Args:
        labels: ``[N]`` class index of every sample.
        fraction: in (0, 1].
        seed: the same seed and labels give the same subset.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = min(len(members), max(1, round(fraction * len(members))))
        chosen.append(rng.choice(members, size=count, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def read_split_file(path: str | os.PathLike[str]) -> list[str]:
    """File names listed in a subset file, one image per line (``n01440764_10026.JPEG``).

    Lines may carry a folder (``n01440764/n01440764_10026.JPEG``) and a trailing label as in
    MMSelfSup list files; only the file name counts. Blank lines are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise SslzooError(
            f"{path}: subset file not found (split_file in the semi-supervised config); put SimCLR's "
            "imagenet_subsets/1percent.txt or 10percent.txt there, or set split_file: null for a seeded "
            "class-balanced subset"
        )
    names = [
        PurePosixPath(line.split()[0].replace("\\", "/")).name
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    if not names:
        raise SslzooError(f"{path}: the subset file lists no images")
    return names


def split_file_subset(sample_paths: Sequence[str], split_file: str | os.PathLike[str]) -> np.ndarray:
    """Sorted indices of the samples whose file names the split file lists.

    Args:
        sample_paths: manifest paths (``n01440764/n01440764_10026.JPEG``), matched by file name.

    Raises:
        SslzooError: a listed file is not in the manifest, is listed twice, or matches several samples.
    """
    names = read_split_file(split_file)
    index_of: dict[str, int] = {}
    clashes: set[str] = set()
    for index, rel in enumerate(sample_paths):
        name = PurePosixPath(rel).name
        if name in index_of:
            clashes.add(name)
        index_of[name] = index
    missing = [name for name in names if name not in index_of]
    if missing:
        raise SslzooError(
            f"{split_file}: {missing[0]} is not in the training manifest ({len(missing)} of {len(names)} "
            "listed images are missing); the split file must come from the same ImageNet training set"
        )
    ambiguous = [name for name in names if name in clashes]
    if ambiguous:
        raise SslzooError(f"{split_file}: {ambiguous[0]} matches several images of the training manifest")
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise SslzooError(f"{split_file}: {twice} is listed twice")
    return np.sort(np.array([index_of[name] for name in names], dtype=np.int64))


# --------------------------------------------------------------------------------------------
# Model and optimiser
# --------------------------------------------------------------------------------------------


class FineTuneClassifier(nn.Module):
    """Backbone -> global average pool -> ``head`` Linear; ``forward(images) -> {"head": logits [B, C]}``."""

    def __init__(self, backbone: ResNetBackbone, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = init_linear(nn.Linear(backbone.out_channels, num_classes))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = torch.flatten(F.adaptive_avg_pool2d(self.backbone(images, (5,))[0], 1), 1)
        return {HEAD: self.head(features)}


def head_param_groups(
    model: FineTuneClassifier, lr: float, head_mult: float, weight_decay: float
) -> list[dict[str, Any]]:
    """Backbone parameters at ``lr``, head parameters at ``lr * head_mult`` (mmcv ``lr_mult`` on
    ``head.``); the same weight decay on every parameter, as the reference configs."""
    return [
        {"params": list(model.backbone.parameters()), "lr": lr, "weight_decay": weight_decay},
        {"params": list(model.head.parameters()), "lr": lr * head_mult, "weight_decay": weight_decay},
    ]


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


def semi_benchmark(
    backbone_path: str | os.PathLike[str],
    train_manifest: str | os.PathLike[str],
    val_manifest: str | os.PathLike[str],
    config_path: str | os.PathLike[str],
    lr: float,
    head_mult: float,
    work_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    seed: int = 0,
    ctx: DistContext | None = None,
    *,
    benchmark_name: str,
    model_name: str,
    grid_point: str,
) -> dict[str, Any] | None:
    """Fine-tune at one grid point and write its metrics.json.

    ``out_path`` is ``results/benchmarks/{benchmark}/{model}/lr{lr}_head{mult}/metrics.json``:
    ``{"Top-1 (%)", "Top-5 (%)", "meta": {"lr", "head_mult", "setting", "grid_point", ..., "run"}}``
    (``run``: the run record, :func:`~sslzoo.benchmarks.classifier_loop.training_run_record`).
    ``benchmark_name`` (a benchmark of :mod:`sslzoo.benchmarks.registry`), ``model_name`` and
    ``grid_point`` (the ``lr{lr}_head{mult}`` folder) are the names ``meta`` records. Rank 0
    writes and returns the metrics, the other processes None.
    """

    if not (math.isfinite(lr) and lr > 0 and math.isfinite(head_mult) and head_mult > 0):
        raise SslzooError(f"--lr and --head-mult must be positive numbers, got {lr} and {head_mult}")
    ctx = ctx or init_distributed()
    config, raw_config = load_semi_config(config_path)
    train_set = ManifestDataset(train_manifest, build_train_transform(config.train_transform))
    val_set = ManifestDataset(val_manifest, build_eval_transform(config.eval_transform))
    num_classes = check_same_classes(train_set, val_set, train_manifest, val_manifest)
    if config.split_file is not None:
        subset = split_file_subset([rel for rel, _ in train_set.samples], config.split_file)
    else:
        subset = class_balanced_subset(train_set.labels, config.fraction, seed)
    labelled = Subset(train_set, subset.tolist())

    torch.manual_seed(seed)
    model = FineTuneClassifier(load_backbone_model(backbone_path).train(), num_classes)
    if config.sync_bn and ctx.distributed and ctx.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(ctx.device)
    optimizer = torch.optim.SGD(
        head_param_groups(model, lr, head_mult, config.weight_decay),
        lr=lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
    )
    fingerprint = {
        "config": raw_config,
        "seed": seed,
        "lr": lr,
        "head_mult": head_mult,
        "backbone": file_digest(backbone_path),
        "train_manifest": file_digest(train_manifest),
        "subset": hashlib.sha256(subset.astype(np.int64).tobytes()).hexdigest(),
    }
    summary = fit_classifier(
        model, optimizer, labelled, config.train, work_dir, fingerprint, seed=seed, ctx=ctx
    )
    accuracy = evaluate_classifier(
        model,
        val_set,
        [HEAD],
        batch_size=max(1, config.train.batch_size // ctx.world_size),
        workers=config.train.workers,
        ctx=ctx,
    )[HEAD]
    if not ctx.is_main:
        return None
    out_path = Path(out_path)
    metrics: dict[str, Any] = {
        TOP1: accuracy.top1,
        TOP5: accuracy.top5,
        "meta": {
            "benchmark": benchmark_name,
            "model": model_name,
            "grid_point": grid_point,
            "lr": lr,
            "head_mult": head_mult,
            "setting": setting_label(lr, head_mult),
            "config": raw_config,
            "config_path": str(config_path),
            "git_rev": git_revision(),
            "backbone": str(backbone_path),
            "train_manifest": str(train_manifest),
            "val_manifest": str(val_manifest),
            "subset": "split file " + config.split_file
            if config.split_file
            else f"fraction {config.fraction:g}",
            "num_labelled": len(labelled),
            "num_train": len(train_set),
            "num_val": len(val_set),
            "num_classes": num_classes,
            "seed": seed,
            "world_size": ctx.world_size,
            **summary,
            "run": training_run_record(config_path, config.gpus, config.train.batch_size, seed, ctx),
        },
    }
    write_json(out_path, metrics)
    return metrics
