"""MoCo's key queue: random unit columns at the start, first in first out, pointer wrap-around,
state in the state dict."""

from __future__ import annotations

import pytest
import torch

from sslzoo.models.queue import KeyQueue


def test_starts_with_unit_columns_and_the_pointer_at_zero() -> None:
    queue = KeyQueue(dim=4, length=6)
    assert queue.queue.shape == (4, 6)
    torch.testing.assert_close(queue.queue.norm(dim=0), torch.ones(6))
    assert queue.ptr.tolist() == [0] and queue.ptr.dtype == torch.long
    assert set(queue.state_dict()) == {"queue", "ptr"}


def test_enqueue_overwrites_the_oldest_keys_in_order() -> None:
    queue = KeyQueue(dim=2, length=6)
    start = queue.queue.clone()
    first = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    queue.enqueue(first)
    assert queue.ptr.tolist() == [2]
    assert queue.queue[:, :2].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert torch.equal(queue.queue[:, 2:], start[:, 2:])
    second = torch.tensor([[0.6, 0.8], [-0.8, 0.6], [0.0, -1.0]])
    queue.enqueue(second)
    assert queue.ptr.tolist() == [5]
    # columns: [first0, first1, second0, second1, second2, start5]
    expected = torch.cat([first.t(), second.t(), start[:, 5:]], dim=1)
    assert torch.equal(queue.queue, expected)
    # three more keys wrap around: column 5, then 0 and 1 (the oldest) are overwritten
    third = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    queue.enqueue(third)
    assert queue.ptr.tolist() == [2]
    assert queue.queue[:, 5].tolist() == [1.0, 1.0]
    assert queue.queue[:, :2].tolist() == [[2.0, 3.0], [2.0, 3.0]]
    assert torch.equal(queue.queue[:, 2:5], second.t())


def test_a_batch_dividing_the_length_cycles_back_to_zero() -> None:
    """The reference's case (queue_len % batch == 0): after length / n batches the pointer is 0
    again and the queue holds exactly the last length keys, oldest first."""
    queue = KeyQueue(dim=3, length=8)
    keys = [torch.randn(4, 3) for _ in range(3)]
    for batch in keys:
        queue.enqueue(batch)
    assert queue.ptr.tolist() == [4]
    assert torch.equal(queue.queue, torch.cat([keys[2], keys[1]]).t())


def test_negatives_are_a_detached_copy() -> None:
    queue = KeyQueue(dim=2, length=4)
    negatives = queue.negatives()
    queue.enqueue(torch.ones(2, 2))
    assert not torch.equal(negatives, queue.queue) and not negatives.requires_grad


def test_more_keys_than_the_queue_holds_are_refused() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        KeyQueue(dim=2, length=3).enqueue(torch.zeros(4, 2))
