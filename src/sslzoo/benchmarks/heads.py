"""The linear classifier heads of linear evaluation and the frozen-backbone classifier that
carries them.

- :class:`PooledLinearHead`, the multi-head protocol (mmselfsup 0.x
  ``configs/benchmarks/classification/imagenet/resnet50_mhead_linear-8xb32-steplr-90e_in1k.py``;
  head ``mmselfsup/models/heads/multi_cls_head.py``): the stage map average pooled with the
  ``AvgPool2d(kernel, stride, padding)`` of the features config's pooling table, normalised by
  a ``BatchNorm2d`` over its channels without affine parameters (the reference builds the norm
  on the pooled *map*, one mean and variance per channel), flattened and fed to its own
  ``Linear`` (normal std 0.01, bias 0).
- :class:`GlobalPoolLinearHead`, the AvgPool protocol
  (``imagenet/resnet50_linear-8xb32-steplr-100e_in1k.py``; mmselfsup ``ClsHead(with_avg_pool=True)``):
  global average pool of feature5 -> ``Linear`` (normal std 0.01, bias 0).
- :class:`FrozenBackboneClassifier`: the backbone in eval mode (BN running statistics frozen)
  without gradients and one head per layer; :func:`build_linear_classifier` sizes the heads by a
  probe forward.

:func:`init_linear` (the heads' init) also initialises the fine-tuning head of
:mod:`sslzoo.benchmarks.semi`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sslzoo.benchmarks.features import GLOBAL_POOL
from sslzoo.errors import SslzooError
from sslzoo.models.backbone import ResNetBackbone


def init_linear(layer: nn.Linear, std: float = 0.01) -> nn.Linear:
    """Normal(0, std) weights and zero bias (mmselfsup's ``ClsHead`` / ``MultiClsHead`` init)."""
    nn.init.normal_(layer.weight, mean=0.0, std=std)
    nn.init.zeros_(layer.bias)
    return layer


class PooledLinearHead(nn.Module):
    """``AvgPool2d(k, s, p)`` -> ``BatchNorm2d(C, affine=False)`` -> flatten -> ``Linear``.

    One branch of mmselfsup 0.x ``MultiClsHead`` (``pool_type='specified'``). Input
    ``[B, C, H, W]``, output logits ``[B, num_classes]``; ``pooled_dim = C * H' * W'``.
    """

    def __init__(
        self,
        channels: int,
        pooling: tuple[int, int, int],
        pooled_dim: int,
        num_classes: int,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        kernel, stride, padding = pooling
        self.pool = nn.AvgPool2d(kernel, stride, padding)
        self.norm = nn.BatchNorm2d(channels, momentum=bn_momentum, affine=False)
        self.fc = init_linear(nn.Linear(pooled_dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.norm(self.pool(x)), 1))


class GlobalPoolLinearHead(nn.Module):
    """Global average pool -> ``Linear`` (mmselfsup ``ClsHead(with_avg_pool=True)``): ``[B, C, H, W] -> [B, classes]``."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = init_linear(nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def stage_of(layer: str) -> int:
    """Backbone stage (1..5) a layer reads: ``featureN`` -> N, ``avgpool`` -> 5."""
    return 5 if layer == GLOBAL_POOL else int(layer[-1])


def pooled_size(size: int, pooling: tuple[int, int, int]) -> int:
    """Output side of ``AvgPool2d(kernel, stride, padding)`` (floor mode) on a ``size`` map."""
    kernel, stride, padding = pooling
    return (size + 2 * padding - kernel) // stride + 1


class FrozenBackboneClassifier(nn.Module):
    """A frozen :class:`ResNetBackbone` (eval mode, no gradients) with one linear head per layer.

    ``forward(images [B, 3, H, W]) -> {layer: logits [B, num_classes]}``. ``train()`` trains the
    heads only; the backbone's BN keeps its running statistics.
    """

    def __init__(self, backbone: ResNetBackbone, heads: dict[str, nn.Module]) -> None:
        super().__init__()
        self.backbone = backbone.eval()
        for param in self.backbone.parameters():
            param.requires_grad_(False)
        self.heads = nn.ModuleDict(heads)
        self.stages = sorted({stage_of(layer) for layer in heads})

    def train(self, mode: bool = True) -> FrozenBackboneClassifier:
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            maps = dict(zip(self.stages, self.backbone(images, self.stages), strict=True))
        return {layer: head(maps[stage_of(layer)]) for layer, head in self.heads.items()}


def build_linear_classifier(
    backbone: ResNetBackbone,
    layers: Sequence[str],
    pooling: dict[str, tuple[int, int, int]],
    num_classes: int,
    crop: int,
    bn_momentum: float = 0.1,
) -> FrozenBackboneClassifier:
    """Heads for ``layers`` sized by a probe forward of a ``crop`` x ``crop`` image.

    Raises:
        SslzooError: a pooling window larger than its (padded) stage map at this crop.
    """
    stages = sorted({stage_of(layer) for layer in layers})
    was_training = backbone.training
    with torch.no_grad():
        probe = torch.zeros(1, 3, crop, crop, device=next(backbone.parameters()).device)
        shapes = {s: tuple(m.shape[1:]) for s, m in zip(stages, backbone.eval()(probe, stages), strict=True)}
    backbone.train(was_training)
    heads: dict[str, nn.Module] = {}
    for layer in layers:
        channels, height, width = shapes[stage_of(layer)]
        if layer == GLOBAL_POOL:
            heads[layer] = GlobalPoolLinearHead(channels, num_classes)
            continue
        out_h, out_w = pooled_size(height, pooling[layer]), pooled_size(width, pooling[layer])
        if out_h < 1 or out_w < 1:
            raise SslzooError(
                f"pooling.{layer} {list(pooling[layer])} does not fit the {height}x{width} map of a {crop} px "
                "crop; pick a smaller kernel in the features config or a larger crop"
            )
        heads[layer] = PooledLinearHead(
            channels, pooling[layer], channels * out_h * out_w, num_classes, bn_momentum
        )
    return FrozenBackboneClassifier(backbone, heads)
