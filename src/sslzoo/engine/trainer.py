"""The one pretraining loop: DDP, gradient accumulation, bf16 autocast, lr schedule, checkpoint/resume.

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
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from sslzoo.errors import SslzooError
from sslzoo.io import atomic_write_bytes, git_revision, write_json
from sslzoo.run_record import protocol_batch, run_record
from sslzoo.runtime.checkpoint import save_atomic
from sslzoo.runtime.device import move_to_device
from sslzoo.runtime.dist import DistContext, all_reduce_mean, barrier, cleanup, init_distributed
from sslzoo.runtime.optim import build_optimizer
from sslzoo.runtime.schedules import apply_lr, build_schedule
from sslzoo.runtime.seeding import EpochSampler, derived_seed, rng_state, seed_everything, set_rng_state

LATEST = "latest.pth"
TRAIN_LOG = "train_log.jsonl"
# Config keys that do not change training: a checkpoint written under other values still resumes.
_NOT_TRAINING_KEYS = ("title", "reported")


def _training_config(cfg: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in cfg.items() if key not in _NOT_TRAINING_KEYS}


def _set_aside(work_dir: Path, paths: tuple[Path, ...]) -> Path:
    """Move ``paths`` into ``work_dir/superseded-<time>/`` and return that folder."""
    aside = work_dir / time.strftime("superseded-%Y%m%d-%H%M%S")
    aside.mkdir(parents=True, exist_ok=True)
    for path in paths:
        if path.exists():
            path.replace(aside / path.name)
    return aside


def _config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Key paths whose values differ between two configs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += _config_differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


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
            break  # a line cut by a kill: everything after it is stale too
    log_path.write_text("".join(f"{line}\n" for line in kept))


def _say(ctx: DistContext, message: str) -> None:
    if ctx.is_main:
        tqdm.write(message, file=sys.stderr)


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
) -> dict[str, Any]:
    """Pretrain ``method`` on ``dataset`` for ``cfg["train"]["epochs"]``, resuming when possible.

    Args:
        method: follows the contract of :mod:`sslzoo.methods`; its parameters must already be
            initialised identically on every process (seed before building it).
        dataset: yields ``(views, label)``; only ``views`` (the output of ``method.views(cfg)``)
            is used, collated by the default collate function.
        cfg: a validated model config (:func:`sslzoo.config.load_model_config`).
        work_dir: holds ``latest.pth`` (resume state) and ``train_log.jsonl``.
        out: where the final checkpoint goes (``{"state_dict", "meta"}``; ``meta["run"]`` is the
            run record); None writes none.
        seed: seeds the data order and augmentation (with the epoch, rank and worker).
        ctx: this process's place in the process group (default: a single CPU process).
        inputs: name -> digest of the files the dataset was built from (the manifest, ORL's
            correspondence file): a resume state made from other inputs is set aside like one
            made with other settings.
        protocol_path: the model config file ``cfg`` was read from (named in the run record).

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
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    latest_path, log_path = work_dir / LATEST, work_dir / TRAIN_LOG

    micro_per_epoch = len(EpochSampler(len(dataset), seed, 0, ctx.rank, ctx.world_size)) // batch_size
    iters_per_epoch = micro_per_epoch // accumulate
    if iters_per_epoch < 1:
        raise SslzooError(
            f"train: {len(dataset)} samples give no full optimizer step of {ctx.world_size} process(es) x "
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

    start_epoch, iteration = 0, 0
    state = torch.load(latest_path, map_location=device, weights_only=True) if latest_path.exists() else None
    if state is not None:
        differences = _config_differences(_training_config(state["config"]), _training_config(cfg))
        if state.get("seed") != seed:
            differences.append(f"seed ({state.get('seed')} -> {seed})")
        if state.get("iters_per_epoch") != iters_per_epoch:
            differences.append(f"iterations per epoch ({state.get('iters_per_epoch')} -> {iters_per_epoch})")
        old_inputs = state.get("inputs") or {}
        differences += [
            f"input {name} changed"
            for name, digest in (inputs or {}).items()
            if old_inputs.get(name, digest) != digest
        ]
        if differences:
            # The protocol changed (Snakemake reruns the job because its params changed): the old
            # run cannot be continued, so it is set aside, never silently mixed with the new one.
            barrier(ctx)
            if ctx.is_main:
                aside = _set_aside(work_dir, (latest_path, log_path))
                _say(
                    ctx,
                    f"{latest_path} was written with other settings ({', '.join(differences)}): "
                    f"starting from scratch; the old state is kept in {aside}",
                )
            barrier(ctx)
            state = None
    if state is not None:
        method.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        start_epoch, iteration = int(state["epoch"]), int(state["iteration"])
        if state.get("world_size") != ctx.world_size:
            _say(
                ctx,
                f"resuming a {state.get('world_size')}-process run with {ctx.world_size}: the data order changes",
            )
        _say(ctx, f"resuming from {latest_path}: epoch {start_epoch}/{epochs}, iteration {iteration}")
        del state
    if ctx.is_main:
        _truncate_log(log_path, iteration)
    barrier(ctx)

    model: nn.Module = method
    if ctx.distributed:
        model = DistributedDataParallel(method, device_ids=[device.index] if device.type == "cuda" else None)
    after_step = getattr(method, "after_step", None)

    for epoch in range(start_epoch, epochs):
        epoch_seed = derived_seed(seed, epoch, ctx.rank)
        seed_everything(epoch_seed)
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=EpochSampler(len(dataset), seed, epoch, ctx.rank, ctx.world_size),
            num_workers=workers,
            drop_last=True,
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(epoch_seed),
        )
        model.train()
        bar = tqdm(
            total=iters_per_epoch,
            desc=f"epoch {epoch + 1}/{epochs}",
            file=sys.stderr,
            disable=not ctx.is_main,
            dynamic_ncols=True,
            leave=False,
            mininterval=0.5 if sys.stderr.isatty() else 30.0,  # few redraws in log files
        )
        epoch_end = (epoch + 1) * iters_per_epoch
        sums: dict[str, torch.Tensor] = {}
        micro = 0
        tick = time.perf_counter()
        with open(log_path, "a") if ctx.is_main else nullcontext() as log:
            for views, _labels in loader:
                if micro == 0:
                    lr = apply_lr(optimizer, schedule, iteration)
                micro += 1
                stepping = micro == accumulate
                batch = move_to_device(views, device, channels_last)
                sync = nullcontext() if stepping or not ctx.distributed else model.no_sync()
                with sync:
                    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                        outputs = model(batch)
                    (outputs["loss"] / accumulate).backward()
                for key, value in outputs.items():
                    value = torch.as_tensor(value).detach().float().reshape(())
                    sums[key] = sums.get(key, 0) + value / accumulate
                if not stepping:
                    continue
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                iteration += 1
                if after_step is not None:
                    after_step(iteration / total_iters)
                keys = sorted(sums)
                means = all_reduce_mean(torch.stack([sums[k] for k in keys]), ctx).tolist()
                scalars = dict(zip(keys, means, strict=True))
                sums, micro = {}, 0
                if not math.isfinite(scalars["loss"]):
                    raise SslzooError(
                        f"train: loss is {scalars['loss']} at epoch {epoch + 1}, iteration {iteration}; "
                        f"lower train.optimizer.lr or the warm-up start (train.schedule.warmup_ratio)"
                    )
                now = time.perf_counter()
                record = {
                    "epoch": epoch + 1,
                    "iter": iteration,
                    "loss": scalars.pop("loss"),
                    "lr": lr,
                    "time": round(now - tick, 4),
                    **scalars,
                }
                tick = now
                if log is not None:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.3g}")
                if iteration == epoch_end:
                    break
        bar.close()
        if ctx.is_main:
            save_atomic(
                {
                    "state_dict": method.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch + 1,
                    "iteration": iteration,
                    "iters_per_epoch": iters_per_epoch,
                    "rng": rng_state(),
                    "config": cfg,
                    "seed": seed,
                    "world_size": ctx.world_size,
                    "inputs": dict(inputs or {}),
                },
                latest_path,
            )
            _say(ctx, f"epoch {epoch + 1}/{epochs} done ({iteration} iterations); saved {latest_path}")
        barrier(ctx)

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
        _say(ctx, f"wrote {out}")
    barrier(ctx)
    return {
        "epoch": epochs,
        "iterations": iteration,
        "iters_per_epoch": iters_per_epoch,
        "resumed_from_epoch": start_epoch,
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
    from sslzoo.config import load_model_config
    from sslzoo.data.datasets import ManifestDataset
    from sslzoo.io import file_digest
    from sslzoo.methods import METHODS

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
            _say(
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
