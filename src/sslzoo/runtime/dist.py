"""Process-group set-up for torchrun/DDP: gloo on CPU, nccl on GPU, one plain process otherwise.

``torchrun --standalone --nproc-per-node N -m sslzoo <step>`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them. Without
them (or with ``WORLD_SIZE=1``) the step runs as one process and no process group is created,
so every helper here also works single-process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files, logs and shows the progress bar."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def init_distributed(use_cuda: bool | None = None, timeout_minutes: float = 30.0) -> DistContext:
    """Join the process group torchrun describes in the environment, or run alone.

    The device is ``cuda:<LOCAL_RANK>`` (backend nccl) when ``use_cuda`` is true, or None and
    CUDA is available; else the CPU (backend gloo).
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if use_cuda is None:
        use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            init_method="env://",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(minutes=timeout_minutes),
        )
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def barrier(ctx: DistContext) -> None:
    """Wait for every process (no-op single-process)."""
    if ctx.distributed:
        if ctx.device.type == "cuda":
            dist.barrier(device_ids=[ctx.device.index])
        else:
            dist.barrier()


def all_reduce_mean(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The element-wise mean of ``tensor`` over processes (a copy; the input is unchanged)."""
    out = tensor.detach().clone()
    if ctx.distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= ctx.world_size
    return out


def all_gather_tensor(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Concatenate ``tensor`` ``[n, ...]`` from every process along dim 0, in rank order.

    Every process must pass the same shape. Returns ``[world_size * n, ...]``.
    """
    if not ctx.distributed:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(ctx.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def all_gather_object(obj: Any, ctx: DistContext) -> list[Any]:
    """Every process's picklable ``obj``, in rank order (``[obj]`` single-process)."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (BN running statistics) to every process (no-op single-process)."""
    if ctx.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)


def data_parallel(model: nn.Module, ctx: DistContext) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel when there are several processes, else itself."""
    if not ctx.distributed:
        return model
    return DistributedDataParallel(
        model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
    )


def cleanup() -> None:
    """Leave the process group (no-op when none was created)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
