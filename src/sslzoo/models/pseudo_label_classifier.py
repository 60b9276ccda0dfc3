"""The network DeepCluster and ODC train on cluster pseudo-labels: [Sobel ->] ResNet -> neck -> fc.

mmselfsup 0.x ``mmselfsup/models/algorithms/deepcluster.py`` and ``odc.py`` (``extract_feat``:
the optional Sobel layer, then the backbone), ``mmselfsup/models/heads/cls_head.py``
(``ClsHead``: one fc, init normal std 0.01, bias 0, cross-entropy), and the configs'
``optimizer.paramwise_options={'\\Ahead.': dict(momentum=0.)}`` (the head, re-drawn when the
clusters change, keeps no momentum).

- :meth:`PseudoLabelClassifier.embed`: ``[B, 3, H, W]`` -> ``[B, D]``, the neck's output; the
  features the methods cluster (in eval mode, from :func:`~sslzoo.data.cluster_views.extract_view`
  images) and classify;
- :meth:`PseudoLabelClassifier.reset_head`: the fc drawn again from a seed (the same on every
  process; the reference draws it on rank 0 and broadcasts it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from sslzoo.data.cluster_views import extract_view, train_view
from sslzoo.models.backbone import DEFAULT_CONV_INIT, ResNetBackbone
from sslzoo.models.clustering import DataSizedBuffers
from sslzoo.models.sobel import Sobel, two_channel_stem

HEAD_INIT_STD = 0.01  # ClsHead init_cfg: Normal(std=0.01) on the fc, bias 0


def sub_seeds(seed: int, count: int) -> list[int]:
    """``count`` independent 32-bit seeds from one (NumPy SeedSequence)."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(count)]


class PseudoLabelClassifier(DataSizedBuffers):
    """[Sobel ->] backbone -> ``neck`` -> fc over ``num_clusters`` pseudo-classes.

    Args:
        depth, zero_init_residual, conv_init: the backbone (``backbone.*`` of the model config).
        neck: ``[B, C, h, w]`` backbone map -> ``[B, D]`` features.
        neck_channels: ``D``.
        num_clusters: the classes of the fc (the k-means ``k``).
        with_sobel: the fixed :class:`~sslzoo.models.sobel.Sobel` layer before a 2-channel stem.
        head_momentum: SGD momentum of the fc (the backbone and neck take
            ``train.optimizer.momentum``).
    """

    def __init__(
        self,
        neck: Callable[[int], tuple[nn.Module, int]],
        depth: int = 50,
        zero_init_residual: bool = False,
        conv_init: str = DEFAULT_CONV_INIT,
        num_clusters: int = 10000,
        with_sobel: bool = False,
        head_momentum: float = 0.0,
    ) -> None:
        super().__init__()
        self.sobel = Sobel() if with_sobel else None
        self.backbone = ResNetBackbone(depth, zero_init_residual=zero_init_residual, conv_init=conv_init)
        if with_sobel:
            two_channel_stem(self.backbone)
        self.neck, channels = neck(self.backbone.out_channels)
        self.head = nn.Linear(channels, num_clusters)
        nn.init.normal_(self.head.weight, std=HEAD_INIT_STD)
        nn.init.zeros_(self.head.bias)
        self.num_clusters = num_clusters
        self.head_momentum = head_momentum

    @staticmethod
    def views(cfg: dict[str, Any]) -> Callable[[Image.Image], torch.Tensor]:
        """The augmented training view of ``cfg["views"]`` (:func:`~sslzoo.data.cluster_views.train_view`)."""
        return train_view(cfg.get("views"))

    @staticmethod
    def extract_views(cfg: dict[str, Any]) -> Callable[[Image.Image], torch.Tensor]:
        """The centre crop features are clustered from (:func:`~sslzoo.data.cluster_views.extract_view`)."""
        return extract_view(cfg.get("views"))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> neck features ``[B, D]``."""
        if self.sobel is not None:
            images = self.sobel(images)
        return self.neck(self.backbone(images)[0])

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` -> ``[B, num_clusters]``."""
        return self.head(features)

    @torch.no_grad()
    def reset_head(self, seed: int) -> None:
        """Draw the fc again (normal std 0.01, bias 0) from ``seed``."""
        generator = torch.Generator().manual_seed(seed)
        weight = torch.randn(self.head.weight.shape, generator=generator) * HEAD_INIT_STD
        self.head.weight.copy_(weight)
        self.head.bias.zero_()

    def param_groups(self, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        """Backbone and neck with the optimizer's momentum; the fc with ``head_momentum``."""
        head = {id(p) for p in self.head.parameters()}
        return [
            {"params": [p for p in self.parameters() if id(p) not in head]},
            {"params": list(self.head.parameters()), "momentum": self.head_momentum},
        ]


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Top-1 accuracy in percent of ``[B, K]`` logits against int64 ``[B]`` targets (detached)."""
    return (logits.detach().argmax(dim=1) == targets).float().mean() * 100.0
