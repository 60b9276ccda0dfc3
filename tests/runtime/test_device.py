"""Moving nested batches to a device, with channels-last image tensors."""

from __future__ import annotations

import torch

from sslzoo.runtime.device import move_to_device


def test_move_to_device_makes_image_batches_channels_last() -> None:
    batch = {"images": torch.randn(2, 3, 5, 5), "stacks": (torch.randn(2, 4, 3, 5, 5), 7)}
    moved = move_to_device(batch, torch.device("cpu"), channels_last=True)
    assert moved["images"].is_contiguous(memory_format=torch.channels_last)
    assert not moved["images"].is_contiguous()
    assert torch.equal(moved["images"], batch["images"])
    assert isinstance(moved["stacks"], tuple) and moved["stacks"][1] == 7
    assert moved["stacks"][0].is_contiguous()  # only 4-D tensors change layout
