"""Shuffling BN (He et al., "Momentum Contrast for Unsupervised Visual Representation Learning",
CVPR 2020, section 3.3): the key encoder sees its batch in an order that puts each key in another
BatchNorm batch than its query, so that BN's batch statistics cannot leak which key is the positive.

- across processes: :func:`shuffle_across_processes` / :func:`unshuffle_across_processes`, the
  keys' images gathered from every process, permuted by one permutation drawn on rank 0 and
  split again (mmselfsup 0.x mmselfsup/utils/batch_shuffle.py ``batch_shuffle_ddp`` /
  ``batch_unshuffle_ddp``, from facebookresearch/moco moco/builder.py);
- within a process: a permutation of one process's batch changes nothing in its BN statistics.
  MoCo's own single-GPU demo (facebookresearch/moco colab/moco_cifar10_demo.ipynb
  ``SplitBatchNorm``) therefore normalises each of ``splits`` interleaved groups of the batch
  with its own statistics, as that many GPUs would: :class:`SplitBatchNorm2d`, put in place of a
  network's BatchNorm2d layers by :func:`split_batch_norm`. With the shuffle, a key then lands
  in another group than its query (unless the permutation sends it to the same one, as it may
  across GPUs too).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from sslzoo.runtime.gather import gather_no_grad, rank_and_world


@torch.no_grad()
def shuffle_across_processes(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """This process's share of the global batch in a random order.

    Args:
        images: ``[n, ...]``, this process's part of the global batch ``[world * n, ...]``
            (processes in rank order).

    Returns:
        ``(shuffled [n, ...], unshuffle [world * n])``: rows ``rank * n .. (rank + 1) * n - 1``
        of the permuted global batch, and the inverse permutation for
        :func:`unshuffle_across_processes`. The permutation is drawn from torch's global
        generator on rank 0 and broadcast.
    """
    rank, world = rank_and_world()
    everything = gather_no_grad(images)
    permutation = torch.randperm(everything.shape[0]).to(images.device)
    if world > 1:
        dist.broadcast(permutation, src=0)
    unshuffle = torch.argsort(permutation)
    n = images.shape[0]
    return everything[permutation[rank * n : (rank + 1) * n]], unshuffle


@torch.no_grad()
def unshuffle_across_processes(outputs: torch.Tensor, unshuffle: torch.Tensor) -> torch.Tensor:
    """Undo :func:`shuffle_across_processes`: ``[n, ...]`` computed on the shuffled share ->
    the outputs of this process's own rows, in their original order ``[n, ...]``."""
    rank, _ = rank_and_world()
    everything = gather_no_grad(outputs)
    n = outputs.shape[0]
    return everything[unshuffle[rank * n : (rank + 1) * n]]


class SplitBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of ``splits`` groups of the batch.

    Sample ``i`` of a ``[N, C, H, W]`` batch belongs to group ``i mod splits``; each group is
    normalised with its own mean and variance (``N / splits`` samples each), and the running
    statistics move towards the mean over the groups of their batch statistics. In eval mode
    (and for ``splits`` 1) it is a plain BatchNorm2d; its parameters and buffers are those of
    one, so a state dict passes between the two.
    """

    def __init__(self, num_features: int, splits: int, **kwargs: object) -> None:
        super().__init__(num_features, **kwargs)  # type: ignore[arg-type]
        self.splits = int(splits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.splits == 1:
            return super().forward(x)
        n, c, h, w = x.shape
        if n % self.splits:
            raise ValueError(f"a batch of {n} does not split into {self.splits} BatchNorm groups")
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        momentum = 0.1 if self.momentum is None else self.momentum
        running_mean = running_var = None
        if self.track_running_stats:
            running_mean = self.running_mean.repeat(self.splits)
            running_var = self.running_var.repeat(self.splits)
        # [N, C, H, W] -> [N / s, s * C, H, W]: channel block j of row r is sample r * s + j
        out = F.batch_norm(
            x.reshape(n // self.splits, self.splits * c, h, w),
            running_mean,
            running_var,
            None if self.weight is None else self.weight.repeat(self.splits),
            None if self.bias is None else self.bias.repeat(self.splits),
            True,
            momentum,
            self.eps,
        )
        if running_mean is not None and running_var is not None:
            with torch.no_grad():
                self.running_mean.copy_(running_mean.view(self.splits, c).mean(dim=0))
                self.running_var.copy_(running_var.view(self.splits, c).mean(dim=0))
        return out.reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, splits={self.splits}"


def split_batch_norm(module: nn.Module, splits: int) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` by a :class:`SplitBatchNorm2d` of
    ``splits`` groups with the same parameters and buffers (in place; returns ``module``).
    ``splits`` 1 leaves it unchanged."""
    if splits < 1:
        raise ValueError(f"BatchNorm splits must be at least 1, got {splits}")
    if splits == 1:
        return module
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            split = SplitBatchNorm2d(
                child.num_features,
                splits,
                eps=child.eps,
                momentum=child.momentum,
                affine=child.affine,
                track_running_stats=child.track_running_stats,
            )
            state = child.state_dict()
            split.load_state_dict(state)
            if state:
                split.to(next(iter(state.values())).device)
            setattr(module, name, split)
        else:
            split_batch_norm(child, splits)
    return module
