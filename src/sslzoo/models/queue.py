"""MoCo's dictionary of negative keys: a first-in first-out queue of L2-normalised key vectors.

He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020,
section 3.2, as mmselfsup 0.x mmselfsup/models/algorithms/moco.py keeps it: a ``[dim, length]``
buffer of random unit columns at the start and a pointer; each iteration's keys (gathered from
every process) overwrite the oldest columns. Both are buffers, so a checkpoint carries the queue
and a resumed run continues with the same negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KeyQueue(nn.Module):
    """``queue [dim, length]`` (unit columns) and ``ptr`` (int64 ``[1]``, the next column to write).

    Args:
        dim: key dimension (the neck's output).
        length: number of keys held (``queue_len``, 65,536 in MoCo).
    """

    queue: torch.Tensor
    ptr: torch.Tensor

    def __init__(self, dim: int, length: int) -> None:
        super().__init__()
        if dim < 1 or length < 1:
            raise ValueError(f"a key queue needs dim and length of at least 1, got {dim} and {length}")
        self.register_buffer("queue", F.normalize(torch.randn(dim, length), dim=0))
        self.register_buffer("ptr", torch.zeros(1, dtype=torch.long))

    @property
    def length(self) -> int:
        return self.queue.shape[1]

    def negatives(self) -> torch.Tensor:
        """The keys held now, ``[dim, length]``, detached (a copy: the queue changes after the loss)."""
        return self.queue.clone().detach()

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` ``[n, dim]`` (n <= length) over the ``n`` oldest columns and advance the
        pointer by ``n`` modulo ``length``.

        The reference requires ``length % n == 0`` (its keys then never wrap around the end);
        here column ``(ptr + i) mod length`` takes key ``i``, the same thing when it holds.
        """
        n = keys.shape[0]
        if n > self.length:
            raise ValueError(f"{n} keys do not fit a queue of {self.length}")
        ptr = int(self.ptr.item())
        columns = (ptr + torch.arange(n, device=self.queue.device)) % self.length
        self.queue[:, columns] = keys.detach().to(self.queue.dtype).t()
        self.ptr[0] = (ptr + n) % self.length
