"""Linear evaluation on a frozen backbone: :func:`linear_benchmark`.

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
  MoCo protocol): global average pool of feature5 -> ``Linear`` (normal std 0.01, bias 0). The
  papers' own AvgPool protocols have the same head (``ClsHead(with_avg_pool=True)``, no BN) and
  differ in optimizer and schedule only: BYOL's ``imagenet/resnet50_linear-8xb512-coslr-90e_in1k.py``
  (LARS, cosine) and Triplet's (wanggrun/triplet ``configs/benchmarks/linear_classification/
  imagenet/r50_last_cos_for_{Less,More}SslEpoch.py``: SGD, cosine after a linear warm-up).

The backbone stays in eval mode (BN running statistics frozen) and runs without gradients; only
the heads train: SGD or LARS (:func:`build_head_optimizer`) with the protocol's step or cosine
schedule, top-1 and top-5 accuracy on the validation set (Resize + CenterCrop) after the last
epoch. Table columns: ``Feature1`` .. ``Feature5``, ``AvgPool``.

The parts live beside this module: the protocol file in :mod:`sslzoo.benchmarks.linear_protocol`,
the transforms in :mod:`sslzoo.benchmarks.classifier_transforms`, the heads in
:mod:`sslzoo.benchmarks.heads`, and the training and evaluation loop, shared with
semi-supervised fine-tuning (:mod:`sslzoo.benchmarks.semi`), in
:mod:`sslzoo.benchmarks.classifier_loop`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslzoo.benchmarks.classifier_loop import (
    check_same_classes,
    evaluate_classifier,
    fit_classifier,
    norm_param_groups,
    training_run_record,
)
from sslzoo.benchmarks.classifier_transforms import build_eval_transform, build_train_transform
from sslzoo.benchmarks.features import load_backbone_model
from sslzoo.benchmarks.heads import build_linear_classifier
from sslzoo.benchmarks.linear_protocol import LAYER_COLUMNS, LinearConfig, load_linear_config
from sslzoo.data.datasets import ManifestDataset
from sslzoo.io import file_digest, git_revision, write_json
from sslzoo.runtime.dist import DistContext, init_distributed
from sslzoo.runtime.optim import LARS


def build_head_optimizer(heads: nn.Module, config: LinearConfig) -> torch.optim.Optimizer:
    """The optimizer of the heads' trainable parameters: ``torch.optim.SGD`` or
    :class:`~sslzoo.runtime.optim.LARS` (``optimizer.name``), over the groups of
    :func:`~sslzoo.benchmarks.classifier_loop.norm_param_groups` (norm layers decayed with
    ``norm_weight_decay``, the rest with ``weight_decay``).

    LARS adapts every group: the reference's LARS linear protocol
    (mmselfsup 0.x ``configs/benchmarks/classification/_base_/schedules/lars_coslr-90e.py``) gives
    no ``paramwise_options``, so its ``fc_cls`` weight and bias both get the trust ratio.
    """
    groups = norm_param_groups(heads, config.lr, config.weight_decay, config.norm_weight_decay)
    if config.optimizer == "lars":
        return LARS(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, eta=config.eta)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


def linear_benchmark(
    backbone_path: str | os.PathLike[str],
    train_manifest: str | os.PathLike[str],
    val_manifest: str | os.PathLike[str],
    config_path: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    seed: int = 0,
    ctx: DistContext | None = None,
    *,
    benchmark_name: str,
    model_name: str,
) -> dict[str, Any] | None:
    """Train the linear heads of ``config_path`` on a frozen backbone and write metrics.json.

    ``results/benchmarks/{benchmark}/{model}/metrics.json``: ``{"Feature1": top-1 %, ...}`` (or
    ``{"AvgPool": ...}``) and ``meta`` with the top-5 accuracies, the config and the inputs.
    ``benchmark_name`` (a benchmark of :mod:`sslzoo.benchmarks.registry`) and ``model_name`` are
    the names ``meta`` records. Under torchrun every process trains its share of each batch; rank
    0 writes and returns the metrics, the others None.
    """

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
    optimizer = build_head_optimizer(model.heads, config)
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
        "benchmark": benchmark_name,
        "model": model_name,
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
