"""The supervised training and evaluation loop of linear evaluation
(:mod:`sslzoo.benchmarks.linear`) and semi-supervised fine-tuning (:mod:`sslzoo.benchmarks.semi`),
and the run bookkeeping that detection and segmentation share.

Training (:func:`fit_classifier`) follows the conventions of :mod:`sslzoo.engine.trainer`:
torchrun/DDP with the seeded :class:`~sslzoo.runtime.seeding.EpochSampler` (``batch_size`` in
the config is the total over processes), global RNGs reseeded at each epoch start, one JSON
line per iteration in ``work_dir/train_log.jsonl``, ``work_dir/latest.pth`` written atomically
after every epoch and resumed from when everything that defines the run (config, seed, backbone
and manifest contents) is unchanged. The loss is the sum of the cross-entropies of the model's
outputs (the independent heads of mmselfsup 0.x ``mmselfsup/models/heads/multi_cls_head.py``),
the lr set before every optimizer step by the protocol's schedule (:meth:`TrainSettings.lr_schedule
<sslzoo.benchmarks.linear_protocol.TrainSettings.lr_schedule>`: step decay per epoch, mmselfsup 0.x
``configs/benchmarks/classification``, or cosine with a linear warm-up; PROTOCOLS.md "Linear
evaluation"). Evaluation (:func:`evaluate_classifier`) splits the images over the
processes and sums the hit counts, so the top-1 and top-5 accuracy does not depend on the
process count.

Also here: :func:`norm_param_groups` (the optimizer groups of mmcv's ``norm_decay_mult``),
:func:`training_run_record` (``meta.run`` of a supervised benchmark run). The loop itself is
:func:`sslzoo.runtime.loop.fit`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from sslzoo.benchmarks.linear_protocol import TrainSettings
from sslzoo.errors import SslzooError
from sslzoo.run_record import RunRecord, protocol_batch
from sslzoo.runtime.device import move_to_device
from sslzoo.runtime.dist import DistContext, broadcast_buffers
from sslzoo.runtime.loaders import batches_per_epoch, epoch_loader, per_rank_batch
from sslzoo.runtime.loop import fit
from sslzoo.runtime.optim import NORM_LAYERS
from sslzoo.runtime.record import run_record
from sslzoo.runtime.run_dir import Fingerprint, RunDir
from sslzoo.runtime.schedules import per_group


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


def _classifier_step(runner: nn.Module, batch: Any, *, device: torch.device) -> dict[str, torch.Tensor]:
    """``(images [B, 3, H, W], labels [B])`` -> the summed cross-entropies of the model's outputs
    as ``loss``, and each one as ``loss.<name>`` when there are several."""
    images, labels = move_to_device(batch, device)
    outputs = runner(images)
    losses = {name: F.cross_entropy(logits, labels) for name, logits in outputs.items()}
    loss = torch.stack(list(losses.values())).sum()
    return {"loss": loss, **({f"loss.{n}": v for n, v in losses.items()} if len(losses) > 1 else {})}


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
            (recorded as ``initial_lr``), scaled at every iteration by ``settings``' schedule.
        train_set: ``(image tensor, label)`` pairs.
        settings: epochs, total batch (split evenly over the processes), workers, lr schedule.
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
    per_rank = per_rank_batch(settings.batch_size, ctx)
    iters_per_epoch = batches_per_epoch(len(train_set), per_rank, ctx)  # type: ignore[arg-type]
    if iters_per_epoch < 1:
        raise SslzooError(
            f"{len(train_set)} training images give no full batch of batch_size {settings.batch_size}; "  # type: ignore[arg-type]
            "lower batch_size in the protocol file"
        )
    schedule = settings.lr_schedule(iters_per_epoch)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    result = fit(
        partial(_classifier_step, device=ctx.device),
        model,
        optimizer,
        partial(epoch_loader, train_set, per_rank, seed, ctx=ctx, workers=settings.workers),
        RunDir(work_dir),
        Fingerprint({**fingerprint, "iters_per_epoch": iters_per_epoch}),
        total_iters=schedule.total_iters,
        iters_per_epoch=iters_per_epoch,
        schedules={"lr": per_group(optimizer, schedule.lr)},
        seed=seed,
        ctx=ctx,
        state_module=state_module,
        divergence_advice="lower optimizer.lr in the protocol file",
    )
    return {
        "epochs": settings.epochs,
        "iterations": result.iterations,
        "iters_per_epoch": iters_per_epoch,
        "resumed_from_epoch": result.start_epoch,
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
