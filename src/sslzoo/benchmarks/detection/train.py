"""Detection protocol files and the iteration-based fine-tuning loop (shared with segmentation).

**Protocol file** (``config/benchmarks/det_*.yaml``, :func:`load_detection_config`; keys, types
and defaults in ``sslzoo/schemas/detection.schema.yaml``): ``dataset`` (``voc0712`` | ``coco``),
``engine`` (``torchvision`` | ``detectron2``), ``model`` (keys of
:class:`~sslzoo.benchmarks.detection.models.ModelConfig`), ``input``
(:class:`~sslzoo.benchmarks.detection.models.InputConfig`), ``solver``
(:class:`SolverConfig`), ``test`` (:class:`EvalConfig`), ``workers``.

**Schedule** (detectron2 ``solver/lr_scheduler.py`` ``WarmupMultiStepLR``; mmcv's ``step``
policy with ``warmup='linear'`` is the same function): at iteration i the lr is
``base_lr * warmup(i) * gamma ** #{s in steps : i >= s}`` with the linear warm-up
``warmup(i) = warmup_factor * (1 - i / W) + i / W`` for ``i < W = warmup_iters``. SGD with
momentum; norm-layer parameters use ``weight_decay_norm`` (detectron2 ``WEIGHT_DECAY_NORM``, 0;
MMDetection decays them like the rest).

**Epochs** (MMDetection's ``EpochBasedRunner``, protocol ``solver.max_epochs``): the one loop
counts iterations, so a schedule in epochs is converted in one place,
:meth:`SolverConfig.in_iterations`, once the training set is read: one epoch is
``ceil(training images / batch_size)`` iterations (MMDetection's samplers keep the last,
partial batch), ``max_iter = max_epochs x that`` and each step epoch ``e`` becomes iteration
``e x that`` (mmcv steps the lr at the start of epoch ``e``). ``warmup_iters`` is in iterations
either way (mmcv's warm-up counts iterations).

**Loop** (:func:`train_iterations`), iteration-based like detectron2's ``SimpleTrainer`` and
mmcv's ``IterBasedRunner``: ``batch_size`` is the total over the torchrun processes. The sample
stream (:class:`~sslzoo.runtime.loaders.IterationSampler`) is the epoch permutations of
:class:`~sslzoo.runtime.seeding.EpochSampler` laid end to end, so iteration i reads the same
images whatever happened before, and each sample carries its own augmentation seed; the
global generators are reseeded from ``(seed, iteration, rank)`` before every step (multi-scale
choice, RPN/RoI sampling, dropout). ``work_dir/latest.pth`` (model, optimizer, iteration,
fingerprint) is written atomically every ``checkpoint_period`` iterations and at the end; a run
killed at any point resumes from it and reproduces the uninterrupted run on CPU (on GPU up to
non-deterministic kernels). A state written for other settings (config, seed, backbone, process
count) is moved to ``work_dir/superseded-<time>/`` and training starts over. ``train_log.jsonl`` gets one line
per iteration (iter, loss, each loss term, lr, time). The loop is :func:`sslzoo.runtime.loop.fit`.

**Precise BN** (detectron2 ``TEST.PRECISE_BN``, fvcore ``update_bn_stats``): after training the
BN running statistics are recomputed as the plain average over ``precise_bn_iters`` training
batches (forward in training mode without gradients), instead of the momentum average.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from sslzoo.benchmarks.detection.models import InputConfig, ModelConfig
from sslzoo.benchmarks.linear_protocol import check_gpus
from sslzoo.benchmarks.protocol_files import build_dataclass, read_protocol, schema_default
from sslzoo.errors import SslzooError
from sslzoo.runtime.dist import DistContext
from sslzoo.runtime.loaders import IterationSampler, per_rank_batch, stream_loader
from sslzoo.runtime.loop import fit
from sslzoo.runtime.run_dir import Fingerprint, RunDir
from sslzoo.runtime.schedules import LrSchedule, per_group
from sslzoo.runtime.seeding import derived_seed, seed_everything

DATASETS = ("voc0712", "coco")
ENGINES = ("torchvision", "detectron2")


# --------------------------------------------------------------------------------------------
# Protocol file
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SolverConfig:
    """The ``solver`` section (detectron2 ``SOLVER.*`` names in brackets; defaults in the schema).

    Attributes:
        batch_size: images per iteration over all processes [IMS_PER_BATCH, 16].
        base_lr: [BASE_LR, 0.02]. momentum: [MOMENTUM, 0.9].
        weight_decay: [WEIGHT_DECAY, 1e-4]. weight_decay_norm: [WEIGHT_DECAY_NORM, 0].
        max_iter: [MAX_ITER]; None when the file gives ``max_epochs``.
        steps: [STEPS] in iterations, or epochs with ``max_epochs``. gamma: [GAMMA, 0.1].
        warmup_iters: [WARMUP_ITERS, 100]. warmup_factor: [WARMUP_FACTOR, 1/1000].
        checkpoint_period: iterations between resume checkpoints [CHECKPOINT_PERIOD].
        max_epochs: MMDetection's ``max_epochs`` instead of ``max_iter`` (see :meth:`in_iterations`).
    """

    batch_size: int
    base_lr: float
    momentum: float
    weight_decay: float
    weight_decay_norm: float
    steps: tuple[int, ...]
    gamma: float
    warmup_iters: int
    warmup_factor: float
    checkpoint_period: int
    max_iter: int | None = None
    max_epochs: int | None = None

    def iterations_per_epoch(self, num_train: int) -> int:
        """Iterations of one pass over ``num_train`` images: ``ceil(num_train / batch_size)``."""
        if num_train < 1:
            raise SslzooError("solver.max_epochs: the training set is empty")
        return math.ceil(num_train / self.batch_size)

    def in_iterations(self, num_train: int) -> SolverConfig:
        """This solver with ``max_iter`` and ``steps`` in iterations (the one place epochs are
        converted; module docstring). Unchanged when it already counts iterations.

        Args:
            num_train: images of the training set as the loop reads it (after filtering).
        """
        if self.max_epochs is None:
            return self
        per_epoch = self.iterations_per_epoch(num_train)
        return replace(
            self,
            max_iter=self.max_epochs * per_epoch,
            steps=tuple(step * per_epoch for step in self.steps),
            max_epochs=None,
        )

    def schedule(self) -> LrSchedule:
        """The warm-up multi-step schedule as an :class:`LrSchedule` of one-iteration "epochs"."""
        if self.max_iter is None:
            raise SslzooError(
                "solver.max_epochs: convert the schedule with SolverConfig.in_iterations(training images) first"
            )
        return LrSchedule(
            name="step",
            epochs=self.max_iter,
            iters_per_epoch=1,
            steps=tuple(float(s) for s in self.steps),
            gamma=self.gamma,
            warmup_epochs=float(self.warmup_iters),
            warmup_ratio=self.warmup_factor,
        )


@dataclass(frozen=True)
class EvalConfig:
    """The ``test`` section: ``precise_bn_iters`` [TEST.PRECISE_BN.NUM_ITER, 200; 0 = off],
    ``batch_size`` (images per process at inference), ``max_images`` (None: every test image;
    else that many, spread evenly over the split by :func:`sslzoo.data.detection.spread_positions`)."""

    precise_bn_iters: int
    batch_size: int
    max_images: int | None = schema_default("det", "test", "max_images")


@dataclass(frozen=True)
class DetectionConfig:
    """A validated detection protocol file."""

    dataset: str
    engine: str
    model: ModelConfig
    input: InputConfig
    solver: SolverConfig
    test: EvalConfig
    gpus: int  # the reference's process count (check_gpus)
    workers: int
    repeats: int  # runs with different seeds that the workflow averages (one per step call)


def load_detection_config(path: str | os.PathLike[str]) -> tuple[DetectionConfig, dict[str, Any]]:
    """Read and validate a detection protocol file (``sslzoo/schemas/detection.schema.yaml``);
    returns the config and the file's mapping as written.

    Keys: ``gpus`` (the reference's process count, :func:`~sslzoo.benchmarks.linear_protocol.check_gpus`),
    ``dataset``, ``engine``, ``model``, ``input``, ``solver``, ``test``, ``workers``, ``repeats``
    (read by the workflow, which runs the step once per repeat).
    """
    source = str(path)
    raw, cfg = read_protocol(path, "det")
    solver = build_dataclass(SolverConfig, cfg["solver"])
    if list(solver.steps) != sorted(solver.steps):
        raise SslzooError(f"{source}: solver.steps: must be increasing, got {list(solver.steps)}")
    length = solver.max_iter if solver.max_iter is not None else solver.max_epochs
    if solver.steps and solver.steps[-1] > length:
        unit = "max_iter" if solver.max_iter is not None else "max_epochs"
        raise SslzooError(
            f"{source}: solver.steps: {list(solver.steps)} go past solver.{unit} {length}; steps are in the "
            f"unit of {unit}"
        )
    if cfg["engine"] == "detectron2" and cfg["test"]["max_images"] is not None:
        raise SslzooError(
            f"{source}: test.max_images: engine detectron2 evaluates every test image; remove the key "
            "or use engine torchvision"
        )
    config = DetectionConfig(
        dataset=cfg["dataset"],
        engine=cfg["engine"],
        model=build_dataclass(ModelConfig, cfg["model"]),
        input=build_dataclass(InputConfig, cfg["input"]),
        solver=solver,
        test=build_dataclass(EvalConfig, cfg["test"]),
        gpus=check_gpus(cfg, source, solver.batch_size, "solver.batch_size"),
        workers=cfg["workers"],
        repeats=cfg["repeats"],
    )
    return config, raw


# --------------------------------------------------------------------------------------------
# Iteration-based training
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IterationSettings:
    """How long and how wide a fine-tuning run is.

    Attributes:
        max_iter: optimizer steps.
        batch_size: images per step summed over all processes (must divide by their count).
        workers: data-loading processes per process.
        checkpoint_period: steps between ``latest.pth`` writes.
    """

    max_iter: int
    batch_size: int
    workers: int
    checkpoint_period: int


def train_iterations(
    model: nn.Module,
    optimizer: Optimizer,
    dataset: Dataset,
    settings: IterationSettings,
    lr_at: Callable[[float, int], float],
    step_losses: Callable[[nn.Module, Any], dict[str, torch.Tensor]],
    work_dir: str | os.PathLike[str],
    fingerprint: dict[str, Any],
    *,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    seed: int = 0,
    ctx: DistContext | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` for ``settings.max_iter`` steps of the summed losses; resume when possible.

    Args:
        model: on ``ctx.device``, identical on every process (SyncBN already converted).
        optimizer: over its trainable parameters; each group's ``initial_lr`` (default its
            ``lr``) is the base lr given to ``lr_at``.
        dataset: indexed by ``(index, sample seed)`` pairs.
        lr_at: ``(base_lr, iteration) -> lr`` of the step taken at ``iteration`` (0-based).
        step_losses: ``(model or its DDP wrapper, collated batch) -> {name: scalar loss}``; the
            step minimises their sum.
        work_dir: ``latest.pth`` and ``train_log.jsonl``.
        fingerprint: JSON-able description of the run; a state with another one is set aside.
        collate_fn: the DataLoader's collate function.
        seed: data order, augmentation and the per-iteration reseeding.

    Returns:
        ``{"iterations", "resumed_from_iteration", "per_process_batch"}``.
    """
    ctx = ctx or DistContext()
    per_rank = per_rank_batch(settings.batch_size, ctx)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])

    def step(runner: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        losses = step_losses(runner, batch)
        return {"loss": torch.stack(list(losses.values())).sum(), **losses}

    def batches(start: int) -> DataLoader:
        return stream_loader(
            dataset, per_rank, seed, start, settings.max_iter, ctx, settings.workers, collate_fn
        )

    result = fit(
        step,
        model,
        optimizer,
        batches,
        RunDir(work_dir),
        Fingerprint({**fingerprint, "world_size": ctx.world_size}),
        total_iters=settings.max_iter,
        schedules={"lr": per_group(optimizer, lr_at)},
        checkpoint_every=settings.checkpoint_period,
        seed=seed,
        ctx=ctx,
        terms_before_lr=True,
        divergence_advice="lower the learning rate or lengthen the warm-up in the protocol file",
    )
    return {
        "iterations": result.iterations,
        "resumed_from_iteration": result.start_iteration,
        "per_process_batch": per_rank,
    }


@torch.no_grad()
def precise_bn(
    model: nn.Module,
    dataset: Dataset,
    step_losses: Callable[[nn.Module, Any], dict[str, torch.Tensor]],
    num_iters: int,
    per_rank_batch: int,
    *,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    seed: int = 0,
    ctx: DistContext | None = None,
    workers: int = 2,
) -> int:
    """Replace every BN's running statistics by their average over ``num_iters`` training batches.

    The batches are the stream after the last training iteration (seeded, so reruns agree).
    Returns the number of BN layers updated (0 when ``num_iters`` is 0 or there are none).
    """
    ctx = ctx or DistContext()
    norms = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    if num_iters <= 0 or not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: running = mean of the batch statistics seen
    loader = DataLoader(
        dataset,
        batch_size=per_rank_batch,
        collate_fn=collate_fn,
        num_workers=workers,
        sampler=IterationSampler(
            len(dataset), seed + 1, ctx.rank, ctx.world_size, per_rank_batch, 0, num_iters
        ),  # type: ignore[arg-type]
    )
    model.train()
    for step, batch in enumerate(
        tqdm(loader, desc="precise BN", file=sys.stderr, disable=not ctx.is_main, leave=False)
    ):
        seed_everything(derived_seed(seed, 10**9 + step, ctx.rank))
        step_losses(model, batch)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    return len(norms)
