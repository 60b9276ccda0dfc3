"""Learning-rate schedules, evaluated per iteration, as mmcv's ``LrUpdaterHook`` (mmcv 1.x
``mmcv/runner/hooks/lr_updater.py``) with ``warmup='linear'`` and ``warmup_by_epoch=True``,
the form every mmselfsup 0.x pretraining config uses.

With ``i`` the global iteration (optimizer steps already taken, from 0), ``N`` the iterations
per epoch, ``E`` the total epochs and ``base`` a parameter group's initial lr:

- progress ``p`` in epochs: ``floor(i / N)`` when ``by_epoch`` (mmcv's default: the regular lr
  changes only at epoch boundaries), else ``i / N`` (changes every iteration);
- step: ``regular = max(base * gamma ** #{s in steps : p >= s}, min_lr)``;
- cosine: ``regular = min_lr + (base - min_lr) * (1 + cos(pi * p / E)) / 2``;
- linear warm-up over ``W = round(warmup_epochs * N)`` iterations: for ``i < W``
  ``lr = regular * (1 - (1 - i / W) * (1 - warmup_ratio))``, so it starts at
  ``warmup_ratio * regular`` and reaches ``regular`` at ``i = W``; for ``i >= W`` ``lr = regular``.

Also the EMA momentum schedule of the BYOL family (:func:`cosine_momentum`, mmselfsup 0.x
mmselfsup/core/hooks/momentum_update_hook.py), read by :meth:`MomentumPair.after_step
<sslzoo.models.momentum_pair.MomentumPair.after_step>`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from torch.optim import Optimizer


@dataclass(frozen=True)
class LrSchedule:
    """The lr of every iteration of a run (see the module docstring for the formulas)."""

    name: str
    epochs: int
    iters_per_epoch: int
    steps: tuple[float, ...] = ()
    gamma: float = 0.1
    min_lr: float = 0.0
    by_epoch: bool = True
    warmup_epochs: float = 0.0
    warmup_ratio: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in ("step", "cosine"):
            raise ValueError(f"schedule name must be step or cosine, got {self.name!r}")
        if self.iters_per_epoch < 1 or self.epochs < 1:
            raise ValueError("a schedule needs at least one epoch of at least one iteration")

    @property
    def total_iters(self) -> int:
        return self.epochs * self.iters_per_epoch

    @property
    def warmup_iters(self) -> int:
        return round(self.warmup_epochs * self.iters_per_epoch)

    def progress(self, iteration: int) -> float:
        """Epochs done at ``iteration``: whole epochs when ``by_epoch``, else fractional."""
        if self.by_epoch:
            return float(iteration // self.iters_per_epoch)
        return iteration / self.iters_per_epoch

    def regular_lr(self, base_lr: float, iteration: int) -> float:
        """The lr without warm-up."""
        progress = self.progress(iteration)
        if self.name == "step":
            decays = sum(1 for step in self.steps if progress >= step)
            return max(base_lr * self.gamma**decays, self.min_lr)
        return (
            self.min_lr + (base_lr - self.min_lr) * (1.0 + math.cos(math.pi * progress / self.epochs)) / 2.0
        )

    def lr(self, base_lr: float, iteration: int) -> float:
        """The lr for the optimizer step taken at ``iteration`` (0-based, global)."""
        regular = self.regular_lr(base_lr, iteration)
        warmup = self.warmup_iters
        if iteration < warmup:
            return regular * (1.0 - (1.0 - iteration / warmup) * (1.0 - self.warmup_ratio))
        return regular


def build_schedule(schedule_cfg: dict[str, Any], epochs: int, iters_per_epoch: int) -> LrSchedule:
    """An :class:`LrSchedule` from ``cfg["train"]["schedule"]`` (defaults filled by the schema)."""
    return LrSchedule(
        name=schedule_cfg["name"],
        epochs=epochs,
        iters_per_epoch=iters_per_epoch,
        steps=tuple(float(s) for s in schedule_cfg.get("steps", ())),
        gamma=float(schedule_cfg.get("gamma", 0.1)),
        min_lr=float(schedule_cfg.get("min_lr", 0.0)),
        by_epoch=bool(schedule_cfg.get("by_epoch", True)),
        warmup_epochs=float(schedule_cfg.get("warmup_epochs", 0.0)),
        warmup_ratio=float(schedule_cfg.get("warmup_ratio", 0.1)),
    )


def apply_lr(optimizer: Optimizer, schedule: LrSchedule, iteration: int) -> float:
    """Set every group's lr from its ``initial_lr`` for ``iteration`` (a ``fix_lr`` group keeps
    its ``initial_lr``, as in :func:`per_group`); return the first group's."""
    for group, lr_at in zip(optimizer.param_groups, per_group(optimizer, schedule.lr), strict=True):
        group["lr"] = lr_at(iteration)
    return optimizer.param_groups[0]["lr"]


def _constant(value: float, iteration: int) -> float:
    return value


def per_group(
    optimizer: Optimizer, value_at: Callable[[float, int], float], base: str = "initial_lr"
) -> list[Callable[[int], float]]:
    """One ``iteration -> value`` schedule per parameter group: ``value_at(group[base], iteration)``
    (e.g. ``per_group(optimizer, schedule.lr)``, the schedules of :func:`sslzoo.runtime.loop.fit`).

    A group carrying ``fix_lr=True`` keeps ``group[base]`` at every iteration: SimSiam's predictor
    (mmselfsup 0.x configs/selfsup/simsiam/simsiam_resnet50_8xb32-coslr-200e_in1k.py
    ``paramwise_options={'predictor': dict(fix_lr=True)}``, whose lr
    mmselfsup/core/hooks/simsiam_hook.py ``SimSiamHook`` resets to the base lr after the lr
    updater at every epoch start)."""
    return [
        partial(_constant if group.get("fix_lr", False) else value_at, group[base])
        for group in optimizer.param_groups
    ]


def cosine_momentum(base_momentum: float, progress: float) -> float:
    """``m = 1 - (1 - m0) (cos(pi progress) + 1) / 2``: ``m0`` at progress 0, 1 at progress 1."""
    progress = min(max(float(progress), 0.0), 1.0)
    return 1.0 - (1.0 - base_momentum) * (math.cos(math.pi * progress) + 1.0) / 2.0
