"""Pretraining: a method and its dataset trained epoch by epoch through :func:`sslzoo.runtime.loop.fit`
(DDP, gradient accumulation, bf16 autocast, lr schedule, the methods' before- and after-step hooks
(SwAV's frozen prototypes, BYOL's EMA), checkpoint/resume).

Reproducibility: the sample order of an epoch depends only on ``(seed, epoch)``
(:class:`~sslzoo.runtime.seeding.EpochSampler`), and the augmentation randomness only on
``(seed, epoch, rank, worker)`` (the global RNGs are reseeded at every epoch start and each
DataLoader gets a generator seeded from the same tuple, from which torch seeds its workers). A
run killed at any point and resumed from ``work_dir/latest.pth`` (written atomically at the end
of every epoch) therefore gives the same weights as an uninterrupted one (bit-identical on CPU;
on GPU up to non-deterministic kernels).

One *iteration* is one optimizer step over ``accumulate`` micro-batches of ``batch_size``
samples per process; the lr schedule, ``train_log.jsonl`` and ``after_step(progress)`` count
these. The micro-batches left over at the end of an epoch (fewer than ``accumulate``) are
skipped, as is a last incomplete micro-batch.

A method with ``before_epoch`` (DeepCluster, ODC: :mod:`sslzoo.methods`) is called at the start
of every epoch, the resumed one included, after the global generators are reseeded and before
the epoch's first batch, with the epoch's process-independent seed and a function that extracts
features of the whole training set (read through the method's ``extract_views``); the order it
may return replaces the epoch's shuffle. What it computes follows from the state of the epoch
start (weights and buffers, which a resume restores), the data and that seed, so a resumed
epoch repeats it exactly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from sslzoo.config import load_model_config, training_config
from sslzoo.data.datasets import IndexedDataset, ManifestDataset
from sslzoo.engine.snapshots import check_kept, keep_snapshot
from sslzoo.errors import SslzooError
from sslzoo.io import atomic_write_bytes, file_digest, git_revision, write_json
from sslzoo.methods import METHODS
from sslzoo.run_record import protocol_batch
from sslzoo.runtime.checkpoint import save_atomic
from sslzoo.runtime.device import move_to_device
from sslzoo.runtime.dist import DistContext, all_gather_tensor, barrier, cleanup, init_distributed
from sslzoo.runtime.loaders import batches_per_epoch, epoch_loader, shard_loader, unshard
from sslzoo.runtime.loop import fit
from sslzoo.runtime.optim import build_optimizer
from sslzoo.runtime.progress import say
from sslzoo.runtime.record import run_record
from sslzoo.runtime.run_dir import LATEST, TRAIN_LOG, RunDir
from sslzoo.runtime.schedules import build_schedule, per_group
from sslzoo.runtime.seeding import derived_seed

__all__ = ["LATEST", "TRAIN_LOG", "pretrain_from_files", "train"]


def _config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Key paths whose values differ between two configs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += _config_differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


@dataclass(frozen=True)
class PretrainIdentity:
    """A pretraining run: its training config (:func:`sslzoo.config.training_config`), seed,
    iterations per epoch and input digests; saved with the process count and the global
    generators' state (see :class:`~sslzoo.runtime.run_dir.RunIdentity`)."""

    cfg: dict[str, Any]
    seed: int
    iters_per_epoch: int
    world_size: int
    inputs: dict[str, str] = field(default_factory=dict)

    def changes(self, state: Mapping[str, Any]) -> list[str]:
        differences = _config_differences(training_config(state["config"]), training_config(self.cfg))
        if state.get("seed") != self.seed:
            differences.append(f"seed ({state.get('seed')} -> {self.seed})")
        if state.get("iters_per_epoch") != self.iters_per_epoch:
            differences.append(
                f"iterations per epoch ({state.get('iters_per_epoch')} -> {self.iters_per_epoch})"
            )
        old_inputs = state.get("inputs") or {}
        differences += [
            f"input {name} changed"
            for name, digest in self.inputs.items()
            if old_inputs.get(name, digest) != digest
        ]
        return differences

    def entries(self) -> dict[str, Any]:
        return {
            "iters_per_epoch": self.iters_per_epoch,
            "config": self.cfg,
            "seed": self.seed,
            "world_size": self.world_size,
            "inputs": dict(self.inputs),
        }


def _method_step(
    runner: nn.Module,
    batch: Any,
    *,
    device: torch.device,
    channels_last: bool,
    amp: bool,
    fields: tuple[str, ...] = (),
) -> dict[str, torch.Tensor]:
    """One micro-batch ``(views, labels [B], indices [B])`` through the method: its outputs,
    ``loss`` first, the rest by name. ``labels`` and ``indices`` go to the method as keyword
    arguments when it lists them in its ``batch_fields`` (``fields``), else they are dropped."""
    views, labels, indices = batch
    views = move_to_device(views, device, channels_last)
    given = {"labels": labels, "indices": indices}
    extra = {name: given[name].to(device, non_blocking=True) for name in fields}
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
        outputs = runner(views, **extra)
    return {"loss": outputs["loss"], **{key: outputs[key] for key in sorted(outputs) if key != "loss"}}


# a batch of extraction images [B, 3, H, W] on the device -> features [B, D]
FeatureFn = Callable[[torch.Tensor], torch.Tensor]


def _dataset_features(
    method: nn.Module,
    dataset: Dataset,
    features: FeatureFn,
    *,
    batch_size: int,
    ctx: DistContext,
    workers: int,
    channels_last: bool,
) -> torch.Tensor:
    """``features`` of every sample of ``dataset`` (``(image, label)`` pairs) with ``method`` in
    eval mode and no gradient: float32 ``[N, D]`` on the CPU in dataset order, the same on every
    process (each extracts a strided shard, :func:`~sslzoo.runtime.loaders.shard_loader`)."""
    was_training = method.training
    method.eval()
    parts = []
    with torch.no_grad():
        for images, _ in shard_loader(dataset, batch_size, ctx, workers):
            parts.append(features(move_to_device(images, ctx.device, channels_last)).float())
    method.train(was_training)
    gathered = all_gather_tensor(torch.cat(parts), ctx)
    return unshard(gathered, len(dataset), ctx.world_size).cpu()  # type: ignore[arg-type]


def _extraction_dataset(method: nn.Module, dataset: Dataset, cfg: dict[str, Any]) -> Dataset:
    """The training manifest read through the method's ``extract_views(cfg)`` (its deterministic
    extraction pipeline)."""
    extract_views = getattr(method, "extract_views", None)
    if extract_views is None or not isinstance(dataset, ManifestDataset):
        raise SslzooError(
            f"{type(method).__name__}.before_epoch extracts features of the training set: give train() "
            "extract_dataset=, or a ManifestDataset and a method with extract_views(cfg)"
        )
    return ManifestDataset(dataset.manifest_path, extract_views(cfg))


def _prepared_epoch(
    batches: Callable[..., Any],
    before_epoch: Callable[[int, Callable[[FeatureFn], torch.Tensor], int], Sequence[int] | None],
    extract: Callable[[FeatureFn], torch.Tensor],
    seed: int,
    epoch: int,
) -> Any:
    """The loader of ``epoch`` after the method's ``before_epoch`` (seeded by ``(seed, epoch)``,
    the same on every process); the order it returns, if any, replaces the epoch's shuffle."""
    order = before_epoch(epoch, extract, derived_seed(seed, epoch))
    return batches(epoch, order=None if order is None else torch.as_tensor(order).tolist())


def _on_resume(
    state: Mapping[str, Any], *, ctx: DistContext, run_dir: RunDir, cfg: dict[str, Any], source: str
) -> None:
    """On resume: say when the process count differs from the saved run's (the data order
    follows ``(seed, epoch, rank)``, so it changes), and stop when a listed snapshot epoch
    already passed has no kept checkpoint (:func:`~sslzoo.engine.snapshots.check_kept`). No
    generator state is restored: every epoch reseeds the global generators from
    ``(seed, epoch, rank)`` before its first batch."""
    if state.get("world_size") != ctx.world_size:
        say(
            ctx,
            f"resuming a {state.get('world_size')}-process run with {ctx.world_size}: the data order changes",
        )
    check_kept(run_dir, cfg, int(state["epoch"]), source)


def train(
    method: nn.Module,
    dataset: Dataset,
    cfg: dict[str, Any],
    work_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    ctx: DistContext | None = None,
    inputs: dict[str, str] | None = None,
    protocol_path: str | os.PathLike[str] | None = None,
    extract_dataset: Dataset | None = None,
) -> dict[str, Any]:
    """Pretrain ``method`` on ``dataset`` for ``cfg["train"]["epochs"]``, resuming when possible.

    Args:
        method: follows the contract of :mod:`sslzoo.methods`; its parameters must already be
            initialised identically on every process (seed before building it).
        dataset: yields ``(views, label)``, ``views`` the output of ``method.views(cfg)``,
            collated by the default collate function; the label and the sample's index reach
            the method when its ``batch_fields`` name them (:mod:`sslzoo.methods`).
        cfg: a validated model config (:func:`sslzoo.config.load_model_config`).
        work_dir: holds ``latest.pth`` (resume state), ``train_log.jsonl`` and the checkpoints
            of the epochs listed under ``snapshots:`` (``epoch_<N>.pth``,
            :mod:`sslzoo.engine.snapshots`).
        out: where the final checkpoint goes (``{"state_dict", "meta"}``; ``meta["run"]`` is the
            run record); None writes none.
        seed: seeds the data order and augmentation (with the epoch, rank and worker).
        ctx: this process's place in the process group (default: a single CPU process).
        inputs: name -> digest of the files the dataset was built from (the manifest, ORL's
            correspondence file): a resume state made from other inputs is set aside like one
            made with other settings.
        protocol_path: the model config file ``cfg`` was read from (named in the run record).
        extract_dataset: ``(image, label)`` samples of the training set in ``dataset``'s order
            that a method with ``before_epoch`` extracts features from; default: ``dataset``'s
            manifest read through the method's ``extract_views(cfg)``.

    Returns:
        ``{"epoch", "iterations", "iters_per_epoch", "resumed_from_epoch", "run"}``; ``run`` is
        the run record (:func:`sslzoo.run_record.run_record`: this run's processes x
        ``train.batch_size`` x ``train.accumulate`` beside the protocol's ``gpus`` x the same),
        made when training ends.
    """
    ctx = ctx or DistContext()
    device = ctx.device
    train_cfg = cfg["train"]
    epochs, batch_size = int(train_cfg["epochs"]), int(train_cfg["batch_size"])
    accumulate, workers = int(train_cfg.get("accumulate", 1)), int(train_cfg.get("workers", 2))
    channels_last = bool(train_cfg.get("channels_last", False))
    amp = bool(train_cfg.get("amp", False)) and device.type == "cuda"
    run_dir = RunDir(work_dir)

    iters_per_epoch = batches_per_epoch(len(dataset), batch_size, ctx) // accumulate  # type: ignore[arg-type]
    if iters_per_epoch < 1:
        raise SslzooError(
            f"train: {len(dataset)} samples give no full optimizer step of {ctx.world_size} process(es) x "  # type: ignore[arg-type]
            f"train.batch_size {batch_size} x train.accumulate {accumulate}; use more data or a smaller batch"
        )
    schedule = build_schedule(train_cfg["schedule"], epochs, iters_per_epoch)
    total_iters = schedule.total_iters

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    method.to(device)
    if cfg.get("backbone", {}).get("sync_bn", False) and ctx.distributed and device.type == "cuda":
        method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
    if channels_last:
        method.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(method, cfg)
    method_before_step = getattr(method, "before_step", None)
    method_after_step = getattr(method, "after_step", None)
    fields = tuple(getattr(method, "batch_fields", ()))
    unknown = sorted(set(fields) - {"labels", "indices"})
    if unknown:
        raise SslzooError(f"{type(method).__name__}.batch_fields: {unknown} are not labels or indices")

    batches = partial(epoch_loader, IndexedDataset(dataset), batch_size, seed, ctx=ctx, workers=workers)
    before_epoch = getattr(method, "before_epoch", None)
    if before_epoch is not None:
        extraction = (
            extract_dataset if extract_dataset is not None else _extraction_dataset(method, dataset, cfg)
        )
        extract = partial(
            _dataset_features,
            method,
            extraction,
            batch_size=batch_size,
            ctx=ctx,
            workers=workers,
            channels_last=channels_last,
        )
        batches = partial(_prepared_epoch, batches, before_epoch, extract, seed)

    result = fit(
        partial(_method_step, device=device, channels_last=channels_last, amp=amp, fields=fields),
        method,
        optimizer,
        batches,
        run_dir,
        PretrainIdentity(cfg, seed, iters_per_epoch, ctx.world_size, dict(inputs or {})),
        total_iters=total_iters,
        iters_per_epoch=iters_per_epoch,
        schedules={"lr": per_group(optimizer, schedule.lr)},
        accumulate=accumulate,
        before_step=method_before_step,
        after_step=None if method_after_step is None else lambda done: method_after_step(done / total_iters),
        at_epoch_end=partial(keep_snapshot, method=method, cfg=cfg, run_dir=run_dir, ctx=ctx),
        seed=seed,
        ctx=ctx,
        on_resume=partial(
            _on_resume, ctx=ctx, run_dir=run_dir, cfg=cfg, source=str(protocol_path or "the model config")
        ),
        divergence_advice="lower train.optimizer.lr or the warm-up start (train.schedule.warmup_ratio)",
    )

    record = run_record(
        world_size=ctx.world_size,
        per_process_batch=batch_size,
        accumulate=accumulate,
        seed=seed,
        device=device,
        protocol=protocol_batch(
            protocol_path, int(cfg["gpus"]), per_process_batch=batch_size, accumulate=accumulate
        ),
    )
    if out is not None and ctx.is_main:
        final = {key: value.detach().cpu().contiguous() for key, value in method.state_dict().items()}
        meta = {
            "method": cfg["method"],
            "config": cfg,
            "epoch": epochs,
            "git_rev": git_revision(),
            "run": record,
        }
        save_atomic({"state_dict": final, "meta": meta}, Path(out))
        say(ctx, f"wrote {out}")
    barrier(ctx)
    return {
        "epoch": epochs,
        "iterations": result.iterations,
        "iters_per_epoch": iters_per_epoch,
        "resumed_from_epoch": result.start_epoch,
        "run": record,
    }


def pretrain_from_files(
    config_path: str | os.PathLike[str],
    manifest_path: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    seed: int = 0,
    correspondence: str | os.PathLike[str] | None = None,
    train_log_out: str | os.PathLike[str] | None = None,
    run_out: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The ``pretrain`` step: config + manifest -> method and dataset -> :func:`train`.

    ``train_log_out`` receives a copy of the finished run's ``train_log.jsonl`` (the loss curve
    of the report), written once training is complete; ``run_out`` the run record
    (``run.json``: the same record as ``meta["run"]`` of the final checkpoint).

    The dataset is the method's ``build_dataset(cfg, manifest_path, correspondence)`` when it
    has that hook (ORL stage 3 reads ``correspondence``, its stage-2 file), else
    ``ManifestDataset(manifest_path, method.views(cfg))``; a ``correspondence`` given to a method
    without the hook is refused. Joins the torchrun process group when launched under torchrun
    (see :func:`sslzoo.runtime.dist.init_distributed`) and leaves it at the end.
    """
    cfg = load_model_config(config_path)
    if cfg["method"] not in METHODS:
        raise SslzooError(f"{config_path}: method: {cfg['method']!r} is not one of {sorted(METHODS)}")
    method_class = METHODS[cfg["method"]]
    build_dataset = getattr(method_class, "build_dataset", None)
    if build_dataset is None and correspondence is not None:
        raise SslzooError(
            f"--correspondence {correspondence}: method {cfg['method']!r} of {config_path} reads no "
            "correspondence file (only ORL stage 3 does); drop the option"
        )
    ctx = init_distributed()
    try:
        if ctx.world_size != cfg["gpus"]:
            say(
                ctx,
                f"{config_path}: the protocol uses {cfg['gpus']} processes, this run {ctx.world_size}: "
                f"the total batch is {ctx.world_size}x{cfg['train']['batch_size']}x{cfg['train']['accumulate']}",
            )
        torch.manual_seed(seed)
        method = method_class.from_config(cfg)
        if build_dataset is not None:
            dataset = build_dataset(cfg, manifest_path, correspondence)
        else:
            dataset = ManifestDataset(manifest_path, method_class.views(cfg))
        # new data (a rebuilt manifest, a new correspondence file) must not resume an old run
        inputs = {"manifest": file_digest(manifest_path)}
        if correspondence is not None:
            inputs["correspondence"] = file_digest(correspondence)
        summary = train(
            method, dataset, cfg, work_dir, out, seed=seed, ctx=ctx, inputs=inputs, protocol_path=config_path
        )
        if train_log_out is not None and ctx.is_main:
            atomic_write_bytes(train_log_out, (Path(work_dir) / TRAIN_LOG).read_bytes())
        if run_out is not None and ctx.is_main:
            write_json(run_out, summary["run"])
        return summary
    finally:
        cleanup()
