"""Shuffling BN in one process: the shuffle and its inverse, and split BatchNorm against plain
BatchNorm of each group (the two-process shuffle: test_contrastive_ddp.py)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sslzoo.models.backbone import ResNetBackbone
from sslzoo.models.shuffle_bn import (
    SplitBatchNorm2d,
    shuffle_across_processes,
    split_batch_norm,
    unshuffle_across_processes,
)


def test_single_process_shuffle_is_a_permutation_from_the_global_generator() -> None:
    images = torch.arange(6.0).reshape(6, 1, 1, 1).expand(6, 3, 2, 2).contiguous()
    torch.manual_seed(4)
    shuffled, unshuffle = shuffle_across_processes(images)
    torch.manual_seed(4)
    permutation = torch.randperm(6)
    assert torch.equal(shuffled, images[permutation])
    assert permutation.tolist() != list(range(6))
    outputs = shuffled[:, :, 0, 0] * 10  # row-wise outputs computed on the shuffled batch
    assert torch.equal(unshuffle_across_processes(outputs, unshuffle), images[:, :, 0, 0] * 10)


@pytest.mark.parametrize("splits", [1, 2, 4])
def test_split_batch_norm_normalises_each_group_by_itself(splits: int) -> None:
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(3)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5)
        plain.bias.uniform_(-0.5, 0.5)
        plain.running_mean.uniform_(-1, 1)
        plain.running_var.uniform_(0.5, 2)
    split = SplitBatchNorm2d(3, splits)
    split.load_state_dict(plain.state_dict())
    x = torch.randn(8, 3, 4, 4) * torch.arange(1.0, 9.0).view(8, 1, 1, 1)
    out = split(x)
    expected = torch.empty_like(x)
    means, variances = [], []
    for group in range(splits):  # sample i belongs to group i mod splits
        part = x[group::splits]
        mean, var = part.mean(dim=(0, 2, 3)), part.var(dim=(0, 2, 3), unbiased=False)
        normalised = (part - mean.view(1, 3, 1, 1)) / torch.sqrt(var.view(1, 3, 1, 1) + plain.eps)
        expected[group::splits] = normalised * plain.weight.view(1, 3, 1, 1) + plain.bias.view(1, 3, 1, 1)
        count = part.numel() / 3
        means.append(mean)
        variances.append(part.var(dim=(0, 2, 3), unbiased=True) if count > 1 else var)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    momentum = plain.momentum
    torch.testing.assert_close(
        split.running_mean, (1 - momentum) * plain.running_mean + momentum * torch.stack(means).mean(0)
    )
    torch.testing.assert_close(
        split.running_var, (1 - momentum) * plain.running_var + momentum * torch.stack(variances).mean(0)
    )
    assert split.num_batches_tracked.item() == 1
    split.eval()
    plain.eval()
    plain.load_state_dict(split.state_dict())
    torch.testing.assert_close(split(x), plain(x))


def test_split_batch_norm_refuses_a_batch_that_does_not_split() -> None:
    with pytest.raises(ValueError, match="does not split into 4"):
        SplitBatchNorm2d(3, 4)(torch.randn(6, 3, 2, 2))


def test_split_batch_norm_swaps_every_bn_and_keeps_the_state_dict() -> None:
    torch.manual_seed(0)
    backbone = ResNetBackbone(depth=18)
    before = copy.deepcopy(backbone.state_dict())
    split_batch_norm(backbone, 2)
    bns = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 20 and all(type(m) is SplitBatchNorm2d and m.splits == 2 for m in bns)
    after = backbone.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[key], before[key]) for key in before)
    # on a batch of identical pairs (sample i and i + 1 in different groups) it is plain BN
    x = torch.randn(4, 3, 32, 32).repeat_interleave(2, dim=0)
    plain = ResNetBackbone(depth=18)
    plain.load_state_dict(before)
    torch.testing.assert_close(backbone(x)[0], plain(x)[0], rtol=1e-4, atol=1e-5)
    assert split_batch_norm(plain, 1) is plain and not any(
        isinstance(m, SplitBatchNorm2d) for m in plain.modules()
    )


def test_split_batch_norm_differs_from_plain_bn_on_a_mixed_batch() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 3, 2, 2)
    x[1::2] += 5.0  # group 1 sits elsewhere
    plain = F.batch_norm(x, None, None, training=True)
    assert not torch.allclose(SplitBatchNorm2d(3, 2)(x), plain, atol=1e-2)
