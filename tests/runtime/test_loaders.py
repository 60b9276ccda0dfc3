"""A method's epoch order split over processes like the shuffle, and the extraction shards put
back in dataset order."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from sslzoo.errors import SslzooError
from sslzoo.runtime.dist import DistContext
from sslzoo.runtime.loaders import GivenOrderSampler, epoch_loader, shard_loader, unshard


class Positions(Dataset):
    """``(i, i)``: each sample is its own index."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[int, int]:
        return index, index


def test_a_given_order_is_read_as_is_by_one_process() -> None:
    order = [4, 4, 0, 9, 2, 7, 1, 3, 3, 8]
    assert list(GivenOrderSampler(order)) == order


def test_ranks_take_a_given_order_strided_and_padded_by_wrapping() -> None:
    order = [4, 4, 0, 9, 2, 7, 1]
    assert list(GivenOrderSampler(order, rank=0, world_size=2)) == [4, 0, 2, 1]
    assert list(GivenOrderSampler(order, rank=1, world_size=2)) == [4, 9, 7, 4]  # the 8th is the 1st again
    assert len(GivenOrderSampler(order, rank=1, world_size=2)) == 4


def test_epoch_loader_reads_the_given_order_and_refuses_a_wrong_length() -> None:
    order = [5, 5, 0, 1, 2, 3, 4, 6]
    batches = epoch_loader(Positions(8), 4, seed=0, epoch=0, ctx=DistContext(), workers=0, order=order)
    assert [batch[0].tolist() for batch in batches] == [order[:4], order[4:]]
    with pytest.raises(SslzooError, match="7 indices for a dataset of 8"):
        epoch_loader(Positions(8), 4, seed=0, epoch=0, ctx=DistContext(), workers=0, order=order[:7])


@pytest.mark.parametrize(("size", "world_size"), [(10, 1), (10, 3), (7, 2), (2, 4)])
def test_extraction_shards_put_back_in_order_are_the_dataset(size: int, world_size: int) -> None:
    shards = []
    for rank in range(world_size):
        loader = shard_loader(Positions(size), 3, DistContext(rank=rank, world_size=world_size), workers=0)
        shards.append(torch.cat([images for images, _ in loader]))
    assert len({len(shard) for shard in shards}) == 1  # every process the same count (all_gather)
    gathered = torch.cat(shards)  # all_gather_tensor's rank order
    assert unshard(gathered, size, world_size).tolist() == list(range(size))
    rows = unshard(torch.stack([gathered, -gathered], dim=1), size, world_size)
    assert rows.tolist() == [[i, -i] for i in range(size)]
