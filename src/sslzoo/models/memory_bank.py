"""A memory bank: one running-average, L2-normalised feature per training sample.

Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018
(arXiv:1805.01978), Sec. 3.2-3.3, as MMSelfSup 0.x builds it
(mmselfsup/models/memories/simple_memory.py ``SimpleMemory``, mmselfsup/utils/alias_multinomial.py):

- ``features`` ``[length, dim]``: starts as standard normal rows, each L2-normalised
  (``F.normalize(torch.randn(length, dim))``), drawn from torch's global generator when the bank
  is built (the pretrain step seeds it first, so every process builds the same bank);
- :meth:`MemoryBank.update`: for the batch's samples ``i`` with new features ``f_i``
  ``v_i <- normalize((1 - m) v_i + m normalize(f_i))``, ``m`` the reference's ``momentum``
  (the weight of the NEW feature; the paper's 0.5 makes the two readings equal). Under DDP the
  indices and features of every process are gathered first, so every process writes the same
  rows and the banks stay equal;
- :meth:`MemoryBank.sample`: negatives drawn uniformly with replacement from all ``length``
  rows (the reference's alias-method multinomial over ``torch.ones(length)`` reduces to a uniform
  integer draw), from torch's global generator on the bank's device, which the training loop
  reseeds every epoch; ``exclude`` redraws the draws that hit the sample itself
  (``ensure_neg``).

The bank is a registered buffer: it is in ``state_dict()`` and so in every resume state.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from sslzoo.errors import SslzooError
from sslzoo.runtime.dist import DistContext, all_gather_tensor


def _process_group() -> DistContext:
    """This process's place in the process group (a single process when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size())
    return DistContext()


class MemoryBank(nn.Module):
    """``length`` L2-normalised ``dim``-d features, updated by momentum at the batch's indices.

    Args:
        length: rows, one per training sample (the dataset size; the reference's ``length``).
        dim: feature size (``feat_dim``).
        momentum: ``m``, the weight of the new feature in :meth:`update`, in [0, 1].
    """

    features: torch.Tensor

    def __init__(self, length: int, dim: int, momentum: float) -> None:
        super().__init__()
        if length < 1 or dim < 1:
            raise SslzooError(f"memory bank: length {length} and dim {dim} must be at least 1")
        if not 0.0 <= momentum <= 1.0:
            raise SslzooError(f"memory bank: momentum {momentum} must be in [0, 1]")
        self.length, self.dim, self.momentum = int(length), int(dim), float(momentum)
        self.register_buffer("features", F.normalize(torch.randn(self.length, self.dim), dim=1))

    def check_indices(self, indices: torch.Tensor) -> None:
        """Raise :class:`SslzooError` when a sample index lies outside the bank."""
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.length):
            raise SslzooError(
                f"memory bank of {self.length} rows got sample index {int(indices.max())}: the bank "
                "needs one row per training image; set the model config's memory-bank length to the "
                "size of the training set"
            )

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Rows ``indices`` ``[N]`` -> ``[N, dim]`` (a copy, no gradient)."""
        self.check_indices(indices)
        return self.features.index_select(0, indices).detach()

    def sample(self, count: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Uniform row indices, with replacement.

        Args:
            count: draws in total; with ``exclude`` a multiple of its length.
            exclude: ``[B]``: draw ``[B, count / B]`` and redraw, until none is left, every draw
                of row ``b`` equal to ``exclude[b]`` (needs ``length >= 2``).

        Returns:
            int64 ``[count]`` (row ``b``'s draws are ``[b * count / B, (b + 1) * count / B)``).
        """
        device = self.features.device
        drawn = torch.randint(self.length, (count,), device=device)
        if exclude is None:
            return drawn
        if self.length < 2 or count % max(exclude.numel(), 1):
            raise ValueError(f"cannot draw {count} negatives avoiding each of {exclude.numel()} rows")
        drawn = drawn.view(exclude.numel(), -1)
        wrong = drawn == exclude.view(-1, 1).to(device)
        while bool(wrong.any()):
            drawn[wrong] = torch.randint(self.length, (int(wrong.sum()),), device=device)
            wrong = drawn == exclude.view(-1, 1).to(device)
        return drawn.flatten()

    @torch.no_grad()
    def update(self, indices: torch.Tensor, features: torch.Tensor) -> None:
        """``v_i <- normalize((1 - m) v_i + m normalize(f_i))`` for ``indices`` ``[B]`` and
        ``features`` ``[B, dim]``, gathered over the processes of a DDP run first."""
        group = _process_group()
        indices = all_gather_tensor(indices.to(self.features.device), group)
        new = all_gather_tensor(F.normalize(features.detach().float(), dim=1), group)
        self.check_indices(indices)
        mixed = (1.0 - self.momentum) * self.features.index_select(0, indices) + self.momentum * new
        self.features.index_copy_(0, indices, F.normalize(mixed, dim=1))
