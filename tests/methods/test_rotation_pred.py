"""Rotation-Pred: the four rotations and their labels, and the loss against a hand-written
cross-entropy on the logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sslzoo.errors import SslzooError
from sslzoo.methods.rotation_pred import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RotationPred,
    four_rotations,
    rotation_labels,
)


def make_cfg(image_size: int = 32, scale: list[float] | None = None, **method_args: object) -> dict:
    views = {"image_size": image_size, "scale": scale or [0.08, 1.0]}
    return {
        "method": "rotation_pred",
        "backbone": {"depth": 18, "zero_init_residual": False},
        "views": views,
        "method_args": dict(method_args),
    }


def test_four_rotations_are_counter_clockwise_quarter_turns() -> None:
    image = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(2, 3, 3)
    rotated = four_rotations(image)
    assert rotated.shape == (4, 2, 3, 3)
    # Written out: a quarter turn counter-clockwise moves the top-right pixel to the top-left.
    expected_90 = torch.stack([torch.tensor(np.rot90(channel.numpy()).copy()) for channel in image])
    assert torch.equal(rotated[0], image)
    assert torch.equal(rotated[1], expected_90)
    assert rotated[1][0, 0, 0] == image[0, 0, 2]
    assert torch.equal(rotated[2], image.flip(1).flip(2))
    assert torch.equal(rotated[3], image.transpose(1, 2).flip(2))
    assert rotation_labels(3).tolist() == [0, 1, 2, 3] * 3


def test_views_give_the_normalised_image_in_four_exact_rotations() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    # scale [1, 1] on a square image: the whole image, resized to its own size (unchanged)
    stack = RotationPred.views(make_cfg(image_size=32, scale=[1.0, 1.0]))(Image.fromarray(pixels))
    assert stack.shape == (4, 3, 32, 32) and stack.dtype == torch.float32
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    normalised = torch.from_numpy(((pixels / 255.0 - mean) / std).transpose(2, 0, 1)).float()
    assert torch.allclose(stack[0], normalised, atol=1e-5) or torch.allclose(
        stack[0], normalised.flip(2), atol=1e-5
    )
    for k in range(1, 4):
        expected = np.rot90(stack[0].numpy(), k, axes=(1, 2)).copy()
        assert torch.equal(stack[k], torch.from_numpy(expected)), k


def test_loss_is_cross_entropy_of_the_logits_against_rotation_labels() -> None:
    torch.manual_seed(0)
    method = RotationPred.from_config(make_cfg())
    method.eval()  # fixed BN statistics: logits() and forward() see the same network
    torch.nn.init.normal_(method.fc.weight, std=1.0)  # spread the logits so the check is not trivial
    batch = torch.randn(2, 3, 32, 32)
    batch = torch.stack([four_rotations(image) for image in batch])  # [2, 4, 3, 32, 32]
    out = method(batch)
    logits = method.logits(batch.reshape(8, 3, 32, 32)).detach()
    labels = [0, 1, 2, 3, 0, 1, 2, 3]
    by_hand = -sum(logits[i, labels[i]] - torch.logsumexp(logits[i], 0) for i in range(8)) / 8
    assert out["loss"].item() == pytest.approx(by_hand.item(), rel=1e-5)
    right = sum(int(logits[i].argmax() == labels[i]) for i in range(8))
    assert out["accuracy"].item() == pytest.approx(100.0 * right / 8)
    out["loss"].backward()
    assert method.fc.weight.grad is not None and method.backbone.conv1.weight.grad is not None


def test_head_initialisation_and_config_checks() -> None:
    method = RotationPred.from_config(make_cfg())
    assert method.fc.weight.shape == (4, 512)
    assert torch.count_nonzero(method.fc.bias) == 0
    assert 0.005 < method.fc.weight.std().item() < 0.015
    with pytest.raises(SslzooError, match="method_args"):
        RotationPred.from_config(make_cfg(hidden=10))
    with pytest.raises(SslzooError, match=r"views\.image_size"):
        RotationPred.views({"views": {"image_size": "big"}})
    with pytest.raises(SslzooError, match=r"views\.scale"):
        RotationPred.views(make_cfg(scale=[0.5, 2.0]))
