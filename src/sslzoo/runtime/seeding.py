"""Seeds and samplers: the randomness of a training job as a function of integers only.

:func:`derived_seed` mixes ``(seed, epoch, rank, ...)`` into one seed, :func:`seed_everything`
seeds the global generators with it, and :class:`EpochSampler` orders an epoch's samples by
``(seed, epoch)`` alone. A resumed run needs no generator state: the training loop reseeds at
every epoch (or iteration) start.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def derived_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (numpy SeedSequence), e.g. ``(seed, epoch, rank)``."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class EpochSampler(Sampler[int]):
    """The indices one process reads in one epoch.

    A permutation of ``range(size)`` seeded by ``(seed, epoch)`` only, padded by wrapping to a
    multiple of ``world_size``, of which rank ``r`` takes positions ``r, r + world_size, ...``
    (the layout of ``torch.utils.data.DistributedSampler``). The first ``k * world_size``
    positions of the permutation are thus the first ``k`` samples of every rank together: a
    world of 2 with batch ``b`` reads the same samples per step as one process with batch ``2b``.
    """

    def __init__(self, size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed, self.epoch, self.rank, self.world_size = size, seed, epoch, rank, world_size
        self.per_rank = math.ceil(size / world_size)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))
        order = torch.randperm(self.size, generator=generator).tolist()
        padded = self.per_rank * self.world_size
        order += order[: padded - len(order)]
        return iter(order[self.rank : padded : self.world_size])

    def __len__(self) -> int:
        return self.per_rank
