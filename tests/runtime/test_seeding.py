"""The epoch sampler: the order depends on (seed, epoch) only, and ranks split it like one
process's double batch."""

from __future__ import annotations

from sslzoo.runtime.seeding import EpochSampler


def test_two_ranks_read_the_samples_of_one_double_batch() -> None:
    single = list(EpochSampler(10, seed=4, epoch=3))
    rank0 = list(EpochSampler(10, seed=4, epoch=3, rank=0, world_size=2))
    rank1 = list(EpochSampler(10, seed=4, epoch=3, rank=1, world_size=2))
    assert sorted(rank0[:2] + rank1[:2]) == sorted(single[:4])
    assert sorted(rank0 + rank1) == list(range(10))
    assert single != list(EpochSampler(10, seed=4, epoch=4))
