"""Gathers of a tensor from every process inside a model's forward (the contrastive methods).

They read the process group torch.distributed holds (set up by
:func:`sslzoo.runtime.dist.init_distributed`), since a method's forward has no
:class:`~sslzoo.runtime.dist.DistContext`; without one (a single process) each returns its input.
Every process must pass the same shape.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """``[n, ...]`` from each process -> ``[world_size * n, ...]`` in rank order, no gradient
    (mmselfsup 0.x mmselfsup/utils/gather.py ``concat_all_gather``)."""
    _, world = rank_and_world()
    if world == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward: the sum over processes of the gradient of this process's rows."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        _, world = rank_and_world()
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rows = tensor.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        rank, _ = rank_and_world()
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[rank * ctx.rows : (rank + 1) * ctx.rows]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """``[n, ...]`` from each process -> ``[world_size * n, ...]`` in rank order, differentiable.

    The gradient that reaches this process's rows is the sum, over processes, of the gradient
    each process's loss sends to them (an all-reduce). Each process's loss being its share of a
    loss over the global batch (the mean over its own rows, against every row), DDP's mean of
    the per-process gradients is then exactly the gradient of that loss on one process holding
    the whole batch (lightly 1.6.0 lightly/utils/dist.py ``GatherLayer``). MMSelfSup 0.x
    (mmselfsup/models/utils/gather_layer.py ``GatherLayer``) passes back only this process's
    own gradient of a loss every process computes in full, which after DDP's mean is that
    gradient divided by the number of processes.
    """
    _, world = rank_and_world()
    if world == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)
