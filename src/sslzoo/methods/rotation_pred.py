"""Rotation-Pred: predict which of 0/90/180/270 degrees an image was rotated by.

Gidaris, Singh and Komodakis, "Unsupervised Representation Learning by Predicting Image
Rotations", ICLR 2018 (arXiv:1803.07728), as in mmselfsup 0.x ``mmselfsup/models/algorithms/rotation_pred.py``
(``mmselfsup/datasets/rotation_pred.py`` for the four rotations, ``mmselfsup/models/heads/cls_head.py``
for the head): every image appears in its four rotations, labels 0..3; a ResNet, global average
pooling and one linear layer ``C -> 4`` (initialised normal, std 0.01, bias 0) classify them;
the loss is the cross-entropy averaged over the ``4 B`` rotated images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision import transforms

from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD
from sslzoo.errors import SslzooError
from sslzoo.models.backbone import DEFAULT_CONV_INIT, ResNetBackbone

NUM_ROTATIONS = 4


def four_rotations(image: torch.Tensor) -> torch.Tensor:
    """Stack ``image`` ``[C, H, W]`` rotated counter-clockwise by 0, 90, 180, 270 degrees.

    Returns:
        ``[4, C, H, W]`` (square crops; row ``k`` is ``torch.rot90(image, k, (1, 2))``, label ``k``).
    """
    return torch.stack([torch.rot90(image, k, dims=(1, 2)) for k in range(NUM_ROTATIONS)])


def rotation_labels(batch_size: int, device: torch.device | None = None) -> torch.Tensor:
    """The labels of ``batch_size`` stacked rotation sets flattened to ``[4 B]``: 0,1,2,3,0,1,2,3,..."""
    return torch.arange(NUM_ROTATIONS, device=device).repeat(batch_size)


class RotationPred(nn.Module):
    """ResNet + global average pooling + ``fc(C, 4)`` trained to classify the rotation.

    Args:
        depth: ResNet depth (``backbone.depth``).
        zero_init_residual: torchvision's option (``backbone.zero_init_residual``).
        conv_init: the backbone's conv init mode (``backbone.conv_init``, :class:`ResNetBackbone`).
    """

    def __init__(
        self, depth: int = 50, zero_init_residual: bool = False, conv_init: str = DEFAULT_CONV_INIT
    ) -> None:
        super().__init__()
        self.backbone = ResNetBackbone(
            depth=depth, zero_init_residual=zero_init_residual, conv_init=conv_init
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.backbone.out_channels, NUM_ROTATIONS)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> RotationPred:
        """Build from a model config; Rotation-Pred takes no ``method_args``."""
        if cfg.get("method_args"):
            raise SslzooError(
                f"method_args: rotation_pred takes none, got {sorted(cfg['method_args'])}; remove them"
            )
        backbone = cfg["backbone"]
        return cls(
            depth=backbone["depth"],
            zero_init_residual=backbone.get("zero_init_residual", False),
            conv_init=backbone.get("conv_init", DEFAULT_CONV_INIT),
        )

    @staticmethod
    def views(cfg: dict[str, Any]) -> Callable[[Image.Image], torch.Tensor]:
        """RandomResizedCrop(``views.image_size``, scale ``views.scale``) + horizontal flip +
        ToTensor + ImageNet Normalize, then the four rotations: ``PIL image -> [4, 3, S, S]``."""
        views = dict(cfg.get("views", {}))
        unknown = set(views) - {"image_size", "scale"}
        if unknown:
            raise SslzooError(f"views: rotation_pred knows image_size and scale, not {sorted(unknown)}")
        size = views.get("image_size")
        if not isinstance(size, int) or size < 1:
            raise SslzooError(f"views.image_size: expected the crop size in pixels (e.g. 224), got {size!r}")
        scale = views.get("scale", [0.08, 1.0])
        if not (isinstance(scale, list) and len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
            raise SslzooError(f"views.scale: expected [min, max] area fractions in (0, 1], got {scale!r}")
        return transforms.Compose(
            [
                transforms.RandomResizedCrop(size, scale=(float(scale[0]), float(scale[1]))),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
                four_rotations,
            ]
        )

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> rotation logits ``[N, 4]``."""
        features = self.backbone(images)[0]
        return self.fc(torch.flatten(self.avgpool(features), 1))

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """``batch`` ``[B, 4, 3, H, W]`` (from :meth:`views`) -> ``{"loss", "accuracy"}``.

        ``loss`` is the mean cross-entropy over the ``4 B`` rotated images; ``accuracy`` the
        percentage of them whose rotation is predicted right.
        """
        if batch.dim() != 5 or batch.shape[1] != NUM_ROTATIONS:
            raise ValueError(f"expected [B, 4, C, H, W] rotation stacks, got {list(batch.shape)}")
        images = batch.flatten(0, 1)
        labels = rotation_labels(batch.shape[0], device=batch.device)
        logits = self.logits(images)
        loss = F.cross_entropy(logits.float(), labels)
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean() * 100.0
        return {"loss": loss, "accuracy": accuracy}
