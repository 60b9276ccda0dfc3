"""The one training loop: :func:`fit`, iteration-based, with gradient accumulation, an after-step
hook, schedules of any optimizer value, periodic resume states and a JSON-lines log.

One *iteration* is one optimizer step over ``accumulate`` micro-batches; schedules, the log and
``after_step`` count these. The data comes in one of two layouts:

- epochs (``iters_per_epoch`` given): at the start of epoch ``e`` the global generators are
  reseeded from ``(seed, e, rank)`` and ``batches(e)`` gives the epoch's micro-batches; those
  left over after its last full iteration are skipped. A run resumes at an epoch start.
- a stream (``iters_per_epoch`` None): ``batches(start)`` gives the micro-batches of iterations
  ``start, start + 1, ...``, and the global generators are reseeded from
  ``(seed, iteration, rank)`` before every iteration, so a run resumes at any saved iteration.

Either way a run killed at any point and resumed from ``run_dir.latest`` reproduces the
uninterrupted one (bit-identical on CPU; on GPU up to non-deterministic kernels).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from sslzoo.errors import SslzooError
from sslzoo.runtime.dist import DistContext, all_reduce_mean, data_parallel
from sslzoo.runtime.progress import progress_bar, say
from sslzoo.runtime.run_dir import RunDir, RunIdentity
from sslzoo.runtime.seeding import derived_seed, seed_everything

# (the model, or its DDP wrapper; one micro-batch) -> {"loss": scalar to minimise, other logged scalars}
Step = Callable[[nn.Module, Any], Mapping[str, torch.Tensor]]
Schedule = Callable[[int], float]


@dataclass(frozen=True)
class FitResult:
    """Where a :func:`fit` started and ended: iterations done in total, the iteration (and
    epoch, 0 for a stream) it resumed from."""

    iterations: int
    start_iteration: int
    start_epoch: int


def fit(
    step: Step,
    model: nn.Module,
    optimizer: Optimizer,
    batches: Callable[[int], Iterable[Any]],
    run_dir: RunDir,
    identity: RunIdentity,
    *,
    total_iters: int,
    iters_per_epoch: int | None = None,
    schedules: Mapping[str, Sequence[Schedule]] | None = None,
    accumulate: int = 1,
    before_step: Callable[[int], None] | None = None,
    after_step: Callable[[int], None] | None = None,
    at_epoch_end: Callable[[int], None] | None = None,
    checkpoint_every: int | None = None,
    seed: int = 0,
    ctx: DistContext | None = None,
    state_module: nn.Module | None = None,
    on_resume: Callable[[Mapping[str, Any]], None] | None = None,
    terms_before_lr: bool = False,
    divergence_advice: str = "lower the learning rate",
) -> FitResult:
    """Train ``model`` for ``total_iters`` iterations of ``step``'s ``"loss"``; resume when possible.

    Args:
        step: ``(runner, micro-batch) -> {"loss": scalar, name: scalar, ...}``; ``runner`` is
            ``model`` or its DDP wrapper. The gradient is that of ``loss / accumulate`` summed
            over the micro-batches; every value is averaged the same way and over processes
            for the log.
        model: on ``ctx.device``, identical on every process.
        optimizer: over ``model``'s trainable parameters.
        batches: the micro-batches of epoch ``e`` (epochs) or from iteration ``i`` on (stream).
        run_dir: ``latest.pth`` and ``train_log.jsonl``.
        identity: compared with a saved state before resuming it; its entries are saved too.
        total_iters: iterations of the whole run (epochs x ``iters_per_epoch`` for epochs).
        iters_per_epoch: the epoch layout (see the module docstring); None for a stream.
        schedules: optimizer group key (``"lr"``, ...) -> one ``iteration -> value`` per group
            (:func:`~sslzoo.runtime.schedules.per_group`), set before each iteration's first
            forward; the log's ``lr`` is the first group's.
        accumulate: micro-batches per iteration (DDP synchronises the last one only).
        before_step: called with the iterations done before every optimizer step, after its
            backward passes (and DDP's gradient all-reduce): SwAV drops the gradients of its
            frozen prototypes there.
        after_step: called with the iterations done after every optimizer step (BYOL's EMA).
        at_epoch_end: epochs only: called on every process with the epoch just finished
            (1-based) before that epoch's resume state is written, so a resume state never
            runs ahead of what it saved (a run killed in between redoes the epoch and calls it
            again); the pretraining keeps its snapshot checkpoints so.
        checkpoint_every: iterations between ``latest.pth`` writes (default: one epoch, or only
            the end for a stream); the last iteration always writes one.
        seed: the reseeding of the global generators (with the epoch or iteration and rank).
        ctx: this process's place in the process group (default: one CPU process).
        state_module: the part of ``model`` saved and restored (default all of it).
        on_resume: called with a saved state after the weights and optimizer are restored.
        terms_before_lr: log line order ``iter, loss, terms, lr, time`` instead of
            ``iter, loss, lr, time, terms`` (epochs put ``epoch`` first).
        divergence_advice: what the error for a non-finite loss suggests.
    """
    ctx = ctx or DistContext()
    state_module = state_module or model
    per_epoch = iters_per_epoch or total_iters
    epochs = total_iters // per_epoch
    checkpoint_every = checkpoint_every or per_epoch
    if iters_per_epoch and checkpoint_every % iters_per_epoch:
        raise ValueError("with epochs, resume states are written at epoch ends only")

    iteration = _resume(
        run_dir, identity, state_module, optimizer, ctx, on_resume, total_iters, iters_per_epoch
    )
    start_iteration = iteration
    start_epoch = iteration // per_epoch if iters_per_epoch else 0
    runner = data_parallel(model, ctx)
    with run_dir.open_log(ctx) as log:
        for epoch in range(start_epoch, epochs):
            if iters_per_epoch:
                seed_everything(derived_seed(seed, epoch, ctx.rank))
                source = batches(epoch)
            else:
                source = batches(iteration)
            runner.train()
            epoch_start, epoch_end = epoch * per_epoch, min((epoch + 1) * per_epoch, total_iters)
            desc = f"epoch {epoch + 1}/{epochs}" if iters_per_epoch else "train"
            bar = progress_bar(ctx, epoch_end - epoch_start, desc, iteration - epoch_start, leave=False)
            sums: dict[str, torch.Tensor] = {}
            micro = 0
            tick = time.perf_counter()
            for batch in source:
                if micro == 0:
                    if not iters_per_epoch:
                        seed_everything(derived_seed(seed, iteration, ctx.rank))
                    lr = _set_schedules(optimizer, schedules or {}, iteration)
                    optimizer.zero_grad(set_to_none=True)
                micro += 1
                stepping = micro == accumulate
                sync = nullcontext() if stepping or not ctx.distributed else runner.no_sync()  # type: ignore[operator]
                with sync:
                    outputs = step(runner, batch)
                    (outputs["loss"] / accumulate).backward()
                for key, value in outputs.items():
                    value = torch.as_tensor(value).detach().float().reshape(())
                    sums[key] = sums.get(key, 0) + value / accumulate
                if not stepping:
                    continue
                if before_step is not None:
                    before_step(iteration)
                optimizer.step()
                iteration += 1
                if after_step is not None:
                    after_step(iteration)
                names = ["loss"] + [key for key in sums if key != "loss"]
                means = all_reduce_mean(torch.stack([sums[key] for key in names]), ctx).tolist()
                sums, micro = {}, 0
                if not math.isfinite(means[0]):
                    where = (
                        f"epoch {epoch + 1}, iteration {iteration}"
                        if iters_per_epoch
                        else f"iteration {iteration}"
                    )
                    raise SslzooError(f"loss is {means[0]} at {where}; {divergence_advice}")
                now = time.perf_counter()
                terms = dict(zip(names[1:], means[1:], strict=True))
                head = {"epoch": epoch + 1} if iters_per_epoch else {}
                record = {**head, "iter": iteration, "loss": means[0], **(terms if terms_before_lr else {})}
                record.update({"lr": lr, "time": round(now - tick, 4), **({} if terms_before_lr else terms)})
                tick = now
                if log is not None:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{means[0]:.4f}", lr=f"{lr:.3g}")
                if iters_per_epoch and iteration == epoch_end and at_epoch_end is not None:
                    at_epoch_end(epoch + 1)
                if iteration % checkpoint_every == 0 or iteration == total_iters:
                    progress = {"epoch": iteration // per_epoch} if iters_per_epoch else {}
                    state = {"state_dict": state_module.state_dict(), "optimizer": optimizer.state_dict()}
                    run_dir.save({**state, **progress, "iteration": iteration, **identity.entries()}, ctx)
                    if iters_per_epoch:
                        say(
                            ctx,
                            f"epoch {epoch + 1}/{epochs} done ({iteration} iterations); saved {run_dir.latest}",
                        )
                if iteration == epoch_end:
                    break
            bar.close()
    return FitResult(iterations=iteration, start_iteration=start_iteration, start_epoch=start_epoch)


def _resume(
    run_dir: RunDir,
    identity: RunIdentity,
    state_module: nn.Module,
    optimizer: Optimizer,
    ctx: DistContext,
    on_resume: Callable[[Mapping[str, Any]], None] | None,
    total_iters: int,
    iters_per_epoch: int | None,
) -> int:
    """Restore the run's saved state when there is one (else start at 0) and cut the log to it;
    returns the iterations already done."""
    iteration = 0
    state = run_dir.resume_state(identity, ctx)
    if state is not None:
        state_module.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        iteration = int(state["iteration"])
        if on_resume is not None:
            on_resume(state)
        where = f"iteration {iteration}/{total_iters}"
        if iters_per_epoch:
            where = f"epoch {iteration // iters_per_epoch}/{total_iters // iters_per_epoch}, iteration {iteration}"
        say(ctx, f"resuming from {run_dir.latest}: {where}")
    run_dir.truncate_log(iteration, ctx)
    return iteration


def _set_schedules(
    optimizer: Optimizer, schedules: Mapping[str, Sequence[Schedule]], iteration: int
) -> float:
    """Set every scheduled group value for ``iteration``; returns the first group's lr."""
    for key, per_group in schedules.items():
        for group, schedule in zip(optimizer.param_groups, per_group, strict=True):
            group[key] = schedule(iteration)
    return optimizer.param_groups[0]["lr"]
