"""The supervised baseline: a ResNet trained with cross-entropy on the dataset's class labels.

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, with the classification
recipe of mmcls 0.x ``configs/resnet/resnet50_8xb32_in1k.py`` (configs/_base_/models/resnet50.py:
ResNet + ``GlobalAveragePooling`` + ``LinearClsHead``; mmcls/models/heads/linear_head.py inits its
fc normal, std 0.01, bias 0; mmcls/models/losses/cross_entropy_loss.py):

- ``logits = fc(avgpool(backbone(x)))`` ``[B, num_classes]`` from the pooled ``[B, C]`` features;
- ``loss = cross_entropy(logits, labels)``, averaged over the batch; ``labels`` ``[B]`` are the
  manifest's class indices (the ``batch_fields`` contract of :mod:`sslzoo.methods`).

``self.backbone`` is the ResNet (the one extracted: the zoo benchmarks it like any pretrained
backbone, the upper reference row of the tables); ``fc`` stays in the training checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import transforms

from sslzoo.config import section_with_defaults
from sslzoo.data.single_view import single_view_pipeline
from sslzoo.errors import SslzooError
from sslzoo.models.backbone import DEFAULT_CONV_INIT, ResNetBackbone, backbone_args

# views keys -> the classification recipe (mmcls configs/_base_/datasets/imagenet_bs32.py):
# RandomResizedCrop 224 with torchvision's default scale (0.08, 1), horizontal flip 0.5
SUPERVISED_VIEW_KEYS: dict[str, Any] = {
    "image_size": 224,
    "scale": [0.08, 1.0],
    "grayscale_p": 0.0,
    "color_jitter": {},
    "color_jitter_p": 0.0,
    "flip_p": 0.5,
}
# method_args keys -> reference values (configs/_base_/models/resnet50.py: ImageNet-1k's classes)
METHOD_KEYS: dict[str, Any] = {"num_classes": 1000}
HEAD_INIT_STD = 0.01  # mmcls LinearClsHead init_cfg Normal(std=0.01), bias 0


class Supervised(nn.Module):
    """ResNet + global average pooling + ``fc(C, num_classes)`` trained on the class labels.

    Args:
        depth: ResNet depth.
        zero_init_residual: zero the last BN of each residual block (mmcls's ResNet default).
        conv_init: the backbone's conv init mode (``backbone.conv_init``).
        num_classes: classes of the training set's manifest.
    """

    batch_fields = ("labels",)

    def __init__(
        self,
        depth: int = 50,
        zero_init_residual: bool = False,
        conv_init: str = DEFAULT_CONV_INIT,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        if int(num_classes) < 2:
            raise SslzooError(
                f"model config method_args.num_classes = {num_classes}: a classifier needs at least 2"
            )
        self.backbone = ResNetBackbone(depth, zero_init_residual=zero_init_residual, conv_init=conv_init)
        self.fc = nn.Linear(self.backbone.out_channels, int(num_classes))
        nn.init.normal_(self.fc.weight, std=HEAD_INIT_STD)
        nn.init.zeros_(self.fc.bias)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Supervised:
        """Build from a model config (``backbone`` and ``method_args.num_classes``)."""
        args = section_with_defaults(cfg.get("method_args"), METHOD_KEYS, "method_args")
        return cls(
            **backbone_args(cfg),
            **args,
        )

    @staticmethod
    def views(cfg: dict[str, Any]) -> transforms.Compose:
        """RandomResizedCrop + flip (:func:`~sslzoo.data.single_view.single_view_pipeline` over
        :data:`SUPERVISED_VIEW_KEYS`): ``PIL image -> [3, S, S]``."""
        return single_view_pipeline(cfg.get("views"), SUPERVISED_VIEW_KEYS)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> ``[N, num_classes]`` from the pooled ``[N, C]`` backbone features."""
        return self.fc(self.backbone(images)[0].mean(dim=(2, 3)))

    def forward(self, images: torch.Tensor, *, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``images`` ``[B, 3, H, W]`` and class ``labels`` ``[B]`` -> ``{"loss", "accuracy"}``
        (mean cross-entropy; the percentage of the batch classified right)."""
        classes = self.fc.out_features
        if labels.dim() != 1 or int(labels.min()) < 0 or int(labels.max()) >= classes:
            raise SslzooError(
                f"supervised training needs one class index in 0..{classes - 1} per image, got labels "
                f"{labels.tolist()[:8]}...: train on a labelled single-label manifest and set "
                "method_args.num_classes to its number of classes"
            )
        logits = self.logits(images).float()
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean() * 100.0
        return {"loss": loss, "accuracy": accuracy}
