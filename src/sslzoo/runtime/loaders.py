"""The data loaders of the training loop (:func:`sslzoo.runtime.loop.fit`), seeded by integers.

- epoch-based (:func:`epoch_loader`): epoch ``e`` reads :class:`~sslzoo.runtime.seeding.EpochSampler`
  ``(seed, e)`` (or an order the method chose for the epoch, :class:`GivenOrderSampler`) in full
  batches, its workers seeded from ``(seed, e, rank)``;
- iteration-based (:func:`stream_loader`): the sample stream of :class:`IterationSampler` from a
  given iteration on, each sample carrying its own augmentation seed;
- extraction (:func:`shard_loader`, :func:`unshard`): every sample once, in dataset order, split
  over the processes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from sslzoo.errors import SslzooError
from sslzoo.runtime.dist import DistContext
from sslzoo.runtime.seeding import EpochSampler, derived_seed


def per_rank_batch(total_batch: int, ctx: DistContext) -> int:
    """Each process's share of a batch of ``total_batch`` samples over all processes."""
    if total_batch % ctx.world_size:
        raise SslzooError(
            f"batch_size {total_batch} (the total over processes) does not divide by the "
            f"{ctx.world_size} processes; change it in the protocol file or the process count"
        )
    return total_batch // ctx.world_size


def batches_per_epoch(size: int, per_rank_batch: int, ctx: DistContext) -> int:
    """Full batches of ``per_rank_batch`` samples in one process's share of an epoch."""
    return len(EpochSampler(size, 0, 0, ctx.rank, ctx.world_size)) // per_rank_batch


class GivenOrderSampler(Sampler[int]):
    """One process's share of a given epoch order (e.g. DeepCluster's uniform sampling over
    clusters): ``order`` (all processes' samples) padded by wrapping to a multiple of
    ``world_size``, of which rank ``r`` takes positions ``r, r + world_size, ...``, the layout of
    :class:`~sslzoo.runtime.seeding.EpochSampler`."""

    def __init__(self, order: Sequence[int], rank: int = 0, world_size: int = 1) -> None:
        self.order, self.rank, self.world_size = [int(i) for i in order], rank, world_size
        self.per_rank = math.ceil(len(self.order) / world_size)

    def __iter__(self) -> Iterator[int]:
        padded = self.per_rank * self.world_size
        order = self.order + self.order[: padded - len(self.order)]
        return iter(order[self.rank : padded : self.world_size])

    def __len__(self) -> int:
        return self.per_rank


def epoch_loader(
    dataset: Dataset,
    per_rank_batch: int,
    seed: int,
    epoch: int,
    ctx: DistContext,
    workers: int,
    order: Sequence[int] | None = None,
) -> DataLoader:
    """This process's batches of epoch ``epoch`` (the last incomplete one dropped); the worker
    seeds come from ``(seed, epoch, rank)``, the seed the loop gives the global generators.

    ``order`` (the epoch's dataset indices over all processes, as many as the dataset has, so
    that every epoch has the same iterations) replaces the shuffle of ``(seed, epoch)``."""
    size = len(dataset)  # type: ignore[arg-type]
    if order is not None and len(order) != size:
        raise SslzooError(
            f"epoch {epoch}: the method's sample order has {len(order)} indices for a dataset of {size}; "
            "its before_epoch must return one index per sample"
        )
    sampler: Sampler[int] = (
        EpochSampler(size, seed, epoch, ctx.rank, ctx.world_size)
        if order is None
        else GivenOrderSampler(order, ctx.rank, ctx.world_size)
    )
    return DataLoader(
        dataset,
        batch_size=per_rank_batch,
        sampler=sampler,
        num_workers=workers,
        drop_last=True,
        pin_memory=ctx.device.type == "cuda",
        generator=torch.Generator().manual_seed(derived_seed(seed, epoch, ctx.rank)),
    )


class IterationSampler(Sampler[tuple[int, int]]):
    """The ``(index, sample seed)`` pairs one process reads from ``start_iter`` to ``max_iter``.

    Position p of a process's stream is element ``p % n`` of its share of epoch ``p // n``
    (:class:`EpochSampler` of that epoch, ``n`` = its length), so a batch may span two epochs
    and the stream does not depend on where a run was resumed. The sample seed is derived from
    ``(seed, rank, p)``.
    """

    def __init__(
        self,
        size: int,
        seed: int,
        rank: int,
        world_size: int,
        per_rank_batch: int,
        start_iter: int,
        max_iter: int,
    ) -> None:
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.per_rank_batch, self.start_iter, self.max_iter = per_rank_batch, start_iter, max_iter
        self.per_epoch = len(EpochSampler(size, seed, 0, rank, world_size))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, order = -1, []
        for position in range(self.start_iter * self.per_rank_batch, self.max_iter * self.per_rank_batch):
            this_epoch, offset = divmod(position, self.per_epoch)
            if this_epoch != epoch:
                epoch = this_epoch
                order = list(EpochSampler(self.size, self.seed, epoch, self.rank, self.world_size))
            yield order[offset], derived_seed(self.seed, self.rank, position)

    def __len__(self) -> int:
        return max(self.max_iter - self.start_iter, 0) * self.per_rank_batch


def stream_loader(
    dataset: Dataset,
    per_rank_batch: int,
    seed: int,
    start_iter: int,
    max_iter: int,
    ctx: DistContext,
    workers: int,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> DataLoader:
    """This process's batches of iterations ``start_iter .. max_iter - 1`` (:class:`IterationSampler`);
    ``dataset`` is indexed by ``(index, sample seed)`` pairs."""
    return DataLoader(
        dataset,
        batch_size=per_rank_batch,
        sampler=IterationSampler(
            len(dataset),  # type: ignore[arg-type]
            seed,
            ctx.rank,
            ctx.world_size,
            per_rank_batch,
            start_iter,
            max_iter,
        ),
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=ctx.device.type == "cuda",
    )


def shard_loader(dataset: Dataset, per_rank_batch: int, ctx: DistContext, workers: int) -> DataLoader:
    """This process's strided shard of ``dataset`` in dataset order, for extraction: indices
    ``rank, rank + world_size, ...``, padded by wrapping so that every process reads
    ``ceil(N / world_size)`` samples; :func:`unshard` puts the gathered results back in order."""
    size = len(dataset)  # type: ignore[arg-type]
    per_rank = math.ceil(size / ctx.world_size)
    indices = [(ctx.rank + i * ctx.world_size) % size for i in range(per_rank)]
    return DataLoader(
        Subset(dataset, indices),
        batch_size=per_rank_batch,
        shuffle=False,
        num_workers=workers,
        pin_memory=ctx.device.type == "cuda",
    )


def unshard(gathered: torch.Tensor, size: int, world_size: int) -> torch.Tensor:
    """Rows ``[world_size * per_rank, ...]`` gathered in rank order from :func:`shard_loader`
    shards -> the ``[size, ...]`` rows in dataset order (the padding dropped)."""
    per_rank = gathered.shape[0] // world_size
    rows = gathered.reshape(world_size, per_rank, *gathered.shape[1:]).transpose(0, 1)
    return rows.reshape(world_size * per_rank, *gathered.shape[1:])[:size]
